"""Turning renderings into things people look at: 8-bit images, colour maps, PNGs, videos and plots.

Matplotlib is imported lazily, and only its object-oriented API with the Agg canvas is used (no pyplot,
no global backend switch), so this works headless and never disturbs a caller's own matplotlib setup.
"""

from __future__ import annotations

import contextlib
import functools
import os
import queue
import threading
import uuid
import warnings
from collections.abc import Iterable, Mapping, Sequence
from pathlib import Path

import numpy as np

from nerfkit.errors import InputError

ERROR_MAP_MAX = 0.25


def to_uint8(img) -> np.ndarray:
    """float image in [0, 1] -> uint8 in [0, 255] (clipped, rounded; NaN -> 0). Shape is preserved.

    Args:
      img: float array, typically [H, W, 3]; a uint8 array is returned unchanged.
    Returns:
      uint8 array of the same shape.
    """
    x = np.asarray(img)
    if x.dtype == np.uint8:
        return x
    x = np.nan_to_num(x.astype(np.float32), nan=0.0, posinf=1.0, neginf=0.0)
    return np.round(np.clip(x, 0.0, 1.0) * 255.0).astype(np.uint8)


@functools.lru_cache(maxsize=None)
def _lut(name: str) -> np.ndarray:
    """float64 [N, 4]: the RGBA table of matplotlib's colour map ``name`` (its ``N`` colours). Kept in the
    cache directory (:func:`nerfkit.compile_cache.kept`, keyed by the name and matplotlib's version), so a
    second ``render`` does not import matplotlib (~0.2 s) for its first depth frame."""
    from importlib.metadata import version

    from nerfkit import compile_cache

    def make():
        import matplotlib  # lazy: import time the training loop doesn't need

        cmap = matplotlib.colormaps[name]
        return cmap(np.arange(cmap.N))  # integers index the table itself

    return compile_cache.kept(compile_cache.describe("colormap", name, version("matplotlib")), make)


def colormap(x, lo: float | None = None, hi: float | None = None, cmap: str = "turbo") -> np.ndarray:
    """Colour-map a scalar image.

    Values are normalised to ``t = (x - lo) / (hi - lo)``, clipped to [0, 1] and looked up in matplotlib's
    ``cmap`` (its table, as ``matplotlib.colormaps[cmap](t)`` looks it up).

    Args:
      x: float [H, W] (or [H, W, 1]) scalar image; may contain NaN/inf.
      lo, hi: value range. Defaults: the 1st and 99th percentiles of the finite values (robust to
        outliers). If there are no finite values the range is [0, 1]; if ``hi <= lo`` (e.g. a constant
        image) every finite pixel gets the colour of ``t = 0``.
      cmap: a name from ``matplotlib.colormaps`` ('turbo', 'viridis', 'inferno', ...).
    Returns:
      float32 [H, W, 3] in [0, 1]. Non-finite pixels are black.
    """
    x = np.asarray(x, np.float64)
    if x.ndim == 3 and x.shape[-1] == 1:
        x = x[..., 0]
    finite = np.isfinite(x)
    if lo is None or hi is None:
        if finite.any():
            p_lo, p_hi = np.percentile(x[finite], [1.0, 99.0])
        else:
            p_lo, p_hi = 0.0, 1.0
        lo = p_lo if lo is None else lo
        hi = p_hi if hi is None else hi
    lo, hi = float(lo), float(hi)
    scale = hi - lo
    t = (np.where(finite, x, lo) - lo) / scale if scale > 0 else np.zeros_like(x)
    t = np.clip(t, 0.0, 1.0)
    lut = _lut(cmap)
    # matplotlib's own lookup of floats in [0, 1]: entry floor(t N), t = 1 in the last one
    rgb = lut[np.minimum((t * len(lut)).astype(np.int64), len(lut) - 1), :3].astype(np.float32)
    rgb[~finite] = 0.0
    return rgb


def depth_to_rgb(depth, opacity, near: float, far: float, cmap: str = "turbo", background=(1.0, 1.0, 1.0)):
    """Colour-mapped depth, fading to ``background`` (white) where the rendering is transparent.

    The colour range is the 1st-99th percentile of the depth of opaque pixels (opacity > 0.5), clipped
    to [near, far]; if no pixel is opaque it is [near, far]. Each pixel is then
    ``opacity * colormap(depth) + (1 - opacity) * background``, so empty space reads as background
    rather than as a misleading depth.

    Args:
      depth: float [H, W] (or [H, W, 1]) expected ray-termination distance.
      opacity: float [H, W] (or [H, W, 1]) accumulated alpha in [0, 1].
      near, far: the scene's ray bounds.
      cmap: matplotlib colour map name; with 'turbo' near is blue and far is red.
      background: float [3] colour shown where opacity is 0.
    Returns:
      float32 [H, W, 3] in [0, 1].
    """
    d = np.asarray(depth, np.float64)
    a = np.asarray(opacity, np.float64)
    d = d[..., 0] if d.ndim == 3 else d
    a = a[..., 0] if a.ndim == 3 else a
    if d.shape != a.shape:
        raise ValueError(f"depth_to_rgb: depth {d.shape} and opacity {a.shape} differ")
    a = np.clip(np.nan_to_num(a, nan=0.0), 0.0, 1.0)
    solid = (a > 0.5) & np.isfinite(d)
    if solid.any():
        lo, hi = np.percentile(d[solid], [1.0, 99.0])
        lo, hi = float(np.clip(lo, near, far)), float(np.clip(hi, near, far))
        if hi <= lo:
            lo, hi = float(near), float(far)
    else:
        lo, hi = float(near), float(far)
    rgb = colormap(np.where(np.isfinite(d), d, far), lo, hi, cmap)
    bg = np.asarray(background, np.float32)
    return (a[..., None] * rgb + (1.0 - a[..., None]) * bg).astype(np.float32)


def error_map(pred, gt, vmax: float = ERROR_MAP_MAX, cmap: str = "inferno") -> np.ndarray:
    """Per-pixel absolute error, averaged over channels, colour-mapped on the fixed range [0, vmax].

    A fixed range makes maps comparable across views and methods; with 'inferno' zero error is black
    and errors >= ``vmax`` (0.25 by default) are pale yellow.

    Args:
      pred, gt: float [H, W, C] (or [H, W]) images in [0, 1] of the same shape.
    Returns:
      float32 [H, W, 3] in [0, 1].
    """
    p = np.asarray(pred, np.float32)
    g = np.asarray(gt, np.float32)
    if p.shape != g.shape:
        raise ValueError(f"error_map: shape mismatch {p.shape} vs {g.shape}")
    err = np.abs(p - g)
    if err.ndim == 3:
        err = err.mean(axis=-1)
    return colormap(err, 0.0, vmax, cmap)


def _temp_path(path: Path) -> Path:
    """An unused temporary name next to ``path`` with the same suffix (ffmpeg picks its muxer by suffix).

    The file is not created here, so the writer creates it with the usual umask-derived permissions
    (``mkstemp`` would leave the final file readable by its owner only).
    """
    return path.parent / f".{path.stem}.{os.getpid()}.{uuid.uuid4().hex[:12]}.tmp{path.suffix}"


def _frame_rgb(frame) -> np.ndarray:
    f = to_uint8(frame)
    if f.ndim == 2:
        f = f[..., None]
    if f.ndim != 3 or f.shape[-1] not in (1, 3, 4):
        raise ValueError(f"write_video: frames must be [H, W] or [H, W, 1|3|4], got shape {f.shape}")
    if f.shape[-1] == 1:
        f = np.repeat(f, 3, axis=-1)
    return np.ascontiguousarray(f[..., :3])


@contextlib.contextmanager
def _ffmpeg_forks():
    """Silence JAX's warning on any os.fork() while ffmpeg is started: that is fork+exec done in C, which is safe."""
    with warnings.catch_warnings():
        warnings.filterwarnings("ignore", message=r"os\.fork\(\) was called", category=RuntimeWarning)
        yield


def ffmpeg_missing() -> str | None:
    """Why no video can be written (no ffmpeg: neither imageio-ffmpeg's binary nor the one ``IMAGEIO_FFMPEG_EXE``
    names), or None when one can."""
    import shutil

    try:
        import imageio_ffmpeg

        with _ffmpeg_forks():  # it runs `ffmpeg -version` once (cached: the writer then reuses it)
            exe = imageio_ffmpeg.get_ffmpeg_exe()
    except (ImportError, RuntimeError) as e:
        return f"{type(e).__name__}: {e}"
    return None if os.path.isfile(exe) or shutil.which(exe) else f"{exe} does not exist"


def check_ffmpeg() -> None:
    """Raise :class:`~nerfkit.errors.InputError` (one line, before any work) when :func:`ffmpeg_missing`."""
    why = ffmpeg_missing()
    if why:
        raise InputError(f"writing videos needs ffmpeg ({why}); pip install imageio-ffmpeg, or write PNG frames "
                         "only with --pngs --no-video", field="--video")


def write_video(path, frames: Iterable, fps: float = 30, quality: float = 8) -> tuple[int, int]:
    """Write an H.264 (libx264, yuv420p) MP4 that plays in browsers and common players.

    yuv420p needs even width and height: odd sizes are padded by one row/column at the bottom/right by
    replicating the edge pixels (never rescaled), so a 33x31 (H x W) input gives a 34x32 video. The file
    is written to a temporary name in the same directory and moved into place, so ``path`` never holds a
    partial video.

    Args:
      path: output file, normally ``*.mp4``; parent directories are created.
      frames: an iterable (list, generator, or array [T, H, W, 3]) of frames, uint8 [H, W, 3] (float
        frames in [0, 1] are converted with :func:`to_uint8`; grey frames are repeated, alpha dropped).
        All frames must have the same size. Frames are streamed, not held in memory.
      fps: frames per second.
      quality: imageio's 0-10 quality scale (8 is visually lossless-ish for renderings).
    Returns:
      (height, width) of the written video, after padding.
    """
    import imageio.v2 as iio

    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = _temp_path(path)
    writer = None
    size = None
    count = 0
    try:
        with _ffmpeg_forks():
            for frame in frames:
                f = _frame_rgb(frame)
                if size is None:
                    size = f.shape[:2]
                    writer = iio.get_writer(
                        str(tmp), format="FFMPEG", mode="I", fps=fps, codec="libx264", quality=quality,
                        pixelformat="yuv420p", macro_block_size=1,
                    )
                elif f.shape[:2] != size:
                    raise ValueError(f"write_video: frame {count} is {f.shape[:2]}, the first was {size}")
                pad_h, pad_w = size[0] % 2, size[1] % 2
                if pad_h or pad_w:
                    f = np.pad(f, ((0, pad_h), (0, pad_w), (0, 0)), mode="edge")
                writer.append_data(f)
                count += 1
            if count == 0:
                raise ValueError("write_video: no frames")
            writer.close()
            writer = None
        os.replace(tmp, path)
    finally:
        if writer is not None:
            try:
                writer.close()
            except Exception:  # already failing; the original error matters more
                pass
        if tmp.exists():
            tmp.unlink()
    return size[0] + size[0] % 2, size[1] + size[1] % 2


_END, _ABORT = object(), object()


class VideoStreams:
    """Several videos written at once as their frames come (:func:`write_video` for each, in its own
    thread, from a queue of at most ``depth`` frames): ffmpeg encodes while the next frame renders, and
    memory holds a few frames however long the videos are.

    ``with VideoStreams({"rgb": a.mp4, "depth": b.mp4}, fps) as videos: videos.put({"rgb": f, "depth": g})``.
    Leaving the block normally finishes every file (an error of a writer is raised then, or at the next
    ``put``); leaving it with an exception discards them (no partial video is left behind).

    >>> import tempfile
    >>> d = Path(tempfile.mkdtemp())
    >>> with VideoStreams({"a": d / "a.mp4", "b": d / "b.mp4"}, fps=10) as videos:
    ...     for _ in range(3):
    ...         videos.put({"a": np.zeros((8, 8, 3), np.uint8), "b": np.ones((8, 8, 3), np.uint8)})
    >>> sorted(p.name for p in d.iterdir())
    ['a.mp4', 'b.mp4']
    """

    def __init__(self, paths: Mapping[str, Path], fps: float, depth: int = 4):
        self._queues = {k: queue.Queue(maxsize=depth) for k in paths}
        self._errors: list[BaseException] = []
        self._threads = [threading.Thread(target=self._write, args=(Path(p), self._queues[k], fps), daemon=True)
                         for k, p in paths.items()]
        self._warnings = warnings.catch_warnings()

    def __enter__(self) -> "VideoStreams":
        # ffmpeg is started by fork+exec done in C (safe); write_video silences JAX's fork warning with
        # catch_warnings, which threads may restore out of order: this outer one puts the filters back.
        self._warnings.__enter__()
        for t in self._threads:
            t.start()
        return self

    def put(self, frames: Mapping[str, np.ndarray]) -> None:
        """Queue one frame of each video (waits while a writer is ``depth`` frames behind)."""
        if self._errors:
            raise self._errors[0]
        for k, q in self._queues.items():
            q.put(frames[k])

    def __exit__(self, exc_type, exc, tb) -> None:
        for q in self._queues.values():
            q.put(_END if exc_type is None else _ABORT)
        for t in self._threads:
            t.join()
        self._warnings.__exit__(exc_type, exc, tb)
        if exc_type is None and self._errors:
            raise self._errors[0]

    def _write(self, path: Path, q: queue.Queue, fps: float) -> None:
        def frames():
            while (f := q.get()) is not _END:
                if f is _ABORT:
                    raise InterruptedError("the render stopped")  # write_video removes its temporary file
                yield f

        try:
            write_video(path, frames(), fps=fps)
        except BaseException as e:  # noqa: BLE001 - reported to the producer; keep draining so it never blocks
            self._errors.append(e)
            if not isinstance(e, InterruptedError):
                while (f := q.get()) is not _END and f is not _ABORT:
                    pass


def write_png(path, img) -> None:
    """Save an image as PNG (atomically: temporary file, then rename).

    Args:
      path: output file; parent directories are created.
      img: float [H, W, C] in [0, 1] (converted with :func:`to_uint8`) or uint8, C in {1, 3, 4}, or [H, W].
    """
    import imageio.v2 as iio

    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    arr = to_uint8(img)
    if arr.ndim == 3 and arr.shape[-1] == 1:
        arr = arr[..., 0]
    tmp = _temp_path(path)
    try:
        iio.imwrite(tmp, arr, format="PNG")
        os.replace(tmp, path)
    finally:
        if tmp.exists():
            tmp.unlink()


def plot_curves(
    path,
    xs: Sequence[float] | Mapping[str, Sequence[float]],
    ys_dict: Mapping[str, Sequence[float]],
    xlabel: str = "step",
    ylabel: str = "",
    title: str = "",
    logy: bool = False,
) -> None:
    """Line plot of one or more curves (loss, PSNR, ...) saved as PNG.

    Args:
      path: output PNG; parent directories are created.
      xs: x values shared by all curves, or a mapping from curve name to its own x values.
      ys_dict: curve name -> y values (same length as its x values). Non-finite values leave gaps.
      xlabel, ylabel, title: axis labels and title.
      logy: logarithmic y axis (useful for losses).
    """
    from matplotlib.backends.backend_agg import FigureCanvasAgg
    from matplotlib.figure import Figure

    fig = Figure(figsize=(6.4, 4.0), dpi=100)
    FigureCanvasAgg(fig)
    ax = fig.add_subplot(1, 1, 1)
    for name, ys in ys_dict.items():
        x = np.asarray(xs[name] if isinstance(xs, Mapping) else xs, np.float64)
        y = np.asarray(ys, np.float64)
        if x.shape != y.shape:
            raise ValueError(f"plot_curves: curve {name!r} has {y.shape[0]} values for {x.shape[0]} x values")
        y = np.where(np.isfinite(y), y, np.nan)
        ax.plot(x, y, label=str(name))
    if logy:
        ax.set_yscale("log")
    ax.set_xlabel(xlabel)
    ax.set_ylabel(ylabel)
    if title:
        ax.set_title(title)
    ax.grid(True, alpha=0.3)
    if len(ys_dict) > 1:
        ax.legend()
    fig.tight_layout()
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = _temp_path(path)
    try:
        fig.savefig(tmp, format="png")
        os.replace(tmp, path)
    finally:
        if tmp.exists():
            tmp.unlink()
