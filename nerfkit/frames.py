"""World frames of a run: the data's own world, the scene frame nerfkit fits in, and the frame of camera paths.

nerfkit fits every scene in a *scene frame*. For Blender scenes, forward-facing LLFF captures and the demo scene
that is the data's own world; nerfstudio / COLMAP captures (``transforms.json``) and 360-degree LLFF captures
are normalised by the loader (:func:`nerfkit.data.common.normalising_transform`, the similarity
``file_to_scene``). What the run exports (meshes, point clouds, cameras) goes back to the *data frame* with
its inverse, so it lines up with the user's ``transforms.json`` or COLMAP model.

Camera paths (``camera_path.json``) are in *nerfstudio's frame*, so a path made in nerfstudio's viewer for
the same data renders the same views: for ``transforms.json`` data, the world after nerfstudio's data parser
(:func:`nerfstudio_transform`: centred on the mean camera position, mean camera up turned to +z, scaled so
the farthest camera coordinate is 1); for every other kind of data, the data frame (nerfstudio's Blender
parser keeps the file's poses as they are). ``path_to_scene`` maps that frame into the scene frame.

All transforms are float64 [4, 4] similarities ``[[s R, t], [0, 1]]`` acting on points (column vectors).
"""

from __future__ import annotations

from pathlib import Path

import numpy as np

from nerfkit.data.common import normalising_transform, transform_poses, up_rotation
from nerfkit.types import Scene


def nerfstudio_transform(c2w_file: np.ndarray, orientation: str = "up") -> np.ndarray:
    """float64 [4, 4]: the similarity nerfstudio's data parser applies to a ``transforms.json`` world.

    nerfstudio's defaults (``orientation_method="up"``, ``center_method="poses"``, ``auto_scale_poses``,
    ``scale_factor=1``): ``x -> s R (x - c)`` with ``c`` the mean camera position, ``R`` the smallest rotation
    taking the mean camera up (+y of the OpenGL c2w) to +z (identity for ``orientation="none"``, the file's
    ``orientation_override``), and ``s = 1 / max |R (o_i - c)|`` over every coordinate of every camera.

    Args:
      c2w_file: float [N, 3, 4] every frame's camera-to-world in the file's world.
      orientation: ``"up"`` or ``"none"``.

    >>> c2w = np.concatenate([np.tile(np.eye(3), (2, 1, 1)), [[[1.0], [0], [0]], [[3.0], [0], [0]]]], axis=2)
    >>> m = nerfstudio_transform(c2w)   # up = +y -> +z; centre (2, 0, 0); farthest coordinate 1 -> scale 1
    >>> (m @ [3.0, 0.0, 0.0, 1.0]).round(6).tolist(), (m @ [2.0, 1.0, 0.0, 1.0]).round(6).tolist()
    ([1.0, 0.0, 0.0, 1.0], [0.0, 0.0, 1.0, 1.0])
    """
    c2w = np.asarray(c2w_file, np.float64)
    centre = c2w[:, :3, 3].mean(axis=0)
    r = up_rotation(c2w) if orientation != "none" else np.eye(3)
    extent = float(np.abs((c2w[:, :3, 3] - centre) @ r.T).max())
    s = 1.0 / extent if extent > 0 else 1.0
    m = np.eye(4)
    m[:3, :3] = s * r
    m[:3, 3] = -s * (r @ centre)
    return m


def scene_frames(scene: Scene) -> dict[str, np.ndarray]:
    """``{"file_to_scene", "path_to_scene"}`` of a loaded scene (see the module docstring), float64 [4, 4] each."""
    return _frames(scene.source, getattr(scene, "file_to_scene", None))


def frames_of_source(source: str) -> dict[str, np.ndarray]:
    """:func:`scene_frames` from a run's data source alone (reads ``transforms.json``, no image), for runs whose
    ``scene.json`` predates the saved frames; identities for every other source."""
    ns = _nerfstudio_json(source)
    if ns is None:
        return _frames(source, None)
    from nerfkit.data.nerfstudio import read_poses

    return _frames(source, normalising_transform(read_poses(ns)))


def _frames(source: str, file_to_scene: np.ndarray | None) -> dict[str, np.ndarray]:
    file_to_scene = np.eye(4) if file_to_scene is None else np.asarray(file_to_scene, np.float64)
    ns = _nerfstudio_json(source)
    if ns is None:
        return {"file_to_scene": file_to_scene, "path_to_scene": file_to_scene}
    from nerfkit.data.common import read_json
    from nerfkit.data.nerfstudio import read_poses

    orientation = "none" if read_json(ns).get("orientation_override") == "none" else "up"
    to_ns = nerfstudio_transform(read_poses(ns), orientation)
    return {"file_to_scene": file_to_scene, "path_to_scene": file_to_scene @ np.linalg.inv(to_ns)}


def _nerfstudio_json(source: str) -> Path | None:
    """The ``transforms.json`` of a nerfstudio-format source directory, or None for any other source."""
    from nerfkit.data.nerfstudio import TRANSFORMS, is_nerfstudio_dir

    if source == "demo" or not is_nerfstudio_dir(source):
        return None
    return Path(source) / TRANSFORMS


def apply_to_points(m: np.ndarray, x: np.ndarray) -> np.ndarray:
    """Points float [..., 3] mapped by the [4, 4] affine ``m``."""
    x = np.asarray(x, np.float64)
    return x @ m[:3, :3].T + m[:3, 3]


def apply_to_poses(m: np.ndarray, c2w: np.ndarray) -> np.ndarray:
    """float64 [N, 3, 4]: camera-to-world poses moved by the similarity ``m`` (rotation part turned, position mapped)."""
    return transform_poses(np.asarray(m, np.float64), np.asarray(c2w, np.float64)[:, :3, :4])
