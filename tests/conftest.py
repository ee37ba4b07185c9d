"""Shared fixtures: a tiny Blender-layout dataset, tiny model configs, and a JAX compilation cache.

Everything here is sized for a 2-core CPU: 16x16 images, 2-layer 32-wide MLPs, 8 + 8 samples per ray.

The fit and CLI tests compile the same small train step several times (in-process fits, resumed fits and
``nerfkit`` subprocesses). A persistent JAX compilation cache in a per-session temporary directory (exported
through ``JAX_COMPILATION_CACHE_DIR`` so subprocesses share it) turns every compile after the first into a
cache hit. It only changes how long compiling takes, never what is computed. Set
``JAX_COMPILATION_CACHE_DIR`` yourself to keep a cache between sessions.
"""

from __future__ import annotations

import os
import shutil
import tempfile
from pathlib import Path

import pytest

os.environ.setdefault("JAX_PLATFORMS", "cpu")

_OWN_CACHE: str | None = None


def pytest_configure(config):
    global _OWN_CACHE
    if not os.environ.get("JAX_COMPILATION_CACHE_DIR"):
        _OWN_CACHE = tempfile.mkdtemp(prefix="nerfkit-test-jax-cache-")
        os.environ["JAX_COMPILATION_CACHE_DIR"] = _OWN_CACHE
    os.environ.setdefault("JAX_PERSISTENT_CACHE_MIN_COMPILE_TIME_SECS", "0")
    import jax

    jax.config.update("jax_compilation_cache_dir", os.environ["JAX_COMPILATION_CACHE_DIR"])
    jax.config.update("jax_persistent_cache_min_compile_time_secs",
                      float(os.environ["JAX_PERSISTENT_CACHE_MIN_COMPILE_TIME_SECS"]))


def pytest_unconfigure(config):
    if _OWN_CACHE is not None:
        shutil.rmtree(_OWN_CACHE, ignore_errors=True)


# ------------------------------------------------------------------------------------------------- data
@pytest.fixture(scope="session")
def tiny_blender_dir(tmp_path_factory) -> Path:
    """The procedural demo scene at 16x16 (8 train, 2 val, 2 test views) in the Blender layout. Read-only:
    tests that break files copy it first."""
    from nerfkit.data.demo import make_demo_scene, write_blender

    root = tmp_path_factory.mktemp("tiny_blender") / "scene"
    write_blender(make_demo_scene(width=16, height=16, n_train=8, n_val=2, n_test=2), root)
    return root


# ----------------------------------------------------------------------------------------------- models
def tiny_field():
    from nerfkit.config import FieldConfig

    # skips keeps its default (4,): no skip fires at depth 2, and the config equals what the CLI flags below
    # give on top of the paper preset, so in-process and subprocess fits compile the same program.
    return FieldConfig(depth=2, width=32, view_width=16)


def tiny_model():
    from nerfkit.config import ModelConfig

    return ModelConfig(coarse=tiny_field(), fine=tiny_field(), num_coarse=8, num_fine=8, sampler="hierarchical")


def tiny_fit_config(out: Path, data: Path, *, resume: bool = False, **train):
    """A FitConfig for seconds-long fits: tiny model, 64 rays per step, no validation renders."""
    from nerfkit.config import DataConfig, FitConfig, TrainConfig

    base = dict(steps=12, batch_rays=64, log_every=3, val_every=0, val_views=0, checkpoint_every=1000, seed=0)
    base.update(train)
    return FitConfig(out=Path(out), resume=resume, data=DataConfig(data=Path(data)), model=tiny_model(),
                     train=TrainConfig(**base), preset="test")


# The same model as command-line flags (tyro spelling) on top of the paper preset, for subprocess tests.
TINY_MODEL_FLAGS = [
    "--model.sampler", "hierarchical",
    "--model.coarse.depth", "2", "--model.coarse.width", "32", "--model.coarse.view-width", "16",
    "--model.fine.depth", "2", "--model.fine.width", "32", "--model.fine.view-width", "16",
    "--model.num-coarse", "8", "--model.num-fine", "8",
]


# ------------------------------------------------------------------------- a nerfstudio-format capture
def file_from_demo() -> "np.ndarray":
    """The similarity [4, 4] (scale 2, a turn about a slanted axis, an offset) from the demo scene's world to
    the world of :func:`tiny_nerfstudio_dir`'s ``transforms.json``: neither frame is nerfkit's scene frame."""
    import numpy as np

    axis = np.array([1.0, 2.0, 0.5]) / np.linalg.norm([1.0, 2.0, 0.5])
    a = 0.7
    k = np.array([[0, -axis[2], axis[1]], [axis[2], 0, -axis[0]], [-axis[1], axis[0], 0]])
    m = np.eye(4)
    m[:3, :3] = 2.0 * (np.eye(3) + np.sin(a) * k + (1 - np.cos(a)) * k @ k)
    m[:3, 3] = [5.0, -2.0, 3.0]
    return m


@pytest.fixture(scope="session")
def tiny_nerfstudio_dir(tmp_path_factory) -> Path:
    """The demo scene at 16x16 (12 views: the loader holds out views 0 and 8 as test) as a nerfstudio capture
    (``transforms.json`` + ``images/``), its world moved by :func:`file_from_demo`. Read-only."""
    import json

    import imageio.v3 as iio
    import numpy as np

    from nerfkit.data.demo import make_demo_scene

    root = tmp_path_factory.mktemp("tiny_nerfstudio") / "capture"
    (root / "images").mkdir(parents=True)
    split = make_demo_scene(width=16, height=16, n_train=12, n_val=0, n_test=0).splits["train"]
    cams, m = split.cameras, file_from_demo()
    frames = []
    for i in range(len(cams)):
        rgb = split.rgba[i, ..., :3] + (1.0 - split.rgba[i, ..., 3:])  # on white
        iio.imwrite(root / "images" / f"f_{i:02d}.png", (np.clip(rgb, 0, 1) * 255 + 0.5).astype(np.uint8))
        c2w = np.eye(4)
        c2w[:3] = cams.c2w[i]
        pose = m @ c2w
        pose[:3, :3] /= 2.0  # keep the rotation a rotation
        frames.append({"file_path": f"images/f_{i:02d}.png", "transform_matrix": pose.tolist()})
    doc = {"fl_x": float(cams.fx[0]), "fl_y": float(cams.fy[0]), "cx": float(cams.cx[0]), "cy": float(cams.cy[0]),
           "w": 16, "h": 16, "frames": frames}
    (root / "transforms.json").write_text(json.dumps(doc))
    return root


@pytest.fixture(scope="session")
def tiny_nerfstudio_run(tmp_path_factory, tiny_nerfstudio_dir) -> Path:
    """A 4-step fit of :func:`tiny_nerfstudio_dir` (tiny model), in-process. Read-only."""
    from nerfkit.fit import fit

    out = tmp_path_factory.mktemp("tiny_ns_run") / "run"
    fit(tiny_fit_config(out, tiny_nerfstudio_dir, steps=4, render_chunk=256))
    return out


@pytest.fixture(scope="session")
def tiny_run(tmp_path_factory, tiny_blender_dir) -> Path:
    """A run fitted for 2 steps on the tiny scene with the tiny model (read-only: for tests that load a run)."""
    from nerfkit.fit import fit

    out = tmp_path_factory.mktemp("tiny_run") / "run"
    fit(tiny_fit_config(out, tiny_blender_dir, steps=2))
    return out
