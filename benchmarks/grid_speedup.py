"""What the occupancy grid buys at render time: the same fitted model rendered with and without it.

    python benchmarks/grid_speedup.py RUN_DIR                 # a fit with the occupancy sampler
    python benchmarks/grid_speedup.py RUN_DIR --views 10 --repeats 5

"With the grid" is how `nerfkit render` / `evaluate` render the run: the fitted grid, ``max_samples``
samples per ray compacted into occupied cells. "Without the grid" marches the same rays at the same step
through every cell (grid all occupied, one field evaluation per marching step, so nothing is skipped and
nothing is subsampled). Both render the first ``--views`` test views at the run's resolution; the script
reports the median time per view of each (after a warm-up render, synchronised by reading the pixels back),
their ratio, and PSNR of each against the ground truth (8-bit, as `nerfkit evaluate` computes it).
Writes benchmarks/results/grid_speedup_<device>.json.
"""

from __future__ import annotations

import argparse
import dataclasses
import sys
import time
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parent))
sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
from common import environment, write_result  # noqa: E402


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("run_dir", type=Path)
    ap.add_argument("--views", type=int, default=5, help="test views rendered (the first N)")
    ap.add_argument("--repeats", type=int, default=3, help="timed renders of each view (median)")
    ap.add_argument("--name", default=None)
    args = ap.parse_args()
    env = environment()
    import jax
    import jax.numpy as jnp

    from nerfkit import metrics, renderer, runs
    from nerfkit.trainer import BACKGROUNDS, build_model

    cfg, graphdef, params, meta, step, grid = runs.load_run(args.run_dir)
    if cfg.model.sampler != "occupancy":
        print(f"{args.run_dir} was not fitted with the occupancy sampler", file=sys.stderr)
        return 2
    scene = runs.load_scene(cfg.data, splits=("train", "test"))
    test = scene.splits["test"]
    bg_name = "white" if cfg.data.background == "random" else cfg.data.background
    bg = np.asarray(BACKGROUNDS[bg_name], np.float32)
    gts = test.composite(bg)
    chunk = cfg.train.render_chunk
    kw = dict(near=meta.near, far=meta.far, aabb=meta.aabb, background=bg)

    # With: exactly what `nerfkit render` does. Without: every marching step evaluated, grid all occupied.
    with_fn = renderer.make_render_fn(graphdef, cfg.model, **kw)
    dense_model = dataclasses.replace(cfg.model, max_samples=cfg.model.march_steps)
    dense_graphdef, _ = build_model(dense_model, 0, meta.aabb)
    without_fn = renderer.make_render_fn(dense_graphdef, dense_model, **kw).per_ray
    with_state = (params, grid["occupied"])
    without_state = (params, jnp.ones_like(grid["occupied"]))

    def timed(fn, state, i):
        renderer.render_view(fn, state, test.cameras, i, chunk)  # warm-up (compiles on the first view)
        times, out = [], None
        for _ in range(args.repeats):
            t0 = time.perf_counter()
            out = renderer.render_view(fn, state, test.cameras, i, chunk)  # returns NumPy: synchronised
            times.append(time.perf_counter() - t0)
        return float(np.median(times)), out["rgb"]

    rows = []
    n = min(args.views, len(test))
    for i in range(n):
        t_with, img_with = timed(with_fn, with_state, i)
        t_without, img_without = timed(without_fn, without_state, i)
        row = {"view": i, "seconds_with_grid": t_with, "seconds_without_grid": t_without,
               "speedup": t_without / t_with,
               "psnr_with_grid": metrics.image_metrics(img_with, gts[i])["psnr"],
               "psnr_without_grid": metrics.image_metrics(img_without, gts[i])["psnr"]}
        rows.append(row)
        print(f"view {i}: with grid {t_with:.3f}s {row['psnr_with_grid']:.2f} dB | without {t_without:.3f}s "
              f"{row['psnr_without_grid']:.2f} dB | {row['speedup']:.1f}x", flush=True)
    mean = lambda k: float(np.mean([r[k] for r in rows]))  # noqa: E731
    figures = {
        "run": str(args.run_dir), "step": step, "resolution": [test.cameras.width, test.cameras.height],
        "views": n, "grid_occupancy": float(np.mean(np.asarray(grid["occupied"]))),
        "march_steps": cfg.model.march_steps, "max_samples": cfg.model.max_samples,
        "seconds_with_grid": mean("seconds_with_grid"), "seconds_without_grid": mean("seconds_without_grid"),
        "speedup": mean("seconds_without_grid") / mean("seconds_with_grid"),
        "psnr_with_grid": mean("psnr_with_grid"), "psnr_without_grid": mean("psnr_without_grid"),
        "per_view": rows,
    }
    print(f"mean over {n} views: {figures['speedup']:.1f}x faster with the grid; PSNR "
          f"{figures['psnr_with_grid']:.2f} vs {figures['psnr_without_grid']:.2f} dB")
    name = args.name or f"grid_speedup_{jax.devices()[0].platform}"
    print(f"-> {write_result(name, figures, env=env)}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
