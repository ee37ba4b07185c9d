"""Tests for nerfkit.metrics (tiny images: the SSIM jit compiles once per shape)."""

import numpy as np
import pytest

from nerfkit import metrics


def _gaussian_ssim_reference(a, b, size=11, sigma=1.5, k1=0.01, k2=0.03, max_val=1.0):
    """Independent NumPy SSIM: separable Gaussian filter in 'valid' mode, population (co)variances."""
    a = np.asarray(a, np.float64)
    b = np.asarray(b, np.float64)
    x = np.arange(size) - (size - 1) / 2.0
    g = np.exp(-0.5 * (x / sigma) ** 2)
    g /= g.sum()

    def blur(z):  # [H, W, C] -> [H-size+1, W-size+1, C]
        z = np.lib.stride_tricks.sliding_window_view(z, size, axis=0) @ g
        return np.lib.stride_tricks.sliding_window_view(z, size, axis=1) @ g

    mu_a, mu_b = blur(a), blur(b)
    var_a = blur(a * a) - mu_a**2
    var_b = blur(b * b) - mu_b**2
    cov = blur(a * b) - mu_a * mu_b
    c1, c2 = (k1 * max_val) ** 2, (k2 * max_val) ** 2
    s = ((2 * mu_a * mu_b + c1) * (2 * cov + c2)) / ((mu_a**2 + mu_b**2 + c1) * (var_a + var_b + c2))
    return float(s.mean())


@pytest.fixture(scope="module")
def images():
    rng = np.random.default_rng(0)
    gt = rng.uniform(0.0, 1.0, (24, 20, 3)).astype(np.float32)
    # Smooth-ish structure plus noise, so SSIM is somewhere in the middle.
    yy, xx = np.mgrid[0:24, 0:20]
    gt = (0.5 * gt + 0.5 * (0.5 + 0.5 * np.sin(xx / 3.0 + yy / 5.0))[..., None]).astype(np.float32)
    pred = np.clip(gt + rng.normal(0.0, 0.08, gt.shape), 0, 1).astype(np.float32)
    return pred, gt


def test_psnr_constant_offset_is_20db():
    gt = np.random.default_rng(1).uniform(0.0, 0.8, (8, 9, 3))
    assert metrics.psnr(gt + 0.1, gt) == pytest.approx(20.0, abs=1e-6)
    assert metrics.psnr(gt, gt) == float("inf")
    assert float(metrics.psnr_from_mse(np.float32(0.01))) == pytest.approx(20.0, abs=1e-4)


def test_psnr_from_mse_inside_jit():
    import jax
    import jax.numpy as jnp

    out = jax.jit(metrics.psnr_from_mse)(jnp.array([0.1, 0.001]))
    np.testing.assert_allclose(np.asarray(out), [10.0, 30.0], atol=1e-4)


def test_ssim_identity_and_reference(images):
    pred, gt = images
    assert metrics.ssim(gt, gt) == pytest.approx(1.0, abs=1e-6)
    got = metrics.ssim(pred, gt)
    assert 0.2 < got < 0.95
    assert got == pytest.approx(_gaussian_ssim_reference(pred, gt), abs=1e-4)


def test_ssim_matches_scikit_image(images):
    skm = pytest.importorskip("skimage.metrics")
    pred, gt = images
    want = skm.structural_similarity(
        pred, gt, gaussian_weights=True, sigma=1.5, use_sample_covariance=False, data_range=1, channel_axis=-1
    )
    assert metrics.ssim(pred, gt) == pytest.approx(want, abs=1e-4)


def test_ssim_rejects_small_images():
    with pytest.raises(ValueError):
        metrics.ssim(np.zeros((8, 8, 3)), np.zeros((8, 8, 3)))


def test_quantize_idempotent_and_clipped():
    x = np.random.default_rng(2).uniform(-0.2, 1.2, (5, 6, 3))
    q = metrics.quantize(x)
    assert q.dtype == np.float32 and q.min() >= 0.0 and q.max() <= 1.0
    np.testing.assert_array_equal(metrics.quantize(q), q)
    np.testing.assert_allclose(q * 255.0, np.round(q * 255.0), atol=1e-4)


def test_image_metrics_quantises(images):
    pred, gt = images
    m = metrics.image_metrics(pred, gt)
    assert set(m) == {"psnr", "ssim"}
    assert m["psnr"] == pytest.approx(metrics.psnr(metrics.quantize(pred), metrics.quantize(gt)))
    # A difference below half an 8-bit level vanishes after quantisation.
    g = metrics.quantize(gt)
    assert metrics.image_metrics(g + 0.001, g)["psnr"] == float("inf")
