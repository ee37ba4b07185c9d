"""Cold and warm start-up with the persistent compilation cache (issue 15, item 1).

    python benchmarks/startup_cache.py                 # the demo preset, 40 steps, twice; its render, twice
    python benchmarks/startup_cache.py --repeats 2 --name startup_cache_cpu
    python benchmarks/startup_cache.py --render-run RUN   # render a whole demo fit (`nerfkit fit --out RUN`)
    python benchmarks/startup_cache.py --render-run RUN --renders-only --frames 120   # the default 120 frames

Each repeat uses a fresh, empty cache directory (``NERFKIT_COMPILE_CACHE``) and runs, as a user would:
``nerfkit fit demo --train.steps S`` into a fresh run directory (cold: nothing cached), the same fit again
into another directory (warm), ``nerfkit render`` of the first run with a second fresh cache (cold) and
again (warm), and the same fit with the cache off. Records the wall-clock of each command and, for fits,
the time from the command's start to the end of the first training step (``time`` of the first line of
``metrics.jsonl``). Records the installed ml_dtypes and NumPy and the median time of ``import jax``.
Writes benchmarks/results/<name>.json.
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
from common import ROOT, environment, write_result  # noqa: E402


def nerfkit(args: list[str], cache: str) -> float:
    """Run ``nerfkit ARGS`` with ``NERFKIT_COMPILE_CACHE=cache``; returns its wall-clock seconds."""
    env = {k: v for k, v in os.environ.items() if not k.startswith("JAX_COMPILATION_CACHE")}
    # This tree first; then what the caller put on the path (the GPU run's carried packages).
    env.update(NERFKIT_COMPILE_CACHE=cache, PYTHONPATH=os.pathsep.join(p for p in (str(ROOT), env.get("PYTHONPATH")) if p))
    t0 = time.time()
    subprocess.run([sys.executable, "-m", "cli.main", *args], env=env, check=True, stdout=subprocess.DEVNULL,
                   stderr=subprocess.DEVNULL, cwd=ROOT)  # `-m` looks in the working directory first
    return time.time() - t0


def first_step_seconds(run: Path) -> float:
    for line in (run / "metrics.jsonl").read_text().splitlines():
        rec = json.loads(line)
        if "loss" in rec:
            return rec["time"]
    raise RuntimeError(f"no training step logged in {run}")


def one_repeat(tmp: Path, steps: int, frames: int, render_run: Path | None = None, fits: bool = True,
               render_flags: tuple[str, ...] = ()) -> dict:
    fit = ["fit", "demo", "--train.steps", str(steps)]
    res = {}
    for name, cache in (("fit_cold", tmp / "c1"), ("fit_warm", tmp / "c1"), ("fit_off", "off")) if fits else ():
        run = tmp / name
        res[name] = {"seconds": nerfkit([*fit, "--out", str(run)], str(cache)), "first_step": first_step_seconds(run)}
    render = ["render", str(render_run or tmp / "fit_cold"), "--frames", str(frames), *render_flags]
    for name in ("render_cold", "render_warm"):
        res[name] = {"seconds": nerfkit([*render, "--out", str(tmp / name)], str(tmp / "c2"))}
    res["cache_entries"] = {c: len(list((tmp / c).glob("*-cache"))) for c in ("c1", "c2")}
    res["programs_kept_whole"] = {c: len(list((tmp / c).glob("programs/*.pjrt"))) for c in ("c1", "c2")}
    return res


def import_seconds(module: str = "jax", repeats: int = 3) -> float:
    """The median wall-clock of ``python -c "import MODULE"`` (what every command pays before its work)."""
    times = []
    for _ in range(repeats):
        t0 = time.time()
        subprocess.run([sys.executable, "-c", f"import {module}"], check=True)
        times.append(time.time() - t0)
    return float(statistics.median(times))


def _median_ratio(repeats: list[dict], kind: str) -> float:
    """The median over repeats of cold / warm: a fit's time to its first step, a render's wall-clock."""
    field = "first_step" if kind == "fit" else "seconds"
    return float(statistics.median(r[f"{kind}_cold"][field] / r[f"{kind}_warm"][field] for r in repeats))


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--steps", type=int, default=40)
    ap.add_argument("--frames", type=int, default=30, help="frames of the rendered orbit")
    ap.add_argument("--repeats", type=int, default=2)
    ap.add_argument("--render-run", type=Path, default=None,
                    help="render this run (e.g. a whole `nerfkit fit --out DIR` of the demo) instead of the "
                         "STEPS-step fit's")
    ap.add_argument("--renders-only", action="store_true", help="measure the renders alone (needs --render-run)")
    ap.add_argument("--pngs-only", action="store_true",
                    help="render PNG frames, no videos (`--no-video --pngs`: a machine without ffmpeg, e.g. the GPU's)")
    ap.add_argument("--name", default="startup_cache_cpu")
    ap.add_argument("--out-dir", type=Path, default=None, help="where the JSON goes (default benchmarks/results)")
    args = ap.parse_args()
    env = environment()
    if args.renders_only and args.render_run is None:
        ap.error("--renders-only needs --render-run")
    from importlib.metadata import version

    imports = {"ml_dtypes": version("ml_dtypes"), "numpy": version("numpy"), "import_jax_seconds": import_seconds()}
    print(json.dumps(imports), flush=True)
    repeats = []
    for i in range(args.repeats):
        with tempfile.TemporaryDirectory(prefix="nerfkit-startup-") as tmp:
            repeats.append(one_repeat(Path(tmp), args.steps, args.frames, args.render_run, fits=not args.renders_only,
                                      render_flags=("--no-video", "--pngs") if args.pngs_only else ()))
        print(json.dumps(repeats[-1]), flush=True)
    summary = {k: _median_ratio(repeats, k) for k in (("render",) if args.renders_only else ("fit", "render"))}
    print(json.dumps(summary))
    path = write_result(args.name, {"steps": args.steps, "frames": args.frames, "render_run": str(args.render_run),
                                    "pngs_only": args.pngs_only, "imports": imports, "repeats": repeats,
                                    "median_cold_over_warm": summary}, out_dir=args.out_dir, env=env)
    print(f"-> {path}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
