"""Occupancy-grid sampling: brute-force references for marching and packing, and packed == per-ray rendering."""

from __future__ import annotations

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from nerfkit import integrator, occupancy

AABB = np.array([[-1.0, -1.0, -1.0], [1.0, 1.0, 1.0]], np.float32)


def _rays(n, seed=0):
    rng = np.random.default_rng(seed)
    o = rng.normal(size=(n, 3)).astype(np.float32)
    o = 3.0 * o / np.linalg.norm(o, axis=-1, keepdims=True)
    target = rng.uniform(-0.5, 0.5, size=(n, 3)).astype(np.float32)
    d = target - o
    return o, (d / np.linalg.norm(d, axis=-1, keepdims=True)).astype(np.float32)


def _bounds(o, d):
    from nerfkit.sampling import intersect_aabb

    t0, t1, _ = intersect_aabb(jnp.asarray(o), jnp.asarray(d), jnp.asarray(AABB), 0.0, 10.0)
    return np.asarray(t0), np.asarray(t1)


def _brute_force(o, d, t0, t1, occ, dt, m, k):
    """Per ray, in plain Python: the candidates in occupied cells, every s-th kept (s = ceil(count / K))."""
    res = occ.shape[0]
    out = []
    for r in range(o.shape[0]):
        cands = []
        for i in range(m):
            t = t0[r] + (i + 0.5) * dt
            if t >= t1[r]:
                continue
            p = o[r] + t * d[r]
            u = (p - AABB[0]) / (AABB[1] - AABB[0])
            if np.all((u >= 0) & (u < 1)):
                c = np.clip(np.floor(u * res).astype(int), 0, res - 1)
                if occ[c[0], c[1], c[2]]:
                    cands.append(t)
        s = max(1, -(-len(cands) // k))
        out.append((np.array(cands[::s][:k], np.float32), s))
    return out


@pytest.mark.parametrize("k", [4, 64])
def test_march_matches_brute_force(k):
    o, d = _rays(24)
    t0, t1 = _bounds(o, d)
    rng = np.random.default_rng(1)
    occ = rng.uniform(size=(8, 8, 8)) < 0.3
    dt, m = occupancy.step_size(AABB, 64), 64
    t, delta, mask = occupancy.march(jax.random.key(0), jnp.asarray(o), jnp.asarray(d), jnp.asarray(t0),
                                     jnp.asarray(t1), jnp.asarray(occ), jnp.asarray(AABB), dt=dt, march_steps=m,
                                     max_samples=k, randomized=False)
    ref = _brute_force(o, d, t0, t1, occ, dt, m, k)
    for r, (ts, s) in enumerate(ref):
        n = len(ts)
        assert int(mask[r].sum()) == n
        np.testing.assert_allclose(np.asarray(t[r, :n]), ts, atol=1e-5)
        np.testing.assert_allclose(np.asarray(delta[r, :n]), s * dt, rtol=1e-6)
        assert np.all(np.asarray(delta[r, n:]) == 0)
    # With K=4 some rays cross more occupied candidates than slots: the stride kicks in.
    if k == 4:
        assert any(s > 1 for _, s in ref)


def test_packed_layout_holds_the_same_samples():
    o, d = _rays(16, seed=3)
    t0, t1 = _bounds(o, d)
    occ = np.random.default_rng(2).uniform(size=(8, 8, 8)) < 0.4
    kw = dict(dt=occupancy.step_size(AABB, 64), march_steps=64, max_samples=16, randomized=False)
    args = (jax.random.key(0), jnp.asarray(o), jnp.asarray(d), jnp.asarray(t0), jnp.asarray(t1), jnp.asarray(occ),
            jnp.asarray(AABB))
    t, delta, mask = occupancy.march(*args, **kw)
    p = occupancy.march_packed(*args, budget=16 * 16, **kw)
    assert bool(jnp.all(p.ray_ok))
    ray = np.asarray(p.ray)
    for r in range(16):
        np.testing.assert_allclose(np.asarray(p.t)[ray == r], np.asarray(t[r])[np.asarray(mask[r])])
    assert int(p.n_samples) == int(mask.sum())
    # A budget too small for everyone: rays that do not fit are flagged, those that do are intact.
    small = occupancy.march_packed(*args, budget=20, **kw)
    ok = np.asarray(small.ray_ok)
    assert not ok.all()
    for r in np.flatnonzero(ok):
        np.testing.assert_allclose(np.asarray(small.t)[np.asarray(small.ray) == r],
                                   np.asarray(t[r])[np.asarray(mask[r])])


def test_packed_compositing_equals_per_ray():
    rng = np.random.default_rng(4)
    b, k = 6, 5
    sigma = rng.uniform(0, 5, size=(b, k)).astype(np.float32)
    rgb = rng.uniform(size=(b, k, 3)).astype(np.float32)
    t = np.sort(rng.uniform(2, 6, size=(b, k)), axis=-1).astype(np.float32)
    delta = rng.uniform(0.01, 0.3, size=(b, k)).astype(np.float32)
    n = rng.integers(0, k + 1, size=b)  # samples per ray, some rays empty
    delta[np.arange(k)[None, :] >= n[:, None]] = 0.0
    bg = np.array([1.0, 0.5, 0.0], np.float32)
    ref = integrator.composite(jnp.asarray(sigma), jnp.asarray(rgb), jnp.asarray(t), jnp.asarray(delta), bg, 6.0)
    sel = np.arange(k)[None, :] < n[:, None]
    budget = 40
    pad = budget - sel.sum()
    packed = integrator.composite(
        jnp.asarray(np.concatenate([sigma[sel], np.zeros(pad, np.float32)])),
        jnp.asarray(np.concatenate([rgb[sel], np.zeros((pad, 3), np.float32)])),
        jnp.asarray(np.concatenate([t[sel], np.zeros(pad, np.float32)])),
        jnp.asarray(np.concatenate([delta[sel], np.zeros(pad, np.float32)])), bg, 6.0,
        ray=jnp.asarray(np.concatenate([np.nonzero(sel)[0], np.full(pad, b)]).astype(np.int32)), num_rays=b)
    # Brute force: front-to-back alpha compositing, one ray and one sample at a time.
    want = {"rgb": np.zeros((b, 3)), "opacity": np.zeros(b), "depth": np.full(b, 6.0)}
    for r in range(b):
        trans, acc, wt = 1.0, 0.0, 0.0
        for i in range(n[r]):
            alpha = 1.0 - np.exp(-float(sigma[r, i]) * float(delta[r, i]))
            want["rgb"][r] += trans * alpha * rgb[r, i]
            acc, wt, trans = acc + trans * alpha, wt + trans * alpha * t[r, i], trans * (1.0 - alpha)
        want["rgb"][r] += (1.0 - acc) * bg
        want["opacity"][r] = acc
        if acc > 1e-6:
            want["depth"][r] = wt / acc
    for key in ("rgb", "opacity", "depth"):
        np.testing.assert_allclose(np.asarray(getattr(packed, key)), np.asarray(getattr(ref, key)), atol=1e-5)
        np.testing.assert_allclose(np.asarray(getattr(packed, key)), want[key], atol=1e-5)
    assert np.all(np.asarray(packed.opacity)[n == 0] == 0)


def test_grid_update_ema_and_threshold():
    old = jnp.array([0.0, 10.0, 100.0, 0.0]).reshape(1, 1, 4)
    new = jnp.array([0.0, 0.0, 0.0, 50.0]).reshape(1, 1, 4)
    dens, occ = occupancy.update(old, new, decay=0.5, dt=0.01, threshold=0.01)
    # max(0.5 * old, new) = [0, 5, 50, 50]; the threshold is min(mean = 26.25, -ln(0.99) / 0.01 = 1.005).
    np.testing.assert_allclose(np.asarray(dens).ravel(), [0.0, 5.0, 50.0, 50.0])
    assert np.asarray(occ).ravel().tolist() == [False, True, True, True]


def test_lookup_outside_box_is_empty():
    occ = jnp.ones((4, 4, 4), bool)
    pts = jnp.array([[0.0, 0.0, 0.0], [1.5, 0.0, 0.0], [-1.0, -1.0, -1.0], [0.999, 0.999, 0.999]])
    assert np.asarray(occupancy.lookup(occ, pts, jnp.asarray(AABB))).tolist() == [True, False, True, True]


def test_packed_rendering_with_fallback_equals_per_ray():
    """The renderer's packed path (tiny budget, so many rays overflow and are redone) == per-ray rendering."""
    import dataclasses

    from nerfkit import renderer, samplers
    from nerfkit.config import FieldConfig, ModelConfig
    from nerfkit.model import build_model
    from nerfkit.types import Bounds, OccupancyGrid

    field = FieldConfig(encoding="hash", depth=1, width=16, skips=(), view_width=16, dir_freqs=2,
                        hash_levels=4, hash_log2_size=10, hash_min_res=4, hash_max_res=32, density_activation="exp")
    cfg = ModelConfig(coarse=field, sampler="occupancy", grid_resolution=8, march_steps=64, max_samples=16)
    graphdef, params = build_model(cfg, 0, AABB)
    # Make the field non-trivial: random table entries give random densities and colours.
    params = jax.tree.map(lambda p: p + 0.5 * jax.random.normal(jax.random.key(1), p.shape), params)
    occupied = jnp.asarray(np.random.default_rng(0).uniform(size=(8, 8, 8)) < 0.5)
    state = OccupancyGrid(density=jnp.zeros(occupied.shape), occupied=occupied)
    o, d = _rays(100, seed=5)
    sampler = dataclasses.replace(samplers.build(cfg, Bounds.of(0.1, 10.0, AABB)), mode="packed")
    fn = renderer.make_render_fn(graphdef, sampler, (1.0, 1.0, 1.0), slots_per_ray=2)
    assert fn.fallback is not None
    first = fn(params, state, o[:32], d[:32])
    assert not bool(np.all(first["ray_ok"]))  # the budget really overflows: the fallback is exercised
    per_ray = renderer.make_render_fn(graphdef, sampler.fallback, (1.0, 1.0, 1.0))  # K slots per ray
    assert per_ray.fallback is None
    packed = renderer.render_rays_chunked(fn, params, state, o, d, chunk=32)
    ref = renderer.render_rays_chunked(per_ray, params, state, o, d, chunk=32)
    for k in ("rgb", "depth", "opacity"):
        np.testing.assert_allclose(packed[k], ref[k], atol=2e-5)
    assert 0.05 < float(np.mean(packed["opacity"])) < 0.999  # the comparison is not between empty images
