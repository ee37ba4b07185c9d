"""Time to quality on lego 100x100 (issue 15): what a user gets from `nerfkit fit PRESET --time-budget B`.

    python benchmarks/time_to_quality.py                                   # hash-fast and cpu-fast, 30..600 s
    python benchmarks/time_to_quality.py --presets hash-fast --budgets 60 120 600 --repeats 3 \\
        --name time_to_quality_hash-fast_acceptance                        # the issue's medians of three
    python benchmarks/time_to_quality.py --combine A.json B.json --name time_to_quality_cpu  # one curve of
                                                                           # several result files' runs

For every preset, budget and repeat: a fresh run directory, then exactly what a user types,
``nerfkit fit PRESET --data LEGO --downscale 4 --time-budget B`` and ``nerfkit evaluate RUN --max-views 25``
(PSNR on the first 25 test views), as subprocesses. The budget is wall-clock from the command's start, so
start-up (imports, data, compilation) is inside it. The compilation cache is warmed first by a short fit of
each preset (so every timed fit starts warm, as a user's second fit does), and the cold and warm start-up
(command start to the end of the first step, from ``metrics.jsonl``) is measured with a fresh cache.

"Time to X dB" is the shortest budget whose median PSNR reaches X, interpolated linearly between the two
measured budgets around the crossing (None when no budget reaches it). Writes
benchmarks/results/<name>.json and a plot <name>.png (PSNR against budget, thresholds 20, 24.1, 28 dB).
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parent))
from common import LEGO, ROOT, environment, write_result  # noqa: E402

THRESHOLDS = (20.0, 24.1, 28.0)


def nerfkit(args: list[str], cache: str | None = None) -> float:
    """Run ``nerfkit ARGS`` (with ``NERFKIT_COMPILE_CACHE=cache`` when given); returns its wall-clock."""
    env = dict(os.environ, PYTHONPATH=str(ROOT))
    if cache is not None:
        env["NERFKIT_COMPILE_CACHE"] = cache
    t0 = time.time()
    subprocess.run([sys.executable, "-m", "cli.main", *args], env=env, check=True, stdout=subprocess.DEVNULL,
                   stderr=subprocess.DEVNULL)
    return time.time() - t0


def first_step_seconds(run: Path) -> float:
    """Command start to the end of the first training step (the first logged step of ``metrics.jsonl``)."""
    for line in (run / "metrics.jsonl").read_text().splitlines():
        rec = json.loads(line)
        if "loss" in rec:
            return rec["time"]
    raise RuntimeError(f"no training step logged in {run}")


FIT_FLAGS: list[str] = []  # --fit-flags: extra `nerfkit fit` flags (a sweep of preset fields), else none


def fit_args(preset: str, data: Path, run: Path) -> list[str]:
    return ["fit", preset, "--data", str(data), "--downscale", "4", "--out", str(run), *FIT_FLAGS]


def budget_run(preset: str, data: Path, budget: float, run: Path, views: int) -> dict:
    """One user's fit with a time budget, scored on the first ``views`` test views."""
    shutil.rmtree(run, ignore_errors=True)
    wall = nerfkit([*fit_args(preset, data, run), "--time-budget", str(budget)])
    nerfkit(["evaluate", str(run), "--max-views", str(views)])
    summary = json.loads((run / "summary.json").read_text())
    metrics = json.loads((run / "eval_test" / "metrics.json").read_text())
    return {"budget": budget, "wall": wall, "psnr": metrics["psnr"], "ssim": metrics["ssim"],
            "steps": summary["steps"], "first_step": first_step_seconds(run), "steps_per_s": summary["steps_per_s"]}


def startup(preset: str, data: Path, tmp: Path) -> dict:
    """Cold (fresh cache) and warm start-up of ``fit PRESET``: seconds to the end of the first step."""
    out = {}
    for name in ("cold", "warm"):
        run = tmp / f"startup-{preset}-{name}"
        shutil.rmtree(run, ignore_errors=True)
        nerfkit([*fit_args(preset, data, run), "--train.steps", "5"], cache=str(tmp / f"cache-{preset}"))
        out[name] = first_step_seconds(run)
    out["ratio"] = out["cold"] / out["warm"]
    return out


def time_to(budgets: list[float], psnrs: list[float], target: float) -> float | None:
    """The shortest budget whose PSNR reaches ``target``, interpolated between measured budgets.

    >>> time_to([60, 120, 600], [22.0, 26.0, 31.0], 24.0), time_to([60, 120], [22.0, 23.0], 28.0)
    (90.0, None)
    >>> time_to([60, 120], [25.0, 27.0], 24.1)  # reached by the shortest budget measured
    60.0
    """
    for i, (b, p) in enumerate(zip(budgets, psnrs)):
        if p >= target:
            if i == 0:
                return float(b)
            b0, p0 = budgets[i - 1], psnrs[i - 1]
            return float(b0 + (target - p0) / (p - p0) * (b - b0))
    return None


def summarise(runs: list[dict]) -> dict:
    """Median PSNR per budget and the time to each threshold."""
    budgets = sorted({r["budget"] for r in runs})
    med = [float(np.median([r["psnr"] for r in runs if r["budget"] == b])) for b in budgets]
    return {"budgets": budgets, "median_psnr": med,
            "time_to": {f"{t:g}": time_to(budgets, med, t) for t in THRESHOLDS}}


def plot(path: Path, results: dict) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    import matplotlib.ticker

    fig, ax = plt.subplots(figsize=(6.4, 4.2), dpi=120)
    for preset, res in results.items():
        s = res["summary"]
        line, = ax.plot(s["budgets"], s["median_psnr"], "o-", label=f"{preset} (median)")
        ax.scatter([r["budget"] for r in res["runs"]], [r["psnr"] for r in res["runs"]], s=10, alpha=0.5,
                   color=line.get_color())
    for t in THRESHOLDS:  # labelled at the left edge (x in axes coordinates, y in dB)
        ax.axhline(t, color="grey", lw=0.7, ls="--")
        ax.text(0.01, t + 0.2, f"{t:g} dB", color="grey", fontsize=8, transform=ax.get_yaxis_transform())
    ax.set_xscale("log")
    ticks = sorted({b for res in results.values() for b in res["summary"]["budgets"]})
    ax.set_xticks(ticks, [f"{b:g}" for b in ticks])
    ax.xaxis.set_minor_locator(matplotlib.ticker.NullLocator())
    ax.set_xlabel("--time-budget (s of wall-clock from the command's start)")
    ax.set_ylabel("PSNR on the first 25 test views (dB)")
    ax.set_title("lego 100x100 on this CPU: quality for a time budget")
    ax.grid(alpha=0.3)
    ax.legend(loc="lower right")
    fig.tight_layout()
    fig.savefig(path)
    plt.close(fig)


def combine(files: list[Path], name: str) -> int:
    """One result (JSON and plot) of the runs of several result files, per preset: nothing is run. The
    start-up figures are the last file's that has them; every source file is recorded."""
    results: dict = {}
    for f in files:
        for preset, res in json.loads(Path(f).read_text())["figures"]["presets"].items():
            into = results.setdefault(preset, {"runs": []})
            into["runs"] += [{**r, "source": Path(f).name} for r in res["runs"]]
            if "startup" in res:
                into["startup"] = res["startup"]
    for res in results.values():
        res["summary"] = summarise(res["runs"])
    png = ROOT / "benchmarks" / "results" / f"{name}.png"
    plot(png, results)
    path = write_result(name, {"views": 25, "thresholds": list(THRESHOLDS), "combined_from": [Path(f).name for f in files],
                               "presets": results})
    print(json.dumps({p: r["summary"] for p, r in results.items()}, indent=2))
    print(f"-> {path}\n-> {png}")
    return 0


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--presets", nargs="+", default=["hash-fast", "cpu-fast"])
    ap.add_argument("--budgets", nargs="+", type=float, default=[30, 60, 120, 300, 600])
    ap.add_argument("--repeats", type=int, default=1)
    ap.add_argument("--views", type=int, default=25, help="test views scored (the first N)")
    ap.add_argument("--data", type=Path, default=LEGO)
    ap.add_argument("--no-startup", action="store_true", help="skip the cold/warm start-up measurement")
    ap.add_argument("--name", default="time_to_quality_cpu")
    ap.add_argument("--fit-flags", default="", help="extra flags for every fit, e.g. '--train.batch-rays 256'")
    ap.add_argument("--combine", nargs="+", type=Path, help="merge these result files' runs (run nothing)")
    args = ap.parse_args()
    if args.combine:
        return combine(args.combine, args.name)
    FIT_FLAGS[:] = args.fit_flags.split()
    if not (args.data / "transforms_train.json").exists():
        print(f"skipped: no lego data at {args.data}")
        return 0
    env = environment()
    results = {}
    with tempfile.TemporaryDirectory(prefix="nerfkit-ttq-") as tmp:
        tmp = Path(tmp)
        for preset in args.presets:
            res = {} if args.no_startup else {"startup": startup(preset, args.data, tmp)}
            nerfkit([*fit_args(preset, args.data, tmp / "warmup"), "--train.steps", "5"])  # warm the user cache
            shutil.rmtree(tmp / "warmup")
            res["runs"] = []
            for rep in range(args.repeats):
                for budget in args.budgets:
                    r = budget_run(preset, args.data, budget, tmp / "run", args.views)
                    res["runs"].append({"repeat": rep, **r})
                    print(json.dumps({"preset": preset, **res["runs"][-1]}), flush=True)
            res["summary"] = summarise(res["runs"])
            results[preset] = res
    png = ROOT / "benchmarks" / "results" / f"{args.name}.png"
    plot(png, results)
    path = write_result(args.name, {"views": args.views, "thresholds": list(THRESHOLDS), "fit_flags": FIT_FLAGS,
                                    "presets": results},
                        env=env)
    print(json.dumps({p: r["summary"] for p, r in results.items()}, indent=2))
    print(f"-> {path}\n-> {png}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
