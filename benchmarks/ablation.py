"""Field ablation on lego 100x100: every field variant fitted under the same wall-clock budget, then scored.

    python benchmarks/ablation.py                                   # all variants, 600 s each (~50 min on a 2-core CPU)
    python benchmarks/ablation.py --variants pe fourier --time-budget 300
    python benchmarks/ablation.py --variants siren --time-budget 40 --max-views 5 --runs /tmp/abl --results /tmp/abl

For each variant runs, as subprocesses (exactly what a user types),

    nerfkit fit PRESET --data LEGO --downscale 4 --time-budget BUDGET --out RUNS/ablation-VARIANT [FLAGS]
    nerfkit evaluate RUNS/ablation-VARIANT              # all 200 test views unless --max-views

then writes RESULTS/ablation_<device>.json (figures per variant, the machine, commit, commands, date),
RESULTS/ablation_<device>.md (a Markdown table: encoding, field, PSNR, SSIM, steps, seconds) and
RESULTS/ablation_<device>.png (a bar chart). <device> is JAX's platform (cpu, gpu, tpu) unless --tag is given.
The results are rewritten after every variant, so an interrupted ablation keeps what it finished.
Skips with a message when the lego data is absent.

Variants (the field flags go on top of the preset; `--fit-flags` adds more to every variant):

    pe       cpu-fast: 4x128 ReLU MLP on NeRF's positional encoding (10 octaves)
    fourier  cpu-fast with Gaussian random Fourier features (m = 128, sigma = 4 cycles per scene box)
    siren    cpu-fast with SIREN (sine activations, w0 = 30) on raw xyz, learning rate 3e-4 -> 3e-5

The Fourier scale and SIREN's learning rate come from short step-matched fits on lego 100x100 (cpu-fast's
sampler and batch, training PSNR): with sigma = 8 or 16 cycles per box the field stayed at ~11 dB for the first
100-150 steps (in 3D |B| ~ sigma * chi_3, so almost no low frequencies), while sigma = 2-5 learned as fast as
PE or faster (after 300 steps at lr 3e-3: PE 19.3 dB, sigma 3: 20.5, 4: 20.7, 5: 19.8). SIREN after 600 steps
with the learning rate decaying 10x: 3e-4 -> 22.5 dB, 1e-4 -> 22.0 dB; at a constant 1e-3 it was unstable
(16.5 dB after 300 steps).
    hash     hash-fast: multiresolution hash grid + 64-wide ReLU MLP
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import subprocess
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
from common import LEGO, ROOT, environment, write_result  # noqa: E402

# name -> (preset, flags on top of it). Every field flag is a FieldConfig field of the coarse network (the
# occupancy sampler of both presets uses only that one).
VARIANTS: dict[str, tuple[str, list[str]]] = {
    "pe": ("cpu-fast", []),
    "fourier": ("cpu-fast", ["--model.coarse.encoding", "fourier", "--model.coarse.fourier-features", "128",
                             "--model.coarse.fourier-scale", "4.0"]),
    "siren": ("cpu-fast", ["--model.coarse.activation", "sine", "--model.coarse.pos-freqs", "0",
                           "--model.coarse.siren-w0", "30.0", "--train.lr-init", "3e-4", "--train.lr-final", "3e-5"]),
    "hash": ("hash-fast", []),
    "ipe": ("mipnerf", []),  # mip-NeRF's integrated encoding (hierarchical sampler, coarse + fine)
}


def nerfkit_command() -> list[str]:
    """The ``nerfkit`` console script of the running interpreter's environment (else the one on PATH)."""
    exe = Path(sys.executable).parent / "nerfkit"
    return [str(exe)] if exe.exists() else ["nerfkit"]


def describe_field(cfg: dict) -> tuple[str, str]:
    """(encoding, field) labels for the table, read from a run's resolved config.json."""
    f = cfg["model"]["coarse"]
    if f["encoding"] == "hash":
        enc = f"hash grid ({f['hash_levels']} levels x {f['hash_features']}, 2^{f['hash_log2_size']}, " \
              f"res {f['hash_min_res']}-{f['hash_max_res']})"
    elif f["encoding"] == "fourier":
        enc = f"Fourier features (m={f['fourier_features']}, sigma={f['fourier_scale']:g}/box)"
    elif cfg["model"].get("mip"):
        enc = f"integrated positional ({f['pos_freqs']} octaves, mip-NeRF)"
    elif f["pos_freqs"] == 0:
        enc = "raw xyz"
    else:
        enc = f"positional ({f['pos_freqs']} octaves)"
    act = "SIREN" if f["activation"] == "sine" else f["activation"]
    field = f"{f['depth']}x{f['width']} {act}"
    if f["activation"] == "sine":
        field += f" (w0={f['siren_w0']:g})"
    return enc, field


def markdown_table(rows: list[dict], budget: float, failed: dict | None = None) -> str:
    lines = [f"Lego {rows[0]['resolution'][0]}x{rows[0]['resolution'][1]}, {budget:g} s per fit, "
             f"{rows[0]['test_views']} test views." if rows else "",
             "",
             "| variant | encoding | field | PSNR (dB) | SSIM | steps | seconds |",
             "|---|---|---|---|---|---|---|"]
    for r in rows:
        lines.append(f"| {r['variant']} | {r['encoding']} | {r['field']} | {r['psnr']:.2f} | {r['ssim']:.3f} | "
                     f"{r['steps']} | {r['fit_seconds']:.0f} |")
    for name, why in (failed or {}).items():
        lines.append(f"| {name} | failed: {why} | | | | | |")
    return "\n".join(lines) + "\n"


def bar_chart(rows: list[dict], path: Path, title: str) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    names = [r["variant"] for r in rows]
    fig, (ax1, ax2) = plt.subplots(1, 2, figsize=(2.2 * len(rows) + 4, 3.6))
    bars = ax1.bar(names, [r["psnr"] for r in rows], color="tab:blue")
    ax1.set_ylabel("PSNR (dB)")
    ax1.set_ylim(min(r["psnr"] for r in rows) - 3, max(r["psnr"] for r in rows) + 1.5)
    for b, r in zip(bars, rows):
        ax1.annotate(f"{r['psnr']:.2f}\n{r['steps']} steps", (b.get_x() + b.get_width() / 2, b.get_height()),
                     ha="center", va="bottom", fontsize=8)
    bars = ax2.bar(names, [r["ssim"] for r in rows], color="tab:orange")
    ax2.set_ylabel("SSIM")
    ax2.set_ylim(max(0.0, min(r["ssim"] for r in rows) - 0.1), 1.0)
    for b, r in zip(bars, rows):
        ax2.annotate(f"{r['ssim']:.3f}", (b.get_x() + b.get_width() / 2, b.get_height()), ha="center",
                     va="bottom", fontsize=8)
    fig.suptitle(title, fontsize=10)
    fig.tight_layout()
    fig.savefig(path, dpi=120)
    plt.close(fig)


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--variants", nargs="+", choices=list(VARIANTS), default=list(VARIANTS),
                    help="which field variants to fit, in this order (default: all)")
    ap.add_argument("--time-budget", type=float, default=600.0, help="seconds of wall-clock per fit (default 600)")
    ap.add_argument("--data", type=Path, default=LEGO)
    ap.add_argument("--downscale", type=int, default=4)
    ap.add_argument("--max-views", type=int, default=None, help="evaluate only the first N test views (default: all)")
    ap.add_argument("--runs", type=Path, default=ROOT / "runs",
                    help="where the run directories go (RUNS/ablation-VARIANT; default runs/)")
    ap.add_argument("--results", "--out", type=Path, default=ROOT / "benchmarks" / "results",
                    help="where ablation_<device>.{json,md,png} go (default benchmarks/results/)")
    ap.add_argument("--tag", default=None, help="file name suffix instead of the JAX platform (e.g. h100)")
    ap.add_argument("--fit-flags", nargs=argparse.REMAINDER, default=[],
                    help="further flags for every `nerfkit fit` (last on the command line)")
    args = ap.parse_args()
    if not (args.data / "transforms_train.json").exists():
        print(f"skipped: no lego data at {args.data}")
        return 0
    child_env = dict(os.environ)  # the fits get the environment as it was
    os.environ.setdefault("XLA_PYTHON_CLIENT_PREALLOCATE", "false")  # this process only asks which device it is
    env = environment()  # before the runs: the commit that ran
    tag = args.tag or env["device"]["platform"]
    nerfkit = nerfkit_command()
    rows, commands, failed = [], {}, {}
    for name in args.variants:
        preset, flags = VARIANTS[name]
        out = args.runs / f"ablation-{name}"
        if out.exists():
            shutil.rmtree(out)
        fit_cmd = [*nerfkit, "fit", preset, "--data", str(args.data), "--downscale", str(args.downscale),
                   "--time-budget", str(args.time_budget), "--out", str(out), *flags, *args.fit_flags]
        eval_cmd = [*nerfkit, "evaluate", str(out)] + (["--max-views", str(args.max_views)] if args.max_views else [])
        print(f"== {name}: {' '.join(fit_cmd)}", flush=True)
        commands[name] = {"fit_command": " ".join(fit_cmd), "eval_command": " ".join(eval_cmd)}
        t0 = time.time()
        try:
            subprocess.run(fit_cmd, check=True, env=child_env)
            fit_seconds = time.time() - t0
            subprocess.run(eval_cmd, check=True, env=child_env)
        except subprocess.CalledProcessError as e:  # one broken variant does not cost the others
            failed[name] = f"nerfkit {e.cmd[len(nerfkit)]} exited with {e.returncode}"
            print(f"== {name}: FAILED ({failed[name]}); going on", flush=True)
            if rows:
                write_result(f"ablation_{tag}", {"time_budget": args.time_budget, "variants": rows,
                                                 "failed": failed}, out_dir=args.results,
                             extra={"commands": commands}, env=env)
            continue
        summary = json.loads((out / "summary.json").read_text())
        metrics = json.loads((out / "eval_test" / "metrics.json").read_text())
        encoding, field = describe_field(json.loads((out / "config.json").read_text()))
        rows.append({
            "variant": name, "preset": preset, "flags": flags + args.fit_flags, "encoding": encoding, "field": field,
            "psnr": metrics["psnr"], "ssim": metrics["ssim"], "test_views": metrics["views"],
            "resolution": metrics["resolution"], "steps": summary["steps"], "fit_seconds": fit_seconds,
            "rays_per_s": summary["rays_per_s"], "steps_per_s": summary["steps_per_s"],
            "eval_seconds_per_view": metrics["seconds"] / max(metrics["views"], 1),
        })
        # Rewritten after every variant: an interrupted ablation keeps what it finished.
        figures = {"time_budget": args.time_budget, "variants": rows, "failed": failed}
        path = write_result(f"ablation_{tag}", figures, out_dir=args.results, extra={"commands": commands}, env=env)
        table = markdown_table(rows, args.time_budget, failed)
        (args.results / f"ablation_{tag}.md").write_text(table)
        bar_chart(rows, args.results / f"ablation_{tag}.png",
                  f"lego {rows[0]['resolution'][0]}x{rows[0]['resolution'][1]}, {args.time_budget:g} s per fit "
                  f"({env['device']['kind']})")
    if rows:
        print(table)
        print(f"-> {path}, {path.with_suffix('.md')}, {path.with_suffix('.png')}")
    if failed:
        print(f"failed: {failed}")
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
