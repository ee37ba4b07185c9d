"""Run directories: what ``fit`` leaves behind and how ``render`` / ``evaluate`` load it.

A run directory holds ``config.json`` (the resolved config), ``scene.json`` (cameras of every split, bounds
and background, so rendering needs no images), ``checkpoints/``, ``metrics.jsonl``, ``summary.json`` and
validation images.
"""

from __future__ import annotations

import dataclasses
import json
from pathlib import Path
from typing import Any

import jax
import numpy as np

from nerfkit import compile_cache, frames, samplers
from nerfkit.checkpoint import Checkpointer, from_train_state, train_state
from nerfkit.config import DataConfig, FitConfig, load_config
from nerfkit.errors import InputError
from nerfkit.model import abstract_model
from nerfkit.samplers import Sampler
from nerfkit.types import Bounds, Cameras, Scene


def load_scene(data: DataConfig, splits=("train", "val", "test"), cameras_only=()) -> Scene:
    """The scene a data config names: a dataset directory, or the built-in demo scene when ``data`` is None.
    ``cameras_only``: further splits wanted for their cameras alone (see :func:`nerfkit.data.load_scene`)."""
    from nerfkit.data import load_scene as load_path
    from nerfkit.data.demo import make_demo_scene

    if data.downscale < 1:
        raise InputError("must be a positive integer", field="--data.downscale")
    if data.data is None:  # ray-traced in NumPy (~1 s): kept in the cache directory for the next fit
        scene = compile_cache.kept(compile_cache.describe("demo scene"), make_demo_scene)
        return downscale_scene(scene, data.downscale) if data.downscale != 1 else scene
    return load_path(Path(data.data), downscale=data.downscale, splits=splits, cameras_only=cameras_only)


def downscale_scene(scene: Scene, factor: int) -> Scene:
    """Every split shrunk by an integer factor (area filtering on premultiplied RGBA)."""
    from nerfkit.data.images import shrink_pixels

    splits = {}
    for name, s in scene.splits.items():
        if s.cameras.width % factor or s.cameras.height % factor:
            raise InputError(f"{s.cameras.width}x{s.cameras.height} images are not divisible by {factor}", field="--data.downscale")
        splits[name] = dataclasses.replace(s, pixels=shrink_pixels(s.pixels, factor), cameras=s.cameras.scaled(1.0 / factor))
    return dataclasses.replace(scene, splits=splits)


def _cams_to_json(c: Cameras) -> dict:
    d = {
        "width": c.width, "height": c.height, "c2w": np.asarray(c.c2w).tolist(),
        "fx": np.asarray(c.fx).tolist(), "fy": np.asarray(c.fy).tolist(),
        "cx": np.asarray(c.cx).tolist(), "cy": np.asarray(c.cy).tolist(),
    }
    if c.distortion is not None:
        d["distortion"] = np.asarray(c.distortion).tolist()
    if c.ndc_near is not None:
        d["ndc_near"] = float(c.ndc_near)
    return d


def _cams_from_json(d: dict) -> Cameras:
    f = lambda k: np.asarray(d[k], np.float32)  # noqa: E731
    return Cameras(c2w=f("c2w"), fx=f("fx"), fy=f("fy"), cx=f("cx"), cy=f("cy"), width=int(d["width"]),
                   height=int(d["height"]), distortion=f("distortion") if d.get("distortion") is not None else None,
                   ndc_near=float(d["ndc_near"]) if d.get("ndc_near") is not None else None)


def save_scene_meta(scene: Scene, cfg: FitConfig, path: Path) -> None:
    known = {**scene.cameras_only, **{name: (s.cameras, s.names) for name, s in scene.splits.items()}}
    meta = {
        "source": scene.source, "near": scene.near, "far": scene.far, "aabb": np.asarray(scene.aabb).tolist(),
        "background": cfg.data.background,
        "depth_range": None if scene.depth_range is None else [float(x) for x in scene.depth_range],
        "cameras": {name: _cams_to_json(cams) for name, (cams, _) in known.items()},
        "names": {name: list(names) for name, (_, names) in known.items()},
        "frames": {k: m.tolist() for k, m in frames.scene_frames(scene).items()},
    }
    path.write_text(json.dumps(meta) + "\n")


class SceneMeta:
    """What ``scene.json`` holds: cameras by split, near/far, aabb, background name, the image names of each
    split (``names``; empty for runs written before they were saved) and the world frames (``file_to_scene``,
    ``path_to_scene``: float64 [4, 4], :mod:`nerfkit.frames`; recomputed from the data source for runs written
    before they were saved)."""

    def __init__(self, path: Path):
        try:
            d = json.loads(path.read_text())
            self.source = d["source"]
            self.near, self.far = float(d["near"]), float(d["far"])
            self.aabb = np.asarray(d["aabb"], np.float32)
            self.background = d["background"]
            self.depth_range = tuple(map(float, d["depth_range"])) if d.get("depth_range") else None
            self.cameras = {k: _cams_from_json(v) for k, v in d["cameras"].items()}
            self.names = {k: tuple(map(str, v)) for k, v in d.get("names", {}).items()}
            saved = d.get("frames") or frames.frames_of_source(self.source)
            self.file_to_scene = np.asarray(saved["file_to_scene"], np.float64).reshape(4, 4)
            self.path_to_scene = np.asarray(saved["path_to_scene"], np.float64).reshape(4, 4)
        except FileNotFoundError:
            raise InputError("missing: not a nerfkit run directory", path=path) from None
        except (json.JSONDecodeError, KeyError, TypeError, ValueError) as e:
            raise InputError(f"unreadable run metadata ({type(e).__name__}: {e})", path=path) from None

    @property
    def bounds(self) -> Bounds:
        return Bounds.of(self.near, self.far, self.aabb)


def check_resumable(cfg: FitConfig, out: Path) -> None:
    """Resuming needs the same model architecture as the checkpoint was written with."""
    saved = load_config(out / "config.json")
    if saved.model != cfg.model:
        raise InputError("--resume with a different model config than the checkpoint's", path=out / "config.json", field="model")


@dataclasses.dataclass(frozen=True)
class Run:
    """A fitted run, restored: what ``render``, ``evaluate`` and the benchmarks need.

    Attributes:
      cfg: the resolved config; meta: cameras, bounds and background (``scene.json``); step: the checkpoint's.
      graphdef, params: the model (``nnx.merge(graphdef, params)``); sampler, sampler_state: how to sample it.
    """

    cfg: FitConfig
    meta: "SceneMeta"
    step: int
    graphdef: Any
    params: Any
    sampler: Sampler
    sampler_state: Any


def load_run(run_dir: Path) -> Run:
    """The latest checkpoint of a run directory, restored into a model built from its config
    (``nnx.eval_shape``: nothing is initialised that the checkpoint overwrites)."""
    run_dir = Path(run_dir)
    if not run_dir.is_dir():
        raise InputError("no such run directory", path=run_dir)
    cfg = load_config(run_dir / "config.json")
    meta = SceneMeta(run_dir / "scene.json")
    graphdef, params = abstract_model(cfg.model, meta.aabb, num_images=len(meta.cameras["train"]))
    sampler = samplers.build(cfg.model, meta.bounds, cfg.train)
    template = jax.eval_shape(sampler.init_state)  # the structure to restore into; nothing computed
    with Checkpointer(run_dir, create=False) as ck:
        if ck.latest_step() is None:
            raise InputError("no checkpoint in checkpoints/: the fit never saved one", path=run_dir)
        step, restored = ck.restore(train_state(params, None, template))
    params, _, state = from_train_state(restored, template)
    return Run(cfg=cfg, meta=meta, step=step, graphdef=graphdef, params=params, sampler=sampler, sampler_state=state)
