"""Real captures, fitted back to back: presets under the same command and budget on a real photo capture.

    python benchmarks/real_captures.py                                   # bird, hash-fast vs real-capture
    python benchmarks/real_captures.py --presets hash-fast demo real-capture --budget 600 --downscale 2
    python benchmarks/real_captures.py --data path/to/capture --name real_captures_mine

For each preset, runs exactly what a user types, as subprocesses:
``nerfkit fit PRESET --data CAPTURE --downscale D --time-budget B --out OUT/PRESET`` then
``nerfkit evaluate OUT/PRESET`` (every 8th image held out, as the loaders do for a capture without split
lists). ``--data`` is a capture directory nerfkit loads (transforms.json, poses_bounds.npy, ...) or a folder
with a COLMAP model in ``sparse/0`` and ``images/`` (as ../shared/data/bird), which is first converted with
``nerfkit data colmap-import``. Writes benchmarks/results/<name>.json: per preset PSNR / SSIM on the held-out
views (the render-time appearance code: the mean of the training codes), NeRF-W's fitted-code score on the
right halves where the run has appearance codes, steps reached, evaluation seconds per view; and the machine.
Skips with a message when the data is absent. Never run it beside another timed job (../shared/docs/BENCHMARKS.md).
"""

from __future__ import annotations

import argparse
import json
import shutil
import subprocess
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
from common import ROOT, environment, write_result  # noqa: E402

BIRD = ROOT.parent / "shared" / "data" / "bird"


def capture_dir(data: Path, work: Path) -> Path:
    """A directory ``nerfkit fit --data`` reads: ``data`` itself, or its COLMAP model imported into ``work``."""
    if (data / "sparse" / "0").is_dir() and (data / "images").is_dir():
        out = work / "capture"
        if not (out / "transforms.json").exists():
            subprocess.run(["nerfkit", "data", "colmap-import", str(data / "sparse" / "0"), str(data / "images"),
                            str(out)], check=True)
        return out
    return data


def run_preset(preset: str, capture: Path, out: Path, args) -> dict:
    if out.exists():
        shutil.rmtree(out)
    fit_cmd = ["nerfkit", "fit", preset, "--data", str(capture), "--downscale", str(args.downscale),
               "--time-budget", str(args.budget), "--out", str(out), *args.extra]
    t0 = time.time()
    subprocess.run(fit_cmd, check=True)
    fit_seconds = time.time() - t0
    subprocess.run(["nerfkit", "evaluate", str(out), "--save-images", "4"], check=True)
    summary = json.loads((out / "summary.json").read_text())
    metrics = json.loads((out / "eval_test" / "metrics.json").read_text())
    row = {"command": " ".join(fit_cmd), "psnr": metrics["psnr"], "ssim": metrics["ssim"],
           "test_views": metrics["views"], "resolution": metrics["resolution"], "steps": summary["steps"],
           "fit_seconds": fit_seconds, "rays_per_s": summary["rays_per_s"],
           "eval_seconds": metrics["seconds"], "eval_seconds_per_view": metrics["seconds"] / max(metrics["views"], 1)}
    if "appearance" in metrics:
        row["nerf_w_right_half"] = metrics["appearance"]
    print(f"{preset}: PSNR {row['psnr']:.2f} dB, SSIM {row['ssim']:.4f} ({row['steps']} steps)", flush=True)
    return row


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--data", type=Path, default=BIRD)
    ap.add_argument("--presets", nargs="+", default=["hash-fast", "real-capture"])
    ap.add_argument("--budget", type=float, default=600.0, help="seconds of wall-clock for each whole fit")
    ap.add_argument("--downscale", type=int, default=2)
    ap.add_argument("--work", type=Path, default=Path("/tmp/nerfkit-real-captures"))
    ap.add_argument("--name", default=None, help="result name (default real_captures_<data folder>)")
    ap.add_argument("--extra", nargs=argparse.REMAINDER, default=[], help="further flags for every `nerfkit fit`")
    args = ap.parse_args()
    if not args.data.exists():
        print(f"skipped: no capture at {args.data}")
        return 0
    env = environment()  # before the runs: the commit that ran
    args.work.mkdir(parents=True, exist_ok=True)
    capture = capture_dir(args.data, args.work)
    rows = {p: run_preset(p, capture, args.work / p, args) for p in args.presets}
    figures = {"data": str(args.data), "downscale": args.downscale, "budget_s": args.budget, "presets": rows}
    others = [r["psnr"] for p, r in rows.items() if p != "real-capture"]
    if "real-capture" in rows and others:
        figures["real_capture_minus_best_other_db"] = rows["real-capture"]["psnr"] - max(others)
    name = args.name or f"real_captures_{args.data.name}"
    path = write_result(name, figures, env=env)
    print(json.dumps(figures, indent=2))
    print(f"-> {path}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
