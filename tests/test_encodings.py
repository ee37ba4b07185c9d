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


# ------------------------------------------------------------------------------ Gaussian Fourier features
def _line_power(values: np.ndarray) -> np.ndarray:
    """Power spectrum [F, C] of signals [N, C] sampled along a line (mean removed, Hann window)."""
    v = values - values.mean(axis=0)
    return np.abs(np.fft.rfft(v * np.hanning(v.shape[0])[:, None], axis=0)) ** 2


def test_fourier_matrix_is_gaussian_with_std_sigma():
    from nerfkit.encodings import gaussian_fourier_matrix

    for sigma in (1.0, 7.5, 30.0):
        b = gaussian_fourier_matrix(2048, sigma, seed=3)
        assert b.shape == (2048, 3) and b.dtype == np.float32
        z = b.ravel() / sigma
        # 6144 draws: the standard error of the std is 0.9 %, of the mean 0.013 sigma, of the kurtosis 0.06.
        assert abs(z.std() - 1.0) < 0.04, f"sigma={sigma}: std/sigma = {z.std():.3f}"
        assert abs(z.mean()) < 0.06
        kurtosis = np.mean((z - z.mean()) ** 4) / z.var() ** 2
        assert abs(kurtosis - 3.0) < 0.35, kurtosis  # Gaussian: 3 (a uniform B would give 1.8)
        # The three coordinates are independent draws: no cross-correlation.
        c = np.corrcoef(b.T)
        assert np.all(np.abs(c[np.triu_indices(3, 1)]) < 0.08)
    # Fixed by the seed (rebuilt identically on load), different across seeds.
    np.testing.assert_array_equal(gaussian_fourier_matrix(64, 2.0, seed=5), gaussian_fourier_matrix(64, 2.0, seed=5))
    assert not np.allclose(gaussian_fourier_matrix(64, 2.0, seed=5), gaussian_fourier_matrix(64, 2.0, seed=6))


def test_fourier_features_formula():
    from nerfkit.encodings import fourier_dim, fourier_features

    rng = np.random.default_rng(0)
    b = rng.normal(size=(16, 3)).astype(np.float32) * 3
    v = rng.uniform(size=(32, 3)).astype(np.float32)
    out = np.asarray(jax.jit(fourier_features)(jnp.asarray(v), jnp.asarray(b)))
    assert out.shape == (32, fourier_dim(16)) == (32, 32)
    arg = 2 * np.pi * v.astype(np.float64) @ b.T.astype(np.float64)
    np.testing.assert_allclose(out[:, :16], np.cos(arg), atol=2e-5)  # [cos(2 pi B v), sin(2 pi B v)]
    np.testing.assert_allclose(out[:, 16:], np.sin(arg), atol=2e-5)


def test_fourier_spectrum_sits_at_the_sampled_frequencies():
    """Along a line v = t e_x, feature j is a tone of |B_jx| cycles per unit: its power spectrum peaks there,
    and the spectral centroid of the whole encoding is the mean |B_x| (sigma sqrt(2/pi)), so it doubles with sigma."""
    from nerfkit.encodings import fourier_features, gaussian_fourier_matrix

    length, n = 8.0, 4096  # 8 units of t: FFT bins every 1/8 cycle per unit, Nyquist 256 cycles per unit
    t = np.arange(n) * (length / n)
    v = np.stack([t, np.full(n, 0.3), np.full(n, -0.7)], -1).astype(np.float32)  # y, z: only phase offsets
    freqs = np.fft.rfftfreq(n, d=length / n)  # cycles per unit of t
    centroids = {}
    for sigma in (4.0, 8.0, 16.0):
        b = gaussian_fourier_matrix(512, sigma, seed=0)
        enc = np.asarray(fourier_features(jnp.asarray(v), jnp.asarray(b)))
        power = _line_power(enc)
        # Every cos and sin feature peaks within one bin of its own frequency |B_jx| (when not near DC).
        peak = freqs[np.argmax(power, axis=0)]
        want = np.abs(np.concatenate([b[:, 0], b[:, 0]]))
        away = want > 0.5
        assert away.sum() > 800
        np.testing.assert_allclose(peak[away], want[away], atol=1.0 / length)
        centroids[sigma] = float((freqs[:, None] * power).sum() / power.sum())
        np.testing.assert_allclose(centroids[sigma], np.abs(b[:, 0]).mean(), rtol=0.05)
        np.testing.assert_allclose(centroids[sigma], sigma * np.sqrt(2 / np.pi), rtol=0.08)
    np.testing.assert_allclose(centroids[8.0] / centroids[4.0], 2.0, rtol=0.05)
    np.testing.assert_allclose(centroids[16.0] / centroids[8.0], 2.0, rtol=0.05)


def test_integrated_fourier_features_match_monte_carlo():
    """With a covariance, the features are E[gamma(v)] for v ~ N(mean, diag(var)) (mip-NeRF's trick applied to
    random Fourier features): checked against 200k samples; zero variance gives the plain features."""
    from nerfkit.encodings import fourier_features, gaussian_fourier_matrix

    b = jnp.asarray(gaussian_fourier_matrix(16, 3.0, seed=1))
    mean = np.array([[0.3, 0.6, 0.45], [0.8, 0.1, 0.5]], np.float32)
    var = np.array([[1e-3, 4e-3, 2e-4], [2e-2, 1e-4, 5e-3]], np.float32)  # damping from ~1 to ~0
    want = np.asarray(fourier_features(jnp.asarray(mean), b, jnp.asarray(var)))
    rng = np.random.default_rng(0)
    for i in range(2):
        v = mean[i] + rng.normal(size=(200_000, 3)).astype(np.float32) * np.sqrt(var[i])
        mc = np.asarray(fourier_features(jnp.asarray(v), b)).mean(axis=0)
        np.testing.assert_allclose(want[i], mc, atol=6e-3)  # MC standard error <= 0.0016
    assert np.abs(want[1]).min() < 0.05 and np.abs(want[0]).max() > 0.5  # some damped away, some kept
    np.testing.assert_allclose(np.asarray(fourier_features(jnp.asarray(mean), b, jnp.zeros((2, 3)))),
                               np.asarray(fourier_features(jnp.asarray(mean), b)), atol=1e-6)
