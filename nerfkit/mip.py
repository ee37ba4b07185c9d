"""mip-NeRF's integrated positional encoding (Barron et al. 2021): encode a conical frustum, not a point.

A pixel sees a cone, not a ray. Each sampling interval ``[t0, t1]`` of a cone with radius ``r`` at unit
distance is approximated by a Gaussian (mean and diagonal covariance, mip-NeRF eqs. 7-8), and the
positional encoding is replaced by its expectation under that Gaussian: for ``x ~ N(mu, var)``,
``E[sin(a x)] = sin(a mu) exp(-a^2 var / 2)`` (same for cos). High frequencies whose period is smaller
than the frustum fade out, so the field is pre-filtered: rendering at a lower resolution (wider cones)
gives the area-averaged colour instead of aliasing.
"""

from __future__ import annotations

import math

import jax.numpy as jnp


def conical_frustum_gaussian(t0, t1, radius):
    """Mean distance and variances of the uniform distribution over a conical frustum (mip-NeRF eq. 7).

    Args:
      t0, t1: float32 [...] interval ends along the ray (``t0 < t1``); radius: float32 [...] or scalar, the
        cone's radius at distance 1 along the (unit) direction.
    Returns:
      (mean_t [...], var_t [...] along the ray, var_r [...] perpendicular to it, per axis).

    For ``[t0, t1] = [1, 3]`` (midpoint 2, half-width 1, so ``3 mu^2 + hw^2 = 13``): the mean lies beyond the
    midpoint, ``2 + 2 * 2 * 1 / 13``, because the cone widens with distance; ``var_t = 1/3 - (4/15) 47 / 169``;
    ``var_r = r^2 (1 + 5/12 - (4/15) / 13)``.

    >>> mean_t, var_t, var_r = conical_frustum_gaussian(jnp.array(1.0), jnp.array(3.0), 0.1)
    >>> round(float(mean_t), 4), round(float(var_t), 4), round(float(var_r), 5)
    (2.3077, 0.2592, 0.01396)
    """
    mu = 0.5 * (t0 + t1)
    hw = 0.5 * (t1 - t0)
    denom = 3.0 * mu ** 2 + hw ** 2
    mean_t = mu + 2.0 * mu * hw ** 2 / denom
    var_t = hw ** 2 / 3.0 - (4.0 / 15.0) * (hw ** 4 * (12.0 * mu ** 2 - hw ** 2)) / denom ** 2
    var_r = radius ** 2 * (mu ** 2 / 4.0 + (5.0 / 12.0) * hw ** 2 - (4.0 / 15.0) * hw ** 4 / denom)
    return mean_t, var_t, var_r


def frustum_to_gaussian(origins, directions, t0, t1, radius):
    """3-D mean [..., S, 3] and diagonal covariance [..., S, 3] of the frusta ``[t0, t1]`` [..., S].

    ``origins``, ``directions`` [..., 3] (unit directions); ``radius`` [...] (broadcast over samples).

    A ray along +z: the covariance is ``var_t`` along it and ``var_r`` across it.

    >>> t0, t1 = jnp.array([[1.0, 2.0]]), jnp.array([[3.0, 4.0]])  # 1 ray, 2 frusta
    >>> mean, cov = frustum_to_gaussian(jnp.zeros((1, 3)), jnp.array([[0.0, 0.0, 1.0]]), t0, t1, jnp.array([0.1]))
    >>> mean.shape, cov.shape
    ((1, 2, 3), (1, 2, 3))
    >>> [round(float(v), 5) for v in cov[0, 0]]  # the [1, 3] frustum of conical_frustum_gaussian
    [0.01396, 0.01396, 0.25917]
    """
    mean_t, var_t, var_r = conical_frustum_gaussian(t0, t1, radius[..., None] if jnp.ndim(radius) else radius)
    d = directions[..., None, :]
    mean = origins[..., None, :] + mean_t[..., None] * d
    dd = d ** 2
    cov = var_t[..., None] * dd + var_r[..., None] * (1.0 - dd / jnp.maximum(jnp.sum(dd, -1, keepdims=True), 1e-10))
    return mean, cov


def integrated_pos_enc(mean, cov_diag, num_freqs: int, include_input: bool = True):
    """Expected positional encoding of ``x ~ N(mean, diag(cov_diag))`` ([..., D] each).

    Laid out exactly like :func:`nerfkit.encodings.positional_encoding` (``[mean, then per octave k:
    E sin(2^k x), E cos(2^k x)]``), so a network takes either encoding unchanged; with zero covariance it
    *is* the positional encoding of ``mean``.

    >>> from nerfkit.encodings import positional_encoding
    >>> x = jnp.array([[0.1, -0.2, 0.3]])
    >>> integrated_pos_enc(x, jnp.zeros_like(x), 4).shape
    (1, 27)
    >>> bool(jnp.allclose(integrated_pos_enc(x, jnp.zeros_like(x), 4), positional_encoding(x, 4), atol=1e-6))
    True
    >>> float(jnp.abs(integrated_pos_enc(x, jnp.full_like(x, 1e4), 4)[:, 3:]).max())  # wide: all damped to 0
    0.0
    """
    scales = 2.0 ** jnp.arange(num_freqs, dtype=mean.dtype)  # [L]
    y = mean[..., None, :] * scales[:, None]  # [..., L, D]
    damp = jnp.exp(-0.5 * cov_diag[..., None, :] * (scales ** 2)[:, None])
    enc = (jnp.stack([jnp.sin(y), jnp.cos(y)], axis=-2) * damp[..., None, :]).reshape(*mean.shape[:-1], -1)
    return jnp.concatenate([mean, enc], axis=-1) if include_input else enc


def pixel_radius(fx):
    """Cone radius at unit distance of a pixel of focal length ``fx`` (pixels): the radius of the disc with the
    variance of a pixel-wide square, ``2 / sqrt(12) / fx`` (mip-NeRF's choice).

    >>> round(float(pixel_radius(100.0)), 6)  # 0.57735 / 100
    0.005774
    """
    return 2.0 / math.sqrt(12.0) / fx  # plain Python on a float: no device computation for one number
