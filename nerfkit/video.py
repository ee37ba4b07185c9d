"""Render a fitted run along a camera path: RGB, depth and opacity videos and/or PNG frames (``nerfkit render``).

Every render also writes the path it used as ``OUT/<path>_camera_path.json`` in nerfstudio's format
(:mod:`nerfkit.camera_path_file`, in the frame of :mod:`nerfkit.frames`), to edit and render again."""

from __future__ import annotations

import dataclasses
import time
from pathlib import Path
from typing import Iterator

import numpy as np

from nerfkit import camera_path_file, camera_paths, devices, parallel, progress, renderer, runs, visualize
from nerfkit.data.common import read_json
from nerfkit.errors import InputError
from nerfkit.types import Cameras, background_rgb

NAMED_PATHS = ("orbit", "spiral", "interpolate", "test")


def path_cameras(meta: runs.SceneMeta, path: str, frames: int) -> tuple[Cameras, str]:
    """The cameras of a path, and its name for output files.

    ``orbit`` (:func:`~nerfkit.camera_paths.orbit_path` around the training cameras' focus point, at their mean
    height and horizontal distance), ``spiral`` (LLFF's path in front of a forward-facing capture),
    ``interpolate`` (:func:`~nerfkit.camera_paths.interpolate_path`: a smooth spline through the training
    cameras in capture order, their image names sorted naturally), ``auto`` (spiral for forward-facing NDC
    scenes, else orbit), ``test`` (the test-split cameras) or a JSON file of ``frames[].transform_matrix``.
    Orbit, spiral and interpolate have ``frames`` frames. Every frame has the first base camera's intrinsics
    (and its NDC / distortion settings)."""
    base = meta.cameras["train"]
    if path == "auto":  # forward-facing (NDC) scenes get LLFF's spiral; others an orbit
        path = "spiral" if base.ndc_near is not None else "orbit"
    if path == "orbit":
        c2w = camera_paths.orbit_path(base.c2w, n_frames=frames)
    elif path == "spiral":
        if meta.depth_range is None:
            raise InputError("the spiral path needs a forward-facing scene's depth range (LLFF)", field="--path")
        c2w = camera_paths.spiral_path(base.c2w, *meta.depth_range, n_frames=frames)
    elif path == "interpolate":
        names = meta.names.get("train")  # runs from before names were saved: the loader's order
        order = camera_paths.capture_order(names) if names else np.arange(len(base))
        c2w = camera_paths.interpolate_path(base.c2w[order], n_frames=frames)
    elif path == "test":
        if "test" not in meta.cameras:
            raise InputError("the run's scene has no test split", field="--path")
        base = meta.cameras["test"]
        c2w = base.c2w
    else:
        c2w = camera_paths.load_path_json(path)
    cams = dataclasses.replace(base.subset(np.zeros(len(c2w), dtype=int)), c2w=np.asarray(c2w, np.float32))
    return cams, path if path in NAMED_PATHS else Path(path).stem


def resized(cams: Cameras, width: int | None, height: int | None) -> Cameras:
    """The cameras at another output size (either side alone keeps the aspect ratio; intrinsics scaled)."""
    if not (width or height):
        return cams
    w = width or round(cams.width * height / cams.height)
    h = height or round(cams.height * width / cams.width)
    sx, sy = w / cams.width, h / cams.height
    return dataclasses.replace(cams, fx=cams.fx * sx, fy=cams.fy * sy, cx=cams.cx * sx, cy=cams.cy * sy,
                               width=w, height=h)


KINDS = ("rgb", "depth", "opacity")


def iter_frames(run: runs.Run, cams: Cameras, chunk: int) -> Iterator[dict[str, np.ndarray]]:
    """Every frame of ``cams`` as 8-bit ``rgb``, ``depth`` (colour-mapped) and ``opacity`` images [H, W, 3],
    one at a time, with one line of progress on stderr (:class:`nerfkit.progress.Progress`)."""
    meta = run.meta
    mesh = parallel.render_mesh(chunk)
    params, state = parallel.replicate((run.params, run.sampler_state), mesh)
    fn = renderer.make_render_fn(run.graphdef, run.sampler, background_rgb(meta.background), mesh=mesh)
    bar = progress.Progress(len(cams), f"rendering {cams.width}x{cams.height}", unit="frame")
    for o in renderer.render_views(fn, params, state, cams, range(len(cams)), chunk):
        yield {"rgb": visualize.to_uint8(o["rgb"]),
               "depth": visualize.to_uint8(visualize.depth_to_rgb(o["depth"], o["opacity"], meta.near, meta.far)),
               "opacity": visualize.to_uint8(np.repeat(o["opacity"][..., None], 3, axis=-1))}
        bar.update()
    bar.close()


def write_videos(run: runs.Run, cams: Cameras, chunk: int, videos: dict[str, Path], fps: float,
                 png_dir: Path | None = None) -> None:
    """Render every frame of ``cams`` (:func:`iter_frames`) into ``videos`` (``{kind: file.mp4}`` for some of
    :data:`KINDS`, encoded as the frames come: :class:`nerfkit.visualize.VideoStreams`) and, with
    ``png_dir``, into ``png_dir/0000.png``... (RGB). Memory holds a few frames whatever the path's length."""
    with visualize.VideoStreams(videos, fps) as streams:
        for i, frame in enumerate(iter_frames(run, cams, chunk)):
            streams.put(frame)
            if png_dir is not None:  # write_png makes the directory
                visualize.write_png(png_dir / f"{i:04d}.png", frame["rgb"])


def render_path(run_dir, path: str = "auto", frames: int = 120, fps: float | None = None, width: int | None = None,
                height: int | None = None, out=None, pngs: bool = False, video: bool = True,
                chunk: int | None = None) -> dict:
    """Render a camera path of a fitted run to ``OUT/<path>_{rgb,depth,opacity}.mp4`` and/or PNG frames
    (``OUT/frames/``; ``OUT`` defaults to ``RUN_DIR/render``), and write the path as ``OUT/<path>_camera_path.json``.

    ``path``: a named path or JSON file (:func:`path_cameras`), or a nerfstudio ``camera_path.json``
    (:func:`nerfkit.camera_path_file.read`; its frames, size and fps). ``frames``: frames of an orbit, spiral or
    interpolated path; ``width``/``height``: output size (default: the camera path's, else the training size);
    ``fps``: default the camera path's, else 30. Returns the written files and timing."""
    if video:  # before any work
        visualize.check_ffmpeg()
    run = runs.load_run(Path(run_dir))
    cams, name, cp = _path(run.meta, path, frames)
    cams = resized(cams, width, height)
    fps = fps or (cp.fps if cp is not None else camera_path_file.DEFAULT_FPS)
    devices.announce()
    out = Path(run_dir) / "render" if out is None else Path(out)
    out.mkdir(parents=True, exist_ok=True)
    videos = {kind: out / f"{name}_{kind}.mp4" for kind in KINDS} if video else {}
    t0 = time.time()
    write_videos(run, cams, chunk or run.cfg.train.render_chunk, videos, fps, out / "frames" if pngs else None)
    seconds = time.time() - t0
    written = [str(f) for f in videos.values()]
    used = camera_path_file.from_cameras(cams, np.linalg.inv(run.meta.path_to_scene), fps,
                                         cp.settings if cp is not None else None)
    written.append(str(camera_path_file.write(out / f"{name}_camera_path.json", used)))
    return {"files": written, "frames": len(cams), "size": [cams.width, cams.height], "seconds": seconds,
            "step": run.step}


def _path(meta: runs.SceneMeta, path: str, frames: int):
    """(cameras, name, the nerfstudio camera path or None) of ``path``."""
    if path.endswith(".json") and Path(path).is_file():
        data = read_json(Path(path))
        if camera_path_file.is_camera_path(data):
            cp = camera_path_file.read(path, data)
            base = meta.cameras["train"]
            return camera_path_file.to_cameras(cp, meta.path_to_scene, base.ndc_near), Path(path).stem, cp
    cams, name = path_cameras(meta, path, frames)
    return cams, name, None
