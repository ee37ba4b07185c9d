"""Training throughput, device utilisation and render time (../shared/docs/BENCHMARKS.md, "Throughput").

    python benchmarks/throughput.py                     # all presets, lego if present else the demo scene
    python benchmarks/throughput.py --presets paper cpu-fast --steps 20

For each preset: the median time of ``--steps`` jitted train steps after warm-up (synchronised with
``block_until_ready``) on real training rays -> rays/s and field samples/s; the field's achieved FLOP/s
(forward+backward counted as 3x the forward matmul FLOPs) against a matmul of the trunk's shape timed in
the same process; and the render time of one test view at 100x100, 400x400 and 800x800 (median of
``--render-repeats`` after a warm-up). The occupancy-grid presets are measured after ``--grid-warmup``
steps of fitting, so the grid has pruned as it would in a real fit. Writes
benchmarks/results/throughput_<device>.json.
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
from common import LEGO, environment, write_result  # noqa: E402


def _median_time(fn, repeats: int) -> float:
    times = []
    for _ in range(repeats):
        t0 = time.perf_counter()
        fn()
        times.append(time.perf_counter() - t0)
    return float(np.median(times))


def measure(preset: str, scene, steps: int, grid_warmup: int, render_sizes, render_repeats: int,
            max_render_hierarchical: int = 100000) -> dict:
    import jax
    import jax.numpy as jnp

    from configs import PRESETS
    from nerfkit import renderer, samplers
    from nerfkit.fields import field_flops
    from nerfkit.model import build_model
    from nerfkit.train_step import TrainData, learning_rate, make_optimizer, make_sampler_update, make_train_step
    from nerfkit.types import Bounds, Cameras

    cfg = PRESETS[preset][1]
    tcfg, mcfg = cfg.train, cfg.model
    graphdef, params = build_model(mcfg, 0, scene.aabb)
    tx = make_optimizer(tcfg)
    opt_state = tx.init(params)
    sampler = samplers.build(mcfg, Bounds.of(scene.near, scene.far, scene.aabb), tcfg)
    step_fn = make_train_step(graphdef, tx, sampler, batch_rays=tcfg.batch_rays, background="white", seed=0)
    data = TrainData.from_scene(scene)
    use_grid = mcfg.sampler == "occupancy"
    update = make_sampler_update(graphdef, sampler)
    state = {"p": params, "o": opt_state, "g": sampler.init_state(), "step": 0}

    def one_step():
        s = state["step"]
        if sampler.update_due(s):
            state["g"] = update(state["p"], state["g"], jax.random.key(s))
        lr = learning_rate(tcfg, s, 0.0)
        state["p"], state["o"], m = step_fn(state["p"], state["o"], s, lr, data, state["g"])
        state["step"] += 1
        return m

    jax.block_until_ready(one_step())  # compile
    for _ in range(grid_warmup if use_grid else 2):
        m = one_step()
    jax.block_until_ready(m)
    rays, samples = [], []

    def timed():
        m = jax.block_until_ready(one_step())
        rays.append(float(m["rays"]))
        samples.append(float(m["samples"]) if use_grid else None)

    step_s = _median_time(timed, steps)
    per_ray = mcfg.num_coarse + (mcfg.num_coarse + mcfg.num_fine if mcfg.num_fine else 0)
    n_samples = float(np.median(samples)) if use_grid else tcfg.batch_rays * per_ray
    n_rays = float(np.median(rays))
    if use_grid:
        fwd = field_flops(mcfg.coarse) * n_samples
    else:
        fwd = field_flops(mcfg.coarse) * tcfg.batch_rays * mcfg.num_coarse
        fwd += field_flops(mcfg.fine) * tcfg.batch_rays * (mcfg.num_coarse + mcfg.num_fine) if mcfg.num_fine else 0
    field_flops_s = 3.0 * fwd / step_s

    # A matmul of the trunk's shape, timed in the same process: what the device can do on this work.
    width = mcfg.coarse.width
    a = jnp.ones((int(n_samples), width), jnp.float32)
    b = jnp.ones((width, width), jnp.float32)
    mm = jax.jit(lambda a, b: a @ b)
    jax.block_until_ready(mm(a, b))
    mm_s = _median_time(lambda: jax.block_until_ready(mm(a, b)), 10)
    matmul_flops_s = 2.0 * n_samples * width * width / mm_s

    render = {}
    test = scene.splits["test"].cameras
    fn = renderer.make_render_fn(graphdef, sampler, (1.0, 1.0, 1.0))
    st = (state["p"], state["g"])
    for size in render_sizes:
        if mcfg.sampler == "hierarchical" and size > max_render_hierarchical:
            continue  # 256 samples per ray through two 8x256 MLPs: an 800x800 view takes about an hour on a CPU
        cams = dataclasses.replace(test.scaled(size / test.width), width=size, height=size)
        cams = Cameras(c2w=cams.c2w[:1], fx=cams.fx[:1], fy=cams.fy[:1], cx=cams.cx[:1], cy=cams.cy[:1], width=size, height=size)
        renderer.render_view(fn, *st, cams, 0, tcfg.render_chunk)  # warm-up / compile
        render[f"{size}x{size}"] = _median_time(lambda: renderer.render_view(fn, *st, cams, 0, tcfg.render_chunk),
                                                render_repeats)
    return {
        "batch_rays": tcfg.batch_rays, "step_seconds": step_s, "rays_per_step": n_rays,
        "rays_per_s": n_rays / step_s, "samples_per_step": n_samples, "samples_per_s": n_samples / step_s,
        "field_flops_per_s": field_flops_s, "matmul_flops_per_s": matmul_flops_s,
        "utilisation_vs_matmul": field_flops_s / matmul_flops_s, "render_seconds": render,
        "grid_occupancy": float(np.mean(np.asarray(state["g"].occupied))) if use_grid else None,
    }


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--presets", nargs="+", default=["paper", "paper-grid", "cpu-fast", "hash-fast"])
    ap.add_argument("--steps", type=int, default=20, help="timed train steps (median)")
    ap.add_argument("--grid-warmup", type=int, default=200, help="fit steps before timing occupancy presets")
    ap.add_argument("--downscale", type=int, default=4)
    ap.add_argument("--render-sizes", type=int, nargs="+", default=[100, 400, 800])
    ap.add_argument("--render-repeats", type=int, default=3)
    ap.add_argument("--max-render-hierarchical", type=int, default=100,
                    help="largest render size timed for hierarchical-sampler presets (paper)")
    ap.add_argument("--name", default=None)
    args = ap.parse_args()
    import jax

    from nerfkit.config import DataConfig
    from nerfkit.runs import load_scene

    env = environment()
    data = LEGO if (LEGO / "transforms_train.json").exists() else None
    scene = load_scene(DataConfig(data=data, downscale=args.downscale if data else 1), splits=("train", "test"))
    results = {}
    for preset in args.presets:
        print(f"measuring {preset} ...", flush=True)
        results[preset] = measure(preset, scene, args.steps, args.grid_warmup, args.render_sizes, args.render_repeats,
                                  args.max_render_hierarchical)
        r = results[preset]
        print(f"  {r['rays_per_s']:.0f} rays/s, {r['samples_per_s'] / 1e6:.2f} M samples/s, "
              f"utilisation {100 * r['utilisation_vs_matmul']:.0f}% of a matmul, render "
              + ", ".join(f"{k}: {v:.2f}s" for k, v in r["render_seconds"].items()), flush=True)
    name = args.name or f"throughput_{jax.devices()[0].platform}"
    path = write_result(name, results, extra={"scene": str(data or "demo"), "downscale": args.downscale}, env=env)
    print(f"-> {path}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
