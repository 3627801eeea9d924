"""A fixed-capacity Verlet neighbour list that lives on the device (molecules or a periodic cell).

Edges are the ordered pairs closer than ``cutoff = r_max + skin`` at the last build, stored in
arrays of a static ``capacity`` (masked), so a jitted MD loop never changes shape. The list is
rebuilt inside the loop when an atom has moved more than ``skin / 2`` since the last build: no
pair can come closer than ``r_max`` without one of its atoms moving that far, so no edge the
model needs is missing, and the extra edges between ``r_max`` and ``r_max + skin`` contribute
exactly zero (the cutoff envelope vanishes beyond ``r_max``; Batzner et al. 2022).

A build that finds more pairs than ``capacity`` sets ``overflow``; the loop then stops before
using it and the host rebuilds with a larger capacity. An edge is never dropped.
The build compares all ``n²`` pairs: fine for systems of up to a few thousand atoms.

Periodic cells (all three directions periodic, a fixed cell) use the minimum image: the edge
``i ← j`` carries the shift ``s`` (a lattice vector, Å) that makes ``r_j − r_i + s`` the
shortest image, computed at the build by rounding fractional coordinates and kept until the
next build (so positions are never wrapped). This finds every pair within the cutoff exactly
when the cutoff is below half of every perpendicular width of the cell — then a pair has at
most one image within the cutoff and its fractional coordinates lie in (−½, ½) —
which :func:`check_cell` enforces on the host.
"""

from __future__ import annotations

from typing import NamedTuple

import jax
import jax.numpy as jnp
import numpy as np

from nequip_jax.data import round_up

__all__ = [
    "Neighbours",
    "build_neighbours",
    "needs_rebuild",
    "capacity_for",
    "check_cell",
    "perpendicular_widths",
]


class Neighbours(NamedTuple):
    """A masked edge list (``senders`` → ``receivers``) with its build record.

    Attributes:
        senders, receivers: [capacity] int32 atom indices (message from sender to receiver).
        mask: [capacity] bool, real edges.
        shifts: [capacity, 3] lattice vector of each edge (Å): the edge vector is
            ``positions[senders] − positions[receivers] + shifts`` (zeros for a molecule).
        cell: [3, 3] the periodic cell (rows are lattice vectors, Å; zeros for a molecule).
        reference: [n, 3] positions at the build (for the rebuild test).
        count: [] int32, pairs within the cutoff at the build (may exceed ``capacity``).
        overflow: [] bool, ``count > capacity``: the list is incomplete and must not be used.
        builds: [] int32, builds so far (a counter for diagnostics).
    """

    senders: jax.Array
    receivers: jax.Array
    mask: jax.Array
    shifts: jax.Array
    cell: jax.Array
    reference: jax.Array
    count: jax.Array
    overflow: jax.Array
    builds: jax.Array


def build_neighbours(
    positions: jax.Array,
    cutoff: float,
    capacity: int,
    builds: jax.Array | int = 0,
    cell: jax.Array | None = None,
) -> Neighbours:
    """All ordered pairs ``i != j`` with ``|r_j − r_i + s| < cutoff`` (jittable).

    Args:
        positions: [n, 3] (Å).
        cutoff: ``r_max + skin`` (Å).
        capacity: static number of edge slots.
        builds: the build counter to continue from.
        cell: [3, 3] periodic cell (rows are lattice vectors; periodic in all three
            directions, minimum image, see the module notes), or ``None`` for a molecule.
    """
    n = positions.shape[0]
    # d[i, j] = r_j - r_i: the vector of the edge i <- j (receiver i, sender j).
    d = positions[None, :, :] - positions[:, None, :]
    if cell is None:
        cell = jnp.zeros((3, 3), positions.dtype)
        images = jnp.zeros_like(d)
    else:
        cell = jnp.asarray(cell, positions.dtype)
        images = -jnp.round(d @ jnp.linalg.inv(cell)) @ cell
    d2 = jnp.sum((d + images) ** 2, axis=-1)
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
        shifts=jnp.where(mask[:, None], images.reshape(-1, 3)[flat], 0.0),
        cell=cell,
        reference=positions,
        count=count,
        overflow=count > capacity,
        builds=jnp.asarray(builds, jnp.int32) + 1,
    )


def perpendicular_widths(cell) -> np.ndarray:
    """[3] distances between opposite faces of the cell (Å): ``V / |a_j × a_k|``."""
    cell = np.asarray(cell, np.float64)
    volume = abs(np.linalg.det(cell))
    areas = [np.linalg.norm(np.cross(cell[(k + 1) % 3], cell[(k + 2) % 3])) for k in range(3)]
    return np.array([volume / a if a > 0 else 0.0 for a in areas])


def check_cell(cell, pbc, cutoff: float) -> np.ndarray | None:
    """The cell to simulate (``None`` for a molecule), after checking what the on-device list
    supports: no periodicity, or all three directions periodic with every perpendicular width
    of the cell above ``2 × cutoff``.

    Raises:
        ValueError: periodic in some directions only, a degenerate cell, or a cell too small
            for the minimum image (with the remedy).
    """
    pbc = np.broadcast_to(np.asarray(pbc, bool), (3,))
    if not pbc.any():
        return None
    if not pbc.all():
        raise ValueError(
            f"pbc={pbc.tolist()}: on-device MD takes molecules (no periodicity) or cells "
            "periodic in all three directions; use nequip_jax.calculator.NequIPCalculator with "
            "ASE for slabs and wires."
        )
    widths = perpendicular_widths(cell)
    if not widths.min() > 2.0 * cutoff:
        raise ValueError(
            f"the cell's perpendicular widths {np.round(widths, 3).tolist()} Å are not all "
            f"above 2 × (r_max + skin) = {2 * cutoff:.3f} Å, which the minimum-image neighbour "
            "list needs; repeat the cell (atoms.repeat) or lower the skin."
        )
    return np.asarray(cell, np.float64)


def needs_rebuild(positions: jax.Array, neighbours: Neighbours, skin: float) -> jax.Array:
    """[] bool: some atom moved more than ``skin / 2`` since the build."""
    moved2 = jnp.max(jnp.sum((positions - neighbours.reference) ** 2, axis=-1))
    return moved2 > (0.5 * skin) ** 2


def capacity_for(count: int, headroom: float = 1.5, multiple: int = 64) -> int:
    """Edge slots for ``count`` pairs: ``headroom`` × count rounded up to ``multiple``."""
    return max(round_up(max(count, 1) * headroom, multiple), multiple)
