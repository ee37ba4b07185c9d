"""benchmarks/gpu_run.sh and gpu_suite.py (issue 14): the one GPU run is rehearsed here, so it cannot fail on a typo.

The fast tests check that the scripts parse, that the protocol's numbers are issue 14's, and run the suite's
pieces (matmul timing, the evaluation deadline, goals and table) at the smallest sizes. The slow test runs the
whole CPU rehearsal, ``bash benchmarks/gpu_run.sh --dry-run`` (a few minutes on a 2-core CPU).
"""

from __future__ import annotations

import importlib.util
import json
import os
import subprocess
import sys
import time
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[1]
BENCH = REPO / "benchmarks"


@pytest.fixture(scope="module")
def suite():
    spec = importlib.util.spec_from_file_location("gpu_suite", BENCH / "gpu_suite.py")
    module = importlib.util.module_from_spec(spec)
    sys.modules["gpu_suite"] = module  # dataclasses look their module up there
    spec.loader.exec_module(module)
    return module


def test_scripts_parse_and_the_protocol_is_issue_14s(suite):
    for script in ("gpu_run.sh", "gpu_prepare.sh"):
        subprocess.run(["bash", "-n", str(BENCH / script)], check=True)
    gpu = suite.GPU
    assert gpu.budgets == (("hash-fast", 120.0), ("paper-grid", 240.0))
    assert (gpu.probe_every, gpu.probe_views, gpu.eval_views) == (15.0, 25, 200)
    assert (gpu.render_sizes, gpu.render_repeats, gpu.downscale) == ((400, 800), 10, 1)  # lego is 400x400
    assert gpu.deadline < 530  # gpu_run.sh's timeout for the suite; the whole script stays within 9 minutes
    assert [p for p, _ in suite.DRY.budgets] == [p for p, _ in gpu.budgets]
    with pytest.raises(SystemExit) as e:
        suite.main(["--help"])
    assert e.value.code == 0


def test_suite_pieces_at_the_smallest_sizes(suite):
    for dtype in ("bfloat16", "float32"):
        assert suite.matmul_flops_per_s(64, 8, dtype, chain=2) > 0
    start = time.time()
    tiny = suite.DRY
    assert suite.eval_views(tiny, start, per_view=0.01, reserve=0.0) == tiny.eval_views  # time for all
    assert suite.eval_views(tiny, start - tiny.deadline, per_view=0.01, reserve=0.0) == 0  # deadline passed
    assert suite.eval_views(tiny, start, per_view=0.01, reserve=tiny.deadline - 5.025) == 2  # 0.025 s left
    measure = {"render_seconds": {"400x400": 0.04, "800x800": 0.15}, "rays_per_s": 1e6, "field_flops_per_s": 1e14,
               "utilisation_vs_bfloat16": 0.3, "utilisation_vs_float32": 0.6}
    results = {"hash-fast": {"fit": {"seconds": 121.0, "budget": 120.0, "summary": {"steps": 9000}},
                             "evaluate": {"psnr": 35.5, "views": 200}, "measure": measure},
               "paper-grid": {"fit": {"seconds": 250.0, "budget": 240.0, "summary": {"steps": 5000}},
                              "evaluate": {"views": 0}, "measure": {**measure, "utilisation_vs_float32": 0.2}}}
    goals = suite.goals(results)
    assert goals["hash-fast >= 35.0 dB within 120 s"] and goals["hash-fast 400x400 frame <= 50 ms"]
    assert goals["hash-fast field FLOP/s >= 50% of the f32 matmul"]
    assert not goals["paper-grid field FLOP/s >= 50% of the f32 matmul"]
    assert not any(k.startswith("paper-grid >=") for k in goals)  # not evaluated: no PSNR goal claimed
    rows = suite.table(results).splitlines()
    assert rows[0].split()[:8] == ["preset", "steps", "fit", "s", "PSNR", "views", "400px", "ms"] and len(rows) == 3
    assert rows[1].split()[:6] == ["hash-fast", "9000", "121", "35.50", "200", "40.0"]
    assert rows[2].split()[3] == "-"


def test_training_pace_comes_from_the_fits_log(suite, tmp_path):
    lines = [{"step": 1, "time": 9.0, "train_time": 9.0, "loss": 1.0, "rays": 10.0, "samples": 99},  # compiling
             {"step": 2, "time": 10.0, "train_time": 10.0, "val_psnr": 20.0, "val_views": 25},  # a probe
             *({"step": s, "time": 10.0 + s, "train_time": 10.0 + s / 4, "loss": 0.5, "rays": 100.0 + s,
                "samples": 1000} for s in (10, 20, 30))]
    (tmp_path / "metrics.jsonl").write_text("".join(json.dumps(x) + "\n" for x in lines))
    pace = suite.fit_throughput(tmp_path)
    assert pace == {"steps_per_s": pytest.approx(4.0), "rays_per_step": 120.0, "samples_per_step": 1000.0}
    (tmp_path / "metrics.jsonl").write_text("".join(json.dumps(x) + "\n" for x in lines[:3]))
    assert suite.fit_throughput(tmp_path)["steps_per_s"] is None  # too few steps logged to tell


@pytest.mark.slow
def test_dry_run_rehearses_the_whole_gpu_run(tmp_path):
    out = tmp_path / "out"
    env = {**os.environ, "PYTHON": sys.executable}
    proc = subprocess.run(["bash", str(BENCH / "gpu_run.sh"), "--dry-run", "--out", str(out)], env=env,
                          capture_output=True, text=True, timeout=1200)
    assert proc.returncode == 0, proc.stdout[-4000:] + proc.stderr[-2000:]
    files = sorted(p.name for p in out.iterdir())
    assert {"gpu_suite.json", "gpu_hash-fast.json", "gpu_paper-grid.json", "gpu_run.log"} <= set(files), files
    assert len(files) <= 8 and all(p.is_file() for p in out.iterdir())  # what the run tool brings back
    suite = json.loads((out / "gpu_suite.json").read_text())
    for key in ("device", "jax", "commit", "command"):
        assert suite[key], key
    assert set(suite["figures"]["results"]) == {"hash-fast", "paper-grid"}
    for preset in ("hash-fast", "paper-grid"):
        r = json.loads((out / f"gpu_{preset}.json").read_text())["figures"]
        assert r["evaluate"]["views"] > 0 and r["measure"]["matmul_bfloat16_flops_per_s"] > 0
        assert r["fit"]["time_to_quality"]["psnr"], "no probe PSNR recorded"
    tail = proc.stdout.strip().splitlines()
    assert any(line.startswith("preset ") for line in tail[-8:]), tail[-10:]  # the table comes last


@pytest.mark.slow
def test_dry_run_rehearses_the_gpu_startup_run(tmp_path):
    """``gpu_run.sh --startup``: cold and warm demo fit and render (PNG frames: the GPU image has no ffmpeg)."""
    out = tmp_path / "out"
    env = {**os.environ, "PYTHON": sys.executable}
    proc = subprocess.run(["bash", str(BENCH / "gpu_run.sh"), "--dry-run", "--startup", "--out", str(out)], env=env,
                          capture_output=True, text=True, timeout=600)
    assert proc.returncode == 0, proc.stdout[-4000:] + proc.stderr[-2000:]
    assert sorted(p.name for p in out.iterdir()) == ["gpu_run.log", "startup_cache_gpu.json"]
    res = json.loads((out / "startup_cache_gpu.json").read_text())
    assert res["commit"] and res["figures"]["pngs_only"] and len(res["figures"]["repeats"]) == 1
    rep = res["figures"]["repeats"][0]
    assert rep["programs_kept_whole"]["c2"] >= 1  # the cold render kept its program; the warm one loaded it
    assert rep["fit_warm"]["first_step"] < rep["fit_cold"]["first_step"]
