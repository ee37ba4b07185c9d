"""Loader for the NeRF "Blender" (nerf_synthetic) layout, plus the common Instant-NGP extensions.

Layout::

    root/
      transforms_train.json      required
      transforms_val.json        optional
      transforms_test.json       optional
      train/r_0.png ...

Each ``transforms_{split}.json`` holds::

    {
      "camera_angle_x": 0.69,            # horizontal field of view (radians); or fl_x [, fl_y]
      "fl_x", "fl_y", "cx", "cy", "w", "h", "k1", "k2", "p1", "p2",   # optional, Instant-NGP style
      "near", "far", "aabb",             # optional nerfkit extensions (aabb: [[x0,y0,z0],[x1,y1,z1]])
      "frames": [
        {"file_path": "./train/r_0",     # relative to root; without an extension .png is tried first
         "transform_matrix": [[...4x4 camera-to-world, OpenGL convention...]],
         ... any intrinsics key above, overriding the top-level value for this frame}
      ]
    }

Frames whose image file is missing are skipped with one warning line on stderr (how many, the first few names,
the JSON file), as Instant-NGP does; a split none of whose images exists is an error.

Images are read as stored (ignoring an EXIF orientation tag, as COLMAP and Instant-NGP do) unless ``w``/``h``
match only the EXIF-oriented size; see :mod:`nerfkit.data.images`.

Scene-level values (``near``, ``far``, ``aabb``) are read from ``transforms_train.json``; Blender defaults are
near = 2, far = 6 and the box [-1.5, 1.5]^3.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Iterable

import numpy as np

from nerfkit.errors import InputError
from nerfkit.types import Scene, SplitData
from nerfkit.data.common import (DEFAULT_SPLITS, IMAGE_SUFFIXES_ANY_CASE, INTRINSICS_ORDER, check_dataset_dir,
                                 check_downscale, check_splits, find_image, frame_values, intrinsics_cameras,
                                 json_frames, json_number, json_pose, json_string, read_aabb, read_intrinsics,
                                 read_json, read_size, relative_name, report_missing, require, split_names)
from nerfkit.data.images import image_size_fitting, pixel_array, read_pixels_fitting, run_in_order, shrink_pixels

BLENDER_NEAR = 2.0
BLENDER_FAR = 6.0
BLENDER_AABB = ((-1.5, -1.5, -1.5), (1.5, 1.5, 1.5))

_DEFAULT_SUFFIXES = (".png",) + tuple(x for x in IMAGE_SUFFIXES_ANY_CASE if x != ".png")  # for a bare file_path
_INTRINSIC_KEYS = ("camera_angle_x", "camera_angle_y", "fl_x", "fl_y", "cx", "cy", "w", "h", "k1", "k2", "p1", "p2")


def transforms_path(root: Path, split: str) -> Path:
    """``root / f"transforms_{split}.json"``."""
    return Path(root) / f"transforms_{split}.json"


def is_blender_dir(path: Path) -> bool:
    """True if ``path`` is a directory holding ``transforms_train.json``."""
    return Path(path).is_dir() and transforms_path(Path(path), "train").is_file()


@dataclass
class _Frame:
    image: Path           # resolved image file
    name: str             # image path relative to root (posix)
    c2w: np.ndarray       # float64 [3, 4]
    values: dict          # intrinsic key -> (value, field name), per-frame value overriding top level


def _parse_frames(root: Path, meta: dict, json_path: Path) -> list[_Frame]:
    """The frames whose image exists, in file order; the others are skipped with one warning
    (:func:`~nerfkit.data.common.report_missing`), and none left is an ``InputError``."""
    out, missing, total = [], [], 0
    for i, fr in json_frames(meta, json_path):
        where = f"frames[{i}]"
        fp_field, m_field = f"{where}.file_path", f"{where}.transform_matrix"
        fp = json_string(require(fr, "file_path", json_path, fp_field), json_path, fp_field)
        c2w = json_pose(require(fr, "transform_matrix", json_path, m_field), json_path, m_field)
        total += 1
        image = find_image(root, fp, _DEFAULT_SUFFIXES)
        if image is None:
            missing.append(fp)
            continue
        out.append(_Frame(image=image, name=relative_name(image, root), c2w=c2w,
                          values=frame_values(meta, fr, _INTRINSIC_KEYS, where)))
    report_missing(json_path, missing, total)
    return out


def _intrinsics(frame: _Frame, width: int, height: int, json_path: Path, index: int) -> tuple[float, ...]:
    """(fx, fy, cx, cy, k1, k2, p1, p2) in full-resolution pixels for one frame."""
    k = read_intrinsics(frame.values, width, height, json_path, missing="missing key 'camera_angle_x' (and no 'fl_x')",
                        missing_field="camera_angle_x" if index == 0 else f"frames[{index}].camera_angle_x")
    return tuple(k[name] for name in INTRINSICS_ORDER)


def _load_split(root: Path, split: str, downscale: int, max_workers: int | None) -> SplitData | None:
    """Load one split, or None if its transforms file does not exist."""
    got = _split_cameras(root, split, downscale)
    if got is None:
        return None
    json_path, frames, cams, (w0, h0), size_origin = got
    pixels = pixel_array(len(frames), h0 // downscale, w0 // downscale, json_path)

    def load(i: int) -> None:  # stored pixels, EXIF-oriented only when that alone gives the size (images.py)
        img = read_pixels_fitting(frames[i].image, lambda w, h: (w, h) == (w0, h0))
        if img.shape[:2] != (h0, w0):
            raise InputError(f"image size {img.shape[1]}x{img.shape[0]} differs from the expected {w0}x{h0} "
                             f"(from {size_origin})", frames[i].image)
        pixels[i] = shrink_pixels(img, downscale)

    run_in_order(load, range(len(frames)), max_workers)
    return SplitData(cameras=cams, pixels=pixels, names=tuple(fr.name for fr in frames))


def _split_cameras(root: Path, split: str, downscale: int):
    """(transforms path, frames, cameras, full-resolution (width, height), where the size came from) of one
    split; None if its transforms file does not exist. Decodes no image (a size the transforms file does not
    give comes from the first image's header)."""
    json_path = transforms_path(root, split)
    if not json_path.is_file():
        return None
    meta = read_json(json_path)
    frames = _parse_frames(root, meta, json_path)

    # The image size: from w/h where given, else the split's first image. All frames share one size.
    sizes = [read_size(fr.values, json_path) for fr in frames]
    stored = None
    if sizes[0][0] is None or sizes[0][1] is None:
        stored = image_size_fitting(frames[0].image, lambda w, h: True)
    w0 = sizes[0][0] if sizes[0][0] is not None else stored[0]
    h0 = sizes[0][1] if sizes[0][1] is not None else stored[1]
    for i, (w, h) in enumerate(sizes):
        if (w is not None and w != w0) or (h is not None and h != h0):
            raise InputError(f"frame size {w or w0}x{h or h0} differs from the split's {w0}x{h0} "
                             "(all views of a split must share one size)", json_path, f"frames[{i}].w/h")
    size_origin = "w/h in " + json_path.name if sizes[0] != (None, None) else f"the split's first image {frames[0].name}"
    if w0 % downscale or h0 % downscale:
        raise InputError(f"image size {w0}x{h0} is not divisible by downscale {downscale}", frames[0].image, "downscale")

    intr = np.array([_intrinsics(fr, w0, h0, json_path, i) for i, fr in enumerate(frames)], np.float64)
    cams = intrinsics_cameras(np.stack([fr.c2w for fr in frames]), intr, w0, h0, downscale)
    return json_path, frames, cams, (w0, h0), size_origin


def _scene_bounds(meta: dict, json_path: Path) -> tuple[float, float, np.ndarray]:
    near = json_number(meta["near"], json_path, "near") if "near" in meta else BLENDER_NEAR
    far = json_number(meta["far"], json_path, "far") if "far" in meta else BLENDER_FAR
    if near < 0:
        raise InputError(f"near must be >= 0, got {near}", json_path, "near")
    if far <= near:
        raise InputError(f"far ({far}) must be greater than near ({near})", json_path, "far")
    aabb = read_aabb(meta["aabb"], json_path) if "aabb" in meta else np.asarray(BLENDER_AABB, np.float64)
    return near, far, aabb.astype(np.float32)
def load_blender(root: Path | str, downscale: int = 1, splits: Iterable[str] = DEFAULT_SPLITS,
                 max_workers: int | None = None, cameras_only: Iterable[str] = ()) -> Scene:
    """Load a scene in the Blender layout.

    Args:
      root: directory holding ``transforms_train.json`` (required) and optionally ``transforms_val.json``,
        ``transforms_test.json``.
      downscale: positive integer; images are area-filtered by ``downscale x downscale`` blocks (on
        premultiplied values) and intrinsics scaled to match. Image sizes must be divisible by it.
      splits: split names to load. A requested split whose transforms file is missing is simply absent from
        ``Scene.splits``; ``transforms_train.json`` must exist even when ``"train"`` is not requested.
      max_workers: threads for image decoding (``None``: ThreadPoolExecutor's default).
      cameras_only: further splits whose cameras and image names are read without decoding their images
        (``Scene.cameras_only``; what ``fit`` does with the split it never renders).
    Returns:
      Scene with ``SplitData.pixels`` uint8 [N, H // downscale, W // downscale, 4] straight RGBA,
      cameras with float32 [N, 3, 4] c2w, ``names`` the image paths relative to ``root``; near/far/aabb from
      ``transforms_train.json`` (defaults 2, 6, [-1.5, 1.5]^3); ``source = str(root)``.
    Raises:
      InputError: for any problem with the input, naming the file and the field.
    """
    root = check_dataset_dir(root, "a Blender dataset directory")
    ds = check_downscale(downscale, root)
    names = check_splits(splits, root)
    train_json = transforms_path(root, "train")
    if not train_json.is_file():
        raise InputError("missing transforms_train.json (the train split is required)", root, "transforms_train.json")
    near, far, aabb = _scene_bounds(read_json(train_json), train_json)

    loaded = {}
    for split in names:
        data = _load_split(root, split, ds, max_workers)
        if data is not None:
            loaded[split] = data
    if not loaded:
        raise InputError(f"none of the requested splits {list(names)} exist", root, "splits")
    known = {}
    for split in split_names(cameras_only, root):
        got = None if split in loaded else _split_cameras(root, split, ds)
        if got is not None:
            known[split] = (got[2], tuple(fr.name for fr in got[1]))
    return Scene(splits=loaded, near=float(near), far=float(far), aabb=aabb, source=str(root), cameras_only=known)
