"""Rays in, rendered pixels out: the paper's coarse-to-fine scheme or occupancy-grid marching."""

from __future__ import annotations

import jax
import jax.numpy as jnp
import numpy as np
from flax import nnx

from nerfkit import integrator, mip, occupancy, sampling
from nerfkit.config import ModelConfig
from nerfkit.errors import InputError
from nerfkit.fields import NeRFField
from nerfkit.types import Rays


class NeRFModel(nnx.Module):
    """The fields of a model.

    ``hierarchical`` sampling (NeRF section 5.2): a coarse field sampled uniformly and a fine field sampled
    where the coarse weights are. ``occupancy`` sampling: the coarse field alone, sampled in occupied cells.
    """

    def __init__(self, cfg: ModelConfig, *, rngs: nnx.Rngs, aabb=((-1.5,) * 3, (1.5,) * 3), num_images: int = 0):
        self.cfg = cfg
        dtype = jnp.bfloat16 if cfg.compute_dtype == "bfloat16" else jnp.float32
        if cfg.mip and (cfg.sampler != "hierarchical" or cfg.contraction):
            raise InputError("mip needs the hierarchical sampler (and no contraction)", field="--model.mip")
        if cfg.contraction:  # the field lives in the contracted ball of radius 2
            if cfg.sampler != "hierarchical":
                raise InputError("contraction needs the hierarchical sampler", field="--model.sampler")
            aabb = ((-2.0,) * 3, (2.0,) * 3)
        app = cfg.appearance_dim
        self.coarse = NeRFField(cfg.coarse, rngs=rngs, dtype=dtype, aabb=aabb, appearance_dim=app)
        use_fine = cfg.sampler == "hierarchical" and cfg.num_fine > 0
        self.fine = NeRFField(cfg.fine, rngs=rngs, dtype=dtype, aabb=aabb, appearance_dim=app) if use_fine else None
        if app:
            if cfg.appearance_render >= max(num_images, 1):
                raise InputError(f"is {cfg.appearance_render}, the scene has {num_images} training images",
                                 field="--model.appearance-render")
            self.appearance = nnx.Embed(max(num_images, 1), app, rngs=rngs,
                                        embedding_init=nnx.initializers.normal(0.01))


def appearance_codes(model: NeRFModel, rays: Rays) -> jax.Array | None:
    """float32 [B, appearance_dim] appearance code of each ray, or None without embeddings.

    Training rays carry ``image_ids``; novel views use the mean of all training images' codes (or the one
    ``appearance_render`` names)."""
    cfg = model.cfg
    if not cfg.appearance_dim:
        return None
    if rays.image_ids is not None:
        return model.appearance(rays.image_ids)
    table = model.appearance.embedding[...]
    code = jnp.mean(table, axis=0) if cfg.appearance_render < 0 else table[cfg.appearance_render]
    return jnp.broadcast_to(code, (*rays.origins.shape[:-1], cfg.appearance_dim))


def contract(x: jax.Array, radius: float = 1.0) -> jax.Array:
    """mip-NeRF 360's scene contraction (eq. 10) of points [..., 3] in units of ``radius``.

    Identity inside the ball of radius 1 (times ``radius``); outside, ``(2 - 1/|x|) x/|x|``, so all of space
    lands in the ball of radius 2 and distance is spent in proportion to inverse depth.
    """
    x = x / radius
    n = jnp.linalg.norm(x, axis=-1, keepdims=True)
    safe = jnp.maximum(n, 1.0)  # the outer branch only runs where |x| > 1: keep its gradient finite elsewhere
    return jnp.where(n <= 1.0, x, (2.0 - 1.0 / safe) * x / safe)


def _per_sample(app):
    return None if app is None else app[..., None, :]


def _evaluate(field: NeRFField, rays: Rays, t: jax.Array, background, cfg: ModelConfig, app=None) -> dict:
    if cfg.mip:  # the frustum of each interval as a Gaussian; the field encodes it with the IPE
        radii = jnp.zeros(rays.origins.shape[:-1]) if rays.radii is None else rays.radii
        mean, cov = mip.frustum_to_gaussian(rays.origins, rays.directions, t[..., :-1], t[..., 1:], radii)
        sigma, rgb = field(mean, rays.viewdirs[..., None, :], cov=cov, appearance=_per_sample(app))
        out = integrator.volume_render(sigma, rgb, t, background)
        out["t"] = t
        return out
    tmid = 0.5 * (t[..., 1:] + t[..., :-1])  # [B, S]
    points = rays.origins[..., None, :] + tmid[..., None] * rays.directions[..., None, :]
    if cfg.contraction:
        points = contract(points, cfg.contraction_radius)
    sigma, rgb = field(points, rays.viewdirs[..., None, :], appearance=_per_sample(app))
    out = integrator.volume_render(sigma, rgb, t, background)
    out["t"] = t
    return out


def ray_bounds(cfg: ModelConfig, rays: Rays, near: float, far: float, aabb) -> tuple[jax.Array, jax.Array]:
    """Per-ray [t_near, t_far]: the scene's near/far, clipped to the box when the config says so."""
    batch = rays.origins.shape[:-1]
    if cfg.clip_to_aabb or cfg.sampler == "occupancy":
        t_near, t_far, _ = sampling.intersect_aabb(rays.origins, rays.directions, aabb, near, far)
        return t_near, t_far
    return jnp.full(batch, near, jnp.float32), jnp.full(batch, far, jnp.float32)


def render_rays(
    model: NeRFModel,
    rays: Rays,
    key: jax.Array,
    *,
    near: float,
    far: float,
    aabb: jax.Array,
    background: jax.Array,
    randomized: bool,
    occupied: jax.Array | None = None,
) -> dict:
    """Render a batch of rays.

    Args:
      model: the fields; rays: a ``Rays`` batch [B]; key: PRNG key for sample jitter.
      near, far: ray bounds; aabb: float32 [2, 3] scene box.
      background: float32 [3] or [B, 3]; randomized: jitter samples (training).
      occupied: bool [R, R, R] occupancy grid (required by the ``occupancy`` sampler).
    Returns:
      dict: ``rgb`` [B, 3], ``depth`` [B], ``opacity`` [B] of the final pass, and ``coarse`` — the same for
      the coarse pass of the hierarchical sampler (used for its own loss), else None.
    """
    cfg = model.cfg
    t_near, t_far = ray_bounds(cfg, rays, near, far, aabb)
    if cfg.sampler == "occupancy":
        dt = occupancy.step_size(aabb_static(aabb), cfg.march_steps)
        tmid, delta, _ = occupancy.march(key, rays.origins, rays.directions, t_near, t_far, occupied, aabb,
                                         dt=dt, march_steps=cfg.march_steps, max_samples=cfg.max_samples,
                                         randomized=randomized)
        points = rays.origins[..., None, :] + tmid[..., None] * rays.directions[..., None, :]
        sigma, rgb = model.coarse(points, rays.viewdirs[..., None, :], appearance=_per_sample(appearance_codes(model, rays)))
        out = integrator.composite(integrator.weights_from_deltas(sigma, delta), tmid, rgb, background, t_far)
        return {"rgb": out["rgb"], "depth": out["depth"], "opacity": out["opacity"], "coarse": None}
    k_coarse, k_fine = jax.random.split(key)
    t = sampling.stratified(k_coarse, t_near, t_far, rays.origins.shape[:-1], cfg.num_coarse, randomized,
                            lindisp=cfg.lindisp)
    app = appearance_codes(model, rays)
    coarse = _evaluate(model.coarse, rays, t, background, cfg, app)
    if model.fine is None:
        return {**{k: coarse[k] for k in ("rgb", "depth", "opacity")}, "coarse": None}
    t_new = sampling.sample_pdf(k_fine, coarse["t"], coarse["weights"], cfg.num_fine, randomized)
    fine = _evaluate(model.fine, rays, sampling.merge_samples(coarse["t"], t_new), background, cfg, app)
    return {**{k: fine[k] for k in ("rgb", "depth", "opacity")}, "coarse": coarse}


def render_rays_packed(model: NeRFModel, rays: Rays, key: jax.Array, *, near: float, far: float, aabb: jax.Array,
                       background: jax.Array, occupied: jax.Array, budget: int, randomized: bool = True,
                       prepass_budget: int = 0) -> dict:
    """Occupancy-sampler rendering with a fixed budget of ``budget`` field evaluations for the whole batch.

    Same samples as :func:`render_rays` with the occupancy sampler, packed (see ``occupancy.march_packed``).
    With ``prepass_budget > 0`` (training with early ray termination, as nerfacc does): the samples are first
    packed into ``prepass_budget`` slots, a gradient-free density pass finds where each ray's transmittance
    falls below ``cfg.early_stop_eps``, and only the samples in front of that point are packed into
    ``budget`` slots and rendered (the ones behind carry less than ``early_stop_eps`` of the ray's weight).
    Returns ``rgb`` [B, 3], ``depth`` [B], ``opacity`` [B], ``ray_ok`` bool [B] (the ray's samples all fit
    in the budget: use only those in a loss) and ``n_samples`` (slots used).
    """
    cfg = model.cfg
    t_near, t_far = ray_bounds(cfg, rays, near, far, aabb)
    dt = occupancy.step_size(aabb_static(aabb), cfg.march_steps)
    p = occupancy.march_packed(key, rays.origins, rays.directions, t_near, t_far, occupied, aabb, dt=dt,
                               march_steps=cfg.march_steps, max_samples=cfg.max_samples,
                               budget=prepass_budget or budget, randomized=randomized)
    b = rays.origins.shape[0]
    if prepass_budget:
        p = _cut_behind_surface(model, rays, p, budget, cfg.early_stop_eps)
    ray = jnp.minimum(p["ray"], b - 1)  # unused slots read ray b-1's data; their delta is 0
    points = rays.origins[ray] + p["t"][:, None] * rays.directions[ray]
    app = appearance_codes(model, rays)
    sigma, rgb = model.coarse(points, rays.viewdirs[ray], appearance=None if app is None else app[ray])
    out = integrator.composite_packed(sigma, rgb, p["t"], p["delta"], p["ray"], b, background, t_far)
    return {**out, "ray_ok": p["ray_ok"], "n_samples": p["n_samples"]}


def _cut_behind_surface(model: NeRFModel, rays: Rays, p: dict, budget: int, eps: float) -> dict:
    """Drop the packed samples ``p`` that lie where the ray's transmittance (from the field's density, no
    gradient) is below ``eps``, and re-pack the rest into ``budget`` slots (see :func:`render_rays_packed`)."""
    b = rays.origins.shape[0]
    ray = jnp.minimum(p["ray"], b - 1)
    points = rays.origins[ray] + p["t"][:, None] * rays.directions[ray]
    sigma = jax.lax.stop_gradient(model.coarse.density_only(points))
    optical = sigma * p["delta"]
    starts = jnp.concatenate([jnp.ones((1,), bool), p["ray"][1:] != p["ray"][:-1]])
    before = integrator.optical_depth_before(optical, starts)
    keep = (p["delta"] > 0) & (before < integrator.stop_depth(eps))  # a prefix of each ray's samples: order is kept
    new = jnp.cumsum(keep) - 1
    fits = keep & (new < budget)
    slot = jnp.where(fits, new, budget)
    pack = lambda v, fill: jnp.full(budget + 1, fill, v.dtype).at[slot].set(v)[:budget]  # noqa: E731
    overflow = jax.ops.segment_max((keep & ~fits).astype(jnp.int32), p["ray"], num_segments=b + 1)[:b] > 0
    return {"t": pack(p["t"], 0.0), "delta": pack(p["delta"], 0.0), "ray": pack(p["ray"], b),
            "ray_ok": p["ray_ok"] & ~overflow, "n_samples": jnp.minimum(jnp.sum(keep), budget)}


def render_rays_marching(model: NeRFModel, rays: Rays, *, near: float, far: float, aabb: jax.Array,
                         background: jax.Array, occupied: jax.Array, budget: int, early_stop_eps: float) -> dict:
    """Occupancy-sampler rendering in rounds, with early ray termination (no gradients: rendering only).

    The samples are those of :func:`render_rays` (``occupancy.march``, not randomised). Each round packs the
    next samples of every ray still alive into ``budget`` slots (as many per ray as share the slots evenly),
    evaluates the field once on them and composites them onto what the ray has accumulated. A ray dies when
    its samples run out or its transmittance falls below ``early_stop_eps``; its slots go to the rays still
    alive. Rounds repeat (``lax.while_loop``) until every ray is dead, so the shapes are static, the work
    follows the scene and there is no host round-trip. With ``early_stop_eps = 0`` every sample is
    composited: the result is :func:`render_rays`'s up to float rounding; otherwise each pixel differs from
    it by at most ``early_stop_eps`` times its largest colour difference.

    Returns ``rgb`` [B, 3], ``depth`` [B], ``opacity`` [B], ``samples`` int32 [B] (field evaluations of each
    ray) and ``rounds`` int32 [].
    """
    cfg = model.cfg
    b = rays.origins.shape[0]
    t_near, t_far = ray_bounds(cfg, rays, near, far, aabb)
    dt = occupancy.step_size(aabb_static(aabb), cfg.march_steps)
    t_all, delta_all, mask = occupancy.march(jax.random.key(0), rays.origins, rays.directions, t_near, t_far,
                                             occupied, aabb, dt=dt, march_steps=cfg.march_steps,
                                             max_samples=cfg.max_samples, randomized=False)
    n_ray = jnp.sum(mask, axis=-1).astype(jnp.int32)  # valid samples come first, in distance order
    app = appearance_codes(model, rays)
    stop_depth = integrator.stop_depth(early_stop_eps)
    seg = lambda v, ray: jax.ops.segment_sum(v, ray, num_segments=b + 1)[:b]  # noqa: E731

    def alive(s):
        return (s["cursor"] < n_ray) & (s["optical"] < stop_depth)

    def body(s):
        live = alive(s)
        n_live = jnp.maximum(jnp.sum(live), 1)
        share = jnp.maximum((budget + n_live - 1) // n_live, 1)  # slots per live ray, rounded up
        take = jnp.where(live, jnp.minimum(share, n_ray - s["cursor"]), 0)
        taken, ray, rank = occupancy.assign_slots(take, budget)
        used = ray < b
        r = jnp.minimum(ray, b - 1)
        idx = jnp.minimum(s["cursor"][r] + rank, cfg.max_samples - 1)
        t = t_all[r, idx]
        delta = jnp.where(used, delta_all[r, idx], 0.0)
        points = rays.origins[r] + t[:, None] * rays.directions[r]
        sigma, rgb = model.coarse(points, rays.viewdirs[r], appearance=None if app is None else app[r])
        optical = sigma * delta
        first = rank == 0
        before = integrator.optical_depth_before(optical, first) + s["optical"][r]
        w = -jnp.expm1(-optical) * jnp.exp(-before)
        ray_seg = jnp.where(used, ray, b)
        return {"cursor": s["cursor"] + taken, "optical": s["optical"] + seg(optical, ray_seg),
                "acc": s["acc"] + seg(w, ray_seg), "rgb": s["rgb"] + seg(w[:, None] * rgb, ray_seg),
                "wt": s["wt"] + seg(w * t, ray_seg), "rounds": s["rounds"] + 1}

    zeros = jnp.zeros((b,), jnp.float32)
    init = {"cursor": jnp.zeros((b,), jnp.int32), "optical": zeros, "acc": zeros, "rgb": jnp.zeros((b, 3)),
            "wt": zeros, "rounds": jnp.zeros((), jnp.int32)}
    s = jax.lax.while_loop(lambda s: jnp.any(alive(s)), body, init)
    acc = s["acc"]
    safe_acc = jnp.where(acc > 1e-6, acc, 1.0)
    return {"rgb": s["rgb"] + (1.0 - acc[:, None]) * background, "opacity": acc,
            "depth": jnp.where(acc > 1e-6, s["wt"] / safe_acc, t_far), "samples": s["cursor"],
            "rounds": s["rounds"]}


def aabb_static(aabb):
    """The box as Python floats (the marching step must be a compile-time constant)."""
    return np.asarray(aabb, np.float64)


def grid_density(model: NeRFModel, points: jax.Array) -> jax.Array:
    """Density of the sampled field at points [N, 3] (for occupancy-grid updates)."""
    return model.coarse.density_only(points)
