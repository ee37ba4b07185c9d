"""Wall-clock of `nerfkit evaluate` and `nerfkit render` of a fitted run, as a user runs them.

    python benchmarks/eval_speed.py RUN_DIR [--frames 120] [--name bird]

Runs ``nerfkit evaluate RUN_DIR`` (every held-out view, at the run's training size) and ``nerfkit render RUN_DIR
--frames N`` (the default path), each timed from the command's start to its exit, and writes
``benchmarks/results/eval_speed_<name>.json`` with both wall-clock times, the seconds per view / frame and the
evaluation's figures (PSNR, SSIM, the NeRF-W right halves). Run it on a quiet machine.
"""

from __future__ import annotations

import argparse
import json
import subprocess
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
from common import environment, write_result  # noqa: E402


def timed(cmd: list[str]) -> float:
    t0 = time.time()
    subprocess.run(cmd, check=True)
    return time.time() - t0


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("run_dir", type=Path)
    ap.add_argument("--frames", type=int, default=120)
    ap.add_argument("--name", default="bird")
    args = ap.parse_args()
    env = environment()
    run = args.run_dir
    eval_s = timed(["nerfkit", "evaluate", str(run), "--out", str(run / "eval_speed")])
    m = json.loads((run / "eval_speed" / "metrics.json").read_text())
    render_s = timed(["nerfkit", "render", str(run), "--frames", str(args.frames), "--out", str(run / "render_speed")])
    cfg = json.loads((run / "config.json").read_text())
    figures = {
        "evaluate": {"wall_seconds": round(eval_s, 1), "views": m["views"], "resolution": m["resolution"],
                     "seconds_per_view": round(m["seconds_per_view"], 3), "psnr": m["psnr"], "ssim": m["ssim"],
                     "appearance": m.get("appearance")},
        "render": {"wall_seconds": round(render_s, 1), "frames": args.frames,
                   "seconds_per_frame": round(render_s / args.frames, 3)},
        "render_samples": {k: cfg["model"].get(k) for k in ("proposal_samples", "num_fine", "render_proposal_samples",
                                                             "render_num_fine")},
        "render_chunk": cfg["train"]["render_chunk"],
    }
    print(json.dumps(figures, indent=2))
    print(write_result(f"eval_speed_{args.name}", figures, extra={"run": str(run), "run_step": m["step"]}, env=env))


if __name__ == "__main__":
    main()
