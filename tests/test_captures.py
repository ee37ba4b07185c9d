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


# ------------------------------------------------------------------------------- nerfstudio images_N/
def _write_ns(root: Path, n: int = 4, size=(24, 18), poses=None, name="frame_{:05d}.png", meta=None,
              seed: int = 0) -> list[np.ndarray]:
    """A nerfstudio capture of ``n`` random PNGs ``images/frame_00001.png``...; returns the images."""
    rng = np.random.default_rng(seed)
    (root / "images").mkdir(parents=True, exist_ok=True)
    poses = _ring(n) if poses is None else poses
    imgs, frames = [], []
    for i in range(n):
        img = rng.integers(0, 256, (size[1], size[0], 3), dtype=np.uint8)
        iio.imwrite(root / "images" / name.format(i + 1), img)
        imgs.append(img)
        frames.append({"file_path": "images/" + name.format(i + 1), "transform_matrix": poses[i].tolist()})
    doc = {"camera_model": "OPENCV", "fl_x": 20.0, "fl_y": 21.0, "cx": size[0] / 2, "cy": size[1] / 2,
           "w": size[0], "h": size[1], **(meta or {}), "frames": frames}
    (root / "transforms.json").write_text(json.dumps(doc))
    return imgs


@pytest.mark.parametrize("size, small", [((24, 18), (12, 9)), ((25, 19), (13, 10))])
def test_nerfstudio_reads_images_n_folders(tmp_path, size, small):
    """``--downscale 2`` reads ``images_2/`` (content unlike a downscale of images/), intrinsics per axis."""
    _write_ns(tmp_path, n=4, size=size)
    rng = np.random.default_rng(7)
    (tmp_path / "images_2").mkdir()
    own = {}
    for i in range(4):
        own[f"images/frame_{i + 1:05d}.png"] = img = rng.integers(0, 256, (small[1], small[0], 3), dtype=np.uint8)
        iio.imwrite(tmp_path / "images_2" / f"frame_{i + 1:05d}.png", img)
    scene = load_nerfstudio(tmp_path, downscale=2)
    for split in scene.splits.values():
        cams = split.cameras
        assert (cams.width, cams.height) == small and split.rgba.shape[1:3] == (small[1], small[0])
        np.testing.assert_allclose(cams.fx, 20.0 * small[0] / size[0], rtol=1e-6)
        np.testing.assert_allclose(cams.fy, 21.0 * small[1] / size[1], rtol=1e-6)
        np.testing.assert_allclose(cams.cx, size[0] / 2 * small[0] / size[0], rtol=1e-6)
        for name, rgba in zip(split.names, split.rgba):
            np.testing.assert_allclose(rgba[..., :3], own[name] / 255.0, atol=1e-6)
    # without images_4/ the full images are area-downscaled as before
    four = load_nerfstudio(tmp_path, downscale=4)
    assert four.splits["train"].cameras.width == size[0] // 4


def test_nerfstudio_images_n_with_a_full_size_mask_and_a_wrong_size(tmp_path):
    _write_ns(tmp_path, n=2)
    mask = np.zeros((18, 24), np.uint8)
    mask[:, 12:] = 255
    iio.imwrite(tmp_path / "mask.png", mask)
    meta = json.loads((tmp_path / "transforms.json").read_text())
    meta["frames"][1]["mask_path"] = "mask.png"
    (tmp_path / "transforms.json").write_text(json.dumps(meta))
    (tmp_path / "images_2").mkdir()
    for i in (1, 2):
        iio.imwrite(tmp_path / "images_2" / f"frame_{i:05d}.png", np.full((9, 12, 3), 200, np.uint8))
    rgba = load_nerfstudio(tmp_path, downscale=2).splits["train"].rgba[0]  # frame 2 (frame 1 is held out)
    assert np.all(rgba[:, :6] == 0) and np.allclose(rgba[:, 6:, 3], 1)
    iio.imwrite(tmp_path / "images_2" / "frame_00001.png", np.full((7, 12, 3), 200, np.uint8))
    with pytest.raises(InputError, match="not the 24x18 of the frames divided by downscale 2"):
        load_nerfstudio(tmp_path, downscale=2)
