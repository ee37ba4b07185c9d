"""Quadrature volume rendering (Max 1995; NeRF eq. 3).

Naming convention (shared with :mod:`nerfkit.sampling`):

* ``t`` always holds the *endpoints* of the intervals along a ray, float32 [..., S + 1], sorted. Interval
  ``i`` is ``[t_i, t_{i+1})``, its length ``delta_i = t_{i+1} - t_i`` and its representative point (where
  the field is evaluated) the midpoint. The last interval may be open-ended: ``t_S`` up to 1e10.
* ``sigma`` is the density of each interval, float32 [..., S] (>= 0, up to 1e6 handled).
* ``w`` are interval weights, float32 [..., S], summing to <= 1 along a ray.

For each interval: ``alpha_i = 1 - exp(-sigma_i delta_i)``, transmittance
``T_i = prod_{j<i} (1 - alpha_j) = exp(-sum_{j<i} sigma_j delta_j)``, weight ``w_i = T_i alpha_i``. The
rendered colour is ``sum_i w_i c_i + (1 - sum_i w_i) * background``. Working in optical depth
``sigma * delta`` (sums, not products) keeps values and gradients finite at any magnitude.
"""

from __future__ import annotations

import math

import jax
import jax.numpy as jnp


def weights_from_deltas(sigma: jnp.ndarray, delta: jnp.ndarray) -> jnp.ndarray:
    """Interval weights from densities and interval lengths (intervals need not be contiguous).

    Args:
      sigma: float32 [..., S] densities (>= 0); delta: float32 [..., S] lengths (>= 0; 0 = empty slot).
    Returns:
      w: float32 [..., S], ``w_i = exp(-sum_{j<i} sigma_j delta_j) * (1 - exp(-sigma_i delta_i))``.
    """
    optical = sigma * delta
    alpha = -jnp.expm1(-optical)  # 1 - exp(-x), exact for thin intervals
    # Exclusive cumulative sum: optical depth in front of each interval.
    before = jnp.concatenate([jnp.zeros_like(optical[..., :1]), jnp.cumsum(optical[..., :-1], axis=-1)], axis=-1)
    return alpha * jnp.exp(-before)


def weights_from_density(sigma: jnp.ndarray, t: jnp.ndarray) -> jnp.ndarray:
    """Interval weights from densities over contiguous intervals with endpoints ``t``.

    Args:
      sigma: float32 [..., S] densities (>= 0).
      t: float32 [..., S + 1] interval endpoints.
    Returns:
      w: float32 [..., S] (see :func:`weights_from_deltas`).

    >>> w = weights_from_density(jnp.array([0.0, 1e6]), jnp.array([0.0, 1.0, 2.0]))
    >>> [round(float(x), 6) for x in w]  # the first interval is empty, the second opaque
    [0.0, 1.0]
    """
    return weights_from_deltas(sigma, t[..., 1:] - t[..., :-1])


def weights_from_alpha(alpha: jnp.ndarray) -> jnp.ndarray:
    """Interval weights from opacities: ``w_i = alpha_i prod_{j<i} (1 - alpha_j)``.

    Args:
      alpha: float32 [..., S] in [0, 1].
    Returns:
      float32 [..., S].
    """
    trans = jnp.cumprod(1.0 - alpha, axis=-1)
    trans = jnp.concatenate([jnp.ones_like(alpha[..., :1]), trans[..., :-1]], axis=-1)
    return alpha * trans


def composite(w: jnp.ndarray, tmid: jnp.ndarray, rgb: jnp.ndarray, background: jnp.ndarray, far) -> dict:
    """Alpha-composite interval colours.

    Args:
      w: float32 [..., S] weights (from :func:`weights_from_density`).
      tmid: float32 [..., S] distance of each interval's representative point.
      rgb: float32 [..., S, 3] colours of each interval.
      background: float32 [3] or [..., 3], seen through the remaining transmittance.
      far: scalar or [...]: the depth reported for rays that hit nothing.
    Returns:
      dict with ``rgb`` [..., 3]; ``opacity`` [...] = sum w; ``depth`` [...] the expected distance of the
      surface, ``sum w_i tmid_i / sum w_i`` (``far`` where the ray hits nothing); ``weights`` [..., S].
    """
    acc = jnp.sum(w, axis=-1)
    color = jnp.sum(w[..., None] * rgb, axis=-2) + (1.0 - acc[..., None]) * background
    # Guard the division where the ray is (nearly) empty; keep the gradient of the safe branch finite.
    safe_acc = jnp.where(acc > 1e-6, acc, 1.0)
    depth = jnp.where(acc > 1e-6, jnp.sum(w * tmid, axis=-1) / safe_acc, far)
    return {"rgb": color, "opacity": acc, "depth": depth, "weights": w}


def volume_render(sigma, rgb, t, background) -> dict:
    """Densities and colours over contiguous intervals to pixel values.

    Args:
      sigma: float32 [..., S]; rgb: float32 [..., S, 3]; t: float32 [..., S + 1] endpoints;
      background: [3] or [..., 3].
    Returns:
      the dict of :func:`composite` (depth clipped to ``[t_0, t_S]``).
    """
    tmid = 0.5 * (t[..., 1:] + t[..., :-1])
    out = composite(weights_from_density(sigma, t), tmid, rgb, background, t[..., -1])
    out["depth"] = jnp.clip(out["depth"], t[..., 0], t[..., -1])
    return out


def _segmented_cumsum(x: jnp.ndarray, starts: jnp.ndarray) -> jnp.ndarray:
    """Inclusive cumulative sum of ``x`` [N] that restarts wherever ``starts`` [N] is True (exact per segment)."""

    def combine(a, b):
        fa, va = a
        fb, vb = b
        return fa | fb, jnp.where(fb, vb, va + vb)

    return jax.lax.associative_scan(combine, (starts, x))[1]


def optical_depth_before(optical: jnp.ndarray, starts: jnp.ndarray) -> jnp.ndarray:
    """Packed samples: optical depth in front of each sample within its ray (exclusive segmented sum).

    Args:
      optical: float32 [N] ``sigma * delta`` per sample; starts: bool [N], True at each ray's first sample.
    Returns:
      float32 [N]; the transmittance in front of sample i is ``exp(-result[i])``.
    """
    return _segmented_cumsum(optical, starts) - optical


def stop_depth(eps: float) -> float:
    """The optical depth at which transmittance falls to ``eps`` (infinite for ``eps <= 0``: never stop)."""
    return -math.log(eps) if eps > 0 else math.inf


def composite_packed(sigma, rgb, t, delta, ray, num_rays: int, background, far) -> dict:
    """Volume rendering of packed samples (every ray's samples contiguous and in distance order).

    Args:
      sigma: float32 [N]; rgb: float32 [N, 3]; t: float32 [N] sample distances; delta: float32 [N] interval
        lengths (0 for unused slots); ray: int32 [N] ray of each sample (``num_rays`` for unused slots).
      num_rays: B; background: float32 [3] or [B, 3]; far: scalar or [B], depth of rays that hit nothing.
    Returns:
      dict with ``rgb`` [B, 3], ``opacity`` [B], ``depth`` [B] as :func:`composite` computes them.
    """
    optical = sigma * delta
    starts = jnp.concatenate([jnp.ones((1,), bool), ray[1:] != ray[:-1]])
    before = optical_depth_before(optical, starts)
    w = -jnp.expm1(-optical) * jnp.exp(-before)
    seg = lambda v: jax.ops.segment_sum(v, ray, num_segments=num_rays + 1)[:num_rays]  # noqa: E731
    acc = seg(w)
    color = seg(w[:, None] * rgb) + (1.0 - acc[:, None]) * background
    safe_acc = jnp.where(acc > 1e-6, acc, 1.0)
    depth = jnp.where(acc > 1e-6, seg(w * t) / safe_acc, far)
    return {"rgb": color, "opacity": acc, "depth": depth}
