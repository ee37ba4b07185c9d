"""Helpers shared by every dataset loader (Blender, LLFF, nerfstudio, the COLMAP importer, the demo writer).

What lives here, so that each format module only says what is particular to its format:

* the dataset directory and the arguments every loader takes: :func:`check_dataset_dir`,
  :func:`check_downscale`, :func:`split_names` / :func:`check_splits` and ``DEFAULT_SPLITS``;
* JSON: :func:`read_json`, the field validators :func:`json_number`, :func:`json_matrix`,
  :func:`json_string`, :func:`require` and :func:`json_frames`, plus the per-frame value lookup
  :func:`frame_values` and :func:`read_size`, :func:`read_aabb`;
* intrinsics: :func:`read_intrinsics` (Instant-NGP / nerfstudio keys), :func:`fov_focal`,
  :func:`fov_from_focal`, :func:`intrinsics_cameras` and :func:`resize_cameras`;
* image files: ``IMAGE_SUFFIXES`` (the one list of the suffixes the loaders read, compared case-insensitively),
  :func:`has_image_suffix`, :func:`list_images`, :func:`relative_name`, :func:`find_image` (a frame's
  ``file_path``, the extension optional) and :func:`report_missing` (frames whose image is missing are
  skipped with one warning line, as Instant-NGP does);
* the hold-out rule of the LLFF and nerfstudio loaders: ``HOLDOUT`` and :func:`holdout_split`;
* the world normalisation of real captures (centre at the focus point, farthest camera at radius 1, mean
  camera up to +z): :func:`normalising_transform` (from :func:`normalisation` and :func:`up_rotation`),
  :func:`transform_poses`, :func:`box_through` and the scene that records it, :class:`NormalisedScene`;
  whether the cameras look forward or around: :func:`view_spread_degrees`, :func:`is_360`;
* the rotation check of stored poses: ``ROTATION_TOL`` and :func:`rotation_problem` (:func:`json_pose` applies it
  to a JSON ``transform_matrix``).

Every problem with the input is an :class:`~nerfkit.errors.InputError` naming the file and the field.
"""

from __future__ import annotations

import dataclasses
import json
import math
import operator
import sys
from pathlib import Path
from typing import Any, Iterable, Iterator

import numpy as np

from nerfkit.camera_paths import focus_point
from nerfkit.cameras import focal_from_fov
from nerfkit.errors import InputError
from nerfkit.types import Cameras, Scene

DEFAULT_SPLITS = ("train", "val", "test")
IMAGE_SUFFIXES = (".png", ".jpg", ".jpeg")   # what the loaders read; compared in lower case
IMAGE_SUFFIXES_ANY_CASE = IMAGE_SUFFIXES + tuple(s.upper() for s in IMAGE_SUFFIXES)  # to try on a bare name
SFM_IMAGE_SUFFIXES = IMAGE_SUFFIXES + (".tif", ".tiff", ".bmp")  # photos COLMAP also takes as input
HOLDOUT = 8               # every HOLDOUT-th view (i % HOLDOUT == 0) is a test view
ROTATION_TOL = 1e-2       # largest |R^T R - I| entry accepted for a stored rotation
CAMERA_RADIUS = 1.0       # the farthest camera's distance from the centre after normalisation
FORWARD_MAX_DEGREES = 45.0  # a capture whose viewing directions spread further from their mean is 360-degree
_FOCUS_MAX = 2.0          # the focus point is used only within this many camera spreads of the mean camera
INTRINSICS_ORDER = ("fx", "fy", "cx", "cy", "k1", "k2", "p1", "p2")   # the columns of intrinsics_cameras' input


# ----------------------------------------------------------------------------------- loader arguments
def check_dataset_dir(root: Path | str, expected: str) -> Path:
    """``root`` as a ``Path`` if it is an existing directory, else ``InputError``.

    Args:
      root: the dataset directory.
      expected: what it should be, for the message (``"a Blender dataset directory"``).
    Returns:
      ``Path(root)``.
    """
    root = Path(root)
    if not root.exists():
        raise InputError("dataset directory not found", root)
    if not root.is_dir():
        raise InputError(f"not a directory (expected {expected})", root)
    return root


def check_downscale(downscale: Any, where: Path | str | None = None) -> int:
    """``downscale`` as a positive ``int``; raises ``InputError`` (field ``downscale``) otherwise.

    Python and NumPy integers are accepted, as are floats with an integral value (``2.0``); bools are not.

    >>> check_downscale(2.0)
    2
    >>> check_downscale(0)
    Traceback (most recent call last):
    nerfkit.errors.InputError: [downscale]: downscale must be a positive integer, got 0
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


def split_names(splits: Any, where: Path | str | None = None) -> tuple[str, ...]:
    """The requested split names, deduplicated in order (one string is one name); not otherwise checked.

    >>> split_names(["test", "train", "test"])
    ('test', 'train')
    >>> split_names("val")
    ('val',)
    """
    if isinstance(splits, str):
        splits = (splits,)
    try:
        return tuple(dict.fromkeys(splits))
    except TypeError:
        raise InputError(f"splits must be a sequence of split names, got {splits!r}", where, "splits") from None


def check_splits(splits: Any, where: Path | str | None = None) -> tuple[str, ...]:
    """:func:`split_names`, which must be non-empty strings without path separators, at least one.

    >>> check_splits(("train", "a/b"))
    Traceback (most recent call last):
    nerfkit.errors.InputError: [splits]: invalid split name 'a/b'
    """
    names = split_names(splits, where)
    if not names:
        raise InputError("no splits requested", where, "splits")
    for s in names:
        if not isinstance(s, str) or not s or "/" in s or "\\" in s:
            raise InputError(f"invalid split name {s!r}", where, "splits")
    return names


# ---------------------------------------------------------------------------------------------- JSON
def read_json(path: Path) -> dict:
    """Parse a JSON object from ``path``; any problem is an ``InputError`` naming the file (and line/column).

    Returns:
      the top-level object (a ``dict``).
    """
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


def json_number(value: Any, path: Path | str | None, field: str, *, positive: bool = False,
                integer: bool = False) -> float:
    """A finite real number from JSON (optionally > 0 / integral), else ``InputError`` naming ``field``.

    >>> json_number(3, "t.json", "w", positive=True, integer=True)
    3.0
    >>> json_number(True, "t.json", "w")
    Traceback (most recent call last):
    nerfkit.errors.InputError: t.json [w]: expected a number, got true
    """
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


def json_matrix(value: Any, shape: tuple[int, ...], path: Path | str | None, field: str) -> np.ndarray:
    """A finite float64 array of exactly ``shape`` from nested JSON lists, else ``InputError``.

    >>> json_matrix([[1, 0], [0, 1]], (2, 2), "t.json", "m").tolist()
    [[1.0, 0.0], [0.0, 1.0]]
    >>> json_matrix([1, "2"], (2,), "t.json", "m")
    Traceback (most recent call last):
    nerfkit.errors.InputError: t.json [m]: expected a 2 matrix of numbers
    """
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


def json_pose(value: Any, path: Path | str | None, field: str, allow_3x4: bool = False) -> np.ndarray:
    """A camera-to-world pose from JSON as float64 [3, 4]: a 4x4 matrix of finite numbers (:func:`json_matrix`;
    3x4 too with ``allow_3x4``) whose rotation part is a rotation (:func:`rotation_problem`), else ``InputError``.

    >>> json_pose([[0, 0, 0, 1], [0, 0, 0, 2], [0, 0, 0, 3], [0, 0, 0, 1]], "t.json", "m")
    Traceback (most recent call last):
    nerfkit.errors.InputError: t.json [m]: the rotation part is not orthonormal (|R^T R - I| = 1)
    """
    shape = (3, 4) if allow_3x4 and isinstance(value, list) and len(value) == 3 else (4, 4)
    m = json_matrix(value, shape, path, field)
    why = rotation_problem(m[:3, :3])
    if why is not None:
        raise InputError(f"the rotation part is {why}", path, field)
    return m[:3, :4]


def json_string(value: Any, path: Path | str | None, field: str) -> str:
    """A non-empty string from JSON, else ``InputError`` naming ``field``.

    >>> json_string(7, "t.json", "frames[0].file_path")
    Traceback (most recent call last):
    nerfkit.errors.InputError: t.json [frames[0].file_path]: expected a non-empty string, got 7
    """
    if not isinstance(value, str) or not value:
        raise InputError(f"expected a non-empty string, got {json.dumps(value)[:40]}", path, field)
    return value


def require(obj: dict, key: str, path: Path | str | None, field: str) -> Any:
    """``obj[key]``, or ``InputError("missing key '<key>'")`` naming ``field``.

    >>> require({"a": 1}, "b", "t.json", "frames[0].b")
    Traceback (most recent call last):
    nerfkit.errors.InputError: t.json [frames[0].b]: missing key 'b'
    """
    if key not in obj:
        raise InputError(f"missing key '{key}'", path, field)
    return obj[key]


def json_frames(meta: dict, path: Path | str | None) -> Iterator[tuple[int, dict]]:
    """``(i, frame)`` for each frame object of ``meta["frames"]``, a non-empty list (checked before returning).

    Each element is checked to be an object only when the iteration reaches it (field ``frames[i]``), so the
    first problem in file order is the one reported.
    """
    frames = require(meta, "frames", path, "frames")
    if not isinstance(frames, list):
        raise InputError(f"expected a list, got {type(frames).__name__}", path, "frames")
    if not frames:
        raise InputError("no frames", path, "frames")

    def each() -> Iterator[tuple[int, dict]]:
        for i, fr in enumerate(frames):
            if not isinstance(fr, dict):
                raise InputError(f"expected an object, got {type(fr).__name__}", path, f"frames[{i}]")
            yield i, fr

    return each()


def frame_values(meta: dict, frame: dict, keys: Iterable[str], where: str) -> dict:
    """key -> (value, field name) for ``keys`` present in the frame or the top level, the frame's winning.

    >>> frame_values({"w": 4, "h": 3}, {"h": 2}, ("w", "h", "cx"), "frames[1]")
    {'w': (4, 'w'), 'h': (2, 'frames[1].h')}
    """
    keys = tuple(keys)
    values = {k: (meta[k], k) for k in keys if k in meta}
    values.update({k: (frame[k], f"{where}.{k}") for k in keys if k in frame})
    return values


def read_size(values: dict, path: Path | str | None) -> tuple[int | None, int | None]:
    """(w, h) from :func:`frame_values` output (positive integers), each None if absent.

    >>> read_size({"w": (640, "w")}, "t.json")
    (640, None)
    """
    size = []
    for key in ("w", "h"):
        if key in values:
            v, field = values[key]
            size.append(int(json_number(v, path, field, positive=True, integer=True)))
        else:
            size.append(None)
    return size[0], size[1]


def read_aabb(value: Any, path: Path | str | None, field: str = "aabb") -> np.ndarray:
    """float64 [2, 3] box ``[min, max]`` from JSON, min below max on every axis, else ``InputError``.

    >>> read_aabb([[0, 0, 0], [1, 1, 0]], "t.json")
    Traceback (most recent call last):
    nerfkit.errors.InputError: t.json [aabb]: aabb min [0.0, 0.0, 0.0] must be below max [1.0, 1.0, 0.0]
    """
    box = json_matrix(value, (2, 3), path, field)
    if np.any(box[0] >= box[1]):
        raise InputError(f"aabb min {box[0].tolist()} must be below max {box[1].tolist()}", path, field)
    return box


# ---------------------------------------------------------------------------------------- intrinsics
def fov_focal(value: Any, size: int, path: Path | str | None, field: str) -> float:
    """Focal length in pixels from a JSON field of view (radians, in (0, pi)) over ``size`` pixels.

    >>> round(fov_focal(math.pi / 2, 100, "t.json", "camera_angle_x"), 6)
    50.0
    >>> fov_focal(4, 100, "t.json", "camera_angle_x")
    Traceback (most recent call last):
    nerfkit.errors.InputError: t.json [camera_angle_x]: field of view must be below pi radians, got 4.0
    """
    angle = json_number(value, path, field, positive=True)
    if angle >= math.pi:
        raise InputError(f"field of view must be below pi radians, got {angle}", path, field)
    return focal_from_fov(size, angle)


def fov_from_focal(size: int, focal: float) -> float:
    """The field of view (radians) over ``size`` pixels of a focal length in pixels; inverse of ``focal_from_fov``.

    >>> round(fov_from_focal(100, 50.0), 6) == round(math.pi / 2, 6)
    True
    """
    return float(2.0 * math.atan(0.5 * size / float(focal)))


def read_intrinsics(vals: dict, width: int, height: int, json_path: Path, *, missing: str, missing_field: str) -> dict:
    """Intrinsics of one frame from Instant-NGP / nerfstudio keys (``vals``: key -> (value, field name)).

    The focal length is ``fl_x`` / ``fl_y`` or follows from ``camera_angle_x`` / ``camera_angle_y``
    (``fy = fx`` when neither is given; ``missing`` / ``missing_field`` name the error when no x focal is);
    the principal point defaults to the image centre and distortion coefficients to 0.

    Returns:
      dict of floats: fx, fy, cx, cy (pixels) and k1, k2, k3, k4, p1, p2.

    >>> k = read_intrinsics({"fl_x": (50, "fl_x")}, 64, 48, "t.json", missing="no focal", missing_field="fl_x")
    >>> k["fy"], k["cx"], k["cy"], k["k1"]
    (50.0, 32.0, 24.0, 0.0)
    """

    def get(key, **kw):
        v, field = vals[key]
        return json_number(v, json_path, field, **kw)

    def from_fov(key, size):
        v, field = vals[key]
        return fov_focal(v, size, json_path, field)

    if "fl_x" in vals:
        fx = get("fl_x", positive=True)
    elif "camera_angle_x" in vals:
        fx = from_fov("camera_angle_x", width)
    else:
        raise InputError(missing, json_path, missing_field)
    if "fl_y" in vals:
        fy = get("fl_y", positive=True)
    elif "camera_angle_y" in vals:
        fy = from_fov("camera_angle_y", height)
    else:
        fy = fx
    out = {"fx": fx, "fy": fy, "cx": get("cx") if "cx" in vals else width / 2.0,
           "cy": get("cy") if "cy" in vals else height / 2.0}
    out.update({k: get(k) if k in vals else 0.0 for k in ("k1", "k2", "k3", "k4", "p1", "p2")})
    return out


def intrinsics_cameras(c2w: np.ndarray, intr: np.ndarray, width: int, height: int, downscale: int = 1) -> Cameras:
    """Cameras of full-resolution intrinsics, then scaled to the images downscaled by ``downscale``.

    Args:
      c2w: float [N, 3, 4] camera-to-world.
      intr: float [N, 8] columns ``INTRINSICS_ORDER`` (fx, fy, cx, cy in pixels, then k1, k2, p1, p2).
      width, height: the full-resolution image size (a multiple of ``downscale``).
      downscale: positive integer factor.
    Returns:
      float32 Cameras, ``distortion`` None when every coefficient is 0.
    """
    dist = intr[:, 4:8]
    cams = Cameras(
        c2w=np.asarray(c2w).astype(np.float32),
        fx=intr[:, 0].astype(np.float32), fy=intr[:, 1].astype(np.float32),
        cx=intr[:, 2].astype(np.float32), cy=intr[:, 3].astype(np.float32),
        width=int(width), height=int(height),
        distortion=dist.astype(np.float32) if np.any(dist != 0) else None,
    )
    if downscale != 1:
        cams = cams.scaled(1.0 / downscale)
    return cams


def resize_cameras(cams: Cameras, width: int, height: int) -> Cameras:
    """The cameras for their images resized to ``width`` x ``height`` (each axis's intrinsics scaled by its
    own ratio: a folder of downscaled copies need not be an exact fraction of the size)."""
    sx, sy = width / cams.width, height / cams.height
    return dataclasses.replace(cams, fx=cams.fx * np.float32(sx), fy=cams.fy * np.float32(sy),
                               cx=cams.cx * np.float32(sx), cy=cams.cy * np.float32(sy), width=int(width),
                               height=int(height))


# --------------------------------------------------------------------------------------------- images
def has_image_suffix(name: Path | str, suffixes: Iterable[str] = IMAGE_SUFFIXES) -> bool:
    """True if ``name`` ends in one of ``suffixes`` (lower case), compared case-insensitively.

    >>> has_image_suffix("IMG_0001.JPG"), has_image_suffix("notes.txt"), has_image_suffix("scan.tif")
    (True, False, False)
    >>> has_image_suffix("scan.TIF", SFM_IMAGE_SUFFIXES)
    True
    """
    return Path(name).suffix.lower() in tuple(suffixes)


def list_images(folder: Path | str, suffixes: Iterable[str] = IMAGE_SUFFIXES) -> list[Path]:
    """The image files directly in ``folder`` (by :func:`has_image_suffix`, no hidden files), sorted by name.

    Args:
      folder: an existing directory (not searched recursively).
      suffixes: lower-case suffixes to accept (default ``IMAGE_SUFFIXES``).
    Returns:
      the files' paths, sorted by file name.
    """
    suffixes = tuple(suffixes)
    return sorted((p for p in Path(folder).iterdir() if p.is_file() and not p.name.startswith(".")
                   and has_image_suffix(p, suffixes)), key=lambda p: p.name)


def relative_name(path: Path, root: Path) -> str:
    """``path`` relative to ``root`` in posix form, or ``str(path)`` when it is not below ``root``.

    >>> relative_name(Path("/d/images/a.png"), Path("/d")), relative_name(Path("/e/a.png"), Path("/d"))
    ('images/a.png', '/e/a.png')
    """
    try:
        return path.relative_to(root).as_posix()
    except ValueError:
        return str(path)


def find_image(root: Path, file_path: str, default_suffixes: Iterable[str] = IMAGE_SUFFIXES_ANY_CASE) -> Path | None:
    """The file a frame's ``file_path`` names (relative to ``root``), or None when there is none.

    ``root / file_path`` itself when it is a file; else, when ``file_path`` has no image suffix,
    ``file_path`` + each of ``default_suffixes`` in turn (Blender's ``"./train/r_0"`` is ``r_0.png``).
    """
    candidates = [root / file_path]
    if not has_image_suffix(file_path):
        candidates += [root / (file_path + s) for s in default_suffixes]
    return next((c for c in candidates if c.is_file()), None)


MISSING_SHOWN = 3   # how many missing image names report_missing shows


def report_missing(json_path: Path, missing: list[str], total: int, field: str = "frames") -> None:
    """Warn (one line on stderr) that the frames whose image file is missing are skipped; ``InputError``
    when every one of the ``total`` frames is missing.

    Args:
      json_path: the JSON file listing the frames.
      missing: the ``file_path`` of each skipped frame, in file order (nothing is printed when empty).
      total: how many frames the file lists.
      field: the field named by the error (``frames``, or a split list such as ``train_filenames``).
    """
    if not missing:
        return
    shown = ", ".join(missing[:MISSING_SHOWN]) + (", ..." if len(missing) > MISSING_SHOWN else "")
    if len(missing) >= total:
        raise InputError(f"no usable frame: the image of every one of the {total} frames is missing ({shown})",
                         json_path, field)
    print(f"warning: {json_path}: skipped {len(missing)} of {total} frames whose image file is missing "
          f"({shown})", file=sys.stderr)


# -------------------------------------------------------------------------------------------- hold-out
def holdout_split(n: int, every: int = HOLDOUT) -> tuple[np.ndarray, np.ndarray]:
    """The hold-out rule: view ``i`` is a test view when ``i % every == 0``, else a train view.

    Args:
      n: number of views (in the loader's order).
      every: the hold-out period (default ``HOLDOUT`` = 8).
    Returns:
      (train_idx, test_idx): int arrays of view indices, ascending.

    >>> train, test = holdout_split(10)
    >>> train.tolist(), test.tolist()
    ([1, 2, 3, 4, 5, 6, 7, 9], [0, 8])
    """
    idx = np.arange(n)
    return idx[idx % every != 0], idx[idx % every == 0]


# ------------------------------------------------------------------------------------ world normalisation
@dataclasses.dataclass(frozen=True)
class NormalisedScene(Scene):
    """A :class:`~nerfkit.types.Scene` that also keeps how the file's world was normalised (nerfstudio and
    COLMAP captures, LLFF 360-degree captures).

    Attributes:
      file_to_scene: float64 [4, 4] similarity ``[[s R, -s R c], [0, 1]]`` (:func:`normalising_transform`): a
        point ``x`` in the file's world coordinates is ``s R (x - c)`` in the scene's; camera rotations are
        ``R`` times the file's, lengths are scaled by ``s``. Map scene results back with its inverse.
    """

    file_to_scene: np.ndarray | None = None


def normalisation(c2w: np.ndarray) -> tuple[np.ndarray, float]:
    """(centre float64 [3], scale): :func:`normalising_transform`'s ``x -> scale * R (x - centre)`` but ``R``.

    The centre is the point closest to every optical axis when that is well defined and lies within
    ``_FOCUS_MAX`` camera spreads of the mean camera position (orbits of an object), else the mean camera
    position (forward-facing or nearly parallel views). The scale puts the farthest camera at
    ``CAMERA_RADIUS`` from the centre (1 when all cameras sit at the centre).

    Args:
      c2w: float [N, 3, 4] camera-to-world.
    """
    c2w = np.asarray(c2w, np.float64)
    pos = c2w[:, :3, 3]
    mean = pos.mean(axis=0)
    spread = float(np.linalg.norm(pos - mean, axis=1).max())
    centre = mean
    if len(c2w) >= 2 and spread > 0:
        fp = focus_point(c2w)
        if fp is not None and np.linalg.norm(fp - mean) <= _FOCUS_MAX * spread:
            centre = fp
    radius = float(np.linalg.norm(pos - centre, axis=1).max())
    scale = CAMERA_RADIUS / radius if radius > 1e-12 else 1.0
    return centre, scale


def view_spread_degrees(c2w: np.ndarray) -> float:
    """The largest angle (degrees) between a camera's viewing direction (-z of its OpenGL c2w) and the mean one.

    Forward-facing captures stay within a few tens of degrees; cameras around their focus point (360-degree
    captures, object orbits) reach 90 and beyond.

    >>> ring = np.stack([np.concatenate([[[np.cos(a), 0, np.sin(a)], [0, 1, 0], [-np.sin(a), 0, np.cos(a)]],
    ...                                  np.zeros((3, 1))], 1) for a in np.radians([0, 90, 180])])
    >>> round(view_spread_degrees(ring[:1]), 3), round(view_spread_degrees(ring), 3)
    (0.0, 90.0)
    """
    d = -np.asarray(c2w, np.float64)[:, :3, 2]
    d = d / np.linalg.norm(d, axis=1, keepdims=True)
    mean = d.mean(axis=0)
    n = np.linalg.norm(mean)
    if n < 1e-8:
        return 180.0
    return float(np.degrees(np.arccos(np.clip(d @ (mean / n), -1.0, 1.0))).max())


def is_360(c2w: np.ndarray) -> bool:
    """True when the cameras look around rather than forward: :func:`view_spread_degrees` above
    ``FORWARD_MAX_DEGREES`` (45; beyond it NDC rays, which need every camera facing one way, break down)."""
    return view_spread_degrees(c2w) > FORWARD_MAX_DEGREES


def up_rotation(c2w: np.ndarray) -> np.ndarray:
    """float64 [3, 3]: the smallest rotation taking the cameras' mean up vector (+y of the OpenGL c2w) to +z.

    The identity when the up vectors cancel out; a half turn about x when they point down -z.

    >>> c2w = np.concatenate([np.eye(3), np.zeros((3, 1))], 1)[None]   # up = +y
    >>> (up_rotation(c2w) @ [0.0, 1.0, 0.0]).round(6).tolist()
    [0.0, 0.0, 1.0]
    """
    up = np.asarray(c2w, np.float64)[:, :3, 1].mean(axis=0)
    n = np.linalg.norm(up)
    if not np.isfinite(n) or n < 1e-8:
        return np.eye(3)
    up = up / n
    c = float(up[2])
    if c < -1.0 + 1e-9:
        return np.diag([1.0, -1.0, -1.0])
    v = np.cross(up, [0.0, 0.0, 1.0])
    vx = np.array([[0.0, -v[2], v[1]], [v[2], 0.0, -v[0]], [-v[1], v[0], 0.0]])
    return np.eye(3) + vx + vx @ vx / (1.0 + c)


def normalising_transform(c2w: np.ndarray) -> np.ndarray:
    """float64 [4, 4] similarity ``x -> s R (x - c)`` that levels and normalises a capture's world.

    ``(c, s)`` from :func:`normalisation` (centre at the focus point, farthest camera at ``CAMERA_RADIUS``),
    ``R`` from :func:`up_rotation` (the mean camera up becomes +z).

    Args:
      c2w: float [N, 3, 4] camera-to-world (OpenGL convention) in the file's world.
    """
    centre, scale = normalisation(c2w)
    r = up_rotation(c2w)
    m = np.eye(4)
    m[:3, :3] = scale * r
    m[:3, 3] = -scale * (r @ centre)
    return m


def transform_poses(m: np.ndarray, c2w: np.ndarray) -> np.ndarray:
    """float64 [N, 3, 4]: camera-to-world ``c2w`` in the world a similarity ``m`` [4, 4] maps to (rotations
    turned by ``m``'s rotation, positions mapped by ``m``).

    >>> m = np.diag([2.0, 2.0, 2.0, 1.0]); m[:3, 3] = 1.0
    >>> transform_poses(m, np.concatenate([np.eye(3), np.ones((3, 1))], 1)[None])[0, :, 3].tolist()
    [3.0, 3.0, 3.0]
    """
    c2w = np.asarray(c2w, np.float64)
    s = np.cbrt(np.linalg.det(m[:3, :3]))
    rot = m[:3, :3] / s
    return np.concatenate([rot @ c2w[:, :3, :3], (c2w[:, :3, 3] @ m[:3, :3].T + m[:3, 3])[..., None]], axis=-1)


def box_through(m: np.ndarray, box: np.ndarray) -> np.ndarray:
    """float64 [2, 3]: the axis-aligned box holding the image of ``box`` [2, 3] under the affine map ``m``.

    >>> box_through(np.eye(4), np.array([[0.0, 0, 0], [1, 2, 3]])).tolist()
    [[0.0, 0.0, 0.0], [1.0, 2.0, 3.0]]
    """
    corners = np.stack(np.meshgrid(*np.asarray(box, np.float64).T, indexing="ij"), -1).reshape(-1, 3)
    pts = corners @ m[:3, :3].T + m[:3, 3]
    return np.stack([pts.min(axis=0), pts.max(axis=0)])


# -------------------------------------------------------------------------------------------- rotations
def rotation_problem(r: np.ndarray, tol: float = ROTATION_TOL) -> str | None:
    """Why the [3, 3] matrix ``r`` is not a rotation, or None when it is one (within ``tol``).

    Returns:
      ``"not orthonormal (|R^T R - I| = ...)"`` when an entry of ``R^T R - I`` exceeds ``tol``, else
      ``"mirrored (det < 0)"`` when ``det R <= 0``, else None.

    >>> rotation_problem(np.eye(3)) is None
    True
    >>> rotation_problem(np.diag([1.0, 1.0, -1.0]))
    'mirrored (det < 0)'
    >>> rotation_problem(2 * np.eye(3))
    'not orthonormal (|R^T R - I| = 3)'
    """
    err = np.abs(r.T @ r - np.eye(3)).max()
    if err > tol:
        return f"not orthonormal (|R^T R - I| = {err:.3g})"
    if np.linalg.det(r) <= 0:
        return "mirrored (det < 0)"
    return None
