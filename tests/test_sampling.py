"""Tests for nerfkit.sampling: stratified endpoints, inverse-CDF resampling, merging, ray/box clipping.

``sample_pdf`` is checked against a brute-force NumPy reference (one ``np.interp`` per ray) and, in its
randomised form, against the pdf it samples with a chi-square statistic.
"""

from __future__ import annotations

import functools

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from nerfkit import sampling


@functools.partial(jax.jit, static_argnames=("batch_shape", "num_samples", "randomized"))
def _stratified(key, near, far, batch_shape, num_samples, randomized):
    return sampling.stratified(key, near, far, batch_shape, num_samples, randomized)


_intersect_aabb = jax.jit(sampling.intersect_aabb)  # near/far traced: one compile per batch shape


@functools.partial(jax.jit, static_argnames=("num_samples", "randomized"))
def _sample_pdf(key, t, w, num_samples, randomized):
    return sampling.sample_pdf(key, t, w, num_samples, randomized)


# ------------------------------------------------------------------------------------------- stratified
def test_stratified_deterministic_is_evenly_spaced():
    near = jnp.array([2.0, 0.5, 1.0])
    far = jnp.array([6.0, 1.5, 1.0 + 1e-3])
    t = np.asarray(_stratified(jax.random.key(0), near, far, (3,), 8, False))
    assert t.shape == (3, 9)
    for r in range(3):
        np.testing.assert_allclose(t[r], np.linspace(float(near[r]), float(far[r]), 9), rtol=1e-6, atol=1e-7)
    assert np.all(t[:, 0] == np.asarray(near)) and np.all(t[:, -1] == np.asarray(far))
    # Scalar bounds broadcast over the batch shape.
    t2 = np.asarray(_stratified(jax.random.key(0), 2.0, 6.0, (4, 5), 4, False))
    assert t2.shape == (4, 5, 5)
    np.testing.assert_allclose(t2, np.broadcast_to([2.0, 3.0, 4.0, 5.0, 6.0], (4, 5, 5)), atol=1e-6)


def test_stratified_randomized_strata():
    near, far, s, n_rays = 2.0, 6.0, 16, 512
    t1 = np.asarray(_stratified(jax.random.key(1), near, far, (n_rays,), s, True))
    t2 = np.asarray(_stratified(jax.random.key(2), near, far, (n_rays,), s, True))
    assert t1.shape == (n_rays, s + 1)
    # Different keys, different jitter; different rays of one batch, different jitter.
    assert not np.allclose(t1, t2)
    assert not np.allclose(t1[0], t1[1])
    for t in (t1, t2):
        assert np.all(np.diff(t, axis=-1) >= 0.0)
        assert np.all((t >= near) & (t <= far))
        # Endpoint k stays within its stratum: between the midpoints of its even neighbours,
        # [near + (k - 1/2) h, near + (k + 1/2) h] with h = (far - near) / S, clipped to [near, far].
        h = (far - near) / s
        k = np.arange(s + 1)
        lo = np.maximum(near + (k - 0.5) * h, near)
        hi = np.minimum(near + (k + 0.5) * h, far)
        assert np.all((t >= lo - 1e-5) & (t <= hi + 1e-5))
    # The jitter uses the whole stratum: interior endpoints reach both halves of theirs.
    u = (t1[:, 1:-1] - near) / h - np.arange(1, s)
    assert u.min() < -0.4 and u.max() > 0.4


# ------------------------------------------------------------------------------------------- sample_pdf
def _sample_pdf_reference(t, w, num_samples, eps=1e-5):
    """Brute force: per ray, the same pdf (weights + eps), CDF, and np.interp at u = (k + 0.5) / N."""
    t = np.asarray(t, np.float64)
    w = np.asarray(w, np.float64) + eps
    out = np.empty((*t.shape[:-1], num_samples))
    u = (np.arange(num_samples) + 0.5) / num_samples
    for idx in np.ndindex(*t.shape[:-1]):
        pdf = w[idx] / w[idx].sum()
        cdf = np.concatenate([[0.0], np.minimum(1.0, np.cumsum(pdf))])
        cdf[-1] = 1.0
        out[idx] = np.interp(u, cdf, t[idx])
    return out


def _random_rays(rng, n_rays, s):
    t = np.sort(rng.uniform(2.0, 6.0, (n_rays, s + 1)), axis=-1).astype(np.float32)
    w = rng.uniform(size=(n_rays, s)) ** 3 * (rng.uniform(size=(n_rays, s)) > 0.3)
    w = (w / np.maximum(w.sum(-1, keepdims=True), 1e-9) * rng.uniform(0.0, 1.0, (n_rays, 1))).astype(np.float32)
    w[0] = 0.0  # an empty ray: eps spreads its samples over the whole extent
    w[1] = 0.0
    w[1, 3] = 1.0  # all weight in one interval
    return t, w


def test_sample_pdf_matches_numpy_reference():
    rng = np.random.default_rng(0)
    t, w = _random_rays(rng, 64, 12)
    got = np.asarray(_sample_pdf(jax.random.key(0), jnp.asarray(t), jnp.asarray(w), 24, False))
    ref = _sample_pdf_reference(t, w, 24)
    assert got.shape == (64, 24)
    np.testing.assert_allclose(got, ref, rtol=0, atol=2e-5)
    assert np.all(np.diff(got, axis=-1) >= 0.0)
    # The empty ray: the pdf is uniform over intervals (eps each), so samples are spread over [t_0, t_S].
    assert got[0].min() < t[0, 2] and got[0].max() > t[0, -3]
    # All weight in interval 3: (nearly) every sample falls inside it.
    inside = (got[1] >= t[1, 3]) & (got[1] <= t[1, 4])
    assert inside.mean() > 0.9


def test_sample_pdf_randomized_follows_the_pdf():
    rng = np.random.default_rng(1)
    s = 8
    t = np.sort(rng.uniform(2.0, 6.0, s + 1)).astype(np.float32)
    w = rng.uniform(0.05, 1.0, s).astype(np.float32)
    w /= 1.25 * w.sum()  # weights summing to 0.8
    n_rays, per_ray = 4000, 2  # many copies of one ray: 8000 draws, two strata of u per ray
    tb = jnp.broadcast_to(jnp.asarray(t), (n_rays, s + 1))
    wb = jnp.broadcast_to(jnp.asarray(w), (n_rays, s))
    x = np.asarray(_sample_pdf(jax.random.key(3), tb, wb, per_ray, True))
    assert x.shape == (n_rays, per_ray)
    assert np.all((x >= t[0]) & (x <= t[-1]))
    assert np.all(np.diff(x, axis=-1) >= 0.0)
    x2 = np.asarray(_sample_pdf(jax.random.key(4), tb, wb, per_ray, True))
    assert not np.allclose(x, x2)
    # Histogram over the half-intervals: the density is constant inside each interval, so each half holds
    # half of the interval's probability (w + eps) / sum(w + eps).
    p = (w.astype(np.float64) + 1e-5) / (w.astype(np.float64) + 1e-5).sum()
    edges = np.sort(np.concatenate([t, 0.5 * (t[1:] + t[:-1])]))
    counts, _ = np.histogram(x.ravel(), bins=edges)
    expected = np.repeat(p / 2, 2) * x.size
    chi2 = np.sum((counts - expected) ** 2 / expected)
    # 16 bins -> 15 degrees of freedom: mean 15, P(chi2 > 45) ~ 1e-4. The key is fixed, so this is deterministic.
    assert chi2 < 45.0, (chi2, counts, expected)


def test_sample_pdf_stops_gradients():
    t = jnp.linspace(2.0, 6.0, 9)
    w = jnp.full(8, 0.1)
    g_t, g_w = jax.jit(jax.grad(lambda t, w: jnp.sum(sampling.sample_pdf(None, t, w, 5, False)), argnums=(0, 1)))(t, w)
    assert np.all(np.asarray(g_t) == 0.0) and np.all(np.asarray(g_w) == 0.0)


# ---------------------------------------------------------------------------------------- merge_samples
def test_merge_samples_sorted_with_right_length():
    rng = np.random.default_rng(2)
    t, w = _random_rays(rng, 16, 8)
    t_new = _sample_pdf(jax.random.key(5), jnp.asarray(t), jnp.asarray(w), 12, True)
    merged = np.asarray(jax.jit(sampling.merge_samples)(jnp.asarray(t), t_new))
    assert merged.shape == (16, 8 + 12 + 1)
    assert np.all(np.diff(merged, axis=-1) >= 0.0)
    # A merge, not a resampling: the multiset of values is kept.
    np.testing.assert_array_equal(merged, np.sort(np.concatenate([t, np.asarray(t_new)], -1), -1))
    np.testing.assert_array_equal(merged[:, 0], t[:, 0])
    np.testing.assert_array_equal(merged[:, -1], t[:, -1])


# --------------------------------------------------------------------------------------- intersect_aabb
BOX = jnp.array([[-1.0, -1.0, -1.0], [1.0, 1.0, 1.0]])


@pytest.mark.parametrize(
    "origin, direction, near, far, expected",
    [
        # Along +y from (0, -4, 0): enters the unit box at y = -1 (t = 3), leaves at y = 1 (t = 5).
        ((0, -4, 0), (0, 1, 0), 2.0, 6.0, (3.0, 5.0)),
        # Along -x from (4, 0.5, -0.5): enters at x = 1 (t = 3), leaves at x = -1 (t = 5).
        ((4, 0.5, -0.5), (-1, 0, 0), 2.0, 6.0, (3.0, 5.0)),
        # Along +z from below: the far bound clips the exit (t = 5 -> 4.5).
        ((0, 0, -4), (0, 0, 1), 2.0, 4.5, (3.0, 4.5)),
        # Starting inside the box: the entry is clipped to near.
        ((0, 0, 0), (1, 0, 0), 0.0, 6.0, (0.0, 1.0)),
        # Diagonal in the x-y plane from (-3, -3, 0): corner-to-corner, t in [2 sqrt 2, 4 sqrt 2].
        ((-3, -3, 0), (2 ** -0.5, 2 ** -0.5, 0), 0.0, 10.0, (2 * 2 ** 0.5, 4 * 2 ** 0.5)),
    ],
)
def test_intersect_aabb_hits(origin, direction, near, far, expected):
    o = jnp.asarray([origin], jnp.float32)
    d = jnp.asarray([direction], jnp.float32)
    t_near, t_far, hit = _intersect_aabb(o, d, BOX, near, far)
    assert bool(hit[0])
    np.testing.assert_allclose([float(t_near[0]), float(t_far[0])], expected, atol=1e-5)


@pytest.mark.parametrize(
    "origin, direction",
    [
        ((0, -4, 2), (0, 1, 0)),   # passes above the box (z = 2)
        ((0, -4, 0), (0, -1, 0)),  # points away from it
        ((3, 3, 0), (0, 0, 1)),    # parallel to z, outside in x and y
        ((0, -8, 0), (0, 1, 0)),   # would hit at t = 7, beyond far = 6
    ],
)
def test_intersect_aabb_misses(origin, direction):
    far = 6.0
    t_near, t_far, hit = _intersect_aabb(
        jnp.asarray([origin], jnp.float32), jnp.asarray([direction], jnp.float32), BOX, 2.0, far
    )
    assert not bool(hit[0])
    assert float(t_near[0]) == far and float(t_far[0]) == far


def test_intersect_aabb_batched():
    o = jnp.array([[0.0, -4.0, 0.0], [0.0, -4.0, 2.0]])
    d = jnp.array([[0.0, 1.0, 0.0], [0.0, 1.0, 0.0]])
    t_near, t_far, hit = _intersect_aabb(o, d, BOX, 2.0, 6.0)
    np.testing.assert_array_equal(np.asarray(hit), [True, False])
    np.testing.assert_allclose(np.asarray(t_near), [3.0, 6.0], atol=1e-6)
    np.testing.assert_allclose(np.asarray(t_far), [5.0, 6.0], atol=1e-6)
