"""Fitting a radiance field: the jitted train step and the loop around it.

The loop keeps NNX's object graph out of the hot path: the model is split once into a static ``graphdef``
and a ``params`` pytree, and the step is a plain ``jax.jit`` of a pure function that merges them. The only
host syncs are every ``log_every`` steps (progress, metrics.jsonl), at validation and at checkpoints.
Everything random in step ``k`` comes from ``fold_in(seed_key, k)``, so a resumed fit replays the same
batches and reaches the same parameters as an uninterrupted one.
"""

from __future__ import annotations

import dataclasses
import json
import math
import sys
import time
from pathlib import Path

import jax
import jax.numpy as jnp
import numpy as np
import optax
from flax import nnx

from nerfkit import cameras as cam
from nerfkit import metrics as metrics_lib
from nerfkit import renderer, runs
from nerfkit.checkpoint import Checkpointer
from nerfkit.config import FitConfig, ModelConfig, TrainConfig, save_config
from nerfkit.errors import InputError
from nerfkit import occupancy, parallel
from nerfkit.model import NeRFModel, grid_density, render_rays, render_rays_packed
from nerfkit.types import Rays, Scene

BACKGROUNDS = {"white": (1.0, 1.0, 1.0), "black": (0.0, 0.0, 0.0), "random": (1.0, 1.0, 1.0)}


def build_model(cfg: ModelConfig, seed: int, aabb=((-1.5,) * 3, (1.5,) * 3), num_images: int = 0):
    """The model split into (graphdef, params). ``aabb`` [2, 3]: the scene box (grid encodings live in it);
    ``num_images``: training images (rows of the appearance embedding table, when the config has one)."""
    model = NeRFModel(cfg, rngs=nnx.Rngs(seed), aabb=np.asarray(aabb).tolist(), num_images=num_images)
    return nnx.split(model, nnx.Param)


def make_optimizer(cfg: TrainConfig) -> optax.GradientTransformation:
    """Adam without the learning rate: the step multiplies by the (host-computed) rate itself."""
    parts = [optax.clip_by_global_norm(cfg.grad_clip)] if cfg.grad_clip > 0 else []
    return optax.chain(*parts, optax.scale_by_adam(eps=cfg.adam_eps))


def learning_rate(cfg: TrainConfig, step: int, progress: float) -> float:
    """Exponential decay from lr_init to lr_final over ``progress`` in [0, 1], with linear warm-up."""
    lr = cfg.lr_init * (cfg.lr_final / cfg.lr_init) ** min(max(progress, 0.0), 1.0)
    if cfg.lr_warmup_steps > 0:
        lr *= min(1.0, (step + 1) / cfg.lr_warmup_steps)
    return lr


def init_grid(cfg: ModelConfig) -> dict:
    """The occupancy grid's state: running density float32 [R]^3 and occupancy bool [R]^3, all occupied.

    The hierarchical sampler does not use a grid; it gets a 1^3 placeholder so every code path has one.
    """
    r = cfg.grid_resolution if cfg.sampler == "occupancy" else 1
    return {"density": jnp.zeros((r, r, r), jnp.float32), "occupied": jnp.ones((r, r, r), bool)}


def make_grid_update(graphdef, cfg: ModelConfig, aabb, chunk: int = 65536, mesh=None):
    """Jitted ``update(params, grid, key) -> grid``: re-estimate every cell's density at a jittered point.

    With a ``mesh``, each chunk of cells is split across its devices."""
    aabb_j = jnp.asarray(aabb, jnp.float32)
    dt = occupancy.step_size(np.asarray(aabb), cfg.march_steps)
    r = cfg.grid_resolution

    @jax.jit
    def update(params, grid, key):
        model = nnx.merge(graphdef, params)
        pts = occupancy.cell_centers(r, aabb_j, key)
        n = pts.shape[0]
        pad = (-n) % chunk
        pts = jnp.concatenate([pts, jnp.zeros((pad, 3), pts.dtype)]).reshape(-1, chunk, 3)
        sigma = jax.lax.map(lambda p: grid_density(model, parallel.shard_batch(p, mesh)), pts).reshape(-1)[:n].reshape(r, r, r)
        density, occupied = occupancy.update(grid["density"], jax.lax.stop_gradient(sigma), decay=cfg.grid_decay,
                                             dt=dt, threshold=cfg.grid_threshold)
        return {"density": density, "occupied": occupied}

    return update


@dataclasses.dataclass
class TrainData:
    """Every training ray, on the device: origins, directions [R, 3], premultiplied RGBA [R, 4] and the pixel
    cone radius [R] (mip-NeRF)."""

    origins: jax.Array
    directions: jax.Array
    rgba: jax.Array
    radii: jax.Array
    image_ids: jax.Array

    @classmethod
    def from_scene(cls, scene: Scene, levels: int = 1) -> "TrainData":
        """The training split's rays; with ``levels`` > 1, also those of its area-downscaled copies at 1/2,
        1/4, ... (mip-NeRF's multi-scale training). Level ``k``'s rays are repeated ``4^k`` times, so every
        level is drawn equally often (as mip-NeRF weights its loss by pixel area)."""
        from nerfkit.data.images import area_downscale
        from nerfkit.mip import pixel_radius

        split = scene.splits["train"]
        parts = []
        for k in range(levels):
            f = 2 ** k
            if split.cameras.width % f or split.cameras.height % f:
                raise InputError(f"{levels} levels need image sizes divisible by {f}", field="--train.multiscale")
            cams = split.cameras.scaled(1.0 / f) if f > 1 else split.cameras
            rgba = area_downscale(split.rgba, f) if f > 1 else split.rgba
            o, d = cam.all_rays(cams)
            n = cams.width * cams.height
            radii = np.repeat(np.asarray(pixel_radius(np.asarray(cams.fx, np.float32))), n)
            ids = np.repeat(np.arange(len(cams), dtype=np.int32), n)
            level = [o.reshape(-1, 3), d.reshape(-1, 3), rgba.reshape(-1, 4), radii.astype(np.float32), ids]
            parts.append([np.tile(x, (f * f,) + (1,) * (x.ndim - 1)) for x in level])
        return cls(*(jnp.asarray(np.concatenate(xs)) for xs in zip(*parts)))


def make_train_step(graphdef, tx, *, batch_rays: int, near, far, aabb, background: str, seed: int,
                    sample_budget: int = 0, prepass_budget: int = 0, mesh=None):
    """The jitted ``step(params, opt_state, step, lr, origins, directions, rgba, occupied, radii=None) -> (params,
    opt_state, metrics)`` (``radii`` [R]: the rays' pixel cone radii, for mip-NeRF models).

    With a ``mesh`` (see :mod:`nerfkit.parallel`), the batch's rays are split across its devices: pass
    replicated inputs; the result is the single-device step's up to float rounding.
    """
    aabb = jnp.asarray(aabb, jnp.float32)
    base_key = jax.random.key(seed)
    fixed_bg = jnp.asarray(BACKGROUNDS[background], jnp.float32)

    def loss_fn(params, rays, target, bg, key, occupied):
        model = nnx.merge(graphdef, params)
        if model.cfg.sampler == "occupancy":
            out = render_rays_packed(model, rays, key, near=near, far=far, aabb=aabb, background=bg,
                                     occupied=occupied, budget=sample_budget, prepass_budget=prepass_budget)
            ok = out["ray_ok"].astype(jnp.float32)
            mse = jnp.sum(ok * jnp.mean((out["rgb"] - target) ** 2, axis=-1)) / jnp.maximum(jnp.sum(ok), 1.0)
            return mse, (mse, jnp.sum(ok), out["n_samples"])
        out = render_rays(model, rays, key, near=near, far=far, aabb=aabb, background=bg, randomized=True)
        mse = jnp.mean((out["rgb"] - target) ** 2)
        loss = mse
        if out["coarse"] is not None:
            loss = loss + jnp.mean((out["coarse"]["rgb"] - target) ** 2)
        return loss, (mse, jnp.float32(batch_rays), jnp.int32(0))

    def step_fn(params, opt_state, step, lr, origins, directions, rgba, occupied, radii=None, image_ids=None):
        key = jax.random.fold_in(base_key, step)
        k_idx, k_bg, k_render = jax.random.split(key, 3)
        idx = parallel.shard_batch(jax.random.randint(k_idx, (batch_rays,), 0, origins.shape[0]), mesh)
        rays = Rays(origins=origins[idx], directions=directions[idx], viewdirs=directions[idx],
                    radii=None if radii is None else radii[idx],
                    image_ids=None if image_ids is None else image_ids[idx])
        pix = rgba[idx]
        bg = jax.random.uniform(k_bg, (batch_rays, 3)) if background == "random" else fixed_bg
        if background == "random":
            bg = parallel.shard_batch(bg, mesh)
        target = pix[:, :3] + (1.0 - pix[:, 3:]) * bg
        (loss, (mse, n_rays, n_samples)), grads = jax.value_and_grad(loss_fn, has_aux=True)(
            params, rays, target, bg, k_render, occupied)
        updates, opt_state = tx.update(grads, opt_state, params)
        params = jax.tree.map(lambda p, u: p - lr * u, params, updates)
        return params, opt_state, {"loss": loss, "psnr": metrics_lib.psnr_from_mse(mse), "rays": n_rays,
                                   "samples": n_samples}

    return jax.jit(step_fn, donate_argnums=(0, 1))


QUEUED_STEPS = 2  # training steps dispatched ahead of the one the host last waited for


def validate(render_fn, params, scene: Scene, cfg: FitConfig, n_views: int, chunk: int):
    """Render the first ``n_views`` views of ``cfg.train.val_split`` (the other held-out split if it is missing).

    Returns (mean PSNR on 8-bit images, list of (prediction, ground truth) float images).
    """
    other = "test" if cfg.train.val_split == "val" else "val"
    split = scene.splits.get(cfg.train.val_split) or scene.splits.get(other)
    if split is None or n_views <= 0:
        return None, []
    bg = np.asarray(BACKGROUNDS[cfg.data.background], np.float32)
    psnrs, pairs = [], []
    n = min(n_views, len(split))
    gts = split.composite(bg)  # once per validation, not once per view
    for i in range(n):
        pred = renderer.render_view(render_fn, params, split.cameras, i, chunk)["rgb"]
        gt = gts[i]
        psnrs.append(metrics_lib.image_metrics(pred, gt)["psnr"])
        pairs.append((pred, gt))
    return float(np.mean(psnrs)), pairs


class _Progress:
    """tqdm on a terminal; a plain line every ~10 s otherwise (CI logs, pipes)."""

    def __init__(self, total: int, initial: int):
        self.tty = sys.stderr.isatty()
        self.last_print = 0.0
        self.bar = None
        if self.tty:
            from tqdm import tqdm

            self.bar = tqdm(total=total, initial=initial, unit="step", dynamic_ncols=True, smoothing=0.1)

    def update(self, step: int, n: int, info: dict):
        if self.bar is not None:
            self.bar.update(n)
            self.bar.set_postfix({k: v for k, v in info.items()}, refresh=False)
        elif time.time() - self.last_print > 10:
            self.last_print = time.time()
            print(f"step {step} " + " ".join(f"{k}={v}" for k, v in info.items()), file=sys.stderr, flush=True)

    def write(self, msg: str):
        if self.bar is not None:
            self.bar.write(msg)
        else:
            print(msg, file=sys.stderr, flush=True)

    def close(self):
        if self.bar is not None:
            self.bar.close()


def fit(cfg: FitConfig, start_time: float | None = None) -> dict:
    """Fit a model as ``cfg`` says, writing everything to ``cfg.out``. Returns a summary dict."""
    start_time = time.time() if start_time is None else start_time
    tcfg = cfg.train
    out = Path(cfg.out)
    ckpt_dir = out / "checkpoints"
    has_ckpt = ckpt_dir.is_dir() and any(p.name.isdigit() for p in ckpt_dir.iterdir())
    if has_ckpt and not cfg.resume:
        raise InputError("already holds checkpoints; pass --resume to continue or choose another --out", path=out)
    if cfg.resume and (out / "config.json").exists():
        runs.check_resumable(cfg, out)
    if tcfg.batch_rays <= 0 or tcfg.steps <= 0:
        raise InputError("must be positive", field="train.batch_rays/train.steps")

    parallel.initialize(tcfg.distributed)
    mesh = parallel.make_mesh(tcfg.devices)
    parallel.check_batch(tcfg.batch_rays, mesh, "--train.batch-rays")
    parallel.check_batch(tcfg.render_chunk, mesh, "--train.render-chunk")
    scene = runs.load_scene(cfg.data)
    out.mkdir(parents=True, exist_ok=True)
    (out / "val").mkdir(exist_ok=True)
    save_config(cfg, out / "config.json")
    runs.save_scene_meta(scene, cfg, out / "scene.json")

    graphdef, params = build_model(cfg.model, tcfg.seed, scene.aabb, num_images=len(scene.splits["train"]))
    tx = make_optimizer(tcfg)
    opt_state = tx.init(params)
    grid = init_grid(cfg.model)
    step = 0
    checkpointer = Checkpointer(out, keep=tcfg.keep_checkpoints)
    if cfg.resume and checkpointer.latest_step() is not None:
        step, restored = checkpointer.restore({"params": params, "opt_state": opt_state, "grid": grid})
        params, opt_state, grid = restored["params"], restored["opt_state"], restored["grid"]
        print(f"resuming from step {step}", file=sys.stderr)

    params, opt_state, grid = parallel.replicate((params, opt_state, grid), mesh)
    data = TrainData(*parallel.replicate(dataclasses.astuple(TrainData.from_scene(scene, tcfg.multiscale)), mesh))
    bg = BACKGROUNDS[cfg.data.background]
    kw = dict(near=scene.near, far=scene.far, aabb=scene.aabb)
    train_step = make_train_step(graphdef, tx, batch_rays=tcfg.batch_rays, background=cfg.data.background,
                                 seed=tcfg.seed, sample_budget=tcfg.sample_budget,
                                 prepass_budget=tcfg.early_stop_prepass, mesh=mesh, **kw)
    render_fn = renderer.make_render_fn(graphdef, cfg.model, background=bg, mesh=mesh, **kw)
    use_grid = cfg.model.sampler == "occupancy"
    grid_update = make_grid_update(graphdef, cfg.model, scene.aabb, mesh=mesh) if use_grid else None
    grid_key = jax.random.fold_in(jax.random.key(tcfg.seed), 1_000_003)

    n_params = sum(x.size for x in jax.tree.leaves(params))
    print(
        f"fitting {scene.source}: {len(scene.splits['train'])} train views at "
        f"{scene.splits['train'].cameras.width}x{scene.splits['train'].cameras.height}, "
        f"{n_params / 1e6:.2f}M parameters, {mesh.size} {mesh.devices.flat[0].platform} device(s) -> {out}",
        file=sys.stderr,
    )

    metrics_file = open(out / "metrics.jsonl", "a")
    deadline = start_time + tcfg.time_budget if tcfg.time_budget else math.inf
    reserve = 1.0  # seconds kept for the final checkpoint and validation; re-measured below
    progress = _Progress(tcfg.steps, step)
    history = {"step": [], "loss": [], "psnr": []}
    pending = []  # device metrics not yet fetched
    loop_start, loop_start_step = time.time(), step
    last_log_time, last_log_step = time.time(), step
    step_time = 0.0  # seconds per step, measured at syncs
    done_time, done_step = time.time(), step  # the latest step known to have finished on the device, and when
    val_psnr = None
    warmed_up = False
    total_rays = 0.0  # rays that contributed to the loss since the first (compiling) step
    overhead = 0.0  # seconds spent validating and checkpointing (not training)
    next_val_time = tcfg.val_every_seconds

    def train_seconds(now):
        """Wall-clock since the command started, minus validation and checkpoint time."""
        return now - start_time - overhead

    def log_line(record):
        metrics_file.write(json.dumps(record) + "\n")
        metrics_file.flush()

    def run_validation(at_step):
        nonlocal overhead, done_time, done_step
        t0 = time.time()
        psnr, pairs = validate(render_fn, (params, grid["occupied"]), scene, cfg, tcfg.val_views, tcfg.render_chunk)
        if psnr is not None:
            from nerfkit import visualize

            row = np.concatenate([np.concatenate([p, g], axis=1) for p, g in pairs[:2]], axis=0)
            visualize.write_png(out / "val" / f"step_{at_step:07d}.png", row)
            log_line({"step": at_step, "time": t0 - start_time, "train_time": train_seconds(t0), "val_psnr": psnr,
                      "val_views": len(pairs)})
            progress.write(f"step {at_step}: validation PSNR {psnr:.2f} dB ({len(pairs)} views)")
        overhead += time.time() - t0
        if psnr is not None:  # rendering with the parameters waited for them
            done_time, done_step = time.time(), at_step
        return psnr, time.time() - t0

    def save(at_step):
        nonlocal overhead, done_time, done_step
        t0 = time.time()
        checkpointer.save(at_step, {"params": params, "opt_state": opt_state, "grid": grid})
        overhead += time.time() - t0
        done_time, done_step = time.time(), at_step  # saving waited for the parameters
        return time.time() - t0

    stop_reason = "steps"
    try:
        while step < tcfg.steps:
            now = time.time()
            # Steps are dispatched asynchronously: the device may still be working through the queued ones,
            # so project when they will have finished before starting another.
            busy_until = max(now, done_time + (step - done_step) * step_time)
            if busy_until + step_time + reserve > deadline:
                stop_reason = "time budget"
                break
            frac_steps = step / tcfg.steps
            frac_time = (now - start_time) / tcfg.time_budget if tcfg.time_budget else 0.0
            lr = learning_rate(tcfg, step, max(frac_steps, frac_time))
            if use_grid and step % cfg.model.grid_update_every == 0 and step > 0:
                grid = grid_update(params, grid, jax.random.fold_in(grid_key, step))
            params, opt_state, m = train_step(params, opt_state, step, lr, data.origins, data.directions, data.rgba,
                                              grid["occupied"], data.radii if cfg.model.mip else None,
                                              data.image_ids if cfg.model.appearance_dim else None)
            step += 1
            pending.append((step, m, lr))
            if len(pending) > QUEUED_STEPS and warmed_up:
                # Keep at most QUEUED_STEPS steps in flight (the device stays fed; the host learns its pace).
                s_done = pending[-QUEUED_STEPS - 1][0]
                jax.block_until_ready(pending[-QUEUED_STEPS - 1][1]["loss"])
                t_done = time.time()
                if s_done > done_step:
                    pace = (t_done - done_time) / (s_done - done_step)
                    step_time = pace if step_time == 0.0 else 0.8 * step_time + 0.2 * pace
                done_time, done_step = t_done, s_done
            first = not warmed_up
            if step % tcfg.log_every == 0 or step == tcfg.steps or first:
                fetched = jax.device_get([p[1] for p in pending])
                now = time.time()
                if first:  # the first step includes compilation: throughput counts from here
                    warmed_up = True
                    loop_start, loop_start_step = now, step
                    # Measure what the end of the fit costs: one validation render and one checkpoint.
                    if tcfg.time_budget:
                        _, val_cost = run_validation(step) if tcfg.val_views else (None, 0.0)
                        reserve = 1.0 + 1.2 * (val_cost + save(step))
                else:
                    step_time = (now - last_log_time) / max(step - last_log_step, 1)
                done_time, done_step = now, step
                for (s, _, lr_s), mm in zip(pending, fetched):
                    if s > loop_start_step:
                        total_rays += float(mm["rays"])
                    history["step"].append(s)
                    history["loss"].append(float(mm["loss"]))
                    history["psnr"].append(float(mm["psnr"]))
                rate = (step - loop_start_step) / max(now - loop_start, 1e-9)
                info = {"loss": f"{float(fetched[-1]['loss']):.4f}", "psnr": f"{float(fetched[-1]['psnr']):.2f}", "lr": f"{lr:.1e}"}
                if tcfg.time_budget:
                    info["left"] = f"{max(deadline - now, 0):.0f}s"
                progress.update(step, len(pending), info)
                if use_grid:
                    info["rays"] = f"{np.mean([float(f['rays']) for f in fetched]):.0f}"
                    info["occ"] = f"{float(jnp.mean(grid['occupied'])):.3f}"
                log_line({"step": step, "time": now - start_time, "train_time": train_seconds(now), "loss": float(fetched[-1]["loss"]),
                          "psnr": float(fetched[-1]["psnr"]), "lr": lr, "steps_per_s": rate,
                          "rays": float(fetched[-1]["rays"]), "samples": int(fetched[-1]["samples"])})
                pending = []
                last_log_time, last_log_step = now, step
            due = tcfg.val_every and step % tcfg.val_every == 0
            timed = bool(tcfg.val_every_seconds) and train_seconds(time.time()) >= next_val_time
            if timed:
                while next_val_time <= train_seconds(time.time()):
                    next_val_time += tcfg.val_every_seconds
            if (due or timed) and step < tcfg.steps:
                val_psnr, val_cost = run_validation(step)
                reserve = max(reserve, 1.0 + 1.2 * val_cost)
                if timed and not due:  # time-to-quality probes are instrumentation: not charged to the budget
                    deadline += val_cost
            if tcfg.checkpoint_every and step % tcfg.checkpoint_every == 0 and step < tcfg.steps:
                save(step)
    except KeyboardInterrupt:
        stop_reason = "interrupted"
        progress.write("interrupted: saving a checkpoint (run again with --resume to continue)")
    finally:
        progress.close()
        jax.block_until_ready(params)
        if checkpointer.latest_step() != step:  # the timing save after step 1 may already hold this step
            save(step)
        checkpointer.close()

    if stop_reason != "interrupted":
        val_psnr, _ = run_validation(step)
    metrics_file.close()
    elapsed = time.time() - start_time
    train_time = time.time() - loop_start
    summary = {
        "steps": step,
        "stop_reason": stop_reason,
        "seconds": elapsed,
        "steps_per_s": (step - loop_start_step) / max(train_time, 1e-9),
        "rays_per_s": total_rays / max(train_time, 1e-9),
        "val_psnr": val_psnr,
        "train_psnr": history["psnr"][-1] if history["psnr"] else None,
    }
    (out / "summary.json").write_text(json.dumps(summary, indent=2) + "\n")
    if len(history["step"]) > 1:
        from nerfkit import visualize

        visualize.plot_curves(out / "training.png", history["step"], {"train PSNR (dB)": history["psnr"]},
                              xlabel="step", ylabel="PSNR (dB)", title=f"{scene.source} — {cfg.preset}")
    print(
        f"done: {step} steps in {elapsed:.0f}s ({stop_reason}), {summary['rays_per_s']:.0f} rays/s, "
        f"validation PSNR {val_psnr if val_psnr is None else round(val_psnr, 2)} dB -> {out}",
        file=sys.stderr,
    )
    return summary
