"""``nerfkit fit`` without a preset chooses one from the data (configs.choose), and says why in one line;
``nerfkit data colmap-import`` suggests a fit command that suits the capture's image size."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import imageio.v3 as iio
import numpy as np
import pytest

from cli.main import fit_command
from cli.main import main as cli_main
from configs import PRESETS, apply_overrides, capture_kind, choose, cpu_downscale
from nerfkit.cameras import look_at
from nerfkit.data import llff
from nerfkit.errors import InputError


# ------------------------------------------------------------------------------------------- tiny data
def _ring(n: int = 12, radius: float = 4.0) -> np.ndarray:
    """float64 [n, 3, 4] OpenGL c2w around the origin, looking at it (a 360-degree capture)."""
    return np.stack([look_at((radius * np.cos(a), radius * np.sin(a), 1.0), (0.0, 0.0, 0.0))
                     for a in np.linspace(0, 2 * np.pi, n, endpoint=False)]).astype(np.float64)


def _grid(n: int = 12, seed: int = 0) -> np.ndarray:
    """float64 [n, 3, 4]: cameras on a plane looking down -z with a few degrees of jitter (forward-facing)."""
    rng = np.random.default_rng(seed)
    out = []
    for i in range(n):
        target = np.array([0.0, 0.0, -5.0]) + rng.normal(0.0, 0.15, 3)
        out.append(look_at((0.2 * (i % 4), 0.2 * (i // 4), 0.0), target, (0.0, 1.0, 0.0)))
    return np.stack(out).astype(np.float64)


def _poses_bounds(root: Path, c2w: np.ndarray) -> Path:
    root.mkdir(parents=True)
    llff.write_poses_bounds(root / "poses_bounds.npy", c2w, (48, 64, 50.0), np.tile((1.0, 10.0), (len(c2w), 1)))
    return root


def _opaque_copy(src: Path, dst: Path) -> Path:
    """The Blender-layout scene ``src`` with every image flattened to RGB (no alpha channel)."""
    shutil.copytree(src, dst)
    for png in dst.rglob("*.png"):
        iio.imwrite(png, iio.imread(png)[..., :3])
    return dst


def _nerfstudio(root: Path, colmap: bool) -> Path:
    (root / "images").mkdir(parents=True)
    frames = []
    for i, c2w in enumerate(_ring(8)):
        iio.imwrite(root / "images" / f"{i}.png", np.full((12, 16, 3), 20 * i, np.uint8))
        m = np.eye(4)
        m[:3] = c2w
        frames.append({"file_path": f"images/{i}.png", "transform_matrix": m.tolist(),
                       **({"colmap_im_id": i + 1} if colmap else {})})
    (root / "transforms.json").write_text(json.dumps({"camera_model": "PINHOLE", "fl_x": 14.0, "fl_y": 14.0,
                                                      "cx": 8.0, "cy": 6.0, "w": 16, "h": 12, "frames": frames}))
    return root


# ----------------------------------------------------------------------------------------- the chooser
def test_each_kind_of_data_gets_its_preset(tmp_path, tiny_blender_dir):
    assert choose(None)[:2] == ("demo", {})
    name, overrides, reason = choose(tiny_blender_dir)
    assert (name, overrides) == ("hash-fast", {}) and "transparent" in reason
    assert choose(tiny_blender_dir / "transforms_train.json")[0] == "hash-fast"  # the file itself
    # The same layout with opaque photographs is a real capture.
    opaque = _opaque_copy(tiny_blender_dir, tmp_path / "opaque")
    assert capture_kind(opaque) == "360" and choose(opaque)[:2] == ("real-capture", {})
    # transforms.json (nerfstudio / Instant-NGP; from COLMAP when the frames carry COLMAP's image ids).
    name, overrides, reason = choose(_nerfstudio(tmp_path / "ns", colmap=False))
    assert (name, overrides) == ("real-capture", {}) and "360-degree" in reason and "COLMAP" not in reason
    assert "transforms.json from COLMAP" in choose(_nerfstudio(tmp_path / "colmap", colmap=True))[2]
    # poses_bounds.npy: forward-facing (NDC rays, no contraction) unless the cameras surround their focus.
    forward = _poses_bounds(tmp_path / "forward", _grid())
    assert capture_kind(forward) == "forward"
    name, overrides, reason = choose(forward / "poses_bounds.npy")
    assert name == "real-capture" and overrides == {"model.contraction": False, "model.lindisp": False}
    assert "forward-facing" in reason
    around = _poses_bounds(tmp_path / "around", _ring())
    assert capture_kind(around) == "360" and choose(around)[:2] == ("real-capture", {})


def test_parallel_cameras_are_forward_facing(tmp_path):
    c2w = np.stack([np.concatenate([np.eye(3), [[x], [0.0], [0.0]]], axis=1) for x in np.linspace(0, 1, 6)])
    assert capture_kind(_poses_bounds(tmp_path / "parallel", c2w)) == "forward"  # no focus point at all


def test_not_a_dataset_is_the_loaders_error(tmp_path):
    with pytest.raises(InputError, match="not found"):
        choose(tmp_path / "nowhere")
    (tmp_path / "empty").mkdir()
    with pytest.raises(InputError, match="unrecognised dataset format"):
        choose(tmp_path / "empty")


def test_apply_overrides_and_cpu_downscale():
    cfg = apply_overrides(PRESETS["real-capture"][1], {"model.contraction": False, "train.steps": 9})
    assert not cfg.model.contraction and cfg.train.steps == 9
    assert cfg.model.coarse == PRESETS["real-capture"][1].model.coarse  # everything else kept
    assert PRESETS["real-capture"][1].model.contraction  # the preset itself is untouched
    assert [cpu_downscale(*s) for s in [(960, 544), (500, 400), (501, 10), (4032, 3024)]] == [2, 1, 2, 9]


# ------------------------------------------------------------------------------------------------- CLI
@pytest.fixture()
def fits(monkeypatch):
    """The configs ``nerfkit fit`` would fit, instead of fitting them."""
    seen = []
    monkeypatch.setattr("nerfkit.fit.fit", lambda cfg, start_time=None: seen.append(cfg) or {"stop_reason": "steps"})
    return seen


def _fit(args, capsys) -> tuple[int, list[str]]:
    capsys.readouterr()
    rc = cli_main(["fit", *map(str, args)])
    return rc, capsys.readouterr().err.strip().splitlines()


def test_cli_chooses_and_says_why_in_one_line(tmp_path, tiny_blender_dir, fits, capsys):
    forward = _poses_bounds(tmp_path / "forward", _grid())
    rc, err = _fit(["--data", forward, "--out", tmp_path / "run"], capsys)
    assert rc == 0 and len(err) == 1, err
    assert err[0].startswith("nerfkit: preset real-capture (a real forward-facing capture")
    assert err[0].endswith("poses_bounds.npy, cameras facing one way; --preset to choose another)")
    cfg = fits[-1]
    assert cfg.preset == "real-capture" and not cfg.model.contraction and not cfg.model.lindisp
    assert cfg.model.coarse == PRESETS["real-capture"][1].model.coarse and cfg.data.data == forward
    # Flags still override what was chosen.
    rc, err = _fit(["--data", forward, "--model.contraction", "--steps", "3"], capsys)
    assert fits[-1].model.contraction and fits[-1].train.steps == 3
    assert fits[-1].out == Path("runs") / "forward-real-capture"
    rc, err = _fit(["--data.data", tiny_blender_dir, "--out", tmp_path / "run"], capsys)
    assert err == [f"nerfkit: preset hash-fast (an object on a transparent background: transforms_train.json "
                   "with transparent images; --preset to choose another)"]
    assert fits[-1].preset == "hash-fast" and fits[-1].model == PRESETS["hash-fast"][1].model
    rc, err = _fit([], capsys)
    assert err == ["nerfkit: preset demo (no --data: the built-in procedural scene; --preset to choose another)"]
    assert fits[-1].preset == "demo" and fits[-1].data.data is None


def test_cli_named_presets_are_honoured(tmp_path, tiny_blender_dir, fits, capsys):
    forward = _poses_bounds(tmp_path / "forward", _grid())
    for args in (["llff", "--data", forward], ["--data", forward, "--preset", "llff"],
                 ["--preset=llff", "--data", forward]):
        rc, err = _fit(args, capsys)
        assert rc == 0 and err == [] and fits[-1].preset == "llff", args
        assert fits[-1].model == PRESETS["llff"][1].model  # no overrides on a named preset
    rc, err = _fit(["demo", "--data", tiny_blender_dir], capsys)
    assert fits[-1].preset == "demo" and fits[-1].data.data == tiny_blender_dir
    rc, err = _fit(["--preset", "nope", "--data", forward], capsys)
    assert rc == 2 and len(err) == 1 and "unknown preset 'nope'" in err[0]
    rc, err = _fit(["--data", tmp_path / "missing"], capsys)
    assert rc == 2 and len(err) == 1 and err[0].startswith("nerfkit: error: ") and "missing" in err[0]


def test_colmap_import_suggests_a_command_for_the_image_size(tmp_path, capsys):
    pytest.importorskip("pycolmap")
    from .test_colmap import _write_text_model

    _write_text_model(tmp_path / "sparse", tmp_path / "imgs")
    assert cli_main(["data", "colmap-import", str(tmp_path / "sparse"), str(tmp_path / "imgs"), str(tmp_path / "o")]) == 0
    assert f"  next: nerfkit fit --data {tmp_path / 'o'}\n" in capsys.readouterr().out  # 64x48: as it is
    assert choose(tmp_path / "o")[0] == "real-capture" and "from COLMAP" in choose(tmp_path / "o")[2]
    cams = tmp_path / "sparse" / "cameras.txt"  # the same model, as a 1280x960 camera
    cams.write_text(cams.read_text().replace("PINHOLE 64 48", "PINHOLE 1280 960"))
    assert cli_main(["data", "colmap-import", str(tmp_path / "sparse"), str(tmp_path / "imgs"), str(tmp_path / "b")]) == 0
    out = capsys.readouterr().out
    assert f"  next: nerfkit fit --data {tmp_path / 'b'} --downscale 3  # 1280x960 images" in out
    assert fit_command(Path("x"), (960, 544)) == "nerfkit fit --data x --downscale 2"
