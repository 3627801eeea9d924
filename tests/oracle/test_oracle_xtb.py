"""XTBOracle: forces are the gradient of its energies, labels track DFT, errors are clear."""

import numpy as np
import pytest
from ase import Atoms
from ase.build import molecule
from scipy.spatial.transform import Rotation

from nequip_jax.oracle import (
    FREE_ATOM_MULTIPLICITY,
    LabellingError,
    SCFConvergenceError,
    XTBOracle,
    spin_multiplicity,
    total_charge,
)

# SCF energy convergence at accuracy 0.01 is 1e-8 Hartree = 2.7e-7 eV; a central difference with
# h = 1e-3 Å turns that into <= 2 * 2.7e-7 / 2e-3 = 2.7e-4 eV/Å of noise. The O(h^2) truncation
# error is ~1e-5 eV/Å for these molecules. Tolerance: 5e-4 eV/Å.
FD_STEP = 1e-3
FD_TOL = 5e-4


def _central_difference(oracle, atoms, components):
    displaced = []
    for i, c in components:
        for sign in (1.0, -1.0):
            a = atoms.copy()
            a.positions[i, c] += sign * FD_STEP
            displaced.append(a)
    e = oracle.label(displaced).energies.reshape(-1, 2)
    return -(e[:, 0] - e[:, 1]) / (2 * FD_STEP)


@pytest.mark.parametrize("which", ["H2O", "3BPA"])
def test_forces_are_minus_gradient_of_energy(which, dft_frames):
    oracle = XTBOracle(accuracy=0.01)
    if which == "H2O":
        atoms = molecule("H2O")
        components = [(i, c) for i in range(3) for c in range(3)]
    else:
        atoms = dft_frames[3].copy()
        rng = np.random.default_rng(11)
        components = [(int(rng.integers(27)), int(rng.integers(3))) for _ in range(8)]
    forces = oracle.label([atoms]).forces[0]
    fd = _central_difference(oracle, atoms, components)
    analytic = np.array([forces[i, c] for i, c in components])
    np.testing.assert_allclose(analytic, fd, atol=FD_TOL, rtol=0)


def test_rotation_equivariance(dft_frames):
    """E is invariant and F rotates with the molecule (a property of any physical labeller)."""
    atoms = dft_frames[0].copy()
    rot = Rotation.from_euler("zyx", [37.0, -61.0, 112.0], degrees=True).as_matrix()
    turned = atoms.copy()
    turned.positions = atoms.positions @ rot.T
    labels = XTBOracle().label([atoms, turned])
    assert abs(labels.energies[0] - labels.energies[1]) < 1e-6
    np.testing.assert_allclose(labels.forces[0] @ rot.T, labels.forces[1], atol=1e-4)


def test_agrees_with_dft_as_reference_states(dft_frames):
    """GFN2-xTB forces correlate with the wB97X (DFT) forces of 3BPA at r ~ 0.98."""
    frames = dft_frames[:6]
    labels = XTBOracle().label(frames)
    dft = np.concatenate([a.get_forces() for a in frames]).ravel()
    xtb = np.concatenate(labels.forces).ravel()
    assert np.corrcoef(dft, xtb)[0, 1] > 0.9
    # Energies are on another scale (no core electrons), so compare fluctuations only.
    de_dft = np.array([a.get_potential_energy() for a in frames])
    assert np.corrcoef(de_dft, labels.energies)[0, 1] > 0.5
    assert np.all(labels.energies < -1000) and np.all(labels.energies > -1200)


def test_scf_nonconvergence_names_frame_and_remedy():
    with pytest.raises(SCFConvergenceError) as info:
        XTBOracle(max_iterations=2).label([molecule("H2O")])
    assert info.value.frame == 0
    assert "max_iterations" in str(info.value) and "frame 0" in str(info.value)


def test_impossible_spin_is_a_labelling_error():
    water = molecule("H2O")
    water.info["multiplicity"] = 2  # 10 electrons cannot form a doublet
    with pytest.raises(LabellingError, match="multiplicity"):
        XTBOracle().label([molecule("CH4"), water])


_STRUCTURES = {
    "H": lambda: Atoms("H"),
    "C": lambda: Atoms("C"),
    "N": lambda: Atoms("N"),
    "O": lambda: Atoms("O"),
    "H2O": lambda: molecule("H2O"),
    "O2": lambda: molecule("O2"),
    "OH": lambda: Atoms("OH", positions=[[0, 0, 0], [0, 0, 0.97]]),
}


@pytest.mark.parametrize(
    ("name", "info", "expected"),
    [
        ("H", {}, 2),
        ("C", {}, 3),
        ("N", {}, 4),
        ("O", {}, 3),
        ("H2O", {}, 1),
        ("OH", {}, 2),
        ("OH", {"charge": -1}, 1),
        ("O2", {"multiplicity": 3}, 3),
        ("N", {"charge": 1}, 1),  # N+ (6 electrons) is not a neutral free atom: lowest spin
    ],
)
def test_spin_rules(name, info, expected):
    atoms = _STRUCTURES[name]()
    atoms.info.update(info)
    assert spin_multiplicity(atoms) == expected
    assert total_charge(atoms) == info.get("charge", 0)


def test_free_atom_table_is_hund():
    """Unpaired electrons of the neutral ground states, from the electron configurations."""
    unpaired = {1: 1, 2: 0, 3: 1, 4: 0, 5: 1, 6: 2, 7: 3, 8: 2, 9: 1, 10: 0}
    for z, n in unpaired.items():
        assert FREE_ATOM_MULTIPLICITY[z] == n + 1


@pytest.mark.parametrize(("symbol", "uhf"), [("H", 1), ("C", 2), ("N", 3), ("O", 2)])
def test_isolated_atoms_use_their_unpaired_electrons(symbol, uhf):
    """The oracle's free-atom energy equals tblite's low-level API called with uhf by hand."""
    from ase.units import Bohr, Hartree
    from tblite.interface import Calculator

    atoms = Atoms(symbol)
    energy = XTBOracle().label([atoms]).energies[0]
    calc = Calculator("GFN2-xTB", atoms.numbers, atoms.positions / Bohr, 0, uhf)
    calc.set("verbosity", 0)
    reference = calc.singlepoint().get("energy") * Hartree
    assert abs(energy - reference) < 1e-6
