"""Chunked rendering: any number of rays through one compiled function of fixed shape.

Rays are cut into chunks of ``chunk`` rays (the last one padded), so a 100x100 and an 800x800 image use the
same compiled program and device memory stays bounded by one chunk's intermediates. What a chunk costs is
the sampler's business (:meth:`nerfkit.samplers.base.Sampler.render`): the renderer never asks which
sampler it has.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Iterator
from typing import Callable

import jax
import jax.numpy as jnp
import numpy as np
from flax import nnx

from nerfkit import cameras as cam
from nerfkit import compile_cache, parallel
from nerfkit.mip import pixel_radius
from nerfkit.samplers import Sampler
from nerfkit.types import Cameras, Rays

ChunkFn = Callable[..., dict]  # (params, sampler_state, origins [C, 3], directions [C, 3], radii [C], appearance [A] | None)
#                                -> {name: [C, ...]}


@dataclasses.dataclass(frozen=True)
class RenderFn:
    """Jitted chunk renderers: ``main`` for every chunk and, where the sampler has one, ``fallback`` to redo
    exactly the rays ``main`` flags in ``ray_ok`` (those whose samples overflowed a fixed budget)."""

    main: ChunkFn
    fallback: ChunkFn | None = None

    def __call__(self, params, state, origins, directions, radii=None, appearance=None):
        return self.main(params, state, origins, directions, _radii(radii, origins), appearance)


def _radii(radii, origins):
    return jnp.zeros(origins.shape[:-1], jnp.float32) if radii is None else radii


def _chunk_fn(graphdef, sampler: Sampler, background, mesh, slots_per_ray: int) -> ChunkFn:
    background = jnp.asarray(background, jnp.float32)

    def local(params, state, origins, directions, radii, appearance):
        model = nnx.merge(graphdef, params)
        codes = appearance is not None and appearance.ndim == 2  # K codes [K, A]: the rays' colour in each
        if appearance is not None:  # the same code(s) for every ray of the chunk: [C, A] or [C, K, A]
            appearance = jnp.broadcast_to(appearance, (origins.shape[0], *appearance.shape))
        rays = Rays(origins=origins, directions=directions, viewdirs=directions, radii=radii, appearance=appearance)
        bg = jnp.tile(background, appearance.shape[1]) if codes else background
        out = sampler.render(model, rays, state, bg, slots=origins.shape[0] * slots_per_ray)
        pixels = out.pixels()
        if codes:  # rgb [C, 3 K] -> [C, K, 3]
            pixels = {**pixels, "rgb": pixels["rgb"].reshape(origins.shape[0], appearance.shape[1], 3)}
        return pixels if out.ray_ok is None else {**pixels, "ray_ok": out.ray_ok}

    if mesh is not None and mesh.size > 1:  # each device renders its own share of the chunk: no communication
        from jax.sharding import PartitionSpec as P

        batch = P(parallel.AXIS)
        local = jax.shard_map(local, mesh=mesh, in_specs=(P(), P(), batch, batch, batch, P()),
                              out_specs=batch,
                              check_vma=False)
        return jax.jit(local)
    # One device: a second process loads the compiled program from the cache directory (no tracing).
    key = compile_cache.describe("render chunk", graphdef, sampler, np.asarray(background), slots_per_ray)
    return compile_cache.Persisted(jax.jit(local), key)


def make_render_fn(graphdef, sampler: Sampler, background, *, mesh=None, slots_per_ray: int | None = None) -> RenderFn:
    """A :class:`RenderFn` for a model (``graphdef``) and its sampler: ``fn(params, sampler_state, origins [C, 3],
    directions [C, 3], radii [C] = None, appearance [A] = None) -> {rgb [C, 3], depth [C], opacity [C], ...}``.

    ``radii``: pixel cone radii at unit distance (mip-NeRF models; None: zero). ``appearance``: the appearance
    code of every ray, [A] (models with appearance embeddings; None: the model's render-time code), or K codes
    [K, A]: then ``rgb`` is [C, K, 3], the rays' colour with each code, their geometry computed once. A chunk of ``C`` rays gets
    ``C * slots_per_ray`` field evaluations (default: the sampler's ``slots_per_ray``; per round for a sampler
    that renders in rounds). With a ``mesh`` (:mod:`nerfkit.parallel`), each device renders its share of every
    chunk (the chunk size must be divisible by the device count).
    """
    k = slots_per_ray or sampler.slots_per_ray
    main = _chunk_fn(graphdef, sampler, background, mesh, k)
    fallback = sampler.fallback
    return RenderFn(main=main, fallback=None if fallback is None else
                    _chunk_fn(graphdef, fallback, background, mesh, fallback.slots_per_ray))


@dataclasses.dataclass
class Pending:
    """Rays whose chunks are dispatched (computing on the device) but not fetched: :func:`collect` them."""

    fn: RenderFn
    call: Callable  # (chunk fn, ray indices, chunk size) -> the chunk's outputs, on the device
    outs: list
    batch: tuple
    chunk: int


def dispatch_rays(fn: RenderFn, params, state, origins: np.ndarray, directions: np.ndarray, chunk: int,
                  radii: np.ndarray | None = None, appearance=None) -> Pending:
    """Start rendering rays of any batch shape [..., 3], chunk by chunk, without waiting for any chunk
    (arguments as :func:`render_rays_chunked`); :func:`collect` waits and returns the images."""
    batch = origins.shape[:-1]
    o = np.asarray(origins, np.float32).reshape(-1, 3)
    d = np.asarray(directions, np.float32).reshape(-1, 3)
    r = np.zeros(o.shape[0], np.float32) if radii is None else np.broadcast_to(np.asarray(radii, np.float32), batch).reshape(-1)

    def call(f, idx, size):
        return f(params, state, *_pad(size, o[idx], d[idx], r[idx]), appearance)

    outs = [call(fn.main, slice(i, i + chunk), chunk) for i in range(0, o.shape[0], chunk)]
    return Pending(fn, call, outs, batch, chunk)


def collect(pending: Pending) -> dict:
    """Wait for :func:`dispatch_rays`' chunks; NumPy arrays of the rays' batch shape. Rays flagged in
    ``ray_ok`` (their samples did not fit the chunk's budget) are rendered again by the fallback."""
    n = int(np.prod(pending.batch))
    outs = jax.device_get(pending.outs)
    res = {k: np.concatenate([x[k] for x in outs])[:n] for k in outs[0]}
    if "ray_ok" in res:  # redo the rays whose samples did not fit in the chunk's budget
        redo = np.flatnonzero(~res.pop("ray_ok"))
        small = max(pending.chunk // 8, 256)
        for i in range(0, len(redo), small):
            idx = redo[i : i + small]
            redone = jax.device_get(pending.call(pending.fn.fallback, idx, small))
            for k in res:
                res[k][idx] = redone[k][: len(idx)]
    return {k: v.reshape(*pending.batch, *v.shape[1:]) for k, v in res.items()}


def render_rays_chunked(fn: RenderFn, params, state, origins: np.ndarray, directions: np.ndarray, chunk: int,
                        radii: np.ndarray | None = None, appearance=None) -> dict:
    """Render rays of any batch shape [..., 3] chunk by chunk; returns NumPy arrays of that batch shape.

    ``state``: the sampler's state; ``radii`` [...]: pixel cone radii (mip-NeRF models), or None; ``appearance``
    float32 [A]: one appearance code for every ray, or None (the model's render-time code); or [K, A]: K codes
    (``rgb`` [..., K, 3])."""
    return collect(dispatch_rays(fn, params, state, origins, directions, chunk, radii, appearance))


def _pad(size: int, *arrays: np.ndarray):
    """Pad the arrays of a partial chunk to ``size`` rows (one compiled shape for every chunk)."""
    pad = size - arrays[0].shape[0]
    if pad:
        arrays = [np.concatenate([a, np.repeat(a[-1:], pad, 0)]) for a in arrays]
    return tuple(arrays)


def dispatch_view(fn: RenderFn, params, state, cams: Cameras, index: int, chunk: int, appearance=None) -> Pending:
    """Start rendering view ``index`` of ``cams`` (:func:`dispatch_rays`); :func:`collect` gives its images."""
    rays = cam.image_rays(cams, index, np)
    radii = np.full(rays.origins.shape[:-1], float(pixel_radius(float(cams.fx[index]))), np.float32)
    return dispatch_rays(fn, params, state, rays.origins, rays.directions, chunk, radii=radii, appearance=appearance)


def render_view(fn: RenderFn, params, state, cams: Cameras, index: int, chunk: int, appearance=None) -> dict:
    """Render view ``index`` of ``cams``: ``rgb`` [H, W, 3], ``depth`` [H, W], ``opacity`` [H, W]
    (``appearance``: as :func:`render_rays_chunked` takes it; K codes give ``rgb`` [H, W, K, 3])."""
    return collect(dispatch_view(fn, params, state, cams, index, chunk, appearance))


def render_views(fn: RenderFn, params, state, cams: Cameras, indices, chunk: int) -> Iterator[dict]:
    """:func:`render_view` of each of ``indices`` in turn, the next view dispatched before this one is
    yielded: the device renders it while the caller handles this one (colour maps, encoding, files)."""
    indices = [int(i) for i in indices]
    pending = dispatch_view(fn, params, state, cams, indices[0], chunk) if indices else None
    for k in range(len(indices)):
        out = collect(pending)
        if k + 1 < len(indices):
            pending = dispatch_view(fn, params, state, cams, indices[k + 1], chunk)
        yield out
