"""Checkpoints with Orbax.

Saves are synchronous (``enable_async_checkpointing=False``) so a checkpoint is complete on disk when
``save`` returns; Orbax writes into a temporary directory and renames it, so a fit killed mid-save leaves
the previous checkpoint intact.
"""

from __future__ import annotations

from pathlib import Path

import jax
import orbax.checkpoint as ocp

from nerfkit.errors import InputError


class Checkpointer:
    """The checkpoints of one run directory (``RUN_DIR/checkpoints/<step>``)."""

    def __init__(self, run_dir: Path, keep: int = 2, create: bool = True):
        self.directory = (Path(run_dir) / "checkpoints").absolute()
        if not create and not self.directory.is_dir():
            raise InputError("no checkpoints/ directory: has `nerfkit fit` written a checkpoint here?", path=run_dir)
        options = ocp.CheckpointManagerOptions(max_to_keep=keep, enable_async_checkpointing=False, create=create)
        self._manager = ocp.CheckpointManager(self.directory, options=options)

    def latest_step(self) -> int | None:
        return self._manager.latest_step()

    def save(self, step: int, state: dict) -> None:
        """Write ``state`` (a pytree of arrays: params, optimiser state) as checkpoint ``step``."""
        self._manager.save(step, args=ocp.args.StandardSave(state), force=True)
        self._manager.wait_until_finished()

    def restore(self, target: dict, step: int | None = None) -> tuple[int, dict]:
        """Restore checkpoint ``step`` (default: the latest) into the structure of ``target``."""
        step = self.latest_step() if step is None else step
        if step is None:
            raise InputError("no checkpoint found", path=self.directory)
        abstract = jax.tree.map(ocp.utils.to_shape_dtype_struct, target)
        return step, self._manager.restore(step, args=ocp.args.StandardRestore(abstract))

    def close(self) -> None:
        self._manager.close()

    def __enter__(self):
        return self

    def __exit__(self, *exc):
        self.close()
