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
        {"file_path": "./train/r_0",     # relative to root, ".png" optional
         "transform_matrix": [[...4x4 camera-to-world, OpenGL convention...]],
         ... any intrinsics key above, overriding the top-level value for this frame}
      ]
    }

Scene-level values (``near``, ``far``, ``aabb``) are read from ``transforms_train.json``; Blender defaults are
near = 2, far = 6 and the box [-1.5, 1.5]^3.
"""

from __future__ import annotations

import json
import math
import operator
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Iterable

import numpy as np

from nerfkit.cameras import focal_from_fov
from nerfkit.errors import InputError
from nerfkit.types import Cameras, Scene, SplitData
from nerfkit.data.images import area_downscale, read_rgba, run_in_order

BLENDER_NEAR = 2.0
BLENDER_FAR = 6.0
BLENDER_AABB = ((-1.5, -1.5, -1.5), (1.5, 1.5, 1.5))
DEFAULT_SPLITS = ("train", "val", "test")

_INTRINSIC_KEYS = ("camera_angle_x", "camera_angle_y", "fl_x", "fl_y", "cx", "cy", "w", "h", "k1", "k2", "p1", "p2")


def transforms_path(root: Path, split: str) -> Path:
    """``root / f"transforms_{split}.json"``."""
    return Path(root) / f"transforms_{split}.json"


def is_blender_dir(path: Path) -> bool:
    """True if ``path`` is a directory holding ``transforms_train.json``."""
    return Path(path).is_dir() and transforms_path(Path(path), "train").is_file()


def check_downscale(downscale: Any, where: Path | str | None = None) -> int:
    """``downscale`` as a positive ``int``; raises ``InputError`` (field ``downscale``) otherwise.

    Python and NumPy integers are accepted, as are floats with an integral value (``2.0``); bools are not.
    """
    value = None
    if not isinstance(downscale, (bool, np.bool_)):
        try:
            value = operator.index(downscale)
        except TypeError:
            if isinstance(downscale, (float, np.floating)) and float(downscale).is_integer():
                value = int(downscale)
    if value is None or value < 1:
        raise InputError(f"downscale must be a positive integer, got {downscale!r}", where, "downscale")
    return value


def read_json(path: Path) -> dict:
    """Parse a JSON object from ``path``; any problem is an ``InputError`` naming the file (and line/column)."""
    try:
        text = Path(path).read_text(encoding="utf-8")
    except FileNotFoundError:
        raise InputError("file not found", path) from None
    except UnicodeDecodeError as e:
        raise InputError(f"not UTF-8 text ({e.reason} at byte {e.start})", path) from None
    except OSError as e:
        raise InputError(f"cannot read file ({e.strerror or e})", path) from None
    try:
        meta = json.loads(text)
    except json.JSONDecodeError as e:
        raise InputError(f"malformed JSON at line {e.lineno}, column {e.colno}: {e.msg}", path) from None
    if not isinstance(meta, dict):
        raise InputError(f"expected a JSON object at the top level, got {type(meta).__name__}", path)
    return meta


def _number(value: Any, path: Path, field: str, *, positive: bool = False, integer: bool = False) -> float:
    """A finite real number from JSON (optionally > 0 / integral), else ``InputError`` naming ``field``."""
    if isinstance(value, bool) or not isinstance(value, (int, float)):
        raise InputError(f"expected a number, got {json.dumps(value)[:40]}", path, field)
    v = float(value)
    if not math.isfinite(v):
        raise InputError(f"expected a finite number, got {value!r}", path, field)
    if positive and v <= 0:
        raise InputError(f"expected a positive number, got {value!r}", path, field)
    if integer and not v.is_integer():
        raise InputError(f"expected an integer, got {value!r}", path, field)
    return v


def _matrix(value: Any, shape: tuple[int, ...], path: Path, field: str) -> np.ndarray:
    """A finite float64 array of exactly ``shape`` from nested JSON lists, else ``InputError``."""
    def numeric(v) -> bool:  # nested lists of JSON numbers only (np.asarray would also parse "1.5")
        if isinstance(v, list):
            return all(numeric(x) for x in v)
        return isinstance(v, (int, float)) and not isinstance(v, bool)

    arr = None
    if isinstance(value, list) and numeric(value):
        try:
            arr = np.asarray(value, dtype=np.float64)
        except ValueError:  # ragged
            arr = None
    if arr is None:
        raise InputError(f"expected a {'x'.join(map(str, shape))} matrix of numbers", path, field)
    if arr.shape != shape:
        raise InputError(f"expected shape {'x'.join(map(str, shape))}, got {'x'.join(map(str, arr.shape)) or 'a scalar'}",
                         path, field)
    if not np.all(np.isfinite(arr)):
        raise InputError("contains non-finite values", path, field)
    return arr


@dataclass
class _Frame:
    image: Path           # resolved image file
    name: str             # image path relative to root (posix)
    c2w: np.ndarray       # float64 [3, 4]
    values: dict          # intrinsic key -> (value, field name), per-frame value overriding top level


def _resolve_image(root: Path, file_path: str, json_path: Path, field: str) -> Path:
    candidates = [root / file_path]
    if not file_path.lower().endswith(".png"):
        candidates.append(root / (file_path + ".png"))
    for c in candidates:
        if c.is_file():
            return c
    tried = " or ".join(str(c) for c in candidates)
    raise InputError(f"image not found: {tried}", json_path, field)


def _parse_frames(root: Path, meta: dict, json_path: Path) -> list[_Frame]:
    if "frames" not in meta:
        raise InputError("missing key 'frames'", json_path, "frames")
    frames = meta["frames"]
    if not isinstance(frames, list):
        raise InputError(f"expected a list, got {type(frames).__name__}", json_path, "frames")
    if not frames:
        raise InputError("no frames", json_path, "frames")
    out = []
    for i, fr in enumerate(frames):
        where = f"frames[{i}]"
        if not isinstance(fr, dict):
            raise InputError(f"expected an object, got {type(fr).__name__}", json_path, where)
        if "file_path" not in fr:
            raise InputError("missing key 'file_path'", json_path, f"{where}.file_path")
        fp = fr["file_path"]
        if not isinstance(fp, str) or not fp:
            raise InputError(f"expected a non-empty string, got {json.dumps(fp)[:40]}", json_path, f"{where}.file_path")
        if "transform_matrix" not in fr:
            raise InputError("missing key 'transform_matrix'", json_path, f"{where}.transform_matrix")
        m = _matrix(fr["transform_matrix"], (4, 4), json_path, f"{where}.transform_matrix")
        image = _resolve_image(root, fp, json_path, f"{where}.file_path")
        try:
            name = image.relative_to(root).as_posix()
        except ValueError:
            name = str(image)
        values = {k: (meta[k], k) for k in _INTRINSIC_KEYS if k in meta}
        values.update({k: (fr[k], f"{where}.{k}") for k in _INTRINSIC_KEYS if k in fr})
        out.append(_Frame(image=image, name=name, c2w=m[:3, :4], values=values))
    return out


def _frame_size(frame: _Frame, json_path: Path) -> tuple[int | None, int | None]:
    """(w, h) given in the JSON for this frame, each None if absent."""
    size = []
    for key in ("w", "h"):
        if key in frame.values:
            v, field = frame.values[key]
            size.append(int(_number(v, json_path, field, positive=True, integer=True)))
        else:
            size.append(None)
    return size[0], size[1]


def _intrinsics(frame: _Frame, width: int, height: int, json_path: Path, index: int) -> tuple[float, ...]:
    """(fx, fy, cx, cy, k1, k2, p1, p2) in full-resolution pixels for one frame."""
    k = read_intrinsics(frame.values, width, height, json_path, missing="missing key 'camera_angle_x' (and no 'fl_x')",
                        missing_field="camera_angle_x" if index == 0 else f"frames[{index}].camera_angle_x")
    return tuple(k[name] for name in ("fx", "fy", "cx", "cy", "k1", "k2", "p1", "p2"))


def read_intrinsics(vals: dict, width: int, height: int, json_path: Path, *, missing: str, missing_field: str) -> dict:
    """Intrinsics of one frame from Instant-NGP / nerfstudio keys (``vals``: key -> (value, field name)).

    The focal length is ``fl_x`` / ``fl_y`` or follows from ``camera_angle_x`` / ``camera_angle_y``
    (``fy = fx`` when neither is given; ``missing`` / ``missing_field`` name the error when no x focal is);
    the principal point defaults to the image centre and distortion coefficients to 0.

    Returns:
      dict of floats: fx, fy, cx, cy (pixels) and k1, k2, k3, k4, p1, p2.
    """

    def get(key, **kw):
        v, field = vals[key]
        return _number(v, json_path, field, **kw)

    def fov_focal(key, size):
        angle = get(key, positive=True)
        if angle >= math.pi:
            raise InputError(f"field of view must be below pi radians, got {angle}", json_path, vals[key][1])
        return focal_from_fov(size, angle)

    if "fl_x" in vals:
        fx = get("fl_x", positive=True)
    elif "camera_angle_x" in vals:
        fx = fov_focal("camera_angle_x", width)
    else:
        raise InputError(missing, json_path, missing_field)
    if "fl_y" in vals:
        fy = get("fl_y", positive=True)
    elif "camera_angle_y" in vals:
        fy = fov_focal("camera_angle_y", height)
    else:
        fy = fx
    out = {"fx": fx, "fy": fy, "cx": get("cx") if "cx" in vals else width / 2.0,
           "cy": get("cy") if "cy" in vals else height / 2.0}
    out.update({k: get(k) if k in vals else 0.0 for k in ("k1", "k2", "k3", "k4", "p1", "p2")})
    return out


def _load_split(root: Path, split: str, downscale: int, max_workers: int | None) -> SplitData | None:
    """Load one split, or None if its transforms file does not exist."""
    json_path = transforms_path(root, split)
    if not json_path.is_file():
        return None
    meta = read_json(json_path)
    frames = _parse_frames(root, meta, json_path)
    n = len(frames)

    # The image size: from w/h where given, else the split's first image. All frames share one size.
    sizes = [_frame_size(fr, json_path) for fr in frames]
    first = None
    if sizes[0][0] is None or sizes[0][1] is None:
        first = read_rgba(frames[0].image)
    w0 = sizes[0][0] if sizes[0][0] is not None else first.shape[1]
    h0 = sizes[0][1] if sizes[0][1] is not None else first.shape[0]
    for i, (w, h) in enumerate(sizes):
        if (w is not None and w != w0) or (h is not None and h != h0):
            raise InputError(f"frame size {w or w0}x{h or h0} differs from the split's {w0}x{h0} "
                             "(all views of a split must share one size)", json_path, f"frames[{i}].w/h")
    size_origin = "w/h in " + json_path.name if sizes[0] != (None, None) else f"the split's first image {frames[0].name}"
    if w0 % downscale or h0 % downscale:
        raise InputError(f"image size {w0}x{h0} is not divisible by downscale {downscale}", frames[0].image, "downscale")

    intr = np.array([_intrinsics(fr, w0, h0, json_path, i) for i, fr in enumerate(frames)], np.float64)
    dist = intr[:, 4:8]
    cams = Cameras(
        c2w=np.stack([fr.c2w for fr in frames]).astype(np.float32),
        fx=intr[:, 0].astype(np.float32), fy=intr[:, 1].astype(np.float32),
        cx=intr[:, 2].astype(np.float32), cy=intr[:, 3].astype(np.float32),
        width=int(w0), height=int(h0),
        distortion=dist.astype(np.float32) if np.any(dist != 0) else None,
    )
    if downscale != 1:
        cams = cams.scaled(1.0 / downscale)

    rgba = np.empty((n, h0 // downscale, w0 // downscale, 4), np.float32)

    def load(i: int, img: np.ndarray | None = None) -> None:
        if img is None:
            img = read_rgba(frames[i].image)
        if img.shape[:2] != (h0, w0):
            raise InputError(f"image size {img.shape[1]}x{img.shape[0]} differs from the expected {w0}x{h0} "
                             f"(from {size_origin})", frames[i].image)
        rgba[i] = area_downscale(img, downscale)

    load(0, first)
    run_in_order(load, range(1, n), max_workers)
    return SplitData(cameras=cams, rgba=rgba, names=tuple(fr.name for fr in frames))


def _scene_bounds(meta: dict, json_path: Path) -> tuple[float, float, np.ndarray]:
    near = _number(meta["near"], json_path, "near") if "near" in meta else BLENDER_NEAR
    far = _number(meta["far"], json_path, "far") if "far" in meta else BLENDER_FAR
    if near < 0:
        raise InputError(f"near must be >= 0, got {near}", json_path, "near")
    if far <= near:
        raise InputError(f"far ({far}) must be greater than near ({near})", json_path, "far")
    if "aabb" in meta:
        aabb = _matrix(meta["aabb"], (2, 3), json_path, "aabb")
        if np.any(aabb[0] >= aabb[1]):
            raise InputError(f"aabb min {aabb[0].tolist()} must be below max {aabb[1].tolist()}", json_path, "aabb")
    else:
        aabb = np.asarray(BLENDER_AABB, np.float64)
    return near, far, aabb.astype(np.float32)


def _check_splits(splits: Any, root: Path) -> tuple[str, ...]:
    if isinstance(splits, str):
        splits = (splits,)
    try:
        names = tuple(dict.fromkeys(splits))
    except TypeError:
        raise InputError(f"splits must be a sequence of split names, got {splits!r}", root, "splits") from None
    if not names:
        raise InputError("no splits requested", root, "splits")
    for s in names:
        if not isinstance(s, str) or not s or "/" in s or "\\" in s:
            raise InputError(f"invalid split name {s!r}", root, "splits")
    return names


def load_blender(root: Path | str, downscale: int = 1, splits: Iterable[str] = DEFAULT_SPLITS,
                 max_workers: int | None = None) -> Scene:
    """Load a scene in the Blender layout.

    Args:
      root: directory holding ``transforms_train.json`` (required) and optionally ``transforms_val.json``,
        ``transforms_test.json``.
      downscale: positive integer; images are area-filtered by ``downscale x downscale`` blocks (on
        premultiplied values) and intrinsics scaled to match. Image sizes must be divisible by it.
      splits: split names to load. A requested split whose transforms file is missing is simply absent from
        ``Scene.splits``; ``transforms_train.json`` must exist even when ``"train"`` is not requested.
      max_workers: threads for image decoding (``None``: ThreadPoolExecutor's default).
    Returns:
      Scene with ``SplitData.rgba`` float32 [N, H // downscale, W // downscale, 4] premultiplied RGBA,
      cameras with float32 [N, 3, 4] c2w, ``names`` the image paths relative to ``root``; near/far/aabb from
      ``transforms_train.json`` (defaults 2, 6, [-1.5, 1.5]^3); ``source = str(root)``.
    Raises:
      InputError: for any problem with the input, naming the file and the field.
    """
    root = Path(root)
    if not root.exists():
        raise InputError("dataset directory not found", root)
    if not root.is_dir():
        raise InputError("not a directory (expected a Blender dataset directory)", root)
    ds = check_downscale(downscale, root)
    names = _check_splits(splits, root)
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
    return Scene(splits=loaded, near=float(near), far=float(far), aabb=aabb, source=str(root))
