"""The hash grid's corner sum: nerfkit's ``per_corner`` (:func:`nerfkit.encodings.hash_grid_encoding`, a gather and
a weighted add per corner) against ``one_gather`` (all 8 corners gathered at once, summed by a batched dot), timed
in one process, the two alternating (which goes first alternates too), so a shared CPU's noise falls on both.
``one_gather`` is faster alone and not inside a train step or a render, so nerfkit keeps ``per_corner``.

    python benchmarks/hash_encoding.py                          # encoding alone, train steps of three presets
    python benchmarks/hash_encoding.py --render-run runs/demo   # and frames of a fitted run's orbit
    python benchmarks/hash_encoding.py --rounds 8 --name hash_encoding_cpu

Measures: the encoding alone (forward, and the gradient of a small head on it with respect to the table) at each
preset's hash-grid sizes; a training step of ``demo``, ``hash-fast`` and ``real-capture`` on random images (as
benchmarks/step_time.py); with ``--render-run``, 64x64 frames of that run's orbit. Each figure: the median over
rounds of per_corner / one_gather (> 1: one_gather is faster). Runs with the compile cache off. Writes
benchmarks/results/<name>.json.
"""

from __future__ import annotations

import argparse
import functools
import os
import statistics
import sys
import time
from pathlib import Path

import jax
import jax.numpy as jnp
import numpy as np

# No kept programs: their key does not see which corner sum a field was traced with.
os.environ["NERFKIT_COMPILE_CACHE"] = "off"
sys.path.insert(0, str(Path(__file__).resolve().parent))
sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
from common import environment, write_result  # noqa: E402

from nerfkit import encodings, fields  # noqa: E402

MODES = ("per_corner", "one_gather")


def one_gather(x, table, resolutions):
    """:func:`nerfkit.encodings.hash_grid_encoding` with one gather of all corners and a batched dot."""
    levels, table_size, feats = table.shape
    rows, w = encodings.hash_grid_indices(x, resolutions, table_size)
    corners = table.reshape(levels * table_size, feats)[rows]  # [..., L, 8, F]
    f = jnp.einsum("...lc,...lcf->...lf", w, corners, precision=jax.lax.Precision.HIGHEST)
    return f.reshape(*x.shape[:-1], levels * feats)


ENCODINGS = {"per_corner": encodings.hash_grid_encoding, "one_gather": one_gather}


def use(mode: str) -> None:
    """Make every field traced from now on sum its corners with ``mode``."""
    fields.hash_grid_encoding = ENCODINGS[mode]


def timed(fn, repeats: int) -> float:
    t0 = time.perf_counter()
    for _ in range(repeats):
        jax.block_until_ready(fn())
    return (time.perf_counter() - t0) / repeats


def alternate(calls: dict[str, callable], rounds: int, repeats: int) -> dict:
    """{mode: seconds per call, each round} with the modes' order alternating; and the median ratio."""
    for fn in calls.values():
        jax.block_until_ready(fn())  # compile
    times = {m: [] for m in calls}
    for r in range(rounds):
        for m in (MODES if r % 2 == 0 else MODES[::-1]):
            times[m].append(timed(calls[m], repeats))
    ratio = statistics.median(a / b for a, b in zip(times["per_corner"], times["one_gather"]))
    return {"seconds": {m: statistics.median(v) for m, v in times.items()}, "per_corner_over_one_gather": ratio,
            "rounds": times}


def encoding_calls(cfg, n: int) -> dict:
    res = encodings.hash_grid_resolutions(cfg.hash_levels, cfg.hash_min_res, cfg.hash_max_res)
    table = 1e-2 * jax.random.normal(jax.random.key(0), (cfg.hash_levels, 2**cfg.hash_log2_size, cfg.hash_features))
    x = jnp.clip(0.5 + 0.15 * jax.random.normal(jax.random.key(1), (n, 3)), 0.0, 1.0)  # clustered, as samples are
    head = jax.random.normal(jax.random.key(2), (cfg.hash_levels * cfg.hash_features, 64))
    calls = {}
    for m in MODES:
        enc = functools.partial(ENCODINGS[m], resolutions=res)
        fwd = jax.jit(lambda x, t, enc=enc: enc(x, t))
        grad = jax.jit(jax.grad(lambda t, x, enc=enc: jnp.sum(jnp.tanh(enc(x, t) @ head))))
        calls[m] = (functools.partial(fwd, x, table), functools.partial(grad, table, x))
    return {"forward": {m: c[0] for m, c in calls.items()}, "gradient": {m: c[1] for m, c in calls.items()}}


def step_calls(preset: str) -> dict:
    """A training step of ``preset`` on random images, per mode (each compiled with its own corner sum)."""
    from step_time import random_setup  # noqa: E402

    from nerfkit.train_step import make_train_step

    calls = {}
    for m in MODES:
        cfg, data, graphdef, params, sampler, tx = random_setup(preset)
        step = make_train_step(graphdef, tx, sampler, batch_rays=cfg.train.batch_rays,
                               background=cfg.data.background, seed=0)
        state = {"params": params, "opt": tx.init(params), "k": 0}
        grid = sampler.init_state()

        def call(step=step, state=state, grid=grid, m=m):
            use(m)  # the mode the step is traced with, on its first call
            state["params"], state["opt"], m_ = step(state["params"], state["opt"], state["k"], 1e-3, data, grid)
            state["k"] += 1
            return m_["loss"]

        calls[m] = call
    return calls


def render_calls(run_dir: Path, frames: int) -> dict:
    from flax import nnx

    from nerfkit import cameras as cam
    from nerfkit import runs
    from nerfkit.types import Rays, background_rgb
    from nerfkit.video import _path

    run = runs.load_run(run_dir)
    cams, _, _ = _path(run.meta, "auto", frames)
    bg = jnp.asarray(background_rgb(run.meta.background), jnp.float32)
    rays = [cam.image_rays(cams, i, np) for i in range(frames)]
    rays = [(jnp.asarray(r.origins.reshape(-1, 3), jnp.float32), jnp.asarray(r.directions.reshape(-1, 3), jnp.float32))
            for r in rays]
    calls = {}
    for m in MODES:
        @jax.jit
        def frame(params, state, o, d):
            rays_ = Rays(origins=o, directions=d, viewdirs=d, radii=jnp.zeros(o.shape[0]), appearance=None)
            return run.sampler.render(nnx.merge(run.graphdef, params), rays_, state, bg).rgb

        def frames_(frame=frame, m=m):
            use(m)  # the mode the frame is traced with, on its first call
            return [frame(run.params, run.sampler_state, o, d) for o, d in rays]

        calls[m] = frames_
    return calls


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--rounds", type=int, default=6)
    ap.add_argument("--presets", nargs="*", default=["demo", "hash-fast", "real-capture"])
    ap.add_argument("--render-run", type=Path, default=None)
    ap.add_argument("--frames", type=int, default=10)
    ap.add_argument("--name", default="hash_encoding_cpu")
    args = ap.parse_args()
    env = environment()
    from configs import PRESETS

    res = {"backend": jax.default_backend(), "encoding": {}, "train_step": {}}
    for preset in args.presets:
        cfg = PRESETS[preset][1]
        n = cfg.train.sample_budget
        for kind, calls in encoding_calls(cfg.model.coarse, n).items():
            res["encoding"][f"{preset} {kind} ({n} points)"] = alternate(calls, args.rounds, 5)
        res["train_step"][preset] = alternate(step_calls(preset), args.rounds, 5 if n > 8192 else 20)
        print(preset, {k: round(v["per_corner_over_one_gather"], 3) for k, v in res["encoding"].items()
                       if k.startswith(preset)}, "step", round(res["train_step"][preset]["per_corner_over_one_gather"], 3),
              flush=True)
    if args.render_run:
        res["render"] = alternate(render_calls(args.render_run, args.frames), args.rounds, 1)
        print("render", round(res["render"]["per_corner_over_one_gather"], 3), flush=True)
    print(f"-> {write_result(args.name, {**res, 'rounds': args.rounds}, env=env)}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
