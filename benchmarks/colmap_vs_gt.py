"""colmap-vs-gt: does a fit on COLMAP's poses come within 1 dB PSNR of the same fit on the true poses?

    python benchmarks/colmap_vs_gt.py                      # 40 views at 256x256, hash-fast, 120 s per fit
    python benchmarks/colmap_vs_gt.py --views 48 --budget 300 --preset cpu-fast

1. Renders ``--views`` views of the procedural test scene of ``tests/test_colmap.py`` (the demo objects with
   matte materials inside a textured backdrop sphere of radius 6; cameras on a closed loop at radius 3.3).
2. Runs :func:`nerfkit.data.colmap.run_colmap` on the images (what ``nerfkit data colmap`` does) and measures
   the pose error after a similarity alignment (Umeyama on the camera centres).
3. Writes a second capture with the *same* frames (same files, same train/test split: every 8th registered
   view held out) but the true poses and intrinsics.
4. Both captures get the same scene box: a cube of half-size 6.5 around the scene centre that holds the whole
   backdrop, written as ``aabb`` (in the COLMAP capture through the alignment), so that the fits differ only in
   their poses and intrinsics.
5. ``nerfkit fit PRESET --data CAPTURE --time-budget BUDGET`` and ``nerfkit evaluate`` for each (subprocesses,
   one after the other), then ``benchmarks/results/colmap_vs_gt.json`` with both PSNRs, their difference and
   the pose errors.

The test views' COLMAP poses come from the same reconstruction as the training views (they are registered
with them), as they would be for a real capture.
"""

from __future__ import annotations

import argparse
import json
import shutil
import subprocess
import sys
import time
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parent))
sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
from common import ROOT, environment, write_result  # noqa: E402

BOX_HALF = 6.5  # holds the backdrop sphere (radius 6) around the origin of the true world


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--views", type=int, default=40)
    ap.add_argument("--size", type=int, default=256)
    ap.add_argument("--preset", default="hash-fast")
    ap.add_argument("--budget", type=float, default=120.0, help="seconds of wall-clock per fit")
    ap.add_argument("--work", type=Path, default=Path("/tmp/nerfkit-colmap-vs-gt"), help="scratch directory")
    ap.add_argument("--name", default="colmap_vs_gt")
    ap.add_argument("--results-dir", type=Path, default=None, help="where the JSON goes (default benchmarks/results)")
    ap.add_argument("--nerfkit", default="nerfkit", help="the command that runs nerfkit (e.g. 'python -m cli.main')")
    ap.add_argument("--extra", nargs=argparse.REMAINDER, default=[], help="further flags for `nerfkit fit`")
    args = ap.parse_args()

    import imageio.v3 as iio

    from nerfkit.data.colmap import run_colmap
    from nerfkit.data.nerfstudio import write_nerfstudio
    from tests.test_colmap import _angle_deg, _orbit_cameras, _render, _umeyama

    env = environment()
    work = args.work
    if work.exists():
        shutil.rmtree(work)
    photos = work / "photos"
    photos.mkdir(parents=True)
    t0 = time.time()
    gt = _orbit_cameras(args.views, args.size)
    for i, img in enumerate(_render(gt)):
        iio.imwrite(photos / f"view_{i:03d}.png", img)
    render_s = time.time() - t0

    t0 = time.time()
    colmap_dir = work / "colmap_capture"
    res = run_colmap(photos, colmap_dir)
    colmap_s = time.time() - t0
    meta = json.loads((colmap_dir / "transforms.json").read_text())
    frames = meta["frames"]
    idx = [int(Path(f["file_path"]).stem.split("_")[1]) for f in frames]
    est = np.asarray([f["transform_matrix"] for f in frames], np.float64)[:, :3]
    ref = gt.c2w[idx].astype(np.float64)
    s, rot, t = _umeyama(est[:, :, 3], ref[:, :, 3])  # COLMAP world -> true world
    rot_err = _angle_deg(np.einsum("nji,njk->nik", ref[:, :, :3], rot @ est[:, :, :3]))
    pos_err = np.linalg.norm(s * est[:, :, 3] @ rot.T + t - ref[:, :, 3], axis=1)

    # the same box in both worlds: true-world cube around the origin, mapped into COLMAP's world
    centre_colmap = rot.T @ (np.zeros(3) - t) / s
    meta["aabb"] = [(centre_colmap - BOX_HALF / s).tolist(), (centre_colmap + BOX_HALF / s).tolist()]
    (colmap_dir / "transforms.json").write_text(json.dumps(meta, indent=2) + "\n")

    gt_dir = work / "gt_capture"
    (gt_dir / "images").mkdir(parents=True)
    gt_frames = []
    for f, i in zip(frames, idx):
        src = colmap_dir / f["file_path"]
        shutil.copy2(src, gt_dir / f["file_path"])
        m = np.eye(4)
        m[:3] = gt.c2w[i]
        gt_frames.append({"file_path": f["file_path"], "transform_matrix": m.tolist()})
    write_nerfstudio(gt_dir, gt_frames, {"camera_model": "PINHOLE", "fl_x": float(gt.fx[0]), "fl_y": float(gt.fy[0]),
                                         "cx": float(gt.cx[0]), "cy": float(gt.cy[0]), "w": gt.width, "h": gt.height},
                     {"aabb": [[-BOX_HALF] * 3, [BOX_HALF] * 3]})

    fits = {}
    for name, data in (("gt", gt_dir), ("colmap", colmap_dir)):
        out = work / f"run_{name}"
        cmd = [*args.nerfkit.split(), "fit", args.preset, "--data", str(data), "--time-budget", str(args.budget),
               "--out", str(out), *args.extra]
        t0 = time.time()
        subprocess.run(cmd, check=True)
        fit_s = time.time() - t0
        subprocess.run([*args.nerfkit.split(), "evaluate", str(out)], check=True)
        ev = json.loads((out / "eval_test" / "metrics.json").read_text())
        summary = json.loads((out / "summary.json").read_text()) if (out / "summary.json").exists() else {}
        fits[name] = {"psnr": ev["psnr"], "ssim": ev["ssim"], "views": ev["views"], "fit_seconds": round(fit_s, 1),
                      "steps": summary.get("step", summary.get("steps")), "command": " ".join(cmd)}
        print(f"{name}: PSNR {ev['psnr']:.2f} dB, SSIM {ev['ssim']:.4f} ({ev['views']} test views)")

    gap = fits["gt"]["psnr"] - fits["colmap"]["psnr"]
    figures = {
        "psnr_gt_poses": round(fits["gt"]["psnr"], 3),
        "psnr_colmap_poses": round(fits["colmap"]["psnr"], 3),
        "psnr_gap_db": round(gap, 3),
        "within_1db": bool(gap <= 1.0),
        "registered": res.registered, "views": args.views,
        "rotation_error_deg": {"max": round(float(rot_err.max()), 4), "mean": round(float(rot_err.mean()), 4)},
        "centre_error": {"max": round(float(pos_err.max()), 4), "mean": round(float(pos_err.mean()), 4),
                         "camera_radius": 3.3},
        "focal_px": {"colmap": round(float(meta["fl_x"]), 2), "true": round(float(gt.fx[0]), 2)},
    }
    extra = {"protocol": f"{args.views} views at {args.size}x{args.size}, preset {args.preset}, {args.budget:g} s per "
                         "fit, every 8th registered view held out, 8-bit PSNR on the held-out views",
             "fits": fits, "seconds": {"render": round(render_s, 1), "colmap": round(colmap_s, 1)}}
    path = write_result(args.name, figures, out_dir=args.results_dir, extra=extra, env=env)
    print(json.dumps(figures, indent=2))
    print(f"wrote {path}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
