"""What the occupancy grid buys at render time: the same fitted model rendered with and without it.

    python benchmarks/grid_speedup.py RUN_DIR                 # a fit with the occupancy sampler
    python benchmarks/grid_speedup.py RUN_DIR --views 10 --repeats 5

Three ways to render the same fitted model:

- "with the grid" is how `nerfkit render` / `evaluate` render the run: the fitted grid, ``max_samples``
  samples per ray compacted into occupied cells, marched in rounds with early ray termination (a ray stops
  once its transmittance is below ``early_stop_eps``; its field evaluations go to the rays still marching);
- "grid, no early termination": the same samples, all of them composited, packed into one pass (the
  renderer before early termination: ``make_render_fn(..., marching=False)``);
- "without the grid" marches the same rays at the same step through every cell (grid all occupied, one
  field evaluation per marching step, so nothing is skipped and nothing is subsampled).

Each renders the first ``--views`` test views at the run's resolution; the script reports the median time
per view of each (after a warm-up render, synchronised by reading the pixels back), the ratios, field
evaluations per ray with early termination, and PSNR of each against the ground truth (8-bit, as
`nerfkit evaluate` computes it). Writes benchmarks/results/grid_speedup_<device>.json.
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
    ap.add_argument("--samples-per-round", type=int, default=2,
                    help="field evaluations per ray and round of the marching renderer (the budget is chunk x this)")
    ap.add_argument("--sweep", type=int, nargs="*", default=[],
                    help="also time the marching renderer at each of these --samples-per-round values")
    ap.add_argument("--name", default=None)
    args = ap.parse_args()
    env = environment()
    import jax
    import jax.numpy as jnp

    from nerfkit import metrics, renderer, runs
    from nerfkit.model import build_model
    from nerfkit.types import OccupancyGrid, background_rgb

    run = runs.load_run(args.run_dir)
    cfg, graphdef, params, step, grid = run.cfg, run.graphdef, run.params, run.step, run.sampler_state
    if cfg.model.sampler != "occupancy":
        print(f"{args.run_dir} was not fitted with the occupancy sampler", file=sys.stderr)
        return 2
    scene = runs.load_scene(cfg.data, splits=("train", "test"))
    test = scene.splits["test"]
    bg_name = "white" if cfg.data.background == "random" else cfg.data.background
    bg = background_rgb(bg_name)
    gts = test.composite(bg)
    chunk = cfg.train.render_chunk
    sampler = run.sampler

    # With: exactly what `nerfkit render` does. Without: every marching step evaluated, grid all occupied.
    with_fn = renderer.make_render_fn(graphdef, sampler, bg, slots_per_ray=args.samples_per_round)
    no_ert_fn = renderer.make_render_fn(graphdef, dataclasses.replace(sampler, mode="packed"), bg)
    dense_model = dataclasses.replace(cfg.model, max_samples=cfg.model.march_steps)
    dense_graphdef, _ = build_model(dense_model, 0, run.meta.aabb)
    dense = dataclasses.replace(sampler, cfg=dense_model, mode="one_pass")
    without_fn = renderer.make_render_fn(dense_graphdef, dense, bg)
    with_state = (params, grid)
    without_state = (params, OccupancyGrid(density=grid.density, occupied=jnp.ones_like(grid.occupied)))

    def timed(fn, state, i):
        renderer.render_view(fn, *state, test.cameras, i, chunk)  # warm-up (compiles on the first view)
        times, out = [], None
        for _ in range(args.repeats):
            t0 = time.perf_counter()
            out = renderer.render_view(fn, *state, test.cameras, i, chunk)  # returns NumPy: synchronised
            times.append(time.perf_counter() - t0)
        return float(np.median(times)), out

    rows = []
    n = min(args.views, len(test))
    for i in range(n):
        t_with, out_with = timed(with_fn, with_state, i)
        t_no_ert, out_no_ert = timed(no_ert_fn, with_state, i)
        t_without, out_without = timed(without_fn, without_state, i)
        psnr = lambda out: metrics.image_metrics(out["rgb"], gts[i])["psnr"]  # noqa: E731
        samples = out_with["samples"]
        hit = out_with["opacity"] > 0.5
        row = {"view": i, "seconds_with_grid": t_with, "seconds_grid_no_early_termination": t_no_ert,
               "seconds_without_grid": t_without, "speedup": t_without / t_with,
               "early_termination_speedup": t_no_ert / t_with,
               "psnr_with_grid": psnr(out_with), "psnr_grid_no_early_termination": psnr(out_no_ert),
               "psnr_without_grid": psnr(out_without),
               "samples_per_ray": float(samples.mean()),
               "samples_per_hit_ray": float(samples[hit].mean()) if hit.any() else 0.0}
        rows.append(row)
        print(f"view {i}: with grid {t_with:.3f}s {row['psnr_with_grid']:.2f} dB ({row['samples_per_ray']:.1f} "
              f"samples/ray) | grid, no early termination {t_no_ert:.3f}s {row['psnr_grid_no_early_termination']:.2f}"
              f" dB | without {t_without:.3f}s {row['psnr_without_grid']:.2f} dB | {row['speedup']:.1f}x, "
              f"{row['early_termination_speedup']:.2f}x from early termination", flush=True)
    sweep = {}
    for k in args.sweep:  # the budget per round: smaller wastes fewer evaluations past termination, larger
        fn = renderer.make_render_fn(graphdef, sampler, bg, slots_per_ray=k)  # needs fewer rounds
        sweep[k] = float(np.mean([timed(fn, with_state, i)[0] for i in range(n)]))
        print(f"samples per round {k}: {sweep[k]:.3f} s per view", flush=True)
    mean = lambda k: float(np.mean([r[k] for r in rows]))  # noqa: E731
    figures = {
        "run": str(args.run_dir), "step": step, "resolution": [test.cameras.width, test.cameras.height],
        "views": n, "grid_occupancy": float(np.mean(np.asarray(grid.occupied))),
        "march_steps": cfg.model.march_steps, "max_samples": cfg.model.max_samples,
        "early_stop_eps": cfg.model.early_stop_eps, "samples_per_round": args.samples_per_round,
        "seconds_with_grid": mean("seconds_with_grid"), "seconds_without_grid": mean("seconds_without_grid"),
        "seconds_grid_no_early_termination": mean("seconds_grid_no_early_termination"),
        "speedup": mean("seconds_without_grid") / mean("seconds_with_grid"),
        "early_termination_speedup": mean("seconds_grid_no_early_termination") / mean("seconds_with_grid"),
        "psnr_with_grid": mean("psnr_with_grid"), "psnr_without_grid": mean("psnr_without_grid"),
        "psnr_grid_no_early_termination": mean("psnr_grid_no_early_termination"),
        "samples_per_ray": mean("samples_per_ray"), "samples_per_hit_ray": mean("samples_per_hit_ray"),
        "seconds_by_samples_per_round": sweep, "per_view": rows,
    }
    print(f"mean over {n} views: {figures['speedup']:.1f}x faster with the grid "
          f"({figures['early_termination_speedup']:.2f}x of it from early termination); PSNR "
          f"{figures['psnr_with_grid']:.2f} (no early termination {figures['psnr_grid_no_early_termination']:.2f})"
          f" vs {figures['psnr_without_grid']:.2f} dB without the grid")
    name = args.name or f"grid_speedup_{jax.devices()[0].platform}"
    print(f"-> {write_result(name, figures, env=env)}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
