"""Radiance fields as Flax NNX modules."""

from __future__ import annotations

import jax
import jax.numpy as jnp
from flax import nnx

from nerfkit.config import FieldConfig
from nerfkit.encodings import encoding_dim, hash_grid_encoding, hash_grid_resolutions, positional_encoding

_ACTIVATIONS = {"relu": jax.nn.relu, "softplus": jax.nn.softplus, "silu": jax.nn.silu, "gelu": jax.nn.gelu}
_DENSITY = {"relu": jax.nn.relu, "softplus": jax.nn.softplus, "exp": lambda x: jnp.exp(jnp.minimum(x, 15.0))}


class NeRFField(nnx.Module):
    """The NeRF MLP (Mildenhall et al. 2020, fig. 7), configurable.

    Encoded position -> ``depth`` dense layers of ``width`` (the encoded input concatenated again after the
    layers in ``skips``) -> density head; a linear feature layer, concatenated with the encoded view
    direction, -> one ``view_width`` layer -> sigmoid RGB.
    """

    def __init__(self, cfg: FieldConfig, *, rngs: nnx.Rngs, dtype=jnp.float32, aabb=((-1.5,) * 3, (1.5,) * 3)):
        self.cfg = cfg
        self.dtype = dtype
        if cfg.encoding == "hash":
            self.aabb = tuple(tuple(float(v) for v in row) for row in aabb)
            self.resolutions = tuple(hash_grid_resolutions(cfg.hash_levels, cfg.hash_min_res, cfg.hash_max_res))
            shape = (cfg.hash_levels, 2**cfg.hash_log2_size, cfg.hash_features)
            self.table = nnx.Param(jax.random.uniform(rngs.params(), shape, jnp.float32, -1e-4, 1e-4))
            in_dim = cfg.hash_levels * cfg.hash_features
        else:
            in_dim = encoding_dim(3, cfg.pos_freqs)
        trunk = []
        d = in_dim
        for i in range(cfg.depth):
            trunk.append(nnx.Linear(d, cfg.width, rngs=rngs, dtype=dtype))
            d = cfg.width + (in_dim if i in cfg.skips else 0)
        self.trunk = nnx.List(trunk)
        self.density = nnx.Linear(d, 1, rngs=rngs, dtype=dtype)
        if cfg.use_viewdirs:
            self.feature = nnx.Linear(d, cfg.width, rngs=rngs, dtype=dtype)
            self.view = nnx.Linear(cfg.width + encoding_dim(3, cfg.dir_freqs), cfg.view_width, rngs=rngs, dtype=dtype)
            self.color = nnx.Linear(cfg.view_width, 3, rngs=rngs, dtype=dtype)
        else:
            self.color = nnx.Linear(d, 3, rngs=rngs, dtype=dtype)

    def _trunk(self, x: jax.Array):
        cfg = self.cfg
        act = _ACTIVATIONS[cfg.activation]
        if cfg.encoding == "hash":
            lo, hi = jnp.asarray(self.aabb[0]), jnp.asarray(self.aabb[1])
            enc = hash_grid_encoding((x - lo) / (hi - lo), self.table[...], self.resolutions).astype(self.dtype)
        else:
            enc = positional_encoding(x, cfg.pos_freqs).astype(self.dtype)
        h = enc
        for i, layer in enumerate(self.trunk):
            h = act(layer(h))
            if i in cfg.skips:
                h = jnp.concatenate([h, enc], axis=-1)
        raw_sigma = self.density(h)[..., 0].astype(jnp.float32) + cfg.density_bias
        return h, _DENSITY[cfg.density_activation](raw_sigma)

    def density_only(self, x: jax.Array) -> jax.Array:
        """sigma float32 [...] at points [..., 3], without the colour branch."""
        return self._trunk(x)[1]

    def __call__(self, x: jax.Array, viewdirs: jax.Array | None = None) -> tuple[jax.Array, jax.Array]:
        """Evaluate the field.

        Args:
          x: float32 [..., 3] points; viewdirs: float32 [..., 3] unit directions (broadcastable to x).
        Returns:
          (sigma float32 [...] >= 0, rgb float32 [..., 3] in (0, 1)).
        """
        cfg = self.cfg
        act = _ACTIVATIONS[cfg.activation]
        h, sigma = self._trunk(x)
        if cfg.use_viewdirs:
            denc = positional_encoding(jnp.broadcast_to(viewdirs, x.shape), cfg.dir_freqs).astype(self.dtype)
            h = jnp.concatenate([self.feature(h), denc], axis=-1)
            h = act(self.view(h))
        rgb = jax.nn.sigmoid(self.color(h).astype(jnp.float32))
        return sigma, rgb


def field_flops(cfg: FieldConfig) -> int:
    """Multiply-adds x 2 of one forward evaluation (matmuls only), for utilisation figures."""
    in_dim = cfg.hash_levels * cfg.hash_features if cfg.encoding == "hash" else encoding_dim(3, cfg.pos_freqs)
    flops, d = 0, in_dim
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
