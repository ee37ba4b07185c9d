"""Dataset loading.

:func:`load_scene` recognises the format of a path and returns a :class:`~nerfkit.types.Scene`. Supported:

* Blender / nerf_synthetic (and Instant-NGP style ``transforms_*.json``): a directory containing
  ``transforms_train.json`` (or the path of that file itself); see :mod:`nerfkit.data.blender`.

:func:`make_demo_scene` builds a procedural scene in memory and :func:`write_blender` saves any scene in the
Blender layout; see :mod:`nerfkit.data.demo`.
"""

from __future__ import annotations

from pathlib import Path
from typing import Iterable

from nerfkit.errors import InputError
from nerfkit.types import Scene
from nerfkit.data.blender import DEFAULT_SPLITS, is_blender_dir, load_blender
from nerfkit.data.demo import make_demo_scene, write_blender

__all__ = ["load_scene", "load_blender", "make_demo_scene", "write_blender"]


def load_scene(path: Path | str, downscale: int = 1, splits: Iterable[str] = DEFAULT_SPLITS) -> Scene:
    """Load the dataset at ``path``, dispatching on its format.

    Args:
      path: a dataset directory (Blender: contains ``transforms_train.json``), or a ``transforms_*.json``
        file inside one.
      downscale: positive integer image downscale factor (area filter; intrinsics follow).
      splits: which splits to load; missing optional splits are left out of ``Scene.splits``.
    Raises:
      InputError: if the path does not exist, its format is not recognised, or the data is invalid.
    """
    p = Path(path)
    if not p.exists():
        raise InputError("dataset path not found", p)
    if p.is_file() and p.name.startswith("transforms_") and p.suffix == ".json":
        p = p.parent
    if is_blender_dir(p):
        return load_blender(p, downscale=downscale, splits=splits)
    if p.is_dir() and any(p.glob("transforms_*.json")):
        raise InputError("missing transforms_train.json (the train split is required)", p, "transforms_train.json")
    raise InputError("unrecognised dataset format (expected a Blender directory containing transforms_train.json)", p)
