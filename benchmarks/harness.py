"""The whole benchmark harness in one command (issue 3): throughput, time to quality, grid speed-up.

    python benchmarks/harness.py                       # CPU: lego at 100x100, 600 s fit
    python benchmarks/harness.py --gpu                 # GPU: lego at 400x400, 300 s fit, 10 render repeats

Runs, as subprocesses, each writing its own JSON into benchmarks/results/ (machine, device, JAX version,
commit, exact command):
  1. throughput.py   training rays/s and samples/s at the paper config and the fast presets, field FLOP/s
                     against a matmul of the same shape, render time of one 100/400/800 px test view;
  2. torch_baseline.py  the paper's step in PyTorch on the same machine (skipped when torch is absent);
  3. lego_cpu.py --curve-every   a time-budgeted fit of the best PE-MLP preset with PSNR on 25 test views
                     against wall-clock (JSON + PNG), then all 200 test views;
  4. grid_speedup.py the fitted model rendered with and without its occupancy grid.
Then draws benchmarks/results/throughput_<device>.png (rays/s per preset, with the PyTorch reference).
``--only`` runs a subset, e.g. ``--only throughput grid``.
"""

from __future__ import annotations

import argparse
import json
import subprocess
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
from common import ROOT  # noqa: E402

HERE = Path(__file__).resolve().parent
STAGES = ("throughput", "torch", "curve", "grid")


def run(cmd: list[str]) -> None:
    print("$ " + " ".join(cmd), flush=True)
    subprocess.run(cmd, check=True)


def plot_throughput(tag: str) -> Path | None:
    figs = {}
    for name in (f"throughput_{tag}_paper", f"throughput_{tag}"):
        res = HERE / "results" / f"{name}.json"
        if res.exists():
            figs.update(json.loads(res.read_text())["figures"])
    if not figs:
        return None
    names = list(figs)
    values = [figs[n]["rays_per_s"] for n in names]
    torch_res = HERE / "results" / "torch_baseline_cpu.json"
    if tag == "cpu" and torch_res.exists():
        names.append("PyTorch paper\n(same machine)")
        values.append(json.loads(torch_res.read_text())["figures"]["rays_per_s"])
    from matplotlib.backends.backend_agg import FigureCanvasAgg
    from matplotlib.figure import Figure

    fig = Figure(figsize=(7.0, 4.0), dpi=100)
    FigureCanvasAgg(fig)
    ax = fig.add_subplot(1, 1, 1)
    bars = ax.bar(range(len(names)), values, color=["C0"] * len(figs) + ["C7"] * (len(names) - len(figs)))
    ax.bar_label(bars, fmt="%.0f")
    ax.set_xticks(range(len(names)), names)
    ax.set_yscale("log")
    ax.set_ylabel("training rays / s (log)")
    ax.set_title(f"training throughput ({tag})")
    fig.tight_layout()
    out = HERE / "results" / f"throughput_{tag}.png"
    fig.savefig(out)
    return out


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--gpu", action="store_true", help="the lego-gpu protocol: 400x400, 300 s, 10 render repeats")
    ap.add_argument("--only", nargs="+", choices=STAGES, default=list(STAGES))
    ap.add_argument("--curve-preset", default=None, help="preset of the time-to-quality fit")
    ap.add_argument("--budget", type=float, default=None, help="seconds of the time-to-quality fit")
    args = ap.parse_args()
    py = sys.executable
    downscale = "1" if args.gpu else "4"
    preset = args.curve_preset or ("paper-grid" if args.gpu else "cpu-fast")
    budget = args.budget or (300.0 if args.gpu else 600.0)
    run_dir = ROOT / "runs" / f"bench-curve-{preset}"
    if "throughput" in args.only:
        repeats = "10" if args.gpu else "3"
        tag = "gpu" if args.gpu else "cpu"
        # The paper's MLP renders slowly on a CPU: time its 100x100 view only (the GPU gets every size).
        run([py, str(HERE / "throughput.py"), "--downscale", downscale, "--presets", "paper", "paper-grid",
             "--render-sizes", *(["100", "400", "800"] if args.gpu else ["100"]), "--grid-warmup", "100",
             "--render-repeats", repeats, "--max-render-hierarchical", "800" if args.gpu else "100",
             "--name", f"throughput_{tag}_paper"])
        run([py, str(HERE / "throughput.py"), "--downscale", downscale, "--presets", "cpu-fast", "hash-fast",
             "--render-sizes", "100", "400", "800", "--render-repeats", repeats, "--name", f"throughput_{tag}"])
    if "torch" in args.only and not args.gpu:
        run([py, str(HERE / "torch_baseline.py"), "--downscale", downscale])
    if "curve" in args.only:
        run([py, str(HERE / "lego_cpu.py"), "--preset", preset, "--downscale", downscale, "--budget", str(budget),
             "--curve-every", "30" if args.gpu else "60", "--out", str(run_dir),
             "--name", f"time_to_quality_{'gpu' if args.gpu else 'cpu'}_{preset}"])
    if "grid" in args.only:
        run([py, str(HERE / "grid_speedup.py"), str(run_dir), "--views", "5", "--repeats", "10" if args.gpu else "3"])
    import jax

    png = plot_throughput("gpu" if jax.devices()[0].platform == "gpu" else "cpu")
    if png:
        print(f"-> {png}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
