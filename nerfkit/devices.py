"""Which devices JAX runs on, said in one line, and a warning when an NVIDIA GPU sits unused.

``fit``, ``render`` and ``evaluate`` call :func:`announce` once their run or data is loaded: one line such as
``nerfkit: running on 1 x NVIDIA H200 (gpu, jax 0.11.2)`` on stderr, and, when JAX runs on the CPU although
``nvidia-smi`` lists a GPU (JAX's CPU-only build is what ``pip install nerfkit`` brings), a second line with
the install command for JAX's CUDA build.
"""

from __future__ import annotations

import shutil
import subprocess
import sys
from collections import Counter
from typing import Sequence, TextIO

GPU_INSTALL = 'pip install -e ".[cuda13]"'  # the extra in pyproject.toml (".[cuda12]" for CUDA 12 drivers)


def describe(devices: Sequence) -> str:
    """``COUNT x KIND (PLATFORM, jax VERSION)`` for each kind of device in ``devices``.

    >>> import jax
    >>> describe(jax.devices("cpu")[:1])  # doctest: +ELLIPSIS
    '1 x cpu (cpu, jax ...)'
    """
    import jax

    kinds = Counter((getattr(d, "device_kind", str(d)), d.platform) for d in devices)
    return ", ".join(f"{n} x {kind} ({platform}, jax {jax.__version__})" for (kind, platform), n in kinds.items())


def nvidia_gpus(timeout: float = 5.0) -> list[str]:
    """The GPUs ``nvidia-smi -L`` lists (lines starting ``GPU``); empty when it is not on PATH or fails."""
    exe = shutil.which("nvidia-smi")
    if exe is None:
        return []
    try:
        proc = subprocess.run([exe, "-L"], capture_output=True, text=True, timeout=timeout)
    except (OSError, subprocess.SubprocessError):
        return []
    if proc.returncode != 0:
        return []
    return [line.strip() for line in proc.stdout.splitlines() if line.strip().startswith("GPU")]


def gpu_warning(devices: Sequence) -> str | None:
    """The warning for CPU-only ``devices`` on a machine where ``nvidia-smi`` lists a GPU; None otherwise."""
    if any(d.platform != "cpu" for d in devices):
        return None
    gpus = nvidia_gpus()
    if not gpus:
        return None
    return (f"nerfkit: warning: JAX runs on the CPU but nvidia-smi lists {len(gpus)} NVIDIA GPU(s); "
            f"for JAX's CUDA build: {GPU_INSTALL}")


def announce(devices: Sequence | None = None, stream: TextIO | None = None) -> None:
    """Print the platform line (and the GPU warning, if any) for ``devices`` (default: ``jax.devices()``)."""
    import jax

    devices = jax.devices() if devices is None else list(devices)
    stream = sys.stderr if stream is None else stream
    print(f"nerfkit: running on {describe(devices)}", file=stream, flush=True)
    warning = gpu_warning(devices)
    if warning:
        print(warning, file=stream, flush=True)
