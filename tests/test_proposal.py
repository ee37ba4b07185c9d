"""The proposal sampler and its losses: brute-force references for the histogram bound and the distortion
loss, the interlevel loss's gradient, the ray parametrisation, and a tiny fit that raises PSNR."""

from __future__ import annotations

import dataclasses

import jax
import jax.numpy as jnp
import numpy as np
import pytest
from flax import nnx

from nerfkit import evaluation, losses, renderer, samplers
from nerfkit.config import DataConfig, FieldConfig, FitConfig, ModelConfig, TrainConfig
from nerfkit.errors import InputError
from nerfkit.fit import fit
from nerfkit.model import build_model, contract
from nerfkit.types import Bounds, Rays


def _histogram(rng, n):
    s = np.sort(np.concatenate([[0.0, 1.0], rng.uniform(size=n - 1)]))
    w = rng.uniform(size=n)
    return s, w / w.sum() * rng.uniform(0.5, 1.0)


def test_outer_bound_matches_brute_force():
    rng = np.random.default_rng(0)
    for _ in range(20):
        s, w = _histogram(rng, 7)
        q = np.sort(np.concatenate([[0.0, 1.0], rng.uniform(size=4)]))
        got = np.asarray(losses.outer_bound(jnp.asarray(q), jnp.asarray(s), jnp.asarray(w)))
        # Brute force: the weight of every interval of s that overlaps the query interval.
        want = [sum(w[k] for k in range(len(w)) if s[k] < b and s[k + 1] > a) for a, b in zip(q[:-1], q[1:])]
        np.testing.assert_allclose(got, want, rtol=1e-5, atol=1e-6)


def test_distortion_loss_matches_the_double_sum():
    rng = np.random.default_rng(1)
    s, w = _histogram(rng, 9)
    m = 0.5 * (s[1:] + s[:-1])
    want = np.sum(w[:, None] * w[None, :] * np.abs(m[:, None] - m[None, :])) + np.sum(w ** 2 * np.diff(s)) / 3
    got = float(losses.distortion_loss(jnp.asarray(s), jnp.asarray(w)))
    np.testing.assert_allclose(got, want, rtol=1e-5)


def test_interlevel_loss_trains_only_the_proposal():
    rng = np.random.default_rng(2)
    s_f, w_f = (jnp.asarray(x, jnp.float32) for x in _histogram(rng, 8))
    s_p = jnp.linspace(0.0, 1.0, 5)
    w_p = jnp.full((4,), 0.01)  # far too little weight to bound the fine histogram
    g_f, g_p = jax.grad(lambda wf, wp: losses.interlevel_loss(s_f, wf, s_p, wp), argnums=(0, 1))(w_f, w_p)
    assert float(jnp.max(jnp.abs(g_f))) == 0.0  # the fine weights are a target, not trained
    assert float(jnp.max(g_p)) < 0.0  # raising the proposal's weights lowers the loss
    # A proposal that puts all of its weight where the fine one does satisfies the bound exactly.
    assert float(losses.interlevel_loss(s_f, w_f, s_f, w_f)) == 0.0


def test_linf_contraction_fills_the_cube():
    x = jnp.asarray(np.random.default_rng(3).normal(size=(1000, 3)) * 20.0, jnp.float32)
    y = np.asarray(contract(x, norm="inf"))
    assert np.all(np.abs(y) <= 2.0) and np.max(np.abs(y)) > 1.9
    inside = jnp.asarray([[0.5, -0.9, 0.99]])
    np.testing.assert_allclose(np.asarray(contract(inside, norm="inf")), np.asarray(inside), rtol=1e-6)
    # A point on the diagonal far away goes to a corner of the cube (the l2 ball would leave corners empty).
    np.testing.assert_allclose(np.asarray(contract(jnp.full((1, 3), 1e6), norm="inf")), 2.0, atol=1e-4)


def _sampler(**kw):
    cfg = ModelConfig(sampler="proposal", **kw)
    return samplers.build(cfg, Bounds(0.05, 3.0, ((-1.0,) * 3, (1.0,) * 3))), cfg


def test_ray_parametrisation_is_monotone_and_reaches_the_far_bound():
    s = jnp.linspace(0.0, 1.0, 101)
    sampler, _ = _sampler(contraction=True)
    t = np.asarray(sampler.to_t(s))
    assert np.all(np.diff(t) > 0) and t[0] == pytest.approx(0.05) and t[-1] == pytest.approx(1000.0, rel=1e-3)
    # Half of s covers up to distance 1 (the cameras' ball), the other half the rest of the world.
    assert float(sampler.to_t(jnp.float32(0.5))) == pytest.approx(1.0, abs=0.03)
    bounded, _ = _sampler()
    np.testing.assert_allclose(np.asarray(bounded.to_t(s)), 0.05 + 2.95 * np.asarray(s), rtol=1e-5)


def _tiny_model_cfg(**kw):
    field = FieldConfig(encoding="hash", depth=1, width=32, skips=(), view_width=32, dir_freqs=2,
                        density_activation="exp", hash_levels=6, hash_log2_size=14, hash_min_res=4, hash_max_res=64)
    prop = FieldConfig(encoding="hash", depth=1, width=16, skips=(), use_viewdirs=False, density_activation="exp",
                       hash_levels=4, hash_log2_size=12, hash_min_res=4, hash_max_res=32)
    return ModelConfig(coarse=field, proposal=prop, sampler="proposal", proposal_samples=(24, 16), num_fine=12,
                       distortion_loss=0.01, **kw)


def test_gradients_reach_every_field_and_are_finite_under_jit():
    cfg = _tiny_model_cfg(contraction=True, contraction_norm="inf", appearance_dim=4)
    graphdef, params = build_model(cfg, 0, ((-1.0,) * 3, (1.0,) * 3), num_images=3)
    sampler = samplers.build(cfg, Bounds(0.05, 3.0, ((-1.0,) * 3, (1.0,) * 3)))
    rng = np.random.default_rng(4)
    d = rng.normal(size=(32, 3)).astype(np.float32)
    d /= np.linalg.norm(d, axis=1, keepdims=True)
    rays = Rays(jnp.asarray(rng.normal(size=(32, 3)) * 0.3, jnp.float32), jnp.asarray(d), jnp.asarray(d),
                image_ids=jnp.asarray(rng.integers(0, 3, 32), jnp.int32))

    @jax.jit
    def loss(p):
        out = sampler.render_train(nnx.merge(graphdef, p), rays, jax.random.key(0), sampler.init_state(), jnp.ones(3))
        return jnp.mean((out.rgb - 0.5) ** 2) + sum(sampler.losses(out, None).values())

    grads = jax.grad(loss)(params)
    leaves = jax.tree.leaves(grads)
    assert all(bool(jnp.all(jnp.isfinite(g))) for g in leaves)
    for name in ("coarse", "proposal0", "appearance"):  # (proposal1 may already bound the fine weights at init)
        assert any(float(jnp.max(jnp.abs(g))) > 0 for g in jax.tree.leaves(grads[name])), name


def test_proposal_fit_improves_test_psnr(tmp_path, tiny_blender_dir):
    model = _tiny_model_cfg(clip_to_aabb=False)
    train = TrainConfig(steps=150, batch_rays=256, lr_init=1e-2, lr_final=1e-3, adam_eps=1e-15, log_every=50,
                        val_every=0, val_views=0, checkpoint_every=100_000, render_chunk=16 * 16)
    cfg = FitConfig(out=tmp_path / "trained", data=DataConfig(data=tiny_blender_dir), preset="test", model=model,
                    train=train)
    untrained = dataclasses.replace(cfg, out=tmp_path / "untrained",
                                    train=dataclasses.replace(train, steps=1, lr_init=1e-12, lr_final=1e-12))
    fit(untrained)
    before = evaluation.evaluate(tmp_path / "untrained", split="test", save_images=0)
    fit(cfg)
    after = evaluation.evaluate(tmp_path / "trained", split="test", save_images=0)
    assert after["psnr"] >= before["psnr"] + 6.0, (before["psnr"], after["psnr"])


def test_several_appearance_codes_render_like_one_at_a_time():
    """The chunked renderer given K codes [K, A] returns each code's colours ([..., K, 3]), equal to K
    renders with one code each (the geometry is computed once)."""
    cfg = _tiny_model_cfg(contraction=True, appearance_dim=4)
    graphdef, params = build_model(cfg, 0, ((-1.0,) * 3, (1.0,) * 3), num_images=3)
    sampler = samplers.build(cfg, Bounds(0.05, 3.0, ((-1.0,) * 3, (1.0,) * 3)))
    fn = renderer.make_render_fn(graphdef, sampler, np.ones(3, np.float32))
    rng = np.random.default_rng(5)
    d = rng.normal(size=(40, 3)).astype(np.float32)
    d /= np.linalg.norm(d, axis=1, keepdims=True)
    o = (rng.normal(size=(40, 3)) * 0.3).astype(np.float32)
    codes = rng.normal(size=(2, 4)).astype(np.float32)
    both = renderer.render_rays_chunked(fn, params, sampler.init_state(), o, d, 16, appearance=codes)
    assert both["rgb"].shape == (40, 2, 3)
    for k in range(2):
        one = renderer.render_rays_chunked(fn, params, sampler.init_state(), o, d, 16, appearance=codes[k])
        np.testing.assert_allclose(both["rgb"][:, k], one["rgb"], atol=1e-5)
        np.testing.assert_allclose(both["depth"], one["depth"], atol=1e-5)
    assert np.abs(both["rgb"][:, 0] - both["rgb"][:, 1]).max() > 1e-3  # the codes do change the colours


def test_render_time_sample_counts():
    sampler, _ = _sampler(contraction=True, proposal_samples=(48,), num_fine=24, render_proposal_samples=(32,),
                          render_num_fine=16)
    assert sampler.counts(training=True) == ((48,), 24) and sampler.counts(training=False) == ((32,), 16)
    cfg = _tiny_model_cfg(render_proposal_samples=(12, 8), render_num_fine=6)
    graphdef, params = build_model(cfg, 0, ((-1.0,) * 3, (1.0,) * 3))
    sampler = samplers.build(cfg, Bounds(0.05, 3.0, ((-1.0,) * 3, (1.0,) * 3)))
    model = nnx.merge(graphdef, params)
    d = jnp.asarray(np.eye(3, dtype=np.float32)[[0, 1, 2, 0]])
    rays = Rays(jnp.zeros((4, 3)), d, d)
    def passes(randomized):  # shapes only (jax.eval_shape: nothing is computed)
        return jax.eval_shape(lambda: sampler._passes(model, rays, jax.random.key(0), randomized=randomized))

    hist, s = passes(False)
    assert [h[1].shape[-1] for h in hist] == [12, 8] and s.shape[-1] == 7  # rendering: the render counts
    hist, s = passes(True)
    assert [h[1].shape[-1] for h in hist] == [24, 16] and s.shape[-1] == 13  # training: the training counts
    with pytest.raises(InputError, match="render-proposal-samples"):
        _sampler(proposal_samples=(48, 24), render_proposal_samples=(32,))
