"""Several processes for real: ``nerfkit fit --train.distributed`` as 2 processes on localhost
(``jax.distributed`` with CPU collectives), each process holding one CPU device and so half of every ray
batch, ends with the parameters of the same fit in one process, up to the float rounding of the gradient
all-reduce. Slow (two JAX start-ups and compiles): ``pytest -m slow tests/test_distributed.py``."""

from __future__ import annotations

import json
import os
import socket
import subprocess
import sys
from pathlib import Path

import jax
import numpy as np
import pytest

from cli.main import main as cli_main
from nerfkit import runs

from .conftest import TINY_MODEL_FLAGS

pytestmark = [pytest.mark.slow, pytest.mark.filterwarnings("ignore:os.fork\\(\\) was called:RuntimeWarning")]


def _fit_args(out: Path, data: Path) -> list[str]:
    return ["fit", "paper", "--out", str(out), "--data", str(data), "--steps", "6", *TINY_MODEL_FLAGS,
            "--train.batch-rays", "64", "--train.log-every", "3", "--train.val-every", "0", "--train.val-views", "0",
            "--train.lr-init", "2e-3", "--train.lr-final", "2e-4"]


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("localhost", 0))
        return s.getsockname()[1]


def test_two_processes_give_the_one_process_fit(tmp_path, tiny_blender_dir):
    env = dict(os.environ, JAX_PLATFORMS="cpu", JAX_CPU_COLLECTIVES_IMPLEMENTATION="gloo",
               JAX_COORDINATOR_ADDRESS=f"localhost:{_free_port()}", JAX_NUM_PROCESSES="2")
    env.pop("XLA_FLAGS", None)  # one CPU device per process
    cmd = [sys.executable, "-m", "cli.main", *_fit_args(tmp_path / "two", tiny_blender_dir), "--train.distributed"]
    procs = [subprocess.Popen(cmd, env=dict(env, JAX_PROCESS_ID=str(i)), stdout=subprocess.DEVNULL,
                              stderr=subprocess.PIPE, text=True) for i in range(2)]
    errs = []
    try:
        for p in procs:
            errs.append(p.communicate(timeout=300)[1])
    finally:
        for p in procs:
            if p.poll() is None:
                p.kill()
    for p, err in zip(procs, errs):
        assert p.returncode == 0, err[-3000:]
        assert "2 cpu device(s)" in err  # the mesh spans both processes

    logged = [json.loads(line)["step"] for line in (tmp_path / "two" / "metrics.jsonl").read_text().splitlines()]
    assert sorted(set(logged)) == logged  # written by one process (both appending would repeat every step)
    assert cli_main(_fit_args(tmp_path / "one", tiny_blender_dir)) == 0
    two, one = runs.load_run(tmp_path / "two"), runs.load_run(tmp_path / "one")
    assert two.step == one.step == 6
    moved = 0.0
    for a, b, init in zip(jax.tree.leaves(two.params), jax.tree.leaves(one.params), jax.tree.leaves(_initial(one))):
        np.testing.assert_allclose(np.asarray(a), np.asarray(b), rtol=0, atol=1e-5)
        moved = max(moved, float(np.max(np.abs(np.asarray(b) - np.asarray(init)))))
    assert moved > 1e-3  # the fit moved the parameters: the comparison is not between two initialisations


def _initial(run: runs.Run):
    from nerfkit.model import build_model

    return build_model(run.cfg.model, run.cfg.train.seed, run.meta.aabb, num_images=len(run.meta.cameras["train"]))[1]
