"""Tests for nerfkit.integrator: quadrature volume rendering (NeRF eq. 3).

Analytic cases (a constant-density slab, an opaque slab, a hand-computed ray), consistency between the
density and alpha forms of the weights, and finiteness of values and gradients under ``jit`` at extreme
magnitudes (sigma up to 1e6, empty rays, an open last interval ending at 1e10).
"""

from __future__ import annotations

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from nerfkit import integrator

# Jitted once per input shape: cheaper than compiling every primitive op by op (and what the model does).
_volume_render = jax.jit(integrator.volume_render)
_weights_from_density = jax.jit(integrator.weights_from_density)
_weights_from_alpha = jax.jit(integrator.weights_from_alpha)


def _slab(sigma_value: float, a: float, b: float, n: int = 400, far: float = 4.0):
    """One ray over [0, far] cut into ``n`` equal intervals; density ``sigma_value`` on [a, b], 0 elsewhere.

    ``a`` and ``b`` fall on interval boundaries, so the quadrature is exact for this piecewise-constant field.
    """
    t = np.linspace(0.0, far, n + 1)
    tmid = 0.5 * (t[1:] + t[:-1])
    sigma = np.where((tmid > a) & (tmid < b), sigma_value, 0.0)
    return jnp.asarray(sigma, jnp.float32), jnp.asarray(t, jnp.float32)


@pytest.mark.parametrize("sigma_value", [0.05, 0.5, 1.0, 3.0, 20.0])
def test_constant_density_slab_opacity(sigma_value):
    # Beer-Lambert: a slab of thickness (b - a) = 1.5 at constant density is 1 - exp(-sigma * 1.5) opaque,
    # e.g. sigma = 1 -> 1 - exp(-1.5) = 0.77687.
    a, b = 1.0, 2.5
    sigma, t = _slab(sigma_value, a, b)
    rgb = jnp.full((sigma.shape[0], 3), 0.25)
    out = _volume_render(sigma, rgb, t, jnp.zeros(3))
    expected = 1.0 - np.exp(-sigma_value * (b - a))
    # rtol 1e-4: in float32, alpha = 1 - exp(-sigma delta) cancels for thin intervals (sigma delta = 5e-4 at
    # sigma = 0.05), which costs ~6e-5 relative on the total; -expm1 would be exact to ~1e-7.
    np.testing.assert_allclose(float(out.opacity), expected, rtol=1e-4, atol=1e-6)
    # Constant colour 0.25 on a black background: the pixel is 0.25 * opacity.
    np.testing.assert_allclose(np.asarray(out.rgb), 0.25 * expected, rtol=1e-4, atol=1e-6)
    # No weight outside the slab.
    tmid = 0.5 * (np.asarray(t)[1:] + np.asarray(t)[:-1])
    assert np.all(np.asarray(out.weights)[(tmid < a) | (tmid > b)] == 0.0)


def test_opaque_slab_depth_is_front_face():
    # sigma = 1e4 over intervals of 0.01: each interval is exp(-100) ~ 0 transmissive, so all the weight sits
    # in the first interval of the slab and the depth is its midpoint, a + 0.005.
    a, b, n, far = 1.3, 2.0, 400, 4.0
    sigma, t = _slab(1e4, a, b, n=n, far=far)
    out = _volume_render(sigma, jnp.ones((n, 3)), t, jnp.zeros(3))
    interval = far / n
    assert abs(float(out.depth) - a) <= interval
    np.testing.assert_allclose(float(out.opacity), 1.0, atol=1e-6)


def test_weights_sum_at_most_one_random():
    rng = np.random.default_rng(0)
    n_rays, s = 256, 24
    t = np.sort(rng.uniform(0.0, 10.0, (n_rays, s + 1)), axis=-1)
    # Densities over many orders of magnitude, with exact zeros.
    sigma = 10.0 ** rng.uniform(-3, 4, (n_rays, s)) * (rng.uniform(size=(n_rays, s)) > 0.3)
    w = np.asarray(_weights_from_density(jnp.asarray(sigma, jnp.float32), jnp.asarray(t, jnp.float32)))
    assert np.all(w >= 0.0)
    assert np.all(w.sum(-1) <= 1.0 + 1e-6)
    # ... and for random opacities.
    alpha = rng.uniform(size=(n_rays, s))
    wa = np.asarray(_weights_from_alpha(jnp.asarray(alpha, jnp.float32)))
    assert np.all(wa >= 0.0)
    assert np.all(wa.sum(-1) <= 1.0 + 1e-6)


def test_weights_from_density_equals_weights_from_alpha():
    rng = np.random.default_rng(1)
    n_rays, s = 128, 32
    t = np.sort(rng.uniform(2.0, 6.0, (n_rays, s + 1)), axis=-1).astype(np.float32)
    sigma = (rng.exponential(2.0, (n_rays, s)) * (rng.uniform(size=(n_rays, s)) > 0.2)).astype(np.float32)
    alpha = 1.0 - np.exp(-sigma * np.diff(t, axis=-1))
    w_density = _weights_from_density(jnp.asarray(sigma), jnp.asarray(t))
    w_alpha = _weights_from_alpha(jnp.asarray(alpha, jnp.float32))
    np.testing.assert_allclose(np.asarray(w_density), np.asarray(w_alpha), atol=2e-6)


def test_hand_computed_ray():
    # Five unit intervals on [0, 5] with alpha = [0, 0.3, 0.8, 0.8, 0.5] (sigma = -log(1 - alpha)).
    # transmittance: [1.0, 1.0, 0.7, 0.14, 0.028]
    # weights:       [0.0, 0.3, 0.56, 0.112, 0.014]          sum = 0.986
    # colours red, green, blue, white, black; white background seen through 1 - 0.986 = 0.014:
    # rgb = 0.3 * G + 0.56 * B + 0.112 * W + 0.014 * W = [0.126, 0.426, 0.686]
    # depth = (0.3 * 1.5 + 0.56 * 2.5 + 0.112 * 3.5 + 0.014 * 4.5) / 0.986 = 2.305 / 0.986 = 2.337728...
    alpha = np.array([0.0, 0.3, 0.8, 0.8, 0.5])
    sigma = jnp.asarray(-np.log1p(-alpha), jnp.float32)
    t = jnp.arange(6, dtype=jnp.float32)
    rgb = jnp.array([[1, 0, 0], [0, 1, 0], [0, 0, 1], [1, 1, 1], [0, 0, 0]], jnp.float32)
    out = _volume_render(sigma, rgb, t, jnp.ones(3))
    np.testing.assert_allclose(np.asarray(out.weights), [0.0, 0.3, 0.56, 0.112, 0.014], atol=1e-6)
    np.testing.assert_allclose(float(out.opacity), 0.986, atol=1e-6)
    np.testing.assert_allclose(np.asarray(out.rgb), [0.126, 0.426, 0.686], atol=1e-6)
    np.testing.assert_allclose(float(out.depth), 2.305 / 0.986, atol=1e-5)
    # The alpha form gives the same weights.
    np.testing.assert_allclose(np.asarray(_weights_from_alpha(jnp.asarray(alpha, jnp.float32))),
                               [0.0, 0.3, 0.56, 0.112, 0.014], atol=1e-6)


def _extreme_batch():
    """Rays with sigma in {0, tiny, moderate, 1e6}, empty rays, and an open last interval ending at 1e10."""
    s = 8
    t_inner = np.linspace(2.0, 6.0, s)  # 7 finite intervals, then [6, 1e10)
    t_row = np.concatenate([t_inner, [1e10]]).astype(np.float32)
    rows = [
        np.zeros(s),                                  # empty ray: depth = t_S = 1e10, opacity 0
        np.full(s, 1e6),                              # opaque from the first interval
        np.r_[np.zeros(s - 1), 1e6],                  # only the open last interval is dense
        np.r_[np.zeros(s - 1), 1e-3],                 # a tiny density over a 1e10 interval
        np.r_[0.0, 1e6, np.zeros(s - 2)],             # opaque in the middle
        np.r_[np.zeros(3), 1e-8, 1e-8, np.zeros(3)],  # almost empty (opacity below the depth guard)
        np.array([0.0, 0.5, 2.0, 1e3, 1e6, 0.0, 7.0, 1e6]),
        np.random.default_rng(2).exponential(5.0, s),
    ]
    sigma = np.stack(rows).astype(np.float32)
    t = np.broadcast_to(t_row, (len(rows), s + 1)).copy()
    rgb = np.random.default_rng(3).uniform(size=(len(rows), s, 3)).astype(np.float32)
    return jnp.asarray(sigma), jnp.asarray(rgb), jnp.asarray(t)


def test_finite_values_and_gradients_under_jit():
    sigma, rgb, t = _extreme_batch()
    bg = jnp.array([0.2, 0.5, 0.9], jnp.float32)

    @jax.jit
    def render(sigma, rgb):
        return integrator.volume_render(sigma, rgb, t, bg)

    out = render(sigma, rgb)
    for k in ("rgb", "depth", "opacity", "weights"):
        assert np.all(np.isfinite(np.asarray(getattr(out, k)))), k
    opacity = np.asarray(out.opacity)
    assert np.all((opacity >= 0.0) & (opacity <= 1.0 + 1e-6))
    depth = np.asarray(out.depth)
    assert np.all((depth >= 2.0) & (depth <= 1e10))
    assert depth[0] == np.float32(1e10) and opacity[0] == 0.0  # empty ray
    np.testing.assert_allclose(opacity[1], 1.0)
    np.testing.assert_allclose(depth[1], 0.5 * (2.0 + 2.0 + 4.0 / 7.0), rtol=1e-6)  # first interval's midpoint

    # One gradient of the sum: a non-finite gradient of any of the three terms makes the sum's non-finite.
    def total(sigma, rgb):
        o = integrator.volume_render(sigma, rgb, t, bg)
        return jnp.sum(o.rgb) + jnp.sum(o.depth) + jnp.sum(o.opacity)

    grads = jax.jit(jax.grad(total, argnums=(0, 1)))(sigma, rgb)
    assert all(np.all(np.isfinite(np.asarray(g))) for g in grads)


def test_empty_ray_returns_background_exactly():
    rng = np.random.default_rng(4)
    t = jnp.asarray(np.sort(rng.uniform(2, 6, (5, 17)), -1), jnp.float32)
    rgb = jnp.asarray(rng.uniform(size=(5, 16, 3)), jnp.float32)
    sigma = jnp.zeros((5, 16), jnp.float32)
    bg = jnp.asarray(rng.uniform(size=(5, 3)), jnp.float32)  # a background per ray
    out = _volume_render(sigma, rgb, t, bg)
    np.testing.assert_array_equal(np.asarray(out.rgb), np.asarray(bg))
    np.testing.assert_array_equal(np.asarray(out.opacity), 0.0)
    # A single [3] background broadcasts to every ray.
    out = _volume_render(sigma, rgb, t, jnp.array([1.0, 0.0, 0.5]))
    np.testing.assert_array_equal(np.asarray(out.rgb), np.broadcast_to([1.0, 0.0, 0.5], (5, 3)))


def test_compositing_in_rounds_with_carried_optical_depth_equals_one_pass():
    """Packed samples composited in two rounds (the second carrying the first's optical depth in, as the
    marching renderer does) give the one-pass pixels; and packed == batched compositing."""
    rng = np.random.default_rng(7)
    b, s = 4, 6
    sigma = jnp.asarray(rng.uniform(0, 3, size=(b, s)), jnp.float32)
    rgb = jnp.asarray(rng.uniform(size=(b, s, 3)), jnp.float32)
    t = jnp.asarray(np.sort(rng.uniform(2, 6, size=(b, s)), axis=-1), jnp.float32)
    delta = jnp.asarray(rng.uniform(0.05, 0.5, size=(b, s)), jnp.float32)
    bg = jnp.array([0.2, 0.4, 0.6])
    ref = integrator.composite(sigma, rgb, t, delta, bg, 6.0)
    ray = jnp.repeat(jnp.arange(b, dtype=jnp.int32), s // 2)  # each round: the first / last half of every ray
    flat = lambda x, half: x[:, half * (s // 2):(half + 1) * (s // 2)].reshape(-1, *x.shape[2:])  # noqa: E731
    first, _ = integrator.accumulate(flat(sigma, 0), flat(rgb, 0), flat(t, 0), flat(delta, 0), ray=ray, num_rays=b)
    second, _ = integrator.accumulate(flat(sigma, 1), flat(rgb, 1), flat(t, 1), flat(delta, 1), ray=ray, num_rays=b,
                                      optical_before=first.optical)
    out = integrator.finish(first + second, bg, 6.0)
    for k in ("rgb", "depth", "opacity"):
        np.testing.assert_allclose(np.asarray(getattr(out, k)), np.asarray(getattr(ref, k)), rtol=1e-5, atol=1e-6)
    np.testing.assert_allclose(np.asarray(first.optical + second.optical), np.asarray(jnp.sum(sigma * delta, -1)),
                               rtol=1e-6)
    # Without the carried optical depth the second round would be composited as if nothing were in front.
    wrong, _ = integrator.accumulate(flat(sigma, 1), flat(rgb, 1), flat(t, 1), flat(delta, 1), ray=ray, num_rays=b)
    assert float(jnp.max(wrong.opacity - second.opacity)) > 1e-3
