"""The Sampler protocol: how a model's fields are sampled along rays, for training and for rendering.

A sampler is a frozen dataclass built once from the config (:func:`nerfkit.samplers.build`) and closed over by
the jitted train step and render functions. It holds no arrays: what it learns while training (the occupancy
grid; later, proposal networks' schedules) is its *state*, a pytree it creates, updates by returning a new
one, and that is checkpointed beside the parameters. Every sampler answers the same calls, so the train
step, the renderer and the fit loop never ask which one they have:

==========================  ==============================================================================
``field_names(cfg)``        the model fields it evaluates (classmethod; raises ``InputError`` for a config
                            it cannot serve, e.g. mip-NeRF without the hierarchical sampler)
``from_config(cfg, bounds,  the sampler for a model config, a scene's bounds and the training budgets
train)``                    (classmethod)
``init_state()``            its state before training
``update_due(step)``        host-side schedule: does step ``step`` refresh the state?
``update(model, state,      the refreshed state (traced inside ``jit``; ``mesh`` splits the work)
key, mesh)``
``render_train(model,       randomised samples within a fixed budget, composited:
rays, key, state, bg)``     :class:`~nerfkit.types.RenderOutputs` (``ray_ok`` marks rays whose samples fitted)
``losses(out, target)``     its extra loss terms (the coarse pass's photometric loss, ...): a dict
``render(model, rays,       deterministic rendering of a chunk with ``slots`` field evaluations (per round
state, bg, slots)``         where it renders in rounds, with early ray termination)
``fallback``                a sampler that renders exactly the rays ``render`` flagged in ``ray_ok``, or None
``slots_per_ray``           the default ``slots`` per ray of a chunk
==========================  ==============================================================================
"""

from __future__ import annotations

from typing import Any, Protocol

import jax
import jax.numpy as jnp

from nerfkit import sampling
from nerfkit.types import Bounds, Rays, RenderOutputs


class Sampler(Protocol):
    """See the module docstring."""

    bounds: Bounds
    slots_per_ray: int

    @classmethod
    def field_names(cls, cfg) -> tuple[str, ...]: ...

    @classmethod
    def from_config(cls, cfg, bounds: Bounds, train) -> "Sampler": ...

    def init_state(self) -> Any: ...

    def update_due(self, step: int) -> bool: ...

    def update(self, model, state, key: jax.Array, mesh=None) -> Any: ...

    def render_train(self, model, rays: Rays, key: jax.Array, state, background) -> RenderOutputs: ...

    def losses(self, out: RenderOutputs, target: jax.Array) -> dict[str, jax.Array]: ...

    def render(self, model, rays: Rays, state, background, slots: int | None = None) -> RenderOutputs: ...

    @property
    def fallback(self) -> "Sampler | None": ...


def ray_bounds(rays: Rays, bounds: Bounds, clip: bool) -> tuple[jax.Array, jax.Array]:
    """Per-ray [t_near, t_far] (float32 [B] each): the scene's near/far, clipped to the box when ``clip``."""
    if clip:
        t_near, t_far, _ = sampling.intersect_aabb(rays.origins, rays.directions, jnp.asarray(bounds.aabb),
                                                   bounds.near, bounds.far)
        return t_near, t_far
    batch = rays.origins.shape[:-1]
    return jnp.full(batch, bounds.near, jnp.float32), jnp.full(batch, bounds.far, jnp.float32)
