"""Input encodings for coordinate networks (pure functions, usable under ``jit``)."""

from __future__ import annotations

import functools
import math

import jax.numpy as jnp
import numpy as np


def positional_encoding(x: jnp.ndarray, num_freqs: int, include_input: bool = True) -> jnp.ndarray:
    """NeRF's positional encoding gamma(x) (Mildenhall et al. 2020, eq. 4, without the factor pi).

    ``gamma(x) = [x, sin(2^0 x), cos(2^0 x), ..., sin(2^(L-1) x), cos(2^(L-1) x)]`` applied per coordinate,
    as in the reference implementation (scene coordinates are not normalised to [-1, 1], so pi is dropped).

    Args:
      x: float32 [..., D].
      num_freqs: L, the number of octaves (10 for positions and 4 for directions in the paper).
      include_input: prepend ``x`` itself.
    Returns:
      float32 [..., D * (include_input + 2 L)], ordered [x, then for each octave k: sin(2^k x), cos(2^k x)].

    >>> positional_encoding(jnp.zeros((2, 3)), 4).shape
    (2, 27)
    """
    if num_freqs == 0:
        return x if include_input else x[..., :0]
    scales = 2.0 ** jnp.arange(num_freqs, dtype=x.dtype)  # [L]
    xb = x[..., None, :] * scales[:, None]  # [..., L, D]
    # sin(t + pi/2) = cos(t): one transcendental call for both halves.
    phases = jnp.stack([xb, xb + 0.5 * jnp.pi], axis=-2)  # [..., L, 2, D]
    enc = jnp.sin(phases).reshape(*x.shape[:-1], -1)
    return jnp.concatenate([x, enc], axis=-1) if include_input else enc


def encoding_dim(in_dim: int, num_freqs: int, include_input: bool = True) -> int:
    """Output width of :func:`positional_encoding`: ``D * (include_input + 2 L)``.

    >>> encoding_dim(3, 10), encoding_dim(3, 4), encoding_dim(3, 4, include_input=False)
    (63, 27, 24)
    """
    return in_dim * (int(include_input) + 2 * num_freqs)


@functools.lru_cache(maxsize=64)
def gaussian_fourier_matrix(num_features: int, scale: float, seed: int = 0, in_dim: int = 3) -> np.ndarray:
    """The fixed frequency matrix B of Gaussian random Fourier features: entries i.i.d. N(0, scale^2).

    Drawn with NumPy's PCG64 generator from ``seed`` (not from JAX's PRNG, whose streams have changed between
    JAX versions), so the same config rebuilds the same B in any process: B is never trained and never
    stored in a checkpoint.

    Args:
      num_features: m, the number of frequencies; scale: sigma; seed: generator seed; in_dim: D.
    Returns:
      float32 [m, D], read-only (cached).

    >>> gaussian_fourier_matrix(4, 10.0).shape
    (4, 3)
    """
    b = (np.random.default_rng(seed).standard_normal((num_features, in_dim)) * scale).astype(np.float32)
    b.setflags(write=False)
    return b


def fourier_features(v: jnp.ndarray, b: jnp.ndarray, var: jnp.ndarray | None = None) -> jnp.ndarray:
    """Random Fourier features (Tancik et al. 2020, section 4): ``gamma(v) = [cos(2 pi B v), sin(2 pi B v)]``.

    With ``B`` from :func:`gaussian_fourier_matrix` this is their Gaussian mapping (a_j = 1): feature j is a
    plane wave of ``|B_j|`` cycles per unit of ``v`` along ``B_j``.

    Args:
      v: float32 [..., D] points (nerfkit's fields pass the scene box mapped to [0, 1]^D); b: float32 [m, D].
      var: optional float32 [..., D] diagonal covariance of ``v``: then the features are their expectation
        for ``v ~ N(v, diag(var))`` (as mip-NeRF's IPE), each damped by ``exp(-2 pi^2 sum_d B_jd^2 var_d)``.
    Returns:
      float32 [..., 2 m], ordered [cos of all m frequencies, then sin of all m].

    >>> fourier_features(jnp.zeros((2, 3)), jnp.ones((4, 3))).shape
    (2, 8)
    """
    w = 2.0 * np.pi * jnp.asarray(b, v.dtype)  # [m, D]
    proj = v @ w.T  # [..., m]: one matmul (counted by field_flops)
    # cos(t) = sin(t + pi/2): one transcendental call for both halves.
    enc = jnp.sin(jnp.concatenate([proj + 0.5 * np.pi, proj], axis=-1))
    if var is None:
        return enc
    damp = jnp.exp(-0.5 * (var @ (w ** 2).T))  # E[e^{i w.x}] = e^{i w.mu} e^{-w^T Sigma w / 2}
    return enc * jnp.concatenate([damp, damp], axis=-1)


def fourier_dim(num_features: int) -> int:
    """Output width of :func:`fourier_features`: 2 m.

    >>> fourier_dim(4)
    8
    """
    return 2 * num_features


_PRIMES = (1, 2654435761, 805459861)  # Instant-NGP's spatial hash (Teschner et al. 2003)


def hash_grid_resolutions(levels: int, min_res: int, max_res: int) -> list[int]:
    """Per-level grid resolution ``floor(N_min * b^l)`` with ``b = (N_max / N_min)^(1 / (L - 1))`` (Instant-NGP eq. 2-3).

    >>> hash_grid_resolutions(3, 16, 64)  # b = (64 / 16)^(1/2) = 2
    [16, 32, 64]
    >>> hash_grid_resolutions(4, 2, 20)  # b = 10^(1/3): 2, 4.3, 9.3, 20
    [2, 4, 9, 20]
    """
    if levels == 1:
        return [min_res]
    b = math.exp((math.log(max_res) - math.log(min_res)) / (levels - 1))
    # The epsilon keeps floor() from losing a whole cell to rounding (2 * 20^(3/3) = 39.99999...).
    return [int(math.floor(min_res * b**level + 1e-6)) for level in range(levels)]


def hash_grid_indices(x: jnp.ndarray, resolutions: list[int], table_size: int):
    """Table rows and trilinear weights of the 8 cell corners around each point, at every level.

    Levels whose ``(N + 1)^3`` vertices fit in the table are indexed densely (one row per vertex); finer
    levels use the spatial hash ``(x * 1) xor (y * 2654435761) xor (z * 805459861) mod T``.

    Args:
      x: float32 [..., 3] points in [0, 1]^3 (clipped).
      resolutions: N_l per level; table_size: T rows per level.
    Returns:
      (rows int32 [..., L, 8] into the flattened [L * T] table, weights float32 [..., L, 8]).

    Level 0 below is dense (a 3 x 3 x 3 vertex grid, row ``x + 3 y + 9 z``), level 1 hashed; the point sits in
    the middle of a level-0 cell, so its 8 corners weigh 1/8 each:

    >>> rows, w = hash_grid_indices(jnp.full((1, 3), 0.25), [2, 64], 64)
    >>> rows.shape, w.shape
    ((1, 2, 8), (1, 2, 8))
    >>> rows[0, 0].tolist(), w[0, 0].tolist()
    ([0, 9, 3, 12, 1, 10, 4, 13], [0.125, 0.125, 0.125, 0.125, 0.125, 0.125, 0.125, 0.125])
    >>> w.sum(-1).tolist()  # the weights of each level sum to 1
    [[1.0, 1.0]]
    """
    x = jnp.clip(x, 0.0, 1.0)
    # All levels at once (arrays [..., L, 8, 3]); which levels are dense is known when tracing.
    res = np.asarray(resolutions, np.int64)[:, None]  # [L, 1]
    p = x[..., None, :] * res.astype(np.float32)
    p0 = jnp.minimum(jnp.floor(p), res - 1)
    frac = p - p0  # [..., L, 3]
    corners = np.array([[(c >> 2) & 1, (c >> 1) & 1, c & 1] for c in range(8)], np.uint32)  # [8, 3]
    idx = p0.astype(jnp.uint32)[..., None, :] + corners  # [..., L, 8, 3]
    w = jnp.prod(jnp.where(corners.astype(bool), frac[..., None, :], 1.0 - frac[..., None, :]), axis=-1)
    side = (res + 1).astype(np.uint32)
    dense = idx[..., 0] + idx[..., 1] * side + idx[..., 2] * (side * side)
    hashed = (idx[..., 0] * np.uint32(_PRIMES[0])) ^ (idx[..., 1] * np.uint32(_PRIMES[1])) ^ (
        idx[..., 2] * np.uint32(_PRIMES[2]))
    # Tables have 2^k rows: the modulo is a mask (an integer division is far slower on a CPU).
    hashed = hashed & np.uint32(table_size - 1) if table_size & (table_size - 1) == 0 else hashed % np.uint32(table_size)
    row = jnp.where((res + 1) ** 3 <= table_size, dense, hashed).astype(jnp.int32)
    return row + (np.arange(len(resolutions), dtype=np.int32) * table_size)[:, None], w


def hash_grid_encoding(x: jnp.ndarray, table: jnp.ndarray, resolutions: list[int]) -> jnp.ndarray:
    """Multiresolution hash encoding (Müller et al. 2022): trilinearly interpolated learned features per level.

    Args:
      x: float32 [..., 3] points in [0, 1]^3; table: float32 [L, T, F] features; resolutions: N_l.
    Returns:
      float32 [..., L * F].

    With level 0's feature equal to its row (and level 1 zero), the encoding of (0.25, 0.25, 0.25) (see
    :func:`hash_grid_indices`) is the mean of its corners' rows, ``(0 + 9 + 3 + 12 + 1 + 10 + 4 + 13) / 8``:

    >>> table = jnp.zeros((2, 64, 1)).at[0, :, 0].set(jnp.arange(64.0))
    >>> f = hash_grid_encoding(jnp.full((1, 3), 0.25), table, [2, 64])
    >>> f.shape, float(f[0, 0]), float(f[0, 1])
    ((1, 2), 6.5, 0.0)
    """
    levels, table_size, feats = table.shape
    rows, w = hash_grid_indices(x, resolutions, table_size)
    flat = table.reshape(levels * table_size, feats)
    # One gather per corner, each fused with its weighted add: on a CPU this is several times faster than
    # gathering all 8 corners into one [..., L, 8, F] array and reducing it (measured 0.04 s vs 0.39 s for
    # 131k points x 8 levels), and its gradient is a third faster. Gathering all corners at once and summing them
    # with a batched dot is faster alone, but not inside a train step or a render (0.83-1.16x across presets:
    # benchmarks/hash_encoding.py).
    f = w[..., 0, None] * flat[rows[..., 0]]
    for c in range(1, 8):
        f = f + w[..., c, None] * flat[rows[..., c]]
    return f.reshape(*x.shape[:-1], levels * feats)
