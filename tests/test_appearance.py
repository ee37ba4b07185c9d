"""Per-image appearance embeddings (NeRF-W): photos with different exposures are explained per image."""

from __future__ import annotations

import dataclasses
from pathlib import Path

import jax
import jax.numpy as jnp
import numpy as np
import pytest
from flax import nnx

from nerfkit import cameras as cam
from nerfkit import renderer, runs
from nerfkit.config import DataConfig, FieldConfig, FitConfig, ModelConfig, TrainConfig
from nerfkit.fit import fit
from nerfkit.types import Rays

GAINS = np.linspace(0.4, 1.0, 24)[np.random.default_rng(0).permutation(24)].astype(np.float32)
"""The colour gain of each training image (every one different, from 0.4 to 1.0)."""
TEST_GAIN = 0.4  # the test views are as dark as the darkest training image: far from the mean code


@pytest.fixture(scope="module")
def exposure_scene(tmp_path_factory) -> tuple[Path, object]:
    """The demo scene at 24x24 (so half a view is wide enough for SSIM's 11-pixel window), each training image
    under its own colour gain (``GAINS``), the test views under ``TEST_GAIN``."""
    from nerfkit.data.demo import make_demo_scene, write_blender

    scene = make_demo_scene(width=24, height=24, n_train=len(GAINS), n_val=1, n_test=2)
    train, test = scene.splits["train"], scene.splits["test"]
    rgba, test_rgba = train.rgba.copy(), test.rgba.copy()
    rgba[..., :3] *= GAINS[:, None, None, None]  # premultiplied: scales the colour, not the coverage
    test_rgba[..., :3] *= TEST_GAIN
    scene = dataclasses.replace(scene, splits={**scene.splits, "train": train.from_rgba(train.cameras, rgba, train.names),
                                               "test": test.from_rgba(test.cameras, test_rgba, test.names)})
    root = tmp_path_factory.mktemp("exposure") / "scene"
    write_blender(scene, root)
    return root, scene


@pytest.fixture(scope="module")
def exposure_run(tmp_path_factory, exposure_scene) -> Path:
    """A hash-grid field with the occupancy sampler (what trains fastest at toy size: ~25 dB on the training
    views after 200 steps) and 4-dimensional appearance codes."""
    root, _ = exposure_scene
    out = tmp_path_factory.mktemp("exposure_run") / "run"
    field = FieldConfig(encoding="hash", depth=1, width=32, skips=(), view_width=32, dir_freqs=2,
                        density_activation="exp", hash_levels=6, hash_log2_size=14, hash_min_res=4, hash_max_res=64)
    model = ModelConfig(coarse=field, sampler="occupancy", grid_resolution=16, march_steps=96, max_samples=24,
                        grid_update_every=8, appearance_dim=4)
    train = TrainConfig(steps=200, batch_rays=512, sample_budget=4096, lr_init=1e-2, lr_final=1e-3, adam_eps=1e-15,
                        log_every=50, val_every=0, val_views=0, checkpoint_every=100_000, render_chunk=24 * 24)
    fit(FitConfig(out=out, data=DataConfig(data=root), preset="test", model=model, train=train))
    return out


def test_appearance_codes_learn_the_exposure_of_each_photo(exposure_run, exposure_scene):
    _, scene = exposure_scene
    run = runs.load_run(exposure_run)
    meta = run.meta
    model = nnx.merge(run.graphdef, run.params)
    assert model.appearance.embedding[...].shape == (len(GAINS), 4)
    darkest, brightest = int(np.argmin(GAINS)), int(np.argmax(GAINS))
    rays = cam.image_rays(meta.cameras["train"], darkest, np)
    o, d = jnp.asarray(rays.origins.reshape(-1, 3)), jnp.asarray(rays.directions.reshape(-1, 3))

    @jax.jit
    def _render(params, rays):
        return run.sampler.render(nnx.merge(run.graphdef, params), rays, run.sampler_state, jnp.ones(3)).rgb

    def render(rays):
        return np.asarray(_render(run.params, rays))

    ids = jnp.ones(o.shape[0], jnp.int32)
    dark, bright = render(Rays(o, d, d, image_ids=darkest * ids)), render(Rays(o, d, d, image_ids=brightest * ids))
    obj = scene.splits["train"].rgba[darkest].reshape(-1, 4)[:, 3] > 0.9
    ratio = dark[obj].mean() / bright[obj].mean()
    # The same rays rendered with the darkest photo's code come out darker (truth 0.4).
    assert ratio < 0.9, ratio
    # Novel views use the mean code: between the two.
    fn = renderer.make_render_fn(run.graphdef, run.sampler, np.ones(3, np.float32))
    mean = renderer.render_rays_chunked(fn, run.params, run.sampler_state, rays.origins, rays.directions, 64)["rgb"]
    m = mean.reshape(-1, 3)[obj].mean()
    assert dark[obj].mean() < m < bright[obj].mean()
    # A code given with the rays (Rays.appearance) is used as is: the darkest photo's code renders its colours,
    # through the model and through the chunked renderer.
    code = model.appearance.embedding[...][darkest]
    given = render(Rays(o, d, d, appearance=jnp.broadcast_to(code, (o.shape[0], 4))))
    np.testing.assert_allclose(given, dark, atol=1e-5)
    chunked = renderer.render_rays_chunked(fn, run.params, run.sampler_state, rays.origins, rays.directions, 64,
                                           appearance=np.asarray(code))["rgb"].reshape(-1, 3)
    # (jitted in chunks: float rounding may move samples a little; the brightest photo's code is far further away)
    np.testing.assert_allclose(chunked, dark, atol=5e-3)
    assert np.abs(chunked[obj] - dark[obj]).mean() < 0.1 * np.abs(bright[obj] - dark[obj]).mean()


def test_nerfw_protocol_a_code_fitted_on_the_left_half_wins_on_the_right(exposure_run, tmp_path, monkeypatch):
    from nerfkit import appearance_eval
    from nerfkit.evaluation import evaluate, format_table

    compiled = []
    make = appearance_eval.make_code_fit
    monkeypatch.setattr(appearance_eval, "make_code_fit", lambda *a, **k: compiled.append(make(*a, **k)) or compiled[-1])
    res = evaluate(exposure_run, split="test", out=tmp_path / "eval", appearance_steps=100, appearance_lr=3e-2,
                   save_images=1)
    app = res["appearance"]
    assert app["steps"] == 100 and len(compiled) == 1
    assert compiled[0]._cache_size() == 1  # one compiled fit served both views
    for r in res["per_view"]:
        half = r["right_half"]
        # The test views' colour gain is unlike the mean code's: a code fitted to the left half scores the
        # right half better.
        assert half["fitted_code"]["psnr"] > half["mean_code"]["psnr"] + 1.0, half
        assert half["fitted_code"]["ssim"] is not None and half["fit_seconds"] > 0
        assert r["seconds"] >= r["render_seconds"] + half["fit_seconds"]
    assert app["fitted_code"]["psnr"] == pytest.approx(np.mean([r["right_half"]["fitted_code"]["psnr"]
                                                                 for r in res["per_view"]]))
    # The mean code's right-half score is that of the full-image rendering's right half.
    import imageio.v2 as iio
    from nerfkit import metrics

    name = Path(res["per_view"][0]["name"]).stem
    pred = iio.imread(tmp_path / "eval" / "images" / f"{name}_pred.png")[..., :3] / 255.0
    gt = iio.imread(tmp_path / "eval" / "images" / f"{name}_gt.png")[..., :3] / 255.0
    assert metrics.image_metrics(pred[:, 12:], gt[:, 12:])["psnr"] == pytest.approx(
        res["per_view"][0]["right_half"]["mean_code"]["psnr"], abs=1e-6)
    assert (tmp_path / "eval" / "images" / f"{name}_fitted.png").is_file()
    table = format_table(res)
    assert "right: mean" in table and "fitted" in table and f"{app['fitted_code']['psnr']:.2f}" in table


@pytest.mark.slow  # ~12 s; kept out of the default run's 10 minutes
def test_without_appearance_codes_the_protocol_is_not_applied(tmp_path, tiny_blender_dir):
    from nerfkit.evaluation import evaluate, format_table

    from .conftest import tiny_fit_config

    fit(tiny_fit_config(tmp_path / "run", tiny_blender_dir, steps=2))
    res = evaluate(tmp_path / "run", split="test", out=tmp_path / "eval", save_images=0)
    assert "appearance" not in res and all("right_half" not in r for r in res["per_view"])
    assert "right" not in format_table(res)


def test_appearance_render_index_is_checked():
    from nerfkit.errors import InputError
    from nerfkit.model import NeRFModel

    with pytest.raises(InputError, match="appearance-render"):
        NeRFModel(ModelConfig(appearance_dim=4, appearance_render=9), rngs=nnx.Rngs(0), num_images=3)
