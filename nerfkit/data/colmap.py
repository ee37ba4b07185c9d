"""Camera poses from photographs or a video with COLMAP (through pycolmap), written as a nerfstudio capture.

Two entry points, both ending in ``OUT_DIR/transforms.json`` that :mod:`nerfkit.data.nerfstudio` reads
(``nerfkit fit --data OUT_DIR``):

* :func:`run_colmap` -- structure from motion on a folder of photos or a video: SIFT features,
  exhaustive or sequential matching, incremental mapping (``pycolmap.extract_features``,
  ``pycolmap.match_exhaustive`` / ``pycolmap.match_sequential``, ``pycolmap.incremental_mapping``).
* :func:`import_colmap_model` -- an existing COLMAP sparse model (``cameras``, ``images``, ``points3D`` in
  binary ``.bin`` or text ``.txt``; ``pycolmap.Reconstruction`` reads both) plus its images.

Output layout::

    OUT_DIR/
      transforms.json        nerfstudio format: OpenGL camera-to-world poses, intrinsics, "aabb"
      images/                the registered images (hard links where possible, else copies; video frames)
      colmap/database.db     run_colmap only: features and matches
      colmap/sparse/K/       run_colmap only: COLMAP's models (binary); the poses come from the largest

Conventions. COLMAP stores world-to-camera ``x_cam = R x_world + t`` (``R`` from the quaternion
``qvec = (w, x, y, z)``) in the OpenCV camera frame (x right, y down, z forward). The camera-to-world matrix
is ``[R^T | -R^T t]``; negating its y and z columns turns it into the OpenGL frame nerfkit uses (camera
looks down -z, +y up): :func:`colmap_to_opengl_c2w`. The world frame is COLMAP's (arbitrary position,
scale and orientation); the loader normalises it. COLMAP's pixel convention (the centre of the top-left
pixel at (0.5, 0.5)) is nerfkit's, so intrinsics are copied unchanged. Camera models: SIMPLE_PINHOLE and
PINHOLE are written as ``PINHOLE``; SIMPLE_RADIAL, RADIAL, OPENCV (and FULL_OPENCV with k3..k6 = 0) as
``OPENCV`` with k1, k2, p1, p2; anything else (fisheye models...) is an InputError: undistort first.

``aabb`` in ``transforms.json`` (a nerfkit extension, in COLMAP's world units) is the box holding the sparse
points between their 1st and 99th percentiles on each axis, grown by 10 %: the scene box the loader uses.
"""

from __future__ import annotations

import contextlib
import dataclasses
import math
import os
import shutil
from pathlib import Path
from typing import Callable, Iterable

import numpy as np

from nerfkit.errors import InputError
from nerfkit.data import common
from nerfkit.data.nerfstudio import TRANSFORMS, write_nerfstudio

VIDEO_SUFFIXES = (".mp4", ".mov", ".avi", ".mkv", ".webm", ".m4v", ".mpg", ".mpeg")
MATCHERS = ("exhaustive", "sequential")
VIDEO_TARGET_FRAMES = 100      # video_fps=None samples about this many frames over the whole video
MIN_REGISTERED_FRACTION = 0.5  # fewer registered images than this fraction is an error
_AABB_PERCENTILE = 1.0
_AABB_MARGIN = 0.1
_HINT = ("give it more overlap between neighbouring views (about 70 %), more texture (avoid blank walls, "
         "reflections and moving things), sharper images, or --matcher sequential for a video")


@dataclasses.dataclass(frozen=True)
class ColmapResult:
    """What :func:`run_colmap` / :func:`import_colmap_model` produced.

    Attributes:
      transforms: the ``transforms.json`` written.
      registered: images with a pose (the frames of ``transforms.json``).
      total: images given.
      missing: names of the images COLMAP could not register.
      camera_model: ``PINHOLE`` or ``OPENCV``.
      size: (width, height) of the images in pixels.
    """

    transforms: Path
    registered: int
    total: int
    missing: tuple[str, ...]
    camera_model: str
    size: tuple[int, int]


# ------------------------------------------------------------------------------------------- conventions
def qvec_to_rotmat(qvec) -> np.ndarray:
    """float64 [3, 3] rotation of a unit quaternion ``(w, x, y, z)`` (COLMAP's ``images.txt`` order)."""
    w, x, y, z = np.asarray(qvec, np.float64) / np.linalg.norm(qvec)
    return np.array([
        [1 - 2 * (y * y + z * z), 2 * (x * y - w * z), 2 * (x * z + w * y)],
        [2 * (x * y + w * z), 1 - 2 * (x * x + z * z), 2 * (y * z - w * x)],
        [2 * (x * z - w * y), 2 * (y * z + w * x), 1 - 2 * (x * x + y * y)],
    ])


def world_to_camera_to_opengl_c2w(cam_from_world: np.ndarray) -> np.ndarray:
    """float64 [3, 4] OpenGL camera-to-world from COLMAP's world-to-camera ``[R | t]`` (OpenCV camera frame)."""
    m = np.asarray(cam_from_world, np.float64)
    r, t = m[:3, :3], m[:3, 3]
    c2w = np.concatenate([r.T, (-r.T @ t)[:, None]], axis=1)
    c2w[:, 1:3] *= -1.0  # OpenCV (y down, z forward) -> OpenGL (y up, z backward)
    return c2w


def colmap_to_opengl_c2w(qvec, tvec) -> np.ndarray:
    """float64 [3, 4] OpenGL camera-to-world of a COLMAP image pose ``qvec = (w, x, y, z)``, ``tvec``."""
    return world_to_camera_to_opengl_c2w(np.concatenate([qvec_to_rotmat(qvec), np.reshape(tvec, (3, 1))], 1))


def camera_intrinsics(model: str, params, width: int, height: int, where: Path | str | None = None,
                      field: str | None = None) -> dict:
    """nerfstudio intrinsics (``camera_model``, ``fl_x``, ``fl_y``, ``cx``, ``cy``, ``w``, ``h`` [, k1, k2,
    p1, p2]) of a COLMAP camera. Raises InputError (naming ``where`` and ``field``) for models nerfkit cannot
    represent."""
    p = [float(v) for v in params]
    base = {"w": int(width), "h": int(height)}
    if model == "SIMPLE_PINHOLE":
        return {"camera_model": "PINHOLE", "fl_x": p[0], "fl_y": p[0], "cx": p[1], "cy": p[2], **base}
    if model == "PINHOLE":
        return {"camera_model": "PINHOLE", "fl_x": p[0], "fl_y": p[1], "cx": p[2], "cy": p[3], **base}
    if model in ("SIMPLE_RADIAL", "RADIAL"):
        k1, k2 = p[3], (p[4] if model == "RADIAL" else 0.0)
        return {"camera_model": "OPENCV", "fl_x": p[0], "fl_y": p[0], "cx": p[1], "cy": p[2], **base,
                "k1": k1, "k2": k2, "p1": 0.0, "p2": 0.0}
    if model == "OPENCV" or (model == "FULL_OPENCV" and not any(p[8:12])):
        return {"camera_model": "OPENCV", "fl_x": p[0], "fl_y": p[1], "cx": p[2], "cy": p[3], **base,
                "k1": p[4], "k2": p[5], "p1": p[6], "p2": p[7]}
    raise InputError(f"COLMAP camera model {model} is not supported (nerfkit reads SIMPLE_PINHOLE, PINHOLE, "
                     "SIMPLE_RADIAL, RADIAL, OPENCV): undistort the images first (colmap image_undistorter) and "
                     "import the undistorted model", where, field)


# ------------------------------------------------------------------------------------------------- files
def _place(src: Path, dst: Path) -> None:
    """Make ``dst`` hold ``src``'s bytes: a hard link where possible, else a copy (nothing if the same file)."""
    dst.parent.mkdir(parents=True, exist_ok=True)
    if dst.exists():
        if dst.samefile(src):
            return
        dst.unlink()
    try:
        os.link(src, dst)
    except OSError:
        shutil.copy2(src, dst)


def extract_video_frames(video: Path, out_dir: Path, fps: float | None = None,
                         log: Callable[[str], None] = print) -> list[Path]:
    """Sample frames of ``video`` at ``fps`` (None: about ``VIDEO_TARGET_FRAMES`` over the whole video) as
    ``out_dir/frame_00001.png`` ... (ffmpeg's ``fps`` filter, through imageio-ffmpeg)."""
    import imageio.v3 as iio
    import imageio_ffmpeg

    if fps is not None and (not math.isfinite(fps) or fps <= 0):
        raise InputError(f"must be a positive number of frames per second, got {fps}", video, "fps")

    def frames(output_params=None):
        try:
            gen = imageio_ffmpeg.read_frames(str(video), output_params=output_params)
            meta = next(gen)
        except (OSError, RuntimeError, StopIteration) as e:
            msg = str(e).strip().splitlines()[-1] if str(e).strip() else type(e).__name__
            raise InputError(f"cannot read the video ({msg})", video) from None
        return meta, gen

    meta, gen = frames()
    gen.close()
    duration, native = float(meta.get("duration") or 0.0), float(meta.get("fps") or 0.0)
    if fps is None:
        fps = VIDEO_TARGET_FRAMES / duration if duration > 0 else 2.0
        if native > 0:
            fps = min(fps, native)
    meta, gen = frames(["-vf", f"fps={fps:.6g}"])
    w, h = meta["size"]
    out_dir.mkdir(parents=True, exist_ok=True)
    for old in out_dir.glob("frame_*.png"):
        old.unlink()
    paths = []
    try:
        for i, raw in enumerate(gen):
            frame = np.frombuffer(raw, np.uint8).reshape(h, w, 3)
            path = out_dir / f"frame_{i + 1:05d}.png"
            iio.imwrite(path, frame)
            paths.append(path)
    finally:
        gen.close()
    if not paths:
        raise InputError("no frames could be read from the video", video)
    log(f"sampled {len(paths)} frames at {fps:.3g} fps from {video.name} ({w}x{h}, {duration:.1f} s)")
    return paths


def _check_same_size(paths: Iterable[Path], where: Path) -> None:
    from PIL import Image

    first = None
    for p in paths:
        try:
            with Image.open(p) as im:
                size = im.size
        except Exception as e:  # noqa: BLE001 -- any decoder failure is an unreadable image
            raise InputError(f"cannot read image ({str(e).splitlines()[0] if str(e) else type(e).__name__})", p) \
                from None
        if first is None:
            first = (p, size)
        elif size != first[1]:
            raise InputError(f"image size {size[0]}x{size[1]} differs from {first[0].name}'s {first[1][0]}x"
                             f"{first[1][1]} (nerfkit needs every view at one size: resize or crop them first)",
                             p)


# --------------------------------------------------------------------------------------------- transforms
def _pose_matrix(image) -> np.ndarray:
    """World-to-camera [3, 4] of a pycolmap Image (4.x: ``cam_from_world()``; 3.x: a property)."""
    pose = image.cam_from_world
    pose = pose() if callable(pose) else pose
    return np.asarray(pose.matrix(), np.float64)


def _has_pose(image) -> bool:
    return bool(image.has_pose) if hasattr(image, "has_pose") else bool(getattr(image, "registered", True))


def _points_aabb(rec) -> list | None:
    pts = np.array([p.xyz for p in rec.points3D.values()], np.float64).reshape(-1, 3)
    pts = pts[np.all(np.isfinite(pts), axis=1)]
    if len(pts) < 8:
        return None
    lo = np.percentile(pts, _AABB_PERCENTILE, axis=0)
    hi = np.percentile(pts, 100 - _AABB_PERCENTILE, axis=0)
    pad = _AABB_MARGIN * np.maximum(hi - lo, 1e-6)
    return [(lo - pad).tolist(), (hi + pad).tolist()]


def write_transforms(rec, images_dir: Path, out_dir: Path, model_path: Path, total: int | None = None,
                     image_root: Path | None = None) -> ColmapResult:
    """Write ``out_dir/transforms.json`` from a pycolmap Reconstruction and place its images in ``out_dir/images``.

    Args:
      rec: the reconstruction; only images with a pose become frames, sorted by name.
      images_dir: where the image files named in ``rec`` are.
      out_dir: output directory.
      model_path: the model's files (for messages).
      total: how many images were given (default: the images in ``rec``).
      image_root: put the images under ``out_dir / image_root`` (default ``images``).
    """
    out_dir = Path(out_dir)
    rel = Path(image_root or "images")
    images = sorted(rec.images.values(), key=lambda im: im.name)
    posed = [im for im in images if _has_pose(im)]
    missing = tuple(im.name for im in images if not _has_pose(im))
    if not posed:
        raise InputError("the model has no registered images", model_path)
    cams = {}
    for im in posed:
        if im.camera_id not in cams:
            cam = rec.cameras[im.camera_id]
            cams[im.camera_id] = camera_intrinsics(cam.model_name, cam.params, cam.width, cam.height, model_path,
                                                   f"camera {im.camera_id}")
    sizes = {(c["w"], c["h"]) for c in cams.values()}
    if len(sizes) > 1:
        raise InputError(f"the cameras have different image sizes ({', '.join(f'{w}x{h}' for w, h in sorted(sizes))}): "
                         "nerfkit needs every view at one size", model_path, "cameras")
    shared = cams[posed[0].camera_id] if len(cams) == 1 else None
    frames = []
    for im in posed:
        src = Path(images_dir) / im.name
        if not src.is_file():
            raise InputError(f"image '{im.name}' of the model not found in {images_dir}", src)
        _place(src, out_dir / rel / im.name)
        c2w = np.eye(4)
        c2w[:3] = world_to_camera_to_opengl_c2w(_pose_matrix(im))
        frame = {"file_path": (rel / im.name).as_posix(), "transform_matrix": c2w.tolist(),
                 "colmap_im_id": int(im.image_id)}
        if shared is None:
            frame.update(cams[im.camera_id])
        frames.append(frame)
    intrinsics = dict(shared) if shared is not None else {
        "camera_model": "OPENCV" if any(c["camera_model"] == "OPENCV" for c in cams.values()) else "PINHOLE"}
    if shared is None:  # per-frame intrinsics; one camera_model for the file
        for fr in frames:
            fr.pop("camera_model")
            if intrinsics["camera_model"] == "OPENCV":
                for k in ("k1", "k2", "p1", "p2"):
                    fr.setdefault(k, 0.0)
    extra = {}
    aabb = _points_aabb(rec)
    if aabb is not None:
        extra["aabb"] = aabb
    path = write_nerfstudio(out_dir, frames, intrinsics, extra)
    return ColmapResult(transforms=path, registered=len(posed), total=total if total is not None else len(images),
                        missing=missing, camera_model=intrinsics["camera_model"], size=next(iter(sizes)))


# ---------------------------------------------------------------------------------------------- entries
@contextlib.contextmanager
def _quiet_colmap(verbose: bool):
    import pycolmap

    old = pycolmap.logging.minloglevel
    if not verbose:
        pycolmap.logging.minloglevel = 2  # errors only: COLMAP's INFO lines are pages long
    try:
        yield pycolmap
    finally:
        pycolmap.logging.minloglevel = old


def _input_images(src: Path, images_dir: Path, is_video: bool, video_fps: float | None,
                  log: Callable[[str], None]) -> list[str]:
    """The names of the images to reconstruct, placed in ``images_dir``: a video's sampled frames, or the images
    of the folder ``src`` (which must share one size); at least 2."""
    if is_video:
        files = extract_video_frames(src, images_dir, video_fps, log)
    else:
        files = common.list_images(src, common.SFM_IMAGE_SUFFIXES)
        if not files:
            raise InputError(f"no images ({', '.join(common.SFM_IMAGE_SUFFIXES)}) in this folder", src)
        _check_same_size(files, src)
        for f in files:
            _place(f, images_dir / f.name)
    names = [f.name for f in files]
    if len(names) < 2:
        raise InputError(f"structure from motion needs at least 2 images, got {len(names)}", src)
    return names


def _reconstruct(work: Path, images_dir: Path, names: list[str], src: Path, matcher: str, camera_model: str,
                 single_camera: bool, seed: int, verbose: bool, log: Callable[[str], None]) -> dict:
    """COLMAP's models (id -> pycolmap Reconstruction) of ``names``: features, matches and incremental mapping in
    a fresh ``work`` folder (``database.db``, ``sparse/K``)."""
    if work.exists():
        shutil.rmtree(work)
    (work / "sparse").mkdir(parents=True)
    database = work / "database.db"
    with _quiet_colmap(verbose) as pycolmap:
        pycolmap.set_random_seed(seed)
        reader = pycolmap.ImageReaderOptions()
        reader.camera_model = camera_model
        mode = pycolmap.CameraMode.SINGLE if single_camera else pycolmap.CameraMode.PER_IMAGE
        log(f"COLMAP: extracting SIFT features from {len(names)} images")
        try:
            pycolmap.extract_features(database, images_dir, image_names=names, camera_mode=mode,
                                      reader_options=reader)
        except (ValueError, RuntimeError) as e:
            raise InputError(f"COLMAP feature extraction failed ({str(e).splitlines()[0]})", src,
                             "camera_model") from None
        log(f"COLMAP: {matcher} matching")
        if matcher == "exhaustive":
            pycolmap.match_exhaustive(database)
        else:
            pycolmap.match_sequential(database)
        log("COLMAP: incremental mapping")
        options = pycolmap.IncrementalPipelineOptions()
        options.random_seed = seed
        return pycolmap.incremental_mapping(database, images_dir, work / "sparse", options=options)


def run_colmap(images_or_video: Path | str, out_dir: Path | str, matcher: str | None = None,
               video_fps: float | None = None, camera_model: str = "SIMPLE_RADIAL", single_camera: bool = True,
               seed: int = 0, verbose: bool = False, log: Callable[[str], None] = print) -> ColmapResult:
    """Poses for a folder of photos (or a video) with COLMAP, written as ``out_dir/transforms.json``.

    Args:
      images_or_video: a folder of images (.png .jpg .jpeg .tif .bmp, not recursive), or a video file.
      out_dir: output directory (created); see the module docstring for what it holds. A previous
        ``out_dir/colmap/`` is replaced.
      matcher: ``exhaustive`` (every pair; best for up to a few hundred photos) or ``sequential`` (each
        image with its neighbours in name order; for videos). Default: sequential for a video, else exhaustive.
      video_fps: frames per second to sample from a video (default: about ``VIDEO_TARGET_FRAMES`` frames).
      camera_model: the COLMAP model to fit (SIMPLE_RADIAL, the COLMAP default; PINHOLE, OPENCV, ...).
      single_camera: all images share one camera (same device and zoom), which COLMAP calibrates better.
      seed: COLMAP's random seed (RANSAC, mapper).
      verbose: let COLMAP print its progress log.
      log: where progress lines go.
    Returns:
      ColmapResult (registered / total images, the transforms path).
    Raises:
      InputError: missing input, no images, images of different sizes, an unknown matcher, or fewer than
        half of the images registered (with hints to fix the capture).
    """
    src = Path(images_or_video)
    out = Path(out_dir)
    if not src.exists():
        raise InputError("not found (expected a folder of images or a video file)", src)
    is_video = src.is_file()
    if is_video and src.suffix.lower() not in VIDEO_SUFFIXES:
        raise InputError(f"not a folder of images, nor a video ({', '.join(VIDEO_SUFFIXES)})", src)
    matcher = matcher or ("sequential" if is_video else "exhaustive")
    if matcher not in MATCHERS:
        raise InputError(f"unknown matcher '{matcher}' (choose from: {', '.join(MATCHERS)})", field="matcher")

    images_dir = out / "images"
    names = _input_images(src, images_dir, is_video, video_fps, log)
    work = out / "colmap"
    models = _reconstruct(work, images_dir, names, src, matcher, camera_model, single_camera, seed, verbose, log)
    best_id = max(models, key=lambda k: models[k].num_reg_images(), default=None)
    registered = 0 if best_id is None else models[best_id].num_reg_images()
    log(f"COLMAP registered {registered} of {len(names)} images"
        + (f" ({len(models)} separate models; using the largest)" if len(models) > 1 else ""))
    if registered < MIN_REGISTERED_FRACTION * len(names):
        raise InputError(f"COLMAP registered only {registered} of {len(names)} images (fewer than half): {_HINT}",
                         src, "registration")
    rec = models[best_id]
    model_dir = work / "sparse" / str(best_id)  # incremental_mapping writes model k to sparse/k
    if not model_dir.is_dir():
        model_dir.mkdir(parents=True)
        rec.write(model_dir)
    result = write_transforms(rec, images_dir, out, model_dir, total=len(names))
    registered_names = {im.name for im in rec.images.values() if _has_pose(im)}
    missing = tuple(n for n in names if n not in registered_names)
    return dataclasses.replace(result, missing=missing)


def import_colmap_model(sparse_dir: Path | str, images_dir: Path | str, out_dir: Path | str) -> ColmapResult:
    """``out_dir/transforms.json`` (and ``out_dir/images``) from an existing COLMAP sparse model.

    Args:
      sparse_dir: a folder with ``cameras``, ``images`` and ``points3D`` as ``.bin`` or ``.txt``
        (e.g. ``sparse/0``).
      images_dir: the folder the model's image names are relative to.
      out_dir: output directory (created).
    Raises:
      InputError: a missing or unreadable model, an unsupported camera model, images of different sizes, a
        missing image file.
    """
    sparse, images = Path(sparse_dir), Path(images_dir)
    if not sparse.is_dir():
        raise InputError("COLMAP model folder not found", sparse)
    if not images.is_dir():
        raise InputError("images folder not found", images)
    stems = ("cameras", "images", "points3D")
    kind = next((ext for ext in (".bin", ".txt") if all((sparse / (s + ext)).is_file() for s in stems)), None)
    if kind is None:
        raise InputError("not a COLMAP sparse model (expected cameras, images and points3D as .bin or .txt)",
                         sparse, "cameras.bin")
    import pycolmap

    try:
        rec = pycolmap.Reconstruction(sparse)
    except Exception as e:  # noqa: BLE001 -- pycolmap raises plain RuntimeError/ValueError for bad files
        msg = str(e).strip().splitlines()[0] if str(e).strip() else type(e).__name__
        raise InputError(f"cannot read the COLMAP model ({msg})", sparse) from None
    return write_transforms(rec, images, Path(out_dir), sparse / f"cameras{kind}")


__all__ = ["ColmapResult", "run_colmap", "import_colmap_model", "colmap_to_opengl_c2w", "qvec_to_rotmat",
           "world_to_camera_to_opengl_c2w", "camera_intrinsics", "write_transforms", "extract_video_frames",
           "TRANSFORMS"]
