"""Training data in bounded memory (issue 13, item 4): peak resident memory before / after, and throughput.

    python benchmarks/train_memory.py                       # (a) lego 400x400 and (b) a 300-photo 1080p capture
    python benchmarks/train_memory.py --part a --before REF --steps 300 --repeats 2 --name train_memory_cpu
    python benchmarks/train_memory.py --part b --images 300
    python benchmarks/train_memory.py --part a --memory-only --repeats 1    # (a)'s memory alone (no timing)

(a) Lego at 400x400 (``/work/shared/data/nerf_synthetic/lego``, stored at 400x400; 100 training images), the code of ``--before``
(default: the merge-base of HEAD and ``main``, the code before 8-bit training data; exported with ``git archive``
into a temporary directory) against the working tree, back to back (``--repeats`` rounds of before, after):

* ``data``: a fresh process imports nerfkit and starts JAX, notes its peak resident memory (``ru_maxrss``), loads
  the training split and builds :class:`nerfkit.train_step.TrainData` on the device, and notes the peak again:
  the difference is the peak attributable to the training data (before: every ray, 48 bytes a pixel, plus the
  host copies made while building them; after: the 8-bit images, 4 bytes a pixel).
* ``fit``: ``nerfkit fit PRESET --data lego --data.downscale 1 --train.steps S`` (no validation): its
  ``steps_per_s`` (summary.json: from the first sync after compiling to the end) and the process's
  ``ru_maxrss``.

(b) A synthetic capture: ``--images`` JPEGs of 1920x1080 (smooth gradients plus noise, a ring of cameras
around the origin, a nerfstudio ``transforms.json``), written into a temporary directory (never in the
repository), then ``nerfkit fit PRESET --data DIR --train.steps 5`` with the working tree's code: its peak
resident memory (ru_maxrss of the process, from ``os.wait4``). Today's code would need 48 bytes a training
pixel (~30 GB for 300 images) before the first step; it is not run.

Writes benchmarks/results/<name>.json.
"""

from __future__ import annotations

import argparse
import json
import os
import resource
import subprocess
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
from common import LEGO, ROOT, environment, write_result  # noqa: E402

GIB = 2 ** 30


def maxrss() -> int:
    """This process's peak resident memory in bytes (Linux reports KiB)."""
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * 1024


def child_data(data: str, downscale: int) -> None:
    """In a fresh process: the peak resident memory the training data adds (printed as JSON)."""
    import jax
    import jax.numpy as jnp

    from nerfkit.config import DataConfig
    from nerfkit.runs import load_scene
    from nerfkit.train_step import TrainData

    jnp.zeros(8).block_until_ready()
    base = maxrss()
    t0 = time.time()
    scene = load_scene(DataConfig(data=Path(data), downscale=downscale), splits=("train",))
    train = TrainData.from_scene(scene)
    jax.block_until_ready(jax.tree.leaves(train))
    pixels = len(scene.splits["train"]) * scene.splits["train"].cameras.width * scene.splits["train"].cameras.height
    print(json.dumps({"baseline_rss": base, "peak_rss": maxrss(), "data_peak": maxrss() - base,
                      "device_bytes": int(sum(x.nbytes for x in jax.tree.leaves(train))), "pixels": pixels,
                      "seconds": time.time() - t0}))


def run_measured(cmd: list[str], code: Path, cwd: Path | None = None) -> tuple[int, str, int]:
    """(exit code, stdout, peak resident bytes) of ``cmd`` run with ``PYTHONPATH=code``."""
    env = dict(os.environ, PYTHONPATH=str(code))
    with tempfile.TemporaryFile("w+") as out:
        proc = subprocess.Popen(cmd, env=env, cwd=str(cwd or code), stdout=out, stderr=subprocess.PIPE, text=True)
        err = proc.stderr.read()
        _, status, usage = os.wait4(proc.pid, 0)
        proc.returncode = os.waitstatus_to_exitcode(status)
        out.seek(0)
        text = out.read()
    if proc.returncode != 0:
        raise SystemExit(f"{' '.join(cmd)} failed ({proc.returncode}):\n{err[-3000:]}")
    return proc.returncode, text, usage.ru_maxrss * 1024


def fit_cmd(preset: str, data: Path, out: Path, steps: int, extra: list[str]) -> list[str]:
    return [sys.executable, "-m", "cli.main", "fit", preset, "--data", str(data), "--out", str(out),
            "--train.steps", str(steps), "--train.val-every", "0", "--train.val-views", "0",
            "--train.log-every", "50", *extra]


def export_code(ref: str, into: Path) -> Path:
    """The tree of ``ref`` under ``into`` (``git archive``): the code to run for 'before'."""
    into.mkdir(parents=True)
    archive = subprocess.run(["git", "archive", ref], cwd=ROOT, capture_output=True, check=True).stdout
    subprocess.run(["tar", "-x", "-C", str(into)], input=archive, check=True)
    return into


def part_a(args, tmp: Path) -> dict:
    before_ref = args.before or subprocess.run(["git", "merge-base", "HEAD", "main"], cwd=ROOT, capture_output=True,
                                               text=True, check=True).stdout.strip()
    codes = {"before": export_code(before_ref, tmp / "before"), "after": ROOT}
    rows = {"before": [], "after": []}
    for r in range(args.repeats):
        for name, code in codes.items():
            _, text, _ = run_measured([sys.executable, str(Path(__file__).resolve()), "--child-data", str(args.lego),
                                       "--downscale", str(args.downscale)], code, cwd=ROOT)
            row = json.loads(text.strip().splitlines()[-1])
            if not args.memory_only:
                out = tmp / f"{name}_{r}"
                _, _, fit_rss = run_measured(fit_cmd(args.preset, args.lego, out, args.steps,
                                                     ["--data.downscale", str(args.downscale), *args.fit_args]), code)
                summary = json.loads((out / "summary.json").read_text())
                row.update(fit_peak_rss=fit_rss, steps_per_s=summary["steps_per_s"], steps=summary["steps"])
            rows[name].append(row)
            print(f"{name} round {r}: {json.dumps(row)}", file=sys.stderr, flush=True)
    keys = {"data_peak": min} if args.memory_only else {"data_peak": min, "fit_peak_rss": min, "steps_per_s": max}
    best = {k: {key: pick(x[key] for x in v) for key, pick in keys.items()} for k, v in rows.items()}
    ratio = best["after"]["data_peak"] / best["before"]["data_peak"]
    result = {"before_ref": before_ref, "preset": args.preset, "steps": args.steps, "rows": rows, "best": best,
              "data_peak_ratio": ratio, "data_peak_ok": ratio <= 1 / 8}
    if not args.memory_only:
        speed = best["after"]["steps_per_s"] / best["before"]["steps_per_s"]
        result.update(throughput_ratio=speed, throughput_ok=speed >= 0.9)
    return result


def write_capture(root: Path, n: int, width: int, height: int) -> int:
    """``n`` JPEGs (gradients plus noise) and a nerfstudio transforms.json of a camera ring; returns bytes."""
    import imageio.v3 as iio
    import numpy as np

    from nerfkit.cameras import look_at

    (root / "images").mkdir(parents=True)
    rng = np.random.default_rng(0)
    yy, xx = np.mgrid[0:height, 0:width].astype(np.float32)
    frames, total = [], 0
    for i in range(n):
        a = 2 * np.pi * i / n
        base = np.stack([xx / width, yy / height, np.full_like(xx, 0.5 + 0.5 * np.sin(a))], -1) * 200
        img = (base + rng.integers(0, 55, (height, width, 1), dtype=np.uint8)).astype(np.uint8)
        path = root / "images" / f"frame_{i:05d}.jpg"
        iio.imwrite(path, img, quality=90)
        total += path.stat().st_size
        c2w = np.eye(4)
        c2w[:3] = look_at((3 * np.cos(a), 3 * np.sin(a), 0.5), (0.0, 0.0, 0.0))
        frames.append({"file_path": f"images/{path.name}", "transform_matrix": c2w.tolist()})
    meta = {"camera_model": "PINHOLE", "fl_x": 0.8 * width, "fl_y": 0.8 * width, "cx": width / 2, "cy": height / 2,
            "w": width, "h": height, "frames": frames}
    (root / "transforms.json").write_text(json.dumps(meta))
    return total


def part_b(args, tmp: Path) -> dict:
    root = tmp / "capture"
    t0 = time.time()
    jpeg_bytes = write_capture(root, args.images, args.width, args.height)
    written = time.time() - t0
    out = tmp / "capture_run"
    t0 = time.time()
    _, _, rss = run_measured(fit_cmd(args.preset_b, root, out, 5, ["--data.downscale", "1", *args.fit_args]), ROOT)
    pixels = args.images * args.width * args.height
    print(f"capture: {args.images} x {args.width}x{args.height}: fit peak {rss / GIB:.2f} GiB", file=sys.stderr)
    return {"images": args.images, "width": args.width, "height": args.height, "jpeg_bytes": jpeg_bytes,
            "write_seconds": written, "fit_seconds": time.time() - t0, "preset": args.preset_b,
            "fit_peak_rss": rss, "peak_ok": rss < 8 * GIB, "pixels": pixels,
            "rays_48_bytes_a_pixel": pixels * 48}


def main():
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--part", choices=("a", "b", "ab"), default="ab")
    ap.add_argument("--before", default=None, help="git ref of the old code (default: merge-base of HEAD, main)")
    ap.add_argument("--lego", type=Path, default=LEGO)
    ap.add_argument("--preset", default="cpu-fast", help="(a)'s preset")
    ap.add_argument("--steps", type=int, default=300, help="(a)'s steps per fit")
    ap.add_argument("--repeats", type=int, default=2, help="(a)'s rounds of before, after")
    ap.add_argument("--memory-only", action="store_true", help="(a) without the fits (no throughput)")
    ap.add_argument("--preset-b", default="cpu-fast", help="(b)'s preset")
    ap.add_argument("--images", type=int, default=300)
    ap.add_argument("--width", type=int, default=1920)
    ap.add_argument("--height", type=int, default=1080)
    ap.add_argument("--fit-args", nargs="*", default=[], help="more flags for every fit")
    ap.add_argument("--name", default="train_memory_cpu")
    ap.add_argument("--child-data", default=None, help=argparse.SUPPRESS)
    ap.add_argument("--downscale", type=int, default=1, help="(a)'s --data.downscale (the shared lego is 400x400)")
    args = ap.parse_args()
    if args.child_data:
        return child_data(args.child_data, args.downscale)
    env = environment()
    figures = {}
    with tempfile.TemporaryDirectory(prefix="nerfkit_train_memory_") as tmp:
        if "a" in args.part:
            figures["lego"] = part_a(args, Path(tmp))
        if "b" in args.part:
            figures["capture"] = part_b(args, Path(tmp))
    print(write_result(args.name, figures, env=env))


if __name__ == "__main__":
    main()
