"""Loader for single-file ``transforms.json`` captures: nerfstudio (``ns-process-data``) and Instant-NGP.

Layout::

    root/
      transforms.json        required (not transforms_train.json: that is the Blender layout)
      images/frame_00001.jpg ...   wherever the frames' file_path point (relative to root)
      masks/...              optional, per frame mask_path

``transforms.json`` holds::

    {
      "camera_model": "OPENCV",          # PINHOLE | SIMPLE_PINHOLE | OPENCV (default); others are refused
      "fl_x", "fl_y", "cx", "cy", "w", "h",        # pixels; fl_y defaults to fl_x, cx/cy to the image centre
      "k1", "k2", "p1", "p2",            # OpenCV radial-tangential distortion (k3, k4 must be 0 if given)
      "camera_angle_x", "camera_angle_y",          # radians: used when fl_x / fl_y are absent
      "aabb_scale": 4,                   # Instant-NGP: the scene box (see below); "scale", "offset" honoured
      "train_filenames", "val_filenames", "test_filenames",   # nerfstudio splits (lists of file paths)
      "aabb", "near", "far",             # optional nerfkit extensions, in the file's world units
      "frames": [
        {"file_path": "images/frame_00001.jpg",    # relative to root; the extension may be left out
         "transform_matrix": [[...4x4 camera-to-world, OpenGL convention...]],
         "mask_path": "masks/frame_00001.png",     # optional
         ... any key above from camera_model to camera_angle_y, overriding the top-level value}
      ]
    }

What :func:`load_nerfstudio` does:

1. Frames whose image file is missing are skipped with one warning line on stderr (how many, the first few
   names), as Instant-NGP does (its fox capture lists 67 frames and ships 50 images); split lists may name
   them (they are left out). No frame left, or a split list none of whose frames is left, is an error.
   Frames are sorted by ``file_path`` (as nerfstudio does). Every frame must have the same image size (a
   frame that differs is an error naming it: :class:`~nerfkit.types.Cameras` share one size); intrinsics and
   distortion may differ per frame.
2. Splits: ``{train,val,test}_filenames`` when any of them is present (a split without a list is absent);
   otherwise every ``HOLDOUT``-th frame (``i % 8 == 0`` in sorted order) is ``test`` and the rest ``train``.
3. Scene normalisation (a similarity, computed from *all* frames so every split and every command agree;
   :func:`~nerfkit.data.common.normalising_transform`): the centre ``c`` is the point closest to all optical
   axes (:func:`nerfkit.camera_paths.focus_point`), or the mean camera position when the axes are nearly
   parallel or meet far from the cameras; the scale ``s`` puts the farthest camera at ``CAMERA_RADIUS`` = 1
   from it; the rotation ``R`` (nerfstudio's ``"up"`` orientation) turns the mean camera up vector (+y of
   the OpenGL c2w) to +z, so orbits, spirals and exports are level. A file point ``x`` becomes
   ``s R (x - c)``; the matrix is kept in :attr:`~nerfkit.data.common.NormalisedScene.file_to_scene`.
4. The scene box: the file's ``aabb`` if given; else Instant-NGP's box for ``aabb_scale`` (its unit cube is
   ``[-0.5, 0.5]^3 / scale`` around ``offset``, so ``aabb_scale = 1`` with the default ``scale`` 0.33 is
   ``[-1.5, 1.5]^3`` in the file's units, the NeRF-synthetic box), as the scene box holding the similarity's
   image of it (rotated, a box grows: up to sqrt(3) per axis at 45 degrees); else the
   cube of half-size ``DEFAULT_BOX_HALF`` = 1.5 around the centre (it holds every camera and content out to
   1.5 times the camera distance). ``near``/``far`` from the file (times ``s``), else automatic: ``near`` is
   the closest any camera comes to the box (at least ``MIN_NEAR``), ``far`` the farthest box corner from any
   camera.
5. Masks (``mask_path``): a grey mask, nonzero = keep (nerfstudio's convention), multiplies the
   premultiplied RGBA, alpha included. Masked-out pixels then carry no colour, and like any transparent
   pixel they are composited on the training background: the field is *not* told nothing there, it is told
   "empty, background shows through" (with ``--background random`` it learns zero opacity along those rays).
   That is right for object masks (segmenting an object from its surroundings) and wrong for masks of
   transient things in front of a static scene (people, the photographer's shadow), which it carves out; a
   true "ignore this pixel" needs a per-pixel loss weight in the trainer, which nerfkit does not have yet.
6. ``downscale=F``: when ``images_F/`` exists beside ``images/`` (``ns-process-data`` writes ``images_2``,
   ``images_4``, ``images_8`` with the same file names) and holds every frame's image, those are read (each
   must be within a pixel of ``1 / F`` of the frames' size; the intrinsics follow the actual size, per axis;
   masks at the full size are area-resized to it). Otherwise images are area-filtered by ``F x F`` blocks;
   a size not divisible by ``F`` is first cropped at the right and bottom (at most ``F - 1`` pixels; the
   principal point does not move).
7. EXIF orientation: the stored pixels are read (as COLMAP, nerfstudio and Instant-NGP read them, so poses
   and intrinsics from COLMAP fit them), unless the JSON's ``w``/``h`` match only the EXIF-oriented size (a
   90-degree orientation tag): then the image is turned as the tag says (``PIL.ImageOps.exif_transpose``).

Poses are OpenGL camera-to-world (camera looks down -z, +y up) like the Blender layout. Every problem with
the input is an :class:`~nerfkit.errors.InputError` naming the file and the field.
"""

from __future__ import annotations

import dataclasses
import json
import os
import sys
from pathlib import Path
from typing import Any, Iterable

import numpy as np

from nerfkit.errors import InputError
from nerfkit.types import Cameras, SplitData
from nerfkit.data.common import (CAMERA_RADIUS, DEFAULT_SPLITS, HOLDOUT, IMAGE_SUFFIXES, IMAGE_SUFFIXES_ANY_CASE,
                                 INTRINSICS_ORDER, NormalisedScene, box_through, check_dataset_dir, check_downscale,
                                 check_splits, find_image, frame_values, has_image_suffix, holdout_split,
                                 intrinsics_cameras, json_frames, json_matrix, json_number, json_pose, json_string,
                                 normalisation, normalising_transform, read_aabb, read_intrinsics, read_json,
                                 read_size, relative_name, report_missing, require, resize_cameras,
                                 transform_poses)
from nerfkit.data.images import image_size_fitting, pixel_array, read_pixels_fitting, read_raw, run_in_order, shrink_pixels

TRANSFORMS = "transforms.json"
DEFAULT_BOX_HALF = 1.5        # default scene box half-size, in normalised units
MIN_NEAR = 0.01               # automatic near never below this (normalised units)
SUPPORTED_MODELS = ("PINHOLE", "SIMPLE_PINHOLE", "OPENCV")
_NGP_SCALE, _NGP_OFFSET = 0.33, (0.5, 0.5, 0.5)   # Instant-NGP's defaults for "scale" and "offset"
_FRAME_KEYS = ("camera_model", "fl_x", "fl_y", "cx", "cy", "w", "h", "k1", "k2", "k3", "k4", "p1", "p2",
               "camera_angle_x", "camera_angle_y")
_SPLIT_KEYS = {"train": "train_filenames", "val": "val_filenames", "test": "test_filenames"}


NerfstudioScene = NormalisedScene   # what load_nerfstudio returns (the class is shared with the LLFF loader)


def is_nerfstudio_dir(path: Path | str) -> bool:
    """True if ``path`` is a directory holding ``transforms.json``."""
    return Path(path).is_dir() and (Path(path) / TRANSFORMS).is_file()


# ------------------------------------------------------------------------------------------------ frames
@dataclasses.dataclass
class _Frame:
    index: int            # position in the JSON's frames list (for messages)
    image: Path           # resolved image file
    name: str             # image path relative to root (posix)
    c2w: np.ndarray       # float64 [3, 4]
    mask: Path | None     # resolved mask file
    values: dict          # key -> (value, field name), the frame's value overriding the top level


def _resolve(root: Path, file_path: str, json_path: Path, field: str, what: str) -> Path:
    found = find_image(root, file_path)
    if found is None:
        also = f" (also tried {' / '.join(IMAGE_SUFFIXES)})" if not has_image_suffix(file_path) else ""
        raise InputError(f"{what} not found: {root / file_path}{also}", json_path, field)
    return found


def _parse_frame(root: Path, meta: dict, i: int, fr: dict, json_path: Path) -> tuple[str, _Frame | None]:
    """(the frame's ``file_path``, the frame, or None when its image file is missing)."""
    where = f"frames[{i}]"
    for key in ("file_path", "transform_matrix"):
        require(fr, key, json_path, f"{where}.{key}")
    fp = json_string(fr["file_path"], json_path, f"{where}.file_path")
    m = json_pose(fr["transform_matrix"], json_path, f"{where}.transform_matrix", allow_3x4=True)
    image = find_image(root, fp)
    if image is None:
        return fp, None
    mask = None
    if fr.get("mask_path") is not None:
        mask_path = json_string(fr["mask_path"], json_path, f"{where}.mask_path")
        mask = _resolve(root, mask_path, json_path, f"{where}.mask_path", "mask")
    return fp, _Frame(index=i, image=image, name=relative_name(image, root), c2w=m, mask=mask,
                      values=frame_values(meta, fr, _FRAME_KEYS, where))


def _parse_frames(root: Path, meta: dict, json_path: Path) -> tuple[list[_Frame], list[str]]:
    """(the frames whose image exists, sorted by name; the ``file_path`` of those skipped, in file order).

    Frames without an image file are skipped with one warning (:func:`report_missing`), as Instant-NGP
    does; none left is an ``InputError``."""
    out, missing, total = [], [], 0
    for i, fr in json_frames(meta, json_path):
        fp, frame = _parse_frame(root, meta, i, fr, json_path)
        total += 1
        if frame is None:
            missing.append(fp)
        else:
            out.append(frame)
    report_missing(json_path, missing, total)
    out.sort(key=lambda f: f.name)
    return out, missing


def read_poses(json_path: Path) -> np.ndarray:
    """float64 [N, 3, 4]: every frame's ``transform_matrix`` of a ``transforms.json`` (OpenGL camera-to-world,
    the file's world, whether or not the frame's image exists); reads no image."""
    meta = read_json(json_path)
    out = []
    for i, fr in json_frames(meta, json_path):
        field = f"frames[{i}].transform_matrix"
        m = require(fr, "transform_matrix", json_path, field)
        out.append(json_matrix(m, (3, 4) if isinstance(m, list) and len(m) == 3 else (4, 4), json_path, field)[:3])
    return np.stack(out)


def _camera_model(frame: _Frame, json_path: Path) -> str:
    if "camera_model" not in frame.values:
        return "OPENCV"  # nerfstudio's default
    v, field = frame.values["camera_model"]
    if not isinstance(v, str) or v.upper() not in SUPPORTED_MODELS:
        raise InputError(f"unsupported camera model {json.dumps(v)[:40]} (nerfkit reads "
                         f"{', '.join(SUPPORTED_MODELS)}; undistort fisheye or other images first)", json_path, field)
    return v.upper()


def _intrinsics(frame: _Frame, width: int, height: int, json_path: Path) -> tuple[float, ...]:
    """(fx, fy, cx, cy, k1, k2, p1, p2) in full-resolution pixels for one frame."""
    vals = frame.values
    model = _camera_model(frame, json_path)
    dist = read_intrinsics(vals, width, height, json_path, missing="missing key 'fl_x' (and no 'camera_angle_x')",
                           missing_field=f"frames[{frame.index}].fl_x")
    for k in ("k3", "k4"):
        if dist[k] != 0.0:
            raise InputError(f"{k} = {dist[k]:g} is not supported (nerfkit's OpenCV model has k1, k2, p1, p2 only)",
                             json_path, vals[k][1])
    if model != "OPENCV":
        for k in ("k1", "k2", "p1", "p2"):
            if dist[k] != 0.0:
                raise InputError(f"{k} = {dist[k]:g} but camera_model is {model} (use OPENCV for distortion)",
                                 json_path, vals[k][1])
    return tuple(dist[k] for k in INTRINSICS_ORDER)


def _image_size(path: Path) -> tuple[int, int]:
    """(width, height) of an image file from its header, without decoding the pixels."""
    from PIL import Image

    try:
        with Image.open(path) as im:
            return im.size
    except Exception:  # noqa: BLE001 -- not something Pillow reads: decode it fully (raises InputError)
        img = read_raw(path)
        return img.shape[1], img.shape[0]


def _frame_sizes(frames: list[_Frame], json_path: Path) -> tuple[int, int]:
    """The one image size every frame shares: w/h from the JSON where given, else the image header."""
    ref = None
    for fr in frames:
        size = read_size(fr.values, json_path)
        if None in size:
            iw, ih = _image_size(fr.image)
            size = [size[0] or iw, size[1] or ih]
        if ref is None:
            ref = (size[0], size[1], fr)
        elif (size[0], size[1]) != ref[:2]:
            raise InputError(f"frame size {size[0]}x{size[1]} ({fr.name}) differs from {ref[0]}x{ref[1]} "
                             f"({ref[2].name}): all frames must share one image size", json_path,
                             f"frames[{fr.index}]")
    return ref[0], ref[1]


# ------------------------------------------------------------------------------------------------ splits
def _stem_key(root: Path, name: str) -> str:
    """``root / name`` normalised, without its extension: how a split list's entry is matched to a skipped
    frame."""
    return os.path.splitext(os.path.normpath(root / name))[0]


def _split_indices(root: Path, key: str, names: Any, by_path: dict[str, int], skipped: set[str],
                   json_path: Path) -> list[int]:
    """Sorted indices into the frames of the split list ``meta[key]``; entries naming a skipped frame are left
    out, and a list left empty by that is an ``InputError``."""
    if not isinstance(names, list):
        raise InputError(f"expected a list of file paths, got {type(names).__name__}", json_path, key)
    idx, dropped = [], 0
    for j, name in enumerate(names):
        if not isinstance(name, str) or not name:
            raise InputError(f"expected a file path, got {json.dumps(name)[:40]}", json_path, f"{key}[{j}]")
        i = by_path.get(os.path.normpath(root / name))
        if i is None and not Path(name).suffix:
            i = next((by_path[p] for s in IMAGE_SUFFIXES_ANY_CASE
                      if (p := os.path.normpath(root / (name + s))) in by_path), None)
        if i is None and _stem_key(root, name) in skipped:
            dropped += 1
            continue
        if i is None:
            raise InputError(f"'{name}' is not the file_path of any frame", json_path, f"{key}[{j}]")
        idx.append(i)
    if names and dropped == len(names):
        raise InputError(f"no usable frame: the image of every one of its {len(names)} frames is missing",
                         json_path, key)
    return sorted(set(idx))


def _assign_splits(root: Path, meta: dict, frames: list[_Frame], skipped: list[str],
                   json_path: Path) -> dict[str, list[int]]:
    """Split name -> indices into the (sorted) frames; ``skipped``: the ``file_path`` of the frames left out."""
    if not any(k in meta for k in _SPLIT_KEYS.values()):
        if len(frames) == 1:
            return {"train": [0]}
        train, test = holdout_split(len(frames), HOLDOUT)
        return {"train": train.tolist(), "test": test.tolist()}
    by_path = {os.path.normpath(fr.image): i for i, fr in enumerate(frames)}
    by_path.update({os.path.normpath(root / fr.name): i for i, fr in enumerate(frames)})
    skipped_keys = {_stem_key(root, fp) for fp in skipped}
    out = {}
    for split, key in _SPLIT_KEYS.items():
        if key in meta:
            idx = _split_indices(root, key, meta[key], by_path, skipped_keys, json_path)
            if idx:
                out[split] = idx
    return out


# --------------------------------------------------------------------------------------------- normalising
def _ngp_box(meta: dict, json_path: Path) -> np.ndarray:
    """float64 [2, 3] Instant-NGP's scene box for ``aabb_scale``, in the file's world coordinates.

    Instant-NGP maps a file point ``p`` to ``p * scale + offset`` and then cycles the axes (x, y, z) <- (y, z,
    x); its scene box is ``[0.5 - a / 2, 0.5 + a / 2]^3`` (``a = aabb_scale``) on every axis, so in the file's
    coordinates it is ``([0.5 - a / 2, 0.5 + a / 2] - offset) / scale`` per axis.
    """
    a = json_number(meta["aabb_scale"], json_path, "aabb_scale", positive=True)
    scale = json_number(meta["scale"], json_path, "scale", positive=True) if "scale" in meta else _NGP_SCALE
    offset = json_matrix(meta["offset"], (3,), json_path, "offset") if "offset" in meta else np.asarray(_NGP_OFFSET)
    lo_ngp, hi_ngp = 0.5 - a / 2.0, 0.5 + a / 2.0
    return np.stack([(lo_ngp - offset) / scale, (hi_ngp - offset) / scale])


def _bounds(meta: dict, json_path: Path, c2w_scene: np.ndarray, file_to_scene: np.ndarray
            ) -> tuple[float, float, np.ndarray]:
    """(near, far, aabb float32 [2, 3]) in scene units; a box of the file is the scene box holding it."""
    scale = float(np.cbrt(np.linalg.det(file_to_scene[:3, :3])))
    if "aabb" in meta:
        box = box_through(file_to_scene, read_aabb(meta["aabb"], json_path))
    elif "aabb_scale" in meta:
        box = box_through(file_to_scene, _ngp_box(meta, json_path))
    else:
        box = np.array([[-DEFAULT_BOX_HALF] * 3, [DEFAULT_BOX_HALF] * 3])
    pos = c2w_scene[:, :3, 3]
    outside = np.maximum(np.maximum(box[0] - pos, pos - box[1]), 0.0)
    d_in = np.linalg.norm(outside, axis=1)                        # distance to the box (0 inside)
    corners = np.stack(np.meshgrid(*box.T, indexing="ij"), -1).reshape(-1, 3)
    d_out = np.linalg.norm(pos[:, None] - corners[None], axis=-1).max(axis=1)
    near = json_number(meta["near"], json_path, "near") * scale if "near" in meta else max(float(d_in.min()), MIN_NEAR)
    far = json_number(meta["far"], json_path, "far") * scale if "far" in meta else float(d_out.max())
    if near < 0:
        raise InputError(f"near must be >= 0, got {meta['near']}", json_path, "near")
    if far <= near:
        raise InputError(f"far ({far / scale:g}) must be greater than near ({near / scale:g})", json_path, "far")
    return float(near), float(far), box.astype(np.float32)


# ------------------------------------------------------------------------------------------------ images
@dataclasses.dataclass(frozen=True)
class _Source:
    """Where a load's images come from: ``files`` (one per sorted frame) of ``width`` x ``height`` pixels, to be
    cropped to a multiple of ``factor`` and area-filtered by it."""

    files: list[Path]
    width: int
    height: int
    factor: int

    def cameras(self, c2w: np.ndarray, intr: np.ndarray, width: int, height: int) -> Cameras:
        """Cameras of full-size (``width`` x ``height``) intrinsics for the images this source gives."""
        f = self.factor
        if f == 1 and (self.width, self.height) != (width, height):   # images_N/: follow the actual size
            return resize_cameras(intrinsics_cameras(c2w, intr, width, height), self.width, self.height)
        return intrinsics_cameras(c2w, intr, width - width % f, height - height % f, f)

    def fits(self, w: int, h: int) -> bool:
        return (w, h) == (self.width, self.height)


def _downscaled_path(folder: Path, name: str) -> Path:
    """The file of ``images_N/`` standing for frame image ``name`` (relative to the root): ``images/a/b.jpg`` is
    ``images_N/a/b.jpg``; a file elsewhere is ``images_N/<its file name>`` (nerfstudio's rule)."""
    parts = Path(name).parts
    return folder.joinpath(*parts[1:]) if len(parts) > 1 and parts[0] == "images" else folder / parts[-1]


def _image_source(root: Path, frames: list[_Frame], width: int, height: int, ds: int) -> _Source:
    """``images_<ds>/`` (as ``ns-process-data`` writes it) when it holds every frame's image, each about
    ``1 / ds`` of the size (within a pixel); else the frames' own images, area-downscaled by ``ds``."""
    folder = root / f"images_{ds}"
    if ds > 1 and folder.is_dir():
        files = [_downscaled_path(folder, fr.name) for fr in frames]
        lacking = sum(not f.is_file() for f in files)
        if not lacking:
            def near(w: int, h: int) -> bool:
                return abs(w - width / ds) <= 1 and abs(h - height / ds) <= 1
            w, h = image_size_fitting(files[0], near)
            if not near(w, h):
                raise InputError(f"image size {w}x{h} is not the {width}x{height} of the frames divided by "
                                 f"downscale {ds}", files[0], "downscale")
            return _Source(files, w, h, 1)
        print(f"warning: {folder} lacks {lacking} of the {len(files)} frames' images: downscaling the "
              "full-size images instead", file=sys.stderr)
    return _Source([fr.image for fr in frames], width, height, ds)


def _read_mask(path: Path, shape: tuple[int, int], full_shape: tuple[int, int]) -> np.ndarray:
    """float32 [H, W] of ``shape``: 1 where the mask is nonzero, 0 elsewhere; a mask of ``full_shape`` (the
    frames' size, when the images come from ``images_N/``) is area-resized to ``shape`` (fractions on edges)."""
    from PIL import Image

    raw = np.asarray(read_raw(path))
    if raw.ndim == 3 and raw.shape[-1] in (3, 4) and np.array_equal(raw[..., 0], raw[..., 1]) \
            and np.array_equal(raw[..., 0], raw[..., 2]):
        raw = raw[..., 0]  # grey saved as RGB(A)
    elif raw.ndim == 3 and raw.shape[-1] in (1, 2):
        raw = raw[..., 0]
    if raw.ndim != 2:
        raise InputError(f"expected a single-channel (grey) mask, got shape {raw.shape}", path)
    keep = (raw > 0).astype(np.float32)
    if raw.shape == shape:
        return keep
    if raw.shape == full_shape:
        return np.asarray(Image.fromarray(keep, mode="F").resize(shape[::-1], Image.Resampling.BOX), np.float32)
    raise InputError(f"mask size {raw.shape[1]}x{raw.shape[0]} differs from the image's {shape[1]}x{shape[0]}",
                     path)


def _load_images(frames: list[_Frame], src: _Source, full_shape: tuple[int, int],
                 max_workers: int | None) -> np.ndarray:
    """uint8 [N, H', W', 4] straight RGBA (SplitData.pixels), masked, cropped to multiples of ``src.factor`` and downscaled; the
    stored pixels, or the EXIF-oriented ones when only those have the expected size."""
    f, height, width = src.factor, src.height, src.width
    hc, wc = height - height % f, width - width % f
    out = pixel_array(len(frames), hc // f, wc // f, src.files[0].parent if src.files else None)

    def load(i: int) -> None:
        img = read_pixels_fitting(src.files[i], src.fits)
        if img.shape[:2] != (height, width):
            raise InputError(f"image size {img.shape[1]}x{img.shape[0]} differs from the expected {width}x{height} "
                             "(w/h in the JSON, or the first frame's image)", src.files[i])
        mask = None if frames[i].mask is None else _read_mask(frames[i].mask, (height, width), full_shape)[:hc, :wc]
        out[i] = shrink_pixels(img[:hc, :wc], f, mask)

    run_in_order(load, range(len(frames)), max_workers)
    return out


# -------------------------------------------------------------------------------------------------- load
def _dataset_root(path: Path | str) -> Path:
    """The capture directory: ``path``, or its parent when ``path`` is the ``transforms.json`` file."""
    p = Path(path)
    if p.is_file() and p.name == TRANSFORMS:
        p = p.parent
    return check_dataset_dir(p, f"a directory holding {TRANSFORMS}")


def _load_split(frames: list[_Frame], idx: list[int], c2w: np.ndarray, intr: np.ndarray, width: int, height: int,
                src: _Source, max_workers: int | None) -> SplitData:
    """The frames ``idx`` (indices into the sorted frames) as one split: cameras and images from ``src``."""
    sub = [frames[i] for i in idx]
    cams = src.cameras(c2w[idx], intr[idx], width, height)
    pixels = _load_images(sub, dataclasses.replace(src, files=[src.files[i] for i in idx]), (height, width),
                          max_workers)
    return SplitData(cameras=cams, pixels=pixels, names=tuple(fr.name for fr in sub))


def load_nerfstudio(path: Path | str, downscale: int = 1, splits: Iterable[str] = DEFAULT_SPLITS,
                    max_workers: int | None = None) -> NormalisedScene:
    """Load a nerfstudio / Instant-NGP capture (a directory holding ``transforms.json``, or that file).

    Args:
      path: the directory, or its ``transforms.json``.
      downscale: positive integer: ``images_<downscale>/`` is read when it holds every frame, else images are
        cropped to a multiple of it (right and bottom edges) and area-filtered by ``downscale x downscale``
        blocks on premultiplied values; intrinsics follow the images' size.
      splits: split names to load; a requested split with no frames is absent from ``Scene.splits``.
      max_workers: threads for image decoding (``None``: ThreadPoolExecutor's default).
    Returns:
      :class:`~nerfkit.data.common.NormalisedScene` in normalised coordinates (see the module docstring):
      ``SplitData.pixels``
      uint8 [N, H // downscale, W // downscale, 4] (or the ``images_N/`` size) straight RGBA (masks applied),
      cameras with per-frame
      intrinsics and OpenCV distortion (None when every coefficient is 0), ``names`` the image paths relative
      to the directory; ``file_to_scene`` the normalising similarity; ``source = str(directory)``.
    Raises:
      InputError: for any problem with the input, naming the file and the field.
    """
    root = _dataset_root(path)
    json_path = root / TRANSFORMS
    ds = check_downscale(downscale, root)
    names = check_splits(splits, root)
    if not json_path.is_file():
        raise InputError(f"missing {TRANSFORMS}", root, TRANSFORMS)
    meta = read_json(json_path)
    frames, skipped = _parse_frames(root, meta, json_path)
    width, height = _frame_sizes(frames, json_path)
    if width < ds or height < ds:
        raise InputError(f"image size {width}x{height} is smaller than downscale {ds}", frames[0].image, "downscale")

    intr = np.array([_intrinsics(fr, width, height, json_path) for fr in frames], np.float64)
    c2w_file = np.stack([fr.c2w for fr in frames])
    file_to_scene = normalising_transform(c2w_file)
    c2w = transform_poses(file_to_scene, c2w_file)
    near, far, aabb = _bounds(meta, json_path, c2w, file_to_scene)
    assignment = _assign_splits(root, meta, frames, skipped, json_path)
    src = _image_source(root, frames, width, height, ds)
    loaded = {split: _load_split(frames, assignment[split], c2w, intr, width, height, src, max_workers)
              for split in names if assignment.get(split)}
    if not loaded:
        raise InputError(f"none of the requested splits {list(names)} has frames (found: "
                         f"{', '.join(f'{s} ({len(i)})' for s, i in assignment.items())})", json_path, "splits")
    return NormalisedScene(splits=loaded, near=near, far=far, aabb=aabb, source=str(root),
                           file_to_scene=file_to_scene)


def write_nerfstudio(path: Path | str, frames: list[dict], intrinsics: dict, extra: dict | None = None) -> Path:
    """Write ``transforms.json``: ``intrinsics`` at the top level, then ``extra``, then ``frames``.

    Args:
      path: the output directory (created if needed); image paths in ``frames`` are relative to it.
      frames: ``{"file_path": ..., "transform_matrix": 4x4 OpenGL c2w (list or array), ...}`` each.
      intrinsics: e.g. ``{"camera_model": "OPENCV", "fl_x": ..., "w": ..., "k1": ...}``.
      extra: more top-level keys (``aabb``, ``test_filenames``, ...).
    Returns:
      The path of the file written.
    """
    out = Path(path)
    out.mkdir(parents=True, exist_ok=True)

    def plain(v: Any):
        if isinstance(v, np.ndarray):
            return v.tolist()
        if isinstance(v, (np.floating, np.integer)):
            return v.item()
        return v

    meta = {k: plain(v) for k, v in intrinsics.items()}
    meta.update({k: plain(v) for k, v in (extra or {}).items()})
    meta["frames"] = [{k: plain(v) for k, v in fr.items()} for fr in frames]
    target = out / TRANSFORMS
    tmp = target.with_suffix(".json.tmp")
    tmp.write_text(json.dumps(meta, indent=2) + "\n", encoding="utf-8")
    os.replace(tmp, target)
    return target
