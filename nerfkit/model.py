"""The model: a scene's fields and per-image appearance codes, and how rays and distances become field queries.

Which distances are sampled, and how they are composited, is the samplers' business
(:mod:`nerfkit.samplers`); the sampler named in the config also decides which fields the model has (the
hierarchical sampler's ``fine`` field). Samplers call :meth:`NeRFModel.query` and never build points
themselves.
"""

from __future__ import annotations

import jax
import jax.numpy as jnp
import numpy as np
from flax import nnx

from nerfkit import compile_cache, mip, samplers
from nerfkit.config import ModelConfig
from nerfkit.errors import InputError
from nerfkit.fields import NeRFField
from nerfkit.types import Rays

DEFAULT_AABB = ((-1.5,) * 3, (1.5,) * 3)


class NeRFModel(nnx.Module):
    """The fields of a model: ``coarse`` always, ``fine`` when the sampler evaluates a second field (NeRF
    section 5.2), an appearance embedding per training image when ``cfg.appearance_dim`` is set, and a pose
    correction per training image (``pose_corrections`` [N, 6], used by the train step only) when
    ``cfg.pose_refine`` is."""

    def __init__(self, cfg: ModelConfig, *, rngs: nnx.Rngs, aabb=DEFAULT_AABB, num_images: int = 0):
        self.cfg = cfg
        field_names = samplers.sampler_class(cfg).field_names(cfg)  # also checks the config fits the sampler
        dtype = jnp.bfloat16 if cfg.compute_dtype == "bfloat16" else jnp.float32
        if cfg.contraction:  # the field lives in the contracted ball of radius 2
            aabb = ((-2.0,) * 3, (2.0,) * 3)
        app = cfg.appearance_dim
        self.coarse = NeRFField(cfg.coarse, rngs=rngs, dtype=dtype, aabb=aabb, appearance_dim=app)
        use_fine = "fine" in field_names
        self.fine = NeRFField(cfg.fine, rngs=rngs, dtype=dtype, aabb=aabb, appearance_dim=app) if use_fine else None
        for name in field_names:  # the proposal sampler's density-only fields: proposal0, proposal1, ...
            if name.startswith("proposal"):
                setattr(self, name, NeRFField(cfg.proposal, rngs=rngs, dtype=dtype, aabb=aabb))
        if app:
            if cfg.appearance_render >= max(num_images, 1):
                raise InputError(f"is {cfg.appearance_render}, the scene has {num_images} training images",
                                 field="--model.appearance-render")
            self.appearance = nnx.Embed(max(num_images, 1), app, rngs=rngs,
                                        embedding_init=nnx.initializers.normal(0.01))
        if cfg.pose_refine:  # per training image (w, t) camera corrections, zero at first (nerfkit.poses)
            self.pose_corrections = nnx.Param(jnp.zeros((max(num_images, 1), 6), jnp.float32))

    def appearance_codes(self, rays: Rays) -> jax.Array | None:
        """float32 [B, appearance_dim] appearance code of each ray, or None without embeddings.

        Rays that carry codes (``rays.appearance``: [B, A], or [B, K, A] for K codes a ray) use them; training rays carry ``image_ids``; novel views use
        the mean of all training images' codes (or the one ``appearance_render`` names)."""
        cfg = self.cfg
        if not cfg.appearance_dim:
            return None
        if rays.appearance is not None:
            return rays.appearance
        if rays.image_ids is not None:
            return self.appearance(rays.image_ids)
        table = self.appearance.embedding[...]
        code = jnp.mean(table, axis=0) if cfg.appearance_render < 0 else table[cfg.appearance_render]
        return jnp.broadcast_to(code, (*rays.origins.shape[:-1], cfg.appearance_dim))

    def query(self, field: str, rays: Rays, t: jax.Array, *, ray: jax.Array | None = None,
              intervals: tuple[jax.Array, jax.Array] | None = None, density_only: bool = False):
        """Evaluate field ``field`` ("coarse", "fine", or a proposal sampler's "proposal0", ...) at distances ``t`` along ``rays`` [B].

        Args:
          t: float32 [B, S] (batched: sample s of ray b) or [N] with ``ray`` (packed samples).
          ray: int32 [N], the ray of each packed sample (``B`` for unused slots: they read ray B-1).
          intervals: (t0, t1) float32 [B, S], the interval of each batched sample: a mip-NeRF model encodes
            the interval's conical frustum (``rays.radii``) instead of the point at ``t``.
          density_only: skip the colour branch.
        Returns:
          (sigma float32 like ``t``, rgb float32 [..., 3]), or sigma alone with ``density_only``.
        """
        net = getattr(self, field)
        x, viewdirs, cov, app = self._inputs(rays, t, ray, intervals)
        if density_only:
            return net.density_only(x)
        return net(x, viewdirs, cov=cov, appearance=app)

    def _inputs(self, rays: Rays, t, ray, intervals):
        """(points or Gaussian means, view directions, covariances or None, appearance codes or None)."""
        app = self.appearance_codes(rays)
        if ray is not None:  # packed: gather each sample's ray
            r = jnp.minimum(ray, rays.origins.shape[0] - 1)
            points, viewdirs, app = rays.origins[r] + t[:, None] * rays.directions[r], rays.viewdirs[r], app
            app = None if app is None else app[r]
        elif self.cfg.mip and intervals is not None:
            radii = jnp.zeros(rays.origins.shape[:-1]) if rays.radii is None else rays.radii
            mean, cov = mip.frustum_to_gaussian(rays.origins, rays.directions, *intervals, radii)
            return mean, rays.viewdirs[..., None, :], cov, None if app is None else jnp.expand_dims(app, 1)
        else:
            points = rays.origins[..., None, :] + t[..., None] * rays.directions[..., None, :]
            sample_axis = rays.origins.ndim - 1  # app [B, A], or [B, K, A] with K codes a ray
            viewdirs, app = rays.viewdirs[..., None, :], None if app is None else jnp.expand_dims(app, sample_axis)
        if self.cfg.contraction:
            points = contract(points, self.cfg.contraction_radius, self.cfg.contraction_norm)
        return points, viewdirs, None, app


def contract(x: jax.Array, radius: float = 1.0, norm: str = "l2") -> jax.Array:
    """mip-NeRF 360's scene contraction (eq. 10) of points [..., 3] in units of ``radius``.

    Identity inside the ball of radius 1 (times ``radius``); outside, ``(2 - 1/|x|) x/|x|``, so all of space
    lands in the ball of radius 2 and distance is spent in proportion to inverse depth. ``norm="inf"``
    measures ``|x|`` with the max-norm (nerfstudio's variant): the ball becomes the cube ``[-2, 2]^3``.

    >>> [round(float(v), 3) for v in contract(jnp.array([4.0, 0.0, 0.0]))]  # 2 - 1/4
    [1.75, 0.0, 0.0]
    >>> [round(float(v), 3) for v in contract(jnp.array([4.0, 4.0, 0.0]), norm="inf")]  # a corner of the cube
    [1.75, 1.75, 0.0]
    """
    x = x / radius
    n = jnp.max(jnp.abs(x), axis=-1, keepdims=True) if norm == "inf" else jnp.linalg.norm(x, axis=-1, keepdims=True)
    safe = jnp.maximum(n, 1.0)  # the outer branch only runs where |x| > 1: keep its gradient finite elsewhere
    return jnp.where(n <= 1.0, x, (2.0 - 1.0 / safe) * x / safe)


def build_model(cfg: ModelConfig, seed: int, aabb=DEFAULT_AABB, num_images: int = 0):
    """The model split into (graphdef, params). ``aabb`` [2, 3]: the scene box (grid encodings live in it);
    ``num_images``: training images (rows of the appearance embedding table, when the config has one).

    The parameters are initialised by one jitted program (the same values as eager initialisation), not by
    one small compiled program per initialiser: about 3x faster cold, and one entry of the persistent
    compilation cache (:mod:`nerfkit.compile_cache`) warm."""
    graphdef, _ = abstract_model(cfg, aabb, num_images)
    return graphdef, jax.jit(lambda: init_params(cfg, seed, aabb, num_images))()


def init_params(cfg: ModelConfig, seed: int, aabb=DEFAULT_AABB, num_images: int = 0):
    """The parameters of a new model (as :func:`build_model` gives them); traceable, to be called inside a
    jitted program."""
    return nnx.split(_new_model(cfg, seed, aabb, num_images), nnx.Param)[1]


def abstract_model(cfg: ModelConfig, aabb=DEFAULT_AABB, num_images: int = 0):
    """(graphdef, params as ``jax.ShapeDtypeStruct``): the model's structure without initialising it
    (``nnx.eval_shape``), the target a checkpoint is restored into. Kept in the cache directory
    (:func:`nerfkit.compile_cache.kept`): tracing the initialisers takes ~0.2 s on a CPU, reading it back 1 ms."""
    key = compile_cache.describe("abstract model", cfg, np.asarray(aabb, np.float64), num_images)
    return compile_cache.kept(key, lambda: nnx.split(nnx.eval_shape(lambda: _new_model(cfg, 0, aabb, num_images)),
                                                     nnx.Param))


def _new_model(cfg: ModelConfig, seed: int, aabb, num_images: int) -> NeRFModel:
    return NeRFModel(cfg, rngs=nnx.Rngs(seed), aabb=np.asarray(aabb).tolist(), num_images=num_images)
