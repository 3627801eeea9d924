"""Labels from any ASE calculator (EMT, Lennard-Jones, a DFT code, another ML potential ...)."""

from __future__ import annotations

import dataclasses
import importlib.metadata
from collections.abc import Callable, Sequence
from typing import Any

import numpy as np
from ase import Atoms
from ase.calculators.calculator import Calculator, CalculatorError

from nequip_jax.oracle._base import LabellingError, Labels, bare_copy

__all__ = ["ASECalculatorOracle"]


@dataclasses.dataclass(frozen=True)
class ASECalculatorOracle:
    """Label with an ASE calculator made by ``calculator_factory()``.

    A fresh calculator is made for every structure, so no state (wavefunction guesses, neighbour
    lists) leaks from one frame to the next and labels depend on the geometry alone. Forces are the
    calculator's raw forces: constraints attached to the structures are ignored.

    For :func:`label_parallel` the factory must be picklable: a module-level function or a
    ``functools.partial`` of a calculator class, not a lambda.

    Attributes:
        calculator_factory: zero-argument callable returning an ASE calculator.
        settings: free-form JSON-serialisable description recorded in ``provenance()``.
    """

    calculator_factory: Callable[[], Calculator]
    settings: dict[str, Any] = dataclasses.field(default_factory=dict)

    @property
    def name(self) -> str:
        factory = self.calculator_factory
        inner = getattr(factory, "func", factory)  # functools.partial -> wrapped callable
        return f"ase/{getattr(inner, '__name__', type(inner).__name__)}"

    def provenance(self) -> dict[str, Any]:
        return {
            "oracle": "ASECalculatorOracle",
            "calculator": self.name,
            "factory": repr(self.calculator_factory),
            "package": "ase",
            "package_version": importlib.metadata.version("ase"),
            "settings": dict(self.settings),
        }

    def label(self, atoms_list: Sequence[Atoms]) -> Labels:
        """Energies [n] (eV) and forces (list of [n_atoms, 3], eV/Å).

        Raises:
            LabellingError: the calculator failed on a frame (``err.frame`` names it).
        """
        energies = np.zeros(len(atoms_list), dtype=np.float64)
        forces = []
        for i, atoms in enumerate(atoms_list):
            work = bare_copy(atoms)
            work.calc = self.calculator_factory()
            try:
                energies[i] = work.get_potential_energy()
                forces.append(np.array(work.get_forces(apply_constraint=False), dtype=np.float64))
            except CalculatorError as err:
                raise LabellingError(
                    f"calculator {self.name} failed ({type(err).__name__}: {err}); check the "
                    "structure and the calculator's settings",
                    frame=i,
                ) from err
        return Labels(energies, forces)
