"""A procedural 360-degree scene with a distant background: the demo objects inside a textured sky dome.

Cameras circle the demo arrangement (see :mod:`nerfkit.data.demo`) at radius 3.2, looking at the origin
from every azimuth, so every pixel sees either an object within 1.5 units or the dome ``SKY_RADIUS`` = 40
units away: the geometry of a real 360-degree capture with distant background, with exact ground truth.
The images are opaque (alpha 1). Fit it with scene contraction (``--model.contraction``) and inverse-depth
sampling; without them, a field on raw coordinates cannot represent the far background.
"""

from __future__ import annotations

import math

import numpy as np

from nerfkit.cameras import focal_from_fov, look_at
from nerfkit.data.demo import demo_primitives, render_rays, view_rays
from nerfkit.data.images import area_downscale
from nerfkit.types import Cameras, Scene, SplitData

SKY_RADIUS = 40.0
CAMERA_RADIUS = 3.2
NEAR, FAR = 0.5, 1000.0


def sky_rgb(origins: np.ndarray, directions: np.ndarray) -> np.ndarray:
    """float32 [R, 3]: the dome's colour where rays (origins [3] or [R, 3], unit directions [R, 3]) meet it.

    A horizon-to-zenith gradient with a lat-long checker of 6 x 16 cells and a bright band of 'mountains'.
    """
    o = np.broadcast_to(np.asarray(origins, np.float64), directions.shape)
    d = np.asarray(directions, np.float64)
    b = np.sum(o * d, -1)
    c = np.sum(o * o, -1) - SKY_RADIUS ** 2
    t = -b + np.sqrt(b * b - c)  # from inside the dome: the far root
    p = o + t[:, None] * d
    lat = np.arcsin(np.clip(p[:, 2] / SKY_RADIUS, -1, 1))
    lon = np.arctan2(p[:, 1], p[:, 0])
    up = np.clip(lat / (math.pi / 2), -1, 1)[:, None]
    base = (1 - up) * np.array([0.85, 0.75, 0.60]) + up * np.array([0.25, 0.45, 0.85])
    check = ((np.floor(lat / (math.pi / 6)) + np.floor(lon / (math.pi / 8))) % 2 == 1)[:, None]
    rgb = base * np.where(check, 0.75, 1.0)
    ridge = 0.12 + 0.06 * np.sin(5 * lon) + 0.03 * np.sin(13 * lon + 1.0)
    mountain = (lat < ridge)[:, None]
    rgb = np.where(mountain, np.array([0.30, 0.42, 0.25]) * (0.8 + 0.2 * np.cos(9 * lon))[:, None], rgb)
    return rgb.astype(np.float32)


def unbounded_cameras(n: int, width: int, height: int, seed: int, fov: float = 1.0) -> Cameras:
    """n cameras at radius ``CAMERA_RADIUS`` around the origin, all azimuths, elevations 5-35 degrees."""
    rng = np.random.default_rng(seed)
    az = (np.arange(n) + rng.uniform()) * 2 * math.pi / n if seed == 0 else rng.uniform(0, 2 * math.pi, n)
    el = np.radians(rng.uniform(5.0, 35.0, n))
    eyes = CAMERA_RADIUS * np.stack([np.cos(el) * np.cos(az), np.cos(el) * np.sin(az), np.sin(el)], -1)
    c2w = np.stack([look_at(e, (0.0, 0.0, -0.1), (0.0, 0.0, 1.0)) for e in eyes]).reshape(n, 3, 4)
    f = np.full(n, focal_from_fov(width, fov), np.float32)
    return Cameras(c2w=c2w.astype(np.float32), fx=f, fy=f.copy(), cx=np.full(n, width / 2, np.float32),
                   cy=np.full(n, height / 2, np.float32), width=width, height=height)


def render_views(cams: Cameras, supersample: int = 2) -> np.ndarray:
    """float32 [N, H, W, 4]: objects over the dome, alpha 1, ``supersample^2`` rays per pixel."""
    prims = demo_primitives()
    fine = cams.scaled(supersample)
    out = np.empty((len(cams), cams.height, cams.width, 4), np.float32)
    for v in range(len(cams)):
        o, d = view_rays(fine, v)
        rgba = render_rays(prims, o, d)
        rgb = rgba[:, :3] + (1.0 - rgba[:, 3:]) * sky_rgb(o, d)
        img = np.concatenate([rgb, np.ones_like(rgb[:, :1])], -1).reshape(fine.height, fine.width, 4)
        out[v] = area_downscale(img, supersample)
    return out


def make_unbounded_scene(width: int = 48, height: int = 48, n_train: int = 48, n_test: int = 8) -> Scene:
    """The 360-degree scene: train cameras evenly around, test cameras at random azimuths (seeded)."""
    splits = {}
    for split, n, seed in (("train", n_train, 0), ("test", n_test, 2)):
        cams = unbounded_cameras(n, width, height, seed)
        splits[split] = SplitData.from_rgba(cams, render_views(cams),
                                            tuple(f"{split}/r_{i}.png" for i in range(n)))
    box = np.asarray([[-2.0] * 3, [2.0] * 3], np.float32) * CAMERA_RADIUS
    return Scene(splits=splits, near=NEAR, far=FAR, aabb=box, source="unbounded-demo")
