"""Seconds per training step of a preset with flag-style overrides, on random rays (no data needed).

    python benchmarks/step_time.py real-capture --steps 10 --set model.num_fine=24 model.proposal_samples=48,

Prints one JSON line: preset, overrides, batch, s/step (median of the timed steps after compilation).
"""

from __future__ import annotations

import argparse
import json
import time

import jax
import jax.numpy as jnp
import numpy as np

from configs import PRESETS, apply_overrides
from nerfkit import samplers
from nerfkit.model import build_model
from nerfkit.train_step import TrainData, make_optimizer, make_train_step
from nerfkit.types import Bounds


def override(cfg, key: str, value: str):
    """``cfg`` with the field at dotted ``key`` set from the string ``value`` (typed like the current value)."""
    cur = cfg
    for part in key.split("."):
        cur = getattr(cur, part)
    if isinstance(cur, tuple):
        val = tuple(int(v) for v in value.split(",") if v)
    else:
        val = value == "true" if isinstance(cur, bool) else type(cur)(value)
    return apply_overrides(cfg, {key: val})


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("preset")
    ap.add_argument("--steps", type=int, default=8)
    ap.add_argument("--set", nargs="*", default=[])
    args = ap.parse_args()
    cfg = PRESETS[args.preset][1]
    for kv in args.set:
        k, v = kv.split("=")
        cfg = override(cfg, k, v)
    n_img, n = 100, 200_000
    rng = np.random.default_rng(0)
    d = rng.normal(size=(n, 3)).astype(np.float32)
    d /= np.linalg.norm(d, axis=1, keepdims=True)
    o = (rng.normal(size=(n, 3)) * 0.3).astype(np.float32)
    data = TrainData(jnp.asarray(o), jnp.asarray(d), jnp.asarray(rng.uniform(size=(n, 4)).astype(np.float32)),
                     jnp.full((n,), 1e-3), jnp.asarray(rng.integers(0, n_img, n).astype(np.int32)))
    aabb = np.array([[-1.0] * 3, [1.0] * 3])
    graphdef, params = build_model(cfg.model, 0, aabb, num_images=n_img)
    sampler = samplers.build(cfg.model, Bounds.of(0.05, 6.0, aabb), cfg.train)
    tx = make_optimizer(cfg.train)
    opt = tx.init(params)
    step = make_train_step(graphdef, tx, sampler, batch_rays=cfg.train.batch_rays, background=cfg.data.background,
                           seed=0)
    state = sampler.init_state()
    times = []
    for k in range(args.steps + 2):
        t0 = time.perf_counter()
        params, opt, m = step(params, opt, k, 1e-3, data, state)
        jax.block_until_ready(m["loss"])
        times.append(time.perf_counter() - t0)
    print(json.dumps({"preset": args.preset, "set": args.set, "batch_rays": cfg.train.batch_rays,
                      "s_per_step": float(np.median(times[2:])), "compile_s": times[0]}))


if __name__ == "__main__":
    main()
