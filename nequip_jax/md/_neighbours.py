"""A fixed-capacity Verlet neighbour list that lives on the device (molecules, no cell).

Edges are the ordered pairs closer than ``cutoff = r_max + skin`` at the last build, stored in
arrays of a static ``capacity`` (masked), so a jitted MD loop never changes shape. The list is
rebuilt inside the loop when an atom has moved more than ``skin / 2`` since the last build: no
pair can come closer than ``r_max`` without one of its atoms moving that far, so no edge the
model needs is missing, and the extra edges between ``r_max`` and ``r_max + skin`` contribute
exactly zero (the cutoff envelope vanishes beyond ``r_max``; Batzner et al. 2022).

A build that finds more pairs than ``capacity`` sets ``overflow``; the loop then stops before
using it and the host rebuilds with a larger capacity. An edge is never dropped.
The build compares all ``n²`` pairs: fine for molecules of up to a few thousand atoms.
"""

from __future__ import annotations

from typing import NamedTuple

import jax
import jax.numpy as jnp
import numpy as np

__all__ = ["Neighbours", "build_neighbours", "needs_rebuild", "capacity_for"]


class Neighbours(NamedTuple):
    """A masked edge list (``senders`` → ``receivers``) with its build record.

    Attributes:
        senders, receivers: [capacity] int32 atom indices (message from sender to receiver).
        mask: [capacity] bool, real edges.
        reference: [n, 3] positions at the build (for the rebuild test).
        count: [] int32, pairs within the cutoff at the build (may exceed ``capacity``).
        overflow: [] bool, ``count > capacity``: the list is incomplete and must not be used.
        builds: [] int32, builds so far (a counter for diagnostics).
    """

    senders: jax.Array
    receivers: jax.Array
    mask: jax.Array
    reference: jax.Array
    count: jax.Array
    overflow: jax.Array
    builds: jax.Array


def build_neighbours(
    positions: jax.Array, cutoff: float, capacity: int, builds: jax.Array | int = 0
) -> Neighbours:
    """All ordered pairs ``i != j`` with ``|r_i − r_j| < cutoff`` (jittable).

    Args:
        positions: [n, 3] (Å).
        cutoff: ``r_max + skin`` (Å).
        capacity: static number of edge slots.
        builds: the build counter to continue from.
    """
    n = positions.shape[0]
    d2 = jnp.sum((positions[:, None, :] - positions[None, :, :]) ** 2, axis=-1)
    within = (d2 < cutoff**2) & ~jnp.eye(n, dtype=bool)
    count = jnp.sum(within, dtype=jnp.int32)
    (flat,) = jnp.nonzero(within.reshape(-1), size=capacity, fill_value=0)
    receivers = (flat // n).astype(jnp.int32)
    senders = (flat % n).astype(jnp.int32)
    mask = jnp.arange(capacity) < count
    return Neighbours(
        senders=jnp.where(mask, senders, 0),
        receivers=jnp.where(mask, receivers, 0),
        mask=mask,
        reference=positions,
        count=count,
        overflow=count > capacity,
        builds=jnp.asarray(builds, jnp.int32) + 1,
    )


def needs_rebuild(positions: jax.Array, neighbours: Neighbours, skin: float) -> jax.Array:
    """[] bool: some atom moved more than ``skin / 2`` since the build."""
    moved2 = jnp.max(jnp.sum((positions - neighbours.reference) ** 2, axis=-1))
    return moved2 > (0.5 * skin) ** 2


def capacity_for(count: int, headroom: float = 1.5, multiple: int = 64) -> int:
    """Edge slots for ``count`` pairs: ``headroom`` × count rounded up to ``multiple``."""
    slots = int(np.ceil(max(count, 1) * headroom / multiple)) * multiple
    return max(slots, multiple)
