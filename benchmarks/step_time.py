"""Seconds per training step of a preset with flag-style overrides, on random images (no data needed).

    python benchmarks/step_time.py real-capture --steps 10 --set model.num_fine=24 model.proposal_samples=48,

Prints one JSON line: preset, overrides, batch, s/step (median of the timed steps after compilation).
"""

from __future__ import annotations

import argparse
import json
import time

import jax
import numpy as np

from configs import PRESETS, apply_overrides
from nerfkit import samplers
from nerfkit.model import build_model
from nerfkit.train_step import TrainData, make_optimizer, make_train_step
from nerfkit.cameras import look_at
from nerfkit.types import Bounds, Cameras, Scene, SplitData


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


def random_setup(preset: str, sets: list[str] = ()):
    """(config, TrainData, graphdef, params, sampler, optimiser) of ``preset`` (with ``sets``, "key=value") on
    100 random 50x40 images seen by cameras at random places."""
    cfg = PRESETS[preset][1]
    for kv in sets:
        k, v = kv.split("=")
        cfg = override(cfg, k, v)
    n_img, w, h = 100, 50, 40  # 200k pixels of random colour, seen by cameras at random places
    rng = np.random.default_rng(0)
    c2w = np.stack([look_at(e, rng.normal(size=3) * 0.3) for e in rng.normal(size=(n_img, 3)) * 0.3 + [0, 0, 2]])
    f = np.full(n_img, 1000.0, np.float32)  # pixels 1e-3 apart at unit distance
    cams = Cameras(c2w, f, f, np.full(n_img, w / 2, np.float32), np.full(n_img, h / 2, np.float32), w, h)
    split = SplitData(cams, rng.integers(0, 256, (n_img, h, w, 4), dtype=np.uint8), ("",) * n_img)
    data = TrainData.from_scene(Scene({"train": split}, 0.05, 6.0, np.zeros((2, 3), np.float32), "random"))
    aabb = np.array([[-1.0] * 3, [1.0] * 3])
    graphdef, params = build_model(cfg.model, 0, aabb, num_images=n_img)
    sampler = samplers.build(cfg.model, Bounds.of(0.05, 6.0, aabb), cfg.train)
    return cfg, data, graphdef, params, sampler, make_optimizer(cfg.train)


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("preset")
    ap.add_argument("--steps", type=int, default=8)
    ap.add_argument("--set", nargs="*", default=[])
    args = ap.parse_args()
    cfg, data, graphdef, params, sampler, tx = random_setup(args.preset, args.set)
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
