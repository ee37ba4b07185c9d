"""Anti-aliasing: the same network with the positional encoding (PE) and with mip-NeRF's integrated
positional encoding (IPE), fitted at full resolution and rendered at 1/2 and 1/4 scale.

    python benchmarks/multiscale.py                          # lego at 100x100 if present, else the demo scene
    python benchmarks/multiscale.py --budget 300 --views 25

Both variants: hierarchical sampling (32 coarse + 32 fine), 4x128 MLPs with 10 / 4 octaves, 1024 rays per
step, ``--budget`` seconds of wall-clock each, trained on the same ``--levels``-level pyramid of the
full-resolution training images (``--train.multiscale``; mip-NeRF's multi-scale protocol, every level drawn
equally often; ``--levels 1``: full resolution only). Only ``--model.mip`` differs. (With ``--levels 1`` on
lego, 240 s each, IPE lost at 1/2 and 1/4 scale: its wider test cones were never seen in training.) Each fitted model renders the
first ``--views`` test views at full, 1/2 and 1/4 resolution (intrinsics scaled; for IPE the pixel cones
widen accordingly) and is scored against the full-resolution ground truth area-downsampled to that size
(8-bit PSNR, as everywhere). Writes benchmarks/results/multiscale_<device>.json.
"""

from __future__ import annotations

import argparse
import shutil
import sys
import time
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parent))
sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
from common import LEGO, environment, write_result  # noqa: E402

SCALES = (1, 2, 4)


def config(data, downscale: int, mip: bool, out: Path, budget: float, levels: int = 3):
    from nerfkit.config import DataConfig, FieldConfig, FitConfig, ModelConfig, TrainConfig

    field = FieldConfig(depth=4, width=128, skips=(), view_width=64, density_activation="softplus", density_bias=-1.0)
    model = ModelConfig(coarse=field, fine=field, num_coarse=32, num_fine=32, sampler="hierarchical", mip=mip,
                        clip_to_aabb=True)
    train = TrainConfig(steps=100_000, time_budget=budget, batch_rays=1024, lr_init=3e-3, lr_final=3e-4,
                        lr_warmup_steps=100, log_every=50, val_every=0, val_views=1, checkpoint_every=100_000,
                        multiscale=levels)
    return FitConfig(out=out, data=DataConfig(data=data, downscale=downscale), model=model, train=train,
                     preset="multiscale-" + ("ipe" if mip else "pe"))


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--budget", type=float, default=300.0)
    ap.add_argument("--views", type=int, default=25)
    ap.add_argument("--downscale", type=int, default=4)
    ap.add_argument("--levels", type=int, default=3, help="training pyramid levels (--train.multiscale)")
    ap.add_argument("--work", type=Path, default=Path("/tmp/nerfkit-multiscale"))
    ap.add_argument("--name", default=None)
    args = ap.parse_args()
    env = environment()
    import jax

    from nerfkit import metrics, renderer, runs
    from nerfkit.config import to_dict
    from nerfkit.data.images import area_downscale
    from nerfkit.fit import fit
    from nerfkit.types import background_rgb

    data = LEGO if (LEGO / "transforms_train.json").exists() else None
    figures = {}
    for variant, use_mip in (("pe", False), ("ipe", True)):
        out = args.work / f"run-{variant}"
        shutil.rmtree(out, ignore_errors=True)
        cfg = config(data, args.downscale if data else 1, use_mip, out, args.budget, args.levels)
        summary = fit(cfg, start_time=time.time())
        run = runs.load_run(out)
        rcfg = run.cfg
        bg = background_rgb(rcfg.data.background)
        fn = renderer.make_render_fn(run.graphdef, run.sampler, bg)
        test = runs.load_scene(rcfg.data, splits=("train", "test")).splits["test"]
        gts = test.composite(bg)
        n = min(args.views, len(test))
        row = {"steps": summary["steps"], "config": to_dict(cfg)}
        for s in SCALES:
            cams = test.cameras.scaled(1.0 / s)
            psnrs = []
            for i in range(n):
                pred = renderer.render_view(fn, run.params, run.sampler_state, cams, i, rcfg.train.render_chunk)["rgb"]
                gt = area_downscale(gts[i], s) if s > 1 else gts[i]
                psnrs.append(metrics.image_metrics(pred, gt)["psnr"])
            row[f"psnr_1/{s}"] = float(np.mean(psnrs))
            print(f"{variant} at 1/{s} ({cams.width}x{cams.height}): {row[f'psnr_1/{s}']:.2f} dB", flush=True)
        figures[variant] = row
    figures["ipe_minus_pe"] = {f"1/{s}": figures["ipe"][f"psnr_1/{s}"] - figures["pe"][f"psnr_1/{s}"] for s in SCALES}
    print(figures["ipe_minus_pe"])
    name = args.name or f"multiscale_{jax.devices()[0].platform}"
    extra = {"scene": str(data or "demo"), "budget": args.budget, "views": n}
    print(f"-> {write_result(name, figures, extra=extra, env=env)}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
