"""Samplers: where along each ray a model's fields are evaluated (see :mod:`nerfkit.samplers.base` for the
interface). The config's ``sampler`` names one; this is the one place that maps the name to a class.

- ``hierarchical`` (:mod:`nerfkit.samplers.hierarchical`): NeRF's coarse-to-fine sampling.
- ``occupancy`` (:mod:`nerfkit.samplers.occupancy_grid`): an occupancy grid skips empty space; packed
  samples for training, rounds with early ray termination for rendering.
- ``proposal`` (:mod:`nerfkit.samplers.proposal`): density-only proposal fields choose the radiance field's
  samples (mip-NeRF 360, nerfacto); for unbounded real captures.
"""

from __future__ import annotations

from nerfkit.config import ModelConfig, TrainConfig
from nerfkit.samplers.base import Sampler, ray_bounds
from nerfkit.samplers.hierarchical import HierarchicalSampler
from nerfkit.samplers.occupancy_grid import OccupancyGridSampler
from nerfkit.samplers.proposal import ProposalSampler
from nerfkit.types import Bounds

SAMPLERS = {"hierarchical": HierarchicalSampler, "occupancy": OccupancyGridSampler, "proposal": ProposalSampler}

__all__ = ["SAMPLERS", "Sampler", "HierarchicalSampler", "OccupancyGridSampler", "ProposalSampler", "build", "ray_bounds",
           "sampler_class"]


def sampler_class(cfg: ModelConfig) -> type:
    """The class of the sampler ``cfg.sampler`` names."""
    return SAMPLERS[cfg.sampler]


def build(cfg: ModelConfig, bounds: Bounds, train: TrainConfig | None = None) -> Sampler:
    """The sampler of a model config, for a scene's ``bounds``, with the training budgets of ``train``."""
    return sampler_class(cfg).from_config(cfg, bounds, train or TrainConfig())
