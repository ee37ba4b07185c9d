"""Rendering in rounds with early ray termination: slot packing against brute force, and the rendered pixels
against one-pass occupancy rendering (exact without termination, within the transmittance threshold with it)."""

from __future__ import annotations

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from nerfkit import occupancy

AABB = np.array([[-1.0, -1.0, -1.0], [1.0, 1.0, 1.0]], np.float32)


@pytest.mark.parametrize("budget", [1, 5, 17, 64])
def test_assign_slots_matches_brute_force(budget):
    rng = np.random.default_rng(budget)
    take = rng.integers(0, 6, size=12).astype(np.int32)
    taken, ray, rank = jax.jit(occupancy.assign_slots, static_argnums=1)(jnp.asarray(take), budget)
    # Brute force: hand out slots in ray order, each ray as many as it asks for while slots remain.
    want_ray, want_rank, want_taken, free = [], [], [], budget
    for r, k in enumerate(take):
        got = max(0, min(int(k), free))
        want_taken.append(got)
        want_ray += [r] * got
        want_rank += list(range(got))
        free -= got
    want_ray += [len(take)] * free
    assert np.asarray(taken).tolist() == want_taken
    assert np.asarray(ray).tolist() == want_ray
    used = np.asarray(ray) < len(take)
    assert np.asarray(rank)[used].tolist() == want_rank


def _setup(density_bias: float, seed: int = 0):
    from nerfkit.config import FieldConfig, ModelConfig
    from nerfkit.model import build_model

    field = FieldConfig(encoding="hash", depth=1, width=16, skips=(), view_width=16, dir_freqs=2, hash_levels=4,
                        hash_log2_size=10, hash_min_res=4, hash_max_res=32, density_activation="exp",
                        density_bias=density_bias)
    cfg = ModelConfig(coarse=field, sampler="occupancy", grid_resolution=8, march_steps=64, max_samples=16)
    graphdef, params = build_model(cfg, 0, AABB)
    params = jax.tree.map(lambda p: p + 0.5 * jax.random.normal(jax.random.key(1), p.shape), params)
    occupied = jnp.asarray(np.random.default_rng(seed).uniform(size=(8, 8, 8)) < 0.6)
    rng = np.random.default_rng(seed + 5)
    o = rng.normal(size=(96, 3)).astype(np.float32)
    o = 3.0 * o / np.linalg.norm(o, axis=-1, keepdims=True)
    d = rng.uniform(-1.8, 1.8, size=(96, 3)).astype(np.float32) - o  # some rays miss the box
    d /= np.linalg.norm(d, axis=-1, keepdims=True)
    return cfg, graphdef, params, _grid(occupied), jnp.asarray(o), jnp.asarray(d)


def _grid(occupied):
    from nerfkit.types import OccupancyGrid

    return OccupancyGrid(density=jnp.zeros(occupied.shape), occupied=occupied)


def _sampler(cfg, **kw):
    import dataclasses

    from nerfkit import samplers
    from nerfkit.types import Bounds

    return dataclasses.replace(samplers.build(cfg, Bounds.of(0.1, 10.0, AABB)), **kw)


def _render(cfg, graphdef, params, grid, o, d, *, eps=None, budget=None):
    import dataclasses

    from flax import nnx

    from nerfkit.types import Rays

    model = nnx.merge(graphdef, params)
    rays = Rays(origins=o, directions=d, viewdirs=d)
    bg = jnp.array([1.0, 1.0, 1.0])
    if eps is None:  # one pass: every sample of every ray at once
        return _sampler(cfg, mode="one_pass").render(model, rays, grid, bg)
    return _sampler(dataclasses.replace(cfg, early_stop_eps=eps)).render(model, rays, grid, bg, slots=budget)


# budget 7 (many rounds) takes ~20 s: slow; the one-round budget runs by default.
@pytest.mark.parametrize("budget", [pytest.param(7, marks=pytest.mark.slow), 96 * 4])
def test_marching_without_termination_equals_one_pass(budget):
    """eps = 0: every sample is composited, in rounds (a budget of 7 slots needs many rounds and makes rays
    wait for slots), and the pixels are those of one-pass rendering."""
    cfg, graphdef, params, grid, o, d = _setup(density_bias=-3.0)
    ref = _render(cfg, graphdef, params, grid, o, d)
    out = _render(cfg, graphdef, params, grid, o, d, eps=0.0, budget=budget)
    for k in ("rgb", "depth", "opacity"):
        np.testing.assert_allclose(np.asarray(getattr(out, k)), np.asarray(getattr(ref, k)), atol=2e-5, rtol=1e-5)
    assert 0.05 < float(jnp.mean(ref.opacity)) < 0.95  # neither empty nor opaque
    from nerfkit.occupancy import march, step_size
    from nerfkit.samplers import ray_bounds
    from nerfkit.types import Bounds, Rays

    t0, t1 = ray_bounds(Rays(origins=o, directions=d, viewdirs=d), Bounds.of(0.1, 10.0, AABB), clip=True)
    _, _, mask = march(jax.random.key(0), o, d, t0, t1, grid.occupied, jnp.asarray(AABB),
                       dt=step_size(AABB, cfg.march_steps), march_steps=cfg.march_steps,
                       max_samples=cfg.max_samples, randomized=False)
    np.testing.assert_array_equal(np.asarray(out.samples), np.asarray(jnp.sum(mask, -1)))  # each sample once
    if budget == 7:
        assert int(out.rounds) >= int(jnp.sum(mask)) // 7


@pytest.mark.parametrize("eps", [1e-4, 1e-2])
def test_early_termination_error_is_bounded_by_eps(eps):
    """An opaque field: rays stop after a few samples, and each pixel differs from the full rendering by at
    most eps (the weight left behind the stopping point) times the largest colour difference (<= 1)."""
    cfg, graphdef, params, grid, o, d = _setup(density_bias=3.0)
    ref = _render(cfg, graphdef, params, grid, o, d)
    full = _render(cfg, graphdef, params, grid, o, d, eps=0.0, budget=96 * 4)
    out = _render(cfg, graphdef, params, grid, o, d, eps=eps, budget=96 * 4)
    err = np.abs(np.asarray(out.rgb) - np.asarray(ref.rgb)).max()
    assert err <= eps + 2e-5
    assert np.abs(np.asarray(out.opacity) - np.asarray(ref.opacity)).max() <= eps + 2e-5
    hit = np.asarray(ref.opacity) > 0.999
    assert hit.sum() > 20  # many rays are opaque ...
    saved = np.asarray(full.samples)[hit] - np.asarray(out.samples)[hit]
    assert np.all(saved >= 0) and saved.mean() > 2  # ... and stop early, which saves field evaluations
    # A ray never stops before its transmittance fell below eps.
    stopped = np.asarray(out.samples) < np.asarray(full.samples)
    assert np.all(np.asarray(out.opacity)[stopped] >= 1 - eps)


def test_render_fn_marches_and_renders_like_the_packed_path():
    """The renderer's default occupancy path (rounds + termination) against its packed path, through
    render_rays_chunked with a partial last chunk."""
    from nerfkit import renderer

    cfg, graphdef, params, grid, o, d = _setup(density_bias=0.5)
    bg = (1.0, 1.0, 1.0)
    marching = renderer.make_render_fn(graphdef, _sampler(cfg), bg)
    packed = renderer.make_render_fn(graphdef, _sampler(cfg, mode="packed"), bg)
    a = renderer.render_rays_chunked(marching, params, grid, np.asarray(o), np.asarray(d), chunk=40)
    b = renderer.render_rays_chunked(packed, params, grid, np.asarray(o), np.asarray(d), chunk=40)
    np.testing.assert_allclose(a["rgb"], b["rgb"], atol=cfg.early_stop_eps + 2e-5)
    assert a["samples"].shape == (96,)


def _packed_loss(cfg, graphdef, params, grid, o, d, target, **kw):
    from flax import nnx

    from nerfkit.types import Rays

    sampler = _sampler(cfg, **kw)

    def loss(params):
        model = nnx.merge(graphdef, params)
        out = sampler.render_train(model, Rays(origins=o, directions=d, viewdirs=d), jax.random.key(3), grid,
                                   jnp.array([1.0, 1.0, 1.0]))
        ok = out.ray_ok.astype(jnp.float32)
        return jnp.sum(ok[:, None] * (out.rgb - target) ** 2), out

    (value, out), grads = jax.jit(jax.value_and_grad(loss, has_aux=True))(params)
    return value, out, grads


def test_training_early_termination_keeps_loss_and_gradients():
    """Training with the density pre-pass: the samples behind each ray's surface are dropped (fewer field
    evaluations with gradients), and loss and gradients match training on every sample (the dropped samples
    carry < eps of each ray's weight)."""
    import dataclasses

    cfg, graphdef, params, grid, o, d = _setup(density_bias=3.0)
    cfg_eps = dataclasses.replace(cfg, early_stop_eps=1e-4)
    target = jnp.asarray(np.random.default_rng(0).uniform(size=(96, 3)), jnp.float32)
    full_loss, full, full_grads = _packed_loss(cfg_eps, graphdef, params, grid, o, d, target, sample_budget=2048)
    assert bool(jnp.all(full.ray_ok))
    cut_loss, cut, cut_grads = _packed_loss(cfg_eps, graphdef, params, grid, o, d, target, sample_budget=2048,
                                            prepass_budget=2048)
    assert bool(jnp.all(cut.ray_ok))
    assert int(cut.n_samples) < 0.8 * int(full.n_samples)  # really fewer samples
    np.testing.assert_allclose(float(cut_loss), float(full_loss), rtol=1e-3)
    np.testing.assert_allclose(np.asarray(cut.rgb), np.asarray(full.rgb), atol=1e-4 + 2e-5)
    # Gradients agree to 0.1% of the gradient's scale. (Not per leaf: with an exp density activation a dropped
    # sample's d loss / d density-bias is T * sigma * delta, small but not eps-small next to a density-bias
    # gradient that nearly cancels in a saturated field.)
    scale = max(float(np.abs(np.asarray(b)).max()) for b in jax.tree.leaves(full_grads))
    for a, b in zip(jax.tree.leaves(cut_grads), jax.tree.leaves(full_grads)):
        assert np.all(np.isfinite(np.asarray(a)))
        np.testing.assert_allclose(np.asarray(a), np.asarray(b), atol=1e-3 * scale)
    # A second budget too small for the kept samples: the rays that overflow are flagged, not half-rendered.
    _, small, _ = _packed_loss(cfg_eps, graphdef, params, grid, o, d, target, sample_budget=32, prepass_budget=2048)
    ok = np.asarray(small.ray_ok)
    assert 0 < ok.sum() < 96
    np.testing.assert_allclose(np.asarray(small.rgb)[ok], np.asarray(full.rgb)[ok], atol=1e-4 + 2e-5)
