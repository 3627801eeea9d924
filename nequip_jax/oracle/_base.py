"""The labelling-oracle interface: what every labeller returns and how it fails.

An oracle turns structures into reference labels (energy and forces). The paper's active-learning
loop (Zhu et al. 2023, Sec. II D) asks an oracle for the labels of the structures it selects; here
that oracle is either a pre-labelled pool (the paper's setting), GFN2-xTB through tblite, or any
ASE calculator.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any, NamedTuple, Protocol, runtime_checkable

import numpy as np
from ase import Atoms
from ase.calculators.singlepoint import SinglePointCalculator

__all__ = [
    "Labels",
    "Oracle",
    "OracleError",
    "LabellingError",
    "SCFConvergenceError",
    "NotInPoolError",
    "attach_labels",
    "bare_copy",
    "concatenate_labels",
]


class Labels(NamedTuple):
    """Reference labels of a list of structures.

    Attributes:
        energies: [n_frames] total energies in eV.
        forces: n_frames arrays, each [n_atoms_i, 3], in eV/Å (the negative gradient of the
            energy, never projected onto constraints).
    """

    energies: np.ndarray
    forces: list[np.ndarray]


@runtime_checkable
class Oracle(Protocol):
    """A labeller: ``label(atoms_list) -> Labels`` plus a name and a provenance record.

    Implementations must be picklable so that :func:`nequip_jax.oracle.label_parallel` can send
    them to worker processes, and their labels must depend on the geometry alone (not on which
    frames were labelled before), so that parallel and serial labelling agree.
    """

    @property
    def name(self) -> str:
        """Short identifier, e.g. ``"tblite/GFN2-xTB"``."""
        ...

    def label(self, atoms_list: Sequence[Atoms]) -> Labels:
        """Energies [n] (eV) and forces (list of [n_atoms, 3], eV/Å) of ``atoms_list``."""
        ...

    def provenance(self) -> dict[str, Any]:
        """JSON-serialisable record of the method, package versions and settings."""
        ...


class OracleError(RuntimeError):
    """Base class of every error raised by an oracle.

    ``frame`` is the index of the offending structure in the list passed to ``label`` (or ``None``
    when the error is not about one frame). The message always names the cause and a remedy.
    """

    def __init__(self, message: str, frame: int | None = None):
        super().__init__(message)
        self.message = message
        self.frame = frame

    def __reduce__(self):
        # Keep ``frame`` when the error crosses a process boundary (label_parallel).
        return (type(self), (self.message, self.frame))

    def __str__(self) -> str:
        if self.frame is None:
            return self.message
        return f"frame {self.frame}: {self.message}"

    def with_offset(self, offset: int) -> OracleError:
        """The same error with ``frame`` shifted by ``offset`` (chunk index -> global index)."""
        frame = None if self.frame is None else self.frame + offset
        return type(self)(self.message, frame)


class LabellingError(OracleError):
    """The oracle could not label a structure (bad input, calculator failure)."""


class SCFConvergenceError(LabellingError):
    """The self-consistent-field iterations did not converge for a structure."""


class NotInPoolError(OracleError, KeyError):
    """A structure asked of a :class:`PoolOracle` is not among its pre-labelled structures."""

    def __str__(self) -> str:  # KeyError would otherwise print the repr of the message
        return OracleError.__str__(self)


def bare_copy(atoms: Atoms) -> Atoms:
    """A copy of ``atoms`` with no calculator and no constraints (species, positions, cell, pbc,
    info, initial charges and magnetic moments are kept)."""
    out = atoms.copy()
    out.set_constraint()
    out.calc = None
    return out


def attach_labels(atoms_list: Sequence[Atoms], labels: Labels) -> list[Atoms]:
    """Copies of ``atoms_list`` carrying ``labels`` through a SinglePointCalculator.

    Args:
        atoms_list: n_frames structures.
        labels: their labels; ``labels.forces[i]`` must be [len(atoms_list[i]), 3].

    Returns:
        n_frames new Atoms (constraints dropped) whose ``get_potential_energy()`` and
        ``get_forces()`` return the labels.
    """
    if len(labels.energies) != len(atoms_list) or len(labels.forces) != len(atoms_list):
        raise ValueError(
            f"got {len(labels.energies)} energies and {len(labels.forces)} force arrays for "
            f"{len(atoms_list)} structures; pass the labels returned for exactly these structures"
        )
    out = []
    for i, (atoms, energy, forces) in enumerate(
        zip(atoms_list, labels.energies, labels.forces, strict=True)
    ):
        forces = np.asarray(forces, dtype=np.float64)
        if forces.shape != (len(atoms), 3):
            raise ValueError(
                f"frame {i}: forces have shape {forces.shape}, expected ({len(atoms)}, 3); "
                "the labels do not belong to this structure"
            )
        new = bare_copy(atoms)
        new.calc = SinglePointCalculator(new, energy=float(energy), forces=forces.copy())
        out.append(new)
    return out


def concatenate_labels(parts: Sequence[Labels]) -> Labels:
    """Join labels of consecutive chunks, in order."""
    energies = [np.asarray(p.energies, dtype=np.float64).reshape(-1) for p in parts]
    forces = [f for p in parts for f in p.forces]
    joined = np.concatenate(energies) if energies else np.zeros(0, dtype=np.float64)
    return Labels(joined, forces)
