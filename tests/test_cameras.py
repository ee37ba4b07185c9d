"""Tests for nerfkit.cameras: a camera whose rays are computed by hand, and NumPy / jit agreement."""

from __future__ import annotations

import dataclasses

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from nerfkit import cameras as cam
from nerfkit.types import Cameras

LEGO_CAMERA_ANGLE_X = 0.6911112070083618


def _known_cameras() -> Cameras:
    """One 64x64 camera at (0, -4, 0) looking at the origin, up +z, fx = fy = 50, principal point (32, 32).

    look_at: forward = (0, 1, 0); right = forward x up = (1, 0, 0); camera up = right x forward = (0, 0, 1);
    c2w columns [right, up, -forward, eye] = [(1,0,0), (0,0,1), (0,-1,0), (0,-4,0)].
    """
    c2w = cam.look_at((0.0, -4.0, 0.0), (0.0, 0.0, 0.0), (0.0, 0.0, 1.0))
    one = lambda v: np.array([v], np.float32)  # noqa: E731
    return Cameras(c2w=c2w[None], fx=one(50), fy=one(50), cx=one(32), cy=one(32), width=64, height=64)


def test_look_at_matrix():
    c2w = cam.look_at((0.0, -4.0, 0.0), (0.0, 0.0, 0.0), (0.0, 0.0, 1.0))
    expected = np.array([[1, 0, 0, 0], [0, 0, -1, -4], [0, 1, 0, 0]], np.float32)
    np.testing.assert_allclose(c2w, expected, atol=1e-7)
    assert c2w.dtype == np.float32 and c2w.shape == (3, 4)


def test_known_camera_rays():
    cams = _known_cameras()
    rays = cam.image_rays(cams, 0, np)
    assert rays.origins.shape == (64, 64, 3) and rays.directions.shape == (64, 64, 3)
    np.testing.assert_allclose(rays.origins, np.broadcast_to([0.0, -4.0, 0.0], (64, 64, 3)))

    def world(dx, dy):
        # camera direction (dx, dy, -1) -> dx * right + dy * up + (-1) * (-forward) = (dx, 1, dy), normalised
        v = np.array([dx, 1.0, dy])
        return v / np.linalg.norm(v)

    d = rays.directions  # [row, column, 3]
    # Pixel (column 32, row 32): centre (32.5, 32.5) -> camera ((32.5 - 32) / 50, -(32.5 - 32) / 50, -1)
    # = (0.01, -0.01, -1) -> world (0.01, 1, -0.01) / 1.0001.
    np.testing.assert_allclose(d[32, 32], world(0.01, -0.01), atol=1e-6)
    # Top-left pixel: centre (0.5, 0.5) -> camera (-0.63, 0.63, -1): looks left (-x) and up (+z).
    np.testing.assert_allclose(d[0, 0], world(-0.63, 0.63), atol=1e-6)
    # Top-right (column 63, row 0): (0.63, 0.63, -1); bottom-left (column 0, row 63): (-0.63, -0.63, -1).
    np.testing.assert_allclose(d[0, 63], world(0.63, 0.63), atol=1e-6)
    np.testing.assert_allclose(d[63, 0], world(-0.63, -0.63), atol=1e-6)
    np.testing.assert_allclose(d[63, 63], world(0.63, -0.63), atol=1e-6)
    # Unit length everywhere; viewdirs are the directions.
    np.testing.assert_allclose(np.linalg.norm(d, axis=-1), 1.0, atol=1e-6)
    np.testing.assert_array_equal(rays.viewdirs, d)


def test_principal_point_ray_is_the_optical_axis():
    # At pixel coordinates (cx, cy) exactly, the ray is the camera's -z axis: world +y.
    cams = _known_cameras()
    rays = cam.jnp_pixel_rays(jnp.asarray(cams.c2w[0]), 50.0, 50.0, 32.0, 32.0, jnp.array(32.0), jnp.array(32.0))
    np.testing.assert_allclose(np.asarray(rays.directions), [0.0, 1.0, 0.0], atol=1e-7)
    np.testing.assert_allclose(np.asarray(rays.origins), [0.0, -4.0, 0.0])


def _random_cameras(n=3, width=12, height=9) -> Cameras:
    rng = np.random.default_rng(0)
    eyes = rng.normal(size=(n, 3))
    eyes = 4.0 * eyes / np.linalg.norm(eyes, axis=-1, keepdims=True)
    c2w = np.stack([cam.look_at(e, rng.normal(scale=0.2, size=3), (0.0, 0.0, 1.0)) for e in eyes])
    f = lambda lo, hi: rng.uniform(lo, hi, n).astype(np.float32)  # noqa: E731
    return Cameras(c2w=c2w, fx=f(8, 20), fy=f(8, 20), cx=f(4, 8), cy=f(3, 6), width=width, height=height)


def test_numpy_and_jit_rays_agree():
    cams = _random_cameras()

    @jax.jit
    def rays_jit(c2w, fx, fy, cx, cy, px, py):
        r = cam.jnp_pixel_rays(c2w, fx, fy, cx, cy, px, py)
        return r.origins, r.directions

    px, py = cam.pixel_grid(cams.width, cams.height, np)
    for i in range(len(cams)):
        ref = cam.image_rays(cams, i, np)
        o, d = rays_jit(jnp.asarray(cams.c2w[i]), cams.fx[i], cams.fy[i], cams.cx[i], cams.cy[i],
                        jnp.asarray(px), jnp.asarray(py))
        np.testing.assert_allclose(np.asarray(o), ref.origins, atol=1e-6)
        np.testing.assert_allclose(np.asarray(d), ref.directions, atol=1e-6)
        # The xnp=jnp path of image_rays is the same too.
        rj = cam.image_rays(cams, i, jnp)
        np.testing.assert_allclose(np.asarray(rj.directions), ref.directions, atol=1e-6)


def test_all_rays_matches_image_rays():
    cams = _random_cameras()
    o, d = cam.all_rays(cams)
    assert o.shape == d.shape == (3, cams.height, cams.width, 3)
    assert o.dtype == d.dtype == np.float32
    for i in range(len(cams)):
        ref = cam.image_rays(cams, i, np)
        np.testing.assert_allclose(o[i], ref.origins, atol=1e-6)
        np.testing.assert_allclose(d[i], ref.directions, atol=1e-6)


def test_focal_from_fov_lego():
    # 0.5 * 400 / tan(0.5 * 0.6911112) = 555.5555 (the nerf_synthetic focal length at 800 px is 1111.111).
    assert cam.focal_from_fov(400, LEGO_CAMERA_ANGLE_X) == pytest.approx(555.5555, abs=1e-3)
    assert cam.focal_from_fov(800, LEGO_CAMERA_ANGLE_X) == pytest.approx(1111.111, abs=2e-3)


def _distort(x, y, k1, k2, p1, p2):
    """OpenCV's radial-tangential model on normalised coordinates (x right, y down)."""
    r2 = x * x + y * y
    radial = 1.0 + k1 * r2 + k2 * r2 * r2
    return (x * radial + 2 * p1 * x * y + p2 * (r2 + 2 * x * x),
            y * radial + p1 * (r2 + 2 * y * y) + 2 * p2 * x * y)


def _reprojection_error(cams: Cameras) -> float:
    """Max distance in pixels between each pixel centre and where its ray projects through the camera model
    (pinhole, plus the OpenCV distortion of ``cams.distortion`` when there is one)."""
    _, d = cam.all_rays(cams)
    d_cam = np.einsum("nhwi,nij->nhwj", d.astype(np.float64), cams.c2w[:, :3, :3].astype(np.float64))
    x = d_cam[..., 0] / -d_cam[..., 2]
    y = d_cam[..., 1] / d_cam[..., 2]  # OpenCV's y points down: -(y_up / -z)
    if cams.distortion is not None:
        k = cams.distortion.astype(np.float64)[:, None, None, :]
        x, y = _distort(x, y, k[..., 0], k[..., 1], k[..., 2], k[..., 3])
    px = cams.fx[:, None, None] * x + cams.cx[:, None, None]
    py = cams.fy[:, None, None] * y + cams.cy[:, None, None]
    gx, gy = cam.pixel_grid(cams.width, cams.height, np)
    return float(max(np.abs(px - gx).max(), np.abs(py - gy).max()))


def test_rays_reproject_to_their_pixels():
    assert _reprojection_error(_random_cameras()) < 1e-3


def test_rays_of_distorted_cameras_reproject_to_their_pixels():
    # The Blender/Instant-NGP loader keeps k1, k2, p1, p2 in Cameras.distortion; the rays must honour them
    # (undistort the pixel coordinates before un-projecting), or the model trains on rays that miss their
    # pixels: by ~1 pixel at the corners of this 32x24 image (radial error grows with r^3, so by many pixels
    # on real lenses at full resolution).
    cams = _random_cameras(width=32, height=24)
    k = np.array([[0.08, -0.02, 0.003, -0.002]] * len(cams), np.float32)
    cams = dataclasses.replace(cams, distortion=k, fx=np.full(3, 20.0, np.float32), fy=np.full(3, 20.0, np.float32),
                               cx=np.full(3, 16.0, np.float32), cy=np.full(3, 12.0, np.float32))
    assert _reprojection_error(cams) < 1e-2
