"""Checkpoints with Orbax, written so that a run is never stranded.

Saves are synchronous (``enable_async_checkpointing=False``) so a checkpoint is complete on disk when
``save`` returns; Orbax writes into a temporary directory and renames it, so a fit killed mid-save leaves
the previous checkpoint intact. A save that fails (a full disk) raises :class:`~nerfkit.errors.InputError`
saying so, removes its partial files and leaves the earlier checkpoints as they were.

Each checkpoint also holds :data:`DIGEST`, the SHA-256 of every file in it, because Orbax restores
garbage bytes in an array file without complaint. :meth:`Checkpointer.restore` takes the newest checkpoint
whose files match their digest and which Orbax can read; each damaged one it passes over (truncated,
missing or changed files) gets one warning line on stderr, and none intact is an ``InputError`` naming the
directory. A checkpoint written before digests were kept is trusted as far as Orbax can read it.
"""

from __future__ import annotations

import errno
import hashlib
import json
import os
import shutil
import sys
from pathlib import Path

import jax
import orbax.checkpoint as ocp
from flax import serialization

from nerfkit.errors import InputError

ITEM = "default"  # the directory of a checkpoint's one item (Orbax's CheckpointManager names it)
LEGACY_KEYS = {"grid": "sampler"}  # checkpoints written before the Sampler protocol kept the grid as "grid"
DIGEST = "nerfkit_sha256.json"  # in each checkpoint directory: relative file path -> SHA-256 of its bytes
TMP_MARK = ".orbax-checkpoint-tmp"  # in the names of Orbax's directories of a save in progress


class DamagedCheckpoint(Exception):
    """A checkpoint that cannot be restored as written; ``str(err)`` says why."""


def file_digests(step_dir: Path) -> dict[str, str]:
    """SHA-256 (hex) of every file under ``step_dir`` except :data:`DIGEST`, by path relative to it."""
    out = {}
    for f in sorted(p for p in step_dir.rglob("*") if p.is_file() and p.name != DIGEST):
        h = hashlib.sha256()
        with open(f, "rb") as fh:
            for block in iter(lambda: fh.read(1 << 20), b""):
                h.update(block)
        out[f.relative_to(step_dir).as_posix()] = h.hexdigest()
    return out


def check_digests(step_dir: Path) -> None:
    """Raise :class:`DamagedCheckpoint` when a file listed in ``step_dir``'s :data:`DIGEST` is missing or
    changed (no digest: nothing to check)."""
    try:
        saved = json.loads((step_dir / DIGEST).read_text())
    except FileNotFoundError:
        return
    except (OSError, ValueError) as e:
        raise DamagedCheckpoint(f"unreadable {DIGEST} ({type(e).__name__})") from None
    now = file_digests(step_dir)
    for name, digest in saved.items():
        if name not in now:
            raise DamagedCheckpoint(f"{name} is missing")
        if now[name] != digest:
            raise DamagedCheckpoint(f"{name} does not match its SHA-256")


def first_line(err: BaseException, limit: int = 160) -> str:
    """The first line of ``str(err)``, at most ``limit`` characters (Orbax's messages run to pages)."""
    return (str(err).splitlines() or [""])[0][:limit]


def is_disk_full(err: BaseException) -> bool:
    """Whether ``err`` (or an exception it was raised from) reports a full disk (``ENOSPC``, or a quota)."""
    while err is not None:
        if getattr(err, "errno", None) in (errno.ENOSPC, errno.EDQUOT) or "No space left on device" in str(err):
            return True
        err = err.__cause__ or err.__context__
    return False


def train_state(params, opt_state, sampler_state) -> dict:
    """The tree a fit checkpoints: parameters, optimiser state and the sampler's state (as a dict)."""
    return {"params": params, "opt_state": opt_state, "sampler": serialization.to_state_dict(sampler_state)}


def from_train_state(tree: dict, sampler_template):
    """(params, opt_state, sampler_state) from a restored :func:`train_state` tree; ``sampler_template`` gives
    the sampler state's type (a stateless sampler ignores what an old checkpoint kept for it)."""
    saved = tree["sampler"]
    keys = serialization.to_state_dict(sampler_template)
    state = serialization.from_state_dict(sampler_template, saved) if keys else sampler_template
    return tree["params"], tree["opt_state"], state


def _unread(leaf) -> bool:
    """A leaf an Orbax partial restore left as it was asked for: not in the checkpoint."""
    return isinstance(leaf, jax.ShapeDtypeStruct)


class Checkpointer:
    """The checkpoints of one run directory (``RUN_DIR/checkpoints/<step>``)."""

    def __init__(self, run_dir: Path, keep: int = 2, create: bool = True):
        self.directory = (Path(run_dir) / "checkpoints").absolute()
        if not create and not self.directory.is_dir():
            raise InputError("no checkpoints/ directory: has `nerfkit fit` written a checkpoint here?", path=run_dir)
        options = ocp.CheckpointManagerOptions(max_to_keep=keep, enable_async_checkpointing=False, create=create)
        self._manager = ocp.CheckpointManager(self.directory, options=options,
                                              item_handlers=ocp.StandardCheckpointHandler())

    def latest_step(self) -> int | None:
        return self._manager.latest_step()

    def steps(self) -> list[int]:
        """The steps of the checkpoints on disk, newest first (intact or not)."""
        return sorted(self._manager.all_steps(), reverse=True)

    def save(self, step: int, state: dict) -> None:
        """Write ``state`` (a pytree of arrays: params, optimiser state) as checkpoint ``step``, with its
        :data:`DIGEST`. A full disk (or another ``OSError``) is an ``InputError``; the partial checkpoint is
        removed and the earlier ones are left as they were."""
        try:
            self._manager.save(step, args=ocp.args.StandardSave(state), force=True)
            self._manager.wait_until_finished()
            if jax.process_index() == 0:  # the files of every process are in place once the save returns
                step_dir = self.directory / str(step)
                tmp = step_dir / (DIGEST + ".tmp")
                tmp.write_text(json.dumps(file_digests(step_dir), indent=0) + "\n")
                os.replace(tmp, step_dir / DIGEST)
        except Exception as e:
            if not (isinstance(e, OSError) or is_disk_full(e)):
                raise
            self._discard_partial(step)
            why = "the disk is full" if is_disk_full(e) else f"{type(e).__name__}: {first_line(e)}"
            kept = ", ".join(map(str, self.steps())) or "none"
            raise InputError(f"could not write checkpoint {step} ({why}); the earlier checkpoints (steps {kept}) are "
                             "intact: make room and continue with --resume", path=self.directory) from None

    def _discard_partial(self, step: int) -> None:
        """Remove what a failed save of ``step`` left: Orbax's temporary directories and the step's own."""
        for p in self.directory.glob("*"):
            if TMP_MARK in p.name or p.name == str(step):
                shutil.rmtree(p, ignore_errors=True)
        self._manager.reload()

    def restore(self, target: dict, step: int | None = None) -> tuple[int, dict]:
        """Restore checkpoint ``step`` (default: the newest intact one) into the structure of ``target``.

        Without ``step``, a damaged checkpoint (see the module docstring) is passed over with one warning
        line on stderr for the one before it; none intact is an ``InputError`` naming the directory. A
        top-level entry of ``target`` that is None is not read and comes back None (what the caller does not
        need: the optimiser state when rendering, two thirds of a fit's checkpoint). A checkpoint written before
        an entry was renamed (:data:`LEGACY_KEYS`) restores its old entry under the new name."""
        candidates = self.steps() if step is None else [step]
        if not candidates:
            raise InputError("no checkpoint found", path=self.directory)
        for s in candidates:
            try:
                return s, self._restore_step(target, s)
            except DamagedCheckpoint as e:
                then = "; trying the one before" if s != candidates[-1] else ""
                print(f"warning: checkpoint {self.directory / str(s)} is damaged ({e}){then}",
                      file=sys.stderr, flush=True)
        raise InputError(f"no intact checkpoint (step{'s' if len(candidates) > 1 else ''} "
                         f"{', '.join(map(str, candidates))} damaged, see the warnings above)", path=self.directory)

    def set_aside(self, steps: list[int]) -> Path:
        """Move checkpoints ``steps`` (damaged ones a resumed fit would overwrite) to ``RUN_DIR/damaged_checkpoints/``
        for a person to look at; returns that directory."""
        dest = self.directory.parent / "damaged_checkpoints"
        dest.mkdir(exist_ok=True)
        for s in steps:
            target, n = dest / str(s), 1
            while target.exists():
                target, n = dest / f"{s}-{n}", n + 1
            shutil.move(str(self.directory / str(s)), str(target))
        self._manager.reload()
        return dest

    def _restore_step(self, target: dict, step: int) -> dict:
        """Checkpoint ``step`` restored into the structure of ``target``; :class:`DamagedCheckpoint` when its
        files do not match their digest or Orbax cannot read it."""
        check_digests(self.directory / str(step))
        try:
            return self._orbax_restore(target, step)
        except Exception as e:  # Orbax and TensorStore report a damaged file in many exception types
            raise DamagedCheckpoint(f"{type(e).__name__}: {first_line(e)}") from e

    def _orbax_restore(self, target: dict, step: int) -> dict:
        local = jax.sharding.SingleDeviceSharding(jax.devices()[0])  # unless the target says otherwise

        def struct(x, sharding=None):
            return jax.ShapeDtypeStruct(x.shape, x.dtype, sharding=sharding or getattr(x, "sharding", None) or local)

        skipped = {key: None for key, value in target.items() if value is None}
        if skipped:  # only what is asked for is read (rendering reads a third of a fit's checkpoint: no Adam moments)
            wanted = {k: jax.tree.map(struct, v) for k, v in target.items() if k not in skipped}
            restored = self._read_part(step, wanted)
            if not any(map(_unread, jax.tree.leaves(restored))):
                return {**restored, **skipped}
            # an entry not on disk under its name (an old checkpoint): read through the metadata, as below
        saved = self._manager.item_metadata(step)
        saved = getattr(saved, "tree", saved)

        def as_saved(key):  # on-disk metadata: its sharding is Orbax's own record, not a jax Sharding
            return jax.tree.map(lambda m: struct(m, local), saved[key])
        # An old entry is restored as it was saved, and the caller reads it under its new name.
        renamed = {new: old for old, new in LEGACY_KEYS.items() if old in saved and new not in saved and new in target}
        abstract = {renamed.get(key, key): as_saved(renamed.get(key, key)) if key in renamed
                    else jax.tree.map(struct, value) for key, value in target.items() if key not in skipped}
        if len(abstract) == len(saved):
            restored = self._manager.restore(step, args=ocp.args.StandardRestore(abstract))
        else:
            restored = self._read_part(step, abstract)
        for new, old in renamed.items():
            restored[new] = restored.pop(old)
        missing = [key for key, value in restored.items() if any(map(_unread, jax.tree.leaves(value)))]
        if missing:
            raise KeyError(f"no {', '.join(missing)} in the checkpoint")
        return {**restored, **skipped}

    def _read_part(self, step: int, abstract: dict) -> dict:
        """The entries of checkpoint ``step`` that ``abstract`` names, nothing else read (an Orbax partial
        restore); an entry not on disk comes back as its ``jax.ShapeDtypeStruct``."""
        with ocp.PyTreeCheckpointer() as reader:
            return reader.restore(self.directory / str(step) / ITEM, args=ocp.args.PyTreeRestore(
                item=abstract, restore_args=ocp.checkpoint_utils.construct_restore_args(abstract),
                partial_restore=True))

    def close(self) -> None:
        self._manager.close()

    def __enter__(self):
        return self

    def __exit__(self, *exc):
        self.close()
