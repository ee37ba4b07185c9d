"""Data parallelism on JAX's SPMD machinery: one ``Mesh`` over the devices, axis ``data``.

Parameters, optimizer state, the occupancy grid and the training images are *replicated*; each step's ray
batch (and every rendering chunk) is *sharded* along ``data`` with ``jax.lax.with_sharding_constraint``, so
``jax.jit`` partitions the work and inserts the gradient all-reduce itself. This is the same program as on
one device (random numbers included: JAX's partitionable threefry gives every element the same value
whatever the sharding), which is why a 2-device fit follows the 1-device loss curve up to float rounding.

Multi-host: every process runs the same command with ``--train.distributed``; :func:`initialize` then calls
``jax.distributed.initialize()`` (coordinator, process count and id come from the environment: SLURM,
Open MPI, or ``JAX_COORDINATOR_ADDRESS`` / ``JAX_NUM_PROCESSES`` / ``JAX_PROCESS_ID``), and the mesh spans
the devices of all processes.
"""

from __future__ import annotations

import jax
import numpy as np
from jax.sharding import Mesh, NamedSharding, PartitionSpec as P

from nerfkit.errors import InputError

AXIS = "data"


def initialize(distributed: bool) -> None:
    """Join a multi-process run (once, before any other JAX call touches the devices)."""
    if distributed and not jax.distributed.is_initialized():
        import os

        # JAX reads JAX_COORDINATOR_ADDRESS itself and detects SLURM / Open MPI / TPU pods; the process count
        # and id of a hand-started run come from these two variables.
        kw = {}
        if os.environ.get("JAX_NUM_PROCESSES"):
            kw["num_processes"] = int(os.environ["JAX_NUM_PROCESSES"])
        if os.environ.get("JAX_PROCESS_ID"):
            kw["process_id"] = int(os.environ["JAX_PROCESS_ID"])
        jax.distributed.initialize(**kw)


def make_mesh(num_devices: int = 0) -> Mesh:
    """A 1-D mesh over the first ``num_devices`` devices (0: all of them, across processes)."""
    devices = jax.devices()
    if num_devices < 0 or num_devices > len(devices):
        raise InputError(f"asked for {num_devices} devices, {len(devices)} available", field="--train.devices")
    return Mesh(np.asarray(devices[: num_devices or len(devices)]), (AXIS,))


def replicated(mesh: Mesh) -> NamedSharding:
    return NamedSharding(mesh, P())


def batch_sharding(mesh: Mesh) -> NamedSharding:
    """Leading (batch) axis split across the mesh."""
    return NamedSharding(mesh, P(AXIS))


def shard_batch(x, mesh: Mesh | None):
    """Inside ``jit``: ask for ``x``'s leading axis to be split across ``mesh`` (no-op for one device)."""
    if mesh is None or mesh.size == 1:
        return x
    return jax.lax.with_sharding_constraint(x, batch_sharding(mesh))


def replicate(tree, mesh: Mesh | None):
    """Put a pytree of arrays on every device of ``mesh`` (works across processes; no-op for None)."""
    if mesh is None:
        return tree
    sharding = replicated(mesh)

    def put(x):
        x = np.asarray(x) if not isinstance(x, jax.Array) else x
        if jax.process_count() == 1:
            return jax.device_put(x, sharding)
        host = np.asarray(jax.device_get(x))
        return jax.make_array_from_callback(host.shape, sharding, lambda idx: host[idx])

    return jax.tree.map(put, tree)


def check_batch(batch: int, mesh: Mesh | None, field: str) -> None:
    if mesh is not None and batch % mesh.size:
        raise InputError(f"{batch} is not divisible by the {mesh.size} devices", field=field)


def render_mesh(chunk: int) -> Mesh | None:
    """The mesh ``render`` / ``evaluate`` split chunks over: all devices, or None when there is one (or the
    chunk does not divide evenly)."""
    n = jax.device_count()
    return make_mesh(0) if n > 1 and chunk % n == 0 else None
