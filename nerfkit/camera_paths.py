"""Camera paths for rendering videos: orbits around the scene, LLFF's spiral for forward-facing captures,
smooth keyframe interpolation (through the training cameras in capture order), paths from JSON.

All poses are camera-to-world float32 [N, 3, 4] in the OpenGL/Blender convention (camera looks down its
local -z axis, +y up, +x right), as in :mod:`nerfkit.types`.
"""

from __future__ import annotations

import json
import re
from pathlib import Path

import numpy as np

from nerfkit.cameras import look_at
from nerfkit.errors import InputError

_SNAP_DEGREES = 10.0
_MAX_CONDITION = 1e4


def _as_c2w(c2w, name: str) -> np.ndarray:
    m = np.asarray(c2w, np.float64)
    if m.ndim != 3 or m.shape[1:] not in ((3, 4), (4, 4)) or m.shape[0] == 0:
        raise ValueError(f"{name}: expected camera-to-world [N, 3, 4] (or [N, 4, 4]), got shape {m.shape}")
    return m[:, :3, :4]


def focus_point(c2w) -> np.ndarray | None:
    """The point closest, in least squares, to all cameras' optical axes.

    Minimises ``sum_i |(I - d_i d_i^T)(x - o_i)|^2`` over ``x``, where ``o_i`` is camera ``i``'s
    position and ``d_i`` its viewing direction (the -z axis of its c2w).

    Args:
      c2w: float [N, 3, 4] camera-to-world.
    Returns:
      float64 [3], or None if the problem is ill-conditioned (fewer than two cameras, or nearly parallel
      axes as in forward-facing captures).
    """
    m = _as_c2w(c2w, "focus_point")
    o = m[:, :, 3]
    d = -m[:, :, 2]
    d = d / np.linalg.norm(d, axis=-1, keepdims=True)
    proj = np.eye(3)[None] - d[:, :, None] * d[:, None, :]  # [N, 3, 3] projectors orthogonal to each axis
    a = proj.sum(axis=0)
    b = np.einsum("nij,nj->i", proj, o)
    if not np.all(np.isfinite(a)) or np.linalg.cond(a) > _MAX_CONDITION:
        return None
    return np.linalg.solve(a, b)


def mean_up(c2w, snap_degrees: float = _SNAP_DEGREES) -> np.ndarray:
    """The normalised mean of the cameras' +y axes, snapped to the nearest world axis if close.

    Args:
      c2w: float [N, 3, 4] camera-to-world.
      snap_degrees: snap to ``±x``, ``±y`` or ``±z`` when within this angle (Blender scenes are +z up).
    Returns:
      float64 [3] unit vector; +z if the cameras' up axes cancel out.
    """
    m = _as_c2w(c2w, "mean_up")
    up = m[:, :, 1].mean(axis=0)
    n = np.linalg.norm(up)
    if not np.isfinite(n) or n < 1e-8:
        return np.array([0.0, 0.0, 1.0])
    up = up / n
    k = int(np.argmax(np.abs(up)))
    axis = np.zeros(3)
    axis[k] = np.sign(up[k])
    if np.degrees(np.arccos(np.clip(up @ axis, -1.0, 1.0))) <= snap_degrees:
        return axis
    return up


def _plane_basis(up: np.ndarray, ref: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Orthonormal (e1, e2) spanning the plane perpendicular to ``up``, e1 along ``ref`` projected if possible,
    with ``(e1, e2, up)`` right-handed."""
    e1 = ref - (ref @ up) * up
    if np.linalg.norm(e1) < 1e-8:
        helper = np.eye(3)[int(np.argmin(np.abs(up)))]
        e1 = helper - (helper @ up) * up
    e1 = e1 / np.linalg.norm(e1)
    e2 = np.cross(up, e1)
    return e1, e2


def orbit_path(train_c2w, n_frames: int = 120, center=None, up=None) -> np.ndarray:
    """A full circular orbit around the scene, looking at its centre.

    The orbit lies in the plane perpendicular to ``up`` at the training cameras' mean height above the
    centre (along ``up``), on the circle of their mean horizontal distance from the centre's vertical axis.
    It starts at the azimuth of the first training camera off that axis, turns counter-clockwise about
    ``up`` in ``n_frames`` equal steps and covers 360 degrees without repeating the first frame at the end
    (so the video loops seamlessly).

    Args:
      train_c2w: float [N, 3, 4] (or [N, 4, 4]) training camera-to-world matrices.
      n_frames: number of poses.
      center: float [3] point to orbit and look at. Default: :func:`focus_point` of the training cameras, or
        the origin if that is ill-conditioned.
      up: float [3] world up (normalised here). Default: :func:`mean_up` of the training cameras.
    Returns:
      float32 [n_frames, 3, 4] camera-to-world, each built with :func:`nerfkit.cameras.look_at`.

    >>> ring = np.stack([look_at((2 * np.cos(a), 2 * np.sin(a), 1.0), (0, 0, 0), (0, 0, 1)) for a in (0, 2, 4)])
    >>> eyes = orbit_path(ring, n_frames=4)[:, :, 3]
    >>> np.round(eyes[:, 2], 4).tolist(), np.round(np.linalg.norm(eyes[:, :2], axis=1), 4).tolist()
    ([1.0, 1.0, 1.0, 1.0], [2.0, 2.0, 2.0, 2.0])
    """
    m = _as_c2w(train_c2w, "orbit_path")
    if n_frames < 1:
        raise ValueError(f"orbit_path: n_frames must be >= 1, got {n_frames}")
    if center is None:
        c = focus_point(m) if len(m) >= 2 else None
        c = np.zeros(3) if c is None else c
    else:
        c = np.asarray(center, np.float64).reshape(3)
    if up is None:
        u = mean_up(m)
    else:
        u = np.asarray(up, np.float64).reshape(3)
        if np.linalg.norm(u) < 1e-12:
            raise ValueError("orbit_path: up must be non-zero")
        u = u / np.linalg.norm(u)

    offsets = m[:, :, 3] - c  # [N, 3]
    height = offsets @ u  # [N] along up
    across = offsets - height[:, None] * u  # [N, 3] in the plane perpendicular to up
    dist = np.linalg.norm(across, axis=-1)
    if not (dist > 1e-12).any():
        raise ValueError("orbit_path: every training camera sits on the centre's vertical axis; no orbit radius")
    e1, e2 = _plane_basis(u, across[int(np.argmax(dist > 1e-12))])
    az = 2.0 * np.pi * np.arange(n_frames) / n_frames
    ring = np.cos(az)[:, None] * e1 + np.sin(az)[:, None] * e2  # [n_frames, 3] unit, in the plane
    eyes = c + float(dist.mean()) * ring + float(height.mean()) * u
    return np.stack([look_at(eye, c, u) for eye in eyes]).astype(np.float32)


def view_matrix(z, up, pos) -> np.ndarray:
    """LLFF's ``viewmatrix``: float64 [3, 4] camera-to-world with backward axis ``z``, up close to ``up``.

    Columns ``[x, y, z, pos]`` with ``z = normalize(z)``, ``x = normalize(up x z)``, ``y = z x x`` (a
    right-handed rotation; ``up`` need not be orthogonal to ``z``). The camera looks down ``-z``.
    """
    z = np.asarray(z, np.float64)
    z = z / np.linalg.norm(z)
    x = np.cross(np.asarray(up, np.float64), z)
    x = x / np.linalg.norm(x)
    y = np.cross(z, x)
    return np.stack([x, y, z, np.asarray(pos, np.float64)], axis=1)


def average_pose(c2w) -> np.ndarray:
    """LLFF's ``poses_avg``: float64 [3, 4], the mean camera centre with the normalised sum of the backward
    (+z) axes and the sum of the up (+y) axes made orthonormal by :func:`view_matrix`."""
    m = _as_c2w(c2w, "average_pose")
    return view_matrix(m[:, :, 2].sum(axis=0), m[:, :, 1].sum(axis=0), m[:, :, 3].mean(axis=0))


def spiral_path(c2w_train, near: float, far: float, n_frames: int = 120, rotations: float = 2.0,
                zrate: float = 0.5, percentile: float = 90.0) -> np.ndarray:
    """LLFF's spiral render path for forward-facing scenes (``render_path_spiral`` in ``load_llff_data``).

    The path circles in front of the average training pose (:func:`average_pose`): frame ``k`` has angle
    ``theta = 2 pi rotations k / n_frames`` and position ``c2w_avg @ (r_x cos theta, -r_y sin theta,
    -r_z sin(zrate theta), 1)``, where the radii ``r`` are the ``percentile`` of the absolute training camera
    positions per axis. Every frame looks at the focus point ``c2w_avg @ (0, 0, -focus, 1)`` on the average
    camera's optical axis, with the mean up axis of the training cameras as up. The focus depth is LLFF's:
    ``1 / ((1 - 0.75) / (0.9 near) + 0.75 / (5 far))``, a harmonic blend weighted towards the near bound.

    Use it in the frame the loader returns (LLFF: rescaled and recentred, so ``c2w_avg`` is about the
    identity and the translations are about the capture's baseline).

    Args:
      c2w_train: float [N, 3, 4] (or [N, 4, 4]) training camera-to-world matrices (OpenGL convention).
      near, far: the scene's closest and farthest depth in the same units (``Scene.depth_range``).
      n_frames: poses on the path (120 in LLFF); the last frame does not repeat the first.
      rotations: turns around the axis (2 in LLFF); zrate: the in-and-out motion's rate (0.5 in LLFF).
      percentile: of |translation| that gives the radii (90 in LLFF).
    Returns:
      float32 [n_frames, 3, 4] camera-to-world.
    """
    m = _as_c2w(c2w_train, "spiral_path")
    if n_frames < 1:
        raise ValueError(f"spiral_path: n_frames must be >= 1, got {n_frames}")
    if not (np.isfinite(near) and np.isfinite(far) and 0 < near <= far):
        raise ValueError(f"spiral_path: need 0 < near <= far, got near={near}, far={far}")
    c2w = average_pose(m)
    up = m[:, :, 1].sum(axis=0)
    up = up / np.linalg.norm(up)
    dt = 0.75
    focus = 1.0 / ((1.0 - dt) / (0.9 * near) + dt / (5.0 * far))
    rads = np.append(np.percentile(np.abs(m[:, :, 3]), percentile, axis=0), 1.0)
    target = c2w @ np.array([0.0, 0.0, -focus, 1.0])
    out = []
    for theta in np.linspace(0.0, 2.0 * np.pi * rotations, n_frames + 1)[:-1]:
        centre = c2w @ (np.array([np.cos(theta), -np.sin(theta), -np.sin(theta * zrate), 1.0]) * rads)
        out.append(view_matrix(centre - target, up, centre))
    return np.stack(out).astype(np.float32)


def _orthonormalise(r: np.ndarray) -> np.ndarray:
    """Nearest rotation matrices (SVD), float64 [..., 3, 3]."""
    uu, _, vt = np.linalg.svd(r)
    d = np.sign(np.linalg.det(uu @ vt))
    uu[..., :, 2] *= d[..., None]
    return uu @ vt


def rotation_to_quaternion(r) -> np.ndarray:
    """Rotation matrices float [..., 3, 3] -> unit quaternions float64 [..., 4] as (w, x, y, z)."""
    r = np.asarray(r, np.float64)
    # Shepperd's method, vectorised: build the four candidates and keep the best-conditioned one.
    tr = np.trace(r, axis1=-2, axis2=-1)
    cands = np.stack(
        [
            np.stack([1 + tr, r[..., 2, 1] - r[..., 1, 2], r[..., 0, 2] - r[..., 2, 0], r[..., 1, 0] - r[..., 0, 1]], -1),
            np.stack([r[..., 2, 1] - r[..., 1, 2], 1 + 2 * r[..., 0, 0] - tr, r[..., 0, 1] + r[..., 1, 0], r[..., 0, 2] + r[..., 2, 0]], -1),
            np.stack([r[..., 0, 2] - r[..., 2, 0], r[..., 0, 1] + r[..., 1, 0], 1 + 2 * r[..., 1, 1] - tr, r[..., 1, 2] + r[..., 2, 1]], -1),
            np.stack([r[..., 1, 0] - r[..., 0, 1], r[..., 0, 2] + r[..., 2, 0], r[..., 1, 2] + r[..., 2, 1], 1 + 2 * r[..., 2, 2] - tr], -1),
        ],
        axis=-2,
    )  # [..., 4, 4]; candidate k is 4 q_k q (so its k-th entry is 4 q_k^2)
    diag = np.stack([1 + tr, 1 + 2 * r[..., 0, 0] - tr, 1 + 2 * r[..., 1, 1] - tr, 1 + 2 * r[..., 2, 2] - tr], -1)
    best = np.argmax(diag, axis=-1)
    q = np.take_along_axis(cands, best[..., None, None], axis=-2)[..., 0, :]
    q = q / np.linalg.norm(q, axis=-1, keepdims=True)
    return np.where(q[..., :1] < 0, -q, q)


def quaternion_to_rotation(q) -> np.ndarray:
    """Quaternions float [..., 4] as (w, x, y, z) (normalised here) -> rotation matrices float64 [..., 3, 3]."""
    q = np.asarray(q, np.float64)
    w, x, y, z = np.moveaxis(q / np.linalg.norm(q, axis=-1, keepdims=True), -1, 0)
    return np.stack(
        [
            np.stack([1 - 2 * (y * y + z * z), 2 * (x * y - w * z), 2 * (x * z + w * y)], -1),
            np.stack([2 * (x * y + w * z), 1 - 2 * (x * x + z * z), 2 * (y * z - w * x)], -1),
            np.stack([2 * (x * z - w * y), 2 * (y * z + w * x), 1 - 2 * (x * x + y * y)], -1),
        ],
        axis=-2,
    )


def interpolate_path(c2w_keyframes, n_frames: int) -> np.ndarray:
    """A smooth path through keyframes in their order (nerfstudio's ``ns-render interpolate``).

    Positions follow a Catmull-Rom spline (``splines.CatmullRom``, uniform parametrisation, natural end
    conditions) and rotations the quaternion Catmull-Rom spline through the keyframe rotations
    (``splines.quaternion.CatmullRom``), both C1-continuous (no jumps in velocity or angular velocity at the
    keyframes). Frames are evenly spaced in keyframe index, so every transition gets the same number of frames;
    the first and last frames are the first and last keyframes exactly, as is any frame that lands on a keyframe.
    Keyframe rotations are projected to the nearest rotation first, so every output rotation is orthonormal.
    Two keyframes give a straight line at constant speed with a slerp between their rotations.

    Args:
      c2w_keyframes: float [K, 3, 4] (or [K, 4, 4]) camera-to-world keyframes, K >= 1.
      n_frames: number of output poses (>= 1; 1 gives the first keyframe).
    Returns:
      float32 [n_frames, 3, 4].

    >>> keys = np.stack([look_at((x, 0.0, 3.0), (0, 0, 0), (0, 1, 0)) for x in (0.0, 1.0, 3.0)])
    >>> path = interpolate_path(keys, 5)
    >>> [round(float(x), 3) for x in path[:, 0, 3]]  # frames 0, 2 and 4 are the keyframes
    [0.0, 0.406, 1.0, 1.906, 3.0]
    """
    import splines
    import splines.quaternion as squat

    keys = _as_c2w(c2w_keyframes, "interpolate_path")
    if n_frames < 1:
        raise ValueError(f"interpolate_path: n_frames must be >= 1, got {n_frames}")
    k = len(keys)
    if k == 1 or n_frames == 1:
        return np.repeat(keys[:1], n_frames, axis=0).astype(np.float32)
    u = np.linspace(0.0, k - 1.0, n_frames)
    u[-1] = k - 1.0
    pos = np.asarray(splines.CatmullRom(keys[:, :, 3]).evaluate(u), np.float64)
    wxyz = rotation_to_quaternion(_orthonormalise(keys[:, :, :3]))
    quats = squat.canonicalized([squat.UnitQuaternion.from_unit_xyzw(q[[1, 2, 3, 0]]) for q in wxyz])
    rot = quaternion_to_rotation([q.wxyz for q in squat.CatmullRom(list(quats)).evaluate(u)])
    out = np.concatenate([rot, pos[:, :, None]], axis=-1)
    on_key = u == np.round(u)  # frames exactly on a keyframe are returned as that keyframe, bit for bit
    out[on_key] = keys[np.round(u[on_key]).astype(int)]
    return out.astype(np.float32)


def capture_order(names) -> np.ndarray:
    """int [N] indices that sort image names in capture order: natural order, digit runs compared as numbers
    (``r_2`` before ``r_10``).

    >>> capture_order(["r_10.png", "r_2.png", "r_1.png"]).tolist()
    [2, 1, 0]
    """
    def key(i):
        return [(0, int(p), "") if p.isdigit() else (1, 0, p) for p in re.split(r"(\d+)", names[i]) if p]

    return np.array(sorted(range(len(names)), key=key), dtype=int)


def load_path_json(path) -> np.ndarray:
    """Read a camera path from a Blender-like JSON file.

    Format: ``{"frames": [{"transform_matrix": 4x4 (or 3x4) nested list}, ...]}`` in the OpenGL
    convention; other keys are ignored.

    Args:
      path: the JSON file.
    Returns:
      float32 [N, 3, 4] camera-to-world, N >= 1.
    Raises:
      InputError: missing/unreadable file, invalid JSON, a missing or empty ``frames`` list, or a
        ``transform_matrix`` that is not a 4x4/3x4 matrix of finite numbers with a rotation part (a
        scaled or mirrored frame would make the camera look in the wrong direction).
    """
    path = Path(path)
    try:
        text = path.read_text()
    except FileNotFoundError:
        raise InputError("camera path file not found", path) from None
    except (OSError, UnicodeDecodeError) as e:
        raise InputError(f"cannot read camera path: {type(e).__name__}: {e}".replace("\n", " "), path) from None
    try:
        data = json.loads(text)
    except json.JSONDecodeError as e:
        raise InputError(f"invalid JSON at line {e.lineno} column {e.colno}: {e.msg}", path) from None
    if not isinstance(data, dict) or "frames" not in data:
        raise InputError("expected an object with a 'frames' list", path, "frames")
    frames = data["frames"]
    if not isinstance(frames, list) or not frames:
        raise InputError("must be a non-empty list", path, "frames")
    out = []
    for n, frame in enumerate(frames):
        field = f"frames[{n}].transform_matrix"
        if not isinstance(frame, dict) or "transform_matrix" not in frame:
            raise InputError("missing", path, field)
        try:
            m = np.array(frame["transform_matrix"], dtype=np.float64)
        except (TypeError, ValueError):
            raise InputError("must be a 4x4 matrix of numbers", path, field) from None
        if m.shape not in ((4, 4), (3, 4)):
            raise InputError(f"must be a 4x4 matrix, got shape {m.shape}", path, field)
        if not np.all(np.isfinite(m)):
            raise InputError("contains non-finite values", path, field)
        r = m[:3, :3]
        if np.abs(r.T @ r - np.eye(3)).max() > 1e-2 or np.linalg.det(r) <= 0:
            raise InputError("rotation part is not a rotation (scaled, sheared or mirrored)", path, field)
        out.append(m[:3, :4])
    return np.stack(out).astype(np.float32)
