"""Constrained dihedral scans of 3BPA (the protocol of Kovács et al., JCTC 17, 7696 (2021)).

A grid point (α, β, γ) is built from one reference geometry by rigid rotations of the moving
fragments about the central bonds (``Atoms.set_dihedral`` with a mask computed by cutting the
bond in the bond graph), then relaxed with the three dihedrals held by ``FixInternals``. Because
the start is exactly on target, the constraint only has to *keep* the dihedrals, which it does to
~1e-5 degrees.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any, NamedTuple

import numpy as np
from ase import Atoms
from ase.calculators.calculator import Calculator, CalculatorError
from ase.constraints import FixInternals
from ase.data import covalent_radii
from ase.optimize import BFGS
from scipy.sparse.csgraph import connected_components, shortest_path

from nequip_jax.oracle import single_threaded

#: 0-based atom indices of the 3BPA dihedrals, in the order of ``info["dihedrals"]``.
DIHEDRALS: dict[str, tuple[int, int, int, int]] = {
    "alpha": (13, 5, 1, 4),
    "beta": (1, 5, 13, 14),
    "gamma": (5, 13, 14, 18),
}
#: Dihedrals held during a scan's relaxation: α, β, γ at their grid values and, as in the
#: original DFT scans, the amine dihedral (1, 4, 6, 8) at its value in the start geometry (the
#: α rotation moves the aminopyridine with its NH₂ rigidly, so it is unchanged there).
HELD_DIHEDRALS: dict[str, tuple[int, int, int, int]] = {**DIHEDRALS, "amine": (1, 4, 6, 8)}


class Contact(NamedTuple):
    """Closest non-bonded pair: d_ij / (r_cov_i + r_cov_j), the pair and d_ij in Å."""

    ratio: float
    i: int
    j: int
    distance: float


class RelaxResult(NamedTuple):
    """Outcome of a constrained relaxation.

    ``atoms`` is the final geometry (constraint and calculator removed); ``error`` is ``None`` on
    success, else ``(reason, detail)`` with reason "scf_failed" or "constraint_failed".
    """

    atoms: Atoms
    steps: int
    converged: bool
    error: tuple[str, str] | None


def bond_graph(atoms: Atoms, scale: float = 1.2) -> np.ndarray:
    """Covalent bonds: d_ij < scale * (r_cov_i + r_cov_j) (ASE covalent radii).

    Returns:
        [n_atoms, n_atoms] symmetric bool adjacency, False on the diagonal.
    """
    d = atoms.get_all_distances()
    r = covalent_radii[atoms.numbers]
    bonds = d < scale * (r[:, None] + r[None, :])
    np.fill_diagonal(bonds, False)
    return bonds


def moving_fragment(bonds: np.ndarray, a2: int, a3: int) -> np.ndarray:
    """Atoms on the ``a3`` side of the bond a2-a3: the fragment a dihedral rotation moves.

    Args:
        bonds: [n_atoms, n_atoms] bool adjacency (:func:`bond_graph`).
        a2, a3: the central bond of the dihedral (a1, a2, a3, a4).

    Returns:
        [n_atoms] bool mask, True on a3's side (a3 included, a2 excluded).

    Raises:
        ValueError: a2-a3 is not a bond, or it lies in a ring (cutting it does not split the
            molecule), so no rigid rotation about it exists.
    """
    if not bonds[a2, a3]:
        raise ValueError(
            f"atoms {a2} and {a3} are not bonded in this geometry; a dihedral rotation needs its "
            "central pair bonded (check the atom indices or the bond-length scale)"
        )
    cut = bonds.copy()
    cut[a2, a3] = cut[a3, a2] = False
    _, labels = connected_components(cut, directed=False)
    if labels[a2] == labels[a3]:
        raise ValueError(
            f"the bond {a2}-{a3} is in a ring: cutting it leaves one fragment, so the dihedral "
            "cannot be set by a rigid rotation; choose a dihedral about a non-ring bond"
        )
    return labels == labels[a3]


def angle_difference(a: np.ndarray | float, b: np.ndarray | float) -> np.ndarray:
    """Signed a - b in degrees, wrapped to [-180, 180)."""
    return (np.asarray(a) - np.asarray(b) + 180.0) % 360.0 - 180.0


def measure_dihedrals(
    atoms: Atoms, names: tuple[str, ...] = ("alpha", "beta", "gamma")
) -> np.ndarray:
    """The dihedrals ``names`` (default [α, β, γ]) in degrees, 0-360, from the positions (ase's
    get_dihedral); names are keys of :data:`HELD_DIHEDRALS`."""
    return np.array([atoms.get_dihedral(*HELD_DIHEDRALS[k]) for k in names])


def build_scan_geometry(
    reference: Atoms, targets: Mapping[str, float], bonds: np.ndarray | None = None
) -> Atoms:
    """Rotate the fragments of ``reference`` so that its dihedrals equal ``targets``.

    Each dihedral is set by one rigid rotation about its central bond of the fragment on the
    a3/a4 side (bond lengths and angles unchanged). The three rotations commute in effect: each
    moves only atoms that the other two dihedrals see as a rigid body.

    Args:
        reference: the molecule (3BPA atom order).
        targets: degrees per name in ``DIHEDRALS`` (a subset is fine).
        bonds: the bond graph of ``reference`` (computed when omitted).

    Returns:
        A new Atoms (no calculator, no constraints).
    """
    atoms = reference.copy()
    atoms.set_constraint()
    atoms.calc = None
    bonds = bond_graph(reference) if bonds is None else bonds
    for name in ("beta", "alpha", "gamma"):
        if name not in targets:
            continue
        a1, a2, a3, a4 = DIHEDRALS[name]
        mask = moving_fragment(bonds, a2, a3)
        atoms.set_dihedral(a1, a2, a3, a4, float(targets[name]), mask=mask)
    return atoms


def min_nonbonded_contact(atoms: Atoms, bonds: np.ndarray) -> Contact:
    """The closest pair at least three bonds apart, relative to its covalent-radius sum.

    A ratio well below 1 (e.g. < 0.6: H...H < 0.37 Å) is a steric clash.
    """
    hops = shortest_path(bonds.astype(float), unweighted=True, directed=False)
    d = atoms.get_all_distances()
    r = covalent_radii[atoms.numbers]
    ratio = np.where(hops >= 3, d / (r[:, None] + r[None, :]), np.inf)
    i, j = np.unravel_index(int(np.argmin(ratio)), ratio.shape)
    return Contact(float(ratio[i, j]), int(i), int(j), float(d[i, j]))


def relax_fixed_dihedrals(
    atoms: Atoms,
    calculator: Calculator,
    *,
    fmax: float = 0.05,
    max_steps: int = 500,
    maxstep: float = 0.2,
    epsilon: float = 1e-5,
    held: Sequence[str] = tuple(HELD_DIHEDRALS),
) -> RelaxResult:
    """BFGS relaxation to ``fmax`` (eV/Å, on the constraint-projected forces) holding the
    dihedrals ``held`` (names of :data:`HELD_DIHEDRALS`; default all four: α, β, γ and the
    amine dihedral).

    Runs with the loaded OpenMP/BLAS pools capped at one thread (small molecule; see
    ``nequip_jax.oracle._threads``). The dihedrals are held at their current values by
    ``FixInternals(epsilon=epsilon)`` (degrees). ASE's default epsilon, 1e-7, made the iterative
    constraint projection fail after a step away from a steric clash (the dihedrals share atoms
    and converge linearly); 1e-5 degrees is still four orders of magnitude below the 0.1 degree
    check.

    Returns:
        RelaxResult; a calculator failure (SCF) or a failed constraint projection is returned as
        ``error``, not raised.
    """
    work = atoms.copy()
    work.set_constraint(
        FixInternals(
            dihedrals_deg=[
                [float(work.get_dihedral(*HELD_DIHEDRALS[k])), list(HELD_DIHEDRALS[k])]
                for k in held
            ],
            epsilon=epsilon,
        )
    )
    work.calc = calculator
    optimizer = BFGS(work, logfile=None, maxstep=maxstep)
    error = None
    converged = False
    try:
        with single_threaded():
            converged = bool(optimizer.run(fmax=fmax, steps=max_steps))
    except CalculatorError as err:
        error = ("scf_failed", f"{type(err).__name__}: {err}")
    except ValueError as err:  # FixInternals.adjust_positions did not converge
        error = ("constraint_failed", str(err))
    final = work.copy()
    final.set_constraint()
    final.calc = None
    return RelaxResult(final, int(optimizer.nsteps), converged, error)


def failure(reason: str, detail: str, kept: bool, **where: Any) -> dict[str, Any]:
    """One entry of the failures file."""
    return {"reason": reason, "detail": detail, "kept": kept, **where}
