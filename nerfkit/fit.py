"""Fitting a radiance field: the loop around the train step, as a story.

``fit`` checks the run directory, loads the scene, builds (or resumes) the model, optimiser and sampler
state, then steps until ``--steps`` or ``--time-budget``: logging, validating and checkpointing on the way,
and validating, summarising and plotting at the end; SIGTERM or SIGINT (:class:`StopSignals`) stop it after
the step in flight, with a checkpoint. Every numeric field of the config is checked first
(:func:`nerfkit.flags.check`). The pieces it is made of are small and named:
:class:`Clock` (deadline and pacing), :class:`RunLog` (progress, metrics.jsonl, the loss history),
:class:`FitState` (what is trained and checkpointed) and :class:`FitLoop` (one step, logging, validation,
checkpoints). The only host syncs are every ``log_every`` steps, at validation and at checkpoints, plus a
wait for the step ``QUEUED_STEPS`` behind the newest (the device stays fed; the host learns its pace).
With several processes (``--train.distributed``) only the first writes the run's files (config, metrics,
pictures, summary); checkpoints are written by all of them together (Orbax coordinates).
"""

from __future__ import annotations

import dataclasses
import json
import math
import os
import signal
import sys
import threading
import time
from pathlib import Path
from typing import Any

import jax
import numpy as np

from nerfkit import metrics as metrics_lib
from nerfkit import devices, flags, memory, parallel, renderer, runs, samplers
from nerfkit.checkpoint import Checkpointer, from_train_state, train_state
from nerfkit.config import FitConfig, save_config
from nerfkit.errors import InputError
from nerfkit.train_step import (TrainData, initial_state, learning_rate, make_optimizer, make_sampler_update,
                                make_train_step, optimizer_settings)
from nerfkit.types import Bounds, Scene, background_rgb

QUEUED_STEPS = 2  # training steps dispatched ahead of the one the host last waited for
SAMPLER_KEY_SALT = 1_000_003  # the sampler's updates draw from fold_in(seed key, this)


def fit(cfg: FitConfig, start_time: float | None = None) -> dict:
    """Fit a model as ``cfg`` says, writing everything to ``cfg.out``. Returns a summary dict. Every numeric
    field is checked against its domain (:mod:`nerfkit.flags`) before anything else is done."""
    start_time = time.time() if start_time is None else start_time
    flags.check(cfg)
    check_run_dir(cfg)
    parallel.initialize(cfg.train.distributed)
    mesh = parallel.make_mesh(cfg.train.devices)
    parallel.check_batch(cfg.train.batch_rays, mesh, "--train.batch-rays")
    parallel.check_batch(cfg.train.render_chunk, mesh, "--train.render-chunk")
    scene = load_fit_scene(cfg)
    print(check_memory(scene, cfg.train.multiscale, mesh), file=sys.stderr)  # refuses before the run is written
    if jax.process_index() == 0:  # several processes (--train.distributed): the first writes the run's files
        write_run_files(cfg, scene)
    loop = FitLoop(cfg, scene, mesh, start_time)
    loop.announce()
    if cfg.viewer:
        from nerfkit.viewer import LiveViewer

        s = loop.state
        loop.live = LiveViewer.start(loop.graphdef, loop.sampler, s.params, s.sampler_state, cfg.out,
                                     cfg.viewer_host, cfg.viewer_port)
    try:
        stop_reason = loop.run()
        return loop.finish(stop_reason)
    finally:
        if loop.live is not None:
            loop.live.close()


def load_fit_scene(cfg: FitConfig) -> Scene:
    """The training split and the validation split with their images; the other held-out split by its cameras
    alone where the format allows (for ``scene.json``: ``render --path test`` and ``export cameras`` need
    them), since a fit never renders it. Start-up: lego's 200 test images are not decoded."""
    val = cfg.train.val_split
    other = "test" if val == "val" else "val"
    scene = runs.load_scene(cfg.data, splits=("train", val), cameras_only=(other,))
    if val not in scene.splits and other in scene.cameras_only:  # no validation split: validate on the other
        scene = runs.load_scene(cfg.data, splits=("train", val, other))
    return scene


def check_run_dir(cfg: FitConfig) -> None:
    """Refuse to overwrite checkpoints without ``--resume``, or to resume with another model."""
    out = Path(cfg.out)
    ckpt_dir = out / "checkpoints"
    has_ckpt = ckpt_dir.is_dir() and any(p.name.isdigit() for p in ckpt_dir.iterdir())
    if has_ckpt and not cfg.resume:
        raise InputError("already holds checkpoints; pass --resume to continue or choose another --out", path=out)
    if cfg.resume and (out / "config.json").exists():
        runs.check_resumable(cfg, out)


def check_memory(scene: Scene, levels: int, mesh) -> str:
    """The line saying how much the training data holds: the 8-bit training images (:class:`TrainData`)
    on each of this process's devices, and every loaded split's images on the host. ``InputError`` (field
    ``--data.downscale``) when a device has not the room (:mod:`nerfkit.memory`; a CPU device's memory is
    the host's, which its replicas share)."""
    need = TrainData.image_bytes(scene.splits["train"], levels)
    local = [d for d in mesh.devices.flat if d.process_index == jax.process_index()]
    platform = local[0].platform
    if platform == "cpu":
        memory.check_fits(need * len(local), memory.host_available(), "the training images", "the host",
                          field="--data.downscale")
    else:
        free = [memory.device_free(d) for d in local]
        known = [f for f in free if f is not None]
        memory.check_fits(need, min(known) if known else None, "the training images", f"a {platform} device",
                          field="--data.downscale")
    host = sum(split.pixels.nbytes for split in scene.splits.values())
    return (f"training data: {memory.gib(need)} of 8-bit images ({levels} level(s)) on each of {len(local)} "
            f"{platform} device(s); {memory.gib(host)} of images held on the host")


def write_run_files(cfg: FitConfig, scene: Scene) -> None:
    out = Path(cfg.out)
    out.mkdir(parents=True, exist_ok=True)
    (out / "val").mkdir(exist_ok=True)
    save_config(cfg, out / "config.json")
    runs.save_scene_meta(scene, cfg, out / "scene.json")


@dataclasses.dataclass
class FitState:
    """What a fit trains and checkpoints: the step, parameters, optimiser state and the sampler's state."""

    step: int
    params: Any
    opt_state: Any
    sampler_state: Any

    def tree(self) -> dict:
        return train_state(self.params, self.opt_state, self.sampler_state)


def validate(fn: renderer.RenderFn, state: FitState, scene: Scene, cfg: FitConfig, n_views: int):
    """Render the first ``n_views`` views of ``cfg.train.val_split`` (the other held-out split if it is missing).

    Returns (mean PSNR on 8-bit images, list of (prediction, ground truth) float images)."""
    other = "test" if cfg.train.val_split == "val" else "val"
    split = scene.splits.get(cfg.train.val_split) or scene.splits.get(other)
    if split is None or n_views <= 0:
        return None, []
    bg = background_rgb(cfg.data.background)
    views = range(min(n_views, len(split)))
    preds = renderer.render_views(fn, state.params, state.sampler_state, split.cameras, views, cfg.train.render_chunk)
    pairs = [(pred["rgb"], split.composite(bg, i)) for i, pred in zip(views, preds)]
    return float(np.mean([metrics_lib.image_metrics(p, g)["psnr"] for p, g in pairs])), pairs


@dataclasses.dataclass
class Clock:
    """Wall-clock accounting of a fit.

    ``deadline``: when the command must be done (start + time budget; ``inf`` without one). ``reserve``:
    seconds kept for the final checkpoint and validation (measured after the first step). ``overhead``:
    seconds spent validating and checkpointing (``train_seconds`` excludes them). Steps run asynchronously,
    so the clock tracks the latest step known to have *finished* (``done_step`` at ``done_time``) and the
    pace ``step_time``, and projects when the queued steps will be done."""

    start: float
    deadline: float
    reserve: float = 1.0
    overhead: float = 0.0
    step_time: float = 0.0
    done_time: float = 0.0
    done_step: int = 0
    first_step: float | None = None  # when this command dispatched its first step

    def progress(self, now: float) -> float:
        """How much of the budget's training window has passed, in [0, 1]: the window runs from the first step
        to the deadline less the reserve, so the learning-rate decay spans the steps, not the start-up before
        them. 0 without a time budget, or before the first step."""
        if math.isinf(self.deadline) or self.first_step is None:
            return 0.0
        window = self.deadline - self.reserve - self.first_step
        return min(max((now - self.first_step) / window, 0.0), 1.0) if window > 0 else 1.0

    def train_seconds(self, now: float) -> float:
        """Wall-clock since the command started, minus validation and checkpoint time."""
        return now - self.start - self.overhead

    def out_of_time(self, step: int, now: float) -> bool:
        """Would one more step (after those still queued) run into the reserve?"""
        busy_until = max(now, self.done_time + (step - self.done_step) * self.step_time)
        return busy_until + self.step_time + self.reserve > self.deadline

    def finished(self, step: int, now: float, pace: bool = False) -> None:
        """Step ``step`` is known done at ``now``; with ``pace``, fold the rate since the last one into the pace."""
        if pace and step > self.done_step:
            rate = (now - self.done_time) / (step - self.done_step)
            self.step_time = rate if self.step_time == 0.0 else 0.8 * self.step_time + 0.2 * rate
        self.done_time, self.done_step = now, step


class RunLog:
    """The fit's record: ``metrics.jsonl``, the progress display and the training-loss history."""

    def __init__(self, out: Path, total: int, initial: int, write: bool = True):
        self.file = open(out / "metrics.jsonl" if write else os.devnull, "a")
        self.progress = Progress(total, initial)
        self.history = {"step": [], "loss": [], "psnr": []}

    def line(self, record: dict) -> None:
        self.file.write(json.dumps(record) + "\n")
        self.file.flush()

    def steps(self, fetched: list[tuple[int, dict]]) -> None:
        for s, m in fetched:
            self.history["step"].append(s)
            self.history["loss"].append(float(m["loss"]))
            self.history["psnr"].append(float(m["psnr"]))

    def close(self) -> None:
        self.progress.close()
        self.file.close()


class Progress:
    """tqdm on a terminal; a plain line every ~10 s otherwise (CI logs, pipes)."""

    def __init__(self, total: int, initial: int):
        self.last_print = 0.0
        self.bar = None
        if sys.stderr.isatty():
            from tqdm import tqdm

            self.bar = tqdm(total=total, initial=initial, unit="step", dynamic_ncols=True, smoothing=0.1)

    def update(self, step: int, n: int, info: dict):
        if self.bar is not None:
            self.bar.update(n)
            self.bar.set_postfix(dict(info), refresh=False)
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
            self.bar = None


class StopSignals:
    """SIGTERM and SIGINT while fitting (preemption on a cluster, Ctrl-C): the handler only notes the signal in
    ``received``; the loop checks it between steps (no host sync), finishes the step in flight, checkpoints and
    stops. A second one acts as it would without this handler (SIGTERM ends the process, SIGINT raises
    KeyboardInterrupt). Installed only in the main thread (Python delivers signals there), and not for a signal
    the process was told to ignore (SIGINT in a background job of a shell script)."""

    SIGNALS = (signal.SIGTERM, signal.SIGINT)

    def __init__(self):
        self.received: int | None = None
        self.previous: dict = {}

    def __enter__(self) -> "StopSignals":
        if threading.current_thread() is threading.main_thread():
            self.previous = {sig: signal.signal(sig, self.handle) for sig in self.SIGNALS
                             if signal.getsignal(sig) is not signal.SIG_IGN}
        return self

    def handle(self, signum, frame) -> None:
        self.received = signum
        signal.signal(signum, self.previous.get(signum) or signal.SIG_DFL)

    def __exit__(self, *exc) -> None:
        for sig, handler in self.previous.items():
            signal.signal(sig, handler if handler is not None else signal.SIG_DFL)
        self.previous = {}

    @property
    def name(self) -> str | None:
        """``"SIGTERM"`` / ``"SIGINT"`` once one was received, else None."""
        return None if self.received is None else signal.Signals(self.received).name


class FitLoop:
    """One fit's moving parts (see the module docstring); ``run`` steps, ``finish`` summarises."""

    def __init__(self, cfg: FitConfig, scene: Scene, mesh, start_time: float):
        self.cfg, self.scene, self.mesh, self.out = cfg, scene, mesh, Path(cfg.out)
        tcfg = cfg.train
        self.sampler = samplers.build(cfg.model, Bounds.of(scene.near, scene.far, scene.aabb), tcfg)
        self.graphdef, *state = initial_state(cfg.model, tcfg, self.sampler, scene.aabb, len(scene.splits["train"]))
        self.state = FitState(0, *state)
        tx = make_optimizer(tcfg, cfg.model.pose_refine)
        self.checkpointer = Checkpointer(self.out, keep=tcfg.keep_checkpoints)
        if cfg.resume and self.checkpointer.latest_step() is not None:
            self.resume()
        s = self.state
        s.params, s.opt_state, s.sampler_state = parallel.replicate((s.params, s.opt_state, s.sampler_state), mesh)
        self.data = TrainData.from_scene(scene, tcfg.multiscale, cfg.model.pose_refine, mesh)
        self.train_step = make_train_step(self.graphdef, tx, self.sampler, batch_rays=tcfg.batch_rays,
                                          background=cfg.data.background, seed=tcfg.seed, mesh=mesh,
                                          tx_key=optimizer_settings(tcfg, cfg.model.pose_refine))
        self.update_sampler = make_sampler_update(self.graphdef, self.sampler, mesh)
        self.render_fn = renderer.make_render_fn(self.graphdef, self.sampler, background_rgb(cfg.data.background),
                                                 mesh=mesh)
        self.sampler_key = jax.random.fold_in(jax.random.key(tcfg.seed), SAMPLER_KEY_SALT)
        self.clock = Clock(start_time, start_time + tcfg.time_budget if tcfg.time_budget else math.inf,
                           done_time=time.time(), done_step=s.step)
        self.primary = jax.process_index() == 0  # the process that writes the run's files (not checkpoints: all)
        self.log = RunLog(self.out, tcfg.steps, s.step, write=self.primary)
        self.pending = []  # (step, device metrics, lr) not yet fetched
        self.warmed_up = False
        self.loop_start, self.loop_start_step = time.time(), s.step  # throughput counts from the first sync
        self.last_log_time, self.last_log_step = time.time(), s.step
        self.total_rays = 0.0  # rays that contributed to the loss since the first (compiling) step
        self.val_psnr = None
        self.next_val_time = tcfg.val_every_seconds
        self.signals = StopSignals()
        self.save_failed = False
        self.live = None  # the --viewer, handed parameters after every step

    def resume(self) -> None:
        """Continue from the newest intact checkpoint; damaged newer ones (warned about) are moved aside so the
        resumed fit can write those steps again."""
        step, restored = self.checkpointer.restore(self.state.tree())
        self.state = FitState(step, *from_train_state(restored, self.state.sampler_state))
        newer = [s for s in self.checkpointer.steps() if s > step]
        if newer:
            where = self.checkpointer.set_aside(newer)
            print(f"warning: moved the damaged checkpoint(s) {', '.join(map(str, newer))} to {where}",
                  file=sys.stderr)
        print(f"resuming from step {step}", file=sys.stderr)

    def announce(self) -> None:
        train = self.scene.splits["train"]
        n_params = sum(x.size for x in jax.tree.leaves(self.state.params))
        print(f"fitting {self.scene.source}: {len(train)} train views at {train.cameras.width}x{train.cameras.height}, "
              f"{n_params / 1e6:.2f}M parameters, {self.mesh.size} {self.mesh.devices.flat[0].platform} device(s) "
              f"-> {self.out}", file=sys.stderr)
        devices.announce(self.mesh.devices.flat)

    def run(self) -> str:
        """Step until the steps or the time budget run out, or SIGTERM / SIGINT arrives (:class:`StopSignals`);
        returns why it stopped (``"steps"``, ``"time budget"``, ``"SIGTERM"``, ``"SIGINT"``). A checkpoint of
        the last step is always written, unless writing one failed."""
        tcfg, s = self.cfg.train, self.state
        with self.signals:  # until the last checkpoint is written
            try:
                while s.step < tcfg.steps:
                    if self.signals.received is not None:
                        self.log.progress.write(f"{self.signals.name}: saving a checkpoint of step {s.step}")
                        return self.signals.name
                    if self.clock.out_of_time(s.step, time.time()):
                        return "time budget"
                    self.one_step()
                    if self.live is not None:
                        self.live.update(s.step, s.params, s.sampler_state)
                    if s.step % tcfg.log_every == 0 or s.step == tcfg.steps or not self.warmed_up:
                        self.log_steps()
                    self.maybe_validate()
                    if tcfg.checkpoint_every and s.step % tcfg.checkpoint_every == 0 and s.step < tcfg.steps:
                        self.save()
                return "steps"
            except KeyboardInterrupt:  # a second Ctrl-C
                self.log.progress.write(f"SIGINT: saving a checkpoint of step {s.step}")
                return "SIGINT"
            finally:
                self.log.progress.close()
                if not self.save_failed:  # never try again what the disk refused
                    jax.block_until_ready(s.params)
                    if self.checkpointer.latest_step() != s.step:  # the timing save after step 1 may hold it
                        self.save()
                self.checkpointer.close()

    def one_step(self) -> None:
        """Dispatch one train step (refreshing the sampler's state first when it is due); then wait for the
        step ``QUEUED_STEPS`` behind it, so the host knows the device's pace."""
        tcfg, s = self.cfg.train, self.state
        if self.clock.first_step is None:
            self.clock.first_step = time.time()
        lr = learning_rate(tcfg, s.step, max(s.step / tcfg.steps, self.clock.progress(time.time())))
        if self.sampler.update_due(s.step):
            s.sampler_state = self.update_sampler(s.params, s.sampler_state, jax.random.fold_in(self.sampler_key, s.step))
        s.params, s.opt_state, m = self.train_step(s.params, s.opt_state, s.step, lr, self.data, s.sampler_state)
        s.step += 1
        self.pending.append((s.step, m, lr))
        if len(self.pending) > QUEUED_STEPS and self.warmed_up:
            s_done, m_done, _ = self.pending[-QUEUED_STEPS - 1]
            jax.block_until_ready(m_done["loss"])
            self.clock.finished(s_done, time.time(), pace=True)

    def log_steps(self) -> None:
        """Fetch the pending steps' metrics (a sync), log them and update the progress display. After the
        first (compiling) step, also measure what the end of the fit costs, to keep it within the budget."""
        tcfg, s = self.cfg.train, self.state
        fetched = jax.device_get([p[1] for p in self.pending])
        now = time.time()
        if not self.warmed_up:
            self.warmed_up = True
            self.loop_start, self.loop_start_step = now, s.step
            if tcfg.time_budget:
                val_cost = self.run_validation() if tcfg.val_views else 0.0
                self.clock.reserve = 1.0 + 1.2 * (val_cost + self.save())
        else:
            self.clock.step_time = (now - self.last_log_time) / max(s.step - self.last_log_step, 1)
        self.clock.finished(s.step, now)
        self.total_rays += sum(float(m["rays"]) for (st, _, _), m in zip(self.pending, fetched) if st > self.loop_start_step)
        self.log.steps([(st, m) for (st, _, _), m in zip(self.pending, fetched)])
        last, lr = fetched[-1], self.pending[-1][2]
        info = {"loss": f"{float(last['loss']):.4f}", "psnr": f"{float(last['psnr']):.2f}", "lr": f"{lr:.1e}"}
        if tcfg.time_budget:
            info["left"] = f"{max(self.clock.deadline - now, 0):.0f}s"
        self.log.progress.update(s.step, len(self.pending), info)
        rate = (s.step - self.loop_start_step) / max(now - self.loop_start, 1e-9)
        self.log.line({"step": s.step, "time": now - self.clock.start, "train_time": self.clock.train_seconds(now),
                       "loss": float(last["loss"]), "psnr": float(last["psnr"]), "lr": lr, "steps_per_s": rate,
                       "rays": float(last["rays"]), "samples": int(last["samples"])})
        self.pending = []
        self.last_log_time, self.last_log_step = now, s.step

    def maybe_validate(self) -> None:
        """Validate every ``val_every`` steps, and every ``val_every_seconds`` of training (time-to-quality
        probes: instrumentation, not charged to the budget)."""
        tcfg, step = self.cfg.train, self.state.step
        due = tcfg.val_every and step % tcfg.val_every == 0
        timed = bool(tcfg.val_every_seconds) and self.clock.train_seconds(time.time()) >= self.next_val_time
        if timed:
            while self.next_val_time <= self.clock.train_seconds(time.time()):
                self.next_val_time += tcfg.val_every_seconds
        if (due or timed) and step < tcfg.steps:
            cost = self.run_validation()
            self.clock.reserve = max(self.clock.reserve, 1.0 + 1.2 * cost)
            if timed and not due:
                self.clock.deadline += cost

    def run_validation(self) -> float:
        """Validate now: log the PSNR, write a picture; returns the seconds it took."""
        t0, step = time.time(), self.state.step
        psnr, pairs = validate(self.render_fn, self.state, self.scene, self.cfg, self.cfg.train.val_views)
        if psnr is not None:
            from nerfkit import visualize

            row = np.concatenate([np.concatenate([p, g], axis=1) for p, g in pairs[:2]], axis=0)
            if self.primary:
                visualize.write_png(self.out / "val" / f"step_{step:07d}.png", row)
            self.log.line({"step": step, "time": t0 - self.clock.start, "train_time": self.clock.train_seconds(t0),
                           "val_psnr": psnr, "val_views": len(pairs)})
            self.log.progress.write(f"step {step}: validation PSNR {psnr:.2f} dB ({len(pairs)} views)")
            self.val_psnr = psnr
        self.clock.overhead += time.time() - t0
        if psnr is not None:  # rendering with the parameters waited for them
            self.clock.finished(step, time.time())
        return time.time() - t0

    def save(self) -> float:
        """Checkpoint the current step (waits for it); returns the seconds it took."""
        t0 = time.time()
        try:
            self.checkpointer.save(self.state.step, self.state.tree())
        except InputError:  # a full disk: the fit stops with that error
            self.save_failed = True
            raise
        self.clock.overhead += time.time() - t0
        self.clock.finished(self.state.step, time.time())
        return time.time() - t0

    def finish(self, stop_reason: str) -> dict:
        """Final validation, ``summary.json``, ``training.png`` and a closing line; returns the summary."""
        stopped = stop_reason in ("SIGTERM", "SIGINT")
        if not stopped:
            self.run_validation()
        self.log.close()
        s, now = self.state, time.time()
        train_time = now - self.loop_start
        history = self.log.history
        summary = {"steps": s.step, "stop_reason": stop_reason, "seconds": now - self.clock.start,
                   "steps_per_s": (s.step - self.loop_start_step) / max(train_time, 1e-9),
                   "rays_per_s": self.total_rays / max(train_time, 1e-9), "val_psnr": self.val_psnr,
                   "train_psnr": history["psnr"][-1] if history["psnr"] else None}
        if self.primary:
            (self.out / "summary.json").write_text(json.dumps(summary, indent=2) + "\n")
        if len(history["step"]) > 1 and self.primary:
            from nerfkit import visualize

            visualize.plot_curves(self.out / "training.png", history["step"], {"train PSNR (dB)": history["psnr"]},
                                  xlabel="step", ylabel="PSNR (dB)", title=f"{self.scene.source} — {self.cfg.preset}")
        val = self.val_psnr if self.val_psnr is None else round(self.val_psnr, 2)
        print(f"done: {s.step} steps in {summary['seconds']:.0f}s ({stop_reason}), {summary['rays_per_s']:.0f} "
              f"rays/s, validation PSNR {val} dB -> {self.out}", file=sys.stderr)
        if stopped:
            print(f"stopped by {stop_reason} at step {s.step} of {self.cfg.train.steps}; checkpoint "
                  f"{self.checkpointer.directory / str(s.step)} written: run the same command with --resume to "
                  "continue", file=sys.stderr)
        return summary
