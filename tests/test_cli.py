"""Smoke tests of the ``nerfkit`` command line on a tiny dataset.

fit -> render -> evaluate run as subprocesses (as a user runs them). A user's mistakes must end with exit
code 2 and one line on stderr (``nerfkit: error: ...``), never a traceback: checked through ``cli.main.main``
in-process for every case (cheap), and in a real subprocess for one case that goes deep (loading a dataset),
where anything printed at import time would show up too.
"""

from __future__ import annotations

import dataclasses
import json
import os
import shutil
import subprocess
import sys
from pathlib import Path

import jax
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


# ------------------------------------------------------------------------------------------ the catalogue
# Every way a user can get the input wrong that we know of: exit code 2, no traceback, one line naming the
# culprit (after any warning lines), and an existing run directory left exactly as it was. In-process, and
# nearly all refused before anything is compiled. Fits point at the existing run with --resume (the same
# model), so a refusal that came too late would show as a change to it.
@dataclasses.dataclass
class Case:
    run: Path      # the existing run (must stay untouched)
    data: Path     # the tiny Blender scene (read-only)
    tmp: Path      # this case's own directory

    def fit(self, *extra, data=None) -> list:
        return _fit_args(self.run, data or self.data) + ["--resume", *extra]

    def blender(self, edit=None, files=None) -> Path:
        """A copy of the tiny scene with ``edit(meta)`` applied to transforms_train.json and ``files(root)`` run."""
        root = self.tmp / "scene"
        shutil.copytree(self.data, root)
        if edit is not None:
            path = root / "transforms_train.json"
            meta = json.loads(path.read_text())
            edit(meta)
            path.write_text(json.dumps(meta))
        if files is not None:
            files(root)
        return root

    def llff(self, edit=None, n_images: int = 4, raw: bytes | None = None) -> Path:
        """A tiny LLFF capture (16x12 images, 4 poses facing -z) with ``edit(poses_bounds)`` applied, or
        ``raw`` as the bytes of poses_bounds.npy."""
        import imageio.v2 as iio

        from nerfkit.data import llff

        root = self.tmp / "llff"
        (root / "images").mkdir(parents=True)
        for i in range(n_images):
            iio.imwrite(root / "images" / f"{i:03d}.png", np.full((12, 16, 3), 40 * i, np.uint8))
        c2w = np.tile(np.eye(4)[:3], (4, 1, 1))
        c2w[:, 0, 3] = np.arange(4) * 0.1
        llff.write_poses_bounds(root / "poses_bounds.npy", c2w, (12, 16, 14.0), np.tile([2.0, 6.0], (4, 1)))
        if edit is not None:
            np.save(root / "poses_bounds.npy", edit(np.load(root / "poses_bounds.npy")))
        if raw is not None:
            (root / "poses_bounds.npy").write_bytes(raw)
        return root

    def run_copy(self, edit) -> Path:
        """A copy of the existing run with ``edit(copy)`` applied."""
        copy = self.tmp / "run_copy"
        shutil.copytree(self.run, copy)
        edit(copy)
        return copy


def _set(path: str, value):
    """An edit of transforms_train.json setting ``meta[k0][k1]...`` (keys split at '/'; digits index lists)."""
    def edit(meta):
        *keys, last = [int(k) if k.isdigit() else k for k in path.split("/")]
        target = meta
        for k in keys:
            target = target[k]
        target[last] = value
    return edit


def _drop(key: str):
    return lambda meta: meta.pop(key)


def _image(name: str, content) -> callable:
    def write(root):
        f = root / "train" / name
        f.write_bytes(content(f) if callable(content) else content)
    return write


def _resized_png(f: Path) -> bytes:
    import io

    import imageio.v2 as iio

    buf = io.BytesIO()
    iio.imwrite(buf, np.zeros((8, 8, 4), np.uint8), format="png")
    return buf.getvalue()


def _no_checkpoints(run: Path) -> None:
    shutil.rmtree(run / "checkpoints")
    (run / "checkpoints").mkdir()


def _every_checkpoint_damaged(run: Path) -> None:
    from .test_checkpoint import damage_checkpoint

    for step_dir in (run / "checkpoints").iterdir():
        damage_checkpoint(step_dir, "garbage")


ZERO_ROTATION = [[0, 0, 0, 1], [0, 0, 0, 2], [0, 0, 0, 3], [0, 0, 0, 1]]
CATALOGUE = {
    # --- the five refusals issue 13 found missing
    "blender: all-zero rotation": (lambda c: c.fit(data=c.blender(_set("frames/0/transform_matrix", ZERO_ROTATION))),
                                   "frames[0].transform_matrix"),
    "fit --time-budget -5": (lambda c: c.fit("--time-budget", "-5"), "--train.time-budget"),
    "render --width 0": (lambda c: ["render", c.run, "--width", "0"], "--width"),
    "render, every checkpoint damaged": (lambda c: ["render", c.run_copy(_every_checkpoint_damaged)],
                                         "checkpoints"),
    "blender: scaled rotation": (lambda c: c.fit(data=c.blender(_set(
        "frames/1/transform_matrix", [[2, 0, 0, 0], [0, 2, 0, 0], [0, 0, 2, 4], [0, 0, 0, 1]]))),
        "frames[1].transform_matrix"),
    # --- numeric flags of fit
    "fit --steps 0": (lambda c: c.fit("--steps", "0"), "--train.steps"),
    "fit --train.batch-rays 0": (lambda c: c.fit("--train.batch-rays", "0"), "--train.batch-rays"),
    "fit --train.lr-init 0": (lambda c: c.fit("--train.lr-init", "0"), "--train.lr-init"),
    "fit --train.lr-final nan": (lambda c: c.fit("--train.lr-final", "nan"), "--train.lr-final"),
    "fit --model.num-coarse 0": (lambda c: c.fit("--model.num-coarse", "0"), "--model.num-coarse"),
    "fit --model.coarse.width -1": (lambda c: c.fit("--model.coarse.width", "-1"), "--model.coarse.width"),
    "fit --model.grid-resolution 0": (lambda c: c.fit("--model.grid-resolution", "0"), "--model.grid-resolution"),
    "fit --model.grid-decay 2": (lambda c: c.fit("--model.grid-decay", "2"), "--model.grid-decay"),
    "fit --train.keep-checkpoints 0": (lambda c: c.fit("--train.keep-checkpoints", "0"), "--train.keep-checkpoints"),
    "fit --downscale 0": (lambda c: c.fit("--downscale", "0"), "--data.downscale"),
    "fit --train.devices 99": (lambda c: c.fit("--train.devices", "99"), "--train.devices"),
    # --- fit and the run directory
    "unknown preset": (lambda c: ["fit", "no-such-preset"], "'no-such-preset' (choose from: paper"),
    "existing run without --resume": (lambda c: _fit_args(c.run, c.data), lambda c: f"{c.run}: already holds"),
    "--resume with another model": (lambda c: c.fit("--model.num-coarse", "4"), "model"),
    "unknown command": (lambda c: ["frobnicate"], "frobnicate"),
    # --- Blender datasets
    "missing data directory": (lambda c: c.fit(data=c.tmp / "does_not_exist"), "does_not_exist"),
    "malformed transforms JSON": (lambda c: c.fit(data=c.blender(files=lambda r: (r / "transforms_train.json")
                                                                 .write_text('{"camera_angle_x": 0.69,\n "frames": [\n')))
                                  , "transforms_train.json"),
    "no transforms_train.json": (lambda c: c.fit(data=c.blender(files=lambda r: (r / "transforms_train.json").unlink())),
                                 "transforms_train.json"),
    "missing key frames": (lambda c: c.fit(data=c.blender(_drop("frames"))), "frames"),
    "missing key camera_angle_x": (lambda c: c.fit(data=c.blender(_drop("camera_angle_x"))), "camera_angle_x"),
    "missing transform_matrix": (lambda c: c.fit(data=c.blender(lambda m: m["frames"][0].pop("transform_matrix"))),
                                 "frames[0].transform_matrix"),
    "NaN in a pose": (lambda c: c.fit(data=c.blender(_set("frames/2/transform_matrix/0/3", float("nan")))),
                      "frames[2].transform_matrix"),
    "3x3 transform_matrix": (lambda c: c.fit(data=c.blender(_set("frames/0/transform_matrix", np.eye(3).tolist()))),
                             "frames[0].transform_matrix"),
    "string for a number": (lambda c: c.fit(data=c.blender(_set("camera_angle_x", "wide"))), "camera_angle_x"),
    "far before near": (lambda c: c.fit(data=c.blender(_set("near", 7.0))), "far"),
    "corrupt image": (lambda c: c.fit(data=c.blender(files=_image("r_0.png", b"\x89PNG garbage"))), "r_0.png"),
    "empty image file": (lambda c: c.fit(data=c.blender(files=_image("r_1.png", b""))), "r_1.png"),
    "image of the wrong size": (lambda c: c.fit(data=c.blender(files=_image("r_2.png", _resized_png))), "r_2.png"),
    "every image missing": (lambda c: c.fit(data=c.blender(files=lambda r: shutil.rmtree(r / "train"))),
                            "transforms_train.json"),
    "downscale not dividing the images": (lambda c: c.fit("--downscale", "3"), "downscale"),
    "not a dataset": (lambda c: c.fit(data=c.tmp), "unrecognised"),
    # --- LLFF captures
    "llff: poses_bounds of the wrong shape": (lambda c: c.fit(data=c.llff(lambda a: a[:, :16])), "poses_bounds.npy"),
    "llff: NaN pose": (lambda c: c.fit(data=c.llff(lambda a: np.where(np.arange(17) == 3, np.nan, a)))
                       , "poses[0]"),
    "llff: zero rotation": (lambda c: c.fit(data=c.llff(lambda a: np.where(np.isin(np.arange(17), [0, 1, 2, 5, 6, 7,
                                                                                                  10, 11, 12]), 0.0, a))),
                            "poses[0].rotation"),
    "llff: not an npy file": (lambda c: c.fit(data=c.llff(raw=b"not numpy")), "poses_bounds.npy"),
    "llff: fewer images than poses": (lambda c: c.fit(data=c.llff(n_images=3)), "poses_bounds.npy"),
    # --- render and evaluate
    "render --height -3": (lambda c: ["render", c.run, "--height", "-3"], "--height"),
    "render --frames 0": (lambda c: ["render", c.run, "--frames", "0"], "--frames"),
    "render --fps 0": (lambda c: ["render", c.run, "--fps", "0"], "--fps"),
    "render --chunk 0": (lambda c: ["render", c.run, "--chunk", "0"], "--chunk"),
    "render --no-video without --pngs": (lambda c: ["render", c.run, "--no-video"], "--no-video"),
    "render --path missing.json": (lambda c: ["render", c.run, "--path", c.tmp / "missing.json"], "missing.json"),
    "render, no checkpoints": (lambda c: ["render", c.run_copy(_no_checkpoints)], "run_copy"),
    "render, not a run directory": (lambda c: ["render", c.tmp], "config.json"),
    "render, malformed config.json": (lambda c: ["render", c.run_copy(lambda r: (r / "config.json").write_text("{"))],
                                      "config.json"),
    "evaluate, no such directory": (lambda c: ["evaluate", c.tmp / "nowhere"], "nowhere"),
    "evaluate --max-views 0": (lambda c: ["evaluate", c.run, "--max-views", "0"], "--max-views"),
    "evaluate --appearance-lr 0": (lambda c: ["evaluate", c.run, "--appearance-lr", "0"], "--appearance-lr"),
    "evaluate --data missing": (lambda c: ["evaluate", c.run, "--data", c.tmp / "gone"], "gone"),
    # --- data
    "unknown data command": (lambda c: ["data", "frobnicate"], "frobnicate"),
    "data colmap --fps 0": (lambda c: ["data", "colmap", c.tmp, c.tmp / "out", "--fps", "0"], "--fps"),
    # --- what tyro refuses (its multi-line box, made one line)
    "fit --train.steps abc": (lambda c: c.fit("--train.steps", "abc"), "--train.steps"),
    "fit, unknown flag": (lambda c: c.fit("--train.stepz", "5"), "--train.stepz"),
    "render, no run directory": (lambda c: ["render"], "PATH"),
}
def _snapshot(root: Path) -> dict:
    """Every entry under ``root`` (and ``root`` itself): kind, size and modification time."""
    return {p.relative_to(root).as_posix(): (p.is_dir(), p.stat().st_size if p.is_file() else 0, p.stat().st_mtime_ns)
            for p in [root, *root.rglob("*")]}


def _assert_refused(rc: int, err: str, culprit: str, name: str) -> None:
    """Exit code 2, no traceback, and the last stderr line the one error line naming ``culprit`` (what comes
    before it: warnings only, e.g. about a damaged checkpoint passed over)."""
    lines = err.strip().splitlines()
    assert rc == 2, f"{name}: exit {rc}, stderr:\n{err[-2000:]}"
    assert "Traceback" not in err, f"{name}:\n{err[-2000:]}"
    assert lines and lines[-1].startswith("nerfkit: error: "), f"{name}: stderr:\n{err[-2000:]}"
    assert all(line.startswith("warning: ") for line in lines[:-1]), f"{name}: stderr:\n{err[-2000:]}"
    assert culprit in lines[-1], f"{name}: {lines[-1]!r} does not name {culprit!r}"


def test_the_catalogue_holds_the_issue_13_cases():
    assert len(CATALOGUE) >= 30
    for name in ("blender: all-zero rotation", "fit --time-budget -5", "render --width 0",
                 "render, every checkpoint damaged", "unknown preset", "string for a number", "NaN in a pose"):
        assert name in CATALOGUE


@pytest.mark.parametrize("name", CATALOGUE)
def test_bad_input_is_refused_in_one_line(name, fitted_run, tiny_blender_dir, tmp_path, capsys):
    build, culprit = CATALOGUE[name]
    case = Case(run=fitted_run, data=tiny_blender_dir, tmp=tmp_path)
    argv = [str(a) for a in build(case)]
    culprit = culprit(case) if callable(culprit) else culprit
    before = _snapshot(fitted_run)
    capsys.readouterr()
    try:
        rc = cli_main(argv)
    except SystemExit as e:  # argument errors from tyro
        rc = e.code
    _assert_refused(rc, capsys.readouterr().err, culprit, name)
    assert _snapshot(fitted_run) == before, f"{name}: the existing run directory changed"


def test_render_without_ffmpeg_is_refused_before_any_work_and_pngs_need_none(fitted_run, tmp_path, monkeypatch,
                                                                                capsys):
    """No ffmpeg: a video render stops at once with one line naming --video and the way out, and writes nothing;
    ``--no-video --pngs`` renders the frames without ffmpeg (the GPU machine has none)."""
    from nerfkit import runs

    monkeypatch.setenv("IMAGEIO_FFMPEG_EXE", str(tmp_path / "no-ffmpeg"))
    loaded = []
    monkeypatch.setattr(runs, "load_run", lambda *a, **k: loaded.append(a) or pytest.fail("the run was loaded"))
    capsys.readouterr()
    rc = cli_main(["render", str(fitted_run), "--frames", "2", "--out", str(tmp_path / "video")])
    err = capsys.readouterr().err
    _assert_refused(rc, err, "--video", "render without ffmpeg")
    assert "no-ffmpeg does not exist" in err and "--pngs --no-video" in err
    assert not loaded and not (tmp_path / "video").exists()
    monkeypatch.undo()
    monkeypatch.setenv("IMAGEIO_FFMPEG_EXE", str(tmp_path / "no-ffmpeg"))
    out = tmp_path / "pngs"
    assert cli_main(["render", str(fitted_run), "--frames", "2", "--no-video", "--pngs", "--out", str(out)]) == 0
    assert sorted(p.name for p in (out / "frames").iterdir()) == ["0000.png", "0001.png"]
    assert not list(out.glob("*.mp4")) and (out / "orbit_camera_path.json").is_file()


def test_user_error_in_a_subprocess(tmp_path, tiny_blender_dir):
    # The whole program, start-up included: one line on stderr, exit code 2, naming file and position.
    rc, _, err = _nerfkit(*_fit_args(tmp_path / "out", _malformed_dataset(tmp_path, tiny_blender_dir)))
    _assert_refused(rc, err, "transforms_train.json", "malformed transforms JSON")
    assert len(err.strip().splitlines()) == 1
    assert "line 3" in err


# ------------------------------------------------------------------------------- a damaged newest checkpoint
@pytest.fixture(scope="module")
def two_checkpoint_run(tmp_path_factory, tiny_blender_dir) -> Path:
    """A 4-step fit (in-process) with checkpoints 2 and 4; read-only (tests damage copies)."""
    run = tmp_path_factory.mktemp("two_ckpt") / "run"
    assert cli_main([str(a) for a in _fit_args(run, tiny_blender_dir)] + ["--train.checkpoint-every", "2"]) == 0
    assert sorted(p.name for p in (run / "checkpoints").iterdir()) == ["2", "4"]
    return run


@pytest.mark.parametrize("command, how", [("render", "truncate"), ("evaluate", "delete"), ("fit", "garbage")])
def test_damaged_newest_checkpoint_falls_back_to_the_previous(command, how, two_checkpoint_run, tiny_blender_dir,
                                                              tmp_path, capsys):
    """render, evaluate and fit --resume go on from checkpoint 2 with one warning naming the damaged checkpoint 4
    (each command with another kind of damage; tests/test_checkpoint.py has every kind for the restore itself)."""
    from nerfkit import runs

    from .test_checkpoint import damage_checkpoint

    run = tmp_path / "run"
    shutil.copytree(two_checkpoint_run, run)
    damage_checkpoint(run / "checkpoints" / "4", how)
    capsys.readouterr()
    argv = {"render": ["render", run, "--frames", 2, "--out", tmp_path / "render"],
            "evaluate": ["evaluate", run, "--max-views", 1, "--save-images", 0],
            "fit": [*_fit_args(run, tiny_blender_dir), "--train.checkpoint-every", 2, "--resume"]}[command]
    assert cli_main([str(a) for a in argv]) == 0
    out, err = capsys.readouterr()
    warnings = [line for line in err.splitlines() if line.startswith("warning: checkpoint ")]
    assert len(warnings) == 1 and str(run / "checkpoints" / "4") in warnings[0] and "damaged" in warnings[0], err
    if command == "render":
        assert "from step 2" in out
    elif command == "evaluate":
        assert json.loads((run / "eval_test" / "metrics.json").read_text())["step"] == 2
    else:  # resumed from 2, the damaged 4 set aside, and step 4 fitted again: as it was before the damage
        assert "resuming from step 2" in err and (run / "damaged_checkpoints" / "4").is_dir()
        resumed, original = runs.load_run(run), runs.load_run(two_checkpoint_run)
        assert resumed.step == original.step == 4
        for a, b in zip(jax.tree.leaves(resumed.params), jax.tree.leaves(original.params)):
            np.testing.assert_allclose(np.asarray(a), np.asarray(b), rtol=0, atol=1e-6)
