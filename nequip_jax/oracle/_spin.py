"""Total charge and spin multiplicity of a structure, as an electronic-structure oracle needs them.

Rules, in order of precedence (the first that applies wins):

1. ``atoms.info["charge"]`` / ``atoms.info["multiplicity"]`` (2S + 1) when present.
2. Otherwise the sums of the per-atom ``initial_charges`` / ``initial_magnetic_moments``
   (ASE's own convention; the moment sum is the number of unpaired electrons).
3. Otherwise: charge 0; a single free atom gets its Hund's-rule ground-state multiplicity
   (H 2, C 3, N 4, O 3, ...: isolated atoms are open-shell); a molecule with an even number of
   electrons is a closed-shell singlet and one with an odd number a doublet (the lowest spin the
   electron count allows).
"""

from __future__ import annotations

import numpy as np
from ase import Atoms

__all__ = ["FREE_ATOM_MULTIPLICITY", "total_charge", "spin_multiplicity"]

#: Ground-state spin multiplicity (2S + 1) of neutral free atoms by atomic number (Hund's rules).
FREE_ATOM_MULTIPLICITY: dict[int, int] = {
    1: 2, 2: 1,
    3: 2, 4: 1, 5: 2, 6: 3, 7: 4, 8: 3, 9: 2, 10: 1,
    11: 2, 12: 1, 13: 2, 14: 3, 15: 4, 16: 3, 17: 2, 18: 1,
}  # fmt: skip


def total_charge(atoms: Atoms) -> int:
    """Total charge in units of e (see the module docstring for the rules)."""
    if "charge" in atoms.info:
        charge = atoms.info["charge"]
    else:
        charge = float(np.sum(atoms.get_initial_charges()))
    if abs(charge - round(charge)) > 1e-6:
        raise ValueError(
            f"total charge {charge} is not an integer; set atoms.info['charge'] to an integer"
        )
    return int(round(charge))


def spin_multiplicity(atoms: Atoms) -> int:
    """Spin multiplicity 2S + 1 (see the module docstring for the rules).

    Raises:
        ValueError: if the multiplicity is incompatible with the electron count (a singlet with an
            odd number of electrons, ...), or a free atom beyond argon has no tabulated value.
    """
    n_electrons = int(np.sum(atoms.numbers)) - total_charge(atoms)
    if "multiplicity" in atoms.info:
        mult = int(atoms.info["multiplicity"])
    elif np.any(atoms.get_initial_magnetic_moments() != 0):
        mult = int(round(float(np.sum(atoms.get_initial_magnetic_moments())))) + 1
    elif len(atoms) == 1 and total_charge(atoms) == 0:
        z = int(atoms.numbers[0])
        if z not in FREE_ATOM_MULTIPLICITY:
            raise ValueError(
                f"no tabulated ground-state multiplicity for a free atom with Z = {z}; "
                "set atoms.info['multiplicity'] explicitly"
            )
        mult = FREE_ATOM_MULTIPLICITY[z]
    else:
        mult = 1 if n_electrons % 2 == 0 else 2
    if mult < 1 or (n_electrons - (mult - 1)) % 2 != 0 or mult - 1 > n_electrons:
        raise ValueError(
            f"multiplicity {mult} is impossible with {n_electrons} electrons (charge "
            f"{total_charge(atoms)}); set atoms.info['multiplicity'] (2S+1) or "
            "atoms.info['charge'] to a consistent pair"
        )
    return mult
