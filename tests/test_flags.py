"""The domains of numeric flags (nerfkit/flags.py): every numeric field of every command has a rule, the rules
say what they refuse, and every preset obeys them."""

from __future__ import annotations

import dataclasses
import math
import typing

import pytest

from cli import main as cli
from configs import PRESETS
from nerfkit import config, flags
from nerfkit.errors import InputError

COMMAND_CLASSES = [config.FitConfig, config.DataConfig, config.ModelConfig, config.TrainConfig, config.FieldConfig,
                   cli.RenderArgs, cli.EvaluateArgs, cli.DemoDataArgs, cli.ColmapDataArgs, cli.ColmapImportArgs]


def _numeric(tp) -> bool:
    """Whether a field type is a number, an optional number or a tuple of numbers (bool is not a number here)."""
    if typing.get_origin(tp) is typing.Annotated:
        return _numeric(typing.get_args(tp)[0])
    if typing.get_origin(tp) in (typing.Union, tuple):
        return any(_numeric(a) for a in typing.get_args(tp) if a is not type(None) and a is not Ellipsis)
    return tp in (int, float)


@pytest.mark.parametrize("cls", COMMAND_CLASSES, ids=lambda c: c.__name__)
def test_every_numeric_field_has_a_rule(cls):
    hints = typing.get_type_hints(cls, include_extras=True)
    numeric = {f.name for f in dataclasses.fields(cls) if _numeric(hints[f.name])}
    rules = set(getattr(cls, "RULES", {}))
    assert numeric - rules == set(), f"{cls.__name__}: numeric fields without a rule in RULES"
    assert rules - numeric == set(), f"{cls.__name__}: RULES names fields that are not numeric fields"


@pytest.mark.parametrize("name", PRESETS)
def test_every_preset_obeys_the_rules(name):
    flags.check(PRESETS[name][1])


@pytest.mark.parametrize("rule, good, bad", [
    (flags.POSITIVE, [1e-9, 3, 1e9], [0, -1, math.nan, math.inf]),
    (flags.NON_NEGATIVE, [0, 5], [-1e-9, math.nan]),
    (flags.at_least(1), [1, 2], [0, -3]),
    (flags.FRACTION, [0.5, 1e-6], [0, 1, 1.5]),
    (flags.Rule(low=0, high=1, low_open=True), [1, 0.1], [0, 1.01]),
    (flags.FINITE, [-1e30, 0], [math.nan, -math.inf]),
])
def test_rules(rule, good, bad):
    assert all(rule.holds(x) for x in good)
    assert not any(rule.holds(x) for x in bad)


def test_check_names_the_nested_flag_and_the_rule():
    cfg = dataclasses.replace(config.FitConfig(), model=dataclasses.replace(
        config.ModelConfig(), fine=config.FieldConfig(width=0)))
    with pytest.raises(InputError) as err:
        flags.check(cfg)
    assert str(err.value) == "[--model.fine.width]: must be >= 1, got 0"
    with pytest.raises(InputError, match=r"\[--model.proposal-samples\]: must be >= 1, got 0"):
        flags.check(dataclasses.replace(config.FitConfig(), model=config.ModelConfig(proposal_samples=(64, 0))))
    with pytest.raises(InputError, match=r"\[--train.time-budget\]: must be a finite number > 0, got inf"):
        flags.check(dataclasses.replace(config.FitConfig(), train=config.TrainConfig(time_budget=math.inf)))
    flags.check(config.FitConfig())  # the defaults, None (an unset optional flag) included


def test_fit_checks_before_touching_the_run_directory(tmp_path):
    from nerfkit.fit import fit

    cfg = dataclasses.replace(config.FitConfig(out=tmp_path / "run"), train=config.TrainConfig(steps=0))
    with pytest.raises(InputError, match=r"--train.steps"):
        fit(cfg)
    assert not (tmp_path / "run").exists()
