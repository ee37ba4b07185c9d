"""What every benchmark result records: machine, device, versions, commit, command, date."""

from __future__ import annotations

import datetime
import json
import os
import platform
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
LEGO = ROOT.parent / "shared" / "data" / "nerf_synthetic" / "lego"


def cpu_model() -> str:
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or "unknown"


def environment() -> dict:
    import jax

    dev = jax.devices()[0]
    try:
        commit = subprocess.run(["git", "rev-parse", "HEAD"], cwd=ROOT, capture_output=True, text=True).stdout.strip()
        dirty = bool(subprocess.run(["git", "status", "--porcelain", "--untracked-files=no"], cwd=ROOT,
                                    capture_output=True, text=True).stdout.strip())
    except OSError:
        commit, dirty = "", None
    if not commit:  # no git or no .git (the GPU machine gets a copy of the tree): what gpu_prepare.sh recorded
        commit = os.environ.get("NERFKIT_COMMIT", "unknown")
    return {
        "date": datetime.datetime.now(datetime.timezone.utc).isoformat(timespec="seconds"),
        "machine": {"cpu": cpu_model(), "cores": os.cpu_count(), "platform": platform.platform()},
        "device": {"platform": dev.platform, "kind": getattr(dev, "device_kind", str(dev)), "count": jax.device_count()},
        "jax": jax.__version__,
        "commit": commit,
        "dirty": dirty,
        "command": " ".join([Path(sys.executable).name, *sys.argv]),
    }


def write_result(name: str, figures: dict, out_dir: Path | None = None, extra: dict | None = None,
                 env: dict | None = None) -> Path:
    """Write ``benchmarks/results/<name>.json``. Pass ``env=environment()`` taken when the run *started*, so the
    recorded commit is the code that ran."""
    out_dir = out_dir or ROOT / "benchmarks" / "results"
    out_dir.mkdir(parents=True, exist_ok=True)
    path = out_dir / f"{name}.json"
    path.write_text(json.dumps({**(env or environment()), **(extra or {}), "figures": figures}, indent=2) + "\n")
    return path
