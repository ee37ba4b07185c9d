"""NeRF-W's evaluation protocol for models with per-image appearance codes (Martin-Brualla et al. 2021, sec. 6).

A held-out photo has no trained code; the mean of the training codes (what ``render`` uses) scores a view
with its own exposure or white balance unfairly. NeRF-W instead optimises a code for each held-out view on the
LEFT half of its pixels, with the model frozen, and scores the RIGHT half only. :class:`CodeFitter` does this:
a jitted Adam loop (``steps`` steps on random batches of left-half rays, from the render-time code) through
the run's own sampler; the view is then rendered once with both codes (:meth:`CodeFitter.codes`: the renderer
computes each ray's samples and densities once and its colour with each code), by the same chunked renderer as
every other view (:mod:`nerfkit.renderer`). One compiled program serves every view of a split.

What is differentiated: :meth:`~nerfkit.samplers.base.Sampler.render_train`, the sampler's training render
(the train step takes its gradient, so every sampler provides one; ``render`` itself may not be differentiable,
e.g. the occupancy sampler rendering in rounds with a ``while_loop``). Its samples are randomised as in training
and rays whose samples overflow its budget (``ray_ok``) are left out of the loss.
"""

from __future__ import annotations

import dataclasses
import time

import jax
import jax.numpy as jnp
import numpy as np
import optax
from flax import nnx

from nerfkit import cameras as cam
from nerfkit import metrics, renderer
from nerfkit.mip import pixel_radius
from nerfkit.types import Cameras, Rays


def halves(width: int) -> tuple[slice, slice]:
    """(left, right) column slices of an image ``width`` wide: ``[0, width // 2)`` and ``[width // 2, width)``.

    >>> halves(5)
    (slice(0, 2, None), slice(2, 5, None))
    """
    return slice(0, width // 2), slice(width // 2, width)


def render_code(graphdef, params) -> np.ndarray:
    """float32 [A]: the code novel views are rendered with (the mean training code, or ``appearance_render``'s),
    as :meth:`nerfkit.model.NeRFModel.appearance_codes` gives it to a ray without codes or image ids."""
    model = nnx.merge(graphdef, params)
    ray = jnp.zeros((1, 3), jnp.float32)
    return np.asarray(model.appearance_codes(Rays(ray, ray, ray))[0])


def make_code_fit(graphdef, sampler, background, steps: int, batch: int, lr: float):
    """The jitted loop ``fit(params, state, code0 [A], origins [P, 3], directions [P, 3], radii [P], target [P, 3],
    key) -> code [A]``: ``steps`` Adam steps (learning rate ``lr``) on the mean squared error of ``batch`` rays
    drawn at random from the ``P`` given ones, the model's parameters held fixed."""
    tx = optax.adam(lr)
    bg = jnp.asarray(background, jnp.float32)

    def loss(code, params, state, rays: Rays, target, key):
        model = nnx.merge(graphdef, params)
        rays = rays.replace(appearance=jnp.broadcast_to(code, (batch, code.shape[-1])))
        out = sampler.render_train(model, rays, key, state, bg)
        ok = jnp.ones((batch,), jnp.float32) if out.ray_ok is None else out.ray_ok.astype(jnp.float32)
        return jnp.sum(ok[:, None] * (out.rgb - target) ** 2) / jnp.maximum(3.0 * jnp.sum(ok), 1.0)

    def fit(params, state, code0, origins, directions, radii, target, key):
        def step(carry, k):
            code, opt = carry
            k_pick, k_render = jax.random.split(k)
            idx = jax.random.randint(k_pick, (batch,), 0, origins.shape[0])
            rays = Rays(origins[idx], directions[idx], directions[idx], radii=radii[idx])
            grad = jax.grad(loss)(code, params, state, rays, target[idx], k_render)
            updates, opt = tx.update(grad, opt, code)
            return (optax.apply_updates(code, updates), opt), None

        (code, _), _ = jax.lax.scan(step, (code0, tx.init(code0)), jax.random.split(key, steps))
        return code

    return jax.jit(fit)


@dataclasses.dataclass
class CodeFitter:
    """NeRF-W's protocol for one run (see the module docstring).

    Attributes:
      fn: the run's chunked renderer (:func:`nerfkit.renderer.make_render_fn`); params, state: the run's
        parameters and sampler state (as ``fn`` takes them); code0: the render-time code, float32 [A].
      fit: :func:`make_code_fit`'s loop; steps, lr: its settings (reported); seed: of its random batches.
    """

    fn: renderer.RenderFn
    params: object
    state: object
    code0: np.ndarray
    fit: object
    steps: int
    lr: float
    seed: int = 0

    @classmethod
    def for_run(cls, run, fn: renderer.RenderFn, params, state, background, steps: int = 50, lr: float = 0.04,
                batch: int | None = None) -> "CodeFitter":
        """The protocol for a restored run (:class:`nerfkit.runs.Run`); ``batch`` defaults to the training batch
        (at most 256 rays: a code has a few dozen numbers, and the fit should cost less than rendering the view)."""
        batch = batch or min(run.cfg.train.batch_rays, 256)
        fit = make_code_fit(run.graphdef, run.sampler, background, steps, batch, lr)
        return cls(fn, params, state, render_code(run.graphdef, params), fit, steps, lr, run.cfg.train.seed)

    def fit_code(self, cams: Cameras, index: int, gt: np.ndarray) -> tuple[np.ndarray, float]:
        """(the code fitted to the left half of view ``index`` float32 [A], the seconds it took); ``gt`` the
        view's image float [H, W, 3]."""
        left, _ = halves(cams.width)
        rays = cam.image_rays(cams, index, np)
        radii = np.full(rays.origins.shape[:-1], float(pixel_radius(float(cams.fx[index]))), np.float32)
        t0 = time.time()
        half = [jnp.asarray(a[:, left].reshape(-1, *a.shape[2:]))
                for a in (rays.origins, rays.directions, radii, np.asarray(gt, np.float32))]
        code = jax.device_get(self.fit(self.params, self.state, jnp.asarray(self.code0), *half,
                                       jax.random.key(self.seed * 100003 + index)))
        return code, time.time() - t0

    def codes(self, fitted: np.ndarray) -> np.ndarray:
        """float32 [2, A]: the render-time code and ``fitted``, to render a view with both at once (the
        renderer computes its geometry once: a code only changes colours)."""
        return np.stack([np.asarray(self.code0, np.float32), np.asarray(fitted, np.float32)])

    @staticmethod
    def score(rgb: np.ndarray, gt: np.ndarray, fit_seconds: float) -> tuple[dict, np.ndarray]:
        """Score the right half of a view rendered with :meth:`codes` (``rgb`` float [H, W, 2, 3]: the
        render-time code's colours, then the fitted code's) against ``gt`` [H, W, 3].

        Returns:
          (``{"mean_code": {psnr, ssim}, "fitted_code": {psnr, ssim}, "fit_seconds": s}``, the right half
          rendered with the fitted code float32 [H, W - W // 2, 3]). SSIM is None for a half under 11 pixels wide.
        """
        _, right = halves(gt.shape[1])
        fitted = rgb[:, right, 1]
        scores = {"mean_code": half_metrics(rgb[:, right, 0], gt[:, right]),
                  "fitted_code": half_metrics(fitted, gt[:, right]), "fit_seconds": fit_seconds}
        return scores, fitted


def half_metrics(pred, gt) -> dict:
    """:func:`nerfkit.metrics.image_metrics` of an image half; SSIM None where it is under 11 pixels on a side
    (too small for SSIM's window).

    >>> gt = np.zeros((16, 8, 3))
    >>> half_metrics(gt + 0.1, gt)["ssim"] is None, round(half_metrics(gt + 0.1, gt)["psnr"], 2)
    (True, 19.83)
    """
    if min(np.shape(pred)[:2]) >= metrics.SSIM_FILTER_SIZE:
        return metrics.image_metrics(pred, gt)
    return {"psnr": metrics.psnr(metrics.quantize(pred), metrics.quantize(gt)), "ssim": None}
