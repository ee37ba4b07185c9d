"""mip-NeRF's conical-frustum Gaussians and integrated positional encoding against brute force."""

from __future__ import annotations

import jax.numpy as jnp
import numpy as np

from nerfkit import mip
from nerfkit.encodings import positional_encoding


def _sample_frustum(rng, t0, t1, radius, n):
    """Points uniform (by volume) in the cone segment t in [t0, t1], radius ``radius * t`` (axis = +z)."""
    # Volume density along t is proportional to t^2: invert the CDF of t^3.
    u = rng.uniform(size=n)
    t = (t0 ** 3 + u * (t1 ** 3 - t0 ** 3)) ** (1 / 3)
    rho = radius * t * np.sqrt(rng.uniform(size=n))
    phi = rng.uniform(0, 2 * np.pi, n)
    return np.stack([rho * np.cos(phi), rho * np.sin(phi), t], -1)


def test_frustum_gaussian_matches_monte_carlo():
    rng = np.random.default_rng(0)
    for t0, t1, r in [(2.0, 2.5, 0.01), (1.0, 3.0, 0.05), (0.5, 0.6, 0.2)]:
        pts = _sample_frustum(rng, t0, t1, r, 400_000)
        mean_t, var_t, var_r = (float(x) for x in mip.conical_frustum_gaussian(jnp.float32(t0), jnp.float32(t1), r))
        np.testing.assert_allclose(mean_t, pts[:, 2].mean(), rtol=2e-3)
        np.testing.assert_allclose(var_t, pts[:, 2].var(), rtol=3e-2)
        np.testing.assert_allclose(var_r, pts[:, 0].var(), rtol=3e-2)  # per perpendicular axis
        np.testing.assert_allclose(var_r, pts[:, 1].var(), rtol=3e-2)


def test_frustum_to_gaussian_rotates_the_covariance_with_the_direction():
    o = jnp.zeros((1, 3))
    for d in ([0.0, 0.0, 1.0], [1.0, 0.0, 0.0]):
        d = jnp.asarray([d])
        mean, cov = mip.frustum_to_gaussian(o, d, jnp.asarray([[1.0]]), jnp.asarray([[3.0]]), jnp.asarray([0.05]))
        mt, vt, vr = mip.conical_frustum_gaussian(1.0, 3.0, 0.05)
        axis = int(np.argmax(np.asarray(d[0])))
        np.testing.assert_allclose(mean[0, 0], np.asarray(d[0]) * float(mt), rtol=1e-6)
        expect = np.full(3, float(vr))
        expect[axis] = float(vt)
        np.testing.assert_allclose(cov[0, 0], expect, rtol=1e-5)


def test_ipe_is_the_expected_encoding():
    rng = np.random.default_rng(1)
    mean = np.asarray([[0.3, -0.7, 1.1]], np.float32)
    var = np.asarray([[0.001, 0.01, 0.05]], np.float32)
    x = mean + np.sqrt(var) * rng.normal(size=(500_000, 3)).astype(np.float32)
    mc = np.asarray(positional_encoding(jnp.asarray(x), 4)).mean(0)
    ipe = np.asarray(mip.integrated_pos_enc(jnp.asarray(mean), jnp.asarray(var), 4))[0]
    np.testing.assert_allclose(ipe, mc, atol=5e-3)
    # High octaves of a wide Gaussian are damped towards 0; zero variance is exactly the PE.
    assert np.all(np.abs(ipe[-6:]) < np.abs(np.asarray(positional_encoding(jnp.asarray(mean), 4))[0, -6:]) + 1e-6)
    np.testing.assert_allclose(mip.integrated_pos_enc(jnp.asarray(mean), jnp.zeros_like(jnp.asarray(var)), 4),
                               positional_encoding(jnp.asarray(mean), 4), atol=1e-6)


def test_mip_model_fits_and_renders_at_other_scales(tmp_path, tiny_blender_dir):
    """--model.mip end to end: the fit learns, and rendering at 1/2 scale widens the cones (different image
    than rendering the same rays as if they were full-scale pixels)."""
    import dataclasses
    import json

    from nerfkit import renderer, runs
    from nerfkit.fit import fit

    from .conftest import tiny_fit_config

    cfg = tiny_fit_config(tmp_path / "run", tiny_blender_dir, steps=30, lr_init=5e-3, lr_final=5e-3, log_every=1)
    cfg = dataclasses.replace(cfg, model=dataclasses.replace(cfg.model, mip=True))
    fit(cfg)
    losses = [json.loads(x)["loss"] for x in (tmp_path / "run" / "metrics.jsonl").read_text().splitlines()]
    assert np.all(np.isfinite(losses)) and np.mean(losses[-5:]) < 0.8 * np.mean(losses[:5])
    run = runs.load_run(tmp_path / "run")
    fn = renderer.make_render_fn(run.graphdef, run.sampler, np.ones(3, np.float32))
    cams = run.meta.cameras["test"].scaled(0.5)
    rays = __import__("nerfkit.cameras", fromlist=["image_rays"]).image_rays(cams, 0, np)
    state = (run.params, run.sampler_state)
    wide = renderer.render_rays_chunked(fn, *state, rays.origins, rays.directions, 64,
                                        radii=np.full(rays.origins.shape[:-1], 2 / np.sqrt(12) / cams.fx[0]))
    thin = renderer.render_rays_chunked(fn, *state, rays.origins, rays.directions, 64,
                                        radii=np.zeros(rays.origins.shape[:-1]))
    assert np.all(np.isfinite(wide["rgb"])) and np.abs(wide["rgb"] - thin["rgb"]).max() > 1e-4


def test_multiscale_train_data_pyramid():
    """--train.multiscale 3: the 1, 1/2 and 1/4 images (8-bit); tests/test_train_data.py checks their rays and
    that every level is drawn equally often."""
    from nerfkit.data.demo import make_demo_scene
    from nerfkit.data.images import area_downscale
    from nerfkit.train_step import TrainData
    from nerfkit.types import pixels_to_rgba

    scene = make_demo_scene(width=16, height=16, n_train=3, n_val=0, n_test=0)
    one, three = TrainData.from_scene(scene), TrainData.from_scene(scene, 3)
    assert [lv.shape for lv in three.levels] == [(3, 16, 16, 4), (3, 8, 8, 4), (3, 4, 4, 4)]
    np.testing.assert_array_equal(np.asarray(three.levels[0]), np.asarray(one.levels[0]))
    # Level 2 holds the 4x4 area-averaged pixels (rounded to 8 bits); tests/test_train_data.py checks the rays.
    quarter = area_downscale(scene.splits["train"].rgba, 4)
    np.testing.assert_allclose(pixels_to_rgba(np.asarray(three.levels[2])), quarter, atol=1 / 255)
