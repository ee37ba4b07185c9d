"""Radiance fields as Flax NNX modules.

One MLP, :class:`NeRFField`, with interchangeable position encodings and activations:

- ``encoding="frequency"``: NeRF's positional encoding of world coordinates (``pos_freqs=0``: raw xyz).
- ``encoding="hash"``: a multiresolution hash grid over the scene box (Instant-NGP).
- ``encoding="fourier"``: Gaussian random Fourier features (Tancik et al. 2020) of the scene box mapped to
  [0, 1]^3, so ``fourier_scale`` is in cycles per side of the box. ``B`` is a constant rebuilt from
  ``fourier_seed``: it is not an ``nnx.Param`` (the optimiser never sees it) and not state at all, so
  ``nnx.split(model, nnx.Param)`` and a checkpoint restore into a freshly built model both just work.
- ``activation="sine"``: SIREN (Sitzmann et al. 2020): every hidden layer computes ``sin(w0 (W h + b))``;
  the first layer's W ~ U(-1/n, 1/n), later layers' W ~ U(-sqrt(6/n)/w0, sqrt(6/n)/w0) (n: fan-in), biases
  U(-1/sqrt(n), 1/sqrt(n)) (PyTorch's default, which the SIREN reference code keeps; zero biases would make
  the field an odd function of its input). The linear heads (density, feature, colour) keep Flax's
  default LeCun-normal initialisation, which suits inputs of variance 1/2 (SIREN's arcsine-distributed
  activations).

Every field also takes an optional diagonal covariance ``cov`` of its input points (mip-NeRF: the Gaussian of
a conical frustum, ``--model.mip``): ``frequency`` then uses the integrated positional encoding and
``fourier`` the same expectation of its features; the hash grid has no integrated form and refuses it.
"""

from __future__ import annotations

import dataclasses
import math
from typing import Callable

import jax
import jax.numpy as jnp
from flax import nnx

from nerfkit import mip
from nerfkit.config import FieldConfig
from nerfkit.encodings import (encoding_dim, fourier_dim, fourier_features, gaussian_fourier_matrix,
                                hash_grid_encoding, hash_grid_resolutions, positional_encoding)
from nerfkit.errors import InputError

_ACTIVATIONS = {"relu": jax.nn.relu, "softplus": jax.nn.softplus, "silu": jax.nn.silu, "gelu": jax.nn.gelu}
_DENSITY = {"relu": jax.nn.relu, "softplus": jax.nn.softplus, "exp": lambda x: jnp.exp(jnp.minimum(x, 15.0))}


def _uniform(bound: float):
    """Initializer drawing from U(-bound, bound)."""

    def init(key, shape, dtype=jnp.float32):
        return jax.random.uniform(key, shape, dtype, -bound, bound)

    return init


def siren_init(fan_in: int, w0: float, first: bool) -> dict:
    """``kernel_init`` and ``bias_init`` of a SIREN layer ``sin(w0 (W h + b))`` (Sitzmann et al. 2020, sec. 3.2).

    W ~ U(-1/n, 1/n) for the first layer, U(-sqrt(6/n)/w0, sqrt(6/n)/w0) after it; b ~ U(-1/sqrt(n), 1/sqrt(n)).
    """
    bound = 1.0 / fan_in if first else math.sqrt(6.0 / fan_in) / w0
    return {"kernel_init": _uniform(bound), "bias_init": _uniform(1.0 / math.sqrt(fan_in))}


def _unit(field: "NeRFField", x: jax.Array):
    """Points in the scene box mapped to [0, 1]^3, and the box's (lo, hi)."""
    lo, hi = jnp.asarray(field.aabb[0]), jnp.asarray(field.aabb[1])
    return (x - lo) / (hi - lo), lo, hi


def _encode_frequency(field: "NeRFField", x: jax.Array, cov: jax.Array | None) -> jax.Array:
    if cov is not None:
        return mip.integrated_pos_enc(x, cov, field.cfg.pos_freqs)
    return positional_encoding(x, field.cfg.pos_freqs)


def _encode_hash(field: "NeRFField", x: jax.Array, cov: jax.Array | None) -> jax.Array:
    if cov is not None:
        raise InputError("the hash grid has no integrated (mip) encoding: use encoding frequency or fourier",
                         field="--model.mip")
    return hash_grid_encoding(_unit(field, x)[0], field.table[...], field.resolutions)


def _encode_fourier(field: "NeRFField", x: jax.Array, cov: jax.Array | None) -> jax.Array:
    cfg = field.cfg
    unit, lo, hi = _unit(field, x)
    b = gaussian_fourier_matrix(cfg.fourier_features, cfg.fourier_scale, cfg.fourier_seed)
    return fourier_features(unit, b, None if cov is None else cov / (hi - lo) ** 2)


def _hash_table(field: "NeRFField", cfg: FieldConfig, rngs: nnx.Rngs) -> None:
    field.resolutions = tuple(hash_grid_resolutions(cfg.hash_levels, cfg.hash_min_res, cfg.hash_max_res))
    shape = (cfg.hash_levels, 2**cfg.hash_log2_size, cfg.hash_features)
    field.table = nnx.Param(jax.random.uniform(rngs.params(), shape, jnp.float32, -1e-4, 1e-4))


@dataclasses.dataclass(frozen=True)
class Encoding:
    """One position encoding of :class:`NeRFField`: its output width, how it encodes points (``cov``: the
    points' diagonal covariances, for mip-NeRF, or None), what it adds to the field at construction (its
    parameters), and the matmul FLOPs of one evaluation (for utilisation figures)."""

    dim: Callable[[FieldConfig], int]
    encode: Callable[["NeRFField", jax.Array, "jax.Array | None"], jax.Array]
    init: Callable[["NeRFField", FieldConfig, nnx.Rngs], None] = lambda field, cfg, rngs: None
    flops: Callable[[FieldConfig], int] = lambda cfg: 0


ENCODINGS = {
    "frequency": Encoding(dim=lambda cfg: encoding_dim(3, cfg.pos_freqs), encode=_encode_frequency),
    "hash": Encoding(dim=lambda cfg: cfg.hash_levels * cfg.hash_features, encode=_encode_hash, init=_hash_table),
    "fourier": Encoding(dim=lambda cfg: fourier_dim(cfg.fourier_features), encode=_encode_fourier,
                        flops=lambda cfg: 2 * 3 * cfg.fourier_features),  # the projection B v, 3 -> m
}


def input_dim(cfg: FieldConfig) -> int:
    """Width of the encoded position that enters the trunk."""
    return ENCODINGS[cfg.encoding].dim(cfg)


class NeRFField(nnx.Module):
    """The NeRF MLP (Mildenhall et al. 2020, fig. 7), configurable.

    Encoded position -> ``depth`` dense layers of ``width`` (the encoded input concatenated again after the
    layers in ``skips``) -> density head; a linear feature layer, concatenated with the encoded view
    direction, -> one ``view_width`` layer -> sigmoid RGB. The encoding and the hidden activation (SIREN's
    sine included) are chosen by the config; see the module docstring.
    """

    def __init__(self, cfg: FieldConfig, *, rngs: nnx.Rngs, dtype=jnp.float32, aabb=((-1.5,) * 3, (1.5,) * 3),
                 appearance_dim: int = 0):
        self.cfg = cfg
        self.appearance_dim = appearance_dim  # width of a per-image appearance code fed to the colour branch
        self.dtype = dtype
        self.aabb = tuple(tuple(float(v) for v in row) for row in aabb)  # static: hashable, in the graphdef
        ENCODINGS[cfg.encoding].init(self, cfg, rngs)
        in_dim = input_dim(cfg)
        sine = cfg.activation == "sine"

        def hidden(n_in, n_out, first=False):
            init = siren_init(n_in, cfg.siren_w0, first) if sine else {}
            return nnx.Linear(n_in, n_out, rngs=rngs, dtype=dtype, **init)

        trunk = []
        d = in_dim
        for i in range(cfg.depth):
            trunk.append(hidden(d, cfg.width, first=i == 0))
            d = cfg.width + (in_dim if i in cfg.skips else 0)
        self.trunk = nnx.List(trunk)
        self.density = nnx.Linear(d, 1, rngs=rngs, dtype=dtype)
        if cfg.use_viewdirs:
            self.feature = nnx.Linear(d, cfg.width, rngs=rngs, dtype=dtype)
            self.view = hidden(cfg.width + encoding_dim(3, cfg.dir_freqs) + appearance_dim, cfg.view_width)
            self.color = nnx.Linear(cfg.view_width, 3, rngs=rngs, dtype=dtype)
        else:
            self.color = nnx.Linear(d + appearance_dim, 3, rngs=rngs, dtype=dtype)

    def _act(self, z: jax.Array) -> jax.Array:
        if self.cfg.activation == "sine":
            return jnp.sin(self.cfg.siren_w0 * z)
        return _ACTIVATIONS[self.cfg.activation](z)

    def encode(self, x: jax.Array, cov: jax.Array | None = None) -> jax.Array:
        """The encoded position [..., input_dim(cfg)] of points x float32 [..., 3] in world coordinates.

        ``cov``: optional float32 [..., 3] diagonal covariance of x (world units squared): encode the expectation.
        """
        return ENCODINGS[self.cfg.encoding].encode(self, x, cov).astype(self.dtype)

    def _trunk(self, x: jax.Array, cov: jax.Array | None = None):
        cfg = self.cfg
        enc = self.encode(x, cov)
        h = enc
        for i, layer in enumerate(self.trunk):
            h = self._act(layer(h))
            if i in cfg.skips:
                h = jnp.concatenate([h, enc], axis=-1)
        raw_sigma = self.density(h)[..., 0].astype(jnp.float32) + cfg.density_bias
        return h, _DENSITY[cfg.density_activation](raw_sigma)

    def density_only(self, x: jax.Array) -> jax.Array:
        """sigma float32 [...] at points [..., 3], without the colour branch."""
        return self._trunk(x)[1]

    def __call__(self, x: jax.Array, viewdirs: jax.Array | None = None,
                 cov: jax.Array | None = None, appearance: jax.Array | None = None) -> tuple[jax.Array, jax.Array]:
        """Evaluate the field.

        Args:
          x: float32 [..., 3] points (or Gaussian means); viewdirs: float32 [..., 3] unit directions
            (broadcastable to x); cov: optional float32 [..., 3] diagonal covariances of x (mip-NeRF);
          appearance: float32 [..., appearance_dim] per-image appearance code (broadcastable to x's batch;
            NeRF-W), required when the field was built with ``appearance_dim > 0``; or [..., K, appearance_dim]
            (one more axis than x): K codes for every point, the density and trunk computed once.
        Returns:
          (sigma float32 [...] >= 0, rgb float32 [..., 3] in (0, 1)); rgb [..., 3 K] with K codes (code k's
          colour in channels 3k .. 3k + 2).
        """
        cfg = self.cfg
        h, sigma = self._trunk(x, cov)
        codes = appearance is not None and appearance.ndim > x.ndim  # K codes per point: a code axis before the last
        if codes:
            h = h[..., None, :]
            viewdirs = None if viewdirs is None else viewdirs[..., None, :]
        if cfg.use_viewdirs:
            h = self._act(self._view_layer(self.feature(h), self._ray_inputs(viewdirs, appearance)))
        elif self.appearance_dim:
            batch = jnp.broadcast_shapes(h.shape[:-1], appearance.shape[:-1])
            app = jnp.broadcast_to(appearance, (*batch, self.appearance_dim)).astype(self.dtype)
            h = jnp.concatenate([jnp.broadcast_to(h, (*batch, h.shape[-1])), app], axis=-1)
        rgb = jax.nn.sigmoid(self.color(h).astype(jnp.float32))
        return sigma, rgb.reshape(*rgb.shape[:-2], -1) if codes else rgb

    def _ray_inputs(self, viewdirs: jax.Array, appearance: jax.Array | None) -> jax.Array:
        """The encoded view direction and the appearance code, at their own (per-ray) shape."""
        parts = [positional_encoding(viewdirs, self.cfg.dir_freqs)]
        if self.appearance_dim:
            batch = jnp.broadcast_shapes(viewdirs.shape[:-1], appearance.shape[:-1])
            parts = [jnp.broadcast_to(parts[0], (*batch, parts[0].shape[-1])),
                     jnp.broadcast_to(appearance, (*batch, self.appearance_dim))]
        return jnp.concatenate(parts, axis=-1).astype(self.dtype)

    def _view_layer(self, feature: jax.Array, ray_inputs: jax.Array) -> jax.Array:
        """``self.view`` applied to ``[feature, ray_inputs]`` without broadcasting the per-ray inputs to every
        sample first: their share of the matmul is computed once per ray (a sample's input is
        ``feature`` [..., S, width]; ``ray_inputs`` [..., 1, k] broadcasts along S)."""
        kernel = self.view.kernel[...].astype(self.dtype)
        w = feature.shape[-1]
        out = feature @ kernel[:w] + ray_inputs @ kernel[w:]
        return out + self.view.bias[...].astype(self.dtype)


def field_flops(cfg: FieldConfig) -> int:
    """Multiply-adds x 2 of one forward evaluation (matmuls only), for utilisation figures.

    Counts every dense layer and, for ``fourier``, the projection ``B v`` (3 -> m); not the encodings'
    elementwise work, the hash grid's gathers, or activations (sine included).
    """
    in_dim = input_dim(cfg)
    flops, d = ENCODINGS[cfg.encoding].flops(cfg), in_dim
    for i in range(cfg.depth):
        flops += 2 * d * cfg.width
        d = cfg.width + (in_dim if i in cfg.skips else 0)
    flops += 2 * d
    if cfg.use_viewdirs:
        flops += 2 * d * cfg.width + 2 * (cfg.width + encoding_dim(3, cfg.dir_freqs)) * cfg.view_width
        flops += 2 * cfg.view_width * 3
    else:
        flops += 2 * d * 3
    return flops
