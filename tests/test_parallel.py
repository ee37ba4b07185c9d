"""Data parallelism: a fit split across 2 devices follows the 1-device fit's loss curve.

XLA's host platform pretends to have 2 devices with ``--xla_force_host_platform_device_count=2``; the flag
must be set before JAX starts, so the fits run in a subprocess (this file's ``__main__``) that fits the same
config with ``--train.devices 1`` and ``2`` and prints both loss curves as JSON.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

pytestmark = pytest.mark.filterwarnings("ignore:os.fork\\(\\) was called:RuntimeWarning")


def _curves(data_dir: Path, out: Path, sampler: str) -> dict:
    env = dict(os.environ, XLA_FLAGS="--xla_force_host_platform_device_count=2", JAX_PLATFORMS="cpu")
    proc = subprocess.run([sys.executable, __file__, str(data_dir), str(out), sampler], env=env,
                          capture_output=True, text=True, timeout=600)
    assert proc.returncode == 0, proc.stderr[-3000:]
    return json.loads(proc.stdout.strip().splitlines()[-1])


# The occupancy sampler's variant takes ~40 s: slow (the hierarchical one runs by default).
@pytest.mark.parametrize("sampler", ["hierarchical", pytest.param("occupancy", marks=pytest.mark.slow)])
def test_two_devices_follow_one_device_loss_curve(tmp_path, tiny_blender_dir, sampler):
    res = _curves(tiny_blender_dir, tmp_path, sampler)
    assert res["device_count"] == 2
    one, two = np.asarray(res["1"]), np.asarray(res["2"])
    assert one.shape == two.shape == (res["steps"],)
    # The fit learns (the curves are not flat), and the 2-device run follows it up to float rounding: the
    # gradient all-reduce sums in a different order, and the hierarchical sampler's inverse CDF amplifies
    # those last-bit differences step by step (measured up to ~5e-4 relative by step 12). A missing or wrong
    # all-reduce (each device stepping on its own half batch) differs by percents within a few steps.
    assert one[-3:].mean() < one[:3].mean() * 0.9
    np.testing.assert_allclose(two, one, rtol=2e-3, atol=1e-6)
    assert np.max(np.abs(two - one)) > 0  # two different programs ran (not the 1-device one twice)
    # The 2-device program really was partitioned: the batch's rays were split across both devices.
    assert res["batch_shards"] == 2
    # Rendering across both devices gives the 1-device pixels (of a non-blank image).
    assert res["render_diff"] < 1e-4 and res["render_std"] > 1e-3


def _main(data_dir: str, out: str, sampler: str) -> None:
    import jax

    from nerfkit import parallel
    from nerfkit.config import DataConfig, FieldConfig, FitConfig, ModelConfig, TrainConfig
    from nerfkit.fit import fit

    field = FieldConfig(depth=2, width=32, view_width=16)
    if sampler == "occupancy":
        model = ModelConfig(coarse=field, sampler="occupancy", grid_resolution=16, grid_update_every=4,
                            march_steps=64, max_samples=16)
    else:
        model = ModelConfig(coarse=field, fine=field, num_coarse=8, num_fine=8, sampler="hierarchical")
    steps = 16
    curves = {}
    for n in (1, 2):
        cfg = FitConfig(out=Path(out) / f"dev{n}", data=DataConfig(data=Path(data_dir)), model=model, preset="test",
                        train=TrainConfig(steps=steps, batch_rays=64, sample_budget=1024, log_every=1, val_every=0,
                                          val_views=1, render_chunk=256, checkpoint_every=1000, lr_init=5e-3,
                                          lr_final=5e-3, devices=n))
        fit(cfg)
        lines = [json.loads(x) for x in (Path(cfg.out) / "metrics.jsonl").read_text().splitlines()]
        curves[str(n)] = [x["loss"] for x in lines if "loss" in x]

    # How a batch-sized array inside the step is laid out on the 2-device mesh.
    mesh = parallel.make_mesh(2)
    f = jax.jit(lambda x: parallel.shard_batch(x * 2.0, mesh))
    shards = len(f(jax.numpy.zeros((64, 3))).addressable_shards)
    # Rendering split over both devices (shard_map for the occupancy sampler's marching rounds) gives the
    # pixels of rendering on one.
    import numpy as np

    from nerfkit import cameras, renderer, runs

    run = runs.load_run(Path(out) / "dev2")
    rays = cameras.image_rays(run.meta.cameras["train"], 0, np)
    o, d = rays.origins.reshape(-1, 3)[:256], rays.directions.reshape(-1, 3)[:256]
    imgs = []
    for m in (None, mesh):
        fn = renderer.make_render_fn(run.graphdef, run.sampler, (1.0, 1.0, 1.0), mesh=m)
        state = parallel.replicate((run.params, run.sampler_state), m)
        imgs.append(renderer.render_rays_chunked(fn, *state, o, d, chunk=128)["rgb"])
    render_diff = float(np.abs(imgs[0] - imgs[1]).max())
    print(json.dumps({"device_count": jax.device_count(), "steps": steps, "batch_shards": shards,
                      "render_diff": render_diff, "render_std": float(imgs[0].std()), **curves}))


if __name__ == "__main__":
    _main(*sys.argv[1:4])
