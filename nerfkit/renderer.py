"""Chunked rendering: any number of rays through one compiled function of fixed shape.

Rays are cut into chunks of ``chunk`` rays (the last one padded), so a 100x100 and an 800x800 image use the
same compiled program and device memory stays bounded by one chunk's intermediates.
"""

from __future__ import annotations

import dataclasses
from typing import Callable

import jax
import jax.numpy as jnp
import numpy as np
from flax import nnx

from nerfkit import cameras as cam
from nerfkit import parallel
from nerfkit.model import render_rays, render_rays_marching, render_rays_packed
from nerfkit.types import Cameras, Rays

RenderFn = Callable[[nnx.State, jax.Array, jax.Array], dict]


def make_render_fn(graphdef, model_cfg=None, *, near: float, far: float, aabb, background,
                   samples_per_ray: int = 16, mesh=None, marching: bool = True,
                   samples_per_round: int = 2) -> RenderFn:
    """A render function ``fn(state, origins [C, 3], directions [C, 3], radii [C] = None) -> {rgb [C,3], depth [C],
    opacity [C]}`` (``radii``: pixel cone radii at unit distance, for mip-NeRF models; None: zero).

    ``state`` is ``(params, occupied)``: the model parameters and the occupancy grid (bool [R]^3). With the
    occupancy sampler and ``marching`` (the default), a chunk is rendered in rounds of ``C *
    samples_per_round`` field evaluations shared by the rays still marching, and rays stop at
    ``model_cfg.early_stop_eps`` transmittance (:func:`nerfkit.model.render_rays_marching`); the output also
    has ``samples`` [C], the field evaluations of each ray. Without ``marching``, a chunk's samples are packed
    into ``C * samples_per_ray`` slots (empty space and rays that miss cost nothing, no early termination);
    the few rays that overflow are re-rendered with ``max_samples`` slots each, so the result is exactly the
    per-ray rendering. With a ``mesh`` (:mod:`nerfkit.parallel`), each chunk is split across its devices
    (the chunk size must be divisible by the device count).
    """
    aabb = jnp.asarray(aabb, jnp.float32)
    background = jnp.asarray(background, jnp.float32)
    kw = dict(near=near, far=far, aabb=aabb, background=background)

    @jax.jit
    def per_ray(state, origins, directions, radii=None):
        params, occupied = state
        model = nnx.merge(graphdef, params)
        origins, directions = parallel.shard_batch(origins, mesh), parallel.shard_batch(directions, mesh)
        radii = None if radii is None else parallel.shard_batch(radii, mesh)
        rays = Rays(origins=origins, directions=directions, viewdirs=directions, radii=radii)
        out = render_rays(model, rays, jax.random.key(0), randomized=False, occupied=occupied, **kw)
        return {k: out[k] for k in ("rgb", "depth", "opacity")}

    if model_cfg is None or model_cfg.sampler != "occupancy":
        return per_ray
    if marching:
        return _marching_fn(graphdef, model_cfg, kw, samples_per_round, mesh)

    @jax.jit
    def packed(state, origins, directions, radii=None):  # radii: unused (no mip with the occupancy sampler)
        params, occupied = state
        model = nnx.merge(graphdef, params)
        origins, directions = parallel.shard_batch(origins, mesh), parallel.shard_batch(directions, mesh)
        rays = Rays(origins=origins, directions=directions, viewdirs=directions)
        out = render_rays_packed(model, rays, jax.random.key(0), occupied=occupied, randomized=False,
                                 budget=origins.shape[0] * samples_per_ray, **kw)
        return {k: out[k] for k in ("rgb", "depth", "opacity", "ray_ok")}

    return PackedRenderFn(packed=packed, per_ray=per_ray)


def _marching_fn(graphdef, model_cfg, kw, samples_per_round: int, mesh) -> RenderFn:
    """Rendering in rounds with early termination. Each device marches its own share of the chunk
    (``shard_map``): the rounds need no communication between devices."""

    def local(state, origins, directions):
        params, occupied = state
        model = nnx.merge(graphdef, params)
        rays = Rays(origins=origins, directions=directions, viewdirs=directions)
        out = render_rays_marching(model, rays, occupied=occupied, budget=origins.shape[0] * samples_per_round,
                                   early_stop_eps=model_cfg.early_stop_eps, **kw)
        return {k: out[k] for k in ("rgb", "depth", "opacity", "samples")}

    if mesh is not None and mesh.size > 1:
        from jax.sharding import PartitionSpec as P

        batch = P(parallel.AXIS)
        local = jax.shard_map(local, mesh=mesh, in_specs=(P(), batch, batch), out_specs=batch, check_vma=False)

    @jax.jit
    def fn(state, origins, directions, radii=None):  # radii: unused (no mip with the occupancy sampler)
        return local(state, origins, directions)

    return fn


@dataclasses.dataclass(frozen=True)
class PackedRenderFn:
    """Occupancy-sampler rendering: ``packed`` for whole chunks (its output flags the rays that overflowed
    the sample budget in ``ray_ok``) and ``per_ray`` (``max_samples`` slots per ray) to redo those rays."""

    packed: RenderFn
    per_ray: RenderFn

    def __call__(self, state, origins, directions, radii=None):
        return self.packed(state, origins, directions, radii)


def render_rays_chunked(fn: RenderFn, params, origins: np.ndarray, directions: np.ndarray, chunk: int,
                        radii: np.ndarray | None = None) -> dict:
    """Render rays of any batch shape [..., 3] chunk by chunk; returns NumPy arrays of that batch shape.

    ``radii`` [...]: pixel cone radii (mip-NeRF models), or None."""
    batch = origins.shape[:-1]
    o = np.asarray(origins, np.float32).reshape(-1, 3)
    d = np.asarray(directions, np.float32).reshape(-1, 3)
    r = None if radii is None else np.broadcast_to(np.asarray(radii, np.float32), batch).reshape(-1, 1)
    n = o.shape[0]

    def call(f, idx, size):
        if r is None:
            return f(params, *_pad(size, o[idx], d[idx]))
        oo, dd, rr = _pad(size, o[idx], d[idx], r[idx])
        return f(params, oo, dd, rr[:, 0])

    outs = [call(fn, slice(i, i + chunk), chunk) for i in range(0, n, chunk)]
    outs = jax.device_get(outs)  # every chunk was dispatched before this first wait
    res = {k: np.concatenate([x[k] for x in outs])[:n] for k in outs[0]}
    if isinstance(fn, PackedRenderFn):  # redo the rays whose samples did not fit in the chunk's budget
        redo = np.flatnonzero(~res.pop("ray_ok"))
        small = max(chunk // 8, 256)
        for i in range(0, len(redo), small):
            idx = redo[i : i + small]
            redone = jax.device_get(call(fn.per_ray, idx, small))
            for k in res:
                res[k][idx] = redone[k][: len(idx)]
    return {k: v.reshape(*batch, *v.shape[1:]) for k, v in res.items()}


def _pad(size: int, *arrays: np.ndarray):
    """Pad the arrays of a partial chunk to ``size`` rows (one compiled shape for every chunk)."""
    pad = size - arrays[0].shape[0]
    if pad:
        arrays = [np.concatenate([a, np.repeat(a[-1:], pad, 0)]) for a in arrays]
    return tuple(arrays)


def render_view(fn: RenderFn, params, cams: Cameras, index: int, chunk: int) -> dict:
    """Render view ``index`` of ``cams``: ``rgb`` [H, W, 3], ``depth`` [H, W], ``opacity`` [H, W]."""
    from nerfkit.mip import pixel_radius

    rays = cam.image_rays(cams, index, np)
    radii = np.full(rays.origins.shape[:-1], float(pixel_radius(float(cams.fx[index]))), np.float32)
    return render_rays_chunked(fn, params, rays.origins, rays.directions, chunk, radii=radii)


def render_path(run_dir, path: str = "auto", frames: int = 120, fps: float = 30, width: int | None = None,
                height: int | None = None, out=None, pngs: bool = False, video: bool = True,
                chunk: int | None = None) -> dict:
    """Render a camera path of a fitted run to videos (RGB, depth, opacity) and/or PNG frames.

    Args:
      run_dir: a ``fit`` run directory.
      path: ``orbit`` (around the scene at the training cameras' mean radius and elevation), ``spiral``
        (LLFF's path in front of a forward-facing capture), ``auto`` (spiral for forward-facing scenes, else
        orbit), ``test`` (the test-split cameras) or a JSON file of ``frames[].transform_matrix``.
      frames: frames of the orbit; width/height: output size (default: training size; intrinsics scaled).
    Returns:
      dict of written files and timing.
    """
    import sys
    import time
    from pathlib import Path

    from tqdm import tqdm

    from nerfkit import camera_paths, runs, visualize
    from nerfkit.errors import InputError
    from nerfkit.trainer import BACKGROUNDS

    cfg, graphdef, params, meta, step, grid = runs.load_run(Path(run_dir))
    params = (params, grid["occupied"])
    base = meta.cameras["train"]
    if path == "auto":  # forward-facing (NDC) scenes get LLFF's spiral; others an orbit
        path = "spiral" if base.ndc_near is not None else "orbit"
    if path == "orbit":
        c2w = camera_paths.orbit_path(base.c2w, n_frames=frames)
    elif path == "spiral":
        if meta.depth_range is None:
            raise InputError("the spiral path needs a forward-facing scene's depth range (LLFF)", field="--path")
        c2w = camera_paths.spiral_path(base.c2w, *meta.depth_range, n_frames=frames)
    elif path == "test":
        if "test" not in meta.cameras:
            raise InputError("the run's scene has no test split", field="--path")
        base = meta.cameras["test"]
        c2w = base.c2w
    else:
        c2w = camera_paths.load_path_json(path)
    n = len(c2w)
    # The first camera's intrinsics (and its NDC / distortion settings) for every frame.
    cams = dataclasses.replace(base.subset(np.zeros(n, dtype=int)), c2w=np.asarray(c2w, np.float32))
    if width or height:
        w = width or round(base.width * height / base.height)
        h = height or round(base.height * width / base.width)
        sx, sy = w / base.width, h / base.height
        cams = dataclasses.replace(cams, fx=cams.fx * sx, fy=cams.fy * sy, cx=cams.cx * sx, cy=cams.cy * sy,
                                   width=w, height=h)
    bg_name = "white" if meta.background == "random" else meta.background
    chunk = chunk or cfg.train.render_chunk
    mesh = parallel.render_mesh(chunk)
    params = parallel.replicate(params, mesh)
    fn = make_render_fn(graphdef, cfg.model, near=meta.near, far=meta.far, aabb=meta.aabb,
                        background=BACKGROUNDS[bg_name], mesh=mesh)
    out = Path(run_dir) / "render" if out is None else Path(out)
    out.mkdir(parents=True, exist_ok=True)
    rgb, depth, acc = [], [], []
    t0 = time.time()
    for i in tqdm(range(n), desc=f"rendering {cams.width}x{cams.height}", unit="frame", disable=not sys.stderr.isatty()):
        o = render_view(fn, params, cams, i, chunk)
        rgb.append(visualize.to_uint8(o["rgb"]))
        depth.append(visualize.to_uint8(visualize.depth_to_rgb(o["depth"], o["opacity"], meta.near, meta.far)))
        acc.append(visualize.to_uint8(np.repeat(o["opacity"][..., None], 3, axis=-1)))
        if pngs:
            (out / "frames").mkdir(exist_ok=True)
            visualize.write_png(out / "frames" / f"{i:04d}.png", rgb[-1])
    seconds = time.time() - t0
    written = []
    name = path if path in ("orbit", "spiral", "test") else Path(path).stem
    if video:
        for kind, frames_ in (("rgb", rgb), ("depth", depth), ("opacity", acc)):
            f = out / f"{name}_{kind}.mp4"
            visualize.write_video(f, frames_, fps=fps)
            written.append(str(f))
    return {"files": written, "frames": n, "size": [cams.width, cams.height], "seconds": seconds, "step": step}
