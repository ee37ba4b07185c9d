"""The domains of numeric flags, declared beside the fields and checked before any work.

Each config or argument dataclass lists its numeric fields in a ``RULES`` class variable (field name ->
:class:`Rule`); :func:`check` walks a dataclass and those nested in it and raises
:class:`~nerfkit.errors.InputError` naming the flag (``--train.time-budget``) and its rule. ``None`` (an
optional flag left unset) passes; a tuple's elements are checked one by one.

>>> check_value(Rule(low=0, low_open=True), -5.0, "--train.time-budget")
Traceback (most recent call last):
nerfkit.errors.InputError: [--train.time-budget]: must be > 0, got -5.0
"""

from __future__ import annotations

import dataclasses
import math

from nerfkit.errors import InputError


@dataclasses.dataclass(frozen=True)
class Rule:
    """A closed or open interval a number must lie in (``None``: unbounded on that side); every rule also
    refuses NaN and infinities."""

    low: float | None = None
    high: float | None = None
    low_open: bool = False
    high_open: bool = False

    def describe(self) -> str:
        """The rule in words: ``> 0``, ``>= 1``, ``in (0, 1]``, ``finite``.

        >>> Rule(low=0, high=1, low_open=True).describe()
        'in (0, 1]'
        """
        if self.low is not None and self.high is not None:
            return f"in {'(' if self.low_open else '['}{self.low:g}, {self.high:g}{')' if self.high_open else ']'}"
        if self.low is not None:
            return f"{'>' if self.low_open else '>='} {self.low:g}"
        if self.high is not None:
            return f"{'<' if self.high_open else '<='} {self.high:g}"
        return "finite"

    def holds(self, x: float) -> bool:
        if not math.isfinite(x):
            return False
        if self.low is not None and (x < self.low or (self.low_open and x == self.low)):
            return False
        return self.high is None or (x < self.high or (not self.high_open and x == self.high))


POSITIVE = Rule(low=0, low_open=True)
NON_NEGATIVE = Rule(low=0)
FINITE = Rule()
FRACTION = Rule(low=0, high=1, low_open=True, high_open=True)  # strictly between 0 and 1


def at_least(n: float) -> Rule:
    """``>= n``."""
    return Rule(low=n)


def check_value(rule: Rule, value, flag: str) -> None:
    """Raise InputError naming ``flag`` unless ``value`` (a number, a tuple of numbers, or None) obeys ``rule``."""
    for x in value if isinstance(value, tuple) else (value,):
        if x is not None and not rule.holds(float(x)):
            finite = "" if math.isfinite(float(x)) or rule == FINITE else "a finite number "
            raise InputError(f"must be {finite}{rule.describe()}, got {x!r}", field=flag)


def check(obj, prefix: str = "--") -> None:
    """Check every field of the dataclass ``obj`` that its class's ``RULES`` names, and the dataclasses nested
    in it (their flags are ``--outer.inner-name``), before anything is done with them."""
    rules = getattr(type(obj), "RULES", {})
    for f in dataclasses.fields(obj):
        value = getattr(obj, f.name)
        flag = prefix + f.name.replace("_", "-")
        if dataclasses.is_dataclass(value):
            check(value, flag + ".")
        elif f.name in rules:
            check_value(rules[f.name], value, flag)
