"""lego-cpu-10min (../shared/docs/BENCHMARKS.md): fit lego at 100x100 for 600 s, evaluate all 200 test views.

    python benchmarks/lego_cpu.py --preset cpu-fast            # the core issue's command
    python benchmarks/lego_cpu.py --preset hash-fast --budget 600
    python benchmarks/lego_cpu.py --preset cpu-fast --curve-every 60   # + time-to-quality curve (PNG)

Runs `nerfkit fit PRESET --data LEGO --downscale 4 --time-budget BUDGET` and `nerfkit evaluate` as
subprocesses (exactly what a user types), then writes benchmarks/results/lego_cpu_<preset>.json with
PSNR, SSIM, steps reached, rays/s and the machine. Skips with a message when the lego data is absent.

``--curve-every S`` adds a time-to-quality curve: every S seconds of training the fit renders the first
``--curve-views`` (25) test views and logs their PSNR against ``train_time`` (wall-clock since the command
started minus the time spent in these renders and in checkpoints, which are not charged to the budget
either); the curve goes into the JSON and a PNG next to it.
"""

from __future__ import annotations

import argparse
import json
import subprocess
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
from common import LEGO, ROOT, environment, write_result  # noqa: E402


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--preset", default="cpu-fast")
    ap.add_argument("--budget", type=float, default=600.0, help="seconds of wall-clock for the whole fit")
    ap.add_argument("--downscale", type=int, default=4)
    ap.add_argument("--data", type=Path, default=LEGO)
    ap.add_argument("--out", type=Path, default=None, help="run directory (default runs/bench-lego-<preset>)")
    ap.add_argument("--max-views", type=int, default=None, help="evaluate only the first N test views")
    ap.add_argument("--curve-every", type=float, default=0.0, help="seconds between time-to-quality probes")
    ap.add_argument("--curve-views", type=int, default=25, help="test views rendered by each probe")
    ap.add_argument("--name", default=None, help="result name (default lego_cpu_<preset>)")
    ap.add_argument("--extra", nargs=argparse.REMAINDER, default=[], help="further flags for `nerfkit fit`")
    args = ap.parse_args()
    if not (args.data / "transforms_train.json").exists():
        print(f"skipped: no lego data at {args.data}")
        return 0
    env = environment()  # before the run: the commit that ran
    out = args.out or ROOT / "runs" / f"bench-lego-{args.preset}"
    if out.exists():
        import shutil

        shutil.rmtree(out)
    fit_cmd = ["nerfkit", "fit", args.preset, "--data", str(args.data), "--downscale", str(args.downscale),
               "--time-budget", str(args.budget), "--out", str(out), *args.extra]
    if args.curve_every:
        fit_cmd += ["--train.val-every-seconds", str(args.curve_every), "--train.val-views", str(args.curve_views),
                    "--train.val-split", "test"]
    t0 = time.time()
    subprocess.run(fit_cmd, check=True)
    fit_seconds = time.time() - t0
    eval_cmd = ["nerfkit", "evaluate", str(out)] + (["--max-views", str(args.max_views)] if args.max_views else [])
    subprocess.run(eval_cmd, check=True)
    summary = json.loads((out / "summary.json").read_text())
    metrics = json.loads((out / "eval_test" / "metrics.json").read_text())
    figures = {
        "preset": args.preset, "psnr": metrics["psnr"], "ssim": metrics["ssim"], "test_views": metrics["views"],
        "resolution": metrics["resolution"], "steps": summary["steps"], "fit_seconds": fit_seconds,
        "rays_per_s": summary["rays_per_s"], "steps_per_s": summary["steps_per_s"],
        "eval_seconds_per_view": metrics["seconds"] / max(metrics["views"], 1),
    }
    name = args.name or f"lego_cpu_{args.preset}"
    if args.curve_every:
        lines = [json.loads(x) for x in (out / "metrics.jsonl").read_text().splitlines()]
        probes = [x for x in lines if "val_psnr" in x and x.get("val_views") == args.curve_views]
        figures["time_to_quality"] = {"views": args.curve_views, "train_time": [x["train_time"] for x in probes],
                                      "step": [x["step"] for x in probes], "psnr": [x["val_psnr"] for x in probes]}
        from nerfkit import visualize

        png = ROOT / "benchmarks" / "results" / f"{name}_time_to_quality.png"
        visualize.plot_curves(png, figures["time_to_quality"]["train_time"], {args.preset: figures["time_to_quality"]["psnr"]},
                              xlabel="training wall-clock (s)", ylabel=f"PSNR on {args.curve_views} test views (dB)",
                              title=f"lego {metrics['resolution'][0]}x{metrics['resolution'][1]}: time to quality")
        print(f"-> {png}")
    path = write_result(name, figures,
                        extra={"fit_command": " ".join(fit_cmd), "eval_command": " ".join(eval_cmd)}, env=env)
    print(json.dumps(figures, indent=2))
    print(f"-> {path}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
