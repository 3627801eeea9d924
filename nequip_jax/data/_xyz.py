"""Reading and validating labelled structures from extended-XYZ files.

Every structure that enters the library passes through :func:`validate_structures`, so a bad
frame is reported once, at the boundary, with the file and frame index, instead of turning into
a NaN deep inside a jitted function.
"""

from __future__ import annotations

import os
from collections.abc import Sequence

import ase
import ase.io
import numpy as np

__all__ = ["DataError", "read_structures", "validate_structures", "min_pair_distance"]

#: Two atoms closer than this (Å) are treated as "at the same position".
MIN_DISTANCE = 0.1


class DataError(ValueError):
    """A structure file or frame cannot be used; the message names the file, frame and remedy."""


def _where(source: str, frame: int | None) -> str:
    return f"{source}, frame {frame}" if frame is not None else source


def min_pair_distance(positions: np.ndarray) -> tuple[float, int, int]:
    """Smallest interatomic distance of a non-periodic structure.

    Args:
        positions: [n_atoms, 3] Cartesian positions (Å).

    Returns:
        ``(distance, i, j)`` of the closest pair (``(inf, -1, -1)`` for fewer than two atoms).
    """
    n = len(positions)
    if n < 2:
        return float("inf"), -1, -1
    best = (float("inf"), -1, -1)
    # Blocks of rows keep memory at O(block * n) for large structures.
    block = max(1, min(n, 2_000_000 // n))
    for start in range(0, n, block):
        rows = np.arange(start, min(start + block, n))
        diff = positions[rows, None, :] - positions[None, :, :]
        dist = np.sqrt(np.einsum("abk,abk->ab", diff, diff))
        dist[np.arange(n)[None, :] <= rows[:, None]] = np.inf  # each pair once, no self pairs
        a, b = divmod(int(np.argmin(dist)), n)
        if dist[a, b] < best[0]:
            best = (float(dist[a, b]), int(rows[a]), int(b))
    return best


def validate_structures(
    structures: Sequence[ase.Atoms],
    source: str,
    *,
    require_energy: bool = True,
    require_forces: bool = True,
    min_distance: float = MIN_DISTANCE,
) -> None:
    """Check labelled structures and raise :class:`DataError` on the first bad frame.

    Checks: at least one frame; every frame has atoms; energy (and forces) present and finite;
    positions finite; no two atoms closer than ``min_distance`` Å.

    Args:
        structures: the frames to check.
        source: file name (or other description) used in error messages.
        require_energy: a frame without an energy is an error.
        require_forces: a frame without forces is an error.
        min_distance: smallest allowed interatomic distance (Å).
    """
    if len(structures) == 0:
        raise DataError(f"{source}: the file holds no structures; check that it is the right file.")
    for index, atoms in enumerate(structures):
        where = _where(source, index)
        if len(atoms) == 0:
            raise DataError(f"{where}: the frame has no atoms; remove it from the file.")
        positions = atoms.get_positions()
        if not np.all(np.isfinite(positions)):
            raise DataError(f"{where}: positions contain NaN or infinite values; fix the file.")
        calc = atoms.calc
        results = getattr(calc, "results", {}) if calc is not None else {}
        if require_energy:
            if "energy" not in results:
                raise DataError(
                    f"{where}: the frame has no energy; every frame needs `energy=` on its comment "
                    "line (eV)."
                )
            if not np.isfinite(results["energy"]):
                raise DataError(
                    f"{where}: the energy is {results['energy']}; fix or drop the frame."
                )
        if require_forces:
            if "forces" not in results:
                raise DataError(
                    f"{where}: the frame has no forces; every frame needs a `forces:R:3` column "
                    "(eV/Å)."
                )
            forces = np.asarray(results["forces"])
            if forces.shape != (len(atoms), 3):
                raise DataError(
                    f"{where}: forces have shape {forces.shape}, expected ({len(atoms)}, 3)."
                )
            if not np.all(np.isfinite(forces)):
                raise DataError(f"{where}: forces contain NaN or infinite values; fix the file.")
        if not np.any(atoms.pbc):
            distance, i, j = min_pair_distance(positions)
            if distance < min_distance:
                raise DataError(
                    f"{where}: atoms {i} and {j} are {distance:.3g} Å apart (minimum "
                    f"{min_distance} Å); the frame is corrupt or duplicated atoms; remove them."
                )


def read_structures(
    path: str | os.PathLike,
    *,
    require_energy: bool = True,
    require_forces: bool = True,
    min_distance: float = MIN_DISTANCE,
) -> list[ase.Atoms]:
    """Read every frame of an extended-XYZ file and validate it.

    Energy and forces are read through ASE (a ``SinglePointCalculator``), so
    ``atoms.get_potential_energy()`` and ``atoms.get_forces()`` return the labels.

    Args:
        path: the ``.xyz``/``.extxyz`` file.
        require_energy, require_forces, min_distance: see :func:`validate_structures`.

    Returns:
        the frames, in file order.

    Raises:
        FileNotFoundError: the file does not exist.
        DataError: the file is empty, cannot be parsed, or a frame is invalid.
    """
    path = os.fspath(path)
    if not os.path.isfile(path):
        raise FileNotFoundError(f"{path}: no such file; check the path or the data root.")
    if os.path.getsize(path) == 0:
        raise DataError(f"{path}: the file is empty; re-download or regenerate it.")
    try:
        structures = ase.io.read(path, index=":", format="extxyz")
    except Exception as err:  # ase raises many exception types for malformed files
        raise DataError(f"{path}: cannot be parsed as extended XYZ ({err}).") from err
    validate_structures(
        structures,
        path,
        require_energy=require_energy,
        require_forces=require_forces,
        min_distance=min_distance,
    )
    return structures
