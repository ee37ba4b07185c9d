"""Loader for LLFF captures (Mildenhall et al. 2019): the NeRF paper's forward-facing real scenes, and
360-degree captures in the same format.

Layout (as written by LLFF's ``imgs2poses.py``; e.g. ``nerf_llff_data/fern``)::

    root/
      poses_bounds.npy     float [N, 17], one row per image
      images/              the N images, matched to the rows in file-name order (.png, .jpg, .jpeg, any case)
      images_4/, images_8/ optional downscaled copies; ``downscale=F`` reads ``images_F/`` when it exists

Each row of ``poses_bounds.npy`` is a 3x5 matrix flattened row-major, then two depths: columns 0-2 of the
matrix are the camera-to-world rotation with LLFF's axis order **[down, right, backwards]**, column 3 the
camera centre and column 4 ``[height, width, focal]`` in pixels of the full-size images; the two values
after it are the near and far depth bounds of the scene points seen by that camera.

What :func:`load_llff` does, step by step as the original NeRF ``load_llff_data`` (nerf-pytorch):

1. rotation columns to the OpenGL/Blender order (right, up, backwards): ``[c1, -c0, c2]``;
2. images from ``images_F/`` or area-downscaled from ``images/``; the focal length is rescaled to the
   actual image size and the principal point is the image centre. Pixels are read as stored (COLMAP, which
   made the poses, ignores EXIF orientation) unless only the EXIF-oriented image has the poses' aspect ratio;
3. rescale the world so the closest bound is ``1 / 0.75`` (``bd_factor`` 0.75): translations and bounds
   times ``1 / (0.75 * bounds.min())``;
4. recentre: the average pose (:func:`nerfkit.camera_paths.average_pose`) becomes the identity;
5. hold out every 8th image (``i % 8 == 0``) as the ``test`` split, the rest is ``train`` (no ``val``);
6. rays in normalised device coordinates with the near plane at 1 (``Cameras.ndc_near = 1``), so the
   scene's near/far are 0 and 1 and its box is NDC space (x, y about [-1, 1], z in [-1, 1]).

``Scene.depth_range`` keeps the rescaled bounds' min and max for
:func:`nerfkit.camera_paths.spiral_path`.

360-degree captures. ``poses_bounds.npy`` is also what LLFF's ``imgs2poses.py`` writes for a capture that
walks around its subject (e.g. the ``bird`` phone capture), where NDC, which needs every camera facing one
way, is wrong. When the viewing directions spread more than 45 degrees from their mean
(:func:`~nerfkit.data.common.is_360`), steps 3, 4 and 6 are replaced by the nerfstudio loader's
normalisation (:func:`~nerfkit.data.common.normalising_transform`: centre at the cameras' focus point, the
farthest camera at radius 1, the mean camera up turned to +z): world-space rays, near/far the bounds times
the scale, the box ``[-1.5, 1.5]^3``, no ``depth_range``, and the transform kept in
:attr:`~nerfkit.data.common.NormalisedScene.file_to_scene`.

Everything is a :class:`~nerfkit.errors.InputError` naming the file and the field when the input is wrong.
"""

from __future__ import annotations

from pathlib import Path
from typing import Iterable

import numpy as np

from nerfkit.camera_paths import average_pose
from nerfkit.cameras import camera_rays, ndc_rays, pixel_directions_camera
from nerfkit.errors import InputError
from nerfkit.types import Cameras, Scene, SplitData
from nerfkit.data.common import (DEFAULT_SPLITS, HOLDOUT, IMAGE_SUFFIXES, NormalisedScene, check_dataset_dir,
                                 check_downscale, holdout_split, is_360, list_images, normalising_transform,
                                 rotation_problem, split_names, transform_poses)
from nerfkit.data.images import pixel_array, read_pixels_fitting, run_in_order, shrink_pixels

POSES_BOUNDS = "poses_bounds.npy"
BD_FACTOR = 0.75   # the closest bound becomes 1 / BD_FACTOR after rescaling
NDC_NEAR = 1.0     # NDC near plane, world units after rescaling
_AABB_MARGIN = 0.05
BOX_HALF_360 = 1.5  # 360-degree captures: the scene box's half-size (the nerfstudio loader's default box)
MIN_NEAR = 0.01     # 360-degree captures: near never below this (normalised units)


def is_llff_dir(path: Path | str) -> bool:
    """True if ``path`` is a directory holding ``poses_bounds.npy``."""
    return Path(path).is_dir() and (Path(path) / POSES_BOUNDS).is_file()


# ------------------------------------------------------------------------------------------- poses file
def llff_to_opengl(poses: np.ndarray) -> np.ndarray:
    """Rotation columns from LLFF's [down, right, backwards] to OpenGL's [right, up, backwards].

    Exactly ``load_llff_data``'s ``concatenate([p[:, :, 1:2], -p[:, :, 0:1], p[:, :, 2:]], -1)``; the
    translation (and hwf) columns are unchanged.

    Args:
      poses: float [N, 3, K] with K >= 3 (3x4 camera-to-world or LLFF's 3x5 with hwf).
    Returns:
      float [N, 3, K].
    """
    return np.concatenate([poses[:, :, 1:2], -poses[:, :, 0:1], poses[:, :, 2:]], axis=-1)


def opengl_to_llff(poses: np.ndarray) -> np.ndarray:
    """Inverse of :func:`llff_to_opengl`: ``[right, up, back] -> [down, right, back] = [-up, right, back]``."""
    return np.concatenate([-poses[:, :, 1:2], poses[:, :, 0:1], poses[:, :, 2:]], axis=-1)


def write_poses_bounds(path: Path | str, c2w: np.ndarray, hwf, bounds: np.ndarray) -> None:
    """Write ``poses_bounds.npy`` (float64 [N, 17]) from OpenGL camera-to-world matrices.

    Args:
      c2w: float [N, 3, 4] camera-to-world, OpenGL convention (stored in LLFF's axis order).
      hwf: (height, width, focal) of the full-size images, float [3] or [N, 3].
      bounds: float [N, 2] near and far scene depth per image.
    """
    c2w = np.asarray(c2w, np.float64)
    n = c2w.shape[0]
    hwf = np.broadcast_to(np.asarray(hwf, np.float64), (n, 3))
    mat = np.concatenate([opengl_to_llff(c2w), hwf[:, :, None]], axis=-1)  # [N, 3, 5]
    rows = np.concatenate([mat.reshape(n, 15), np.asarray(bounds, np.float64).reshape(n, 2)], axis=-1)
    np.save(Path(path), rows)


def read_poses_bounds(path: Path | str) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Read and check ``poses_bounds.npy``.

    Returns:
      (c2w float64 [N, 3, 4] in the OpenGL convention, as stored (not rescaled or recentred);
       hwf float64 [N, 3] (height, width, focal) of the full-size images; bounds float64 [N, 2] (near, far)).
    Raises:
      InputError: a missing or unreadable file, a shape other than N x 17, non-finite values, a rotation that
        is not one (not orthonormal or mirrored), non-positive height/width/focal or bounds, near > far.
        The field names the row: ``poses[i]``, ``poses[i].rotation``, ``poses[i].hwf``, ``bounds[i]``.
    """
    path = Path(path)
    if not path.is_file():
        raise InputError("file not found (an LLFF scene needs poses_bounds.npy)", path)
    try:
        arr = np.load(path, allow_pickle=False)
    except (OSError, ValueError, EOFError) as e:
        msg = str(e).splitlines()[0] if str(e) else type(e).__name__
        raise InputError(f"cannot read as a NumPy .npy array ({msg})", path) from None
    if not isinstance(arr, np.ndarray) or not (np.issubdtype(arr.dtype, np.floating)
                                               or np.issubdtype(arr.dtype, np.integer)):
        raise InputError(f"expected a float array, got dtype {getattr(arr, 'dtype', type(arr).__name__)}", path,
                         "dtype")
    if arr.ndim != 2 or arr.shape[1] != 17 or arr.shape[0] == 0:
        raise InputError(f"expected shape N x 17 (a 3x5 pose and near/far bounds per image), got "
                         f"{' x '.join(map(str, arr.shape)) or 'a scalar'}", path, "shape")
    arr = arr.astype(np.float64)
    n = arr.shape[0]
    mats = arr[:, :15].reshape(n, 3, 5)
    bounds = arr[:, 15:17]
    for i in range(n):
        if not np.all(np.isfinite(mats[i])):
            raise InputError("pose contains non-finite values (NaN or inf)", path, f"poses[{i}]")
        if not np.all(np.isfinite(bounds[i])):
            raise InputError("near/far bounds contain non-finite values (NaN or inf)", path, f"bounds[{i}]")
    c2w = llff_to_opengl(mats[:, :, :4])
    hwf = mats[:, :, 4]
    for i in range(n):
        why = rotation_problem(c2w[i, :, :3])
        if why is not None:
            raise InputError(f"degenerate pose: the rotation is {why}", path, f"poses[{i}].rotation")
        if np.any(hwf[i] <= 0):
            raise InputError(f"height, width and focal must be positive, got {hwf[i].tolist()}", path,
                             f"poses[{i}].hwf")
        near, far = bounds[i]
        if near <= 0 or far < near:
            raise InputError(f"need 0 < near <= far, got near={near:g}, far={far:g}", path, f"bounds[{i}]")
    ref = hwf[0]
    differs = np.abs(hwf - ref).max(axis=1) > 1e-3 * np.abs(ref).max()
    if differs.any():
        i = int(np.argmax(differs))
        raise InputError(f"height/width/focal {hwf[i].tolist()} differ from the first image's {ref.tolist()} "
                         "(LLFF captures share one camera)", path, f"poses[{i}].hwf")
    return c2w, hwf, bounds


# ------------------------------------------------------------------------------------------------ images
def _image_source(root: Path, downscale: int) -> tuple[Path, int]:
    """(folder to read, factor still to apply in memory): ``images_F/`` if present, else ``images/``."""
    if downscale > 1 and (root / f"images_{downscale}").is_dir():
        return root / f"images_{downscale}", 1
    if (root / "images").is_dir():
        return root / "images", downscale
    others = sorted(p.name for p in root.glob("images_*") if p.is_dir())
    hint = f" (found {', '.join(others)}/: pass --downscale N to use images_N/)" if others else ""
    raise InputError(f"missing the images/ directory{hint}", root / "images", "images")


def _read_images(files: list[Path], factor: int, aspect: float, max_workers: int | None) -> np.ndarray:
    """uint8 [N, H, W, 4] straight RGBA (SplitData.pixels), every image area-downscaled by ``factor``; sizes must agree. The
    stored pixels, or the EXIF-oriented ones when only those have the poses' ``aspect`` (width / height)."""
    def fits(w: int, h: int) -> bool:
        return abs(w - aspect * h) <= max(1.0, 0.01 * w)

    first = read_pixels_fitting(files[0], fits)
    h0, w0 = first.shape[:2]
    if h0 % factor or w0 % factor:
        raise InputError(f"image size {w0}x{h0} is not divisible by downscale {factor} (images_{factor}/ does "
                         "not exist, so images/ is area-downscaled)", files[0], "downscale")
    out = pixel_array(len(files), h0 // factor, w0 // factor, files[0].parent)

    def load(i: int, img: np.ndarray | None = None) -> None:
        img = read_pixels_fitting(files[i], fits) if img is None else img
        if img.shape[:2] != (h0, w0):
            raise InputError(f"image size {img.shape[1]}x{img.shape[0]} differs from {files[0].name}'s {w0}x{h0} "
                             "(all images must share one size)", files[i])
        out[i] = shrink_pixels(img, factor)

    load(0, first)
    del first
    run_in_order(load, range(1, len(files)), max_workers)
    return out


# ------------------------------------------------------------------------------------------------- poses
def recenter_poses(c2w: np.ndarray) -> np.ndarray:
    """LLFF's ``recenter_poses``: float64 [N, 3, 4] ``inv(average_pose) @ c2w``, so the average pose is the
    identity (mean centre at the origin, mean viewing direction -z, mean up +y)."""
    c2w = np.asarray(c2w, np.float64)
    avg = np.eye(4)
    avg[:3, :4] = average_pose(c2w)
    full = np.tile(np.eye(4), (c2w.shape[0], 1, 1))
    full[:, :3, :4] = c2w
    return (np.linalg.inv(avg) @ full)[:, :3, :4]


def ndc_aabb(cams: Cameras, margin: float = _AABB_MARGIN) -> np.ndarray:
    """float32 [2, 3] box around every camera's NDC frustum, at least [-1, 1]^3, x and y padded by ``margin``.

    The NDC map is projective, so each frustum (near plane to infinity) is the convex hull of its four
    corner rays at NDC z = -1 and +1: the box of those 8 points per camera bounds every sample.
    """
    w, h = cams.width, cams.height
    px = np.array([0.0, w, 0.0, w], np.float32)
    py = np.array([0.0, 0.0, h, h], np.float32)
    k = lambda a: np.asarray(a, np.float64)[:, None]  # noqa: E731
    dirs = pixel_directions_camera(px[None], py[None], k(cams.fx), k(cams.fy), k(cams.cx), k(cams.cy))
    o, d = camera_rays(np.asarray(cams.c2w, np.float64)[:, None], dirs)
    o, d = ndc_rays(o, d, k(cams.fx), k(cams.fy), k(cams.cx), k(cams.cy), w, h, cams.ndc_near)
    pts = np.concatenate([o, o + d]).reshape(-1, 3)
    lo = np.minimum(pts[:, :2].min(axis=0), -1.0) - margin
    hi = np.maximum(pts[:, :2].max(axis=0), 1.0) + margin
    return np.array([[lo[0], lo[1], -1.0], [hi[0], hi[1], 1.0]], np.float32)


# -------------------------------------------------------------------------------------------------- load
def _image_files(root: Path, downscale: int, n: int) -> tuple[list[Path], int]:
    """(the images of :func:`_image_source`'s folder, one per pose in file-name order; factor still to apply)."""
    folder, factor = _image_source(root, downscale)
    files = list_images(folder)
    if len(files) != n:
        raise InputError(f"{len(files)} images ({'/'.join(IMAGE_SUFFIXES)}) but {n} poses in {POSES_BOUNDS} "
                         "(one image per row, matched in file-name order)", folder, "images")
    return files, factor


def _rescale_and_recenter(c2w: np.ndarray, bounds: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Steps 3 and 4: (c2w, bounds) with the closest bound at ``1 / BD_FACTOR``, then the average pose the
    identity (:func:`recenter_poses`)."""
    sc = 1.0 / (bounds.min() * BD_FACTOR)
    c2w = c2w.copy()
    c2w[:, :, 3] *= sc
    bounds = bounds * sc
    return recenter_poses(c2w), bounds


def _holdout_splits(n: int, names: tuple[str, ...], root: Path) -> dict[str, np.ndarray]:
    """Step 5: requested split name -> view indices, ``test`` every ``HOLDOUT``-th view, ``train`` the rest."""
    train_idx, test_idx = holdout_split(n, HOLDOUT)
    wanted = {"train": train_idx, "test": test_idx}
    wanted = {k: v for k, v in wanted.items() if k in names}
    if not wanted:
        raise InputError(f"none of the requested splits {list(names)} exist (LLFF has train and test)", root,
                         "splits")
    return wanted


def _cameras(c2w: np.ndarray, hwf: np.ndarray, size: tuple[int, int], factor: int, pb_path: Path,
             ndc_near: float | None) -> Cameras:
    """Steps 2 and 6: cameras for images of ``size`` (h, w): the poses' focal scaled to that size, the
    principal point at the image centre; NDC with ``ndc_near`` (None: world-space rays)."""
    h, w = size
    full_h, full_w, focal = hwf[0]
    if abs(w - full_w * h / full_h) > max(1.0, 0.01 * w):
        raise InputError(f"images of {w}x{h} pixels (after downscale {factor}) do not have the aspect ratio of "
                         f"the poses' {full_w:g}x{full_h:g}", pb_path, "poses[0].hwf")
    fx, fy = focal * w / full_w, focal * h / full_h
    const = lambda v: np.full(c2w.shape[0], v, np.float32)  # noqa: E731
    return Cameras(c2w=c2w.astype(np.float32), fx=const(fx), fy=const(fy), cx=const(w / 2.0),
                   cy=const(h / 2.0), width=int(w), height=int(h), ndc_near=ndc_near)


def _normalised_360(c2w: np.ndarray, bounds: np.ndarray) -> tuple[np.ndarray, np.ndarray, float, float]:
    """360-degree captures instead of steps 3, 4 and 6: (c2w in the levelled, normalised world of
    :func:`~nerfkit.data.common.normalising_transform`, that transform, near, far): the bounds' min and max
    times its scale (near at least ``MIN_NEAR``)."""
    m = normalising_transform(c2w)
    scale = float(np.cbrt(np.linalg.det(m[:3, :3])))
    return transform_poses(m, c2w), m, max(float(bounds.min()) * scale, MIN_NEAR), float(bounds.max()) * scale


def _split_data(root: Path, files: list[Path], wanted: dict[str, np.ndarray], pixels: np.ndarray,
                cams: Cameras) -> dict[str, SplitData]:
    """Split name -> SplitData; ``pixels`` holds the images of ``wanted``'s splits one after the other."""
    out, start = {}, 0
    for split, idx in wanted.items():
        out[split] = SplitData(cameras=cams.subset(idx), pixels=pixels[start:start + len(idx)],
                               names=tuple(files[i].relative_to(root).as_posix() for i in idx))
        start += len(idx)
    return out


def load_llff(root: Path | str, downscale: int = 1, splits: Iterable[str] = DEFAULT_SPLITS,
              max_workers: int | None = None) -> Scene:
    """Load an LLFF capture (see the module docstring for the layout and every step).

    Args:
      root: directory holding ``poses_bounds.npy`` and ``images/`` (and optionally ``images_F/``).
      downscale: positive integer F: read ``images_F/`` if it exists, else area-downscale ``images/`` by F
        (its size must then be divisible by F). Intrinsics follow the images actually read.
      splits: which of ``train`` / ``test`` to return (LLFF has no ``val``; names without data are left out).
      max_workers: threads for image decoding (``None``: ThreadPoolExecutor's default).
    Returns:
      Scene with ``train`` (``i % 8 != 0``) and ``test`` (``i % 8 == 0``) splits of uint8 [N, H, W, 4]
      RGBA (``SplitData.pixels``, alpha 255). Forward-facing: NDC cameras (``ndc_near = 1``), near 0, far 1, an NDC
      box, ``depth_range`` the rescaled (min near, max far) bounds. 360-degree
      (:func:`~nerfkit.data.common.is_360`): a :class:`~nerfkit.data.common.NormalisedScene` of world-space
      cameras, near/far the normalised bounds, the box ``[-1.5, 1.5]^3``, ``depth_range`` None.
      ``source = str(root)``.
    Raises:
      InputError: for any problem with the input, naming the file and the field.
    """
    root = check_dataset_dir(root, "an LLFF directory with poses_bounds.npy and images/")
    ds = check_downscale(downscale, root)
    names = split_names(splits, root)
    pb_path = root / POSES_BOUNDS
    c2w, hwf, bounds = read_poses_bounds(pb_path)   # step 1: OpenGL axes
    n = c2w.shape[0]
    if n < 2:
        raise InputError(f"{n} pose: need at least 2 images (every {HOLDOUT}th is held out for testing)",
                         pb_path, "shape")
    files, factor = _image_files(root, ds, n)
    around = is_360(c2w)
    if around:
        c2w, file_to_scene, near, far = _normalised_360(c2w, bounds)
    else:
        c2w, bounds = _rescale_and_recenter(c2w, bounds)
    wanted = _holdout_splits(n, names, root)
    order = np.concatenate(list(wanted.values()))
    pixels = _read_images([files[i] for i in order], factor, hwf[0, 1] / hwf[0, 0], max_workers)
    all_cams = _cameras(c2w, hwf, pixels.shape[1:3], factor, pb_path, None if around else NDC_NEAR)
    data = _split_data(root, files, wanted, pixels, all_cams)
    if around:
        box = np.array([[-BOX_HALF_360] * 3, [BOX_HALF_360] * 3], np.float32)
        return NormalisedScene(splits=data, near=near, far=far, aabb=box, source=str(root), file_to_scene=file_to_scene)
    return Scene(splits=data, near=0.0, far=1.0, aabb=ndc_aabb(all_cams), source=str(root),
                 depth_range=(float(bounds.min()), float(bounds.max())))
