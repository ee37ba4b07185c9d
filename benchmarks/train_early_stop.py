"""Does early ray termination pay in *training*? The same preset fitted with and without it, same wall-clock.

    python benchmarks/train_early_stop.py                          # cpu-fast, 120 s each, 25 test views
    python benchmarks/train_early_stop.py --preset hash-fast --budget 300 --prepass 131072 --batch-rays 8192

Runs, as subprocesses (what a user types),

    nerfkit fit PRESET --data LEGO --downscale 4 --time-budget BUDGET --out RUNS/train-es-off
    nerfkit fit PRESET ... --out RUNS/train-es-on --train.early-stop-prepass PREPASS --train.batch-rays BATCH_RAYS
    nerfkit evaluate RUN --max-views VIEWS                     # for each

"on" packs each batch's samples into PREPASS slots, runs a gradient-free density pass over them and trains
only on the samples in front of each ray's 1e-4 transmittance point, packed into the preset's sample budget.
Those freed slots only help if the batch has more rays to give them to, hence the larger --batch-rays.
Writes benchmarks/results/train_early_stop_<device>.json: training rays/s, samples per step and test PSNR of
each. Skips with a message when the lego data is absent.
"""

from __future__ import annotations

import argparse
import json
import subprocess
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
from ablation import nerfkit_command  # noqa: E402
from common import LEGO, ROOT, environment, write_result  # noqa: E402


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--preset", default="cpu-fast")
    ap.add_argument("--budget", type=float, default=120.0, help="seconds per fit")
    ap.add_argument("--prepass", type=int, default=32768, help="slots of the density pre-pass")
    ap.add_argument("--batch-rays", type=int, default=2048, help="rays per step with early termination")
    ap.add_argument("--views", type=int, default=25, help="test views evaluated")
    ap.add_argument("--data", type=Path, default=LEGO)
    ap.add_argument("--runs", type=Path, default=ROOT / "runs")
    ap.add_argument("--name", default=None)
    args = ap.parse_args()
    if not (args.data / "transforms_train.json").exists():
        print(f"lego data not found at {args.data}: skipping", file=sys.stderr)
        return 0
    env = environment()
    import jax

    base = [*nerfkit_command(), "fit", args.preset, "--data", str(args.data), "--downscale", "4",
            "--time-budget", str(args.budget)]
    variants = {"off": [], "on": ["--train.early-stop-prepass", str(args.prepass),
                                  "--train.batch-rays", str(args.batch_rays)]}
    figures, commands = {"preset": args.preset, "budget": args.budget}, {}
    for name, flags in variants.items():
        out = args.runs / f"train-es-{name}"
        fit_cmd = [*base, "--out", str(out), *flags]
        eval_cmd = [*nerfkit_command(), "evaluate", str(out), "--max-views", str(args.views)]
        for cmd in (fit_cmd, eval_cmd):
            print("==", " ".join(cmd), flush=True)
            subprocess.run(cmd, check=True)
        summary = json.loads((out / "summary.json").read_text())
        metrics = json.loads((out / "eval_test" / "metrics.json").read_text())
        lines = [json.loads(x) for x in (out / "metrics.jsonl").read_text().splitlines()]
        steps = [x for x in lines if "samples" in x]
        late = steps[len(steps) // 2:]  # the second half of the fit, once the grid has settled
        figures[name] = {"flags": flags, "steps": summary["steps"], "rays_per_s": summary["rays_per_s"],
                         "rays_per_step_late": sum(x["rays"] for x in late) / len(late),
                         "samples_per_step_late": sum(x["samples"] for x in late) / len(late),
                         "psnr": metrics["psnr"], "ssim": metrics["ssim"], "test_views": metrics["views"]}
        commands[name] = {"fit": " ".join(fit_cmd), "evaluate": " ".join(eval_cmd)}
        print(f"{name}: {figures[name]}", flush=True)
    figures["psnr_gain"] = figures["on"]["psnr"] - figures["off"]["psnr"]
    figures["rays_per_s_ratio"] = figures["on"]["rays_per_s"] / figures["off"]["rays_per_s"]
    print(f"early termination in training: {figures['rays_per_s_ratio']:.2f}x the rays/s, "
          f"{figures['psnr_gain']:+.2f} dB on {args.views} test views")
    name = args.name or f"train_early_stop_{jax.devices()[0].platform}"
    print(f"-> {write_result(name, figures, env=env, extra={'commands': commands})}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
