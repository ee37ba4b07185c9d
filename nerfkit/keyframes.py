"""Keyframed camera paths as nerfstudio's viewer writes them (``camera_path.json``), for ``nerfkit view``.

The format (nerfstudio's render panel, ``viewer/render_panel.py``): ``keyframes`` (each ``matrix``, a
flattened 4x4 camera-to-world, ``fov`` in degrees (vertical), ``aspect``), ``default_fov``,
``default_transition_sec``, ``render_width``, ``render_height``, ``fps``, ``seconds``, ``is_cycle``,
``smoothness_value``, ``camera_type`` ("perspective") and ``camera_path``: one entry per frame with
``camera_to_world`` (flattened 4x4), ``fov`` (vertical, degrees) and ``aspect``. Matrices are in the OpenGL
convention (x right, y up, looking down -z), in the run's world frame (nerfkit's, the frame of ``scene.json``).

Frames follow nerfstudio's interpolation: Kochanek-Bartels splines (``splines`` package) through the keyframe
positions, rotations (quaternions) and fields of view, with tension ``smoothness_value``, bias and continuity
0, natural end conditions (closed for a cycle); every transition lasts ``default_transition_sec``, and frame
``i`` of ``fps * seconds`` sits at ``i / (fps * seconds)`` of the way along.
"""

from __future__ import annotations

import dataclasses

import numpy as np

from nerfkit import camera_paths


@dataclasses.dataclass(frozen=True)
class Keyframe:
    """One keyframe: ``c2w`` float [4, 4] (OpenGL convention, the run's world frame), ``fov`` vertical field of
    view in degrees, ``aspect`` width / height."""

    c2w: np.ndarray
    fov: float
    aspect: float


def _splines(keys: list[Keyframe], tension: float, loop: bool):
    """(position, orientation, fov) Kochanek-Bartels splines through the keyframes."""
    import splines
    import splines.quaternion as squat

    end = "closed" if loop else "natural"
    tcb = (tension, 0.0, 0.0)
    c2w = np.stack([k.c2w for k in keys]).astype(np.float64)
    wxyz = camera_paths.rotation_to_quaternion(c2w[:, :3, :3])
    quats = squat.canonicalized([squat.UnitQuaternion.from_unit_xyzw(q[[1, 2, 3, 0]]) for q in wxyz])
    return (splines.KochanekBartels(c2w[:, :3, 3], tcb=tcb, endconditions=end),
            squat.KochanekBartels(list(quats), tcb=tcb, endconditions=end),
            splines.KochanekBartels([k.fov for k in keys], tcb=tcb, endconditions=end))


def interpolate(keys: list[Keyframe], n_frames: int, smoothness: float = 0.0,
                loop: bool = False) -> tuple[np.ndarray, np.ndarray]:
    """``n_frames`` poses along the keyframes: (c2w float64 [n, 4, 4], vertical fov in degrees [n]).

    Frame ``i`` is at spline parameter ``i / n_frames`` of the whole path (nerfstudio's sampling: the first
    frame is the first keyframe, the last keyframe itself is not reached). One keyframe gives it ``n`` times.

    >>> a = Keyframe(np.eye(4), 50.0, 1.0)
    >>> b = Keyframe(np.diag([1.0, 1.0, 1.0, 1.0]) + np.eye(4, k=3) * 2.0, 70.0, 1.0)  # moved to x = 2
    >>> c2w, fov = interpolate([a, b], 4)
    >>> c2w[:, 0, 3].round(3).tolist(), fov.round(1).tolist()
    ([0.0, 0.5, 1.0, 1.5], [50.0, 55.0, 60.0, 65.0])
    """
    if len(keys) == 1:
        return np.repeat(keys[0].c2w[None].astype(np.float64), n_frames, 0), np.full(n_frames, keys[0].fov)
    pos, rot, fov = _splines(keys, smoothness, loop)
    span = len(keys) if loop else len(keys) - 1
    u = np.arange(n_frames) / n_frames * span
    out = np.tile(np.eye(4), (n_frames, 1, 1))
    out[:, :3, 3] = np.asarray(pos.evaluate(u), np.float64)
    out[:, :3, :3] = camera_paths.quaternion_to_rotation([q.wxyz for q in rot.evaluate(u)])
    return out, np.asarray(fov.evaluate(u), np.float64)


def camera_path_json(keys: list[Keyframe], width: int, height: int, fps: float = 30.0, transition: float = 2.0,
                     smoothness: float = 0.0, loop: bool = False) -> dict:
    """The ``camera_path.json`` nerfstudio's viewer would write for these keyframes (see the module docstring):
    ``seconds`` is ``transition`` per keyframe gap (per keyframe for a cycle), ``fps * seconds`` frames.

    >>> d = camera_path_json([Keyframe(np.eye(4), 50.0, 1.5)] * 2, 96, 64, fps=10, transition=1.0)
    >>> len(d["camera_path"]), d["seconds"], d["camera_type"], len(d["camera_path"][0]["camera_to_world"])
    (10, 1.0, 'perspective', 16)
    """
    if not keys:
        raise ValueError("camera_path_json: no keyframes")
    seconds = transition * (len(keys) if loop else max(len(keys) - 1, 1))
    c2w, fov = interpolate(keys, max(int(round(fps * seconds)), 1), smoothness, loop)
    aspect = width / height
    return {
        "camera_type": "perspective", "render_width": int(width), "render_height": int(height),
        "fps": float(fps), "seconds": float(seconds), "is_cycle": bool(loop), "smoothness_value": float(smoothness),
        "default_fov": float(keys[-1].fov), "default_transition_sec": float(transition),
        "keyframes": [{"matrix": np.asarray(k.c2w, np.float64).flatten().tolist(), "fov": float(k.fov),
                       "aspect": float(k.aspect), "override_transition_enabled": False,
                       "override_transition_sec": None} for k in keys],
        "camera_path": [{"camera_to_world": m.flatten().tolist(), "fov": float(f), "aspect": aspect}
                        for m, f in zip(c2w, fov)],
    }


def path_arrays(path: dict) -> tuple[np.ndarray, np.ndarray, int, int]:
    """The frames of a ``camera_path.json`` dict: (c2w float32 [N, 3, 4], vertical fov in degrees [N],
    render_width, render_height)."""
    frames = path["camera_path"]
    c2w = np.asarray([np.reshape(f["camera_to_world"], (4, 4))[:3] for f in frames], np.float32)
    return c2w, np.asarray([f["fov"] for f in frames], np.float64), int(path["render_width"]), int(path["render_height"])
