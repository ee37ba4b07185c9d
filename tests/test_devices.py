"""The platform line and the unused-GPU warning (issue 14), with a fake ``nvidia-smi`` on PATH."""

from __future__ import annotations

import io
import os
import stat
import tomllib
from pathlib import Path
from types import SimpleNamespace

import jax
import pytest

from nerfkit import devices

REPO = Path(__file__).resolve().parents[1]


def _fake_smi(folder: Path, script: str) -> Path:
    folder.mkdir(parents=True, exist_ok=True)
    exe = folder / "nvidia-smi"
    exe.write_text("#!/bin/sh\n" + script + "\n")
    exe.chmod(exe.stat().st_mode | stat.S_IXUSR | stat.S_IXGRP | stat.S_IXOTH)
    return folder


def _announce(devs) -> list[str]:
    out = io.StringIO()
    devices.announce(devs, stream=out)
    return out.getvalue().splitlines()


@pytest.fixture()
def gpu_listed(tmp_path, monkeypatch):
    """PATH starts with a fake nvidia-smi that lists one H100."""
    bin_dir = _fake_smi(tmp_path / "bin", 'echo "GPU 0: NVIDIA H100 80GB HBM3 (UUID: GPU-0)"')
    monkeypatch.setenv("PATH", f"{bin_dir}{os.pathsep}{os.environ['PATH']}")


def test_cpu_with_a_visible_gpu_warns_with_the_install_command(gpu_listed):
    lines = _announce(jax.devices("cpu"))
    assert lines[0] == f"nerfkit: running on {jax.device_count('cpu')} x cpu (cpu, jax {jax.__version__})"
    assert len(lines) == 2 and lines[1].startswith("nerfkit: warning: JAX runs on the CPU"), lines
    assert "1 NVIDIA GPU" in lines[1] and lines[1].endswith('pip install -e ".[cuda13]"')


def test_no_warning_without_a_working_nvidia_smi_or_on_a_gpu(tmp_path, monkeypatch, gpu_listed):
    gpus = [SimpleNamespace(platform="gpu", device_kind="NVIDIA H200")] * 2
    assert _announce(gpus) == [f"nerfkit: running on 2 x NVIDIA H200 (gpu, jax {jax.__version__})"]
    failing = _fake_smi(tmp_path / "failing", 'echo "NVIDIA-SMI has failed: no driver"; exit 9')
    monkeypatch.setenv("PATH", f"{failing}{os.pathsep}{os.environ['PATH']}")
    assert len(_announce(jax.devices("cpu"))) == 1
    monkeypatch.setenv("PATH", str(tmp_path / "empty"))  # no nvidia-smi at all
    assert devices.nvidia_gpus() == [] and len(_announce(jax.devices("cpu"))) == 1


def test_the_install_command_names_an_extra_that_brings_jax_cuda():
    extras = tomllib.loads((REPO / "pyproject.toml").read_text())["project"]["optional-dependencies"]
    extra = devices.GPU_INSTALL.split("[")[1].split("]")[0]
    assert any(dep.startswith(f"jax[{extra}]") for dep in extras[extra]), extras
    assert any(dep.startswith("jax[cuda12]") for dep in extras["cuda12"])
    assert any(dep.startswith("jax[tpu]") for dep in extras["tpu"])
    assert devices.GPU_INSTALL in (REPO / "README.md").read_text()


def test_fit_announces_its_devices(gpu_listed, capsys):
    from nerfkit.fit import FitLoop
    from nerfkit.parallel import make_mesh
    from nerfkit.data.demo import make_demo_scene

    scene = make_demo_scene(width=8, height=8, n_train=2, n_val=1, n_test=1)
    loop = SimpleNamespace(scene=scene, state=SimpleNamespace(params={"w": jax.numpy.zeros(3)}), mesh=make_mesh(),
                           out=Path("runs/x"))
    FitLoop.announce(loop)
    err = capsys.readouterr().err.splitlines()
    assert err[1] == f"nerfkit: running on {jax.device_count()} x cpu (cpu, jax {jax.__version__})", err
    assert err[2].startswith("nerfkit: warning: JAX runs on the CPU"), err
