"""The occupancy-grid sampler (Instant-NGP / nerfacc): one field, sampled only in cells of a grid that the
field's own density marks occupied.

State: an :class:`~nerfkit.types.OccupancyGrid`, refreshed every ``grid_update_every`` steps from the field's
density at a jittered point of every cell (an EMA; see :func:`nerfkit.occupancy.update`).

Training packs every ray's samples into one fixed budget of ``sample_budget`` field evaluations
(:func:`nerfkit.occupancy.march_packed`); with ``prepass_budget`` a gradient-free density pass first drops the
samples behind each ray's surface (training with early ray termination, nerfacc's scheme).

Rendering (``mode``):
- ``march`` (default): rounds inside one ``lax.while_loop``; each round packs the next samples of every ray
  still alive into ``slots`` field evaluations, and a ray stops once its transmittance is below
  ``early_stop_eps`` (early ray termination), its slots going to the rays still marching.
- ``packed``: all samples of a chunk packed into ``slots`` (no termination); rays that overflow are flagged
  and redone by :attr:`fallback`.
- ``one_pass``: ``max_samples`` slots per ray, batched (the reference the others are tested against).
"""

from __future__ import annotations

import dataclasses
from typing import Literal

import jax
import jax.numpy as jnp

from nerfkit import integrator, occupancy, parallel
from nerfkit.config import ModelConfig, TrainConfig
from nerfkit.errors import InputError
from nerfkit.samplers.base import ray_bounds
from nerfkit.types import Bounds, OccupancyGrid, PackedSamples, Rays, RenderOutputs

GRID_UPDATE_CHUNK = 65536  # cells evaluated per call of the field during a grid update


@dataclasses.dataclass(frozen=True)
class OccupancyGridSampler:
    cfg: ModelConfig
    bounds: Bounds
    sample_budget: int = 65536
    prepass_budget: int = 0
    mode: Literal["march", "packed", "one_pass"] = "march"

    @classmethod
    def field_names(cls, cfg: ModelConfig) -> tuple[str, ...]:
        if cfg.mip:
            raise InputError("mip needs the hierarchical sampler (and no contraction)", field="--model.mip")
        if cfg.contraction:
            raise InputError("contraction needs the hierarchical or the proposal sampler", field="--model.sampler")
        return ("coarse",)

    @classmethod
    def from_config(cls, cfg: ModelConfig, bounds: Bounds, train: TrainConfig) -> "OccupancyGridSampler":
        return cls(cfg, bounds, sample_budget=train.sample_budget, prepass_budget=train.early_stop_prepass)

    @property
    def slots_per_ray(self) -> int:
        return 16 if self.mode == "packed" else 2

    @property
    def dt(self) -> float:
        """The marching step (a compile-time constant)."""
        return occupancy.step_size(self.bounds.aabb, self.cfg.march_steps)

    # ------------------------------------------------------------------------------------------ state
    def init_state(self) -> OccupancyGrid:
        return occupancy.init_grid(self.cfg.grid_resolution)

    def update_due(self, step: int) -> bool:
        return step > 0 and step % self.cfg.grid_update_every == 0

    def update(self, model, state: OccupancyGrid, key, mesh=None) -> OccupancyGrid:
        """Re-estimate every cell's density at a jittered point (chunked; with a ``mesh``, each chunk of cells
        is split across its devices) and fold it into the running estimate."""
        cfg = self.cfg
        r = cfg.grid_resolution
        pts = occupancy.cell_centers(r, jnp.asarray(self.bounds.aabb, jnp.float32), key)
        n = pts.shape[0]
        pad = (-n) % GRID_UPDATE_CHUNK
        pts = jnp.concatenate([pts, jnp.zeros((pad, 3), pts.dtype)]).reshape(-1, GRID_UPDATE_CHUNK, 3)
        sigma = jax.lax.map(lambda p: model.coarse.density_only(parallel.shard_batch(p, mesh)), pts)
        sigma = jax.lax.stop_gradient(sigma.reshape(-1)[:n].reshape(r, r, r))
        density, occupied = occupancy.update(state.density, sigma, decay=cfg.grid_decay, dt=self.dt,
                                             threshold=cfg.grid_threshold)
        return OccupancyGrid(density=density, occupied=occupied)

    # --------------------------------------------------------------------------------------- training
    def _march_packed(self, rays: Rays, key, state: OccupancyGrid, budget: int, randomized: bool):
        """(the batch's samples packed into ``budget`` slots, each ray's t_far [B])."""
        cfg = self.cfg
        t_near, t_far = ray_bounds(rays, self.bounds, clip=True)
        p = occupancy.march_packed(key, rays.origins, rays.directions, t_near, t_far, state.occupied,
                                   jnp.asarray(self.bounds.aabb), dt=self.dt, march_steps=cfg.march_steps,
                                   max_samples=cfg.max_samples, budget=budget, randomized=randomized)
        return p, t_far

    def _composite_packed(self, model, rays: Rays, p: PackedSamples, t_far, background) -> RenderOutputs:
        sigma, rgb = model.query("coarse", rays, p.t, ray=p.ray)
        b = rays.origins.shape[0]
        out = integrator.composite(sigma, rgb, p.t, p.delta, background, t_far, ray=p.ray, num_rays=b)
        return out.replace(ray_ok=p.ray_ok, n_samples=p.n_samples)

    def render_train(self, model, rays: Rays, key, state: OccupancyGrid, background,
                     randomized: bool = True) -> RenderOutputs:
        """Packed samples within ``sample_budget`` (see the module docstring); ``ray_ok`` marks the rays whose
        samples all fitted, ``n_samples`` the slots used."""
        p, t_far = self._march_packed(rays, key, state, self.prepass_budget or self.sample_budget, randomized)
        if self.prepass_budget:
            p = self._cut_behind_surface(model, rays, p)
        return self._composite_packed(model, rays, p, t_far, background)

    def _cut_behind_surface(self, model, rays: Rays, p: PackedSamples) -> PackedSamples:
        """Drop the packed samples that lie where the ray's transmittance (from the field's density, no
        gradient) is below ``early_stop_eps``, and re-pack the rest into ``sample_budget`` slots."""
        b, budget = rays.origins.shape[0], self.sample_budget
        sigma = jax.lax.stop_gradient(model.query("coarse", rays, p.t, ray=p.ray, density_only=True))
        optical = sigma * p.delta
        starts = jnp.concatenate([jnp.ones((1,), bool), p.ray[1:] != p.ray[:-1]])
        before = integrator.optical_depth_before(optical, starts)
        keep = (p.delta > 0) & (before < integrator.stop_depth(self.cfg.early_stop_eps))  # a prefix of each ray
        new = jnp.cumsum(keep) - 1
        fits = keep & (new < budget)
        slot = jnp.where(fits, new, budget)
        pack = lambda v, fill: jnp.full(budget + 1, fill, v.dtype).at[slot].set(v)[:budget]  # noqa: E731
        overflow = jax.ops.segment_max((keep & ~fits).astype(jnp.int32), p.ray, num_segments=b + 1)[:b] > 0
        return PackedSamples(t=pack(p.t, 0.0), delta=pack(p.delta, 0.0), ray=pack(p.ray, b),
                             ray_ok=p.ray_ok & ~overflow, n_samples=jnp.minimum(jnp.sum(keep), budget))

    def losses(self, out: RenderOutputs, target: jax.Array) -> dict[str, jax.Array]:
        return {}

    # -------------------------------------------------------------------------------------- rendering
    def render(self, model, rays: Rays, state: OccupancyGrid, background, slots: int | None = None) -> RenderOutputs:
        slots = slots or rays.origins.shape[0] * self.slots_per_ray
        if self.mode == "packed":
            p, t_far = self._march_packed(rays, jax.random.key(0), state, slots, randomized=False)
            return self._composite_packed(model, rays, p, t_far, background)
        if self.mode == "one_pass":
            return self._render_one_pass(model, rays, state, background)
        return self._render_marching(model, rays, state, background, slots)

    @property
    def fallback(self) -> "OccupancyGridSampler | None":
        return dataclasses.replace(self, mode="one_pass") if self.mode == "packed" else None

    def _march(self, rays: Rays, state: OccupancyGrid):
        """Every ray's samples, batched: (t float32 [B, K], delta [B, K], mask bool [B, K], t_far [B])."""
        cfg = self.cfg
        t_near, t_far = ray_bounds(rays, self.bounds, clip=True)
        t, delta, mask = occupancy.march(jax.random.key(0), rays.origins, rays.directions, t_near, t_far,
                                         state.occupied, jnp.asarray(self.bounds.aabb), dt=self.dt,
                                         march_steps=cfg.march_steps, max_samples=cfg.max_samples,
                                         randomized=False)
        return t, delta, mask, t_far

    def _render_one_pass(self, model, rays: Rays, state: OccupancyGrid, background) -> RenderOutputs:
        t, delta, _, t_far = self._march(rays, state)
        sigma, rgb = model.query("coarse", rays, t)
        return integrator.composite(sigma, rgb, t, delta, background, t_far).replace(weights=None)

    def _render_marching(self, model, rays: Rays, state: OccupancyGrid, background, budget: int) -> RenderOutputs:
        """Rendering in rounds with early ray termination (no gradients: rendering only).

        The samples are those of ``one_pass``. Each round packs the next samples of every ray still alive into
        ``budget`` slots (as many per ray as share the slots evenly), evaluates the field once on them and
        composites them onto what the ray has accumulated (:func:`nerfkit.integrator.accumulate` with the
        optical depth carried in). A ray dies when its samples run out or its transmittance falls below
        ``early_stop_eps``. Rounds repeat until every ray is dead: static shapes, work that follows the scene,
        no host round-trip. With ``early_stop_eps = 0`` the result is ``one_pass``'s up to float rounding;
        otherwise each pixel differs from it by at most ``early_stop_eps`` times its largest colour difference.
        Returns ``samples`` [B] (field evaluations of each ray) and ``rounds`` besides the pixels.
        """
        b = rays.origins.shape[0]
        t_all, delta_all, mask, t_far = self._march(rays, state)
        n_ray = jnp.sum(mask, axis=-1).astype(jnp.int32)  # valid samples come first, in distance order
        stop = integrator.stop_depth(self.cfg.early_stop_eps)

        def alive(s):
            sums, cursor, _ = s
            return (cursor < n_ray) & (sums.optical < stop)

        def body(s):
            sums, cursor, rounds = s
            live = alive(s)
            n_live = jnp.maximum(jnp.sum(live), 1)
            share = jnp.maximum((budget + n_live - 1) // n_live, 1)  # slots per live ray, rounded up
            taken, ray, rank = occupancy.assign_slots(jnp.where(live, jnp.minimum(share, n_ray - cursor), 0), budget)
            r = jnp.minimum(ray, b - 1)
            idx = jnp.minimum(cursor[r] + rank, self.cfg.max_samples - 1)
            t, delta = t_all[r, idx], jnp.where(ray < b, delta_all[r, idx], 0.0)
            sigma, rgb = model.query("coarse", rays, t, ray=ray)
            new, _ = integrator.accumulate(sigma, rgb, t, delta, ray=ray, num_rays=b, optical_before=sums.optical)
            return sums + new, cursor + taken, rounds + 1

        init = (integrator.RaySums.zeros(b, jnp.shape(background)[-1]), jnp.zeros((b,), jnp.int32),
                jnp.zeros((), jnp.int32))
        sums, cursor, rounds = jax.lax.while_loop(lambda s: jnp.any(alive(s)), body, init)
        return integrator.finish(sums, background, t_far).replace(samples=cursor, rounds=rounds)
