"""Occupancy grid: skip empty space (the estimator of nerfacc / Instant-NGP, in JAX with static shapes).

A grid of ``R^3`` cells over the scene box holds a running estimate of each cell's density. Rays march in
fixed steps ``dt`` (``march_steps`` steps across the box diagonal); candidate points in unoccupied cells are
dropped and the occupied ones are *compacted* into ``K`` slots per ray, so the field runs on ``B x K``
points whatever the scene. When a ray crosses more than ``K`` occupied candidates (early in training, when
every cell is occupied), every ``s``-th one is kept, ``s = ceil(count / K)``, and each kept point stands for
an interval ``s * dt`` long: coverage of the whole ray is kept, resolution adapts as the grid empties.

Conventions: the grid is a :class:`~nerfkit.types.OccupancyGrid` (``density`` float32 [R, R, R] indexed
[x, y, z]; ``occupied`` bool [R, R, R]); per-sample arrays are [B, K] with a ``mask`` of valid slots, or
packed (:class:`~nerfkit.types.PackedSamples`). This module is the grid's math; the sampler built on it
(its state, update rule and rendering) is :mod:`nerfkit.samplers.occupancy_grid`.
"""

from __future__ import annotations

import math

import jax
import jax.numpy as jnp

from nerfkit.types import OccupancyGrid, PackedSamples


def step_size(aabb, march_steps: int) -> float:
    """Marching step: the box diagonal divided by ``march_steps``.

    >>> round(step_size(((0, 0, 0), (1, 1, 1)), 100), 6)  # sqrt(3) / 100
    0.017321
    """
    lo, hi = aabb
    return float(math.dist(tuple(map(float, lo)), tuple(map(float, hi)))) / march_steps


def cell_index(points: jax.Array, aabb: jax.Array, resolution: int) -> tuple[jax.Array, jax.Array]:
    """Integer cell ``[..., 3]`` of each point and whether it lies inside the box ``[...]``.

    >>> idx, inside = cell_index(jnp.array([[0.1, 0.6, 0.9], [1.5, 0.0, 0.0]]), jnp.array([[0.0] * 3, [1.0] * 3]), 2)
    >>> idx.tolist(), inside.tolist()
    ([[0, 1, 1], [1, 0, 0]], [True, False])
    """
    u = (points - aabb[0]) / (aabb[1] - aabb[0])
    inside = jnp.all((u >= 0.0) & (u < 1.0), axis=-1)
    idx = jnp.clip(jnp.floor(u * resolution).astype(jnp.int32), 0, resolution - 1)
    return idx, inside


def lookup(occupied: jax.Array, points: jax.Array, aabb: jax.Array) -> jax.Array:
    """bool [...]: the point is inside the box and its cell is occupied.

    >>> occupied = jnp.zeros((2, 2, 2), bool).at[1, 1, 1].set(True)
    >>> lookup(occupied, jnp.array([[0.9, 0.9, 0.9], [0.1, 0.1, 0.1]]), jnp.array([[0.0] * 3, [1.0] * 3])).tolist()
    [True, False]
    """
    idx, inside = cell_index(points, aabb, occupied.shape[0])
    return inside & occupied[idx[..., 0], idx[..., 1], idx[..., 2]]


def march(key, origins, directions, t_near, t_far, occupied, aabb, *, dt: float, march_steps: int,
          max_samples: int, randomized: bool):
    """Sample points in occupied cells along each ray.

    Args:
      key: PRNG key (jitter of the march offset when ``randomized``).
      origins, directions: float32 [B, 3] (unit directions); t_near, t_far: float32 [B] (clipped to the box).
      occupied: bool [R, R, R]; aabb: float32 [2, 3].
      dt: marching step; march_steps: candidates per ray (covers the box diagonal); max_samples: K.
    Returns:
      (t_mid float32 [B, K] sample distances, delta float32 [B, K] interval lengths — 0 in empty slots,
      mask bool [B, K] valid slots). Valid slots are sorted by distance.

    >>> aabb = jnp.array([[0.0] * 3, [1.0] * 3])
    >>> o, d = jnp.array([[-1.0, 0.5, 0.5]]), jnp.array([[1.0, 0.0, 0.0]])  # enters the box at t = 1
    >>> occupied = jnp.zeros((2, 2, 2), bool).at[1].set(True)  # only the half x >= 0.5
    >>> t, delta, mask = march(jax.random.key(0), o, d, jnp.array([1.0]), jnp.array([2.0]), occupied, aabb,
    ...                        dt=0.25, march_steps=8, max_samples=4, randomized=False)
    >>> t.tolist(), delta.tolist()  # candidates at 1.125 ... 1.875; the two in the empty half are skipped
    ([[1.625, 1.875, 2.0, 2.0]], [[0.25, 0.25, 0.0, 0.0]])
    """
    b = origins.shape[0]
    t, keep, slot_in_ray, n_kept, stride = _select(key, origins, directions, t_near, t_far, occupied, aabb, dt,
                                                  march_steps, max_samples, randomized)
    slot = jnp.where(keep, slot_in_ray, max_samples)  # K = the drop slot
    rows = jnp.broadcast_to(jnp.arange(b)[:, None], slot.shape)
    t_sel = jnp.zeros((b, max_samples + 1), jnp.float32).at[rows, slot].set(t)[:, :max_samples]
    mask = jnp.arange(max_samples)[None, :] < n_kept[:, None]
    delta = jnp.where(mask, dt * stride[:, None].astype(jnp.float32), 0.0)
    t_sel = jnp.where(mask, t_sel, t_far[:, None])
    return t_sel, delta, mask


def init_grid(resolution: int) -> OccupancyGrid:
    """A fresh grid of ``resolution^3`` cells: density 0, every cell occupied (a young field is sampled
    everywhere until the first updates prune it).

    >>> g = init_grid(4)
    >>> g.density.shape, bool(g.occupied.all())
    ((4, 4, 4), True)
    """
    r = resolution
    return OccupancyGrid(density=jnp.zeros((r, r, r), jnp.float32), occupied=jnp.ones((r, r, r), bool))


def cell_centers(resolution: int, aabb: jax.Array, key=None) -> jax.Array:
    """float32 [R^3, 3] cell centres (jittered uniformly inside each cell when ``key`` is given).

    >>> cell_centers(2, jnp.array([[0.0] * 3, [1.0] * 3]))[:2].tolist()
    [[0.25, 0.25, 0.25], [0.25, 0.25, 0.75]]
    """
    r = jnp.arange(resolution, dtype=jnp.float32)
    ijk = jnp.stack(jnp.meshgrid(r, r, r, indexing="ij"), axis=-1).reshape(-1, 3)
    u = ijk + (0.5 if key is None else jax.random.uniform(key, ijk.shape))
    return aabb[0] + (aabb[1] - aabb[0]) * u / resolution


def update(grid_density: jax.Array, new_density: jax.Array, *, decay: float, dt: float, threshold: float):
    """EMA update (``max(decay * old, new)``) and the occupancy it implies.

    A cell is occupied when its density would make one marching step more than ``threshold`` opaque
    (``1 - exp(-sigma dt) > threshold``) or exceeds the grid's mean density, whichever is lower — so a
    young field that is uniformly dim is not culled away.

    Returns:
      (grid_density float32 [R, R, R], occupied bool [R, R, R]).

    >>> density, occupied = update(jnp.array([10.0, 0.0]), jnp.array([0.0, 0.05]), decay=0.5, dt=0.1, threshold=0.01)
    >>> [round(float(x), 3) for x in density], occupied.tolist()  # occupied above 0.1005 = -log(0.99) / 0.1
    ([5.0, 0.05], [True, False])
    """
    grid_density = jnp.maximum(grid_density * decay, new_density)
    sigma_thresh = -math.log(1.0 - threshold) / dt
    occupied = grid_density > jnp.minimum(jnp.mean(grid_density), sigma_thresh)
    return grid_density, occupied


def _select(key, origins, directions, t_near, t_far, occupied, aabb, dt, march_steps, max_samples, randomized):
    """Shared front of :func:`march` and :func:`march_packed`: candidates, which to keep, their slot."""
    b = origins.shape[0]
    offset = jax.random.uniform(key, (b, 1)) if randomized else jnp.full((b, 1), 0.5)
    t = t_near[:, None] + (jnp.arange(march_steps, dtype=jnp.float32)[None, :] + offset) * dt  # [B, M]
    valid = t < t_far[:, None]
    pts = origins[:, None, :] + t[..., None] * directions[:, None, :]
    occ = valid & lookup(occupied, pts, aabb)
    count = jnp.sum(occ, axis=-1)  # [B]
    stride = jnp.maximum(1, -(-count // max_samples))  # ceil(count / K)
    rank = jnp.cumsum(occ, axis=-1) - 1
    keep = occ & (rank % stride[:, None] == 0)
    n_kept = jnp.minimum(-(-count // stride), max_samples)
    return t, keep, rank // stride[:, None], n_kept, stride


def march_packed(key, origins, directions, t_near, t_far, occupied, aabb, *, dt: float, march_steps: int,
                 max_samples: int, budget: int, randomized: bool):
    """Like :func:`march`, but the samples of all rays are packed into one array of ``budget`` slots.

    Ray ``r``'s samples occupy ``[offset_r, offset_r + n_r)`` in distance order, so a batch costs ``budget``
    field evaluations whatever fraction of its rays hit anything (nerfacc's packed layout). Rays that do
    not fit in the budget are flagged in ``ray_ok``; exclude them from the loss.

    Returns:
      :class:`~nerfkit.types.PackedSamples` of ``budget`` slots.

    >>> aabb = jnp.array([[0.0] * 3, [1.0] * 3])
    >>> o, d = jnp.array([[-1.0, 0.5, 0.5]]), jnp.array([[1.0, 0.0, 0.0]])
    >>> occupied = jnp.zeros((2, 2, 2), bool).at[1].set(True)
    >>> p = march_packed(jax.random.key(0), o, d, jnp.array([1.0]), jnp.array([2.0]), occupied, aabb, dt=0.25,
    ...                  march_steps=8, max_samples=4, budget=3, randomized=False)
    >>> p.t.tolist(), p.ray.tolist(), p.ray_ok.tolist(), int(p.n_samples)  # the third slot is unused
    ([1.625, 1.875, 0.0], [0, 0, 1], [True], 2)
    """
    b = origins.shape[0]
    t, keep, slot_in_ray, n_kept, stride = _select(key, origins, directions, t_near, t_far, occupied, aabb, dt,
                                                  march_steps, max_samples, randomized)
    offsets = jnp.cumsum(n_kept) - n_kept  # exclusive
    slot = jnp.where(keep, offsets[:, None] + slot_in_ray, budget)  # `budget` = the drop slot
    slot = jnp.where(slot < budget, slot, budget)
    rows = jnp.broadcast_to(jnp.arange(b, dtype=jnp.int32)[:, None], slot.shape)
    t_p = jnp.zeros(budget + 1, jnp.float32).at[slot].set(t)[:budget]
    ray_p = jnp.full(budget + 1, b, jnp.int32).at[slot].set(rows)[:budget]
    delta_rows = jnp.broadcast_to((dt * stride.astype(jnp.float32))[:, None], t.shape)
    delta_p = jnp.zeros(budget + 1, jnp.float32).at[slot].set(delta_rows)[:budget]
    ray_ok = offsets + n_kept <= budget
    return PackedSamples(t=t_p, delta=delta_p, ray=ray_p, ray_ok=ray_ok, n_samples=jnp.minimum(jnp.sum(n_kept), budget))


def assign_slots(take: jax.Array, budget: int) -> tuple[jax.Array, jax.Array, jax.Array]:
    """Pack ``take[r]`` consecutive samples of each ray ``r`` into ``budget`` slots, in ray order.

    Rays that do not fit get what is left (possibly nothing) and wait for a later round.

    Args:
      take: int32 [B] samples each ray asks for (>= 0).
      budget: slots, N.
    Returns:
      (taken int32 [B] samples each ray got, ray int32 [N] the ray of each slot (``B`` for unused slots),
      rank int32 [N] the slot's position within its ray's run, 0-based).

    >>> taken, ray, rank = assign_slots(jnp.array([2, 0, 3]), 4)  # ray 2 gets 2 of its 3
    >>> taken.tolist(), ray.tolist(), rank.tolist()
    ([2, 0, 2], [0, 0, 2, 2], [0, 1, 0, 1])
    """
    b = take.shape[0]
    start = jnp.cumsum(take) - take  # exclusive
    taken = jnp.clip(jnp.minimum(take, budget - start), 0, None)
    end = start + taken
    j = jnp.arange(budget, dtype=jnp.int32)
    ray = jnp.searchsorted(end, j, side="right").astype(jnp.int32)  # the first ray whose run ends after j
    rank = j - jnp.take(start, jnp.minimum(ray, b - 1))
    return taken.astype(jnp.int32), ray, rank.astype(jnp.int32)
