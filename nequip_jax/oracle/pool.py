"""A pre-labelled pool as an oracle: the paper's active-learning setting.

Zhu et al. (2023, Sec. II D) select structures from a pool whose reference labels already exist
and "query" them; :class:`PoolOracle` returns those stored labels, found by index or by geometry.
"""

from __future__ import annotations

import hashlib
from collections.abc import Sequence
from typing import Any

import numpy as np
from ase import Atoms

from nequip_jax.oracle._base import LabellingError, Labels, NotInPoolError

__all__ = ["PoolOracle"]


def _geometry_key(numbers: np.ndarray, positions: np.ndarray) -> str:
    """Hash of the exact species and float64 positions (a frame's identity in the pool)."""
    h = hashlib.sha256()
    h.update(np.ascontiguousarray(numbers, dtype=np.int64).tobytes())
    h.update(np.ascontiguousarray(positions, dtype=np.float64).tobytes())
    return h.hexdigest()


class PoolOracle:
    """Look up stored labels of pre-labelled structures.

    Geometry matching: first an exact hash of species + positions; otherwise the pool frame with
    the same species sequence whose largest per-coordinate position difference is smallest is
    accepted if that difference is at most ``tolerance`` (Å). No permutation, translation or
    rotation is searched for: a query must be a copy of a pool frame (e.g. read back from a file,
    which rounds positions to ~1e-8 Å).

    Args:
        pool_atoms: n_pool structures, each with energy and forces attached (an ASE
            SinglePointCalculator, as ``ase.io.read`` of an extxyz gives).
        tolerance: largest accepted position difference in Å for a geometry match (default 1e-6).
        source: JSON-serialisable description of where the labels came from (method, file ...),
            recorded in ``provenance()``.
    """

    def __init__(
        self,
        pool_atoms: Sequence[Atoms],
        tolerance: float = 1e-6,
        source: dict[str, Any] | None = None,
    ):
        if tolerance < 0:
            raise ValueError(f"tolerance must be >= 0 Å, got {tolerance}")
        self.tolerance = float(tolerance)
        self.source = dict(source or {})
        self._numbers: list[np.ndarray] = []
        self._positions: list[np.ndarray] = []
        self._energies = np.zeros(len(pool_atoms), dtype=np.float64)
        self._forces: list[np.ndarray] = []
        self._by_key: dict[str, int] = {}
        groups: dict[bytes, list[int]] = {}
        for i, atoms in enumerate(pool_atoms):
            if atoms.calc is None:
                raise ValueError(
                    f"pool frame {i} has no labels (atoms.calc is None); attach energy and "
                    "forces with a SinglePointCalculator or read the pool from an extxyz file "
                    "that contains them"
                )
            try:
                energy = float(atoms.get_potential_energy())
                forces = np.array(atoms.get_forces(apply_constraint=False), dtype=np.float64)
            except Exception as err:
                raise ValueError(
                    f"pool frame {i} lacks an energy or forces ({err}); every pool frame needs both"
                ) from err
            numbers = np.array(atoms.numbers, dtype=np.int64)
            positions = np.array(atoms.positions, dtype=np.float64)
            self._numbers.append(numbers)
            self._positions.append(positions)
            self._energies[i] = energy
            self._forces.append(forces)
            self._by_key.setdefault(_geometry_key(numbers, positions), i)
            groups.setdefault(numbers.tobytes(), []).append(i)
        # Per species sequence: indices [m] and stacked positions [m, n_atoms, 3].
        self._groups = {
            k: (np.array(v), np.stack([self._positions[j] for j in v])) for k, v in groups.items()
        }

    def __len__(self) -> int:
        return len(self._energies)

    @property
    def name(self) -> str:
        return "pool"

    def provenance(self) -> dict[str, Any]:
        h = hashlib.sha256()
        for numbers, positions, energy, forces in zip(
            self._numbers, self._positions, self._energies, self._forces, strict=True
        ):
            h.update(numbers.tobytes())
            h.update(positions.tobytes())
            h.update(np.float64(energy).tobytes())
            h.update(forces.tobytes())
        return {
            "oracle": "PoolOracle",
            "n_pool": len(self),
            "tolerance_angstrom": self.tolerance,
            "pool_sha256": h.hexdigest(),
            "source": self.source,
        }

    def lookup(self, atoms: Atoms, frame: int | None = None) -> int:
        """Index in the pool of the structure matching ``atoms``.

        Raises:
            NotInPoolError: no pool frame has the same species within ``tolerance``; the message
                gives the nearest candidate's distance.
        """
        numbers = np.asarray(atoms.numbers, dtype=np.int64)
        positions = np.asarray(atoms.positions, dtype=np.float64)
        exact = self._by_key.get(_geometry_key(numbers, positions))
        if exact is not None:
            return exact
        group = self._groups.get(numbers.tobytes())
        if group is None:
            raise NotInPoolError(
                f"no pool structure has this species sequence ({atoms.get_chemical_formula()}, "
                f"{len(atoms)} atoms in this order); label it with a real oracle (e.g. "
                "XTBOracle) or add it to the pool",
                frame=frame,
            )
        indices, stacked = group
        deviation = np.max(np.abs(stacked - positions[None]), axis=(1, 2))
        best = int(np.argmin(deviation))
        if deviation[best] > self.tolerance:
            raise NotInPoolError(
                f"geometry not in the pool: the nearest pool frame ({int(indices[best])}) differs "
                f"by up to {deviation[best]:.3g} Å > tolerance {self.tolerance:.3g} Å; label it "
                "with a real oracle (e.g. XTBOracle), add it to the pool, or raise the tolerance "
                "if the positions were rounded on the way",
                frame=frame,
            )
        return int(indices[best])

    def label_indices(self, indices: Sequence[int]) -> Labels:
        """Stored labels of pool frames ``indices``: energies [n] eV, forces n x [n_atoms, 3]."""
        energies = np.zeros(len(indices), dtype=np.float64)
        forces = []
        for k, index in enumerate(indices):
            index = int(index)
            if not -len(self) <= index < len(self):
                raise LabellingError(
                    f"pool index {index} out of range for a pool of {len(self)} structures",
                    frame=k,
                )
            energies[k] = self._energies[index]
            forces.append(self._forces[index].copy())
        return Labels(energies, forces)

    def label(self, atoms_list: Sequence[Atoms]) -> Labels:
        """Stored labels of the pool frames matching ``atoms_list`` by geometry.

        Raises:
            NotInPoolError: a structure is not in the pool (``err.frame`` names it).
        """
        return self.label_indices([self.lookup(a, frame=i) for i, a in enumerate(atoms_list)])
