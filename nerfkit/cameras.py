"""Pinhole cameras and ray generation.

One implementation serves two callers: NumPy code in the data pipeline (``xnp=np``) and traced code inside
``jax.jit`` (``xnp=jnp``). Camera-to-world matrices follow the OpenGL/Blender convention (camera looks down
-z, +y up, +x right); pixel ``(i, j)`` = (column, row) has its centre at ``(i + 0.5, j + 0.5)``.

Cameras with ``ndc_near`` set (forward-facing scenes such as LLFF captures) return their rays in normalised
device coordinates (:func:`ndc_rays`) from every function here, so the trainer and the renderer need not
know: they sample ``t`` in [0, 1] along whatever rays they are given.
"""

from __future__ import annotations

import jax
import jax.numpy as jnp
import numpy as np

from nerfkit.types import Cameras, Rays


def _distort(x, y, k1, k2, p1, p2):
    """OpenCV radial-tangential model on normalised coordinates (y pointing down, as OpenCV's)."""
    r2 = x * x + y * y
    radial = 1.0 + r2 * (k1 + r2 * k2)
    return x * radial + 2.0 * p1 * x * y + p2 * (r2 + 2.0 * x * x), y * radial + p1 * (r2 + 2.0 * y * y) + 2.0 * p2 * x * y


def undistort(xd, yd, k1, k2, p1, p2, iterations: int = 10, xnp=np):
    """Invert :func:`_distort` by Newton's method (a fixed number of steps, so it traces under ``jit``; with
    ``xnp=jnp`` a ``lax.fori_loop``, which XLA compiles once instead of unrolled).

    Args:
      xd, yd: [...] distorted normalised coordinates; k1, k2, p1, p2: broadcastable coefficients.
    Returns:
      (x, y) undistorted normalised coordinates.

    >>> k = (0.1, 0.01, 0.001, 0.002)
    >>> xd, yd = _distort(0.3, -0.2, *k)
    >>> x, y = undistort(xd, yd, *k)
    >>> round(x, 6), round(y, 6)
    (0.3, -0.2)
    """
    def newton(x, y):
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
        return x - (fx_ * j22 - fy_ * j12) / det, y - (fy_ * j11 - fx_ * j21) / det

    if xnp is jnp:
        return jax.lax.fori_loop(0, iterations, lambda _, xy: newton(*xy), (xd, yd))
    x, y = xd, yd
    for _ in range(iterations):
        x, y = newton(x, y)
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

    A 100 x 100 image with focal length 100: the top-right corner is half a focal length right and up.

    >>> pixel_directions_camera(np.array([100.0]), np.array([0.0]), 100.0, 100.0, 50.0, 50.0).tolist()
    [[0.5, 0.5, -1.0]]
    """
    x = (px - cx) / fx
    y = (py - cy) / fy
    if distortion is not None:
        x, y = undistort(x, y, distortion[..., 0], distortion[..., 1], distortion[..., 2], distortion[..., 3], xnp=xnp)
    return xnp.stack([x, -y, -xnp.ones_like(x)], axis=-1)


def camera_rays(c2w, dirs_cam, xnp=np):
    """Rotate camera-space directions into the world and normalise.

    Args:
      c2w: [..., 3, 4] camera-to-world, broadcastable against ``dirs_cam[..., None, :]``.
      dirs_cam: [..., 3] camera-space directions.
    Returns:
      origins, unit directions: [..., 3] each.

    A camera at (1, 2, 3) turned 90 degrees about +z (its +x points along world +y):

    >>> c2w = np.array([[0.0, -1.0, 0.0, 1.0], [1.0, 0.0, 0.0, 2.0], [0.0, 0.0, 1.0, 3.0]])
    >>> o, d = camera_rays(c2w, np.array([[2.0, 0.0, -2.0]]))
    >>> o.tolist(), [round(v, 4) for v in d[0].tolist()]
    ([[1.0, 2.0, 3.0]], [0.0, 0.7071, -0.7071])
    """
    d = xnp.sum(dirs_cam[..., None, :] * c2w[..., :3, :3], axis=-1)
    d = d / xnp.linalg.norm(d, axis=-1, keepdims=True)
    o = xnp.broadcast_to(c2w[..., :3, 3], d.shape)
    return o, d


def pixel_grid(width: int, height: int, xnp=np):
    """Pixel-centre coordinates ``(px, py)``, each float32 [H, W].

    >>> px, py = pixel_grid(3, 2)
    >>> px.shape, px[0].tolist(), py[:, 0].tolist()
    ((2, 3), [0.5, 1.5, 2.5], [0.5, 1.5])
    """
    px, py = xnp.meshgrid(
        xnp.arange(width, dtype=xnp.float32) + 0.5, xnp.arange(height, dtype=xnp.float32) + 0.5, indexing="xy"
    )
    return px, py


def ndc_rays(origins, directions, focal_x, focal_y, cx, cy, width, height, near: float = 1.0, xnp=np):
    """Map world-space rays to normalised device coordinates (NDC) for forward-facing scenes.

    The NeRF paper's NDC (Mildenhall et al. 2020, appendix C; nerf-pytorch ``ndc_rays``): a reference
    pinhole camera sits at the world origin looking down -z with intrinsics ``(focal_x, focal_y, cx, cy)``
    for a ``width x height`` image, and its frustum from the plane ``z = -near`` to infinity becomes the
    cube [-1, 1]^3. A world point ``(x, y, z)`` (``z < 0``) maps to::

        x_ndc = -(2 fx / W) x / z + (2 cx / W - 1)
        y_ndc = -(2 fy / H) y / z + (1 - 2 cy / H)
        z_ndc = 1 + 2 near / z

    that is, ``x_ndc = 2 u / W - 1`` and ``y_ndc = 1 - 2 v / H`` for the point's continuous pixel coordinates
    ``(u, v)`` in the reference camera (rows grow downwards, +y is up). With nerfkit's pixel-centre
    convention (pixel ``i`` covers ``[i, i + 1)``, centre ``i + 0.5``) the image's outer edges map exactly to
    ``x_ndc, y_ndc = +-1``. nerf-pytorch assumes ``cx = W / 2``, ``cy = H / 2``, where the offsets vanish
    and this is its formula verbatim (with ``focal_x = focal_y``); the general form only shifts origins (the
    offsets cancel in directions). The map is projective, so rays stay rays: each origin is first moved
    along its ray to the near plane ``z = -near`` (NDC ``z = -1``), and the returned direction points to
    the image of the ray's point at infinity (NDC ``z = +1``), so ``origin + t * direction`` for ``t`` in
    [0, 1] covers the ray from the near plane to infinity (linear in inverse depth: ``z_ndc`` = ``-1 + 2 t``).

    Rays must point towards -z (``directions[..., 2] < 0``); others have no image on the near plane and give
    non-finite values (as in nerf-pytorch). The focal lengths, principal point and size are scalars or
    arrays broadcastable to ``origins[..., 0]``.

    Args:
      origins, directions: float [..., 3] world-space rays (directions need not be normalised).
      focal_x, focal_y: reference focal lengths in pixels.
      cx, cy: reference principal point in pixels (None: the image centre ``W / 2``, ``H / 2``).
      width, height: reference image size in pixels.
      near: the world-space near plane distance (nerf-pytorch uses 1.0 after LLFF's rescaling).
      xnp: ``np`` or ``jnp``.
    Returns:
      (origins, directions) float [..., 3] each in NDC: ``origins[..., 2] == -1``, ``directions[..., 2] ==
      2``, and ``origins + directions`` is the image of the ray's point at infinity.

    A ray parallel to the axis, one unit to the right of it (focal length 50 px, 100 px wide image): it
    enters the near plane ``z = -1`` at the image's right edge (``x_ndc = 1``) and heads for the image centre,
    where all rays parallel to the axis meet at infinity.

    >>> o, d = ndc_rays(np.array([[1.0, 0.0, 0.0]]), np.array([[0.0, 0.0, -1.0]]), 50.0, 50.0, None, None, 100, 100)
    >>> o.tolist(), (o + d).tolist()
    ([[1.0, 0.0, -1.0]], [[0.0, 0.0, 1.0]])
    """
    cx = width / 2.0 if cx is None else cx
    cy = height / 2.0 if cy is None else cy
    ax, ay = 2.0 * focal_x / width, 2.0 * focal_y / height
    bx, by = 2.0 * cx / width - 1.0, 1.0 - 2.0 * cy / height
    t = -(near + origins[..., 2]) / directions[..., 2]  # shift origins to the near plane z = -near
    o = origins + t[..., None] * directions
    ox_oz, oy_oz = o[..., 0] / o[..., 2], o[..., 1] / o[..., 2]
    o_ndc = xnp.stack([-ax * ox_oz + bx, -ay * oy_oz + by, 1.0 + 2.0 * near / o[..., 2]], axis=-1)
    d_ndc = xnp.stack([
        -ax * (directions[..., 0] / directions[..., 2] - ox_oz),
        -ay * (directions[..., 1] / directions[..., 2] - oy_oz),
        -2.0 * near / o[..., 2],
    ], axis=-1)
    return o_ndc, d_ndc


def image_rays(cams: Cameras, index: int, xnp=np) -> Rays:
    """All rays of view ``index`` as a ``Rays`` of shape [H, W] (in NDC when ``cams.ndc_near`` is set).

    One 2 x 2 camera at the origin (focal length 1 px, principal point in the middle):

    >>> one = np.ones(1, np.float32)
    >>> cams = Cameras(c2w=np.eye(3, 4, dtype=np.float32)[None], fx=one, fy=one, cx=one, cy=one, width=2, height=2)
    >>> rays = image_rays(cams, 0)
    >>> rays.origins.shape, rays.directions.shape
    ((2, 2, 3), (2, 2, 3))
    >>> [round(v, 4) for v in rays.directions[0, 0].tolist()]  # top-left pixel: (-0.5, 0.5, -1) normalised
    [-0.4082, 0.4082, -0.8165]
    """
    px, py = pixel_grid(cams.width, cams.height, xnp)
    dist = None if cams.distortion is None else xnp.asarray(cams.distortion[index], dtype=xnp.float32)
    dirs = pixel_directions_camera(px, py, cams.fx[index], cams.fy[index], cams.cx[index], cams.cy[index], xnp, dist)
    o, d = camera_rays(xnp.asarray(cams.c2w[index], dtype=xnp.float32), dirs, xnp)
    if cams.ndc_near is None:
        return Rays(origins=o, directions=d, viewdirs=d)
    o_ndc, d_ndc = ndc_rays(o, d, cams.fx[index], cams.fy[index], cams.cx[index], cams.cy[index], cams.width,
                            cams.height, cams.ndc_near, xnp)
    return Rays(origins=o_ndc.astype(xnp.float32), directions=d_ndc.astype(xnp.float32), viewdirs=d)


def all_rays(cams: Cameras, with_viewdirs: bool = False):
    """Origins and directions of every pixel of every view, float32 [N, H, W, 3] each (NumPy).

    Directions are unit vectors, or NDC rays (:func:`ndc_rays`) when ``cams.ndc_near`` is set. With
    ``with_viewdirs`` a third array follows: the unit world-space directions (equal to the directions for
    ordinary cameras).

    >>> one = np.ones(1, np.float32)
    >>> cams = Cameras(c2w=np.eye(3, 4, dtype=np.float32)[None], fx=one, fy=one, cx=one, cy=one, width=2, height=2)
    >>> o, d, viewdirs = all_rays(cams, with_viewdirs=True)
    >>> o.shape, d.shape, bool(np.allclose(d[0], image_rays(cams, 0).directions))
    ((1, 2, 2, 3), (1, 2, 2, 3), True)
    """
    px, py = pixel_grid(cams.width, cams.height, np)
    dirs = pixel_directions_camera(
        px[None], py[None], cams.fx[:, None, None], cams.fy[:, None, None], cams.cx[:, None, None],
        cams.cy[:, None, None], np, None if cams.distortion is None else cams.distortion[:, None, None, :],
    )
    rot = cams.c2w[:, :3, :3].astype(np.float32)
    d = np.einsum("nhwk,njk->nhwj", dirs.astype(np.float32), rot)  # one matmul per view
    d /= np.linalg.norm(d, axis=-1, keepdims=True)
    o = np.broadcast_to(cams.c2w[:, None, None, :3, 3], d.shape).astype(np.float32)
    d = d.astype(np.float32)
    viewdirs = d
    if cams.ndc_near is not None:
        k = lambda a: np.asarray(a, np.float32)[:, None, None]  # noqa: E731  per-view intrinsics
        o, d = ndc_rays(o, d, k(cams.fx), k(cams.fy), k(cams.cx), k(cams.cy), cams.width, cams.height,
                        cams.ndc_near, np)
        o, d = o.astype(np.float32), d.astype(np.float32)
    return (o, d, viewdirs) if with_viewdirs else (o, d)


def focal_from_fov(width: int, camera_angle_x: float) -> float:
    """Blender's focal length in pixels: ``0.5 * W / tan(0.5 * camera_angle_x)``.

    >>> round(focal_from_fov(100, np.pi / 2), 6)  # a 90 degree field of view: half the width
    50.0
    """
    return float(0.5 * width / np.tan(0.5 * camera_angle_x))


def look_at(eye, target, up=(0.0, 0.0, 1.0)) -> np.ndarray:
    """float32 [3, 4] camera-to-world for a camera at ``eye`` looking at ``target`` (OpenGL convention).

    >>> c2w = look_at((0.0, -4.0, 0.0), (0.0, 0.0, 0.0))
    >>> c2w.shape, c2w[:, 3].tolist()
    ((3, 4), [0.0, -4.0, 0.0])
    >>> (c2w[:, :3] @ [0.0, 0.0, -1.0]).tolist(), (c2w[:, :3] @ [0.0, 1.0, 0.0]).tolist()  # looks at +y, up is +z
    ([0.0, 1.0, 0.0], [0.0, 0.0, 1.0])
    """
    eye = np.asarray(eye, np.float64)
    forward = np.asarray(target, np.float64) - eye
    forward /= np.linalg.norm(forward)
    right = np.cross(forward, np.asarray(up, np.float64))
    if np.linalg.norm(right) < 1e-8:  # looking along `up`: pick any perpendicular
        right = np.cross(forward, np.array([1.0, 0.0, 0.0]))
    right /= np.linalg.norm(right)
    cam_up = np.cross(right, forward)
    return np.stack([right, cam_up, -forward, eye], axis=1).astype(np.float32)


def jnp_pixel_rays(c2w, fx, fy, cx, cy, px, py, *, width: int | None = None, height: int | None = None,
                   ndc_near: float | None = None) -> Rays:
    """Rays for pixel coordinates inside ``jit`` (thin wrapper over the shared implementation).

    With ``ndc_near`` (then ``width`` and ``height`` are required) the rays are in NDC, as
    :func:`image_rays` returns them for cameras with ``Cameras.ndc_near`` set.

    >>> px, py = jnp.array([50.0, 150.0]), jnp.array([50.0, 150.0])  # the centre, one focal length off
    >>> rays = jnp_pixel_rays(jnp.eye(3, 4), 100.0, 100.0, 50.0, 50.0, px, py)
    >>> rays.origins.shape, [round(float(v), 4) for v in rays.directions[1]]
    ((2, 3), [0.5774, -0.5774, -0.5774])
    >>> ndc = jnp_pixel_rays(jnp.eye(3, 4), 100.0, 100.0, 50.0, 50.0, px, py, width=100, height=100, ndc_near=1.0)
    >>> [round(float(v), 5) for v in ndc.origins[:, 2]], [round(float(v), 5) for v in ndc.directions[:, 2]]
    ([-1.0, -1.0], [2.0, 2.0])
    """
    dirs = pixel_directions_camera(px, py, fx, fy, cx, cy, jnp)
    o, d = camera_rays(c2w, dirs, jnp)
    if ndc_near is None:
        return Rays(origins=o, directions=d, viewdirs=d)
    if width is None or height is None:
        raise ValueError("jnp_pixel_rays: NDC rays need the image width and height")
    o_ndc, d_ndc = ndc_rays(o, d, fx, fy, cx, cy, width, height, ndc_near, jnp)
    return Rays(origins=o_ndc, directions=d_ndc, viewdirs=d)
