"""``camera_path.json`` in nerfstudio's format: what its viewer writes and ``ns-render camera-path`` reads.

A file holds::

    {"camera_type": "perspective", "render_width": 1920, "render_height": 1080, "fps": 30, "seconds": 4,
     "camera_path": [{"camera_to_world": [16 numbers: the 4x4 c2w row by row], "fov": 50.0, "aspect": 1.78}, ...],
     "keyframes": [{"matrix": [16 numbers], "fov": 50.0, "aspect": 1.78,
                    "override_transition_enabled": false, "override_transition_sec": null}, ...],
     "smoothness_value": 0.5, "is_cycle": false, "default_fov": 50.0, "default_transition_sec": 2.0}

Poses are OpenGL camera-to-world (the camera looks down its -z axis, +y up) in nerfstudio's world frame
(:mod:`nerfkit.frames`); ``fov`` is the vertical field of view in degrees, so the focal length is
``0.5 render_height / tan(fov / 2)`` on both axes with the principal point at the image centre (nerfstudio's
``get_path_from_json``). ``aspect`` is ignored: the image size is ``render_width`` x ``render_height``.

``camera_path`` lists every frame. A file with ``keyframes`` only (say, written by hand) is interpolated as
nerfstudio's viewer does: Kochanek-Bartels splines (``splines.KochanekBartels`` for positions and fov,
``splines.quaternion.KochanekBartels`` for rotations) with tension ``smoothness_value`` and zero bias and
continuity, natural end conditions (closed when ``is_cycle``), keyframe ``i`` reached after the transition times
(``default_transition_sec``, or a keyframe's ``override_transition_sec``) of the keyframes before it, the time
mapped to the spline parameter by a monotone PCHIP curve, ``int(fps * seconds)`` frames. Unlike nerfstudio,
whose frame ``i`` is at ``i / N`` of the duration, an open path's last frame is its last keyframe.
"""

from __future__ import annotations

import dataclasses
import json
from pathlib import Path
from typing import Any

import numpy as np

from nerfkit.camera_paths import quaternion_to_rotation, rotation_to_quaternion
from nerfkit.data.common import json_matrix, json_number, read_json, rotation_problem
from nerfkit.errors import InputError
from nerfkit.types import Cameras

CAMERA_TYPES = ("perspective", "fisheye", "equirectangular")  # what nerfstudio writes; nerfkit renders the first
SETTINGS = ("keyframes", "smoothness_value", "is_cycle", "default_fov", "default_transition_sec")
DEFAULT_FPS = 30.0


@dataclasses.dataclass(frozen=True)
class CameraPath:
    """A camera path in its file's frame.

    Attributes:
      c2w: float64 [N, 3, 4] OpenGL camera-to-world; fov: float64 [N] vertical field of view in degrees.
      width, height: the image size; fps: frames per second.
      settings: the keyframes and their settings (``SETTINGS``) as the file had them, written back unchanged.
    """

    c2w: np.ndarray
    fov: np.ndarray
    width: int
    height: int
    fps: float
    settings: dict

    def to_json(self) -> dict:
        """The file's content: ``camera_path`` from the poses, the keyframe settings as they were."""
        aspect = self.width / self.height
        frames = [{"camera_to_world": _flat(m), "fov": float(f), "aspect": aspect} for m, f in zip(self.c2w, self.fov)]
        return {"camera_type": "perspective", "render_width": self.width, "render_height": self.height,
                "fps": self.fps, "seconds": len(frames) / self.fps, "keyframes": [], "smoothness_value": 0.0,
                "is_cycle": False, "default_fov": float(self.fov[0]), **self.settings, "camera_path": frames}


def _flat(c2w: np.ndarray) -> list[float]:
    m = np.eye(4)
    m[:3, :4] = c2w
    return m.reshape(-1).tolist()


def is_camera_path(data: Any) -> bool:
    """True for the content of a nerfstudio ``camera_path.json`` (an object with ``camera_path`` or ``keyframes``)."""
    return isinstance(data, dict) and ("camera_path" in data or "keyframes" in data)


def write(path: Path | str, cp: CameraPath) -> Path:
    """Write ``cp`` as a ``camera_path.json`` (:meth:`CameraPath.to_json`)."""
    path = Path(path)
    path.write_text(json.dumps(cp.to_json(), indent=1) + "\n")
    return path


def read(path: Path | str, data: dict | None = None) -> CameraPath:
    """Read a nerfstudio ``camera_path.json`` (see the module docstring); ``data``: its content, if already read.

    Raises:
      InputError: unreadable or invalid JSON; no frames and no keyframes; a ``camera_type`` other than
        ``perspective`` (nerfkit renders pinhole cameras only); a missing or non-positive render size, fps or
        fov; a pose that is not a 4x4 matrix of 16 finite numbers with a rotation in it.
    """
    path = Path(path)
    data = read_json(path) if data is None else data
    if not is_camera_path(data):
        raise InputError("expected a nerfstudio camera path (an object with 'camera_path' or 'keyframes')", path)
    kind = data.get("camera_type", "perspective")
    if kind != "perspective":
        known = f"'{kind}' cameras are not supported" if kind in CAMERA_TYPES else f"unknown camera type {kind!r}"
        raise InputError(f"{known}: nerfkit renders perspective cameras only", path, "camera_type")
    size = [int(json_number(data.get(k), path, k, positive=True, integer=True)) for k in ("render_width", "render_height")]
    fps = json_number(data.get("fps", DEFAULT_FPS), path, "fps", positive=True)
    settings = {k: data[k] for k in SETTINGS if k in data}
    if data.get("camera_path"):
        c2w, fov = _frames(data["camera_path"], "camera_path", "camera_to_world", data, path)
    elif data.get("keyframes"):
        c2w, fov = _keyframe_frames(data, fps, path)
    else:
        raise InputError("no frames: 'camera_path' and 'keyframes' are both empty", path, "camera_path")
    return CameraPath(c2w=c2w, fov=fov, width=size[0], height=size[1], fps=fps, settings=settings)


def _frames(items: Any, key: str, pose_key: str, data: dict, path: Path) -> tuple[np.ndarray, np.ndarray]:
    """(c2w float64 [N, 3, 4], fov float64 [N]) of a ``camera_path`` or ``keyframes`` list."""
    if not isinstance(items, list):
        raise InputError("must be a list", path, key)
    c2w, fov = [], []
    for i, item in enumerate(items):
        where = f"{key}[{i}]"
        if not isinstance(item, dict) or pose_key not in item:
            raise InputError("missing", path, f"{where}.{pose_key}")
        c2w.append(_pose(item[pose_key], path, f"{where}.{pose_key}"))
        value = item.get("fov", data.get("default_fov"))
        f = json_number(value, path, f"{where}.fov", positive=True)
        if f >= 180.0:
            raise InputError(f"vertical field of view must be below 180 degrees, got {f}", path, f"{where}.fov")
        fov.append(f)
    return np.stack(c2w), np.asarray(fov, np.float64)


def _pose(value: Any, path: Path, field: str) -> np.ndarray:
    """float64 [3, 4] from a flattened (row by row) or nested 4x4 matrix."""
    nested = isinstance(value, list) and bool(value) and isinstance(value[0], list)
    m = json_matrix(value, (4, 4) if nested else (16,), path, field).reshape(4, 4)
    why = rotation_problem(m[:3, :3])
    if why:
        raise InputError(f"the rotation part is {why}", path, field)
    return m[:3, :4]


# --------------------------------------------------------------------------------------------- keyframes
def _keyframe_frames(data: dict, fps: float, path: Path) -> tuple[np.ndarray, np.ndarray]:
    keys = data["keyframes"]
    c2w, fov = _frames(keys, "keyframes", "matrix", data, path)
    loop = bool(data.get("is_cycle", False))
    tension = json_number(data.get("smoothness_value", 0.0), path, "smoothness_value")
    n_trans = len(keys) if loop else len(keys) - 1
    seconds = data.get("seconds")
    default = data.get("default_transition_sec")
    if default is None:
        default = float(seconds) / max(n_trans, 1) if seconds is not None else 2.0
    default = json_number(default, path, "default_transition_sec", positive=True)
    order = list(range(1, len(keys))) + ([0] if loop else [])
    trans = [_transition(keys[i], default, path, f"keyframes[{i}]") for i in order]
    duration = float(np.sum(trans))
    seconds = duration if seconds is None else json_number(seconds, path, "seconds", positive=True)
    n = max(int(fps * seconds), 1)
    return keyframe_path(c2w, fov, np.asarray(trans, np.float64), n, tension=tension, loop=loop)


def _transition(key: dict, default: float, path: Path, where: str) -> float:
    if key.get("override_transition_enabled") and key.get("override_transition_sec") is not None:
        return json_number(key["override_transition_sec"], path, f"{where}.override_transition_sec", positive=True)
    return default


def keyframe_path(c2w, fov, transitions, n_frames: int, tension: float = 0.0, loop: bool = False):
    """Interpolate keyframes as nerfstudio's viewer does (see the module docstring).

    Args:
      c2w: float [K, 3, 4] keyframe poses; fov: float [K] their fields of view.
      transitions: float [K - 1] seconds from each keyframe to the next ([K] with ``loop``: the last one
        back to the first).
      n_frames: frames of the path; tension: the splines' tension (``smoothness_value``); loop: a closed path.
    Returns:
      (c2w float64 [n_frames, 3, 4], fov float64 [n_frames]). An open path starts at the first keyframe and
      ends at the last; a closed one does not repeat its first frame at the end.

    >>> keys = np.stack([np.eye(3, 4) + np.eye(3, 4, 3) * x for x in (0.0, 1.0, 3.0)])   # positions x = 0, 1, 3
    >>> c2w, fov = keyframe_path(keys, [50.0, 50.0, 50.0], [1.0, 1.0], 5)
    >>> c2w[:, 0, 3].round(3).tolist(), fov.tolist()
    ([0.0, 0.406, 1.0, 1.906, 3.0], [50.0, 50.0, 50.0, 50.0, 50.0])
    """
    import splines
    import splines.quaternion as squat

    keys = np.asarray(c2w, np.float64)
    fov = np.asarray(fov, np.float64)
    if len(keys) == 1:
        return np.repeat(keys, n_frames, axis=0), np.repeat(fov, n_frames)
    u = _spline_parameter(np.asarray(transitions, np.float64), n_frames, loop)
    ends = "closed" if loop else "natural"
    tcb = (tension, 0.0, 0.0)
    pos = np.asarray(splines.KochanekBartels(list(keys[:, :, 3]), tcb=tcb, endconditions=ends).evaluate(u))
    f = np.asarray(splines.KochanekBartels(list(fov), tcb=tcb, endconditions=ends).evaluate(u), np.float64)
    wxyz = rotation_to_quaternion(keys[:, :, :3])
    quats = squat.canonicalized([squat.UnitQuaternion.from_unit_xyzw(q[[1, 2, 3, 0]]) for q in wxyz])
    spline = squat.KochanekBartels(list(quats), tcb=tcb, endconditions=ends)
    rot = quaternion_to_rotation([q.wxyz for q in spline.evaluate(u)])
    out = np.concatenate([rot, pos.reshape(-1, 3, 1)], axis=-1)
    on_key = np.abs(u - np.round(u)) < 1e-9  # frames on a keyframe are that keyframe exactly
    out[on_key] = keys[np.round(u[on_key]).astype(int) % len(keys)]
    return out, f.reshape(-1)


def _spline_parameter(transitions: np.ndarray, n_frames: int, loop: bool) -> np.ndarray:
    """float64 [n_frames]: the spline parameter (keyframe index) of each frame, the frames evenly spaced in time
    and time mapped to the parameter by a monotone PCHIP interpolant through the keyframe times."""
    from scipy.interpolate import PchipInterpolator

    times = np.concatenate([[0.0], np.cumsum(transitions)])
    index = np.arange(len(times), dtype=np.float64)
    if loop:  # pad one keyframe on each side so the time mapping's slope matches across the seam
        times = np.concatenate([[-transitions[-1]], times, [times[-1] + transitions[0]]])
        index = np.concatenate([[-1.0], index, [index[-1] + 1.0]])
        t = np.arange(n_frames) / n_frames * times[-2]
    else:
        t = np.linspace(0.0, times[-1], n_frames) if n_frames > 1 else np.zeros(1)
    u = np.clip(PchipInterpolator(times, index)(t), 0.0, index[-2] if loop else index[-1])
    if not loop:
        u[-1] = index[-1]
    return u


# ------------------------------------------------------------------------------------------------ cameras
def to_cameras(cp: CameraPath, path_to_scene: np.ndarray, ndc_near: float | None = None) -> Cameras:
    """The frames of ``cp`` as pinhole cameras in the scene frame (``path_to_scene``: the similarity from the
    file's frame, :mod:`nerfkit.frames`); ``ndc_near`` as the run's cameras have it (forward-facing scenes)."""
    from nerfkit.frames import apply_to_poses

    focal = (0.5 * cp.height / np.tan(np.radians(cp.fov) / 2)).astype(np.float32)
    n = len(cp.c2w)
    full = lambda v: np.full(n, v, np.float32)  # noqa: E731
    return Cameras(c2w=apply_to_poses(path_to_scene, cp.c2w).astype(np.float32), fx=focal, fy=focal.copy(),
                   cx=full(cp.width / 2), cy=full(cp.height / 2), width=cp.width, height=cp.height,
                   ndc_near=ndc_near)


def from_cameras(cams: Cameras, scene_to_path: np.ndarray, fps: float, settings: dict | None = None) -> CameraPath:
    """A :class:`CameraPath` of cameras in the scene frame, in the file's frame (``scene_to_path``); the fov is
    the vertical one of each camera's ``fy``."""
    from nerfkit.frames import apply_to_poses

    fov = np.degrees(2.0 * np.arctan(0.5 * cams.height / np.asarray(cams.fy, np.float64)))
    return CameraPath(c2w=apply_to_poses(scene_to_path, cams.c2w), fov=fov, width=cams.width, height=cams.height,
                      fps=float(fps), settings=dict(settings or {}))

