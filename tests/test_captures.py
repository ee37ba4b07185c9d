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


# ----------------------------------------------------------------------------------------- EXIF orientation
def _exif_jpeg(path: Path, stored: np.ndarray, orientation: int = 6) -> tuple[np.ndarray, np.ndarray]:
    """Write ``stored`` (uint8 [H, W, 3]) as a JPEG tagged with an EXIF ``orientation``; returns the decoded
    (stored, EXIF-transposed) pixels as float32 in [0, 1]."""
    from PIL import Image, ImageOps

    exif = Image.Exif()
    exif[0x0112] = orientation
    Image.fromarray(stored).save(path, quality=95, exif=exif.tobytes())
    with Image.open(path) as im:
        assert im.getexif().get(0x0112) == orientation
        return np.asarray(im, np.float32) / 255, np.asarray(ImageOps.exif_transpose(im), np.float32) / 255


def _blocks(w: int, h: int, seed: int) -> np.ndarray:
    """uint8 [h, w, 3] of 4x4 blocks of random colour (JPEG keeps them apart)."""
    rng = np.random.default_rng(seed)
    return np.kron(rng.integers(0, 256, (h // 4, w // 4, 3)), np.ones((4, 4, 1))).astype(np.uint8)


@pytest.mark.parametrize("json_size, oriented", [((16, 8), False), ((8, 16), True), (None, False)])
def test_nerfstudio_exif_orientation_follows_w_h(tmp_path, json_size, oriented):
    """w/h of the stored size (COLMAP's), or none: stored pixels; w/h of the rotated size only: EXIF-turned."""
    poses = _ring(3)
    frames, expect = [], {}
    (tmp_path / "images").mkdir()
    for i in range(3):
        stored, turned = _exif_jpeg(tmp_path / "images" / f"IMG_{i}.JPG", _blocks(16, 8, i))
        expect[f"images/IMG_{i}.JPG"] = turned if oriented else stored
        frames.append({"file_path": f"images/IMG_{i}.JPG", "transform_matrix": poses[i].tolist()})
    meta = {"fl_x": 9.0, "frames": frames}
    if json_size:
        meta.update(w=json_size[0], h=json_size[1])
    (tmp_path / "transforms.json").write_text(json.dumps(meta))
    scene = load_nerfstudio(tmp_path)
    for split in scene.splits.values():
        assert (split.cameras.width, split.cameras.height) == (json_size or (16, 8))
        for name, rgba in zip(split.names, split.rgba):
            np.testing.assert_allclose(rgba[..., :3], expect[name], atol=1e-6)


def test_colmap_import_keeps_stored_pixels_of_exif_jpegs(tmp_path):
    """COLMAP ignores EXIF orientation: an imported model's w/h are the stored size and so are the pixels."""
    from nerfkit.data.colmap import import_colmap_model
    from .test_colmap import _write_text_model

    _write_text_model(tmp_path / "sparse", tmp_path / "imgs")  # 64x48 PNGs img_0.png ...
    stored = {}
    for i in range(3):
        png = tmp_path / "imgs" / f"img_{i}.png"
        png.unlink()
        # a JPEG under the .png name the model uses (PIL reads by content), tagged "rotate 90 degrees"
        stored[f"images/img_{i}.png"], _ = _exif_jpeg(png, _blocks(64, 48, i), orientation=8)
    import_colmap_model(tmp_path / "sparse", tmp_path / "imgs", tmp_path / "out")
    meta = json.loads((tmp_path / "out" / "transforms.json").read_text())
    assert (meta["w"], meta["h"]) == (64, 48)
    scene = load_nerfstudio(tmp_path / "out")
    for split in scene.splits.values():
        for name, rgba in zip(split.names, split.rgba):
            np.testing.assert_allclose(rgba[..., :3], stored[name], atol=1e-6)


@pytest.mark.parametrize("hw, oriented", [((8, 16), False), ((16, 8), True)])
def test_llff_exif_orientation_follows_the_poses_and_upper_case_extensions(tmp_path, hw, oriented):
    from nerfkit.data import llff

    (tmp_path / "images").mkdir()
    expect = []
    for i, ext in enumerate([".JPG", ".JPEG", ".jpg"] * 3):
        stored, turned = _exif_jpeg(tmp_path / "images" / f"IMG_{i}{ext}", _blocks(16, 8, i))
        expect.append(turned if oriented else stored)
    c2w = np.stack([np.concatenate([np.eye(3), [[0.1 * i], [0.0], [0.0]]], 1) for i in range(9)])
    llff.write_poses_bounds(tmp_path / "poses_bounds.npy", c2w, (*hw, 12.0), np.tile([2.0, 8.0], (9, 1)))
    scene = load_scene(tmp_path)
    split = scene.splits["train"]
    assert len(split) == 7 and (split.cameras.width, split.cameras.height) == hw[::-1]
    for name, rgba in zip(split.names, split.rgba):
        np.testing.assert_allclose(rgba[..., :3], expect[int(Path(name).stem[4:])], atol=1e-6)


def test_blender_exif_orientation_and_upper_case_png(tmp_path):
    (tmp_path / "train").mkdir()
    stored, turned = _exif_jpeg(tmp_path / "train" / "r_0.JPG", _blocks(16, 8, 0))
    iio.imwrite(tmp_path / "train" / "r_1.PNG", _blocks(8, 16, 1))
    frames = [{"file_path": f"./train/r_{i}", "transform_matrix": np.eye(4).tolist()} for i in range(2)]
    (tmp_path / "transforms_train.json").write_text(json.dumps({"fl_x": 9.0, "w": 8, "h": 16, "frames": frames}))
    split = load_scene(tmp_path).splits["train"]
    assert split.names == ("train/r_0.JPG", "train/r_1.PNG")
    np.testing.assert_allclose(split.rgba[0, ..., :3], turned, atol=1e-6)
    np.testing.assert_allclose(split.rgba[1, ..., :3], _blocks(8, 16, 1) / 255, atol=1e-6)


def test_colmap_inputs_accept_upper_case_extensions(tmp_path):
    from nerfkit.data import colmap

    src = tmp_path / "photos"
    src.mkdir()
    for name in ("A.JPG", "b.PNG", "c.JPEG", "d.jpg", "notes.TXT"):
        (src / name).write_bytes(b"")
    for name in ("A.JPG", "b.PNG", "c.JPEG", "d.jpg"):
        iio.imwrite(src / name, _blocks(8, 8, 0), extension=".png" if name.endswith("PNG") else ".jpg")
    names = colmap._input_images(src, tmp_path / "out" / "images", False, None, print)
    assert names == ["A.JPG", "b.PNG", "c.JPEG", "d.jpg"]
    assert sorted(p.name for p in (tmp_path / "out" / "images").iterdir()) == names


# ------------------------------------------------------------------------------------------- up vector
def _rot(axis, degrees: float) -> np.ndarray:
    """float64 [3, 3] rotation about ``axis`` by ``degrees`` (Rodrigues)."""
    k = np.asarray(axis, np.float64) / np.linalg.norm(axis)
    kx = np.array([[0, -k[2], k[1]], [k[2], 0, -k[0]], [-k[1], k[0], 0]])
    a = np.radians(degrees)
    return np.eye(3) + np.sin(a) * kx + (1 - np.cos(a)) * kx @ kx


TILT = _rot((1.0, 0.4, -0.2), 35.0)       # the file's world is the level world turned by this
TILT_CENTRE = np.array([2.0, -1.0, 0.5])  # ... and moved here


def _tilt(c2w_level: np.ndarray) -> np.ndarray:
    out = c2w_level.copy()
    out[:, :3, :3] = TILT @ c2w_level[:, :3, :3]
    out[:, :3, 3] = c2w_level[:, :3, 3] @ TILT.T + TILT_CENTRE
    return out


def _angle_to_z(v: np.ndarray) -> float:
    return float(np.degrees(np.arccos(np.clip(v[2] / np.linalg.norm(v), -1, 1))))


def _check_level(c2w: np.ndarray, file_to_scene: np.ndarray, radius: float) -> None:
    """The cameras' mean up is +z within a degree, the file's content lies level around the origin and an
    orbit of the cameras is a level ring with level cameras."""
    from nerfkit.camera_paths import orbit_path

    assert _angle_to_z(c2w[:, :, 1].mean(axis=0)) < 1.0
    s = np.cbrt(np.linalg.det(file_to_scene[:3, :3]))
    np.testing.assert_allclose(s, 1.0 / radius, rtol=1e-4)
    # content: a level-world point p sits at TILT p + TILT_CENTRE in the file, and must be at s Rz p in the
    # scene, Rz a turn about z (the levelling fixes the up direction, not the azimuth): level again
    level_to_scene = file_to_scene[:3, :3] @ TILT / s
    np.testing.assert_allclose(level_to_scene[2], [0, 0, 1], atol=0.02)
    np.testing.assert_allclose(level_to_scene[:, 2], [0, 0, 1], atol=0.02)
    np.testing.assert_allclose(file_to_scene[:3, :3] @ TILT_CENTRE + file_to_scene[:3, 3], 0, atol=1e-3)
    orbit = orbit_path(c2w, n_frames=12)
    np.testing.assert_allclose(orbit[:, 2, 3], orbit[0, 2, 3], atol=1e-5)     # the ring is level
    np.testing.assert_allclose(orbit[:, 2, 0], 0.0, atol=1e-5)                # cameras' x axes horizontal
    assert np.all(orbit[:, 2, 1] > 0.5)                                       # and upright


def test_nerfstudio_capture_is_levelled(tmp_path):
    level = _ring(16, radius=3.0, elevation=20.0)
    _write_ns(tmp_path, n=16, size=(8, 6), poses=_tilt(level))
    scene = load_nerfstudio(tmp_path)
    c2w = np.concatenate([s.cameras.c2w for s in scene.splits.values()]).astype(np.float64)
    assert _angle_to_z(_tilt(level)[:, :3, 1].mean(axis=0)) > 30   # the file's cameras are tilted
    _check_level(c2w, scene.file_to_scene, radius=3.0)


# ----------------------------------------------------------------------------- LLFF 360 and capture_kind
def _write_llff(root: Path, c2w: np.ndarray, size=(8, 6), bounds=(0.5, 6.0)) -> None:
    from nerfkit.data import llff

    rng = np.random.default_rng(0)
    (root / "images").mkdir(parents=True)
    for i in range(len(c2w)):
        iio.imwrite(root / "images" / f"{i:03d}.png", rng.integers(0, 256, (size[1], size[0], 3), dtype=np.uint8))
    llff.write_poses_bounds(root / "poses_bounds.npy", c2w[:, :3], (size[1], size[0], 7.0),
                            np.tile(bounds, (len(c2w), 1)))


def _forward_grid(n: int = 9) -> np.ndarray:
    rng = np.random.default_rng(1)
    out = np.tile(np.eye(4), (n, 1, 1))
    out[:, :3, 3] = np.stack([rng.uniform(-0.3, 0.3, n), rng.uniform(-0.2, 0.2, n), np.zeros(n)], 1)
    return out


def test_llff_360_capture_is_world_space_levelled_and_normalised(tmp_path):
    from nerfkit.data import capture_kind

    level = _ring(16, radius=3.0, elevation=20.0)
    _write_llff(tmp_path, _tilt(level), bounds=(1.5, 6.0))
    assert capture_kind(tmp_path) == capture_kind(tmp_path / "poses_bounds.npy") == "360"
    scene = load_scene(tmp_path)
    assert scene.depth_range is None and all(s.cameras.ndc_near is None for s in scene.splits.values())
    c2w = np.concatenate([s.cameras.c2w for s in scene.splits.values()]).astype(np.float64)
    np.testing.assert_allclose(np.linalg.norm(c2w[:, :, 3], axis=1).max(), 1.0, rtol=1e-5)  # farthest at 1
    _check_level(c2w, scene.file_to_scene, radius=3.0)
    np.testing.assert_allclose((scene.near, scene.far), (1.5 / 3.0, 6.0 / 3.0), rtol=1e-4)
    np.testing.assert_allclose(scene.aabb, [[-1.5] * 3, [1.5] * 3])


def test_llff_forward_capture_keeps_ndc(tmp_path):
    from nerfkit.data import capture_kind

    _write_llff(tmp_path, _forward_grid())
    assert capture_kind(tmp_path) == "forward"
    scene = load_scene(tmp_path)
    assert scene.splits["train"].cameras.ndc_near == 1.0 and scene.depth_range is not None


def test_capture_kind_of_nerfstudio_and_blender(tmp_path, tiny_blender_dir):
    from nerfkit.data import capture_kind

    _write_ns(tmp_path / "ring", n=8, size=(8, 6))
    _write_ns(tmp_path / "wall", n=8, size=(8, 6), poses=_forward_grid(8))
    for p in (tmp_path / "ring" / "images").iterdir():   # metadata only: no image is needed
        p.unlink()
    assert capture_kind(tmp_path / "ring") == capture_kind(tmp_path / "ring" / "transforms.json") == "360"
    assert capture_kind(tmp_path / "wall") == "forward"
    assert capture_kind(tiny_blender_dir) == capture_kind(tiny_blender_dir / "transforms_train.json") == "blender"
    with pytest.raises(InputError, match="unrecognised dataset format"):
        capture_kind(tmp_path)


@pytest.mark.skipif(not (BIRD / "poses_bounds.npy").is_file(), reason="shared bird capture not present")
def test_bird_is_360_as_poses_bounds_and_as_a_colmap_import(tmp_path):
    from nerfkit.data import capture_kind
    from nerfkit.data.colmap import import_colmap_model

    assert capture_kind(BIRD) == "360"
    import_colmap_model(BIRD / "sparse" / "0", BIRD / "images", tmp_path / "bird")
    assert capture_kind(tmp_path / "bird") == "360"
    scene = load_scene(BIRD, downscale=8, splits=("test",))
    cams = scene.splits["test"].cameras
    assert scene.depth_range is None and cams.ndc_near is None and (cams.width, cams.height) == (68, 120)
    assert _angle_to_z(cams.c2w[:, :, 1].mean(axis=0)) < 15   # the test views' up; all views' up is +z exactly
