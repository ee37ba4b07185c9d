"""A small procedural scene with exact ground truth, and a writer for the Blender layout.

:func:`make_demo_scene` ray-traces a fixed arrangement of primitives analytically in NumPy, so tests, demos
and CI get a realistic NeRF dataset in about a second without any download:

* a checkered floor slab, a striped glossy red sphere, a 3-D checkered blue box, a glossy green sphere, a
  striped orange cylinder and a floating lat-long checkered magenta sphere, all inside [-1, 1]^3 (z up);
* Lambertian shading plus Blinn-Phong highlights (view dependent) under one directional light with hard
  shadows, and an ambient term;
* a transparent background (alpha 0) and 3x3 supersampling per pixel, averaged on premultiplied values, so
  object edges carry fractional alpha exactly like a rendered Blender dataset.

Cameras sit on a sphere of radius 4 around the origin at elevations between 10 and 60 degrees (z up), looking
at the origin: a Fibonacci spiral for train, seeded random positions for val and test.

:func:`write_blender` saves any :class:`~nerfkit.types.Scene` in the Blender layout (8-bit straight-alpha
RGBA PNGs), which :func:`nerfkit.data.blender.load_blender` reads back.
"""

from __future__ import annotations

import json
import math
from dataclasses import dataclass
from pathlib import Path
from typing import Callable

import numpy as np

from nerfkit.cameras import focal_from_fov, look_at, pixel_directions_camera, pixel_grid
from nerfkit.types import Cameras, Scene, SplitData
from nerfkit.data.common import fov_from_focal
from nerfkit.data.images import area_downscale, write_rgba_png

DEMO_RADIUS = 4.0                      # camera distance from the origin
DEMO_CAMERA_ANGLE_X = 0.65             # horizontal field of view, radians
DEMO_ELEVATION_DEG = (10.0, 60.0)      # camera elevation range, degrees above the z = 0 plane
DEMO_NEAR, DEMO_FAR = 2.0, 6.0
DEMO_AABB = ((-1.0, -1.0, -1.0), (1.0, 1.0, 1.0))
SUPERSAMPLE = 3                        # sub-pixel grid per axis

_LIGHT_DIR = (np.array([0.45, 0.3, 0.84]) / np.linalg.norm([0.45, 0.3, 0.84])).astype(np.float32)  # towards light
_AMBIENT, _DIFFUSE = 0.22, 0.78
_EPS = 1e-4
_SPLIT_SEED = {"train": 0, "val": 1, "test": 2}

Texture = Callable[[np.ndarray], np.ndarray]  # object-space points [3, R] -> albedo float32 [3, R]


# ---------------------------------------------------------------------------------------------- textures
def _mix(mask: np.ndarray, c0, c1) -> np.ndarray:
    """float32 [3, R]: colour ``c1`` where ``mask`` (bool [R]) else ``c0``."""
    return np.where(mask, np.float32(c1)[:, None], np.float32(c0)[:, None]).astype(np.float32)


def _parity(*cells: np.ndarray) -> np.ndarray:
    """bool [R]: the sum of the integer cells ``floor(x)`` is odd."""
    return sum(np.floor(c) for c in cells) % 2 == 1


def checker2d(scale: float, c0, c1) -> Texture:
    """Checkerboard in the object's x-y plane, ``scale`` squares per unit."""
    return lambda q: _mix(_parity(q[0] * scale, q[1] * scale), c0, c1)


def checker3d(scale: float, c0, c1) -> Texture:
    """Solid 3-D checkerboard, ``scale`` cells per unit, offset by half a cell: a box whose sides are a
    whole number of cells long has its faces mid-cell, not on a cell boundary where rounding would pick a
    random colour per ray."""
    return lambda q: _mix(_parity(q[0] * scale + 0.5, q[1] * scale + 0.5, q[2] * scale + 0.5), c0, c1)


def stripes_z(scale: float, c0, c1) -> Texture:
    """Horizontal bands along object z, ``scale`` bands per unit."""
    return lambda q: _mix(_parity(q[2] * scale), c0, c1)


def stripes_azimuth(count: int, c0, c1) -> Texture:
    """``count`` vertical bands around the object's z axis."""
    return lambda q: _mix(_parity((np.arctan2(q[1], q[0]) / (2 * np.pi) + 0.5) * count), c0, c1)


def checker_latlong(n_lat: int, n_lon: int, c0, c1) -> Texture:
    """Checkerboard in spherical (latitude, longitude) coordinates around the object centre."""
    def tex(q):
        lat = np.arccos(np.clip(q[2] / np.sqrt(q[0] ** 2 + q[1] ** 2 + q[2] ** 2), -1, 1)) / np.pi
        lon = np.arctan2(q[1], q[0]) / (2 * np.pi) + 0.5
        return _mix(_parity(lat * n_lat, lon * n_lon), c0, c1)
    return tex


def solid(c) -> Texture:
    """A uniform colour."""
    return lambda q: np.broadcast_to(np.float32(c)[:, None], q.shape).astype(np.float32)


# -------------------------------------------------------------------------------------------- primitives
# Geometry works on "structure of arrays": points and directions are float32 [3, R] (or [3] / [3, 1] for a
# shared origin), so dot products are three multiply-adds instead of slow reductions over a length-3 axis.
def _dot(a: np.ndarray, b: np.ndarray) -> np.ndarray:
    return a[0] * b[0] + a[1] * b[1] + a[2] * b[2]


@dataclass(frozen=True)
class Material:
    """Blinn-Phong material: ``texture`` gives the albedo; highlights are white, ``ks * (n.h)^shininess``."""

    texture: Texture
    ks: float = 0.0
    shininess: float = 32.0


class Sphere:
    """Sphere of radius ``r`` around ``centre``."""

    def __init__(self, centre, r: float, material: Material):
        self.centre, self.r, self.material = np.float32(centre)[:, None], float(r), material

    def intersect(self, o: np.ndarray, d: np.ndarray) -> np.ndarray:
        """Nearest hit distance > eps along ``o + t d`` (o [3, 1] or [3, R], d [3, R] unit); inf on a miss."""
        oc = o - self.centre
        b = _dot(oc, d)
        c = _dot(oc, oc) - self.r ** 2
        disc = b * b - c
        s = np.sqrt(np.maximum(disc, 0.0))
        t = np.where(-b - s > _EPS, -b - s, -b + s)
        return np.where((disc >= 0) & (t > _EPS), t, np.inf)

    def normal(self, p: np.ndarray) -> np.ndarray:
        """Unit outward normals [3, R] at surface points ``p`` [3, R]."""
        return (p - self.centre) / self.r

    def local(self, p: np.ndarray) -> np.ndarray:
        """Object coordinates [3, R] (relative to the centre) for texturing."""
        return p - self.centre


class Box:
    """Axis-aligned box ``[lo, hi]``."""

    def __init__(self, lo, hi, material: Material):
        self.lo, self.hi, self.material = np.float32(lo)[:, None], np.float32(hi)[:, None], material

    def intersect(self, o: np.ndarray, d: np.ndarray) -> np.ndarray:
        with np.errstate(divide="ignore", invalid="ignore"):
            inv = 1.0 / d
            t1, t2 = (self.lo - o) * inv, (self.hi - o) * inv
            near, far = np.minimum(t1, t2), np.maximum(t1, t2)
            tmin = np.maximum(np.maximum(near[0], near[1]), near[2])
            tmax = np.minimum(np.minimum(far[0], far[1]), far[2])
        t = np.where(tmin > _EPS, tmin, tmax)
        return np.where((tmax >= tmin) & (t > _EPS), t, np.inf)

    def normal(self, p: np.ndarray) -> np.ndarray:
        dist = np.concatenate([np.abs(p - self.lo), np.abs(p - self.hi)], axis=0)  # [6, R]
        face = np.argmin(dist, axis=0)
        n = np.zeros_like(p)
        n[face % 3, np.arange(p.shape[1])] = np.where(face < 3, -1.0, 1.0)
        return n

    def local(self, p: np.ndarray) -> np.ndarray:
        return p - self.lo


class CylinderZ:
    """Closed cylinder around the vertical line through ``(cx, cy)``, radius ``r``, ``z0 <= z <= z1``."""

    def __init__(self, cx: float, cy: float, r: float, z0: float, z1: float, material: Material):
        self.cx, self.cy = float(cx), float(cy)
        self.r, self.z0, self.z1, self.material = float(r), float(z0), float(z1), material

    def intersect(self, o: np.ndarray, d: np.ndarray) -> np.ndarray:
        ox, oy, oz = o[0] - self.cx, o[1] - self.cy, o[2]
        dx, dy, dz = d
        r2 = self.r ** 2
        with np.errstate(divide="ignore", invalid="ignore"):
            a = dx * dx + dy * dy
            b = ox * dx + oy * dy
            disc = b * b - a * (ox * ox + oy * oy - r2)
            s = np.sqrt(np.maximum(disc, 0.0))
            best = np.full(d.shape[1], np.inf, np.float32)
            for t in ((-b - s) / a, (-b + s) / a):
                z = oz + t * dz
                ok = (disc >= 0) & (t > _EPS) & (z >= self.z0) & (z <= self.z1) & (t < best)
                best = np.where(ok, t, best)
            for zc in (self.z0, self.z1):
                t = (zc - oz) / dz
                px, py = ox + t * dx, oy + t * dy
                ok = (t > _EPS) & (px * px + py * py <= r2) & (t < best)
                best = np.where(ok, t, best)
        return best

    def normal(self, p: np.ndarray) -> np.ndarray:
        qx, qy = p[0] - self.cx, p[1] - self.cy
        rho = np.sqrt(qx * qx + qy * qy)
        dz0, dz1 = np.abs(p[2] - self.z0), np.abs(p[2] - self.z1)
        side = np.abs(rho - self.r) < np.minimum(dz0, dz1)
        inv = 1.0 / np.maximum(rho, 1e-12)
        cap = np.where(dz1 < dz0, 1.0, -1.0)
        return np.stack([np.where(side, qx * inv, 0.0), np.where(side, qy * inv, 0.0),
                         np.where(side, 0.0, cap)]).astype(np.float32)

    def local(self, p: np.ndarray) -> np.ndarray:
        return np.stack([p[0] - self.cx, p[1] - self.cy, p[2] - self.z0])


def demo_primitives() -> list:
    """The fixed demo arrangement (6 primitives inside [-1, 1]^3, floor top at z = -0.6)."""
    return [
        Box((-0.95, -0.95, -0.7), (0.95, 0.95, -0.6),
            Material(checker2d(4.0, (0.82, 0.80, 0.74), (0.22, 0.27, 0.33)), ks=0.1, shininess=16)),
        Sphere((0.35, 0.3, -0.15), 0.45,
               Material(stripes_z(9.0, (0.85, 0.12, 0.10), (0.95, 0.85, 0.80)), ks=0.6, shininess=40)),
        Box((-0.85, -0.75, -0.6), (-0.25, -0.15, 0.05),
            Material(checker3d(5.0, (0.12, 0.25, 0.80), (0.95, 0.80, 0.15)))),
        Sphere((-0.45, 0.55, -0.33), 0.27, Material(solid((0.15, 0.70, 0.25)), ks=0.8, shininess=80)),
        CylinderZ(0.5, -0.45, 0.2, -0.6, 0.45,
                  Material(stripes_azimuth(10, (0.95, 0.50, 0.08), (0.35, 0.18, 0.08)), ks=0.3, shininess=24)),
        Sphere((-0.1, -0.1, 0.55), 0.28,
               Material(checker_latlong(6, 12, (0.80, 0.15, 0.70), (0.95, 0.95, 0.95)), ks=0.7, shininess=60)),
    ]


# --------------------------------------------------------------------------------------------- rendering
def _nearest(prims: list, o: np.ndarray, d: np.ndarray, any_hit: bool = False):
    """Nearest hit over all primitives along rays (o [3, 1] or [3, R], d [3, R]).

    Returns (t float32 [R] with inf on a miss, primitive index int [R]); with ``any_hit`` only a bool [R]
    mask of rays that hit anything (for shadow rays).
    """
    if any_hit:
        hit = np.zeros(d.shape[1], bool)
        for p in prims:
            hit |= np.isfinite(p.intersect(o, d))
        return hit
    best = np.full(d.shape[1], np.inf, np.float32)
    idx = np.zeros(d.shape[1], np.int32)
    for k, p in enumerate(prims):
        t = p.intersect(o, d)
        closer = t < best
        best = np.where(closer, t, best)
        idx[closer] = k
    return best, idx


def render_rays(prims: list, o: np.ndarray, d: np.ndarray) -> np.ndarray:
    """Shade rays against ``prims``.

    Args:
      o: float32 [3] shared origin or [R, 3] origins; d: float32 [R, 3] unit directions.
    Returns:
      float32 [R, 4] premultiplied RGBA (alpha 1 on a hit, 0 on a miss).
    """
    d = np.ascontiguousarray(np.asarray(d, np.float32).T)                      # [3, R]
    o = np.asarray(o, np.float32)
    o = o[:, None] if o.ndim == 1 else np.ascontiguousarray(o.T)               # [3, 1] or [3, R]
    t, idx = _nearest(prims, o, d)
    hit = np.isfinite(t)
    out = np.zeros((4, d.shape[1]), np.float32)
    if hit.any():
        dh = d[:, hit]
        oh = o if o.shape[1] == 1 else o[:, hit]
        p = oh + t[hit] * dh
        ih = idx[hit]
        n = np.empty_like(p)
        albedo = np.empty_like(p)
        ks = np.zeros(p.shape[1], np.float32)
        shin = np.ones(p.shape[1], np.float32)
        for k, prim in enumerate(prims):
            m = ih == k
            if m.any():
                n[:, m] = prim.normal(p[:, m])
                albedo[:, m] = prim.material.texture(prim.local(p[:, m]))
                ks[m], shin[m] = prim.material.ks, prim.material.shininess
        n = np.where(_dot(n, dh) > 0, -n, n)  # face the viewer
        light = _LIGHT_DIR[:, None]
        ndl = _dot(n, light)
        lit = ndl > 0
        if lit.any():  # hard shadows: does a ray towards the light hit anything?
            li = np.flatnonzero(lit)
            shadow_o = p[:, li] + 2e-3 * n[:, li]
            lit[li[_nearest(prims, shadow_o, np.broadcast_to(light, shadow_o.shape), any_hit=True)]] = False
        ndl = np.where(lit, ndl, 0.0)
        h = light - dh
        h = h / np.sqrt(_dot(h, h))
        spec = np.where(lit, ks * np.maximum(_dot(n, h), 0.0) ** shin, 0.0)
        out[:3, hit] = np.clip(albedo * (_AMBIENT + _DIFFUSE * ndl) + spec, 0.0, 1.0)
        out[3, hit] = 1.0
    return np.ascontiguousarray(out.T)


def view_rays(cams: Cameras, index: int) -> tuple[np.ndarray, np.ndarray]:
    """Origin float32 [3] and unit directions float32 [H * W, 3] (row-major pixels) of one view.

    The same rays as :func:`nerfkit.cameras.all_rays` (up to float rounding; same pixel-centre and axis
    conventions), computed with one matrix product per view, which is several times faster.
    """
    px, py = pixel_grid(cams.width, cams.height)
    dirs = pixel_directions_camera(px, py, cams.fx[index], cams.fy[index], cams.cx[index], cams.cy[index])
    c2w = np.asarray(cams.c2w[index], np.float32)
    d = dirs.reshape(-1, 3).astype(np.float32) @ c2w[:, :3].T
    d /= np.linalg.norm(d, axis=-1, keepdims=True)
    return c2w[:, 3].copy(), d.astype(np.float32)


def render_views(cams: Cameras, supersample: int = SUPERSAMPLE, prims: list | None = None) -> np.ndarray:
    """Ray-trace ``prims`` (default: :func:`demo_primitives`) from every camera.

    Each pixel averages a ``supersample x supersample`` grid of sub-pixel rays (the pixel-centre rays of the
    cameras scaled up by ``supersample``) on premultiplied values, so alpha is the covered fraction.

    Returns:
      float32 [N, H, W, 4] premultiplied RGBA.
    """
    prims = demo_primitives() if prims is None else prims
    fine = cams.scaled(supersample)
    out = np.empty((len(cams), cams.height, cams.width, 4), np.float32)
    for v in range(len(cams)):  # one view at a time keeps arrays cache-sized
        o, d = view_rays(fine, v)
        rgba = render_rays(prims, o, d).reshape(fine.height, fine.width, 4)
        out[v] = area_downscale(rgba, supersample)
    return out


# ----------------------------------------------------------------------------------------------- cameras
def _sin_elevation_range() -> tuple[float, float]:
    lo, hi = DEMO_ELEVATION_DEG
    return math.sin(math.radians(lo)), math.sin(math.radians(hi))


def camera_positions(split: str, n: int, seed: int = 0, radius: float = DEMO_RADIUS) -> np.ndarray:
    """float64 [n, 3] camera centres on the sphere of ``radius``, elevations within ``DEMO_ELEVATION_DEG``.

    ``train``: a Fibonacci spiral (area-uniform in the elevation band), rotated by a seeded azimuth.
    Other splits: area-uniform seeded random positions (a different stream per split name).
    """
    s_lo, s_hi = _sin_elevation_range()
    rng = np.random.default_rng([seed, _SPLIT_SEED.get(split, sum(map(ord, split)) + 3)])
    if split == "train":
        i = np.arange(n)
        sin_el = s_lo + (i + 0.5) / max(n, 1) * (s_hi - s_lo)
        az = i * math.pi * (3.0 - math.sqrt(5.0)) + rng.uniform(0, 2 * math.pi)
    else:
        sin_el = rng.uniform(s_lo, s_hi, n)
        az = rng.uniform(0, 2 * math.pi, n)
    cos_el = np.sqrt(1.0 - sin_el ** 2)
    return radius * np.stack([cos_el * np.cos(az), cos_el * np.sin(az), sin_el], axis=-1)


def demo_cameras(split: str, n: int, width: int, height: int, seed: int = 0) -> Cameras:
    """Cameras looking at the origin (up = +z) from :func:`camera_positions`; fx = fy from
    ``DEMO_CAMERA_ANGLE_X``, principal point at the image centre."""
    eyes = camera_positions(split, n, seed)
    c2w = np.stack([look_at(e, (0.0, 0.0, 0.0), (0.0, 0.0, 1.0)) for e in eyes]).reshape(n, 3, 4)
    f = np.full(n, focal_from_fov(width, DEMO_CAMERA_ANGLE_X), np.float32)
    return Cameras(c2w=c2w.astype(np.float32), fx=f, fy=f.copy(),
                   cx=np.full(n, width / 2.0, np.float32), cy=np.full(n, height / 2.0, np.float32),
                   width=int(width), height=int(height))


def make_demo_scene(width: int = 64, height: int = 64, n_train: int = 60, n_val: int = 8, n_test: int = 20,
                    seed: int = 0) -> Scene:
    """The procedural demo scene (deterministic; ``seed`` only moves the cameras).

    Returns:
      Scene with splits train/val/test (a split with 0 views is omitted), each rendered in float and held as
      8-bit RGBA (:meth:`~nerfkit.types.SplitData.from_rgba`) with a transparent background; near 2, far 6,
      aabb [-1, 1]^3 (all geometry lies inside it), ``source = "demo"``. Names are ``"{split}/r_{i}.png"``.
    """
    if width < 1 or height < 1:
        raise ValueError(f"image size must be positive, got {width}x{height}")
    splits = {}
    for split, n in (("train", n_train), ("val", n_val), ("test", n_test)):
        if n < 0:
            raise ValueError(f"n_{split} must be >= 0, got {n}")
        if n == 0:
            continue
        cams = demo_cameras(split, n, width, height, seed)
        splits[split] = SplitData.from_rgba(cams, render_views(cams),
                                            tuple(f"{split}/r_{i}.png" for i in range(n)))
    return Scene(splits=splits, near=DEMO_NEAR, far=DEMO_FAR, aabb=np.asarray(DEMO_AABB, np.float32), source="demo")


# ------------------------------------------------------------------------------------------------ writer
def _to_4x4(c2w: np.ndarray) -> list:
    m = np.eye(4)
    m[:3, :4] = c2w
    return m.tolist()


def write_blender(scene: Scene, out_dir: Path | str) -> None:
    """Write ``scene`` in the Blender layout under ``out_dir`` (created if needed).

    Files: ``transforms_{split}.json`` with ``camera_angle_x`` (from the first camera's fx), ``near``,
    ``far``, ``aabb`` and frames ``{"file_path": "./{split}/r_{i}", "transform_matrix": 4x4}``, and
    ``{split}/r_{i}.png`` 8-bit RGBA with straight alpha. Intrinsics that ``camera_angle_x`` cannot express
    (fy != fx, an off-centre principal point, per-view differences, distortion) are written as Instant-NGP
    keys (``fl_x``, ``fl_y``, ``cx``, ``cy``, ``w``, ``h``, ``k1``...), top-level or per frame.
    """
    out_dir = Path(out_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    for split, data in scene.splits.items():
        cams = data.cameras
        (out_dir / split).mkdir(exist_ok=True)
        w, h = cams.width, cams.height
        meta: dict = {"camera_angle_x": fov_from_focal(w, cams.fx[0])}
        per_view = {
            "fl_x": cams.fx, "fl_y": cams.fy, "cx": cams.cx, "cy": cams.cy,
        }
        if cams.distortion is not None:
            per_view.update({k: cams.distortion[:, j] for j, k in enumerate(("k1", "k2", "p1", "p2"))})
        defaults = {"fl_x": focal_from_fov(w, meta["camera_angle_x"]), "fl_y": float(cams.fx[0]),
                    "cx": w / 2.0, "cy": h / 2.0, "k1": 0.0, "k2": 0.0, "p1": 0.0, "p2": 0.0}
        varying = {k: v for k, v in per_view.items() if not np.all(v == v[0])}
        constant = {k: float(v[0]) for k, v in per_view.items() if k not in varying}
        extra = {k: v for k, v in constant.items() if not np.isclose(v, defaults[k], rtol=1e-6, atol=1e-6)}
        if extra or varying:
            meta.update({"fl_x": float(cams.fx[0]), "w": w, "h": h})
            meta.update(extra)
        meta.update({"near": float(scene.near), "far": float(scene.far),
                     "aabb": np.asarray(scene.aabb, np.float64).tolist()})
        frames = []
        for i in range(len(data)):
            frame = {"file_path": f"./{split}/r_{i}", "transform_matrix": _to_4x4(cams.c2w[i])}
            frame.update({k: float(v[i]) for k, v in varying.items()})
            frames.append(frame)
            write_rgba_png(out_dir / split / f"r_{i}.png", data.image(i))
        meta["frames"] = frames
        (out_dir / f"transforms_{split}.json").write_text(json.dumps(meta, indent=2) + "\n", encoding="utf-8")
