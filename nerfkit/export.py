"""Geometry and cameras out of a fitted run (``nerfkit export mesh | pointcloud | cameras``).

Everything is written in the data's own world frame (:mod:`nerfkit.frames`: the frame of its
``transforms.json`` or COLMAP model, not the normalised frame nerfkit fits in), so it lines up with the user's
other data.

* :func:`export_mesh`: marching cubes (``skimage.measure.marching_cubes``) on the field's density sampled on a
  grid of cubic voxels over a box (the scene box; the inner region ``|x| <= contraction_radius`` of a
  contracted field), at a density threshold (2.5 by default, as Instant-NGP). Each vertex is coloured by
  volume rendering a short ray through it along its normal, from outside (view direction ``-normal``). PLY,
  OBJ or GLB (trimesh) by the file's extension.
* :func:`export_pointcloud`: a point on the ray of every pixel of the training views whose rendered opacity is
  above ``min_opacity``, with its rendered colour; randomly thinned to ``num_points``, then statistical outlier
  removal (:func:`outlier_mask`). PLY. By default the point lies where the ray first crosses the density
  threshold, the surface :func:`export_mesh` meshes (:func:`surface_depths`: samples around the expected depth,
  then bisection); ``depth="expected"`` puts it at the rendered expected depth instead, which lies behind that
  surface wherever the density is fuzzy (an under-trained field: on lego after a 10-minute CPU fit, 23% of
  expected-depth points lie within 1.5 voxels of the 256^3 mesh).
* :func:`export_cameras`: the run's cameras as a nerfstudio ``transforms.json`` (per-frame intrinsics at the
  original image size, the split lists).
"""

from __future__ import annotations

from pathlib import Path

import jax
import jax.numpy as jnp
import numpy as np
from flax import nnx

from nerfkit import integrator, renderer, runs
from nerfkit.config import load_config
from nerfkit.data.common import box_through
from nerfkit.errors import InputError
from nerfkit.frames import apply_to_points, apply_to_poses
from nerfkit.types import Rays, background_rgb

MESH_SUFFIXES = (".ply", ".obj", ".glb")
POINTS_PER_CALL = 1 << 12   # field evaluations per jitted call: small calls stay in cache (a 128^3 mesh of a
#                             hash-grid lego run: 0.7x the time of 1 << 17 calls on 2 CPU cores)
COLOUR_SAMPLES = 16         # samples of the short ray that colours a vertex
COLOUR_OUTSIDE = 2.0        # that ray starts this many voxels outside the vertex (along its normal)
COLOUR_INSIDE = 2.0         # and ends this many voxels inside
DEPTHS = ("surface", "expected")   # where a point cloud's point lies on its pixel's ray
SURFACE_RESOLUTION = 256    # the surface search samples every 1/256 of the default mesh box's longest side
SURFACE_BEFORE = 32         # from this many samples in front of the expected depth
SURFACE_AFTER = 16          # to this many behind it
SURFACE_SHIFTS = 4          # a window that starts inside the surface moves towards the camera up to this often
SURFACE_BISECTIONS = 8      # halvings of the sample interval where the density crosses the threshold


# ---------------------------------------------------------------------------------------------- the field
def _field_name(run: runs.Run) -> str:
    """The field that renders colour: the fine field of a two-field model, else the coarse one."""
    return "fine" if getattr(nnx.merge(run.graphdef, run.params), "fine", None) is not None else "coarse"


def _query_fn(run: runs.Run, density_only: bool):
    """Traceable ``fn(params, origins [B, 3], directions [B, 3], t [B, S])`` -> sigma [B, S] (and rgb [B, S, 3]) of
    the rendering field at ``origins + t directions`` in the scene frame, the directions also being the view
    directions."""
    graphdef, name = run.graphdef, _field_name(run)

    def fn(params, origins, directions, t):
        model = nnx.merge(graphdef, params)
        rays = Rays(origins=origins, directions=directions, viewdirs=directions)
        return model.query(name, rays, t, density_only=density_only)

    return fn


def _in_calls(fn, params, n: int, per_call: int, make):
    """``fn`` over ``n`` items in calls of ``per_call`` (the last one padded); ``make(lo, hi)`` gives a call's
    arguments (NumPy arrays with ``hi - lo`` rows). Returns the outputs concatenated, as NumPy."""
    outs = []
    for lo in range(0, n, per_call):
        args = make(lo, min(lo + per_call, n))
        pad = per_call - args[0].shape[0]
        args = [np.concatenate([a, np.repeat(a[-1:], pad, 0)]) if pad else a for a in args]
        outs.append(fn(params, *[jnp.asarray(a) for a in args]))
    outs = jax.device_get(outs)
    if isinstance(outs[0], tuple):
        return tuple(np.concatenate([o[k] for o in outs])[:n] for k in range(len(outs[0])))
    return np.concatenate(outs)[:n]


def scene_box(run: runs.Run) -> np.ndarray:
    """float64 [2, 3]: the region a run's geometry is exported from, in the scene frame: the scene box, or the
    inner region ``[-r, r]^3`` (``r = contraction_radius``) of a contracted field."""
    cfg = run.cfg.model
    box = np.array([[-1.0] * 3, [1.0] * 3]) * cfg.contraction_radius if cfg.contraction else run.meta.aabb
    return np.asarray(box, np.float64)


def default_box(run: runs.Run) -> np.ndarray:
    """float64 [2, 3]: the box to mesh, in the data frame: :func:`scene_box` mapped back from the scene frame."""
    return box_through(np.linalg.inv(run.meta.file_to_scene), scene_box(run))


def grid_axes(box: np.ndarray, resolution: int) -> list[np.ndarray]:
    """Sample positions along x, y and z: cubic voxels, ``resolution`` samples along the box's longest side.

    >>> [len(a) for a in grid_axes(np.array([[0.0, 0, 0], [2, 1, 1]]), 5)], grid_axes(np.array([[0.0] * 3, [1.0] * 3]), 3)[0].tolist()
    ([5, 3, 3], [0.0, 0.5, 1.0])
    """
    box = np.asarray(box, np.float64)
    voxel = voxel_size(box, resolution)
    return [lo + voxel * np.arange(int(np.floor((hi - lo) / voxel + 1e-6)) + 1) for lo, hi in zip(*box)]


def voxel_size(box: np.ndarray, resolution: int) -> float:
    """The edge of :func:`grid_axes`' cubic voxels: the box's longest side over ``resolution - 1``."""
    box = np.asarray(box, np.float64)
    return float((box[1] - box[0]).max()) / (resolution - 1)


def density_grid(run: runs.Run, axes: list[np.ndarray], per_call: int = POINTS_PER_CALL) -> np.ndarray:
    """float32 [nx, ny, nz]: the rendering field's density at the grid points ``axes`` (data frame), queried in
    the scene frame in jitted calls of ``per_call`` points."""
    shape = tuple(len(a) for a in axes)
    n = int(np.prod(shape))
    to_scene = run.meta.file_to_scene
    fn = jax.jit(_query_fn(run, density_only=True))

    def make(lo, hi):
        idx = np.unravel_index(np.arange(lo, hi), shape)
        pts = apply_to_points(to_scene, np.stack([a[i] for a, i in zip(axes, idx)], -1)).astype(np.float32)
        return pts, np.broadcast_to(np.float32([0, 0, 1]), pts.shape), np.zeros((hi - lo, 1), np.float32)

    return _in_calls(fn, run.params, n, per_call, make).reshape(shape)


# ---------------------------------------------------------------------------------------------------- mesh
def marching_cubes(sigma: np.ndarray, axes: list[np.ndarray], threshold: float):
    """(vertices float64 [V, 3], faces int [F, 3], outward unit normals float64 [V, 3]) of the surface where
    ``sigma`` on the grid ``axes`` crosses ``threshold`` (normals point to falling density)."""
    from skimage.measure import marching_cubes as mc

    if not (sigma.min() < threshold < sigma.max()):
        raise InputError(f"the density never crosses {threshold} in the box (it spans {sigma.min():.3g} .. "
                         f"{sigma.max():.3g}): choose another --threshold or --bbox", field="--threshold")
    spacing = tuple(float(a[1] - a[0]) if len(a) > 1 else 1.0 for a in axes)
    verts, faces, normals, _ = mc(sigma, level=threshold, spacing=spacing, gradient_direction="descent")
    origin = np.array([a[0] for a in axes])
    normals = normals / np.maximum(np.linalg.norm(normals, axis=1, keepdims=True), 1e-12)
    return verts + origin, faces, normals.astype(np.float64)


def vertex_colours(run: runs.Run, verts: np.ndarray, normals: np.ndarray, voxel: float,
                   per_call: int = POINTS_PER_CALL) -> np.ndarray:
    """uint8 [V, 3]: the colour the field shows at each vertex (data frame) seen along its outward normal: a ray
    from ``COLOUR_OUTSIDE`` voxels outside to ``COLOUR_INSIDE`` voxels inside, volume rendered (its colour divided
    by its opacity; the field's colour halfway along where the ray stays transparent)."""
    m = run.meta.file_to_scene
    scale = float(np.cbrt(np.linalg.det(m[:3, :3])))
    rot = m[:3, :3] / scale
    outside, inside = COLOUR_OUTSIDE * voxel * scale, COLOUR_INSIDE * voxel * scale   # scene units
    t = np.linspace(0.0, outside + inside, COLOUR_SAMPLES + 1, dtype=np.float32)
    query = _query_fn(run, density_only=False)

    def colour(params, origins, directions):
        tt = jnp.broadcast_to(jnp.asarray(t), (origins.shape[0], t.size))
        sigma, rgb = query(params, origins, directions, 0.5 * (tt[:, 1:] + tt[:, :-1]))
        out = integrator.volume_render(sigma, rgb, tt, jnp.zeros(3))
        mid = rgb[:, COLOUR_SAMPLES // 2]
        return jnp.where(out.opacity[:, None] > 1e-3, out.rgb / jnp.maximum(out.opacity[:, None], 1e-3), mid)

    n_scene = normals @ rot.T
    start = apply_to_points(m, verts) + outside * n_scene

    def make(lo, hi):
        return start[lo:hi].astype(np.float32), (-n_scene[lo:hi]).astype(np.float32)

    rgb = _in_calls(jax.jit(colour), run.params, len(verts), max(per_call // COLOUR_SAMPLES, 1), make)
    return np.clip(np.round(rgb * 255.0), 0, 255).astype(np.uint8)


def export_mesh(run_dir, out, resolution: int = 256, threshold: float = 2.5, bbox=None,
                per_call: int = POINTS_PER_CALL) -> dict:
    """Mesh the density of a fitted run (see the module docstring) and write it to ``out`` (.ply, .obj, .glb).

    Args:
      resolution: grid samples along the box's longest side (cubic voxels); threshold: the density level;
      bbox: (x0, y0, z0, x1, y1, z1) in the data frame (default :func:`default_box`).
    Returns:
      ``{"file", "vertices", "faces", "box", "voxel", "grid"}``.
    """
    out = Path(out)
    if out.suffix.lower() not in MESH_SUFFIXES:
        raise InputError(f"unknown mesh format '{out.suffix}' (choose from: {', '.join(MESH_SUFFIXES)})", out)
    if resolution < 2:
        raise InputError(f"must be at least 2, got {resolution}", field="--resolution")
    run = _load_world_run(run_dir)
    box = default_box(run) if bbox is None else _bbox(bbox)
    axes = grid_axes(box, resolution)
    sigma = density_grid(run, axes, per_call)
    verts, faces, normals = marching_cubes(sigma, axes, threshold)
    voxel = voxel_size(box, resolution)
    rgb = vertex_colours(run, verts, normals, voxel, per_call)
    _write_mesh(out, verts, faces, normals, rgb)
    return {"file": str(out), "vertices": len(verts), "faces": len(faces), "box": box.tolist(), "voxel": voxel,
            "grid": [len(a) for a in axes]}


def _bbox(values) -> np.ndarray:
    box = np.asarray(values, np.float64).reshape(2, 3)
    if not np.all(box[1] > box[0]):
        raise InputError(f"needs x0 < x1, y0 < y1, z0 < z1, got {np.asarray(values).tolist()}", field="--bbox")
    return box


def _write_mesh(out: Path, verts, faces, normals, rgb) -> None:
    import trimesh

    rgba = np.concatenate([rgb, np.full((len(rgb), 1), 255, np.uint8)], axis=1)
    mesh = trimesh.Trimesh(vertices=verts, faces=faces, vertex_normals=normals, vertex_colors=rgba, process=False)
    out.parent.mkdir(parents=True, exist_ok=True)
    mesh.export(out)


def _load_world_run(run_dir) -> runs.Run:
    """The run, refusing forward-facing (NDC) runs: their field lives in normalised device coordinates."""
    run = runs.load_run(Path(run_dir))
    if run.meta.cameras["train"].ndc_near is not None:
        raise InputError("a forward-facing (NDC) run: its field is in normalised device coordinates, not the world; "
                         "export needs a run fitted with world rays", path=run_dir)
    return run


# ---------------------------------------------------------------------------------------------- point cloud
def outlier_mask(points: np.ndarray, neighbours: int = 20, std_ratio: float = 2.0) -> np.ndarray:
    """bool [N]: the points whose mean distance to their ``neighbours`` nearest others is at most the mean of
    that distance over all points plus ``std_ratio`` standard deviations (Open3D's statistical outlier removal).

    >>> pts = np.concatenate([np.random.default_rng(0).normal(size=(200, 3)) * 0.1, [[5.0, 5.0, 5.0]]])
    >>> keep = outlier_mask(pts, neighbours=8)
    >>> bool(keep[-1]), int(keep[:-1].sum()) > 190
    (False, True)
    """
    from scipy.spatial import cKDTree

    k = min(neighbours, len(points) - 1)
    if k < 1:
        return np.ones(len(points), bool)
    dist, _ = cKDTree(points).query(points, k=k + 1)
    mean = dist[:, 1:].mean(axis=1)
    return mean <= mean.mean() + std_ratio * mean.std()


def opaque_pixels(run: runs.Run, min_opacity: float = 0.9, max_views: int | None = None,
                  chunk: int | None = None) -> dict:
    """The training pixels rendered more opaque than ``min_opacity`` (``max_views``: that many training views,
    evenly spaced), in the scene frame: ``{"origins", "directions"}`` float32 [P, 3], ``"depth"`` float32 [P]
    (the expected depth, along ``directions``), ``"rgb"`` float32 [P, 3]."""
    from nerfkit.cameras import image_rays

    cams = run.meta.cameras["train"]
    views = np.arange(len(cams)) if max_views is None else np.unique(np.linspace(0, len(cams) - 1, max_views).round().astype(int))
    fn = renderer.make_render_fn(run.graphdef, run.sampler, background_rgb(run.meta.background))
    parts = []
    chunk = chunk or run.cfg.train.render_chunk
    for v, o in zip(views, renderer.render_views(fn, run.params, run.sampler_state, cams, views, chunk)):
        rays, keep = image_rays(cams, int(v)), o["opacity"] > min_opacity
        parts.append((rays.origins[keep], rays.directions[keep], o["depth"][keep], o["rgb"][keep]))
    return {k: np.concatenate([p[i] for p in parts]).astype(np.float32)
            for i, k in enumerate(("origins", "directions", "depth", "rgb"))}


def _crossing_fn(query, threshold: float, samples: int, bisections: int):
    """Traceable ``fn(params, origins [B, 3], directions [B, 3], start [B], step [B])`` -> (t [B], status int32
    [B]): the first crossing of ``threshold`` by the density along each ray among ``samples`` evenly spaced
    samples from ``start``, bisected ``bisections`` times and then interpolated linearly. Status 0: found;
    1: the first sample is already at or above the threshold; 2: no sample reaches it."""

    def fn(params, origins, directions, start, step):
        t = start[:, None] + step[:, None] * jnp.arange(samples, dtype=jnp.float32)
        sigma = query(params, origins, directions, t)
        above = sigma >= threshold
        first = jnp.argmax(above, axis=1)
        status = jnp.where(above[:, 0], 1, jnp.where(jnp.any(above, axis=1), 0, 2)).astype(jnp.int32)
        below = jnp.maximum(first - 1, 0)[:, None]
        lo, s_lo = jnp.take_along_axis(t, below, 1)[:, 0], jnp.take_along_axis(sigma, below, 1)[:, 0]
        hi, s_hi = lo + step, jnp.take_along_axis(sigma, below + 1, 1)[:, 0]

        def halve(_, c):
            lo, hi, s_lo, s_hi = c
            mid = 0.5 * (lo + hi)
            s = query(params, origins, directions, mid[:, None])[:, 0]
            up = s >= threshold
            return jnp.where(up, lo, mid), jnp.where(up, mid, hi), jnp.where(up, s_lo, s), jnp.where(up, s, s_hi)

        lo, hi, s_lo, s_hi = jax.lax.fori_loop(0, bisections, halve, (lo, hi, s_lo, s_hi))
        frac = jnp.clip((threshold - s_lo) / jnp.maximum(s_hi - s_lo, 1e-12), 0.0, 1.0)
        return lo + frac * (hi - lo), status

    return fn


def surface_depths(query, params, origins: np.ndarray, directions: np.ndarray, guess: np.ndarray,
                   threshold: float, step: float, per_call: int = POINTS_PER_CALL) -> np.ndarray:
    """float32 [R]: where each ray (``origins + t directions``, scene frame) first crosses the density
    ``threshold`` near its depth ``guess``; NaN where it does not.

    ``query`` is a traceable density query (``fn(params, origins, directions, t [B, S]) -> sigma``, as
    :func:`_query_fn` with ``density_only``). The search samples the density every ``step`` (scene units) from
    ``SURFACE_BEFORE`` steps in front of the guess to ``SURFACE_AFTER`` steps behind it and bisects the first
    sample interval where it rises through the threshold (:func:`_crossing_fn`); a window that starts inside the
    surface moves towards the camera, up to ``SURFACE_SHIFTS`` times (not in front of the ray's origin).

    >>> sphere = lambda p, o, d, t: 5.0 * (jnp.linalg.norm(o[:, None] + t[..., None] * d[:, None], axis=-1) < 1)
    >>> o, d = np.float32([[0, 0, -3], [0, 2, -3], [0, 0, -3]]), np.float32([[0, 0, 1]] * 3)
    >>> np.round(surface_depths(sphere, None, o, d, np.float32([2.3, 2.3, 3.9]), 2.5, 0.05), 3).tolist()
    [2.0, nan, 2.0]
    """
    samples = SURFACE_BEFORE + SURFACE_AFTER + 1
    fn = jax.jit(_crossing_fn(query, threshold, samples, SURFACE_BISECTIONS))
    dt = (step / np.linalg.norm(directions, axis=1)).astype(np.float32)   # one step in units of t
    start = np.maximum(guess - SURFACE_BEFORE * dt, 0).astype(np.float32)
    depth, todo = np.full(len(guess), np.nan, np.float32), np.arange(len(guess))
    for _ in range(SURFACE_SHIFTS + 1):
        if not len(todo):
            break
        args = [a[todo] for a in (origins, directions, start, dt)]
        t, status = _in_calls(fn, params, len(todo), max(per_call // samples, 1),
                              lambda lo, hi, args=args: [a[lo:hi] for a in args])
        depth[todo[status == 0]] = t[status == 0]
        todo = todo[(status == 1) & (start[todo] > 0)]   # started inside: move the window towards the camera
        start[todo] = np.maximum(start[todo] - (samples - 1) * dt[todo], 0)
    return depth


def view_points(run: runs.Run, depth: str = "surface", threshold: float = 2.5, min_opacity: float = 0.9,
                max_views: int | None = None, chunk: int | None = None, num_points: int | None = None,
                seed: int = 0) -> tuple[np.ndarray, np.ndarray, int]:
    """(points float64 [P, 3] in the data frame, colours float32 [P, 3], candidates): a point on the ray of each
    of :func:`opaque_pixels` (thinned at random to ``num_points``), at its ``depth``: ``"surface"``, where the
    density first crosses ``threshold`` (:func:`surface_depths`; the rays that never cross it are dropped), or
    ``"expected"``, the rendered expected depth."""
    if depth not in DEPTHS:
        raise InputError(f"unknown depth '{depth}' (choose from: {', '.join(DEPTHS)})", field="--depth")
    px = opaque_pixels(run, min_opacity, max_views, chunk)
    candidates = len(px["depth"])
    if num_points is not None and candidates > num_points:
        pick = np.sort(np.random.default_rng(seed).choice(candidates, num_points, replace=False))
        px = {k: v[pick] for k, v in px.items()}
    t = px["depth"]
    if depth == "surface":
        t = surface_depths(_query_fn(run, density_only=True), run.params, px["origins"], px["directions"], t,
                           threshold, search_step(run))
    ok = np.isfinite(t)
    pts = px["origins"][ok].astype(np.float64) + t[ok, None] * px["directions"][ok]
    return apply_to_points(np.linalg.inv(run.meta.file_to_scene), pts), px["rgb"][ok], candidates


def search_step(run: runs.Run) -> float:
    """The surface search's sample spacing (scene units): the longest side of :func:`scene_box` over
    ``SURFACE_RESOLUTION``."""
    return float(np.max(np.diff(scene_box(run), axis=0))) / SURFACE_RESOLUTION


def export_pointcloud(run_dir, out, num_points: int = 1_000_000, depth: str = "surface", threshold: float = 2.5,
                      min_opacity: float = 0.9, max_views: int | None = None, neighbours: int = 20,
                      std_ratio: float = 2.0, chunk: int | None = None, seed: int = 0) -> dict:
    """Write a coloured point cloud of a fitted run to ``out`` (.ply): :func:`view_points`, then
    :func:`outlier_mask`. Returns ``{"file", "points", "candidates", "no_surface", "removed", "depth"}``
    (``no_surface``: rays dropped because the density never crossed the threshold near them)."""
    out = Path(out)
    if out.suffix.lower() != ".ply":
        raise InputError(f"point clouds are written as .ply, got '{out.suffix}'", out)
    run = _load_world_run(run_dir)
    pts, cols, candidates = view_points(run, depth, threshold, min_opacity, max_views, chunk, num_points, seed)
    if candidates == 0:
        raise InputError(f"no pixel of the training views is more opaque than {min_opacity}", field="--min-opacity")
    if len(pts) == 0:
        raise InputError(f"no opaque pixel's ray crosses the density {threshold}", field="--threshold")
    keep = outlier_mask(pts, neighbours, std_ratio)
    import trimesh

    rgba = np.concatenate([np.clip(np.round(cols[keep] * 255), 0, 255).astype(np.uint8),
                           np.full((int(keep.sum()), 1), 255, np.uint8)], axis=1)
    out.parent.mkdir(parents=True, exist_ok=True)
    trimesh.PointCloud(pts[keep], colors=rgba).export(out)
    return {"file": str(out), "points": int(keep.sum()), "candidates": candidates,
            "no_surface": min(candidates, num_points) - len(pts), "removed": int((~keep).sum()), "depth": depth}


# -------------------------------------------------------------------------------------------------- cameras
def export_cameras(run_dir, out) -> dict:
    """Write the run's cameras (every split) as ``out/transforms.json`` (nerfstudio format) in the data frame:
    per-frame ``transform_matrix`` (OpenGL c2w), ``fl_x``/``fl_y``/``cx``/``cy``/``w``/``h`` at the original
    image size (the run's downscale undone) and distortion, ``file_path`` as the run saw it (relative to the
    data directory) and ``{split}_filenames``. Returns ``{"file", "frames"}``."""
    from nerfkit.data.nerfstudio import write_nerfstudio

    run_dir = Path(run_dir)
    meta = runs.SceneMeta(run_dir / "scene.json")
    downscale = load_config(run_dir / "config.json").data.downscale
    to_file = np.linalg.inv(meta.file_to_scene)
    frames, seen, splits = [], set(), {}
    for split, cams in meta.cameras.items():
        names = meta.names.get(split) or tuple(f"{split}_{i:04d}" for i in range(len(cams)))
        splits[f"{split}_filenames"] = list(names)
        full = cams.scaled(downscale) if downscale != 1 else cams
        c2w = apply_to_poses(to_file, cams.c2w)
        for i, name in enumerate(names):
            if name not in seen:
                seen.add(name)
                frames.append(_frame(name, c2w[i], full, i))
    path = write_nerfstudio(out, frames, {"camera_model": "OPENCV"}, extra=splits)
    return {"file": str(path), "frames": len(frames)}


def _frame(name: str, c2w: np.ndarray, cams, i: int) -> dict:
    m = np.eye(4)
    m[:3, :4] = c2w
    fr = {"file_path": name, "transform_matrix": m.tolist(), "fl_x": float(cams.fx[i]), "fl_y": float(cams.fy[i]),
          "cx": float(cams.cx[i]), "cy": float(cams.cy[i]), "w": cams.width, "h": cams.height}
    if cams.distortion is not None:
        fr.update(zip(("k1", "k2", "p1", "p2"), map(float, cams.distortion[i])))
    return fr
