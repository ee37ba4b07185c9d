"""Checkpoints with Orbax.

Saves are synchronous (``enable_async_checkpointing=False``) so a checkpoint is complete on disk when
``save`` returns; Orbax writes into a temporary directory and renames it, so a fit killed mid-save leaves
the previous checkpoint intact.
"""

from __future__ import annotations

from pathlib import Path

import jax
import orbax.checkpoint as ocp
from flax import serialization

from nerfkit.errors import InputError

LEGACY_KEYS = {"grid": "sampler"}  # checkpoints written before the Sampler protocol kept the grid as "grid"


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

    def save(self, step: int, state: dict) -> None:
        """Write ``state`` (a pytree of arrays: params, optimiser state) as checkpoint ``step``."""
        self._manager.save(step, args=ocp.args.StandardSave(state), force=True)
        self._manager.wait_until_finished()

    def restore(self, target: dict, step: int | None = None) -> tuple[int, dict]:
        """Restore checkpoint ``step`` (default: the latest) into the structure of ``target``.

        A top-level entry of ``target`` that is None is restored as it was saved (its on-disk structure:
        for what the caller does not need, e.g. the optimiser state when rendering). A checkpoint written
        before an entry was renamed (:data:`LEGACY_KEYS`) restores its old entry under the new name."""
        step = self.latest_step() if step is None else step
        if step is None:
            raise InputError("no checkpoint found", path=self.directory)
        saved = self._manager.item_metadata(step)
        saved = getattr(saved, "tree", saved)
        local = jax.sharding.SingleDeviceSharding(jax.devices()[0])  # unless the target says otherwise

        def struct(x, sharding=None):
            return jax.ShapeDtypeStruct(x.shape, x.dtype, sharding=sharding or getattr(x, "sharding", None) or local)

        def as_saved(key):  # on-disk metadata: its sharding is Orbax's own record, not a jax Sharding
            return jax.tree.map(lambda m: struct(m, local), saved[key])
        # An old entry is restored as it was saved, and the caller reads it under its new name.
        renamed = {new: old for old, new in LEGACY_KEYS.items() if old in saved and new not in saved and new in target}
        abstract = {renamed.get(key, key): as_saved(renamed.get(key, key)) if value is None or key in renamed
                    else jax.tree.map(struct, value) for key, value in target.items()}
        restored = self._manager.restore(step, args=ocp.args.StandardRestore(abstract))
        for new, old in renamed.items():
            restored[new] = restored.pop(old)
        return step, restored

    def close(self) -> None:
        self._manager.close()

    def __enter__(self):
        return self

    def __exit__(self, *exc):
        self.close()
