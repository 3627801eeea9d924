"""Neighbour lists within a cutoff radius.

Edge convention used everywhere in the library: an edge carries a message from ``sender`` j to
``receiver`` i, and its vector is ``r_ij = positions[j] - positions[i] + shift`` (Å), where
``shift`` is the Cartesian lattice translation of j (zero for molecules). Edges are ordered by
receiver, then sender, then shift.
"""

from __future__ import annotations

import numpy as np
from ase.neighborlist import primitive_neighbor_list

__all__ = ["neighbour_list"]

# Above this many atoms the dense O(N^2) search is replaced by ase's linear-scaling cell list.
_DENSE_LIMIT = 1500


def neighbour_list(
    positions: np.ndarray,
    r_max: float,
    *,
    cell: np.ndarray | None = None,
    pbc: np.ndarray | tuple[bool, bool, bool] = (False, False, False),
) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """All ordered pairs (i, j), i ≠ j (or periodic images), with ``|r_ij| < r_max``.

    Args:
        positions: [n_atoms, 3] Cartesian positions (Å).
        r_max: cutoff radius (Å), strict.
        cell: [3, 3] lattice vectors as rows (needed only with periodic boundaries).
        pbc: periodicity along each cell vector.

    Returns:
        ``senders`` [n_edges] (j), ``receivers`` [n_edges] (i), ``shifts`` [n_edges, 3] (Å).
    """
    positions = np.asarray(positions, dtype=np.float64)
    pbc = np.asarray(pbc, dtype=bool)
    if r_max <= 0:
        raise ValueError(f"r_max={r_max}: the cutoff must be positive.")
    n = len(positions)
    if not pbc.any() and n <= _DENSE_LIMIT:
        diff = positions[None, :, :] - positions[:, None, :]  # [i, j] = r_j - r_i
        dist2 = np.einsum("ijk,ijk->ij", diff, diff)
        close = dist2 < r_max * r_max
        np.fill_diagonal(close, False)
        receivers, senders = np.nonzero(close)  # row-major: sorted by receiver, then sender
        shifts = np.zeros((len(senders), 3))
        return senders.astype(np.int32), receivers.astype(np.int32), shifts
    if pbc.any() and cell is None:
        raise ValueError("periodic boundaries need a cell.")
    cell_arr = np.zeros((3, 3)) if cell is None else np.asarray(cell, dtype=np.float64)
    if not pbc.any():
        # A bounding box large enough that no image is ever within the cutoff.
        span = positions.max(0) - positions.min(0) + 2 * r_max + 1.0
        cell_arr = np.diag(span)
        positions = positions - positions.min(0) + r_max
    i, j, shift_int = primitive_neighbor_list(
        "ijS", pbc, cell_arr, positions, r_max, self_interaction=False
    )
    order = np.lexsort((shift_int[:, 2], shift_int[:, 1], shift_int[:, 0], j, i))
    i, j, shift_int = i[order], j[order], shift_int[order]
    shifts = shift_int @ cell_arr if pbc.any() else np.zeros((len(i), 3))
    # ase includes the boundary distance; keep the strict inequality used elsewhere.
    vec = positions[j] - positions[i] + shifts
    keep = np.einsum("ek,ek->e", vec, vec) < r_max * r_max
    return j[keep].astype(np.int32), i[keep].astype(np.int32), shifts[keep]
