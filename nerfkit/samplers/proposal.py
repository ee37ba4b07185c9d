"""The proposal sampler (mip-NeRF 360, Barron et al. 2022; nerfacto): small density-only *proposal* fields
choose where along each ray the radiance field is evaluated.

Each ray is parametrised by a normalised distance ``s`` in [0, 1] (:meth:`ProposalSampler.to_t`). With scene
contraction it is nerfacto's piecewise spacing: linear in distance up to 1 (the cameras' ball after the
loaders' normalisation) and linear in inverse distance beyond, out to ``contraction_far``; half of ``s``
covers the foreground, half the rest of the world. Without contraction (NDC rays, bounded scenes) ``s`` is
linear between the scene's near and far.

Pass 0 evaluates ``proposal0`` at ``proposal_samples[0]`` stratified intervals of ``s``; each later pass
resamples intervals from the previous pass's weights (inverse CDF, in ``s``) and evaluates its own proposal
field; the radiance field (the model's ``coarse``) is evaluated at ``num_fine`` intervals drawn from the last
proposal's weights and composited. The photometric loss trains only the radiance field (samples carry no
gradient); the proposal fields learn from the interlevel loss, which asks each proposal histogram to bound
the radiance field's weights (:func:`nerfkit.losses.interlevel_loss`), so they learn where the surfaces are
at a fraction of the radiance field's cost. The optional distortion loss (``--model.distortion-loss``) acts
on the radiance field's weights. The sampler keeps no state: everything it learns is in the model.
"""

from __future__ import annotations

import dataclasses

import jax
import jax.numpy as jnp

from nerfkit import integrator, losses, sampling
from nerfkit.config import ModelConfig, TrainConfig
from nerfkit.errors import InputError
from nerfkit.types import Bounds, NoState, Rays, RenderOutputs

HISTOGRAM_PADDING = 0.01  # added to proposal weights before resampling (nerfacto), so no stretch is starved


def _spacing(t):
    """nerfacto's ``g(t)``: ``t / 2`` up to 1, then ``1 - 1 / (2 t)`` (linear in disparity) out to infinity."""
    return jnp.where(t < 1.0, t / 2.0, 1.0 - 1.0 / (2.0 * jnp.maximum(t, 1.0)))


def _spacing_inv(g):
    return jnp.where(g < 0.5, 2.0 * g, 1.0 / (2.0 - 2.0 * jnp.minimum(g, 1.0 - 1e-7)))


@dataclasses.dataclass(frozen=True)
class ProposalSampler:
    cfg: ModelConfig
    bounds: Bounds
    slots_per_ray: int = 1  # unused: every ray gets the same samples

    @classmethod
    def field_names(cls, cfg: ModelConfig) -> tuple[str, ...]:
        if cfg.mip:
            raise InputError("mip needs the hierarchical sampler", field="--model.mip")
        if not cfg.proposal_samples or min(cfg.proposal_samples) < 1 or cfg.num_fine < 1:
            raise InputError("the proposal sampler needs proposal_samples >= 1 each and num_fine >= 1",
                             field="--model.proposal-samples")
        render = cfg.render_proposal_samples
        if render and (len(render) != len(cfg.proposal_samples) or min(render) < 1):
            raise InputError(f"needs one count >= 1 for each of the {len(cfg.proposal_samples)} proposal passes",
                             field="--model.render-proposal-samples")
        if cfg.render_num_fine < 0:
            raise InputError("must be >= 0 (0: num_fine)", field="--model.render-num-fine")
        return ("coarse",) + tuple(f"proposal{i}" for i in range(len(cfg.proposal_samples)))

    @classmethod
    def from_config(cls, cfg: ModelConfig, bounds: Bounds, train: TrainConfig) -> "ProposalSampler":
        cls.field_names(cfg)
        return cls(cfg, bounds)

    def init_state(self) -> NoState:
        return NoState()

    def update_due(self, step: int) -> bool:
        return False

    def update(self, model, state, key, mesh=None):
        return state

    @property
    def far(self) -> float:
        return max(self.cfg.contraction_far, self.bounds.far) if self.cfg.contraction else self.bounds.far

    def to_t(self, s: jax.Array) -> jax.Array:
        """Ray distance of normalised distances ``s`` in [0, 1] (see the module docstring).

        >>> from nerfkit.types import Bounds
        >>> sampler = ProposalSampler(ModelConfig(sampler="proposal", contraction=True), Bounds(0.0, 10.0, ((0,) * 3,) * 2))
        >>> [round(float(t), 1) for t in sampler.to_t(jnp.array([0.0, 0.25, 0.5, 0.75, 1.0]))]
        [0.0, 0.5, 1.0, 2.0, 1000.0]
        """
        near, far = self.bounds.near, self.far
        if not self.cfg.contraction:
            return near + (far - near) * s
        g0, g1 = _spacing(jnp.float32(near)), _spacing(jnp.float32(far))
        return jnp.clip(_spacing_inv(g0 + (g1 - g0) * s), near, far)

    def counts(self, training: bool) -> tuple[tuple[int, ...], int]:
        """(samples per proposal pass, radiance field samples) per ray, in training or when rendering.

        >>> from nerfkit.types import Bounds
        >>> cfg = ModelConfig(sampler="proposal", proposal_samples=(48,), num_fine=24, render_num_fine=16)
        >>> sampler = ProposalSampler(cfg, Bounds(0.0, 10.0, ((0,) * 3,) * 2))
        >>> sampler.counts(training=True), sampler.counts(training=False)
        (((48,), 24), ((48,), 16))
        """
        cfg = self.cfg
        if training:
            return cfg.proposal_samples, cfg.num_fine
        return cfg.render_proposal_samples or cfg.proposal_samples, cfg.render_num_fine or cfg.num_fine

    def _passes(self, model, rays: Rays, key, randomized: bool):
        """The proposal passes: [(s endpoints [B, S_k + 1], weights [B, S_k]) per pass], and the radiance
        field's endpoints ``s`` [B, num_fine + 1] (the counts of :meth:`counts`: training ones when
        ``randomized``)."""
        proposal_samples, num_fine = self.counts(training=randomized)
        batch = rays.origins.shape[:-1]
        keys = jax.random.split(key, len(proposal_samples) + 1)
        histograms = []
        for i, n in enumerate(proposal_samples):
            if i == 0:
                s = sampling.stratified(keys[0], 0.0, 1.0, batch, n, randomized)
            else:
                s = self._resample(keys[i], *histograms[-1], n, randomized)
            t = self.to_t(s)
            sigma = model.query(f"proposal{i}", rays, 0.5 * (t[..., 1:] + t[..., :-1]), density_only=True)
            histograms.append((s, integrator.weights_from_density(sigma, t)))
        return histograms, self._resample(keys[-1], *histograms[-1], num_fine, randomized)

    @staticmethod
    def _resample(key, s, w, n: int, randomized: bool):
        """``n`` intervals (``n + 1`` sorted endpoints) drawn from the histogram ``(s, w)``, in [0, 1]."""
        edges = sampling.sample_pdf(key, s, w + HISTOGRAM_PADDING, n + 1, randomized)
        return jnp.concatenate([jnp.zeros_like(edges[..., :1]), edges[..., 1:-1], jnp.ones_like(edges[..., :1])],
                               axis=-1)

    def _render(self, model, rays: Rays, key, background, randomized: bool):
        histograms, s = self._passes(model, rays, key, randomized)
        t = self.to_t(s)
        sigma, rgb = model.query("coarse", rays, 0.5 * (t[..., 1:] + t[..., :-1]))
        return integrator.volume_render(sigma, rgb, t, background), histograms, s

    def render_train(self, model, rays: Rays, key, state, background) -> RenderOutputs:
        cfg = self.cfg
        out, histograms, s = self._render(model, rays, key, background, randomized=True)
        terms = {"interlevel": cfg.interlevel_loss * sum(
            losses.interlevel_loss(s, out.weights, s_p, w_p) for s_p, w_p in histograms)}
        if cfg.distortion_loss > 0:
            terms["distortion"] = cfg.distortion_loss * losses.distortion_loss(s, out.weights)
        return out.replace(weights=None, losses=terms)

    def losses(self, out: RenderOutputs, target: jax.Array) -> dict[str, jax.Array]:
        return dict(out.losses or {})

    def render(self, model, rays: Rays, state, background, slots: int | None = None) -> RenderOutputs:
        return self._render(model, rays, jax.random.key(0), background, randomized=False)[0].replace(weights=None)

    @property
    def fallback(self):
        return None
