"""Held-out evaluation: render a split, score it, and write pictures a person can look at."""

from __future__ import annotations

import json
import time
from pathlib import Path

import numpy as np

from nerfkit import metrics, parallel, progress, renderer, runs, visualize
from nerfkit.errors import InputError
from nerfkit.types import background_rgb


def evaluate(run_dir: Path, split: str = "test", max_views: int | None = None, out: Path | None = None,
             data: Path | None = None, chunk: int | None = None, save_images: int = 8) -> dict:
    """Render every view of ``split``, compute PSNR/SSIM on 8-bit images, write metrics and images.

    Ground truth is composited on the training background (white for ``random``), both sides quantised to
    8 bits, as in ../shared/docs/BENCHMARKS.md. Writes ``OUT/metrics.json`` (per view and mean, with the
    render time of each view, ``seconds_per_view`` (their mean) and ``seconds`` (the whole evaluation)) and, for
    the first ``save_images`` views, ``OUT/images/<name>_{pred,gt,error,depth}.png``. Shows one line of progress
    on stderr (:class:`nerfkit.progress.Progress`).
    """
    run = runs.load_run(run_dir)
    cfg, meta = run.cfg, run.meta
    data_cfg = cfg.data if data is None else type(cfg.data)(data=data, downscale=cfg.data.downscale, background=cfg.data.background)
    scene = runs.load_scene(data_cfg, splits=("train", split) if split != "train" else ("train",))
    if split not in scene.splits:
        raise InputError(f"the scene has no '{split}' split", path=data_cfg.data or "demo", field="--split")
    views = scene.splits[split]
    n = len(views) if max_views is None else min(max_views, len(views))
    bg_name = "white" if cfg.data.background == "random" else cfg.data.background
    bg = background_rgb(bg_name)
    out = Path(run_dir) / f"eval_{split}" if out is None else Path(out)
    (out / "images").mkdir(parents=True, exist_ok=True)
    chunk = chunk or cfg.train.render_chunk
    mesh = parallel.render_mesh(chunk)
    params, state = parallel.replicate((run.params, run.sampler_state), mesh)
    fn = renderer.make_render_fn(run.graphdef, run.sampler, bg, mesh=mesh)

    rows, t0 = [], time.time()
    gts = views.composite(bg)
    bar = progress.Progress(n, f"evaluating {split} at {views.cameras.width}x{views.cameras.height}", unit="view")
    for i in range(n):
        t_view = time.time()
        pred = renderer.render_view(fn, params, state, views.cameras, i, chunk)
        t_view = time.time() - t_view
        m = metrics.image_metrics(pred["rgb"], gts[i])
        name = Path(views.names[i]).stem
        rows.append({"view": i, "name": views.names[i], **m, "render_seconds": t_view})
        bar.update(f"mean PSNR {np.mean([r['psnr'] for r in rows]):.2f}")
        if i < save_images:
            visualize.write_png(out / "images" / f"{name}_pred.png", pred["rgb"])
            visualize.write_png(out / "images" / f"{name}_gt.png", gts[i])
            visualize.write_png(out / "images" / f"{name}_error.png", visualize.error_map(pred["rgb"], gts[i]))
            visualize.write_png(out / "images" / f"{name}_depth.png",
                                visualize.depth_to_rgb(pred["depth"], pred["opacity"], meta.near, meta.far))
    bar.close()
    result = {
        "run": str(run_dir), "split": split, "step": run.step, "views": n,
        "resolution": [views.cameras.width, views.cameras.height], "background": bg_name,
        "psnr": float(np.mean([r["psnr"] for r in rows])), "ssim": float(np.mean([r["ssim"] for r in rows])),
        "seconds_per_view": float(np.mean([r["render_seconds"] for r in rows])), "seconds": time.time() - t0,
        "per_view": rows,
    }
    (out / "metrics.json").write_text(json.dumps(result, indent=2) + "\n")
    return result


def format_table(result: dict) -> str:
    lines = [f"{'view':<28}{'PSNR':>9}{'SSIM':>9}", "-" * 46]
    rows = result["per_view"]
    shown = rows if len(rows) <= 20 else rows[:10] + [None] + rows[-5:]
    for r in shown:
        lines.append(f"{'...':<28}" if r is None else f"{Path(r['name']).stem:<28}{r['psnr']:>9.2f}{r['ssim']:>9.4f}")
    lines.append("-" * 46)
    lines.append(f"{'mean of ' + str(result['views']) + ' views':<28}{result['psnr']:>9.2f}{result['ssim']:>9.4f}")
    return "\n".join(lines)
