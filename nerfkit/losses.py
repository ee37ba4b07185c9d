"""Regularisers on the weights along rays (mip-NeRF 360, Barron et al. 2022, section 3 and 4).

Same convention as :mod:`nerfkit.sampling`: ``s`` [..., S + 1] are sorted interval endpoints and ``w``
[..., S] the intervals' weights. Both losses are computed on the proposal sampler's normalised ray distance
``s`` in [0, 1], not on metric distance, so near and far intervals count alike.
"""

from __future__ import annotations

import jax
import jax.numpy as jnp


def outer_bound(s_query: jnp.ndarray, s: jnp.ndarray, w: jnp.ndarray) -> jnp.ndarray:
    """The weight of ``(s, w)`` on the intervals that overlap each query interval (mip-NeRF 360 eq. 12).

    For a histogram ``(s, w)`` to be consistent with a finer one on ``s_query``, each query interval's weight
    must not exceed this bound.

    Args:
      s_query: float32 [..., N + 1] query endpoints; s: float32 [..., M + 1]; w: float32 [..., M].
    Returns:
      float32 [..., N].

    Two halves of [0, 1] weighted 0.25 and 0.75: a query interval inside a half is bounded by that half's
    weight, one that straddles both by their sum.

    >>> outer_bound(jnp.array([0.0, 0.2, 0.4, 0.6]), jnp.array([0.0, 0.5, 1.0]), jnp.array([0.25, 0.75])).tolist()
    [0.25, 0.25, 1.0]
    """
    cw = jnp.concatenate([jnp.zeros_like(w[..., :1]), jnp.cumsum(w, axis=-1)], axis=-1)  # [..., M + 1]
    m = w.shape[-1]
    # Per query endpoint, how many endpoints of s lie at or below it (O(N M) comparisons, no Python loop);
    # interval i is bounded by the intervals of s from the one holding its start to the one holding its end.
    count = jnp.sum(s_query[..., :, None] >= s[..., None, :], axis=-1)
    lo = jnp.clip(count[..., :-1] - 1, 0, m)
    hi = jnp.clip(count[..., 1:], 0, m)
    return jnp.take_along_axis(cw, hi, axis=-1) - jnp.take_along_axis(cw, lo, axis=-1)


def interlevel_loss(s_fine, w_fine, s_proposal, w_proposal, eps: float = 1e-7) -> jnp.ndarray:
    """mip-NeRF 360's proposal loss (eq. 13): the mean over rays of
    ``sum_i max(0, w_i - bound_i)^2 / w_i``, ``bound`` the proposal's :func:`outer_bound` of each fine interval.

    Only the proposal learns from it: the fine histogram is a constant (``stop_gradient``).

    Args:
      s_fine: [..., N + 1]; w_fine: [..., N]; s_proposal: [..., M + 1]; w_proposal: [..., M].
    Returns:
      float32 [].

    >>> s = jnp.array([0.0, 0.5, 1.0])
    >>> float(interlevel_loss(s, jnp.array([0.2, 0.8]), s, jnp.array([0.2, 0.8])))  # the bound holds
    0.0
    >>> round(float(interlevel_loss(s, jnp.array([0.2, 0.8]), s, jnp.array([0.2, 0.4]))), 4)  # (0.8 - 0.4)^2 / 0.8
    0.2
    """
    s_fine, w_fine = jax.lax.stop_gradient(s_fine), jax.lax.stop_gradient(w_fine)
    bound = outer_bound(s_fine, s_proposal, w_proposal)
    return jnp.mean(jnp.sum(jnp.maximum(0.0, w_fine - bound) ** 2 / (w_fine + eps), axis=-1))


def distortion_loss(s: jnp.ndarray, w: jnp.ndarray) -> jnp.ndarray:
    """mip-NeRF 360's distortion loss (eq. 15), the mean over rays of
    ``sum_ij w_i w_j |m_i - m_j| + 1/3 sum_i w_i^2 (s_{i+1} - s_i)`` (``m``: interval midpoints), in O(S).

    Small when each ray's weight sits in one short stretch: it removes floaters and fog.

    Args:
      s: float32 [..., S + 1]; w: float32 [..., S].
    Returns:
      float32 [].

    All weight in one interval of length 0.3 costs a third of it; two far-apart intervals cost their distance.

    >>> round(float(distortion_loss(jnp.array([0.0, 0.3, 1.0]), jnp.array([1.0, 0.0]))), 4)
    0.1
    >>> s, w = jnp.array([0.0, 0.0, 1.0, 1.0]), jnp.array([0.5, 0.0, 0.5])
    >>> round(float(distortion_loss(s, w)), 4)  # 2 * 0.5 * 0.5 * |1 - 0|
    0.5
    """
    mid = 0.5 * (s[..., 1:] + s[..., :-1])
    width = s[..., 1:] - s[..., :-1]
    w_before = jnp.cumsum(w, axis=-1) - w
    wm_before = jnp.cumsum(w * mid, axis=-1) - w * mid
    inter = 2.0 * jnp.sum(w * (mid * w_before - wm_before), axis=-1)
    intra = jnp.sum(w ** 2 * width, axis=-1) / 3.0
    return jnp.mean(inter + intra)
