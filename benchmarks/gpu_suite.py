"""The GPU figures (issue 14) in one run: lego 400x400, `hash-fast` for 120 s and `paper-grid` for 240 s.

    bash benchmarks/gpu_run.sh --out "$OUT"                       # on the GPU machine (benchmarks/README.md)
    python benchmarks/gpu_suite.py --data .gpu_carry/lego --out DIR
    python benchmarks/gpu_suite.py --dry-run --out /tmp/x          # the same code path on a CPU, tiny sizes

For each preset, in order (the JSON of a preset is written as soon as it is done):
  1. ``nerfkit fit PRESET --data D --time-budget B`` (a subprocess, as a user runs it) with PSNR probes on
     the first 25 test views every 15 s of training (not charged to the budget), rendered with a
     GPU-sized chunk (``--train.render-chunk``; training is untouched) -> PSNR against training wall-clock;
  2. in this process, on the fitted run: the time of one 400x400 and one 800x800 test view (median of 10
     after a warm-up, synchronised: the images come back to the host); the fit's own training pace from
     its log (rays/s, field samples/s, the field's FLOP/s: no extra syncs, no second compile); and
     same-shape matmuls (samples per step x width @ width x width, 100 layers with ReLU between in one
     program), in bfloat16 and float32, timed in this process;
  3. ``evaluate`` on all 200 test views (fewer only if ``--deadline`` would be passed; the JSON says how
     many) with the same chunk.
Then OUT/gpu_suite.json (every figure, the goals of issue 14, device, JAX version, commit, command) and a
table printed last. Everything it writes goes into OUT (at most 6 files; run directories go to a temp dir).
"""

from __future__ import annotations

import argparse
import dataclasses
import json
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parent))
sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
from common import ROOT, environment, write_result  # noqa: E402

GOALS = {"hash-fast": {"psnr": 35.0, "seconds": 120}, "paper-grid": {"psnr": 33.0, "seconds": 300},
         "frame_400_seconds": 0.050, "utilisation": 0.5}


@dataclasses.dataclass(frozen=True)
class Settings:
    """Sizes of one suite run; ``GPU`` is issue 14's protocol, ``DRY`` rehearses it on a CPU in minutes."""

    budgets: tuple[tuple[str, float], ...] = (("hash-fast", 120.0), ("paper-grid", 240.0))
    probe_every: float = 15.0
    probe_views: int = 25
    render_sizes: tuple[int, ...] = (400, 800)
    render_repeats: int = 10
    chunk: int = 65536
    matmul_chain: int = 100  # layers of the matmul chain (one program): ~50 GFLOP at hash-fast's shape
    eval_views: int = 200
    deadline: float = 505.0  # seconds from the suite's start by which the last evaluation must end
    downscale: int = 1
    fit_flags: tuple[str, ...] = ()  # more `nerfkit fit` flags (the dry run's smaller batches)
    # Per-preset flags: hash-fast's small CPU steps (256 rays) would leave a GPU idle between dispatches, so
    # the GPU run gives it the 4096-ray steps it had before it was tuned for the CPU.
    preset_flags: tuple[tuple[str, tuple[str, ...]], ...] = (
        ("hash-fast", ("--train.batch-rays", "4096", "--train.sample-budget", "65536",
                       "--model.grid-update-every", "16")),)


GPU = Settings()
DRY = Settings(budgets=(("hash-fast", 40.0), ("paper-grid", 40.0)), probe_every=5.0, probe_views=2,
               render_sizes=(16, 32), render_repeats=2, chunk=1024, matmul_chain=2,
               eval_views=3, deadline=600.0, downscale=8,
               fit_flags=("--train.batch-rays", "256", "--train.sample-budget", "4096", "--model.march-steps", "32",
                          "--train.log-every", "1"))


def median_seconds(fn, repeats: int) -> float:
    """Median wall-clock of ``repeats`` calls of ``fn`` (which must wait for its device work)."""
    times = []
    for _ in range(repeats):
        t0 = time.perf_counter()
        fn()
        times.append(time.perf_counter() - t0)
    return float(np.median(times))


def run_fit(preset: str, budget: float, data: Path, out: Path, s: Settings) -> dict:
    """``nerfkit fit`` with time-to-quality probes; returns its wall-clock, summary and probe curve."""
    cmd = [sys.executable, "-m", "cli.main", "fit", preset, "--data", str(data), "--downscale", str(s.downscale), "--time-budget",
           str(budget), "--out", str(out), "--train.val-every-seconds", str(s.probe_every), "--train.val-views",
           str(s.probe_views), "--train.val-split", "test", "--train.render-chunk", str(s.chunk),
           *dict(s.preset_flags).get(preset, ()), *s.fit_flags]
    print("$ nerfkit " + " ".join(cmd[3:]), flush=True)
    t0 = time.time()
    subprocess.run(cmd, check=True)
    seconds = time.time() - t0
    lines = [json.loads(x) for x in (out / "metrics.jsonl").read_text().splitlines()]
    probes = [x for x in lines if "val_psnr" in x and x.get("val_views") == min(s.probe_views, 200)]
    summary = json.loads((out / "summary.json").read_text())
    return {"command": " ".join(cmd), "seconds": seconds, "budget": budget, "summary": summary,
            "time_to_quality": {"views": s.probe_views, "train_time": [x["train_time"] for x in probes],
                                "step": [x["step"] for x in probes], "psnr": [x["val_psnr"] for x in probes]}}


def render_times(run, sizes, repeats: int, chunk: int) -> dict:
    """Seconds to render test view 0 at each size (square; median of ``repeats`` after a warm-up)."""
    from nerfkit import renderer
    from nerfkit.types import Cameras, background_rgb

    fn = renderer.make_render_fn(run.graphdef, run.sampler, background_rgb("white"))
    test = run.meta.cameras["test"]
    out = {}
    for size in sizes:
        c = test.scaled(size / test.width)
        cams = Cameras(c2w=c.c2w[:1], fx=c.fx[:1], fy=c.fy[:1], cx=c.cx[:1], cy=c.cy[:1], width=size, height=size)
        renderer.render_view(fn, run.params, run.sampler_state, cams, 0, chunk)  # compile, warm up
        out[f"{size}x{size}"] = median_seconds(
            lambda: renderer.render_view(fn, run.params, run.sampler_state, cams, 0, chunk), repeats)
    return out


def fit_throughput(run_dir: Path) -> dict:
    """Training pace of the fit itself, from its log (steps queued as in any fit, no extra syncs): steps per
    second of training wall-clock between its second and last logged step (the first one compiles; probes
    and checkpoints are not in ``train_time``), with the median rays and field samples per step."""
    lines = [json.loads(x) for x in (run_dir / "metrics.jsonl").read_text().splitlines()]
    train = [x for x in lines if "loss" in x]
    if len(train) < 3:
        return {"steps_per_s": None, "rays_per_step": None, "samples_per_step": None}
    a, b = train[1], train[-1]
    return {"steps_per_s": (b["step"] - a["step"]) / max(b["train_time"] - a["train_time"], 1e-9),
            "rays_per_step": float(np.median([x["rays"] for x in train[1:]])),
            "samples_per_step": float(np.median([x["samples"] for x in train[1:]]))}


def matmul_flops_per_s(rows: int, width: int, dtype: str, chain: int) -> float:
    """FLOP/s of a chain of ``chain`` layers ``x = relu(x @ b_i)``, x [rows, width], b_i [width, width], in
    ``dtype``, unrolled in one jitted program (as an MLP's layers run inside a train step: queued back to
    back, no host sync; distinct b_i, so no two products can be merged)."""
    import jax
    import jax.numpy as jnp

    dt = jnp.dtype(dtype)
    a = jax.random.normal(jax.random.key(0), (rows, width), dt)
    bs = (jax.random.normal(jax.random.key(1), (chain, width, width), jnp.float32) * np.sqrt(2.0 / width)).astype(dt)

    def layers(x, bs):
        for i in range(chain):
            x = jax.nn.relu(x @ bs[i])
        return x

    prog = jax.jit(layers)
    jax.block_until_ready(prog(a, bs))
    seconds = median_seconds(lambda: jax.block_until_ready(prog(a, bs)), 10)
    return 2.0 * rows * width * width * chain / seconds


def measure(run_dir: Path, s: Settings) -> dict:
    """Render times and training pace of a fitted run; the field's FLOP/s against same-shape matmuls."""
    import jax

    from nerfkit.fields import field_flops
    from nerfkit.runs import load_run

    run = load_run(run_dir)
    run = dataclasses.replace(run, params=jax.device_put(run.params), sampler_state=jax.device_put(run.sampler_state))
    res = {"render_seconds": render_times(run, s.render_sizes, s.render_repeats, s.chunk), "chunk": s.chunk}
    res.update(fit_throughput(run_dir))
    field_cfg, pace = run.cfg.model.coarse, res["steps_per_s"]
    res["rays_per_s"] = res["rays_per_step"] * pace if pace else None
    res["samples_per_s"] = res["samples_per_step"] * pace if pace else None
    res["field_flops_per_s"] = 3.0 * field_flops(field_cfg) * res["samples_per_s"] if pace else None  # fwd + bwd
    rows = max(int(res["samples_per_step"] or run.cfg.train.sample_budget), 1)
    res["matmul_shape"] = [rows, field_cfg.width, field_cfg.width]
    res["matmul_default_precision"] = str(jax.config.jax_default_matmul_precision)
    for dtype in ("bfloat16", "float32"):
        flops = matmul_flops_per_s(rows, field_cfg.width, dtype, s.matmul_chain)
        res[f"matmul_{dtype}_flops_per_s"] = flops
        res[f"utilisation_vs_{dtype}"] = res["field_flops_per_s"] / flops if pace else None
    return res


def evaluate_run(run_dir: Path, views: int, chunk: int) -> dict:
    from nerfkit.evaluation import evaluate

    if views <= 0:
        return {"views": 0, "skipped": "no time left before the deadline"}
    res = evaluate(run_dir, max_views=views, chunk=chunk, save_images=0)
    return {k: res[k] for k in ("psnr", "ssim", "views", "resolution", "seconds_per_view", "seconds")}


def eval_views(s: Settings, start: float, per_view: float, reserve: float) -> int:
    """Test views to evaluate: all ``s.eval_views``, unless that would pass the deadline (after ``reserve``
    seconds kept for what follows)."""
    left = s.deadline - (time.time() - start) - reserve - 5.0
    return int(max(0, min(s.eval_views, left // max(per_view, 1e-3))))


def one_preset(preset: str, budget: float, data: Path, tmp: Path, s: Settings, start: float, reserve: float) -> dict:
    run_dir = tmp / preset
    res = {"preset": preset, "fit": run_fit(preset, budget, data, run_dir, s)}
    print(f"measuring {preset} ...", flush=True)
    res["measure"] = measure(run_dir, s)
    per_view = 1.5 * list(res["measure"]["render_seconds"].values())[0] + 0.05  # render + metrics
    views = eval_views(s, start, per_view, reserve)
    print(f"evaluating {preset} on {views} test views ...", flush=True)
    res["evaluate"] = evaluate_run(run_dir, views, s.chunk)
    return res


def goals(results: dict) -> dict:
    """Issue 14's goals, met or not, from the measured figures."""
    out = {}
    for preset, r in results.items():
        g = GOALS.get(preset)
        if g and r["evaluate"].get("psnr") is not None:
            out[f"{preset} >= {g['psnr']} dB within {g['seconds']} s"] = bool(
                r["evaluate"]["psnr"] >= g["psnr"] and r["fit"]["budget"] <= g["seconds"])
        m = r["measure"]
        frame = m["render_seconds"].get("400x400")
        if frame is not None:
            out[f"{preset} 400x400 frame <= {GOALS['frame_400_seconds'] * 1e3:.0f} ms"] = frame <= GOALS["frame_400_seconds"]
        if m.get("utilisation_vs_float32") is not None:
            out[f"{preset} field FLOP/s >= 50% of the f32 matmul"] = m["utilisation_vs_float32"] >= GOALS["utilisation"]
    return out


def table(results: dict) -> str:
    sizes = sorted(next(iter(results.values()))["measure"]["render_seconds"], key=lambda k: int(k.split("x")[0]))
    px = [f"{k.split('x')[0]}px ms" for k in sizes] + ["-", "-"]
    head = (f"{'preset':11s} {'steps':>6s} {'fit s':>6s} {'PSNR':>6s} {'views':>5s} {px[0]:>8s} "
            f"{px[1]:>8s} {'rays/s':>9s} {'TFLOP/s':>8s} {'%bf16':>6s} {'%f32':>6s}")
    rows = [head]
    for preset, r in results.items():
        m, e, f = r["measure"], r["evaluate"], r["fit"]
        ms = [m["render_seconds"].get(k) for k in sorted(m["render_seconds"], key=lambda k: int(k.split("x")[0]))]
        ms = (ms + [None, None])[:2]
        psnr = f"{e['psnr']:.2f}" if e.get("psnr") is not None else "-"
        rates = [(m.get("rays_per_s"), 1.0, 9, 0), (m.get("field_flops_per_s"), 1e-12, 8, 3),
                 (m.get("utilisation_vs_bfloat16"), 100.0, 6, 1), (m.get("utilisation_vs_float32"), 100.0, 6, 1)]
        rows.append(f"{preset:11s} {f['summary']['steps']:6d} {f['seconds']:6.0f} {psnr:>6s} {e['views']:5d} "
                    + " ".join(f"{1e3 * t:8.1f}" if t is not None else f"{'-':>8s}" for t in ms) + " "
                    + " ".join(f"{v * k:{w}.{d}f}" if v is not None else "-".rjust(w) for v, k, w, d in rates))
    return "\n".join(rows)


def plot(result: dict, out: Path) -> None:
    from nerfkit import visualize

    ttq = result["fit"]["time_to_quality"]
    if len(ttq["psnr"]) > 1:
        visualize.plot_curves(out / f"gpu_{result['preset']}_time_to_quality.png", ttq["train_time"],
                              {result["preset"]: ttq["psnr"]}, xlabel="training wall-clock (s)",
                              ylabel=f"PSNR on {ttq['views']} test views (dB)", title="lego: time to quality")


def demo_data(tmp: Path) -> Path:
    """The built-in scene in Blender layout (the dry run's data when no lego is given)."""
    from nerfkit.data.demo import make_demo_scene, write_blender

    root = tmp / "demo"
    write_blender(make_demo_scene(width=64, height=64, n_train=12, n_val=2, n_test=4), root)
    return root


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--data", type=Path, default=None, help="lego (default .gpu_carry/lego; the demo scene with --dry-run)")
    ap.add_argument("--out", type=Path, required=True, help="folder for every result file")
    ap.add_argument("--dry-run", action="store_true", help="the CPU rehearsal: tiny budgets and sizes")
    ap.add_argument("--presets", nargs="+", default=None, help="a subset of the presets, in this order")
    args = ap.parse_args(argv)
    start = time.time()
    s = DRY if args.dry_run else GPU
    env = environment()
    budgets = [(p, b) for p, b in s.budgets if args.presets is None or p in args.presets]
    args.out.mkdir(parents=True, exist_ok=True)
    results = {}
    with tempfile.TemporaryDirectory(prefix="nerfkit-gpu-suite-") as tmp:
        tmp = Path(tmp)
        data = args.data or (demo_data(tmp) if args.dry_run else ROOT / ".gpu_carry" / "lego")
        if args.dry_run and args.data is None:
            s = dataclasses.replace(s, downscale=1)
        for i, (preset, budget) in enumerate(budgets):
            reserve = sum(1.3 * b + 60.0 for _, b in budgets[i + 1:])
            results[preset] = one_preset(preset, budget, data, tmp, s, start, reserve)
            write_result(f"gpu_{preset}", results[preset], out_dir=args.out, env=env)
            plot(results[preset], args.out)
    summary = {"settings": dataclasses.asdict(s), "data": str(data), "seconds": time.time() - start,
               "goals": goals(results), "table": table(results).splitlines(),
               "results": {p: {"fit_seconds": r["fit"]["seconds"], "steps": r["fit"]["summary"]["steps"],
                               **r["evaluate"], **r["measure"]} for p, r in results.items()}}
    write_result("gpu_suite", summary, out_dir=args.out, env=env)
    print(f"\nsuite: {summary['seconds']:.0f} s on {env['device']['kind']} (jax {env['jax']}, commit {env['commit']})")
    for goal, met in summary["goals"].items():
        print(f"  {'met' if met else 'MISSED'}: {goal}")
    print(table(results))
    return 0


if __name__ == "__main__":
    sys.exit(main())
