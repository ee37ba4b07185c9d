"""Render time against quality of a fitted proposal-sampler run, for render-time sample counts.

    python benchmarks/render_samples.py RUN_DIR [--views 0 4 8 12 16 20] [--counts 48,24 32,16 24,12]

Each ``P,F`` renders the chosen held-out views with P proposal samples and F radiance field samples per ray
(``--model.render-proposal-samples`` / ``--model.render-num-fine``), the fitted parameters unchanged, and
scores them as ``nerfkit evaluate`` does (8-bit, white background for random-background runs). Writes
``benchmarks/results/render_samples_<name>.json`` with seconds per view (after one warm-up view) and the
mean PSNR / SSIM of each setting.
"""

from __future__ import annotations

import argparse
import dataclasses
import sys
import time
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parent))
from common import environment, write_result  # noqa: E402
from nerfkit import metrics, renderer, runs  # noqa: E402
from nerfkit.evaluation import _load_split  # noqa: E402
from nerfkit.samplers.proposal import ProposalSampler  # noqa: E402
from nerfkit.types import background_rgb  # noqa: E402


def measure(run: runs.Run, views, gts, index: list[int], counts: tuple[int, int], chunk: int) -> dict:
    cfg = dataclasses.replace(run.cfg.model, render_proposal_samples=(counts[0],), render_num_fine=counts[1])
    fn = renderer.make_render_fn(run.graphdef, ProposalSampler(cfg, run.sampler.bounds), background_rgb("white"))
    renderer.render_view(fn, run.params, run.sampler_state, views.cameras, index[0], chunk)  # compile
    rows, t0 = [], time.perf_counter()
    for i in index:
        pred = renderer.render_view(fn, run.params, run.sampler_state, views.cameras, i, chunk)
        rows.append(metrics.image_metrics(pred["rgb"], gts[i]))
    seconds = (time.perf_counter() - t0) / len(index)
    return {"proposal_samples": counts[0], "num_fine": counts[1], "seconds_per_view": round(seconds, 3),
            "psnr": float(np.mean([r["psnr"] for r in rows])), "ssim": float(np.mean([r["ssim"] for r in rows]))}


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("run_dir", type=Path)
    ap.add_argument("--views", type=int, nargs="+", default=[0, 4, 8, 12, 16, 20])
    ap.add_argument("--counts", nargs="+", default=["48,24", "32,16", "32,12", "24,12", "16,8"])
    ap.add_argument("--name", default="bird")
    args = ap.parse_args()
    env = environment()
    run = runs.load_run(args.run_dir)
    if run.cfg.model.sampler != "proposal":
        raise SystemExit(f"{args.run_dir}: needs a proposal-sampler run, this one uses {run.cfg.model.sampler}")
    views = _load_split(run, "test", None)
    gts = views.composite(background_rgb("white"))
    rows = []
    for c in args.counts:
        p, f = (int(v) for v in c.split(","))
        rows.append(measure(run, views, gts, args.views, (p, f), run.cfg.train.render_chunk))
        print(rows[-1], flush=True)
    extra = {"run": str(args.run_dir), "run_step": run.step, "views": args.views,
             "resolution": [views.cameras.width, views.cameras.height]}
    print(write_result(f"render_samples_{args.name}", rows, extra=extra, env=env))


if __name__ == "__main__":
    main()
