"""Sampling distances along rays.

Same convention as :mod:`nerfkit.integrator`: ``t`` [..., S + 1] are sorted interval *endpoints*;
``w`` [..., S] are interval weights summing to <= 1, a piecewise-constant density over ``t``.
"""

from __future__ import annotations

import jax
import jax.numpy as jnp


def stratified(key, near, far, batch_shape: tuple[int, ...], num_samples: int, randomized: bool,
               lindisp: bool = False) -> jnp.ndarray:
    """Endpoints of ``num_samples`` intervals between ``near`` and ``far`` (stratified sampling, NeRF eq. 2).

    Without randomisation the endpoints are evenly spaced. With it, each endpoint is drawn uniformly from
    its stratum (between the half-way points of its even neighbours; the first and last strata are half
    as wide), so intervals vary from step to step and, over many steps, every point of ``[near, far]`` is
    sampled.

    Args:
      key: PRNG key (unused when ``randomized`` is False).
      near, far: scalars or float32 [*batch_shape] bounds.
      batch_shape: the rays' batch shape.
      num_samples: S.
      randomized: jitter (training) or not (rendering).
      lindisp: space the strata evenly in inverse depth ``1/t`` instead of in ``t`` (unbounded scenes: as
        many samples between near and 2 near as between 2 near and infinity).
    Returns:
      t: float32 [*batch_shape, S + 1], sorted.

    >>> stratified(None, 2.0, 6.0, (1,), 4, randomized=False).tolist()  # the key is unused here
    [[2.0, 3.0, 4.0, 5.0, 6.0]]
    >>> [round(x, 4) for x in stratified(None, 1.0, 4.0, (), 3, randomized=False, lindisp=True).tolist()]
    [1.0, 1.3333, 2.0, 4.0]
    >>> t = stratified(jax.random.PRNGKey(0), 2.0, 6.0, (3,), 4, randomized=True)
    >>> t.shape, bool(jnp.all(t[..., 1:] >= t[..., :-1])), bool(jnp.all((t >= 2.0) & (t <= 6.0)))
    ((3, 5), True, True)
    """
    u = jnp.linspace(0.0, 1.0, num_samples + 1, dtype=jnp.float32)
    u = jnp.broadcast_to(u, (*batch_shape, num_samples + 1))
    if randomized:
        mids = 0.5 * (u[..., 1:] + u[..., :-1])
        lower = jnp.concatenate([u[..., :1], mids], axis=-1)
        upper = jnp.concatenate([mids, u[..., -1:]], axis=-1)
        u = lower + (upper - lower) * jax.random.uniform(key, u.shape, dtype=jnp.float32)
    near = jnp.asarray(near, jnp.float32)[..., None]
    far = jnp.asarray(far, jnp.float32)[..., None]
    if lindisp:
        return 1.0 / (1.0 / near * (1.0 - u) + 1.0 / far * u)
    return near + (far - near) * u


def sample_pdf(key, t: jnp.ndarray, w: jnp.ndarray, num_samples: int, randomized: bool, eps: float = 1e-5):
    """Draw distances from the piecewise-constant density defined by ``(t, w)`` by inverting its CDF.

    NeRF's hierarchical sampling (section 5.2). A small ``eps`` is added to every weight so empty rays still
    sample their whole extent. Gradients do not flow through the returned samples.

    Args:
      key: PRNG key (unused when ``randomized`` is False).
      t: float32 [..., S + 1] endpoints; w: float32 [..., S] weights.
      num_samples: N.
      randomized: stratified random ``u`` (training) or evenly spaced ``u = (k + 0.5) / N``.
    Returns:
      float32 [..., N] sorted distances in ``[t_0, t_S]``.

    All the weight on the middle interval ``[1, 2)``: evenly spaced ``u = 1/8, 3/8, 5/8, 7/8`` land in it.

    >>> s = sample_pdf(None, jnp.array([0.0, 1.0, 2.0, 3.0]), jnp.array([0.0, 1.0, 0.0]), 4, randomized=False)
    >>> [round(float(x), 3) for x in s]
    [1.125, 1.375, 1.625, 1.875]
    """
    t = jax.lax.stop_gradient(t)
    w = jax.lax.stop_gradient(w) + eps
    pdf = w / jnp.sum(w, axis=-1, keepdims=True)
    cdf = jnp.concatenate([jnp.zeros_like(pdf[..., :1]), jnp.minimum(1.0, jnp.cumsum(pdf, axis=-1))], axis=-1)
    cdf = cdf.at[..., -1].set(1.0)  # [..., S + 1]
    shape = (*t.shape[:-1], num_samples)
    if randomized:
        u = (jnp.arange(num_samples, dtype=jnp.float32) + jax.random.uniform(key, shape)) / num_samples
    else:
        u = jnp.broadcast_to((jnp.arange(num_samples, dtype=jnp.float32) + 0.5) / num_samples, shape)
    return _interp(u, cdf, t)


def _interp(x, xp, fp):
    """Batched ``np.interp`` for sorted ``xp`` (no Python loop; O(N * S) comparisons per ray)."""
    # Index of the last xp <= x (clamped to a valid interval).
    idx = jnp.sum(x[..., :, None] >= xp[..., None, :], axis=-1) - 1
    idx = jnp.clip(idx, 0, xp.shape[-1] - 2)
    x0 = jnp.take_along_axis(xp, idx, axis=-1)
    x1 = jnp.take_along_axis(xp, idx + 1, axis=-1)
    f0 = jnp.take_along_axis(fp, idx, axis=-1)
    f1 = jnp.take_along_axis(fp, idx + 1, axis=-1)
    frac = jnp.clip(jnp.where(x1 > x0, (x - x0) / jnp.where(x1 > x0, x1 - x0, 1.0), 0.0), 0.0, 1.0)
    return f0 + frac * (f1 - f0)


def merge_samples(t: jnp.ndarray, t_new: jnp.ndarray) -> jnp.ndarray:
    """Endpoints for the fine pass: the coarse endpoints and the resampled distances, sorted.

    Args:
      t: [..., S + 1]; t_new: [..., N].
    Returns:
      [..., S + N + 1] sorted endpoints (S + N intervals, as in the paper's N_c + N_f evaluations).

    >>> merge_samples(jnp.array([[0.0, 1.0, 2.0]]), jnp.array([[1.5, 0.5]])).tolist()
    [[0.0, 0.5, 1.0, 1.5, 2.0]]
    """
    return jnp.sort(jnp.concatenate([jax.lax.stop_gradient(t), t_new], axis=-1), axis=-1)


def intersect_aabb(origins, directions, aabb, near, far):
    """Clip ``[near, far]`` to the part of each ray inside an axis-aligned box.

    Args:
      origins, directions: float32 [..., 3]; aabb: float32 [2, 3] (min, max); near, far: scalars.
    Returns:
      (t_near, t_far, hit): float32 [...] each and bool [...]; rays that miss get ``t_near = t_far = far``.

    Two rays along +x towards the unit cube, the second passing above it:

    >>> origins = jnp.array([[-2.0, 0.5, 0.5], [-2.0, 5.0, 0.5]])
    >>> directions = jnp.array([[1.0, 0.0, 0.0], [1.0, 0.0, 0.0]])
    >>> aabb = jnp.array([[0.0, 0.0, 0.0], [1.0, 1.0, 1.0]])
    >>> t_near, t_far, hit = intersect_aabb(origins, directions, aabb, 0.0, 10.0)
    >>> t_near.tolist(), t_far.tolist(), hit.tolist()
    ([2.0, 10.0], [3.0, 10.0], [True, False])
    """
    safe = jnp.where(jnp.abs(directions) > 1e-9, directions, 1e-9)
    t0 = (aabb[0] - origins) / safe
    t1 = (aabb[1] - origins) / safe
    t_in = jnp.max(jnp.minimum(t0, t1), axis=-1)
    t_out = jnp.min(jnp.maximum(t0, t1), axis=-1)
    t_in = jnp.maximum(t_in, near)
    t_out = jnp.minimum(t_out, far)
    hit = t_out > t_in
    return jnp.where(hit, t_in, far), jnp.where(hit, t_out, far), hit
