"""GFN2-xTB labels through tblite (Bannwarth, Ehlert, Grimme, JCTC 15, 1652 (2019)).

tblite is imported lazily, inside the methods, so that importing :mod:`nequip_jax.oracle` neither
needs tblite nor loads its OpenMP runtime before :func:`label_parallel` has made the workers
single-threaded (default threading made a 3BPA relaxation 20-50x slower on a 2-core machine, see
:mod:`nequip_jax.oracle._threads`).
"""

from __future__ import annotations

import dataclasses
import importlib.metadata
from collections.abc import Sequence
from typing import Any

import numpy as np
from ase import Atoms
from ase.calculators.calculator import CalculationFailed, InputError

from nequip_jax.oracle._base import LabellingError, Labels, SCFConvergenceError, bare_copy
from nequip_jax.oracle._spin import spin_multiplicity, total_charge
from nequip_jax.oracle._threads import single_threaded

__all__ = ["XTBOracle", "tblite_version"]

_REMEDY_SCF = (
    "raise max_iterations, raise electronic_temperature (smearing helps near-degenerate "
    "states), or check the geometry for clashes and the charge/multiplicity "
    "(atoms.info['charge'], atoms.info['multiplicity'])"
)


def tblite_version() -> str:
    """Installed tblite version, or a message saying it is missing."""
    try:
        return importlib.metadata.version("tblite")
    except importlib.metadata.PackageNotFoundError:
        return "not installed"


def _tblite_ase():
    """The ``tblite.ase`` module, imported on first use."""
    try:
        import tblite.ase
    except ImportError as err:  # pragma: no cover - depends on the environment
        raise ImportError(
            "XTBOracle needs tblite; install it with `pip install tblite` (it is in the "
            "'experiments' extra of nequip-jax)"
        ) from err
    return tblite.ase


@dataclasses.dataclass(frozen=True)
class XTBOracle:
    """Tight-binding labels (energy in eV, forces in eV/Å) from tblite's ASE calculator.

    Computation is single-threaded (one process per core is faster for small molecules; see
    :mod:`nequip_jax.oracle._threads`). Every structure is computed by a fresh calculator from the
    superposition-of-atomic-densities guess, so a label depends on the geometry only, never on the
    frames labelled before it (reusing the previous wavefunction changes energies by ~1e-8 eV and
    would make parallel and serial labelling differ).

    Charge and multiplicity come from each structure (``atoms.info["charge"]``,
    ``atoms.info["multiplicity"]``; default neutral, closed shell, free atoms in their Hund's-rule
    ground state; see :mod:`nequip_jax.oracle._spin`).

    Attributes:
        method: tblite Hamiltonian, "GFN2-xTB" (default) or "GFN1-xTB" / "IPEA1-xTB".
        accuracy: tblite numerical accuracy; smaller is tighter (SCF energy convergence
            1e-6 * accuracy Hartree). Default 1.0, tblite's and xtb's default.
        electronic_temperature: Fermi smearing temperature in K (default 300, tblite's default).
        max_iterations: SCF iteration cap (default 250); reaching it raises
            :class:`SCFConvergenceError`.
    """

    method: str = "GFN2-xTB"
    accuracy: float = 1.0
    electronic_temperature: float = 300.0
    max_iterations: int = 250

    def __post_init__(self):
        if self.accuracy <= 0:
            raise ValueError(f"accuracy must be positive, got {self.accuracy}")
        if self.electronic_temperature < 0:
            raise ValueError(
                f"electronic_temperature must be >= 0 K, got {self.electronic_temperature}"
            )
        if self.max_iterations < 1:
            raise ValueError(f"max_iterations must be >= 1, got {self.max_iterations}")

    @property
    def name(self) -> str:
        return f"tblite/{self.method}"

    def provenance(self) -> dict[str, Any]:
        return {
            "oracle": "XTBOracle",
            "method": self.method,
            "package": "tblite",
            "package_version": tblite_version(),
            "accuracy": self.accuracy,
            "electronic_temperature_K": self.electronic_temperature,
            "max_iterations": self.max_iterations,
            "spin_polarization": None,
            "initial_guess": "sad (fresh calculator per structure)",
            "charge_multiplicity": (
                "atoms.info['charge'/'multiplicity'], else initial charges/magmoms, else neutral; "
                "closed shell (even electrons) / doublet (odd); free atoms: Hund's rule"
            ),
        }

    def make_calculator(self, atoms: Atoms):
        """A configured ``tblite.ase.TBLite`` for ``atoms`` (its charge and multiplicity).

        Use it for relaxations (the calculator reuses its wavefunction between steps), in a
        single-threaded worker or inside :func:`nequip_jax.oracle.single_threaded` entered
        *after* this call (thread caps only reach libraries already loaded).
        """
        return _tblite_ase().TBLite(
            method=self.method,
            accuracy=self.accuracy,
            electronic_temperature=self.electronic_temperature,
            max_iterations=self.max_iterations,
            charge=total_charge(atoms),
            multiplicity=spin_multiplicity(atoms),
            verbosity=0,
        )

    def label(self, atoms_list: Sequence[Atoms]) -> Labels:
        """Energies [n] (eV) and unconstrained forces (list of [n_atoms, 3], eV/Å).

        Raises:
            SCFConvergenceError: the SCF of a frame did not converge (``err.frame`` names it).
            LabellingError: tblite rejected a frame (e.g. inconsistent charge/multiplicity).
        """
        _tblite_ase()  # load the library before capping its threads
        with single_threaded():
            return self._label(atoms_list)

    def _label(self, atoms_list: Sequence[Atoms]) -> Labels:
        energies = np.zeros(len(atoms_list), dtype=np.float64)
        forces = []
        for i, atoms in enumerate(atoms_list):
            try:
                calc = self.make_calculator(atoms)
            except ValueError as err:
                raise LabellingError(f"{err}", frame=i) from err
            work = bare_copy(atoms)
            try:
                energies[i] = calc.get_potential_energy(work)
                forces.append(np.array(calc.get_forces(work), dtype=np.float64))
            except CalculationFailed as err:
                if "converge" in str(err).lower():
                    raise SCFConvergenceError(
                        f"{self.method} SCF did not converge within {self.max_iterations} "
                        f"iterations (tblite: {err}); remedy: {_REMEDY_SCF}",
                        frame=i,
                    ) from err
                raise LabellingError(
                    f"{self.method} calculation failed (tblite: {err}); remedy: {_REMEDY_SCF}",
                    frame=i,
                ) from err
            except InputError as err:
                raise LabellingError(
                    f"tblite rejected the input ({err}); check atoms.info['charge'] and "
                    "atoms.info['multiplicity'] and that every element is supported by "
                    f"{self.method}",
                    frame=i,
                ) from err
        return Labels(energies, forces)
