"""360-degree scene with a distant background: fit with scene contraction, and without it as the control.

    python benchmarks/unbounded.py                      # 240 s per fit, 32x32 images
    python benchmarks/unbounded.py --budget 120 --size 32 --variants contraction

Writes the procedural scene of :mod:`nerfkit.data.unbounded` (48 train views all around, 8 test views) in the
Blender layout under ``--work`` (default /tmp), fits each variant for ``--budget`` seconds of wall-clock
(the whole fit, as ``nerfkit fit --time-budget``), evaluates every test view and writes
benchmarks/results/unbounded_<device>.json. Variants:
  contraction: PE-MLP (3x128, 8 octaves) in mip-NeRF 360's contracted space, 32 coarse samples spaced
               evenly in inverse depth from 0.5 to 1000, 32 fine;
  plain:       the same network and samples on raw coordinates and evenly spaced depths.
"""

from __future__ import annotations

import argparse
import shutil
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
from common import environment, write_result  # noqa: E402


def config(variant: str, data: Path, out: Path, budget: float):
    from nerfkit.config import DataConfig, FieldConfig, FitConfig, ModelConfig, TrainConfig

    field = FieldConfig(depth=3, width=128, skips=(), view_width=64, pos_freqs=8, density_activation="softplus",
                        density_bias=-1.0)
    contraction = variant == "contraction"
    model = ModelConfig(coarse=field, fine=field, num_coarse=32, num_fine=32, sampler="hierarchical",
                        contraction=contraction, lindisp=contraction, contraction_radius=1.6)
    train = TrainConfig(steps=100_000, time_budget=budget, batch_rays=512, lr_init=5e-3, lr_final=3e-4,
                        lr_warmup_steps=20, log_every=50, val_every=0, val_views=1, checkpoint_every=100_000)
    return FitConfig(out=out, data=DataConfig(data=data), model=model, train=train, preset=f"unbounded-{variant}")


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--budget", type=float, default=240.0)
    ap.add_argument("--size", type=int, default=32)
    ap.add_argument("--variants", nargs="+", default=["contraction", "plain"], choices=["contraction", "plain"])
    ap.add_argument("--work", type=Path, default=Path("/tmp/nerfkit-unbounded"))
    ap.add_argument("--name", default=None)
    args = ap.parse_args()
    env = environment()
    import jax

    from nerfkit import evaluation
    from nerfkit.config import to_dict
    from nerfkit.data.demo import write_blender
    from nerfkit.data.unbounded import make_unbounded_scene
    from nerfkit.fit import fit

    data = args.work / f"scene{args.size}"
    if not data.exists():
        write_blender(make_unbounded_scene(args.size, args.size, 48, 8), data)
    figures = {}
    for variant in args.variants:
        out = args.work / f"run-{variant}"
        shutil.rmtree(out, ignore_errors=True)
        cfg = config(variant, data, out, args.budget)
        t0 = time.time()
        summary = fit(cfg, start_time=t0)
        res = evaluation.evaluate(out, save_images=2)
        figures[variant] = {"psnr": res["psnr"], "ssim": res["ssim"], "test_views": res["views"],
                            "steps": summary["steps"], "fit_seconds": summary["seconds"], "config": to_dict(cfg)}
        print(f"{variant}: {res['psnr']:.2f} dB PSNR, {res['ssim']:.3f} SSIM, {summary['steps']} steps", flush=True)
    name = args.name or f"unbounded_{jax.devices()[0].platform}"
    print(f"-> {write_result(name, figures, extra={'size': args.size, 'budget': args.budget}, env=env)}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
