"""The jitted train step: a random batch of pixels, their rays made from the cameras, rendered by the sampler,
photometric loss, one Adam step.

NNX's object graph stays out of the hot path: the model is split once into a static ``graphdef`` and a
``params`` pytree, and the step is a plain ``jax.jit`` of a pure function that merges them. Everything random
in step ``k`` comes from ``fold_in(seed_key, k)``, so a resumed fit replays the same batches.
"""

from __future__ import annotations

import functools

import flax.struct
import jax
import jax.numpy as jnp
import numpy as np
import optax
from flax import nnx

from nerfkit import cameras as cam
from nerfkit import compile_cache
from nerfkit import model as model_lib
from nerfkit import metrics as metrics_lib
from nerfkit import parallel, poses
from nerfkit.config import ModelConfig, TrainConfig
from nerfkit.errors import InputError
from nerfkit.samplers import Sampler
from nerfkit.types import Rays, Scene, SplitData, background_rgb, pixels_to_rgba


POSE_PARAM = "pose_corrections"  # the model's pose corrections (nerfkit.poses), with their own learning rate


def optimizer_settings(cfg: TrainConfig, pose_refine: bool = False) -> dict:
    """Everything :func:`make_optimizer` reads from ``cfg``: two equal settings make the same optimiser (the
    key of its compiled train step, :func:`make_train_step`'s ``tx_key``).

    >>> optimizer_settings(TrainConfig(grad_clip=1.0, adam_eps=1e-15))
    {'grad_clip': 1.0, 'adam_eps': 1e-15}
    """
    settings = {"grad_clip": cfg.grad_clip if cfg.grad_clip > 0 else 0.0, "adam_eps": cfg.adam_eps}
    if pose_refine:
        settings["pose_ratio"] = cfg.pose_lr / cfg.lr_init if cfg.lr_init else 0.0
    return settings


def make_optimizer(cfg: TrainConfig, pose_refine: bool = False) -> optax.GradientTransformation:
    """Adam without the learning rate: the step multiplies by the (host-computed) rate itself. With
    ``pose_refine``, the pose corrections' updates are also scaled by ``pose_lr / lr_init``."""
    settings = optimizer_settings(cfg, pose_refine)
    parts = [optax.clip_by_global_norm(settings["grad_clip"])] if settings["grad_clip"] else []
    adam = optax.scale_by_adam(eps=settings["adam_eps"])
    if pose_refine:  # the optimiser state of a model without pose corrections stays as it was
        is_pose = lambda params: jax.tree_util.tree_map_with_path(  # noqa: E731
            lambda path, _: any(getattr(k, "key", None) == POSE_PARAM for k in path), params)
        return optax.chain(*parts, adam, optax.masked(optax.scale(settings["pose_ratio"]), is_pose))
    return optax.chain(*parts, adam)


def initial_state(cfg: ModelConfig, tcfg: TrainConfig, sampler: Sampler, aabb, num_images: int = 0):
    """(graphdef, params, opt_state, sampler_state) of a new fit: the parameters :func:`nerfkit.model.build_model`
    gives, the optimiser's (:func:`make_optimizer`) initial state and the sampler's, all made by one compiled
    program (not one small program per array). On one device it is kept in the cache directory
    (:class:`nerfkit.compile_cache.Persisted`): the next fit neither traces nor compiles it."""
    graphdef, _ = model_lib.abstract_model(cfg, aabb, num_images)
    tx = make_optimizer(tcfg, cfg.pose_refine)

    def init():
        params = model_lib.init_params(cfg, tcfg.seed, aabb, num_images)
        return params, tx.init(params), sampler.init_state()

    key = compile_cache.describe("initial state", cfg, tcfg.seed, np.asarray(aabb, np.float64), num_images,
                                 optimizer_settings(tcfg, cfg.pose_refine), sampler)
    return graphdef, *compile_cache.Persisted(jax.jit(init), key)()


def learning_rate(cfg: TrainConfig, step: int, progress: float) -> float:
    """Exponential decay from lr_init to lr_final over ``progress`` in [0, 1], with linear warm-up."""
    lr = cfg.lr_init * (cfg.lr_final / cfg.lr_init) ** min(max(progress, 0.0), 1.0)
    if cfg.lr_warmup_steps > 0:
        lr *= min(1.0, (step + 1) / cfg.lr_warmup_steps)
    return lr


@flax.struct.dataclass
class TrainData:
    """The training images and cameras, on the device; each step makes its batch's rays from them
    (:meth:`draw`, then :meth:`rays_at`) instead of holding every ray (48 bytes a pixel): 4 bytes a pixel.

    Attributes:
      levels: per level ``k``, uint8 [N, H / 2^k, W / 2^k, 4] straight RGBA (:attr:`SplitData.pixels`; level 0
        the training split's images, levels 1, 2, ... their area-downscaled copies for mip-NeRF's multi-scale
        training, rounded to 8 bits).
      c2w: float32 [N, 3, 4]; intrinsics: float32 [N, 4] (fx, fy, cx, cy) at level 0; distortion: float32
        [N, 4] OpenCV (k1, k2, p1, p2) or None.
      ndc_near (static): the cameras' ``ndc_near``: rays are mapped to NDC as :func:`nerfkit.cameras.all_rays`
        maps them. ndc (static): None, or the scene's NDC projection (fx, fy, cx, cy, width, height, near)
        when the rays of NDC cameras are kept in world space (to be corrected, then mapped, in the step).
    """

    levels: tuple
    c2w: jax.Array
    intrinsics: jax.Array
    distortion: jax.Array | None = None
    ndc_near: float | None = flax.struct.field(pytree_node=False, default=None)
    ndc: tuple | None = flax.struct.field(pytree_node=False, default=None)

    @staticmethod
    def image_bytes(split: SplitData, levels: int = 1) -> int:
        """Bytes :attr:`levels` takes for ``split`` with ``levels`` levels: 4 a pixel at level 0, a quarter of
        that at each further level."""
        n, h, w = split.pixels.shape[:3]
        return sum(n * (h >> k) * (w >> k) * 4 for k in range(levels))

    @classmethod
    def from_scene(cls, scene: Scene, levels: int = 1, world_rays: bool = False, mesh=None) -> "TrainData":
        """The training split's images and cameras, put on ``mesh``'s devices (replicated; None: the default
        device). With ``levels`` > 1, also the images area-downscaled by 2, 4, ... (mip-NeRF's multi-scale
        training; :meth:`draw` draws every level equally often, as mip-NeRF weights its loss by pixel area).
        ``world_rays``: rays of NDC cameras stay in world space, with their projection in ``ndc`` (for pose
        corrections)."""
        from nerfkit.data.images import shrink_pixels

        split, ndc = scene.splits["train"], None
        cams = split.cameras
        if world_rays and cams.ndc_near is not None:  # NDC's projection is the same at every level
            ndc = (*(float(getattr(cams, k)[0]) for k in ("fx", "fy", "cx", "cy")), cams.width, cams.height,
                   float(cams.ndc_near))
        pyramid = [split.pixels]
        for k in range(1, levels):
            f = 2 ** k
            if cams.width % f or cams.height % f:
                raise InputError(f"{levels} levels need image sizes divisible by {f}", field="--train.multiscale")
            pyramid.append(np.stack([shrink_pixels(img, f) for img in split.pixels]))
        host = dict(levels=tuple(pyramid), c2w=np.asarray(cams.c2w, np.float32),
                    intrinsics=np.stack([cams.fx, cams.fy, cams.cx, cams.cy], axis=-1).astype(np.float32),
                    distortion=None if cams.distortion is None else np.asarray(cams.distortion, np.float32))
        host = parallel.replicate(host, mesh) if mesh is not None else jax.device_put(host)
        return cls(**host, ndc_near=None if ndc is not None else cams.ndc_near, ndc=ndc)

    def draw(self, key, n: int):
        """int32 [n, 4] random (level, image, row, column), pixel coordinates at the ray's level: the level
        uniform, then a pixel uniform over the level's pixels (the distribution of drawing uniformly from
        every level's rays, level ``k``'s repeated ``4^k`` times)."""
        num, h, w = self.levels[0].shape[:3]
        idx = jax.random.randint(key, (n, 4), 0, jnp.array([len(self.levels), num, h, w], jnp.int32))
        level = idx[:, 0]
        return jnp.stack([level, idx[:, 1], idx[:, 2] >> level, idx[:, 3] >> level], axis=-1)

    def every_pixel(self, level: int = 0):
        """int32 [N * H_k * W_k, 4]: every pixel of ``level`` in (image, row, column) order, as :meth:`draw`
        gives them (for tests and checks against :func:`nerfkit.cameras.all_rays`)."""
        n, h, w = self.levels[level].shape[:3]
        i, r, c = np.meshgrid(np.arange(n), np.arange(h), np.arange(w), indexing="ij")
        return jnp.asarray(np.stack([np.full(i.size, level), i.ravel(), r.ravel(), c.ravel()], -1), jnp.int32)

    def rays_at(self, idx) -> tuple[Rays, jax.Array]:
        """(rays [B] with radii and image ids, float32 [B, 4] premultiplied RGBA) of the pixels ``idx`` [B, 4]
        (:meth:`draw`): the rays :func:`nerfkit.cameras.all_rays` gives those pixels of the level's cameras
        (``Cameras.scaled(2^-k)``). ``viewdirs`` are the directions (in NDC: the NDC directions)."""
        from nerfkit.mip import pixel_radius

        level, image, row, col = idx[:, 0], idx[:, 1], idx[:, 2], idx[:, 3]
        scale = 1.0 / jnp.left_shift(1, level).astype(jnp.float32)  # a power of two: exact
        fx, fy, cx, cy = jnp.moveaxis(self.intrinsics[image] * scale[:, None], -1, 0)
        dist = None if self.distortion is None else self.distortion[image]
        dirs = cam.pixel_directions_camera(col.astype(jnp.float32) + 0.5, row.astype(jnp.float32) + 0.5, fx, fy,
                                           cx, cy, jnp, dist)
        o, d = cam.camera_rays(self.c2w[image], dirs, jnp)
        if self.ndc_near is not None:
            h, w = self.levels[0].shape[1:3]
            o, d = cam.ndc_rays(o, d, fx, fy, cx, cy, w * scale, h * scale, self.ndc_near, jnp)
        rays = Rays(origins=o, directions=d, viewdirs=d, radii=pixel_radius(fx), image_ids=image)
        return rays, pixels_to_rgba(self._pixels(level, image, row, col), jnp)

    def _pixels(self, level, image, row, col):
        """uint8 [B, 4]: each pixel from its level's images."""
        pix = self.levels[0][image, row, col]
        for k, img in enumerate(self.levels[1:], start=1):
            h, w = img.shape[1:3]
            at_k = img[image, jnp.minimum(row, h - 1), jnp.minimum(col, w - 1)]
            pix = jnp.where((level == k)[:, None], at_k, pix)
        return pix


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


def make_train_step(graphdef, tx, sampler: Sampler, *, batch_rays: int, background: str, seed: int, mesh=None,
                    tx_key: dict | None = None):
    """The jitted ``step(params, opt_state, step, lr, data: TrainData, sampler_state) -> (params, opt_state,
    metrics)``; ``metrics`` holds ``loss``, ``psnr``, ``rays`` (in the loss) and ``samples`` (field evaluations).

    With a ``mesh`` (see :mod:`nerfkit.parallel`), the batch's rays are split across its devices: pass
    replicated inputs; the result is the single-device step's up to float rounding. ``tx_key``: the
    :func:`optimizer_settings` ``tx`` was made from; with it (and one device), the compiled step is kept in
    the cache directory (:class:`nerfkit.compile_cache.Persisted`), so the next fit skips tracing it.
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
        rays, pix = data.rays_at(parallel.shard_batch(data.draw(k_idx, batch_rays), mesh))
        rays = rays.replace(radii=rays.radii if mip else None,
                            image_ids=rays.image_ids if appearance or refine else None)
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

    step = jax.jit(step_fn, donate_argnums=(0, 1))
    if tx_key is None:  # the optimiser's settings unknown: nothing to key the program by
        return step
    key = compile_cache.describe("train step", graphdef, sampler, tx_key, batch_rays, background, seed)
    return compile_cache.Persisted(step, key, donate_argnums=(0, 1))


def make_sampler_update(graphdef, sampler: Sampler, mesh=None):
    """Jitted ``update(params, sampler_state, key) -> sampler_state`` (the occupancy grid's refresh; on one
    device kept in the cache directory like the train step)."""

    def update(params, state, key):
        return sampler.update(nnx.merge(graphdef, params), state, key, mesh)

    return compile_cache.Persisted(jax.jit(update), compile_cache.describe("sampler update", graphdef, sampler))
