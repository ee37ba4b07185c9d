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

Samples come *batched* (arrays [..., S], one row per ray) or *packed* (arrays [N] with ``ray`` [N], the ray of
each slot; nerfacc's layout, see :class:`nerfkit.types.PackedSamples`). :func:`accumulate` composites either
into per-ray sums (carrying optical depth in from earlier rounds when rendering in rounds) and
:func:`finish` turns sums into pixels; :func:`composite` is the two together.
"""

from __future__ import annotations

import math

import flax.struct
import jax
import jax.numpy as jnp

from nerfkit.types import RenderOutputs


def weights_from_deltas(sigma: jnp.ndarray, delta: jnp.ndarray) -> jnp.ndarray:
    """Interval weights from densities and interval lengths (intervals need not be contiguous).

    Args:
      sigma: float32 [..., S] densities (>= 0); delta: float32 [..., S] lengths (>= 0; 0 = empty slot).
    Returns:
      w: float32 [..., S], ``w_i = exp(-sum_{j<i} sigma_j delta_j) * (1 - exp(-sigma_i delta_i))``.

    >>> w = weights_from_deltas(jnp.array([1.0, 1.0]), jnp.array([math.log(2.0), math.log(2.0)]))
    >>> [round(float(x), 4) for x in w]  # alpha = 1/2 each; the second sees transmittance 1/2
    [0.5, 0.25]
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

    >>> [round(float(x), 4) for x in weights_from_alpha(jnp.array([0.5, 0.5, 1.0]))]
    [0.5, 0.25, 0.25]
    """
    trans = jnp.cumprod(1.0 - alpha, axis=-1)
    trans = jnp.concatenate([jnp.ones_like(alpha[..., :1]), trans[..., :-1]], axis=-1)
    return alpha * trans


def volume_render(sigma, rgb, t, background) -> RenderOutputs:
    """Densities and colours over contiguous intervals to pixel values (batched samples).

    Args:
      sigma: float32 [..., S]; rgb: float32 [..., S, 3]; t: float32 [..., S + 1] endpoints;
      background: [3] or [..., 3].
    Returns:
      :class:`~nerfkit.types.RenderOutputs` with ``weights`` [..., S]; depth clipped to ``[t_0, t_S]``.

    >>> out = volume_render(jnp.array([[0.0, 1e6]]), jnp.ones((1, 2, 3)), jnp.array([[0.0, 1.0, 2.0]]),
    ...                     jnp.zeros(3))
    >>> [round(float(x), 4) for x in (out.opacity[0], out.depth[0])]  # opaque from t = 1: depth 1.5, the midpoint
    [1.0, 1.5]
    """
    tmid = 0.5 * (t[..., 1:] + t[..., :-1])
    out = composite(sigma, rgb, tmid, t[..., 1:] - t[..., :-1], background, t[..., -1])
    return out.replace(depth=jnp.clip(out.depth, t[..., 0], t[..., -1]))


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

    >>> optical_depth_before(jnp.array([1.0, 2.0, 3.0, 4.0]), jnp.array([True, False, True, False])).tolist()
    [0.0, 1.0, 0.0, 3.0]
    """
    return _segmented_cumsum(optical, starts) - optical


def stop_depth(eps: float) -> float:
    """The optical depth at which transmittance falls to ``eps`` (infinite for ``eps <= 0``: never stop).

    >>> round(stop_depth(math.exp(-3.0)), 6), stop_depth(0.0)
    (3.0, inf)
    """
    return -math.log(eps) if eps > 0 else math.inf


@flax.struct.dataclass
class RaySums:
    """Per-ray sums over composited samples, before the background is added (see :func:`accumulate`).

    Attributes:
      optical: float32 [B] optical depth ``sum sigma delta`` (transmittance behind the samples: ``exp(-optical)``).
      opacity: float32 [B] ``sum w``; rgb: float32 [B, 3] ``sum w c``; depth: float32 [B] ``sum w t``.
    """

    optical: jax.Array
    opacity: jax.Array
    rgb: jax.Array
    depth: jax.Array

    @classmethod
    def zeros(cls, num_rays: int, channels: int = 3) -> "RaySums":
        """Sums of no samples (``channels`` colour channels: 3, or 3 K for K appearance codes a ray)."""
        z = jnp.zeros((num_rays,), jnp.float32)
        return cls(optical=z, opacity=z, rgb=jnp.zeros((num_rays, channels), jnp.float32), depth=z)

    def __add__(self, other: "RaySums") -> "RaySums":
        return jax.tree.map(jnp.add, self, other)


def accumulate(sigma, rgb, t, delta, *, ray=None, num_rays: int | None = None, optical_before=None):
    """Composite samples into per-ray sums: the one compositor behind every render path.

    Batched samples (``ray`` None): arrays [..., S], samples along the last axis in distance order. Packed
    samples: arrays [N] (rgb [N, 3]) with ``ray`` int32 [N], each ray's samples contiguous and in distance
    order, ``num_rays`` (B) for unused slots (``delta`` 0 there). ``w_i = exp(-(before_i)) (1 - exp(-sigma_i
    delta_i))``, ``before_i`` the optical depth in front of sample i on its ray, plus ``optical_before`` [B]
    (or [...]) carried in from samples composited earlier (rendering in rounds; nerfacc's ``prefix_trans``).

    Returns:
      (:class:`RaySums` over each ray [B] (or [...]), w: the weight of each sample, like ``sigma``).

    >>> sums, w = accumulate(jnp.array([1e6, 1e6]), jnp.ones((2, 3)), jnp.array([1.0, 3.0]),
    ...                      jnp.array([0.1, 0.1]), ray=jnp.array([0, 1]), num_rays=2,
    ...                      optical_before=jnp.array([0.0, 50.0]))  # ray 1 was opaque already
    >>> [round(float(x), 4) for x in sums.opacity], [round(float(x), 4) for x in w]
    ([1.0, 0.0], [1.0, 0.0])
    """
    optical = sigma * delta
    if ray is None:
        w = weights_from_deltas(sigma, delta)
        if optical_before is not None:
            w = w * jnp.exp(-optical_before[..., None])
        sums = RaySums(optical=jnp.sum(optical, axis=-1), opacity=jnp.sum(w, axis=-1),
                       rgb=jnp.sum(w[..., None] * rgb, axis=-2), depth=jnp.sum(w * t, axis=-1))
        return sums, w
    starts = jnp.concatenate([jnp.ones((1,), bool), ray[1:] != ray[:-1]])
    before = optical_depth_before(optical, starts)
    if optical_before is not None:
        before = before + optical_before[jnp.minimum(ray, num_rays - 1)]
    w = -jnp.expm1(-optical) * jnp.exp(-before)  # 1 - exp(-x), exact for thin intervals
    seg = lambda v: jax.ops.segment_sum(v, ray, num_segments=num_rays + 1)[:num_rays]  # noqa: E731
    return RaySums(optical=seg(optical), opacity=seg(w), rgb=seg(w[:, None] * rgb), depth=seg(w * t)), w


def finish(sums: RaySums, background, far, weights=None) -> RenderOutputs:
    """Pixels from per-ray sums: ``rgb = sum w c + (1 - sum w) background``; ``depth = sum w t / sum w``
    (``far`` where the ray hits nothing, with the division guarded so its gradient stays finite).

    >>> sums = RaySums(optical=jnp.array([9.0, 0.0]), opacity=jnp.array([0.5, 0.0]),
    ...                rgb=jnp.array([[0.5, 0.0, 0.0], [0.0, 0.0, 0.0]]), depth=jnp.array([1.5, 0.0]))
    >>> out = finish(sums, jnp.ones(3), 6.0)  # half of ray 0 is red at t = 3; ray 1 hits nothing
    >>> out.rgb.tolist(), out.depth.tolist()
    ([[1.0, 0.5, 0.5], [1.0, 1.0, 1.0]], [3.0, 6.0])
    """
    acc = sums.opacity
    color = sums.rgb + (1.0 - acc[..., None]) * background
    safe_acc = jnp.where(acc > 1e-6, acc, 1.0)
    depth = jnp.where(acc > 1e-6, sums.depth / safe_acc, far)
    return RenderOutputs(rgb=color, depth=depth, opacity=acc, weights=weights)


def composite(sigma, rgb, t, delta, background, far, *, ray=None, num_rays: int | None = None) -> RenderOutputs:
    """Alpha-composite samples (batched [..., S] or packed [N] with ``ray``; see :func:`accumulate`).

    Args:
      sigma: float32 densities; rgb: float32 colours (trailing axis 3); t: float32 distance of each sample's
        representative point; delta: float32 interval lengths (0: empty slot).
      background: float32 [3] or [B, 3], seen through the remaining transmittance.
      far: scalar or [B]: the depth reported for rays that hit nothing.
    Returns:
      :class:`~nerfkit.types.RenderOutputs`: ``rgb`` [B, 3], ``opacity`` [B], ``depth`` [B]; ``weights`` [..., S]
      for batched samples.

    >>> out = composite(jnp.array([[0.0, 1e6]]), jnp.ones((1, 2, 3)), jnp.array([[1.0, 2.0]]),
    ...                 jnp.array([[0.5, 0.5]]), jnp.zeros(3), 6.0)  # one ray, opaque at its second sample
    >>> float(out.opacity[0]), float(out.depth[0])
    (1.0, 2.0)
    >>> packed = composite(jnp.array([0.0, 1e6, 1e6]), jnp.ones((3, 3)), jnp.array([1.0, 2.0, 4.0]),
    ...                    jnp.full(3, 0.5), jnp.zeros(3), 6.0, ray=jnp.array([0, 0, 1]), num_rays=2)
    >>> packed.depth.tolist()  # the same ray, and a second one opaque at t = 4
    [2.0, 4.0]
    """
    sums, w = accumulate(sigma, rgb, t, delta, ray=ray, num_rays=num_rays)
    return finish(sums, background, far, weights=w if ray is None else None)
