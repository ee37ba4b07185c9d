"""Tests for LLFF forward-facing captures: NDC rays (nerfkit.cameras.ndc_rays), the spiral path, the loader
(nerfkit.data.llff) on a procedural capture written in the exact LLFF layout, its errors, and a short fit with
the ``llff`` preset that must reach 26 dB on the held-out views.

The procedural capture: a wavy-textured backdrop wall and four objects (two spheres, two boxes; Lambertian +
mild Blinn-Phong, hard shadows, from :mod:`nerfkit.data.demo`) 2.35 to 7 units in front of a 4 x 5 grid of
cameras on a plane, looking down -z with a few degrees of jitter, as a hand-held forward-facing capture. The
poses are then moved into an arbitrary "COLMAP" frame (rotation, translation, scale) and written as
``poses_bounds.npy`` in LLFF's [down, right, backwards] axis order, the images as ``images/IMG_*.png`` at
full size (8x) and ``images_8/`` area-downscaled, exactly as LLFF's ``imgs2poses.py`` + minify leave them.
"""

from __future__ import annotations

import dataclasses
import json
import shutil
import time
from pathlib import Path

import imageio.v3 as iio
import jax
import jax.numpy as jnp
import numpy as np
import pytest

from nerfkit import cameras as cam
from nerfkit import camera_paths, runs
from nerfkit.data import load_scene
from nerfkit.data import llff
from nerfkit.data.demo import Box, Material, Sphere, render_views, solid
from nerfkit.data.images import area_downscale
from nerfkit.errors import InputError
from nerfkit.types import Cameras

# ----------------------------------------------------------------------------------- procedural capture
N_ROWS, N_COLS = 4, 5          # 20 views: 0, 8 and 16 are held out
SMALL_W, SMALL_H = 32, 24      # images_8/ size (the preset's downscale); images/ is 8x this
FACTOR = 8
FOV_X = np.radians(55.0)
BOUNDS = (2.0, 7.5)            # near/far depth per image (the closest object is 2.35 away, the wall 7)


def _wave(k, c0, c1):
    """Albedo ``c0 + (c1 - c0) * (0.5 + 0.5 sin(k . q))`` of object-space points q [3, R]."""
    k, c0, c1 = np.float32(k)[:, None], np.float32(c0)[:, None], np.float32(c1)[:, None]
    return lambda q: (c0 + (c1 - c0) * (0.5 + 0.5 * np.sin((k * q).sum(axis=0)))[None]).astype(np.float32)


def _primitives():
    return [
        Box((-6, -4.5, -7.2), (6, 4.5, -7.0), Material(_wave((2.0, 1.2, 0.0), (0.85, 0.80, 0.65), (0.25, 0.35, 0.6)))),
        Sphere((-0.9, 0.3, -4.0), 0.8, Material(_wave((0, 0, 5.0), (0.85, 0.2, 0.1), (0.95, 0.8, 0.5)), ks=0.2,
                                                shininess=20)),
        Box((0.4, -1.5, -4.8), (1.6, 0.2, -3.6), Material(_wave((3.0, 3.0, 0.0), (0.15, 0.3, 0.8), (0.95, 0.8, 0.2)))),
        Sphere((0.9, 0.9, -2.8), 0.45, Material(solid((0.2, 0.7, 0.3)), ks=0.3, shininess=30)),
        Box((-2.2, -1.7, -5.6), (-1.2, -0.6, -4.6), Material(solid((0.9, 0.5, 0.1)))),
    ]


def _rotation(axis_angle) -> np.ndarray:
    """Rodrigues: float64 [3, 3] rotation about ``axis_angle`` by its norm (radians)."""
    v = np.asarray(axis_angle, np.float64)
    a = np.linalg.norm(v)
    if a < 1e-12:
        return np.eye(3)
    k = v / a
    kx = np.array([[0, -k[2], k[1]], [k[2], 0, -k[0]], [-k[1], k[0], 0]])
    return np.eye(3) + np.sin(a) * kx + (1 - np.cos(a)) * kx @ kx


def _grid_cameras(width: int, height: int, spacing: float = 0.18, seed: int = 0) -> Cameras:
    """Row-major 4 x 5 grid on the z = 0 plane (capture order), looking down -z with ~2 degrees of jitter."""
    rng = np.random.default_rng(seed)
    c2w = []
    for r in range(N_ROWS):
        for c in range(N_COLS):
            pos = np.array([(c - (N_COLS - 1) / 2) * spacing, ((N_ROWS - 1) / 2 - r) * spacing, 0.0])
            pos += rng.normal(0.0, 0.02, 3)
            c2w.append(np.concatenate([_rotation(rng.normal(0.0, np.radians(2.0), 3)), pos[:, None]], axis=1))
    n = len(c2w)
    f = np.full(n, 0.5 * width / np.tan(0.5 * FOV_X), np.float32)
    return Cameras(c2w=np.asarray(c2w, np.float32), fx=f, fy=f.copy(), cx=np.full(n, width / 2.0, np.float32),
                   cy=np.full(n, height / 2.0, np.float32), width=width, height=height)


# An arbitrary similarity (scale s, rotation R, translation t) from the scene frame to the stored "COLMAP"
# frame: x' = s R x + t. The loader's rescaling and recentring must undo it.
_SIM = (3.7, _rotation((0.4, -1.1, 0.7)), np.array([2.0, -5.0, 1.5]))


def _to_colmap(c2w: np.ndarray, sim=_SIM) -> np.ndarray:
    s, r, t = sim
    c2w = np.asarray(c2w, np.float64)
    return np.concatenate([r @ c2w[:, :, :3], (s * (r @ c2w[:, :, 3:]) + t[:, None])], axis=-1)


def _save_rgb(path: Path, rgba: np.ndarray) -> None:
    iio.imwrite(path, np.round(np.clip(rgba[..., :3], 0.0, 1.0) * 255.0).astype(np.uint8))


def write_capture(root: Path, small_w: int = SMALL_W, small_h: int = SMALL_H, factor: int = FACTOR, sim=_SIM):
    """Write the procedural capture in LLFF layout; returns (scene-frame cameras at full size, stored c2w)."""
    cams = _grid_cameras(small_w * factor, small_h * factor)
    full = render_views(cams, supersample=1, prims=_primitives())  # each images_8 pixel averages 64 rays
    (root / "images").mkdir(parents=True)
    (root / f"images_{factor}").mkdir()
    for i, img in enumerate(full):
        _save_rgb(root / "images" / f"IMG_{i:04d}.png", img)
        _save_rgb(root / f"images_{factor}" / f"IMG_{i:04d}.png", area_downscale(img, factor))
    stored = _to_colmap(cams.c2w, sim)
    s = sim[0]
    llff.write_poses_bounds(root / "poses_bounds.npy", stored, (cams.height, cams.width, float(cams.fx[0])),
                            np.tile(np.float64(BOUNDS) * s, (len(cams), 1)))
    return cams, stored


@pytest.fixture(scope="module")
def capture(tmp_path_factory) -> Path:
    """The procedural capture (read-only; tests that break files copy it)."""
    root = tmp_path_factory.mktemp("llff") / "capture"
    write_capture(root)
    return root


@pytest.fixture()
def tiny_capture(tmp_path) -> Path:
    """A 16 x 12 capture of 10 views with images/ only, for error tests (writable)."""
    root = tmp_path / "tiny"
    cams = _grid_cameras(16, 12)
    cams = cams.subset(np.arange(10))
    (root / "images").mkdir(parents=True)
    for i, img in enumerate(render_views(cams, supersample=1, prims=_primitives())):
        _save_rgb(root / "images" / f"{i:03d}.png", img)
    llff.write_poses_bounds(root / "poses_bounds.npy", cams.c2w, (12, 16, float(cams.fx[0])),
                            np.tile(BOUNDS, (10, 1)))
    return root


# ------------------------------------------------------------------------------------------------- NDC
def _project(p, fx, fy, cx, cy, w, h, near):
    """Reference NDC of world points p [..., 3] via the reference camera's continuous pixel coordinates."""
    u = cx + fx * p[..., 0] / -p[..., 2]
    v = cy - fy * p[..., 1] / -p[..., 2]  # rows grow downwards, +y is up
    return np.stack([2 * u / w - 1, 1 - 2 * v / h, 1 + 2 * near / p[..., 2]], axis=-1)


def _nerf_pytorch_ndc(h, w, focal, near, rays_o, rays_d):
    """nerf-pytorch's ``ndc_rays``, transcribed (NumPy instead of torch)."""
    t = -(near + rays_o[..., 2]) / rays_d[..., 2]
    rays_o = rays_o + t[..., None] * rays_d
    o0 = -1. / (w / (2. * focal)) * rays_o[..., 0] / rays_o[..., 2]
    o1 = -1. / (h / (2. * focal)) * rays_o[..., 1] / rays_o[..., 2]
    o2 = 1. + 2. * near / rays_o[..., 2]
    d0 = -1. / (w / (2. * focal)) * (rays_d[..., 0] / rays_d[..., 2] - rays_o[..., 0] / rays_o[..., 2])
    d1 = -1. / (h / (2. * focal)) * (rays_d[..., 1] / rays_d[..., 2] - rays_o[..., 1] / rays_o[..., 2])
    d2 = -2. * near / rays_o[..., 2]
    return np.stack([o0, o1, o2], -1), np.stack([d0, d1, d2], -1)


def _random_rays(n=200, seed=0):
    rng = np.random.default_rng(seed)
    o = rng.uniform(-0.4, 0.4, (n, 3))
    d = np.concatenate([rng.uniform(-0.6, 0.6, (n, 2)), -np.ones((n, 1))], axis=-1)
    return o, d / np.linalg.norm(d, axis=-1, keepdims=True)


@pytest.mark.parametrize("cx, cy", [(None, None), (21.0, 13.5)])
def test_ndc_rays_analytic(cx, cy):
    fx, fy, w, h, near = 50.0, 47.0, 40, 30, 1.0
    o, d = _random_rays()
    o_ndc, d_ndc = cam.ndc_rays(o, d, fx, fy, cx, cy, w, h, near)
    pcx, pcy = (w / 2, h / 2) if cx is None else (cx, cy)
    # The origin moves to the near plane: NDC z = -1; the direction spans z from -1 to +1.
    np.testing.assert_allclose(o_ndc[:, 2], -1.0, atol=1e-12)
    np.testing.assert_allclose(d_ndc[:, 2], 2.0, atol=1e-12)
    # Points on the world ray (beyond the near plane) map to points of the NDC ray, at parameter
    # s = (z_ndc + 1) / 2 in [0, 1).
    for depth in (1.0, 1.3, 2.0, 5.0, 40.0, 1e4):
        t = (depth + o[:, 2]) / -d[:, 2]  # world z = -depth
        p_ndc = _project(o + t[:, None] * d, fx, fy, pcx, pcy, w, h, near)
        s = (p_ndc[:, 2:] + 1.0) / 2.0
        np.testing.assert_allclose(p_ndc, o_ndc + s * d_ndc, atol=1e-9)
        np.testing.assert_allclose(s, 1.0 - near / depth, atol=1e-12)  # linear in inverse depth
    # t -> inf: the image of the ray's point at infinity (the vanishing point of its direction) is o + d.
    vanish = np.stack([-(2 * fx / w) * d[:, 0] / d[:, 2] + 2 * pcx / w - 1,
                       -(2 * fy / h) * d[:, 1] / d[:, 2] + 1 - 2 * pcy / h, np.ones(len(d))], axis=-1)
    np.testing.assert_allclose(o_ndc + d_ndc, vanish, atol=1e-9)


def test_ndc_rays_match_nerf_pytorch_at_centred_principal_point():
    o, d = _random_rays(seed=1)
    ref_o, ref_d = _nerf_pytorch_ndc(30, 40, 50.0, 1.0, o, d)
    o_ndc, d_ndc = cam.ndc_rays(o, d, 50.0, 50.0, 20.0, 15.0, 40, 30, 1.0)
    np.testing.assert_allclose(o_ndc, ref_o, atol=1e-12)
    np.testing.assert_allclose(d_ndc, ref_d, atol=1e-12)


def _ndc_cameras(n=3, w=8, h=6, seed=0) -> Cameras:
    rng = np.random.default_rng(seed)
    c2w = np.stack([np.concatenate([_rotation(rng.normal(0, 0.05, 3)), rng.normal(0, 0.1, (3, 1))], 1)
                    for _ in range(n)])
    one = lambda v: np.full(n, v, np.float32)  # noqa: E731
    return Cameras(c2w=c2w.astype(np.float32), fx=one(7.0), fy=one(7.5), cx=one(w / 2), cy=one(h / 2), width=w,
                   height=h, ndc_near=1.0)


def test_ndc_cameras_every_ray_path_agrees():
    cams = _ndc_cameras()
    world = dataclasses.replace(cams, ndc_near=None)
    o, d, vd = cam.all_rays(cams, with_viewdirs=True)
    assert o.dtype == d.dtype == np.float32 and o.shape == (3, 6, 8, 3)
    ow, dw = cam.all_rays(world)
    np.testing.assert_allclose(vd, dw, atol=1e-7)  # viewdirs are the unit world directions
    px, py = cam.pixel_grid(cams.width, cams.height, np)
    for i in range(len(cams)):
        ref_o, ref_d = cam.ndc_rays(ow[i].astype(np.float64), dw[i].astype(np.float64), 7.0, 7.5, 4.0, 3.0, 8, 6, 1.0)
        np.testing.assert_allclose(o[i], ref_o, atol=1e-5)
        np.testing.assert_allclose(d[i], ref_d, atol=1e-5)
        for xnp in (np, jnp):
            r = cam.image_rays(cams, i, xnp)
            np.testing.assert_allclose(np.asarray(r.origins), o[i], atol=1e-5)
            np.testing.assert_allclose(np.asarray(r.directions), d[i], atol=1e-5)
            np.testing.assert_allclose(np.asarray(r.viewdirs), dw[i], atol=1e-6)
        r = jax.jit(lambda c2w, px, py: cam.jnp_pixel_rays(c2w, 7.0, 7.5, 4.0, 3.0, px, py, width=8, height=6,
                                                             ndc_near=1.0))(jnp.asarray(cams.c2w[i]), px, py)
        np.testing.assert_allclose(np.asarray(r.origins), o[i], atol=1e-5)
        np.testing.assert_allclose(np.asarray(r.directions), d[i], atol=1e-5)


def test_ndc_pixel_centres_of_the_reference_camera():
    # A camera at the origin looking down -z: NDC x, y of each ray are its pixel centre's normalised
    # coordinates, so the image's outer edges are at +-1 (pixel i covers [i, i + 1)).
    w, h = 8, 6
    c2w = np.concatenate([np.eye(3), np.zeros((3, 1))], 1)[None].astype(np.float32)
    one = lambda v: np.array([v], np.float32)  # noqa: E731
    cams = Cameras(c2w=c2w, fx=one(7.0), fy=one(7.0), cx=one(w / 2), cy=one(h / 2), width=w, height=h, ndc_near=1.0)
    r = cam.image_rays(cams, 0)
    px, py = cam.pixel_grid(w, h)
    np.testing.assert_allclose(r.origins[..., 0], 2 * px / w - 1, atol=1e-6)
    np.testing.assert_allclose(r.origins[..., 1], 1 - 2 * py / h, atol=1e-6)
    np.testing.assert_allclose(r.directions[..., :2], 0.0, atol=1e-6)  # rays through the centre of projection


def test_ndc_near_survives_subset_scaled_and_run_json():
    cams = _ndc_cameras()
    assert cams.subset([0, 2]).ndc_near == 1.0 and cams.scaled(2.0).ndc_near == 1.0
    back = runs._cams_from_json(json.loads(json.dumps(runs._cams_to_json(cams))))
    assert back.ndc_near == 1.0 and back.distortion is None
    np.testing.assert_array_equal(back.c2w, cams.c2w)
    plain = runs._cams_from_json(json.loads(json.dumps(runs._cams_to_json(dataclasses.replace(cams, ndc_near=None)))))
    assert plain.ndc_near is None
    # The NDC map depends on fx / W, fy / H, cx / W, cy / H only: a resized image gives the same rays.
    big = cams.scaled(2.0)
    px, py = cam.pixel_grid(cams.width, cams.height, jnp)
    for i in range(len(cams)):
        small = cam.image_rays(cams, i)
        same = cam.jnp_pixel_rays(jnp.asarray(big.c2w[i]), big.fx[i], big.fy[i], big.cx[i], big.cy[i], 2 * px, 2 * py,
                                  width=big.width, height=big.height, ndc_near=big.ndc_near)
        np.testing.assert_allclose(np.asarray(same.origins), small.origins, atol=1e-5)
        np.testing.assert_allclose(np.asarray(same.directions), small.directions, atol=1e-5)


# ----------------------------------------------------------------------------------------------- spiral
def test_spiral_path_shape_radii_and_focus():
    # Training cameras on a symmetric grid with identity rotations: the average pose is the identity.
    xs, ys = np.meshgrid(np.linspace(-0.3, 0.3, 5), np.linspace(-0.2, 0.2, 4))
    t = np.stack([xs.ravel(), ys.ravel(), np.zeros(xs.size)], axis=-1)
    c2w = np.concatenate([np.tile(np.eye(3), (len(t), 1, 1)), t[:, :, None]], axis=-1)
    near, far = 1.3, 8.0
    path = camera_paths.spiral_path(c2w, near, far)
    assert path.shape == (120, 3, 4) and path.dtype == np.float32
    rot = path[:, :, :3].astype(np.float64)
    np.testing.assert_allclose(rot.transpose(0, 2, 1) @ rot, np.broadcast_to(np.eye(3), rot.shape), atol=1e-5)
    np.testing.assert_allclose(np.linalg.det(rot), 1.0, atol=1e-5)
    # Positions: (r_x cos th, -r_y sin th, -r_z sin(th / 2)) with r the 90th percentile of |t| (r_z = 0 here),
    # th = 2 pi * 2 * k / 120 (two turns, the last frame not repeating the first).
    th = np.linspace(0, 4 * np.pi, 121)[:-1]
    rx, ry = np.percentile(np.abs(t[:, 0]), 90), np.percentile(np.abs(t[:, 1]), 90)
    np.testing.assert_allclose(path[:, :, 3], np.stack([rx * np.cos(th), -ry * np.sin(th), 0 * th], -1), atol=1e-6)
    # Every frame looks at the focus point on the average camera's axis, at LLFF's focus depth; up stays +y.
    focus = 1.0 / (0.25 / (0.9 * near) + 0.75 / (5.0 * far))
    to_focus = np.array([0.0, 0.0, -focus]) - path[:, :, 3]
    to_focus /= np.linalg.norm(to_focus, axis=-1, keepdims=True)
    np.testing.assert_allclose(-path[:, :, 2], to_focus, atol=1e-6)
    assert np.all(path[:, 1, 1] > 0.99) and np.all(path[:, 0, 0] > 0.99)


def test_spiral_path_follows_the_average_pose():
    # Rotating and translating the training cameras rigidly moves the spiral with them.
    cams = _grid_cameras(48, 36)
    c2w = cams.c2w.astype(np.float64)
    path = camera_paths.spiral_path(c2w, 2.0, 7.0, n_frames=10)
    # In the frame of the average pose (rotation only; LLFF takes the radii from absolute positions, which is
    # why its loader recentres first), the path's geometry is the one above.
    avg = camera_paths.average_pose(c2w)
    assert np.abs(avg[:, :3] - np.eye(3)).max() < 0.05
    focus_pt = avg @ np.array([0.0, 0.0, -1.0 / (0.25 / 1.8 + 0.75 / 35.0), 1.0])
    view = -path[:, :, 2]
    to_focus = focus_pt - path[:, :, 3]
    np.testing.assert_allclose(view, to_focus / np.linalg.norm(to_focus, axis=-1, keepdims=True), atol=1e-5)
    with pytest.raises(ValueError):
        camera_paths.spiral_path(c2w, 0.0, 7.0)


# --------------------------------------------------------------------------------------------- loading
def test_axis_conversion_round_trip(capture):
    rng = np.random.default_rng(0)
    poses = rng.normal(size=(4, 3, 5))
    np.testing.assert_array_equal(llff.opengl_to_llff(llff.llff_to_opengl(poses)), poses)
    # LLFF's columns are [down, right, backwards]: OpenGL [right, up, backwards] = [c1, -c0, c2].
    gl = llff.llff_to_opengl(poses)
    np.testing.assert_array_equal(gl[:, :, 0], poses[:, :, 1])
    np.testing.assert_array_equal(gl[:, :, 1], -poses[:, :, 0])
    np.testing.assert_array_equal(gl[:, :, 2:], poses[:, :, 2:])
    # The file on disk: N x 17, rows = 3x5 row-major + bounds, in LLFF order.
    arr = np.load(capture / "poses_bounds.npy")
    assert arr.shape == (20, 17)
    mats = arr[:, :15].reshape(-1, 3, 5)
    cams = _grid_cameras(SMALL_W * FACTOR, SMALL_H * FACTOR)
    stored = _to_colmap(cams.c2w)
    np.testing.assert_allclose(mats[:, :, 0], -stored[:, :, 1], atol=1e-12)  # down = -up
    np.testing.assert_allclose(mats[:, :, 1], stored[:, :, 0], atol=1e-12)   # right
    hwf = [SMALL_H * FACTOR, SMALL_W * FACTOR, cams.fx[0]]
    np.testing.assert_allclose(mats[:, :, 4], np.tile(hwf, (20, 1)), rtol=1e-6)
    c2w, hwf, bounds = llff.read_poses_bounds(capture / "poses_bounds.npy")
    np.testing.assert_allclose(c2w, stored, atol=1e-12)  # un-doing the conversion gives the poses back
    np.testing.assert_allclose(bounds, np.tile(np.float64(BOUNDS) * _SIM[0], (20, 1)))


def test_load_capture_poses_holdout_and_ndc(capture, tmp_path):
    scene = load_scene(capture, downscale=FACTOR)
    assert set(scene.splits) == {"train", "test"}
    train, test = scene.splits["train"], scene.splits["test"]
    # Every 8th image is held out.
    assert test.names == ("images_8/IMG_0000.png", "images_8/IMG_0008.png", "images_8/IMG_0016.png")
    assert train.names == tuple(f"images_8/IMG_{i:04d}.png" for i in range(20) if i % 8)
    for split in (train, test):
        assert split.rgba.shape == (len(split.names), SMALL_H, SMALL_W, 4)
        for k, name in enumerate(split.names):
            np.testing.assert_array_equal(np.round(split.rgba[k, ..., :3] * 255), iio.imread(capture / name))
        np.testing.assert_array_equal(split.rgba[..., 3], 1.0)
    # NDC scene: near 0, far 1, NDC cameras, box covering [-1, 1]^3.
    assert (scene.near, scene.far) == (0.0, 1.0)
    assert train.cameras.ndc_near == test.cameras.ndc_near == 1.0
    assert np.all(scene.aabb[0] <= -1.0) and np.all(scene.aabb[1] >= 1.0)
    np.testing.assert_allclose(scene.aabb[:, 2], [-1.0, 1.0])
    o, d = cam.all_rays(train.cameras)
    for p in (o, o + d):
        assert np.all(p >= scene.aabb[0] - 1e-5) and np.all(p <= scene.aabb[1] + 1e-5)
    # Intrinsics rescaled to images_8: focal / 8, centred principal point.
    f_full = 0.5 * SMALL_W * FACTOR / np.tan(0.5 * FOV_X)
    np.testing.assert_allclose(train.cameras.fx, f_full / FACTOR, rtol=1e-6)
    np.testing.assert_allclose(train.cameras.fy, f_full / FACTOR, rtol=1e-6)
    np.testing.assert_allclose(train.cameras.cx, SMALL_W / 2)
    np.testing.assert_allclose(train.cameras.cy, SMALL_H / 2)

    # Poses: rescaled so the closest bound is 1 / 0.75, recentred so the average pose is the identity, and
    # otherwise the capture's own geometry (the arbitrary COLMAP frame is gone).
    assert scene.depth_range == pytest.approx((1 / 0.75, BOUNDS[1] / BOUNDS[0] / 0.75))
    c2w = np.empty((20, 3, 4))
    c2w[np.arange(20) % 8 != 0], c2w[::8] = train.cameras.c2w, test.cameras.c2w
    np.testing.assert_allclose(camera_paths.average_pose(c2w), np.eye(3, 4), atol=1e-5)
    orig = _grid_cameras(SMALL_W * FACTOR, SMALL_H * FACTOR).c2w.astype(np.float64)
    sc = 1.0 / (BOUNDS[0] * 0.75)  # scene units -> loaded units (the COLMAP scale cancels)
    rel = lambda m: m[0, :, :3].T @ m[:, :, :3]  # noqa: E731  rotations relative to view 0 (frame-free)
    np.testing.assert_allclose(rel(c2w), rel(orig), atol=1e-5)
    dist = lambda m: np.linalg.norm(m[:, None, :, 3] - m[None, :, :, 3], axis=-1)  # noqa: E731
    np.testing.assert_allclose(dist(c2w), sc * dist(orig), atol=1e-5)
    # The stored frame does not matter: the same capture stored in the scene frame loads identically.
    same = tmp_path / "same"
    shutil.copytree(capture, same)
    llff.write_poses_bounds(same / "poses_bounds.npy", orig, (SMALL_H * FACTOR, SMALL_W * FACTOR, f_full),
                            np.tile(BOUNDS, (20, 1)))
    scene2 = load_scene(same / "poses_bounds.npy", downscale=FACTOR, splits=("train",))
    assert set(scene2.splits) == {"train"}
    np.testing.assert_allclose(scene2.splits["train"].cameras.c2w, train.cameras.c2w, atol=1e-5)


def test_downscale_from_full_images_matches_images_8(capture, tmp_path):
    root = tmp_path / "no_images_8"
    shutil.copytree(capture, root, ignore=shutil.ignore_patterns("images_8"))
    a = load_scene(capture, downscale=FACTOR, splits=("test",)).splits["test"]
    b = load_scene(root, downscale=FACTOR, splits=("test",)).splits["test"]
    assert b.names[0] == "images/IMG_0000.png"
    assert np.abs(a.rgba - b.rgba).max() <= 1.5 / 255  # both area filters of the same pixels, 8-bit rounded
    for k in ("fx", "fy", "cx", "cy"):
        np.testing.assert_allclose(getattr(a.cameras, k), getattr(b.cameras, k), rtol=1e-6)
    full = load_scene(root, downscale=1, splits=("test",)).splits["test"]
    assert full.rgba.shape[1:3] == (SMALL_H * FACTOR, SMALL_W * FACTOR)
    np.testing.assert_allclose(full.cameras.fx, a.cameras.fx * FACTOR, rtol=1e-6)


# ----------------------------------------------------------------------------------------------- errors
def _expect(root, *parts):
    with pytest.raises(InputError) as err:
        load_scene(root)
    msg = str(err.value)
    assert "\n" not in msg
    for p in parts:
        assert p in msg, f"{p!r} not in {msg!r}"
    return err.value


def _rewrite(root: Path, edit) -> None:
    arr = np.load(root / "poses_bounds.npy")
    np.save(root / "poses_bounds.npy", edit(arr))


def test_error_missing_poses_bounds(tiny_capture):
    (tiny_capture / "poses_bounds.npy").unlink()
    _expect(tiny_capture, "poses_bounds.npy", "missing")
    with pytest.raises(InputError, match="poses_bounds.npy"):
        llff.load_llff(tiny_capture)


@pytest.mark.parametrize("shape", [(10, 15), (10, 3, 5), (0, 17)])
def test_error_wrong_shape(tiny_capture, shape):
    np.save(tiny_capture / "poses_bounds.npy", np.zeros(shape))
    err = _expect(tiny_capture, "poses_bounds.npy", "[shape]", "N x 17")
    assert err.field == "shape"


def test_error_not_an_npy(tiny_capture):
    (tiny_capture / "poses_bounds.npy").write_text("not numpy")
    _expect(tiny_capture, "poses_bounds.npy", "cannot read")


def test_error_nan_pose(tiny_capture):
    def edit(a):
        a[3, 8] = np.nan  # row 3: the 3x5 matrix is row-major, so index 8 is the translation y
        return a
    _rewrite(tiny_capture, edit)
    _expect(tiny_capture, "poses_bounds.npy", "[poses[3]]", "non-finite")


def test_error_inf_bound(tiny_capture):
    def edit(a):
        a[5, 16] = np.inf
        return a
    _rewrite(tiny_capture, edit)
    _expect(tiny_capture, "poses_bounds.npy", "[bounds[5]]", "non-finite")


def test_error_bad_bounds(tiny_capture):
    def edit(a):
        a[1, 15] = 0.0
        return a
    _rewrite(tiny_capture, edit)
    _expect(tiny_capture, "poses_bounds.npy", "[bounds[1]]")


def test_error_degenerate_rotation(tiny_capture):
    def edit(a):
        m = a[:, :15].reshape(-1, 3, 5)
        m[2, :, 0] *= 3.0  # a scaled axis
        m[4, :, 1] = m[4, :, 0]  # two equal axes (rank 2)
        a[:, :15] = m.reshape(-1, 15)
        return a
    _rewrite(tiny_capture, edit)
    _expect(tiny_capture, "poses_bounds.npy", "[poses[2].rotation]", "degenerate")


def test_error_mirrored_rotation(tiny_capture):
    def edit(a):
        m = a[:, :15].reshape(-1, 3, 5)
        m[6, :, 2] *= -1.0
        a[:, :15] = m.reshape(-1, 15)
        return a
    _rewrite(tiny_capture, edit)
    _expect(tiny_capture, "[poses[6].rotation]", "mirrored")


def test_error_fewer_images_than_poses(tiny_capture):
    (tiny_capture / "images" / "004.png").unlink()
    _expect(tiny_capture, str(tiny_capture / "images"), "[images]", "9 images", "10 poses", "poses_bounds.npy")


def test_error_more_images_than_poses(tiny_capture):
    shutil.copy(tiny_capture / "images" / "004.png", tiny_capture / "images" / "010.jpg")
    _expect(tiny_capture, "[images]", "11 images", "10 poses")


def test_error_image_size_mismatch(tiny_capture):
    iio.imwrite(tiny_capture / "images" / "003.png", np.zeros((12, 18, 3), np.uint8))
    _expect(tiny_capture, "003.png", "18x12", "16x12")


def test_error_missing_images_dir(tiny_capture):
    shutil.rmtree(tiny_capture / "images")
    _expect(tiny_capture, "images", "missing")


def test_error_downscale_not_divisible(tiny_capture):
    with pytest.raises(InputError, match=r"not divisible by downscale 3.*\[downscale\]|\[downscale\].*divisible"):
        load_scene(tiny_capture, downscale=3)


def test_error_aspect_ratio(tiny_capture):
    def edit(a):
        a[:, 9] = 30.0  # width in the hwf column (row 1, column 4)
        return a
    _rewrite(tiny_capture, edit)
    _expect(tiny_capture, "poses_bounds.npy", "[poses[0].hwf]", "aspect ratio")


def test_cli_error_is_one_line_exit_2(tiny_capture, tmp_path, capsys):
    from cli.main import main as cli_main

    _rewrite(tiny_capture, lambda a: a[:, :16])
    rc = cli_main(["fit", "llff", "--data", str(tiny_capture), "--out", str(tmp_path / "run")])
    err = capsys.readouterr().err.strip()
    assert rc == 2, err
    assert len(err.splitlines()) == 1 and "poses_bounds.npy" in err and "[shape]" in err, err
    assert not (tmp_path / "run" / "checkpoints").exists()


# ------------------------------------------------------------------------------------------ acceptance
FIT_STEPS = 1000  # the preset's 128 rays per step; about 30-45 s of fitting on the 2-core CPU


@pytest.mark.slow  # ~35 s of fitting
def test_fit_llff_preset_held_out_psnr(capture, tmp_path):
    """`nerfkit fit llff --data CAPTURE`, shortened, then `nerfkit evaluate`: >= 26 dB on the held-out views."""
    from configs import PRESETS
    from nerfkit.evaluation import evaluate
    from nerfkit.fit import fit

    _, cfg = PRESETS["llff"]
    out = tmp_path / "run"
    cfg = dataclasses.replace(cfg, out=out, data=dataclasses.replace(cfg.data, data=capture),
                              train=dataclasses.replace(cfg.train, steps=FIT_STEPS, val_views=0))
    t0 = time.time()
    fit(cfg)
    res = evaluate(out, split="test", save_images=0)
    seconds = time.time() - t0
    print(f"llff fit: {FIT_STEPS} steps + evaluation in {seconds:.0f}s, held-out PSNR {res['psnr']:.2f} dB "
          f"({[round(r['psnr'], 2) for r in res['per_view']]})")
    assert res["views"] == 3 and res["resolution"] == [SMALL_W, SMALL_H]
    assert res["psnr"] >= 26.0, res["per_view"]
    # The run directory's cameras keep NDC, so render/evaluate rebuild the same rays.
    meta = runs.SceneMeta(out / "scene.json")
    assert meta.cameras["train"].ndc_near == 1.0 and (meta.near, meta.far) == (0.0, 1.0)

    # `nerfkit render` of the run: the default path of a forward-facing scene is LLFF's spiral, rendered
    # through the same NDC cameras (world rays into an NDC-trained field would give a blank or garbled image).
    from nerfkit.video import render_path

    r = render_path(out, frames=3, video=False, pngs=True)
    frames = sorted((out / "render" / "frames").glob("*.png"))
    assert r["frames"] == 3 and len(frames) == 3
    import imageio.v3 as iio

    img = iio.imread(frames[0]).astype(np.float32) / 255.0
    gt = np.asarray(runs.load_scene(cfg.data).splits["train"].rgba[..., :3]).mean(axis=(0, 1, 2))
    assert img.std() > 0.05 and np.abs(img.mean(axis=(0, 1)) - gt).max() < 0.15
