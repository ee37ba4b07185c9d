"""The jitted train step: a random batch of rays, rendered by the sampler, photometric loss, one Adam step.

NNX's object graph stays out of the hot path: the model is split once into a static ``graphdef`` and a
``params`` pytree, and the step is a plain ``jax.jit`` of a pure function that merges them. Everything random
in step ``k`` comes from ``fold_in(seed_key, k)``, so a resumed fit replays the same batches.
"""

from __future__ import annotations

import dataclasses
import functools

import flax.struct
import jax
import jax.numpy as jnp
import numpy as np
import optax
from flax import nnx

from nerfkit import cameras as cam
from nerfkit import metrics as metrics_lib
from nerfkit import parallel, poses
from nerfkit.config import TrainConfig
from nerfkit.errors import InputError
from nerfkit.samplers import Sampler
from nerfkit.types import Rays, Scene, background_rgb


POSE_PARAM = "pose_corrections"  # the model's pose corrections (nerfkit.poses), with their own learning rate


def make_optimizer(cfg: TrainConfig, pose_refine: bool = False) -> optax.GradientTransformation:
    """Adam without the learning rate: the step multiplies by the (host-computed) rate itself. With
    ``pose_refine``, the pose corrections' updates are also scaled by ``pose_lr / lr_init``."""
    parts = [optax.clip_by_global_norm(cfg.grad_clip)] if cfg.grad_clip > 0 else []
    if pose_refine:  # the optimiser state of a model without pose corrections stays as it was
        is_pose = lambda params: jax.tree_util.tree_map_with_path(  # noqa: E731
            lambda path, _: any(getattr(k, "key", None) == POSE_PARAM for k in path), params)
        ratio = cfg.pose_lr / cfg.lr_init if cfg.lr_init else 0.0
        return optax.chain(*parts, optax.scale_by_adam(eps=cfg.adam_eps), optax.masked(optax.scale(ratio), is_pose))
    return optax.chain(*parts, optax.scale_by_adam(eps=cfg.adam_eps))


def learning_rate(cfg: TrainConfig, step: int, progress: float) -> float:
    """Exponential decay from lr_init to lr_final over ``progress`` in [0, 1], with linear warm-up."""
    lr = cfg.lr_init * (cfg.lr_final / cfg.lr_init) ** min(max(progress, 0.0), 1.0)
    if cfg.lr_warmup_steps > 0:
        lr *= min(1.0, (step + 1) / cfg.lr_warmup_steps)
    return lr


@flax.struct.dataclass
class TrainData:
    """Every training ray, on the device: origins, directions [R, 3], premultiplied RGBA [R, 4], the pixel
    cone radius [R] (mip-NeRF) and the image each ray comes from [R] (appearance embeddings, pose
    corrections). ``ndc`` (static): None, or the scene's NDC projection (fx, fy, cx, cy, width, height, near)
    when the rays of NDC cameras are kept in world space (to be corrected, then mapped, in the step)."""

    origins: jax.Array
    directions: jax.Array
    rgba: jax.Array
    radii: jax.Array
    image_ids: jax.Array
    ndc: tuple | None = flax.struct.field(pytree_node=False, default=None)

    @classmethod
    def from_scene(cls, scene: Scene, levels: int = 1, world_rays: bool = False) -> "TrainData":
        """The training split's rays; with ``levels`` > 1, also those of its area-downscaled copies at 1/2,
        1/4, ... (mip-NeRF's multi-scale training). Level ``k``'s rays are repeated ``4^k`` times, so every
        level is drawn equally often (as mip-NeRF weights its loss by pixel area). ``world_rays``: rays of
        NDC cameras stay in world space, with their projection in ``ndc`` (for pose corrections)."""
        from nerfkit.data.images import area_downscale
        from nerfkit.mip import pixel_radius

        split, ndc = scene.splits["train"], None
        cameras = split.cameras
        if world_rays and cameras.ndc_near is not None:  # NDC's projection is the same at every level
            ndc = (*(float(getattr(cameras, k)[0]) for k in ("fx", "fy", "cx", "cy")), cameras.width,
                   cameras.height, float(cameras.ndc_near))
            cameras = dataclasses.replace(cameras, ndc_near=None)
        parts = []
        for k in range(levels):
            f = 2 ** k
            if cameras.width % f or cameras.height % f:
                raise InputError(f"{levels} levels need image sizes divisible by {f}", field="--train.multiscale")
            cams = cameras.scaled(1.0 / f) if f > 1 else cameras
            rgba = area_downscale(split.rgba, f) if f > 1 else split.rgba
            o, d = cam.all_rays(cams)
            n = cams.width * cams.height
            radii = np.repeat(np.asarray(pixel_radius(np.asarray(cams.fx, np.float32))), n)
            ids = np.repeat(np.arange(len(cams), dtype=np.int32), n)
            level = [o.reshape(-1, 3), d.reshape(-1, 3), rgba.reshape(-1, 4), radii.astype(np.float32), ids]
            parts.append([np.tile(x, (f * f,) + (1,) * (x.ndim - 1)) for x in level])
        return cls(*(jnp.asarray(np.concatenate(xs)) for xs in zip(*parts)), ndc=ndc)


def _photometric_loss(sampler: Sampler, out, target, batch_rays: int):
    """(loss, (mse, rays in the loss, field evaluations)): the MSE over the rays whose samples fitted, plus
    the sampler's own loss terms."""
    err = jnp.mean((out.rgb - target) ** 2, axis=-1)
    if out.ray_ok is None:
        mse, n_rays = jnp.mean(err), jnp.float32(batch_rays)
    else:
        ok = out.ray_ok.astype(jnp.float32)
        n_rays = jnp.sum(ok)
        mse = jnp.sum(ok * err) / jnp.maximum(n_rays, 1.0)
    loss = mse + sum(sampler.losses(out, target).values())
    return loss, (mse, n_rays, jnp.int32(0) if out.n_samples is None else out.n_samples)


def make_train_step(graphdef, tx, sampler: Sampler, *, batch_rays: int, background: str, seed: int, mesh=None):
    """The jitted ``step(params, opt_state, step, lr, data: TrainData, sampler_state) -> (params, opt_state,
    metrics)``; ``metrics`` holds ``loss``, ``psnr``, ``rays`` (in the loss) and ``samples`` (field evaluations).

    With a ``mesh`` (see :mod:`nerfkit.parallel`), the batch's rays are split across its devices: pass
    replicated inputs; the result is the single-device step's up to float rounding.
    """
    base_key = jax.random.key(seed)
    fixed_bg = jnp.asarray(background_rgb(background))
    mip, appearance, refine = sampler.cfg.mip, sampler.cfg.appearance_dim > 0, sampler.cfg.pose_refine

    def loss_fn(params, rays, target, bg, key, state, ndc=None):
        model = nnx.merge(graphdef, params)
        if refine:  # the training cameras' learned corrections (nerfkit.poses); renders use the cameras as given
            rays = poses.refine_rays(rays, model.pose_corrections[...][rays.image_ids], ndc)
        out = sampler.render_train(model, rays, key, state, bg)
        return _photometric_loss(sampler, out, target, batch_rays)

    def step_fn(params, opt_state, step, lr, data: TrainData, state):
        k_idx, k_bg, k_render = jax.random.split(jax.random.fold_in(base_key, step), 3)
        idx = parallel.shard_batch(jax.random.randint(k_idx, (batch_rays,), 0, data.origins.shape[0]), mesh)
        rays = Rays(origins=data.origins[idx], directions=data.directions[idx], viewdirs=data.directions[idx],
                    radii=data.radii[idx] if mip else None,
                    image_ids=data.image_ids[idx] if appearance or refine else None)
        pix = data.rgba[idx]
        bg = fixed_bg
        if background == "random":
            bg = parallel.shard_batch(jax.random.uniform(k_bg, (batch_rays, 3)), mesh)
        target = pix[:, :3] + (1.0 - pix[:, 3:]) * bg
        (loss, (mse, n_rays, n_samples)), grads = jax.value_and_grad(
            functools.partial(loss_fn, ndc=data.ndc), has_aux=True)(params, rays, target, bg, k_render, state)
        updates, opt_state = tx.update(grads, opt_state, params)
        params = jax.tree.map(lambda p, u: p - lr * u, params, updates)
        return params, opt_state, {"loss": loss, "psnr": metrics_lib.psnr_from_mse(mse), "rays": n_rays,
                                   "samples": n_samples}

    return jax.jit(step_fn, donate_argnums=(0, 1))


def make_sampler_update(graphdef, sampler: Sampler, mesh=None):
    """Jitted ``update(params, sampler_state, key) -> sampler_state`` (the occupancy grid's refresh)."""

    @jax.jit
    def update(params, state, key):
        return sampler.update(nnx.merge(graphdef, params), state, key, mesh)

    return update
