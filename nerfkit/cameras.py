"""Pinhole cameras and ray generation.

One implementation serves two callers: NumPy code in the data pipeline (``xnp=np``) and traced code inside
``jax.jit`` (``xnp=jnp``). Camera-to-world matrices follow the OpenGL/Blender convention (camera looks down
-z, +y up, +x right); pixel ``(i, j)`` = (column, row) has its centre at ``(i + 0.5, j + 0.5)``.
"""

from __future__ import annotations

import jax.numpy as jnp
import numpy as np

from nerfkit.types import Cameras, Rays


def _distort(x, y, k1, k2, p1, p2):
    """OpenCV radial-tangential model on normalised coordinates (y pointing down, as OpenCV's)."""
    r2 = x * x + y * y
    radial = 1.0 + r2 * (k1 + r2 * k2)
    return x * radial + 2.0 * p1 * x * y + p2 * (r2 + 2.0 * x * x), y * radial + p1 * (r2 + 2.0 * y * y) + 2.0 * p2 * x * y


def undistort(xd, yd, k1, k2, p1, p2, iterations: int = 10):
    """Invert :func:`_distort` by Newton's method (a fixed number of steps, so it traces under ``jit``).

    Args:
      xd, yd: [...] distorted normalised coordinates; k1, k2, p1, p2: broadcastable coefficients.
    Returns:
      (x, y) undistorted normalised coordinates.
    """
    x, y = xd, yd
    for _ in range(iterations):
        r2 = x * x + y * y
        radial = 1.0 + r2 * (k1 + r2 * k2)
        d_radial = 2.0 * k1 + 4.0 * k2 * r2  # d(radial)/d(r2) * 2
        fx_, fy_ = _distort(x, y, k1, k2, p1, p2)
        fx_, fy_ = fx_ - xd, fy_ - yd
        # Jacobian of the distortion.
        j11 = radial + x * x * d_radial + 2.0 * p1 * y + 6.0 * p2 * x
        j12 = x * y * d_radial + 2.0 * p1 * x + 2.0 * p2 * y
        j21 = x * y * d_radial + 2.0 * p2 * y + 2.0 * p1 * x
        j22 = radial + y * y * d_radial + 6.0 * p1 * y + 2.0 * p2 * x
        det = j11 * j22 - j12 * j21
        x = x - (fx_ * j22 - fy_ * j12) / det
        y = y - (fy_ * j11 - fx_ * j21) / det
    return x, y


def pixel_directions_camera(px, py, fx, fy, cx, cy, xnp=np, distortion=None):
    """Camera-space ray directions (not normalised, z = -1) through pixel coordinates.

    Args:
      px, py: [...] pixel coordinates (use ``i + 0.5`` for the centre of column ``i``).
      fx, fy, cx, cy: scalars or arrays broadcastable to ``px``.
      distortion: optional [..., 4] OpenCV (k1, k2, p1, p2) broadcastable to ``px[..., None]``; the pixel
        is undistorted before un-projecting.
    Returns:
      [..., 3] directions ``((px - cx) / fx, -(py - cy) / fy, -1)`` (after undistortion): image rows grow
      downwards while the camera's +y is up.
    """
    x = (px - cx) / fx
    y = (py - cy) / fy
    if distortion is not None:
        x, y = undistort(x, y, distortion[..., 0], distortion[..., 1], distortion[..., 2], distortion[..., 3])
    return xnp.stack([x, -y, -xnp.ones_like(x)], axis=-1)


def camera_rays(c2w, dirs_cam, xnp=np):
    """Rotate camera-space directions into the world and normalise.

    Args:
      c2w: [..., 3, 4] camera-to-world, broadcastable against ``dirs_cam[..., None, :]``.
      dirs_cam: [..., 3] camera-space directions.
    Returns:
      origins, unit directions: [..., 3] each.
    """
    d = xnp.sum(dirs_cam[..., None, :] * c2w[..., :3, :3], axis=-1)
    d = d / xnp.linalg.norm(d, axis=-1, keepdims=True)
    o = xnp.broadcast_to(c2w[..., :3, 3], d.shape)
    return o, d


def pixel_grid(width: int, height: int, xnp=np):
    """Pixel-centre coordinates ``(px, py)``, each float32 [H, W]."""
    px, py = xnp.meshgrid(
        xnp.arange(width, dtype=xnp.float32) + 0.5, xnp.arange(height, dtype=xnp.float32) + 0.5, indexing="xy"
    )
    return px, py


def image_rays(cams: Cameras, index: int, xnp=np) -> Rays:
    """All rays of view ``index`` as a ``Rays`` of shape [H, W]."""
    px, py = pixel_grid(cams.width, cams.height, xnp)
    dist = None if cams.distortion is None else xnp.asarray(cams.distortion[index], dtype=xnp.float32)
    dirs = pixel_directions_camera(px, py, cams.fx[index], cams.fy[index], cams.cx[index], cams.cy[index], xnp, dist)
    o, d = camera_rays(xnp.asarray(cams.c2w[index], dtype=xnp.float32), dirs, xnp)
    return Rays(origins=o, directions=d, viewdirs=d)


def all_rays(cams: Cameras) -> tuple[np.ndarray, np.ndarray]:
    """Origins and unit directions of every pixel of every view, float32 [N, H, W, 3] each (NumPy)."""
    px, py = pixel_grid(cams.width, cams.height, np)
    dirs = pixel_directions_camera(
        px[None], py[None], cams.fx[:, None, None], cams.fy[:, None, None], cams.cx[:, None, None],
        cams.cy[:, None, None], np, None if cams.distortion is None else cams.distortion[:, None, None, :],
    )
    rot = cams.c2w[:, :3, :3].astype(np.float32)
    d = np.einsum("nhwk,njk->nhwj", dirs.astype(np.float32), rot)  # one matmul per view
    d /= np.linalg.norm(d, axis=-1, keepdims=True)
    o = np.broadcast_to(cams.c2w[:, None, None, :3, 3], d.shape).astype(np.float32)
    return o, d.astype(np.float32)


def focal_from_fov(width: int, camera_angle_x: float) -> float:
    """Blender's focal length in pixels: ``0.5 * W / tan(0.5 * camera_angle_x)``."""
    return float(0.5 * width / np.tan(0.5 * camera_angle_x))


def look_at(eye, target, up=(0.0, 0.0, 1.0)) -> np.ndarray:
    """float32 [3, 4] camera-to-world for a camera at ``eye`` looking at ``target`` (OpenGL convention)."""
    eye = np.asarray(eye, np.float64)
    forward = np.asarray(target, np.float64) - eye
    forward /= np.linalg.norm(forward)
    right = np.cross(forward, np.asarray(up, np.float64))
    if np.linalg.norm(right) < 1e-8:  # looking along `up`: pick any perpendicular
        right = np.cross(forward, np.array([1.0, 0.0, 0.0]))
    right /= np.linalg.norm(right)
    cam_up = np.cross(right, forward)
    return np.stack([right, cam_up, -forward, eye], axis=1).astype(np.float32)


def jnp_pixel_rays(c2w, fx, fy, cx, cy, px, py) -> Rays:
    """Rays for pixel coordinates inside ``jit`` (thin wrapper over the shared implementation)."""
    dirs = pixel_directions_camera(px, py, fx, fy, cx, cy, jnp)
    o, d = camera_rays(c2w, dirs, jnp)
    return Rays(origins=o, directions=d, viewdirs=d)
