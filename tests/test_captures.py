"""Loaders that take what people have: captures with missing images (Instant-NGP's fox), nerfstudio's
downscaled folders, phone JPEGs with an EXIF orientation, upper-case extensions, the automatic up-vector, LLFF
360-degree captures and :func:`nerfkit.data.capture_kind`."""

from __future__ import annotations

import json
from pathlib import Path

import imageio.v3 as iio
import numpy as np
import pytest

from nerfkit.cameras import look_at
from nerfkit.data import load_scene
from nerfkit.data.nerfstudio import load_nerfstudio
from nerfkit.errors import InputError

from .conftest import tiny_fit_config

BIRD = Path(__file__).parents[2] / "shared/data/bird"


def _ring(n: int, radius: float = 3.0, centre=(0.0, 0.0, 0.0), up=(0.0, 0.0, 1.0), elevation: float = 25.0,
          seed: int = 0) -> np.ndarray:
    """float64 [n, 4, 4] OpenGL c2w on a ring around ``centre`` (about ``up``), looking at it."""
    rng = np.random.default_rng(seed)
    centre = np.asarray(centre, np.float64)
    out = []
    for i in range(n):
        az = 2 * np.pi * i / n
        el = np.radians(elevation + 5 * rng.uniform(-1, 1))
        eye = centre + radius * np.array([np.cos(el) * np.cos(az), np.cos(el) * np.sin(az), np.sin(el)])
        m = np.eye(4)
        m[:3] = look_at(eye, centre, up)
        out.append(m)
    return np.stack(out)


# ------------------------------------------------------------------------------------- missing images
def _write_fox(root: Path, listed: int = 67, present: int = 50, size=(12, 8)) -> Path:
    """An Instant-NGP fox-like capture: ``listed`` frames ``images/0001.jpg``..., top-level intrinsics with
    distortion and ``aabb_scale`` 4, no split lists, and only the first ``present`` images on disk."""
    rng = np.random.default_rng(0)
    (root / "images").mkdir(parents=True)
    poses = _ring(listed)
    frames = []
    for i in range(listed):
        name = f"images/{i + 1:04d}.jpg"
        if i < present:
            iio.imwrite(root / name, rng.integers(0, 256, (size[1], size[0], 3), dtype=np.uint8))
        frames.append({"file_path": name, "sharpness": 30.0, "transform_matrix": poses[i].tolist()})
    meta = {"camera_angle_x": 0.9, "camera_angle_y": 0.6, "fl_x": 10.0, "fl_y": 10.0, "k1": 0.01, "k2": 0.0,
            "p1": 0.0, "p2": 0.0, "cx": size[0] / 2, "cy": size[1] / 2, "w": size[0], "h": size[1],
            "aabb_scale": 4, "frames": frames}
    (root / "transforms.json").write_text(json.dumps(meta))
    return root


def test_fox_like_capture_skips_missing_frames_with_one_warning_and_fits(tmp_path, capsys):
    from nerfkit.fit import fit

    root = _write_fox(tmp_path / "fox")
    scene = load_scene(root)
    names = sorted(sum((s.names for s in scene.splits.values()), ()))
    assert names == [f"images/{i:04d}.jpg" for i in range(1, 51)]
    assert len(scene.splits["train"]) + len(scene.splits["test"]) == 50
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1, err
    assert err[0].startswith("warning: ") and str(root / "transforms.json") in err[0]
    assert "skipped 17 of 67 frames" in err[0] and "images/0051.jpg, images/0052.jpg, images/0053.jpg, ..." in err[0]
    summary = fit(tiny_fit_config(tmp_path / "run", root, steps=3))
    assert summary is not None and (tmp_path / "run").is_dir()


def test_every_image_missing_is_an_error(tmp_path):
    root = _write_fox(tmp_path / "fox", listed=5, present=0)
    with pytest.raises(InputError) as info:
        load_scene(root)
    msg = str(info.value)
    assert "no usable frame" in msg and "5 frames" in msg and "transforms.json" in msg and "images/0001.jpg" in msg


def test_split_list_naming_only_missing_frames_is_an_error(tmp_path, capsys):
    root = _write_fox(tmp_path / "fox", listed=6, present=4)
    path = root / "transforms.json"
    meta = json.loads(path.read_text())
    meta.update(train_filenames=[f"images/{i:04d}.jpg" for i in (1, 2, 3, 5)], test_filenames=["images/0004.jpg"])
    path.write_text(json.dumps(meta))
    scene = load_scene(root)  # 0005 is missing: left out of train
    assert scene.splits["train"].names == ("images/0001.jpg", "images/0002.jpg", "images/0003.jpg")
    assert "skipped 2 of 6" in capsys.readouterr().err
    meta["test_filenames"] = ["images/0005.jpg", "images/0006"]
    path.write_text(json.dumps(meta))
    with pytest.raises(InputError, match=r"\[test_filenames\]: no usable frame"):
        load_scene(root)
