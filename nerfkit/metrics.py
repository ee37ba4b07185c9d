"""Image quality metrics (PSNR, SSIM) under the project's benchmark protocol.

The full protocols (data, budgets, what to report) are in ``BENCHMARKS.md`` of the shared docs folder
beside the repository (``../shared/docs/BENCHMARKS.md`` from the repository root; it is not part of the
repository). The part these metrics implement, stated here in full:

Protocol: composite ground truth on the training background, quantise prediction and ground truth to
8-bit (:func:`quantize`), then PSNR = -10 log10(MSE) on [0, 1] images and SSIM with dm-pix defaults
(Gaussian window 11, sigma 1.5, K1 0.01, K2 0.03, computed per channel and averaged, 'valid' filtering).
:func:`image_metrics` does all of it for one view; the scene figure is the mean over views.

:func:`psnr` and :func:`ssim` do *not* quantise; callers that follow the protocol either quantise
themselves or use :func:`image_metrics`.
"""

from __future__ import annotations

import dm_pix
import jax
import jax.numpy as jnp
import numpy as np

SSIM_FILTER_SIZE = 11


def quantize(img) -> np.ndarray:
    """Round an image to 8-bit levels and return it as float32 in [0, 1].

    Args:
      img: float array of any shape, nominally in [0, 1]; values outside are clipped first, NaN becomes 0.
    Returns:
      float32 array of the same shape whose values are ``k / 255`` for integers ``k`` in [0, 255].
      Idempotent: ``quantize(quantize(x)) == quantize(x)``.

    >>> (quantize(np.array([0.0, 0.5, 1.2, -0.1, np.nan])) * 255).round().tolist()  # 127.5 rounds to even
    [0.0, 128.0, 255.0, 0.0, 0.0]
    """
    x = np.nan_to_num(np.asarray(img, np.float32), nan=0.0)
    return (np.round(np.clip(x, 0.0, 1.0) * 255.0) / 255.0).astype(np.float32)


def psnr_from_mse(mse):
    """PSNR in dB of images in [0, 1] from their mean squared error: ``-10 log10(mse)``.

    Works on Python floats, NumPy and JAX arrays, including traced values inside ``jit`` (it always
    returns a JAX array). ``mse == 0`` gives ``inf``.

    >>> round(float(psnr_from_mse(0.01)), 4), float(psnr_from_mse(0.0))
    (20.0, inf)
    """
    return -10.0 * jnp.log10(mse)


def psnr(pred, gt) -> float:
    """Peak signal-to-noise ratio in dB of ``pred`` against ``gt``, both in [0, 1].

    Args:
      pred, gt: float arrays of the same shape (e.g. [H, W, 3]); no quantisation is applied here.
    Returns:
      ``-10 log10(MSE)`` computed in float64. Identical images (MSE = 0) give ``float('inf')`` rather
      than an arbitrary cap, so a mean over views containing one exact match is ``inf``: callers that
      average should know their data can't hit it (8-bit quantised renderings essentially never do).

    >>> round(psnr(np.zeros((4, 4)), np.full((4, 4), 0.1)), 6)  # MSE 0.01
    20.0
    >>> psnr(np.zeros((4, 4)), np.zeros((4, 4)))
    inf
    """
    pred = np.asarray(pred, np.float64)
    gt = np.asarray(gt, np.float64)
    if pred.shape != gt.shape:
        raise ValueError(f"psnr: shape mismatch {pred.shape} vs {gt.shape}")
    mse = float(np.mean((pred - gt) ** 2))
    if mse == 0.0:
        return float("inf")
    return float(-10.0 * np.log10(mse))


# Compiled once per image shape; dm-pix defaults are the protocol's parameters.
_ssim_jit = jax.jit(lambda a, b: dm_pix.ssim(a, b, max_val=1.0))


def ssim(pred, gt) -> float:
    """Structural similarity of ``pred`` against ``gt`` (dm-pix ``ssim`` defaults, ``max_val=1``).

    Gaussian window 11 with sigma 1.5, K1 = 0.01, K2 = 0.03, 'valid' filtering (no padding), computed per
    channel and averaged over channels and pixels. Equals scikit-image's ``structural_similarity`` with
    ``gaussian_weights=True, sigma=1.5, use_sample_covariance=False, data_range=1, channel_axis=-1``.

    Args:
      pred, gt: float arrays [H, W, C] (or [H, W], treated as one channel) with H, W >= 11. No
        quantisation is applied here.
    Returns:
      the mean SSIM as a Python float (1.0 for identical images).

    >>> img = np.linspace(0.0, 1.0, 11 * 11 * 3).reshape(11, 11, 3)
    >>> round(ssim(img, img), 4), ssim(img, 0.5 * img) < 1.0
    (1.0, True)
    """
    a = np.asarray(pred, np.float32)
    b = np.asarray(gt, np.float32)
    if a.shape != b.shape:
        raise ValueError(f"ssim: shape mismatch {a.shape} vs {b.shape}")
    if a.ndim == 2:
        a, b = a[..., None], b[..., None]
    if a.ndim != 3:
        raise ValueError(f"ssim: expected [H, W, C] images, got shape {a.shape}")
    if min(a.shape[:2]) < SSIM_FILTER_SIZE:
        raise ValueError(f"ssim: images must be at least {SSIM_FILTER_SIZE}x{SSIM_FILTER_SIZE}, got {a.shape[:2]}")
    return float(_ssim_jit(a, b))


def image_metrics(pred, gt) -> dict[str, float]:
    """The protocol's metrics for one view: both images quantised to 8-bit, then PSNR and SSIM.

    Args:
      pred: float [H, W, 3] rendering in [0, 1].
      gt: float [H, W, 3] ground truth already composited on the training background.
    Returns:
      ``{"psnr": dB, "ssim": value}`` as Python floats.

    A prediction off by less than half an 8-bit level quantises to the ground truth:

    >>> gt = (np.arange(11 * 11 * 3) % 256).reshape(11, 11, 3) / 255.0  # on 8-bit levels already
    >>> m = image_metrics(gt + 0.001, gt)
    >>> m["psnr"], round(m["ssim"], 4)
    (inf, 1.0)
    """
    p, g = quantize(pred), quantize(gt)
    return {"psnr": psnr(p, g), "ssim": ssim(p, g)}
