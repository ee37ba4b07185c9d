"""Mesh and point cloud export, measured on lego: silhouette IoU against the ground-truth alpha masks, colour error,
and how close the point cloud lies to the mesh.

    python benchmarks/export_mesh.py --run /tmp/lego-export --picture docs/export_mesh_lego.png \
        --slice-picture docs/export_pointcloud_slice.png   # fit (if RUN has no checkpoint), export, measure
    python benchmarks/export_mesh.py --run /tmp/lego-dev --steps 30 --resolution 64 --views 3 \
        --pointcloud-views 3 --expected-views 3 --name export_mesh_rehearsal   # a rehearsal

1. Fits lego at 100x100 with ``nerfkit fit hash-fast --data LEGO --downscale 4 --time-budget 600 --out RUN`` (or
   ``--steps N`` instead of the budget) unless ``RUN`` already holds a checkpoint (the steps it reached are
   recorded: on a shared CPU a 600 s budget gets only a few hundred steps).
2. ``nerfkit export mesh`` at ``--resolution`` (256^3 over the scene box) and ``nerfkit export pointcloud``
   (its default, ``--depth surface``: every training view), both timed; for comparison, ``--depth expected`` on
   ``--expected-views`` evenly spaced training views.
3. Rasterises the mesh (a NumPy z-buffer: every pixel centre inside a triangle, nearest triangle wins, vertex
   colours interpolated barycentrically) from the first ``--views`` test cameras: the silhouette against the
   ground-truth alpha > 0.5 (IoU per view), the colours on white against the test images (mean absolute error
   on the pixels both cover, in 8-bit levels, and PSNR of the whole image).
4. The fraction of point-cloud points within 1.5 voxels of the mesh surface (distance to the nearest of 4M
   points sampled uniformly on the surface: an upper bound on the true distance, so the fraction is a lower bound),
   for both point clouds.
5. Writes benchmarks/results/export_mesh_<device>.json; with ``--picture``, a shaded view of the mesh; with
   ``--slice-picture``, a slice through the scene: the density's threshold contour and the points of both
   clouds near the slice.
"""

from __future__ import annotations

import argparse
import subprocess
import sys
import time
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parent))
sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
from common import LEGO, environment, write_result  # noqa: E402


def project(verts: np.ndarray, c2w: np.ndarray, fx, fy, cx, cy) -> tuple[np.ndarray, np.ndarray]:
    """Pixel coordinates float [V, 2] and depth along the view axis [V] of world points in an OpenGL camera."""
    cam = (verts - c2w[:3, 3]) @ c2w[:3, :3]
    z = -cam[:, 2]
    safe = np.where(z > 1e-6, z, 1e-6)
    return np.stack([fx * cam[:, 0] / safe + cx, -fy * cam[:, 1] / safe + cy], 1), z


def rasterise(verts, faces, colours, c2w, fx, fy, cx, cy, width, height, chunk=200_000):
    """(covered bool [H, W], rgb float [H, W, 3]) of a triangle mesh with vertex colours seen by a pinhole camera.

    Each triangle tests the pixel centres of its bounding box (triangles grouped by box size, vectorised); the
    nearest hit per pixel wins; colours are interpolated barycentrically."""
    p, z = project(verts, c2w, fx, fy, cx, cy)
    tri = faces[np.all(z[faces] > 1e-3, axis=1)]
    best_z = np.full(height * width, np.inf)
    best_rgb = np.zeros((height * width, 3))
    lo = np.floor(p[tri].min(axis=1) - 0.5).astype(int) + 1   # first pixel index whose centre may be inside
    hi = np.floor(p[tri].max(axis=1) - 0.5).astype(int)
    size = np.maximum(hi - lo + 1, 0).max(axis=1)
    for b in np.unique(size[size > 0]):
        sel = np.flatnonzero(size == b)
        step = max(chunk // (b * b), 1)
        for s in range(0, len(sel), step):
            part = sel[s:s + step]
            _splat(tri[part], lo[part], int(b), p, z, colours, width, height, best_z, best_rgb)
    covered = np.isfinite(best_z).reshape(height, width)
    return covered, best_rgb.reshape(height, width, 3)


def _splat(tri, lo, b, p, z, colours, width, height, best_z, best_rgb):
    dx, dy = np.meshgrid(np.arange(b), np.arange(b), indexing="xy")
    px = lo[:, None, 0] + dx.reshape(1, -1)   # [T, b*b] pixel column
    py = lo[:, None, 1] + dy.reshape(1, -1)
    a, bb, c = p[tri[:, 0]], p[tri[:, 1]], p[tri[:, 2]]
    qx, qy = px + 0.5, py + 0.5
    det = (bb[:, 0] - a[:, 0]) * (c[:, 1] - a[:, 1]) - (c[:, 0] - a[:, 0]) * (bb[:, 1] - a[:, 1])
    det = np.where(np.abs(det) < 1e-12, np.nan, det)[:, None]
    w1 = ((qx - a[:, None, 0]) * (c[:, None, 1] - a[:, None, 1]) - (c[:, None, 0] - a[:, None, 0]) * (qy - a[:, None, 1])) / det
    w2 = ((bb[:, None, 0] - a[:, None, 0]) * (qy - a[:, None, 1]) - (qx - a[:, None, 0]) * (bb[:, None, 1] - a[:, None, 1])) / det
    w0 = 1 - w1 - w2
    inside = (w0 >= 0) & (w1 >= 0) & (w2 >= 0) & (px >= 0) & (py >= 0) & (px < width) & (py < height)
    t, k = np.nonzero(inside)
    if not len(t):
        return
    w = np.stack([w0[t, k], w1[t, k], w2[t, k]], 1)
    depth = np.sum(w * z[tri[t]], axis=1)
    pix = py[t, k] * width + px[t, k]
    order = np.lexsort((depth, pix))  # per pixel, nearest first
    pix, depth, w, t = pix[order], depth[order], w[order], t[order]
    first = np.r_[True, pix[1:] != pix[:-1]]
    pix, depth, w, t = pix[first], depth[first], w[first], t[first]
    closer = depth < best_z[pix]
    pix, depth, w, t = pix[closer], depth[closer], w[closer], t[closer]
    best_z[pix] = depth
    best_rgb[pix] = np.einsum("nk,nkc->nc", w, colours[tri[t]])


def shaded_picture(mesh, c2w, focal, size, out: Path) -> None:
    """A PNG of the mesh from ``c2w``: vertex colours times a headlight Lambert term, on white."""
    from nerfkit.visualize import write_png

    normals = np.asarray(mesh.vertex_normals)
    light = -c2w[:3, 2]
    shade = 0.35 + 0.65 * np.clip(-(normals @ light), 0, 1)
    colours = np.asarray(mesh.visual.vertex_colors[:, :3], np.float64) / 255 * shade[:, None]
    cov, rgb = rasterise(np.asarray(mesh.vertices), np.asarray(mesh.faces), colours, c2w, focal, focal,
                         size / 2, size / 2, size, size)
    img = np.where(cov[..., None], rgb, 1.0)
    write_png(out, (np.clip(img, 0, 1) * 255 + 0.5).astype(np.uint8))


def fit_if_needed(run: Path, data: Path, budget: float, steps: int | None) -> None:
    if (run / "checkpoints").is_dir() and any((run / "checkpoints").iterdir()):
        return
    stop = ["--steps", str(steps)] if steps else ["--time-budget", str(budget)]
    cmd = [sys.executable, "-m", "cli.main", "fit", "hash-fast", "--data", str(data), "--downscale", "4", *stop,
           "--out", str(run)]
    print(" ".join(cmd), flush=True)
    subprocess.run(cmd, check=True, cwd=Path(__file__).resolve().parents[1])


def measure_views(mesh, meta, test_rgba, views: int) -> dict:
    cams = meta.cameras["test"]
    verts, faces = np.asarray(mesh.vertices), np.asarray(mesh.faces)
    colours = np.asarray(mesh.visual.vertex_colors[:, :3], np.float64) / 255
    ious, errs, psnrs = [], [], []
    for i in range(min(views, len(cams))):
        cov, rgb = rasterise(verts, faces, colours, cams.c2w[i], cams.fx[i], cams.fy[i], cams.cx[i], cams.cy[i],
                             cams.width, cams.height)
        gt_mask = test_rgba[i, ..., 3] > 0.5
        ious.append(float((cov & gt_mask).sum() / max((cov | gt_mask).sum(), 1)))
        gt = test_rgba[i, ..., :3] + (1 - test_rgba[i, ..., 3:])  # premultiplied, on white
        img = np.where(cov[..., None], rgb, 1.0)
        both = cov & gt_mask
        errs.append(float(np.abs(img[both] - gt[both]).mean() * 255))
        psnrs.append(float(-10 * np.log10(np.mean((img - gt) ** 2))))
    return {"iou_mean": float(np.mean(ious)), "iou_min": float(np.min(ious)), "iou_per_view": ious,
            "colour_mae_8bit_mean": float(np.mean(errs)), "image_psnr_mean": float(np.mean(psnrs)), "views": len(ious)}


def near_surface_fraction(mesh, points: np.ndarray, voxel: float, samples: int = 4_000_000) -> dict:
    from scipy.spatial import cKDTree

    surface, _ = __import__("trimesh").sample.sample_surface(mesh, samples, seed=0)
    dist, _ = cKDTree(surface).query(points, k=1)
    return {"within_1.5_voxels": float(np.mean(dist <= 1.5 * voxel)), "median_distance_voxels": float(np.median(dist) / voxel),
            "p95_distance_voxels": float(np.percentile(dist, 95) / voxel), "points": int(len(points))}


def slice_picture(run_dir: Path, clouds: dict, threshold: float, resolution: int, out: Path, axis: int = 2,
                  at: float = 0.26) -> None:
    """A PNG: the density's ``threshold`` contour on the plane ``x[axis] = at`` (data frame) and, beside each other,
    the points of each cloud within one voxel of that plane."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    from nerfkit import export

    run = export._load_world_run(run_dir)
    box = export.default_box(run)
    axes, voxel = export.grid_axes(box, resolution), export.voxel_size(box, resolution)
    axes[axis] = np.array([at])
    sigma = export.density_grid(run, axes).squeeze(axis)
    u, v = [k for k in range(3) if k != axis]
    inside = np.argwhere(sigma > threshold)   # zoom on the cut through the scene, with a margin
    lo, hi = inside.min(0) - 8, inside.max(0) + 8
    fig, panels = plt.subplots(1, len(clouds), figsize=(4 * len(clouds), 4.4), dpi=70)
    for ax, (name, pts) in zip(np.atleast_1d(panels), clouds.items()):
        near = np.abs(pts[:, axis] - at) < voxel
        ax.contour(axes[u], axes[v], sigma.T, levels=[threshold], colors="k", linewidths=0.7)
        ax.scatter(pts[near, u], pts[near, v], s=0.7, c="tab:blue" if name == "surface" else "tab:red")
        ax.set_xlim(axes[u][max(lo[0], 0)], axes[u][min(hi[0], len(axes[u]) - 1)])
        ax.set_ylim(axes[v][max(lo[1], 0)], axes[v][min(hi[1], len(axes[v]) - 1)])
        ax.set_aspect("equal")
        ax.set_title(f"--depth {name}", fontsize=10)
        ax.set_xticks([])
        ax.set_yticks([])
    fig.tight_layout()
    fig.savefig(out)


def pointclouds(run: Path, mesh, voxel: float, num_points: int, views: int | None,
                expected_views: int) -> tuple[dict, dict]:
    """Figures of the default point cloud (every training view, timed) and of the expected-depth one."""
    import trimesh

    from nerfkit import export

    figures, clouds = {}, {}
    for depth, views in (("surface", views), ("expected", expected_views)):
        t0 = time.time()
        pc = export.export_pointcloud(run, run / "export" / f"pointcloud_{depth}.ply", num_points=num_points,
                                      depth=depth, max_views=views)
        clouds[depth] = np.asarray(trimesh.load(pc["file"]).vertices)
        figures[depth] = {"seconds": time.time() - t0, "views": views or "all", "candidates": pc["candidates"],
                          "no_surface": pc["no_surface"], "removed": pc["removed"],
                          **near_surface_fraction(mesh, clouds[depth], voxel)}
    return figures, clouds


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--run", type=Path, default=Path("/tmp/lego-hash-fast"))
    ap.add_argument("--data", type=Path, default=LEGO)
    ap.add_argument("--budget", type=float, default=600.0)
    ap.add_argument("--steps", type=int, default=None, help="fit this many steps instead of the time budget")
    ap.add_argument("--resolution", type=int, default=256)
    ap.add_argument("--threshold", type=float, default=2.5)
    ap.add_argument("--views", type=int, default=25)
    ap.add_argument("--num-points", type=int, default=1_000_000)
    ap.add_argument("--pointcloud-views", type=int, default=None, help="training views of the default cloud (all)")
    ap.add_argument("--expected-views", type=int, default=25, help="training views of the expected-depth cloud")
    ap.add_argument("--picture", type=Path, default=None, help="also write a shaded PNG of the mesh here")
    ap.add_argument("--slice-picture", type=Path, default=None, help="also write a PNG of a slice through both clouds")
    ap.add_argument("--name", default=None)
    args = ap.parse_args()

    import json

    import trimesh

    from nerfkit import export, runs
    from nerfkit.data import load_scene

    env = environment()
    fit_if_needed(args.run, args.data, args.budget, args.steps)
    summary = json.loads((args.run / "summary.json").read_text())
    t0 = time.time()
    m = export.export_mesh(args.run, args.run / "export" / "mesh.ply", resolution=args.resolution,
                           threshold=args.threshold)
    t_mesh = time.time() - t0
    mesh = trimesh.load(m["file"], process=False)
    pc, clouds = pointclouds(args.run, mesh, m["voxel"], args.num_points, args.pointcloud_views,
                             args.expected_views)
    meta = runs.SceneMeta(args.run / "scene.json")
    test = load_scene(args.data, downscale=4, splits=("test",)).splits["test"]
    figures = {"fit": {"steps": summary["steps"], "seconds": summary["seconds"], "val_psnr": summary.get("val_psnr")},
               "mesh": {**{k: m[k] for k in ("vertices", "faces", "grid", "voxel")}, "threshold": args.threshold,
                        "seconds": t_mesh, **measure_views(mesh, meta, test.rgba, args.views)},
               "pointcloud": pc["surface"], "pointcloud_expected_depth": pc["expected"]}
    if args.picture:
        cams = meta.cameras["test"]
        shaded_picture(mesh, cams.c2w[0], float(cams.fx[0]) * 4, 400, args.picture)
    if args.slice_picture:
        slice_picture(args.run, clouds, args.threshold, args.resolution, args.slice_picture)
    device = env["device"]["platform"]
    path = write_result(args.name or f"export_mesh_{device}", figures, env=env)
    print(json.dumps(figures, indent=1))
    print(f"-> {path}")


if __name__ == "__main__":
    main()
