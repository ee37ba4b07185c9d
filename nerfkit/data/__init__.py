"""Dataset loading.

:func:`load_scene` recognises the format of a path and returns a :class:`~nerfkit.types.Scene`. Supported:

* Blender / nerf_synthetic (and Instant-NGP style ``transforms_*.json``): a directory containing
  ``transforms_train.json`` (or the path of that file itself); see :mod:`nerfkit.data.blender`.
* LLFF forward-facing captures: a directory containing ``poses_bounds.npy`` and ``images/`` (or the path of
  ``poses_bounds.npy`` itself); NDC cameras, every 8th image held out as ``test``; see
  :mod:`nerfkit.data.llff`.
* nerfstudio / Instant-NGP single-file captures: a directory containing ``transforms.json`` (what
  ``nerfkit data colmap`` writes); see :mod:`nerfkit.data.nerfstudio`.

:func:`capture_kind` tells from the metadata alone (no image is read) whether a path holds a Blender object
(``"blender"``), a forward-facing capture (``"forward"``) or a 360-degree one (``"360"``), for choosing a
preset before loading.

:func:`make_demo_scene` builds a procedural scene in memory and :func:`write_blender` saves any scene in the
Blender layout; see :mod:`nerfkit.data.demo`. What the loaders share (JSON field validation, intrinsics keys,
image listing, the hold-out rule, the rotation check) is in :mod:`nerfkit.data.common`.
"""

from __future__ import annotations

from pathlib import Path
from typing import Iterable, NoReturn

from nerfkit.errors import InputError
from nerfkit.types import Scene
from nerfkit.data.blender import is_blender_dir, load_blender
from nerfkit.data.common import DEFAULT_SPLITS, is_360, split_names
from nerfkit.data.demo import make_demo_scene, write_blender
from nerfkit.data.llff import POSES_BOUNDS, is_llff_dir, load_llff, read_poses_bounds
from nerfkit.data.nerfstudio import TRANSFORMS, is_nerfstudio_dir, load_nerfstudio, read_poses

__all__ = ["capture_kind", "load_scene", "load_blender", "load_llff", "load_nerfstudio", "make_demo_scene", "write_blender"]


def load_scene(path: Path | str, downscale: int = 1, splits: Iterable[str] = DEFAULT_SPLITS,
               cameras_only: Iterable[str] = ()) -> Scene:
    """Load the dataset at ``path``, dispatching on its format.

    Args:
      path: a dataset directory (Blender: contains ``transforms_train.json``; LLFF: contains
        ``poses_bounds.npy``), or a ``transforms_*.json`` / ``poses_bounds.npy`` file inside one.
      downscale: positive integer image downscale factor (area filter; intrinsics follow). LLFF reads
        ``images_<downscale>/`` instead when it exists.
      splits: which splits to load; missing optional splits are left out of ``Scene.splits``.
      cameras_only: further splits wanted for their cameras and image names alone. The Blender layout reads
        them without decoding their images (``Scene.cameras_only``); the other formats, whose splits are
        subsets of one list of photos, load them in full (into ``Scene.splits``).
    Raises:
      InputError: if the path does not exist, its format is not recognised, or the data is invalid.
    """
    p = _dataset_dir(path)
    if is_blender_dir(p):
        return load_blender(p, downscale=downscale, splits=splits, cameras_only=cameras_only)
    splits = split_names((*split_names(splits, p), *split_names(cameras_only, p)), p)
    if is_nerfstudio_dir(p):
        return load_nerfstudio(p, downscale=downscale, splits=splits)
    if is_llff_dir(p):
        return load_llff(p, downscale=downscale, splits=splits)
    _unrecognised(p)


def _dataset_dir(path: Path | str) -> Path:
    """``path``, or its directory when it names a ``transforms_*.json`` / ``transforms.json`` /
    ``poses_bounds.npy`` file; ``InputError`` when it does not exist."""
    p = Path(path)
    if not p.exists():
        raise InputError("dataset path not found", p)
    if p.is_file() and ((p.name.startswith("transforms_") and p.suffix == ".json") or p.name in (POSES_BOUNDS, TRANSFORMS)):
        p = p.parent
    return p


def _unrecognised(p: Path) -> NoReturn:
    """Raise the ``InputError`` for a directory of no format nerfkit reads (naming what is missing)."""
    if p.is_dir() and any(p.glob("transforms_*.json")):
        raise InputError("missing transforms_train.json (the train split is required)", p, "transforms_train.json")
    if p.is_dir() and (p / "images").is_dir():
        raise InputError(f"missing {POSES_BOUNDS} (an LLFF scene needs it beside images/)", p / POSES_BOUNDS)
    raise InputError("unrecognised dataset format (expected a Blender directory containing transforms_train.json, "
                     f"a nerfstudio directory containing {TRANSFORMS} or an LLFF directory containing {POSES_BOUNDS})", p)


def capture_kind(path: Path | str) -> str:
    """What the dataset at ``path`` holds, from its metadata only (no image is read).

    Returns:
      ``"blender"`` for the Blender layout (``transforms_train.json``: synthetic, usually RGBA objects);
      for an LLFF ``poses_bounds.npy`` or a nerfstudio / Instant-NGP / COLMAP-import ``transforms.json``,
      ``"360"`` when the cameras look around their subject (viewing directions more than 45 degrees from their
      mean, :func:`~nerfkit.data.common.is_360`; such LLFF captures are not loaded in NDC) and ``"forward"``
      otherwise.
    Raises:
      InputError: as :func:`load_scene` for a missing path or an unrecognised format, or unreadable metadata.

    >>> import tempfile
    >>> d = Path(tempfile.mkdtemp())
    >>> write_blender(make_demo_scene(width=4, height=4, n_train=1, n_val=0, n_test=0), d)
    >>> capture_kind(d)
    'blender'
    """
    p = _dataset_dir(path)
    if is_blender_dir(p):
        return "blender"
    if is_nerfstudio_dir(p):
        c2w = read_poses(p / TRANSFORMS)
    elif is_llff_dir(p):
        c2w = read_poses_bounds(p / POSES_BOUNDS)[0]
    else:
        _unrecognised(p)
    return "360" if is_360(c2w) else "forward"
