"""Smoke tests of the ``nerfkit`` command line on a tiny dataset.

fit -> render -> evaluate run as subprocesses (as a user runs them). A user's mistakes must end with exit
code 2 and one line on stderr (``nerfkit: error: ...``), never a traceback: checked through ``cli.main.main``
in-process for every case (cheap), and in a real subprocess for one case that goes deep (loading a dataset),
where anything printed at import time would show up too.
"""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

from cli.main import main as cli_main

from .conftest import TINY_MODEL_FLAGS

# subprocess warns about fork() in a process running JAX threads; it execs at once, which is safe.
pytestmark = pytest.mark.filterwarnings("ignore:os.fork\\(\\) was called:RuntimeWarning")

_SCRIPT = Path(sys.executable).parent / "nerfkit"
# The installed console script when there is one (it is what users run), else the module.
NERFKIT = [str(_SCRIPT)] if _SCRIPT.exists() else [sys.executable, "-m", "cli.main"]


def _popen(*args) -> subprocess.Popen:
    return subprocess.Popen([*NERFKIT, *map(str, args)], stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
                            env=os.environ.copy())


def _nerfkit(*args, timeout=180) -> tuple[int, str, str]:
    p = _popen(*args)
    out, err = p.communicate(timeout=timeout)
    return p.returncode, out, err


def _fit_args(out: Path, data: Path, steps: int = 4) -> list:
    return ["fit", "paper", "--out", out, "--data", data, "--steps", steps, *TINY_MODEL_FLAGS,
            "--train.batch-rays", "64", "--train.log-every", "2", "--train.val-every", "0",
            "--train.val-views", "1", "--train.render-chunk", "256"]


@pytest.fixture(scope="module")
def fitted_run(tmp_path_factory, tiny_blender_dir) -> Path:
    run = tmp_path_factory.mktemp("cli") / "run"
    rc, _, err = _nerfkit(*_fit_args(run, tiny_blender_dir))
    assert rc == 0, err[-3000:]
    return run


def test_fit_writes_a_run_directory(fitted_run):
    for name in ("config.json", "scene.json", "metrics.jsonl", "summary.json"):
        assert (fitted_run / name).is_file(), name
    assert (fitted_run / "checkpoints" / "4").is_dir()
    summary = json.loads((fitted_run / "summary.json").read_text())
    assert summary["steps"] == 4 and summary["stop_reason"] == "steps"
    assert summary["val_psnr"] is not None  # one validation view rendered at the end
    cfg = json.loads((fitted_run / "config.json").read_text())
    assert cfg["model"]["coarse"]["depth"] == 2 and cfg["model"]["num_fine"] == 8 and cfg["preset"] == "paper"


def test_render_and_evaluate(fitted_run, tmp_path):
    import imageio.v2 as iio

    # Both at once: each spends most of its time starting up.
    render = _popen("render", fitted_run, "--frames", 3, "--out", tmp_path / "render")
    evaluate = _popen("evaluate", fitted_run, "--max-views", 2)
    r_out, r_err = render.communicate(timeout=180)
    e_out, e_err = evaluate.communicate(timeout=180)
    assert render.returncode == 0, r_err[-3000:]
    assert evaluate.returncode == 0, e_err[-3000:]

    for kind in ("rgb", "depth", "opacity"):
        video = tmp_path / "render" / f"orbit_{kind}.mp4"
        assert video.is_file(), kind
        with iio.get_reader(video) as reader:
            frames = [f for f in reader]
        assert len(frames) == 3, kind
        assert frames[0].shape == (16, 16, 3)

    metrics = json.loads((fitted_run / "eval_test" / "metrics.json").read_text())
    assert metrics["views"] == 2 and len(metrics["per_view"]) == 2 and metrics["step"] == 4
    assert 0.0 < metrics["psnr"] < 100.0
    assert "PSNR" in e_out
    # Progress off a terminal: a line at the end (and every 10 s), with the time per frame / view.
    assert "rendering 16x16: 3/3 frames, " in r_err and " s/frame, " in r_err
    for err in (r_err, e_err):  # each says where it runs (nerfkit.devices)
        assert "nerfkit: running on " in err and " x cpu (cpu, jax " in err, err[-2000:]
    assert "evaluating test at 16x16: 2/2 views, " in e_err and " s/view, " in e_err
    assert metrics["seconds_per_view"] == pytest.approx(np.mean([r["seconds"] for r in metrics["per_view"]]))
    assert 0 < metrics["seconds_per_view"] * 2 <= metrics["seconds"]


def _malformed_dataset(tmp: Path, data: Path) -> Path:
    bad = tmp / "bad_json"
    shutil.copytree(data, bad)
    (bad / "transforms_train.json").write_text('{"camera_angle_x": 0.69,\n "frames": [\n')
    return bad


def _assert_one_line_error(rc: int, err: str, must_contain: str, name: str):
    lines = err.strip().splitlines()
    assert rc == 2, f"{name}: exit {rc}, stderr:\n{err[-2000:]}"
    assert "Traceback" not in err, f"{name}:\n{err[-2000:]}"
    assert len(lines) == 1 and lines[0].startswith("nerfkit: error: "), f"{name}: stderr:\n{err[-2000:]}"
    assert must_contain in lines[0], f"{name}: {lines[0]!r} does not mention {must_contain!r}"


def test_user_errors_are_one_line(fitted_run, tmp_path, tiny_blender_dir, capsys):
    no_ckpt = tmp_path / "no_checkpoints"  # a run directory whose checkpoints are gone
    no_ckpt.mkdir()
    for name in ("config.json", "scene.json"):
        shutil.copy(fitted_run / name, no_ckpt / name)
    cases = {
        "unknown preset": (["fit", "no-such-preset"], "no-such-preset"),
        "missing data dir": (_fit_args(tmp_path / "out1", tmp_path / "does_not_exist"), "does_not_exist"),
        "malformed transforms JSON": (_fit_args(tmp_path / "out2", _malformed_dataset(tmp_path, tiny_blender_dir)),
                                      "transforms_train.json"),
        "render, no checkpoints": (["render", no_ckpt, "--frames", 2], "no_checkpoints"),
        "render, not a run dir": (["render", tmp_path, "--frames", 2], "config.json"),
        "evaluate, nonexistent dir": (["evaluate", tmp_path / "nowhere"], "nowhere"),
    }
    capsys.readouterr()
    errors = {}
    for name, (args, must_contain) in cases.items():
        try:
            rc = cli_main([str(a) for a in args])
        except SystemExit as e:  # argument errors from tyro
            rc = e.code
        errors[name] = capsys.readouterr().err
        _assert_one_line_error(rc, errors[name], must_contain, name)
    assert "paper" in errors["unknown preset"]  # the message lists the presets there are
    # Nothing was fitted for the failed fits.
    assert not (tmp_path / "out1" / "checkpoints").exists()
    assert not (tmp_path / "out2" / "checkpoints").exists()


def test_user_error_in_a_subprocess(tmp_path, tiny_blender_dir):
    # The whole program, start-up included: one line on stderr, exit code 2, naming file and position.
    rc, _, err = _nerfkit(*_fit_args(tmp_path / "out", _malformed_dataset(tmp_path, tiny_blender_dir)))
    _assert_one_line_error(rc, err, "transforms_train.json", "malformed transforms JSON")
    assert "line 3" in err
