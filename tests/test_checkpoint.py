"""Tests for nerfkit.checkpoint: an Orbax round trip of params + optimiser state, and errors."""

from __future__ import annotations

from pathlib import Path

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from nerfkit.checkpoint import Checkpointer
from nerfkit.config import TrainConfig
from nerfkit.errors import InputError
from nerfkit.model import build_model
from nerfkit.train_step import make_optimizer

from .conftest import tiny_model

TINY_MODEL = tiny_model()


def _state(seed: int, perturb: float = 0.0) -> dict:
    _, params = build_model(TINY_MODEL, seed)
    tx = make_optimizer(TrainConfig(grad_clip=1.0))
    opt_state = tx.init(params)
    if perturb:  # make the Adam moments non-zero and the count non-trivial
        grads = jax.tree.map(lambda p: jnp.full_like(p, perturb), params)
        _, opt_state = tx.update(grads, opt_state, params)
    return {"params": params, "opt_state": opt_state}


def _assert_same(a, b):
    la, ta = jax.tree.flatten(a)
    lb, tb = jax.tree.flatten(b)
    assert ta == tb
    assert len(la) == len(lb) and len(la) > 0
    for x, y in zip(la, lb):
        assert np.asarray(x).dtype == np.asarray(y).dtype
        np.testing.assert_array_equal(np.asarray(x), np.asarray(y))


def test_round_trip(tmp_path):
    saved = _state(seed=0, perturb=0.3)
    with Checkpointer(tmp_path) as ck:
        assert ck.latest_step() is None
        ck.save(7, saved)
        assert ck.latest_step() == 7
    # A fresh checkpointer (as in another process), restoring into a target with other values.
    target = _state(seed=1)
    with Checkpointer(tmp_path, create=False) as ck:
        assert ck.latest_step() == 7
        step, restored = ck.restore(target)
    assert step == 7
    _assert_same(restored, saved)
    # Sanity: the target really differed.
    assert any(not np.array_equal(np.asarray(a), np.asarray(b))
               for a, b in zip(jax.tree.leaves(target), jax.tree.leaves(saved)))


def test_restoring_without_the_optimiser_reads_only_the_rest(tmp_path, monkeypatch):
    """An entry asked for as None (the optimiser state, when rendering) is not read at all: Orbax is asked
    for the parameters alone (a partial restore) and they equal what was saved."""
    import orbax.checkpoint as ocp

    saved = _state(seed=0, perturb=0.3)
    with Checkpointer(tmp_path) as ck:
        ck.save(2, saved)
    asked = []
    restore = ocp.PyTreeCheckpointer.restore
    monkeypatch.setattr(ocp.PyTreeCheckpointer, "restore",
                        lambda self, path, args: asked.append(sorted(args.item)) or restore(self, path, args=args))
    with Checkpointer(tmp_path, create=False) as ck:
        step, restored = ck.restore({"params": _state(seed=1)["params"], "opt_state": None})
    assert step == 2 and asked == [["params"]] and restored["opt_state"] is None
    _assert_same(restored["params"], saved["params"])


def test_latest_step_and_keep(tmp_path):
    states = {s: _state(seed=s) for s in (2, 4, 6)}
    with Checkpointer(tmp_path, keep=2) as ck:
        for s, st in states.items():
            ck.save(s, st)
        assert ck.latest_step() == 6
        step, restored = ck.restore(_state(seed=0), step=4)
    assert step == 4
    _assert_same(restored, states[4])
    kept = sorted(int(p.name) for p in (tmp_path / "checkpoints").iterdir() if p.name.isdigit())
    assert kept == [4, 6]


def test_restore_without_checkpoint_raises(tmp_path):
    with Checkpointer(tmp_path) as ck:
        with pytest.raises(InputError, match="no checkpoint"):
            ck.restore(_state(seed=0))
    with pytest.raises(InputError, match="checkpoints"):
        Checkpointer(tmp_path / "elsewhere", create=False)


@pytest.mark.parametrize("grid_resolution", [1, 4])
def test_checkpoint_from_before_the_sampler_state_still_restores(tmp_path, grid_resolution):
    """Checkpoints written before the sampler interface kept the occupancy grid under "grid" (a 1^3 placeholder
    for the hierarchical sampler): they restore into today's layout, and an entry asked for as None is not
    read and comes back None (the optimiser state, which rendering does not need)."""
    from nerfkit.checkpoint import from_train_state, train_state
    from nerfkit.types import NoState, OccupancyGrid

    saved = _state(seed=0, perturb=0.3)
    r = grid_resolution
    density = jnp.arange(r ** 3, dtype=jnp.float32).reshape(r, r, r)
    legacy = {**saved, "grid": {"density": density, "occupied": density > 1.0}}
    with Checkpointer(tmp_path) as ck:
        ck.save(3, legacy)
    template = OccupancyGrid(density=jnp.zeros((r, r, r)), occupied=jnp.ones((r, r, r), bool)) if r > 1 else NoState()
    with Checkpointer(tmp_path, create=False) as ck:
        step, restored = ck.restore(train_state(_state(seed=1)["params"], None, template))
    params, opt_state, state = from_train_state(restored, template)
    assert step == 3
    _assert_same(params, saved["params"])
    assert opt_state is None
    if r > 1:
        np.testing.assert_array_equal(np.asarray(state.density), np.asarray(density))
        np.testing.assert_array_equal(np.asarray(state.occupied), np.asarray(density > 1.0))
    else:
        assert state == NoState()


# ------------------------------------------------------------------------------ damaged checkpoints, full disk
def _largest_file(step_dir: Path) -> Path:
    return max((p for p in step_dir.rglob("*") if p.is_file()), key=lambda p: p.stat().st_size)


def _truncate(step_dir: Path) -> None:  # what a full disk or an interrupted copy leaves
    f = _largest_file(step_dir)
    f.write_bytes(f.read_bytes()[: f.stat().st_size // 2])


def _delete(step_dir: Path) -> None:
    _largest_file(step_dir).unlink()


def _garbage(step_dir: Path) -> None:  # same size, other bytes: Orbax alone restores these without complaint
    f = _largest_file(step_dir)
    b = bytearray(f.read_bytes())
    mid = len(b) // 2
    b[mid:mid + 16] = bytes((x + 1) % 256 for x in b[mid:mid + 16])
    f.write_bytes(bytes(b))


DAMAGE = {"truncate": _truncate, "delete": _delete, "garbage": _garbage}


def damage_checkpoint(step_dir: Path, how: str) -> None:
    """Damage checkpoint directory ``step_dir`` in one of the ways of :data:`DAMAGE`."""
    DAMAGE[how](Path(step_dir))


@pytest.mark.parametrize("how", DAMAGE)
def test_damaged_newest_checkpoint_falls_back_with_a_warning(tmp_path, how, capsys):
    states = {s: _state(seed=s) for s in (2, 4)}
    with Checkpointer(tmp_path, keep=3) as ck:
        for s, st in states.items():
            ck.save(s, st)
    damage_checkpoint(tmp_path / "checkpoints" / "4", how)
    capsys.readouterr()
    with Checkpointer(tmp_path, create=False) as ck:
        step, restored = ck.restore(_state(seed=0))
    assert step == 2
    _assert_same(restored, states[2])
    warning = capsys.readouterr().err.strip().splitlines()
    assert len(warning) == 1 and warning[0].startswith("warning: checkpoint ")
    assert str(tmp_path / "checkpoints" / "4") in warning[0] and "damaged" in warning[0]


def test_no_intact_checkpoint_is_one_error_naming_the_directory(tmp_path, capsys):
    with Checkpointer(tmp_path, keep=3) as ck:
        for s in (2, 4):
            ck.save(s, _state(seed=s))
    for s in (2, 4):
        damage_checkpoint(tmp_path / "checkpoints" / str(s), "garbage")
    with Checkpointer(tmp_path, create=False) as ck:
        with pytest.raises(InputError, match="no intact checkpoint") as err:
            ck.restore(_state(seed=0))
    assert str(tmp_path / "checkpoints") in str(err.value) and "\n" not in str(err.value)
    assert len(capsys.readouterr().err.strip().splitlines()) == 2  # a warning for each


def test_full_disk_while_saving_leaves_the_earlier_checkpoints(tmp_path, monkeypatch):
    import errno

    import orbax.checkpoint as ocp

    saved = _state(seed=2)
    with Checkpointer(tmp_path, keep=1) as ck:  # keep=1: the failed save must not have removed step 2 either
        ck.save(2, saved)

        def full_disk(self, directory, *args, **kwargs):  # Orbax's temporary directory exists by now
            (Path(directory) / "partial").write_bytes(b"\0" * 10)
            raise OSError(errno.ENOSPC, "No space left on device")

        monkeypatch.setattr(ocp.StandardCheckpointHandler, "async_save", full_disk)
        monkeypatch.setattr(ocp.StandardCheckpointHandler, "save", full_disk)
        with pytest.raises(InputError, match="could not write checkpoint 4 .the disk is full.") as err:
            ck.save(4, _state(seed=4))
        assert "steps 2" in str(err.value) and "--resume" in str(err.value)
    monkeypatch.undo()
    assert sorted(p.name for p in (tmp_path / "checkpoints").iterdir()) == ["2"]  # no partial files left
    with Checkpointer(tmp_path, create=False) as ck:
        step, restored = ck.restore(_state(seed=0))
    assert step == 2
    _assert_same(restored, saved)


def test_an_entry_missing_from_every_checkpoint_is_one_error(tmp_path):
    """Asking for an entry no checkpoint has (with the optimiser state left unread, the partial-restore path)
    is the one-line error naming the directory, never a tree of unfilled shapes handed back."""
    with Checkpointer(tmp_path) as ck:
        ck.save(1, {"params": _state(seed=0)["params"]})
    with Checkpointer(tmp_path, create=False) as ck, pytest.raises(InputError, match="no intact checkpoint"):
        ck.restore({"params": _state(seed=1)["params"], "sampler": {"d": jnp.zeros(3)}, "opt_state": None})
