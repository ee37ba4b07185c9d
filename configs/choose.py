"""Choosing a preset from the data, for ``nerfkit fit --data X`` without a preset.

:func:`choose` maps what a dataset is (:func:`capture_kind`) to a preset, the overrides applied on top of it
and the reason printed to the user:

* no data (the built-in scene): ``demo``;
* ``blender``, an object on a transparent background (``transforms_*.json`` whose first image has an alpha
  channel with transparent pixels): ``hash-fast``;
* ``forward``, a forward-facing real capture (LLFF ``poses_bounds.npy`` whose cameras face one way): the
  loader gives NDC rays, which already map the scene to a unit cube, so ``real-capture`` without the
  contraction and without inverse-depth sampling (NDC's ``t`` is already linear in inverse depth);
* ``360``, a real capture in world space (``transforms.json`` from nerfstudio / Instant-NGP /
  ``nerfkit data colmap``, opaque ``transforms_*.json``, or a ``poses_bounds.npy`` whose viewing directions
  spread more than 45 degrees, which the LLFF loader then loads in world space:
  :func:`nerfkit.data.capture_kind`): ``real-capture`` as it is (world rays, contracted unbounded space).

:func:`capture_kind` reads only metadata (JSON, the ``.npy`` poses and the first image of a Blender layout).
"""

from __future__ import annotations

import dataclasses
import math
from pathlib import Path

import numpy as np

from nerfkit.errors import InputError

MAX_CPU_SIDE = 500
"""The longer image side :func:`cpu_downscale` aims for (pixels): a fit on a CPU stays interactive."""

CHOICES: dict[str, tuple[str, dict, str]] = {
    "blender": ("hash-fast", {}, "an object on a transparent background"),
    "forward": ("real-capture", {"model.contraction": False, "model.lindisp": False},
                "a real forward-facing capture, NDC rays without contraction"),
    "360": ("real-capture", {}, "a real 360-degree capture"),
}
"""capture kind -> (preset, overrides as {"section.field": value}, what the data is)."""


def choose(path: Path | str | None) -> tuple[str, dict, str]:
    """(preset name, overrides, reason) for fitting the data at ``path`` (None: the built-in scene).

    Raises InputError when ``path`` is not a dataset (as loading it would)."""
    if path is None:
        return "demo", {}, "no --data: the built-in procedural scene"
    kind = capture_kind(path)
    name, overrides, what = CHOICES[kind]
    return name, dict(overrides), f"{what}: {_source(Path(path), kind)}"


def capture_kind(path: Path | str) -> str:
    """``"blender"`` | ``"forward"`` | ``"360"`` for the dataset at ``path`` (a directory or its metadata file),
    from the files present (see the module docstring)."""
    root = _root(Path(path))
    if (root / "transforms_train.json").is_file():
        return "blender" if _transparent(root, root / "transforms_train.json") else "360"
    if (root / "transforms.json").is_file():
        return "360"  # world rays, contracted, whichever way the cameras face (as nerfstudio fits them)
    from nerfkit.data import capture_kind as data_kind

    # poses_bounds.npy: the LLFF loader's own rule (NDC for "forward"), so the choice matches the rays it gives.
    return data_kind(root)


def _root(p: Path) -> Path:
    if not p.exists():
        raise InputError("dataset path not found", p)
    return p.parent if p.is_file() else p


def _transparent(root: Path, json_path: Path) -> bool:
    """Whether the first frame's image has an alpha channel with some transparent pixels (alpha < 0.5)."""
    from nerfkit.data.images import read_raw

    file_path = str(_first_frame(json_path).get("file_path", ""))
    image = next((c for c in (root / file_path, root / (file_path + ".png")) if file_path and c.is_file()), None)
    if image is None:
        return False  # the loader reports the missing image
    raw = read_raw(image)
    if raw.ndim != 3 or raw.shape[-1] not in (2, 4):
        return False
    alpha = raw[..., -1].astype(np.float64)
    full = np.iinfo(raw.dtype).max if np.issubdtype(raw.dtype, np.integer) else 1.0
    return bool(np.any(alpha < 0.5 * full))


def _first_frame(json_path: Path) -> dict:
    """The first entry of a transforms file's ``frames`` ({} when there is none to read)."""
    from nerfkit.data.common import read_json

    frames = read_json(json_path).get("frames")
    return frames[0] if isinstance(frames, list) and frames and isinstance(frames[0], dict) else {}


def _source(p: Path, kind: str) -> str:
    """The file the kind was read from, for the reason line."""
    root = _root(p)
    if (root / "transforms_train.json").is_file():
        return "transforms_train.json with " + ("transparent images" if kind == "blender" else "opaque images")
    if (root / "transforms.json").is_file():
        return "transforms.json" + (" from COLMAP" if "colmap_im_id" in _first_frame(root / "transforms.json") else "")
    return "poses_bounds.npy, " + ("views spread all around" if kind == "360" else "cameras facing one way")


def apply_overrides(cfg, overrides: dict):
    """``cfg`` (a nested config dataclass) with ``{"section.field": value}`` replaced.

    >>> from nerfkit.config import FitConfig
    >>> apply_overrides(FitConfig(), {"model.contraction": True, "train.steps": 7}).model.contraction
    True
    """
    for key, value in overrides.items():
        head, _, rest = key.partition(".")
        value = apply_overrides(getattr(cfg, head), {rest: value}) if rest else value
        cfg = dataclasses.replace(cfg, **{head: value})
    return cfg


def cpu_downscale(width: int, height: int, max_side: int = MAX_CPU_SIDE) -> int:
    """The smallest integer downscale that brings the longer image side to at most ``max_side`` pixels.

    >>> cpu_downscale(960, 544), cpu_downscale(400, 300), cpu_downscale(4032, 3024)
    (2, 1, 9)
    """
    return max(1, math.ceil(max(width, height) / max_side))
