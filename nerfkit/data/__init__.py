"""Dataset loading.

:func:`load_scene` recognises the format of a path and returns a :class:`~nerfkit.types.Scene`. Supported:

* Blender / nerf_synthetic (and Instant-NGP style ``transforms_*.json``): a directory containing
  ``transforms_train.json`` (or the path of that file itself); see :mod:`nerfkit.data.blender`.
* LLFF forward-facing captures: a directory containing ``poses_bounds.npy`` and ``images/`` (or the path of
  ``poses_bounds.npy`` itself); NDC cameras, every 8th image held out as ``test``; see
  :mod:`nerfkit.data.llff`.
* nerfstudio / Instant-NGP single-file captures: a directory containing ``transforms.json`` (what
  ``nerfkit data colmap`` writes); see :mod:`nerfkit.data.nerfstudio`.

:func:`make_demo_scene` builds a procedural scene in memory and :func:`write_blender` saves any scene in the
Blender layout; see :mod:`nerfkit.data.demo`. What the loaders share (JSON field validation, intrinsics keys,
image listing, the hold-out rule, the rotation check) is in :mod:`nerfkit.data.common`.
"""

from __future__ import annotations

from pathlib import Path
from typing import Iterable

from nerfkit.errors import InputError
from nerfkit.types import Scene
from nerfkit.data.blender import is_blender_dir, load_blender
from nerfkit.data.common import DEFAULT_SPLITS
from nerfkit.data.demo import make_demo_scene, write_blender
from nerfkit.data.llff import POSES_BOUNDS, is_llff_dir, load_llff
from nerfkit.data.nerfstudio import TRANSFORMS, is_nerfstudio_dir, load_nerfstudio

__all__ = ["load_scene", "load_blender", "load_llff", "load_nerfstudio", "make_demo_scene", "write_blender"]


def load_scene(path: Path | str, downscale: int = 1, splits: Iterable[str] = DEFAULT_SPLITS) -> Scene:
    """Load the dataset at ``path``, dispatching on its format.

    Args:
      path: a dataset directory (Blender: contains ``transforms_train.json``; LLFF: contains
        ``poses_bounds.npy``), or a ``transforms_*.json`` / ``poses_bounds.npy`` file inside one.
      downscale: positive integer image downscale factor (area filter; intrinsics follow). LLFF reads
        ``images_<downscale>/`` instead when it exists.
      splits: which splits to load; missing optional splits are left out of ``Scene.splits``.
    Raises:
      InputError: if the path does not exist, its format is not recognised, or the data is invalid.
    """
    p = Path(path)
    if not p.exists():
        raise InputError("dataset path not found", p)
    if p.is_file() and ((p.name.startswith("transforms_") and p.suffix == ".json") or p.name in (POSES_BOUNDS, TRANSFORMS)):
        p = p.parent
    if is_blender_dir(p):
        return load_blender(p, downscale=downscale, splits=splits)
    if is_nerfstudio_dir(p):
        return load_nerfstudio(p, downscale=downscale, splits=splits)
    if is_llff_dir(p):
        return load_llff(p, downscale=downscale, splits=splits)
    if p.is_dir() and any(p.glob("transforms_*.json")):
        raise InputError("missing transforms_train.json (the train split is required)", p, "transforms_train.json")
    if p.is_dir() and (p / "images").is_dir():
        raise InputError(f"missing {POSES_BOUNDS} (an LLFF scene needs it beside images/)", p / POSES_BOUNDS)
    raise InputError("unrecognised dataset format (expected a Blender directory containing transforms_train.json, "
                     f"a nerfstudio directory containing {TRANSFORMS} or an LLFF directory containing {POSES_BOUNDS})", p)
