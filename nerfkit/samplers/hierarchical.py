"""NeRF's hierarchical sampler (Mildenhall et al. 2020, section 5.2): stratified samples through a coarse
field, then importance samples drawn from the coarse weights through a fine field.

Both passes are composited and trained (the coarse pass has its own photometric loss); the fine pass is the
rendered result. It keeps no state. It serves the options that need contiguous intervals along each ray:
mip-NeRF's conical frustums (``--model.mip``), scene contraction and inverse-depth spacing for unbounded
captures (``--model.contraction``, ``--model.lindisp``).
"""

from __future__ import annotations

import dataclasses

import jax
import jax.numpy as jnp

from nerfkit import integrator, sampling
from nerfkit.config import ModelConfig, TrainConfig
from nerfkit.errors import InputError
from nerfkit.samplers.base import ray_bounds
from nerfkit.types import Bounds, NoState, Rays, RenderOutputs


@dataclasses.dataclass(frozen=True)
class HierarchicalSampler:
    cfg: ModelConfig
    bounds: Bounds
    slots_per_ray: int = 1  # unused: every ray gets num_coarse + num_fine samples

    @classmethod
    def field_names(cls, cfg: ModelConfig) -> tuple[str, ...]:
        if cfg.mip and cfg.contraction:
            raise InputError("mip needs the hierarchical sampler (and no contraction)", field="--model.mip")
        return ("coarse", "fine") if cfg.num_fine > 0 else ("coarse",)

    @classmethod
    def from_config(cls, cfg: ModelConfig, bounds: Bounds, train: TrainConfig) -> "HierarchicalSampler":
        return cls(cfg, bounds)

    def init_state(self) -> NoState:
        return NoState()

    def update_due(self, step: int) -> bool:
        return False

    def update(self, model, state, key, mesh=None):
        return state

    def _render(self, model, rays: Rays, key, background, randomized: bool) -> RenderOutputs:
        cfg = self.cfg
        t_near, t_far = ray_bounds(rays, self.bounds, clip=cfg.clip_to_aabb)
        k_coarse, k_fine = jax.random.split(key)
        t = sampling.stratified(k_coarse, t_near, t_far, rays.origins.shape[:-1], cfg.num_coarse, randomized,
                                lindisp=cfg.lindisp)
        coarse = self._pass(model, "coarse", rays, t, background)
        if model.fine is None:
            return coarse.replace(weights=None)
        t_new = sampling.sample_pdf(k_fine, t, coarse.weights, cfg.num_fine, randomized)
        fine = self._pass(model, "fine", rays, sampling.merge_samples(t, t_new), background)
        return fine.replace(weights=None, coarse=coarse.replace(weights=None))

    def _pass(self, model, field: str, rays: Rays, t: jax.Array, background) -> RenderOutputs:
        """One field over the intervals with endpoints ``t`` [B, S + 1]."""
        tmid = 0.5 * (t[..., 1:] + t[..., :-1])
        sigma, rgb = model.query(field, rays, tmid, intervals=(t[..., :-1], t[..., 1:]))
        return integrator.volume_render(sigma, rgb, t, background)

    def render_train(self, model, rays: Rays, key, state, background) -> RenderOutputs:
        return self._render(model, rays, key, background, randomized=True)

    def losses(self, out: RenderOutputs, target: jax.Array) -> dict[str, jax.Array]:
        if out.coarse is None:
            return {}
        return {"coarse": jnp.mean((out.coarse.rgb - target) ** 2)}

    def render(self, model, rays: Rays, state, background, slots: int | None = None) -> RenderOutputs:
        return self._render(model, rays, jax.random.key(0), background, randomized=False)

    @property
    def fallback(self):
        return None
