"""Tests for nerfkit.data.nerfstudio: single-file transforms.json captures (nerfstudio / Instant-NGP)."""

from __future__ import annotations

import dataclasses
import json
from pathlib import Path

import imageio.v3 as iio
import numpy as np
import pytest

from nerfkit.cameras import all_rays, focal_from_fov, look_at
from nerfkit.data.nerfstudio import (CAMERA_RADIUS, DEFAULT_BOX_HALF, HOLDOUT, is_nerfstudio_dir, load_nerfstudio,
                                     normalisation)
from nerfkit.data.common import box_through
from nerfkit.errors import InputError

W, H = 24, 18
# Strong enough that ignoring it moves pixels near the corners by several pixels.
OPENCV = {"camera_model": "OPENCV", "fl_x": 22.0, "fl_y": 20.5, "cx": 12.7, "cy": 8.6, "w": W, "h": H,
          "k1": -0.28, "k2": 0.07, "p1": 0.012, "p2": -0.008}
CENTRE = np.array([5.0, -2.0, 3.0])


def _poses(n: int, radius: float = 4.0, centre=CENTRE, seed: int = 0) -> np.ndarray:
    """float64 [n, 4, 4] OpenGL c2w on a ring around ``centre``, looking at it (z up)."""
    rng = np.random.default_rng(seed)
    out = []
    for i in range(n):
        az = 2 * np.pi * i / n
        el = np.radians(20 + 15 * rng.uniform())
        eye = centre + radius * np.array([np.cos(el) * np.cos(az), np.cos(el) * np.sin(az), np.sin(el)])
        m = np.eye(4)
        m[:3] = look_at(eye, centre, (0, 0, 1))
        out.append(m)
    return np.stack(out)


def _write_capture(root: Path, n: int = 10, meta: dict | None = None, frame_extra: dict | None = None,
                   size=(W, H), names=None, seed: int = 0) -> Path:
    """A capture with random RGB images ``images/frame_XXXX.png`` and a transforms.json; returns its path."""
    rng = np.random.default_rng(seed)
    (root / "images").mkdir(parents=True, exist_ok=True)
    poses = _poses(n, seed=seed)
    frames = []
    for i in range(n):
        name = names[i] if names else f"frame_{i:04d}.png"
        iio.imwrite(root / "images" / name, rng.integers(0, 256, (size[1], size[0], 3), dtype=np.uint8))
        fr = {"file_path": f"images/{name}", "transform_matrix": poses[i].tolist()}
        fr.update((frame_extra or {}).get(i, {}))
        frames.append(fr)
    doc = dict(OPENCV if meta is None else meta)
    doc["frames"] = frames
    path = root / "transforms.json"
    path.write_text(json.dumps(doc))
    return path


def _edit(path: Path, fn) -> Path:
    meta = json.loads(path.read_text())
    fn(meta)
    path.write_text(json.dumps(meta))
    return path


def _expect_error(root: Path, *parts, **kwargs) -> str:
    with pytest.raises(InputError) as info:
        load_nerfstudio(root, **kwargs)
    msg = str(info.value)
    assert "\n" not in msg
    for p in parts:
        assert str(p) in msg, f"{p!r} not in {msg!r}"
    return msg


def _project(cams, dirs_world: np.ndarray, v: int) -> tuple[np.ndarray, np.ndarray]:
    """Forward model, written out independently of nerfkit.cameras: world directions of view ``v`` -> pixel
    coordinates through the pinhole + OpenCV radial-tangential distortion."""
    rot = cams.c2w[v, :, :3].astype(np.float64)
    d = dirs_world.astype(np.float64) @ rot  # camera frame (OpenGL: x right, y up, looking down -z)
    x, y = d[..., 0] / -d[..., 2], -d[..., 1] / -d[..., 2]  # OpenCV normalised coordinates (y down)
    k1, k2, p1, p2 = cams.distortion[v].astype(np.float64) if cams.distortion is not None else (0, 0, 0, 0)
    r2 = x * x + y * y
    radial = 1 + k1 * r2 + k2 * r2 * r2
    xd = x * radial + 2 * p1 * x * y + p2 * (r2 + 2 * x * x)
    yd = y * radial + p1 * (r2 + 2 * y * y) + 2 * p2 * x * y
    return cams.fx[v] * xd + cams.cx[v], cams.fy[v] * yd + cams.cy[v]


# ------------------------------------------------------------------------------------------- acceptance
@pytest.mark.parametrize("downscale", [1, 2])
def test_distorted_rays_reproject_to_their_pixels(tmp_path, downscale):
    """Every ray, pushed through pinhole + OpenCV distortion, lands within 0.1 px of its pixel centre."""
    _write_capture(tmp_path, n=9)
    scene = load_nerfstudio(tmp_path, downscale=downscale)
    assert set(scene.splits) == {"train", "test"}
    worst, worst_pinhole = 0.0, 0.0
    for split in scene.splits.values():
        cams = split.cameras
        assert (cams.width, cams.height) == (W // downscale, H // downscale)
        assert cams.distortion is not None
        np.testing.assert_allclose(cams.distortion, np.broadcast_to([-0.28, 0.07, 0.012, -0.008], (len(cams), 4)),
                                   rtol=1e-6)
        np.testing.assert_allclose(cams.fx, 22.0 / downscale, rtol=1e-6)
        _, d = all_rays(cams)
        px, py = np.meshgrid(np.arange(cams.width) + 0.5, np.arange(cams.height) + 0.5, indexing="xy")
        for v in range(len(cams)):
            u, w = _project(cams, d[v], v)
            worst = max(worst, float(np.hypot(u - px, w - py).max()))
            pin = dataclasses.replace(cams, distortion=None)
            u0, w0 = _project(pin, d[v], v)
            worst_pinhole = max(worst_pinhole, float(np.hypot(u0 - px, w0 - py).max()))
    assert worst < 0.1, worst
    assert worst_pinhole > 1.0 / downscale  # the distortion matters: a pinhole model is pixels off


def test_per_frame_intrinsics_override(tmp_path):
    path = _write_capture(tmp_path, n=9, frame_extra={
        3: {"fl_x": 30.0, "cy": 7.0, "k1": -0.1},
        5: {"fl_y": 25.0, "p2": 0.0},
    })
    scene = load_nerfstudio(path, splits=("train", "test"))  # the file's path works too
    # sorted frames 0..8; test = 0 and 8; train = 1..7 -> frame 3 is train[2], frame 5 is train[4]
    tr = scene.splits["train"]
    assert tr.names == tuple(f"images/frame_{i:04d}.png" for i in range(1, 8))
    cams = tr.cameras
    expect_fx = np.array([22, 22, 30, 22, 22, 22, 22], np.float32)
    expect_fy = np.array([20.5, 20.5, 20.5, 20.5, 25, 20.5, 20.5], np.float32)
    expect_cy = np.array([8.6, 8.6, 7.0, 8.6, 8.6, 8.6, 8.6], np.float32)
    np.testing.assert_allclose(cams.fx, expect_fx)
    np.testing.assert_allclose(cams.fy, expect_fy)
    np.testing.assert_allclose(cams.cy, expect_cy)
    np.testing.assert_allclose(cams.cx, 12.7)
    np.testing.assert_allclose(cams.distortion[:, 0], [-0.28, -0.28, -0.1, -0.28, -0.28, -0.28, -0.28], rtol=1e-6)
    np.testing.assert_allclose(cams.distortion[:, 3], [-0.008] * 4 + [0.0] + [-0.008] * 2, rtol=1e-6)


def test_camera_angle_fallback_and_pinhole(tmp_path):
    meta = {"camera_model": "PINHOLE", "camera_angle_x": 0.9, "cx": 11.0}
    _write_capture(tmp_path, n=3, meta=meta)
    scene = load_nerfstudio(tmp_path)
    cams = scene.splits["train"].cameras
    f = focal_from_fov(W, 0.9)
    np.testing.assert_allclose(cams.fx, f, rtol=1e-6)
    np.testing.assert_allclose(cams.fy, f, rtol=1e-6)
    np.testing.assert_allclose(cams.cx, 11.0)
    np.testing.assert_allclose(cams.cy, H / 2)
    assert cams.distortion is None
    assert (cams.width, cams.height) == (W, H)  # w/h absent: from the image files


def test_default_holdout_every_8th_in_file_name_order(tmp_path):
    n = 19
    names = [f"img_{i:03d}.jpg" for i in range(n)]
    path = _write_capture(tmp_path, n=n, names=names)
    _edit(path, lambda m: m.update(frames=m["frames"][::-1]))  # file order does not matter
    scene = load_nerfstudio(tmp_path)
    test = [f"images/img_{i:03d}.jpg" for i in range(0, n, HOLDOUT)]
    assert scene.splits["test"].names == tuple(test)
    assert scene.splits["train"].names == tuple(f"images/img_{i:03d}.jpg" for i in range(n) if i % HOLDOUT)
    assert "val" not in scene.splits


def test_nerfstudio_split_lists(tmp_path):
    path = _write_capture(tmp_path, n=6)
    _edit(path, lambda m: m.update(train_filenames=[f"images/frame_{i:04d}.png" for i in (0, 1, 2, 3)],
                                   val_filenames=["images/frame_0004"],  # without the extension
                                   test_filenames=["./images/frame_0005.png", "images/frame_0004.png"]))
    scene = load_nerfstudio(tmp_path)
    assert scene.splits["train"].names == tuple(f"images/frame_{i:04d}.png" for i in range(4))
    assert scene.splits["val"].names == ("images/frame_0004.png",)
    assert scene.splits["test"].names == ("images/frame_0004.png", "images/frame_0005.png")
    only = load_nerfstudio(tmp_path, splits=("test",))
    assert list(only.splits) == ["test"]
    # the same normalisation whatever splits are loaded
    np.testing.assert_allclose(only.file_to_scene, scene.file_to_scene)
    np.testing.assert_allclose(only.splits["test"].cameras.c2w, scene.splits["test"].cameras.c2w)


def test_normalisation_centres_and_scales(tmp_path):
    path = _write_capture(tmp_path, n=12)
    raw = np.array([f["transform_matrix"] for f in json.loads(path.read_text())["frames"]])
    scene = load_nerfstudio(tmp_path)
    c2w = np.concatenate([s.cameras.c2w for s in scene.splits.values()])
    pos = c2w[:, :, 3]
    np.testing.assert_allclose(np.linalg.norm(pos, axis=1).max(), CAMERA_RADIUS, rtol=1e-5)
    # the cameras all look at CENTRE, which becomes the origin: every optical axis passes through it
    fwd = -c2w[:, :, 2]
    along = np.sum(-pos * fwd, axis=1)
    np.testing.assert_allclose(-pos - along[:, None] * fwd, 0, atol=1e-5)
    m = scene.file_to_scene
    s = np.cbrt(np.linalg.det(m[:3, :3]))
    np.testing.assert_allclose(s, CAMERA_RADIUS / 4.0, rtol=1e-6)
    rot = m[:3, :3] / s  # the levelling rotation: a rotation taking the mean camera up to +z
    np.testing.assert_allclose(rot.T @ rot, np.eye(3), atol=1e-9)
    np.testing.assert_allclose(np.linalg.det(rot), 1.0, atol=1e-9)
    up = raw[:, :3, 1].mean(axis=0)
    np.testing.assert_allclose(rot @ up / np.linalg.norm(up), [0, 0, 1], atol=1e-9)
    np.testing.assert_allclose(m[:3, :3] @ CENTRE + m[:3, 3], 0, atol=1e-6)
    # rotations turned by rot; positions are file positions through file_to_scene
    ref = {f"images/frame_{i:04d}.png": raw[i] for i in range(12)}
    for split in scene.splits.values():
        for name, c in zip(split.names, split.cameras.c2w):
            np.testing.assert_allclose(c[:, :3], rot @ ref[name][:3, :3], atol=1e-6)
            np.testing.assert_allclose(c[:, 3], m[:3, :3] @ ref[name][:3, 3] + m[:3, 3], atol=1e-5)
    np.testing.assert_allclose(scene.aabb, [[-DEFAULT_BOX_HALF] * 3, [DEFAULT_BOX_HALF] * 3])
    assert 0 < scene.near < 0.05  # the cameras are inside the box
    np.testing.assert_allclose(scene.far, (1.0 + DEFAULT_BOX_HALF * np.sqrt(3)), rtol=0.15)


def test_normalisation_forward_facing_uses_mean_position():
    c2w = np.stack([np.concatenate([np.eye(3), [[x], [y], [0.0]]], 1) for x in (0, 1, 2) for y in (0, 1)])
    centre, scale = normalisation(c2w)  # parallel axes: no focus point
    np.testing.assert_allclose(centre, [1.0, 0.5, 0.0])
    np.testing.assert_allclose(scale, CAMERA_RADIUS / np.hypot(1.0, 0.5))


def test_aabb_scale_and_explicit_bounds(tmp_path):
    path = _write_capture(tmp_path, n=10)
    _edit(path, lambda m: m.update(aabb_scale=2))
    scene = load_nerfstudio(tmp_path)
    m = scene.file_to_scene
    s = np.cbrt(np.linalg.det(m[:3, :3]))
    # Instant-NGP: aabb_scale 2 with the default scale 0.33 and offset 0.5 is [-1/0.33, 1/0.33]^3 in the file;
    # the scene box holds its image under file_to_scene (8 corners through the similarity)
    np.testing.assert_allclose(scene.aabb, box_through(m, np.array([[-1 / 0.33] * 3, [1 / 0.33] * 3])), rtol=1e-5)
    # file centre (5, -2, 3) at radius 4: the box lies around the file origin, away from the cameras
    assert scene.near > 0.05
    _edit(path, lambda m: m.update(aabb=[[4, -3, 2], [6, -1, 4]], near=0.5, far=9.0))
    scene = load_nerfstudio(tmp_path)
    np.testing.assert_allclose(scene.aabb, box_through(m, np.array([[4, -3, 2], [6, -1, 4]])), atol=1e-6)
    np.testing.assert_allclose((scene.near, scene.far), (0.5 * s, 9.0 * s), rtol=1e-6)


def test_masks_multiply_alpha(tmp_path):
    mask = np.full((H, W), 255, np.uint8)
    mask[:, : W // 2] = 0
    (tmp_path / "masks").mkdir(parents=True)
    iio.imwrite(tmp_path / "masks" / "m.png", mask)
    _write_capture(tmp_path, n=3, frame_extra={1: {"mask_path": "masks/m.png"}})
    scene = load_nerfstudio(tmp_path)
    rgba = scene.splits["train"].rgba  # frames 1 and 2
    assert np.all(rgba[0, :, : W // 2] == 0)  # masked out: transparent, no colour
    assert np.all(rgba[0, :, W // 2:, 3] == 1) and rgba[0, :, W // 2:, :3].max() > 0
    assert np.all(rgba[1, ..., 3] == 1)
    half = load_nerfstudio(tmp_path, downscale=2).splits["train"].rgba
    np.testing.assert_allclose(half[0, :, : W // 4], 0)


def test_downscale_crops_to_a_multiple(tmp_path):
    _write_capture(tmp_path, n=2, meta={"fl_x": 20.0}, size=(25, 19))
    scene = load_nerfstudio(tmp_path, downscale=4)
    cams = scene.splits["train"].cameras
    assert (cams.width, cams.height) == (6, 4) and scene.splits["train"].rgba.shape == (1, 4, 6, 4)
    np.testing.assert_allclose(cams.fx, 5.0)
    np.testing.assert_allclose((cams.cx[0], cams.cy[0]), (25 / 2 / 4, 19 / 2 / 4))  # the principal point stays put


def test_is_nerfstudio_dir(tmp_path):
    assert not is_nerfstudio_dir(tmp_path)
    _write_capture(tmp_path, n=2)
    assert is_nerfstudio_dir(tmp_path)
    assert not is_nerfstudio_dir(tmp_path / "transforms.json")


# ----------------------------------------------------------------------------------------------- errors
def test_missing_image_is_skipped_with_a_warning(tmp_path, capsys):
    path = _write_capture(tmp_path, n=4)
    (tmp_path / "images" / "frame_0002.png").unlink()
    _edit(path, lambda m: m["frames"][1].update(file_path="images/nope"))  # bare name, nothing matches
    scene = load_nerfstudio(tmp_path)
    names = sum((s.names for s in scene.splits.values()), ())
    assert sorted(names) == ["images/frame_0000.png", "images/frame_0003.png"]
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and "skipped 2 of 4 frames" in err[0] and "images/nope, images/frame_0002.png" in err[0]


def test_error_every_image_missing(tmp_path):
    _write_capture(tmp_path, n=3)
    for p in (tmp_path / "images").iterdir():
        p.unlink()
    _expect_error(tmp_path, str(tmp_path / "transforms.json"), "[frames]", "every one of the 3 frames is missing",
                  "images/frame_0000.png")


def test_error_mask_missing(tmp_path):
    _write_capture(tmp_path, n=3, frame_extra={1: {"mask_path": "masks/nope"}})
    _expect_error(tmp_path, "[frames[1].mask_path]", "mask not found", "masks/nope", ".jpg")


@pytest.mark.parametrize("model, where", [("OPENCV_FISHEYE", "camera_model"), ("EQUIRECTANGULAR", "camera_model"),
                                          (3, "camera_model")])
def test_error_unknown_camera_model(tmp_path, model, where):
    path = _write_capture(tmp_path, n=3)
    _edit(path, lambda m: m.update(camera_model=model))
    msg = _expect_error(tmp_path, str(path), f"[{where}]", "unsupported camera model", "OPENCV")
    assert str(model) in msg


def test_error_unknown_camera_model_per_frame(tmp_path):
    path = _write_capture(tmp_path, n=3, frame_extra={2: {"camera_model": "FOV"}})
    _expect_error(tmp_path, str(path), "[frames[2].camera_model]", "FOV")


def test_error_malformed_json(tmp_path):
    path = _write_capture(tmp_path, n=2)
    path.write_text('{\n  "fl_x": 20,\n  "frames": [,]\n}')
    _expect_error(tmp_path, str(path), "line 3", "column 14")


@pytest.mark.parametrize("bad", [float("nan"), float("inf")])
def test_error_non_finite_pose(tmp_path, bad):
    path = _write_capture(tmp_path, n=3)
    _edit(path, lambda m: m["frames"][1]["transform_matrix"][0].__setitem__(3, bad))
    _expect_error(tmp_path, str(path), "[frames[1].transform_matrix]", "non-finite")


@pytest.mark.parametrize("edit, field", [
    (lambda m: m.pop("frames"), "[frames]"),
    (lambda m: m.update(frames=[]), "[frames]"),
    (lambda m: [m.pop(k) for k in ("fl_x", "fl_y")], "[frames[0].fl_x]"),
    (lambda m: m.update(fl_x="wide"), "[fl_x]"),
    (lambda m: m["frames"][1].update(fl_y=-3), "[frames[1].fl_y]"),
    (lambda m: m.update(k3=0.01), "[k3]"),
    (lambda m: m.update(camera_model="PINHOLE"), "[k1]"),
    (lambda m: m["frames"][0].pop("transform_matrix"), "[frames[0].transform_matrix]"),
    (lambda m: m["frames"][0].update(transform_matrix=np.diag([1, 1, -1, 1]).tolist()), "[frames[0].transform_matrix]"),
    (lambda m: m["frames"][0].update(transform_matrix=(2 * np.eye(4)).tolist()), "[frames[0].transform_matrix]"),
    (lambda m: m["frames"][1].update(file_path=7), "[frames[1].file_path]"),
    (lambda m: m["frames"][1].update(mask_path="masks/none.png"), "[frames[1].mask_path]"),
    (lambda m: m.update(test_filenames=["images/other.png"]), "[test_filenames[0]]"),
    (lambda m: m.update(train_filenames="images/frame_0000.png"), "[train_filenames]"),
    (lambda m: m.update(aabb_scale=0), "[aabb_scale]"),
    (lambda m: m.update(aabb=[[0, 0, 0], [1, 1]]), "[aabb]"),
    (lambda m: m.update(near=5.0, far=1.0), "[far]"),
])
def test_error_fields(tmp_path, edit, field):
    path = _write_capture(tmp_path, n=3)
    _edit(path, edit)
    msg = _expect_error(tmp_path, field)
    assert msg.startswith(str(path))


def test_error_frames_of_different_sizes(tmp_path):
    _write_capture(tmp_path, n=4, meta={"fl_x": 20.0})
    iio.imwrite(tmp_path / "images" / "frame_0002.png", np.zeros((H, W + 2, 3), np.uint8))
    _expect_error(tmp_path, "transforms.json", "[frames[2]]", "frame_0002.png", f"{W + 2}x{H}", f"{W}x{H}")


def test_error_image_size_vs_w_h(tmp_path):
    path = _write_capture(tmp_path, n=3)
    _edit(path, lambda m: m.update(w=30))
    _expect_error(tmp_path, str(tmp_path / "images" / "frame_0001.png"), "24x18", "30x18")


def test_error_per_frame_size_differs(tmp_path):
    _write_capture(tmp_path, n=4, frame_extra={3: {"w": 40, "h": 30}})
    _expect_error(tmp_path, "[frames[3]]", "40x30")


def test_error_mask_size(tmp_path):
    (tmp_path / "masks").mkdir(parents=True)
    iio.imwrite(tmp_path / "masks" / "m.png", np.zeros((H, W - 1), np.uint8))
    _write_capture(tmp_path, n=2, frame_extra={0: {"mask_path": "masks/m.png"}})
    _expect_error(tmp_path, str(tmp_path / "masks" / "m.png"), "mask size")


def test_error_missing_directory_and_file(tmp_path):
    _expect_error(tmp_path / "nope", "not found")
    _expect_error(tmp_path, "transforms.json")
    _expect_error(tmp_path, "[downscale]", downscale=0)
