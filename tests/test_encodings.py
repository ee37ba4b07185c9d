"""Tests for nerfkit.encodings: NeRF's positional encoding (eq. 4, without pi)."""

from __future__ import annotations

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from nerfkit.encodings import encoding_dim, positional_encoding


@pytest.mark.parametrize("num_freqs", [1, 4, 10])
def test_output_dim(num_freqs):
    x = jnp.zeros((5, 7, 3))
    out = positional_encoding(x, num_freqs)
    assert out.shape == (5, 7, 3 * (1 + 2 * num_freqs))
    assert encoding_dim(3, num_freqs) == 3 * (1 + 2 * num_freqs)
    assert positional_encoding(x, num_freqs, include_input=False).shape == (5, 7, 3 * 2 * num_freqs)
    assert encoding_dim(3, num_freqs, include_input=False) == 6 * num_freqs


def test_octaves_are_powers_of_two():
    # Layout: [x (3), then per octave k: sin(2^k x) (3), cos(2^k x) (3)].
    rng = np.random.default_rng(0)
    x = rng.uniform(-1.5, 1.5, (64, 3)).astype(np.float32)
    num_freqs = 10
    out = np.asarray(jax.jit(positional_encoding, static_argnums=1)(jnp.asarray(x), num_freqs))
    np.testing.assert_array_equal(out[:, :3], x)
    xd = x.astype(np.float64)
    for k in range(num_freqs):
        s = out[:, 3 + 6 * k: 6 + 6 * k]
        c = out[:, 6 + 6 * k: 9 + 6 * k]
        # 2^k x is exact in float32; the tolerance covers float32 sin and the pi/2 phase shift used for cos
        # at arguments up to 2^9 * 1.5 = 768 (float32 spacing there is 6e-5).
        np.testing.assert_allclose(s, np.sin(2.0 ** k * xd), atol=2e-4, err_msg=f"sin, octave {k}")
        np.testing.assert_allclose(c, np.cos(2.0 ** k * xd), atol=2e-4, err_msg=f"cos, octave {k}")


def test_frequency_is_not_scaled_by_pi():
    # At x = pi/2: sin(2^0 x) = 1, cos(2^0 x) = 0, sin(2 x) = 0, cos(2 x) = -1 (with a factor pi, sin(pi^2/2) = -0.98).
    x = jnp.full((1, 3), jnp.pi / 2)
    out = np.asarray(positional_encoding(x, 2))[0]
    np.testing.assert_allclose(out[3:6], 1.0, atol=1e-6)
    np.testing.assert_allclose(out[6:9], 0.0, atol=1e-6)
    np.testing.assert_allclose(out[9:12], 0.0, atol=1e-6)
    np.testing.assert_allclose(out[12:15], -1.0, atol=1e-6)


def test_without_input():
    x = jnp.asarray(np.random.default_rng(1).uniform(-1, 1, (4, 3)), jnp.float32)
    with_x = np.asarray(positional_encoding(x, 3))
    without = np.asarray(positional_encoding(x, 3, include_input=False))
    np.testing.assert_array_equal(without, with_x[:, 3:])


def test_zero_freqs():
    x = jnp.asarray(np.random.default_rng(2).uniform(-1, 1, (4, 3)), jnp.float32)
    np.testing.assert_array_equal(np.asarray(positional_encoding(x, 0)), np.asarray(x))
    assert positional_encoding(x, 0, include_input=False).shape == (4, 0)
    assert encoding_dim(3, 0) == 3 and encoding_dim(3, 0, include_input=False) == 0


# ------------------------------------------------------------------------------------------ hash grid
def _hash_reference(x, table, resolutions):
    """Plain-Python multiresolution hash encoding: loops over points, levels and the 8 corners."""
    levels, size, feats = table.shape
    out = np.zeros((x.shape[0], levels * feats))
    primes = (1, 2654435761, 805459861)
    for n, p in enumerate(np.clip(x, 0, 1)):
        for lvl, res in enumerate(resolutions):
            q = p * res
            q0 = np.minimum(np.floor(q), res - 1)
            f = q - q0
            acc = np.zeros(feats)
            for c in range(8):
                corner = np.array([(c >> 2) & 1, (c >> 1) & 1, c & 1])
                idx = (q0 + corner).astype(np.uint64)
                w = np.prod(np.where(corner == 1, f, 1 - f))
                if (res + 1) ** 3 <= size:
                    row = int(idx[0] + idx[1] * (res + 1) + idx[2] * (res + 1) ** 2)
                else:
                    h = 0
                    for i in range(3):
                        h ^= (int(idx[i]) * primes[i]) & 0xFFFFFFFF
                    row = h % size
                acc += w * table[lvl, row]
            out[n, lvl * feats:(lvl + 1) * feats] = acc
    return out


def test_hash_grid_matches_brute_force():
    from nerfkit.encodings import hash_grid_encoding, hash_grid_resolutions, hash_grid_indices

    res = hash_grid_resolutions(4, 2, 40)
    assert res[0] == 2 and res[-1] == 40 and res == sorted(res)
    rng = np.random.default_rng(0)
    table = rng.normal(size=(4, 512, 2)).astype(np.float32)  # levels 0-1 dense ((N+1)^3 <= 512), 2-3 hashed
    x = rng.uniform(size=(50, 3)).astype(np.float32)
    x[0] = [0.0, 0.0, 0.0]
    x[1] = [1.0, 1.0, 1.0]  # the far corner stays inside the last cell
    got = np.asarray(hash_grid_encoding(jnp.asarray(x), jnp.asarray(table), res))
    np.testing.assert_allclose(got, _hash_reference(x, table, res), rtol=1e-5, atol=1e-5)
    rows, w = hash_grid_indices(jnp.asarray(x), res, 512)
    np.testing.assert_allclose(np.asarray(w).sum(-1), 1.0, atol=1e-6)  # trilinear weights partition unity
    assert int(rows.max()) < 4 * 512 and int(rows.min()) >= 0


def test_hash_grid_gradients():
    from nerfkit.encodings import hash_grid_encoding

    res = [2, 5]
    table = jnp.zeros((2, 256, 1))
    x = jnp.array([[0.33, 0.61, 0.13]])  # on no vertex at either level: all 8 weights non-zero
    # d(sum of features)/d(table) is the trilinear weight at each touched row: 8 per level, summing to 1.
    g = jax.jit(jax.grad(lambda tb: jnp.sum(hash_grid_encoding(x, tb, res))))(table)
    g = np.asarray(g)[..., 0]
    assert np.isfinite(g).all()
    for lvl in range(2):
        assert (g[lvl] > 0).sum() == 8
        np.testing.assert_allclose(g[lvl].sum(), 1.0, atol=1e-6)
    # Gradient with respect to the position is finite too (the field is differentiable in x).
    tb = jax.random.normal(jax.random.key(0), (2, 256, 1))
    gx = jax.grad(lambda p: jnp.sum(hash_grid_encoding(p, tb, res)))(x)
    assert np.isfinite(np.asarray(gx)).all()
