"""Scan geometries: dihedrals on target (ase's get_dihedral), rigid fragments (distances)."""

import ase.io
import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from experiments.xtb_data import scan
from experiments.xtb_data.generate import grid_values
from nequip_jax.oracle import XTBOracle

angles = st.floats(0.0, 359.99, allow_nan=False)


@pytest.fixture(scope="module")
def reference(source_3bpa):
    atoms = ase.io.read(source_3bpa / "train_300K.xyz", 30)
    atoms.calc = None
    return atoms


@pytest.fixture(scope="module")
def bonds(reference):
    return scan.bond_graph(reference)


def test_bond_graph_of_3bpa(bonds, reference):
    """C12H12N2O: H monovalent, the ether O divalent, C at most tetravalent; 27 atoms in one
    molecule with two rings have 27 - 1 + 2 = 28 bonds."""
    degree = bonds.sum(axis=1)
    expected = {1: 1, 6: None, 7: None, 8: 2}  # H monovalent, ether O divalent
    for z, d in zip(reference.numbers, degree, strict=True):
        if expected[z] is not None:
            assert d == expected[z]
    assert degree[reference.numbers == 6].max() <= 4
    assert bonds.sum() // 2 == 28


def test_moving_fragments_are_the_chemical_groups(bonds):
    """Atom order C C C H C O N N H H C H H | C C H H C C C H C H C H H H (O is atom 5)."""
    pyridine_side = set(range(13)) - {5}
    benzyl = set(range(13, 27))
    phenyl = benzyl - {13, 15, 16}  # the CH2 carbon 13 and its hydrogens 15, 16 stay
    assert set(np.flatnonzero(scan.moving_fragment(bonds, 5, 1))) == pyridine_side
    assert set(np.flatnonzero(scan.moving_fragment(bonds, 5, 13))) == benzyl
    assert set(np.flatnonzero(scan.moving_fragment(bonds, 13, 14))) == phenyl


@pytest.mark.parametrize(("a2", "a3", "match"), [(0, 1, "ring"), (0, 26, "not bonded")])
def test_moving_fragment_rejects_ring_and_missing_bonds(bonds, a2, a3, match):
    with pytest.raises(ValueError, match=match):
        scan.moving_fragment(bonds, a2, a3)


@settings(max_examples=30, deadline=None)
@given(alpha=angles, beta=angles, gamma=angles)
def test_builder_hits_target_dihedrals(reference, alpha, beta, gamma):
    atoms = scan.build_scan_geometry(reference, {"alpha": alpha, "beta": beta, "gamma": gamma})
    for name, target in (("alpha", alpha), ("beta", beta), ("gamma", gamma)):
        measured = atoms.get_dihedral(*scan.DIHEDRALS[name])
        assert abs(scan.angle_difference(measured, target)) < 1e-6


@settings(max_examples=20, deadline=None)
@given(name=st.sampled_from(list(scan.DIHEDRALS)), target=angles)
def test_single_rotation_is_rigid_on_each_side(reference, bonds, name, target):
    """Setting one dihedral keeps every distance within the moving and the fixed fragment."""
    a1, a2, a3, a4 = scan.DIHEDRALS[name]
    mask = scan.moving_fragment(bonds, a2, a3)
    atoms = scan.build_scan_geometry(reference, {name: target}, bonds)
    before, after = reference.get_all_distances(), atoms.get_all_distances()
    same_side = mask[:, None] == mask[None, :]
    np.testing.assert_allclose(after[same_side], before[same_side], atol=1e-9)


@settings(max_examples=20, deadline=None)
@given(alpha=angles, beta=angles, gamma=angles)
def test_all_bond_lengths_unchanged(reference, bonds, alpha, beta, gamma):
    atoms = scan.build_scan_geometry(reference, {"alpha": alpha, "beta": beta, "gamma": gamma})
    before, after = reference.get_all_distances(), atoms.get_all_distances()
    np.testing.assert_allclose(after[bonds], before[bonds], atol=1e-9)


def test_angle_difference_wraps():
    np.testing.assert_allclose(
        scan.angle_difference([359.9, 0.1, 180.0], [0.1, 359.9, 0.0]),
        [-0.2, 0.2, -180.0],
        atol=1e-12,
    )


@pytest.mark.parametrize(("step", "n"), [(15, 24), (60, 6), (120, 3)])
def test_grid_values(step, n):
    values = grid_values(step)
    assert len(values) == n and values[0] == 0 and values[-1] == 360 - step


def test_grid_must_divide_360():
    with pytest.raises(ValueError, match="divide"):
        grid_values(7)


def test_clash_detector_finds_the_overlap(reference, bonds):
    """alpha = 0 at beta = 120 puts amine H8 onto methylene H15 (0.25 Å) in this frame."""
    atoms = scan.build_scan_geometry(reference, {"alpha": 0.0, "beta": 120.0, "gamma": 45.0})
    contact = scan.min_nonbonded_contact(atoms, bonds)
    assert {contact.i, contact.j} == {8, 15}
    assert contact.distance == pytest.approx(atoms.get_distance(8, 15))
    assert contact.ratio < 0.6
    assert scan.min_nonbonded_contact(reference, bonds).ratio > 0.6


def test_constrained_relaxation_holds_dihedrals(reference):
    """A few BFGS steps under GFN2-xTB move the atoms but not alpha, beta, gamma, nor the amine
    dihedral (1, 4, 6, 8), which keeps the start geometry's value."""
    targets = np.array([100.0, 150.0, 30.0])
    atoms = scan.build_scan_geometry(reference, dict(zip(scan.DIHEDRALS, targets, strict=True)))
    amine = reference.get_dihedral(1, 4, 6, 8)
    assert abs(scan.angle_difference(atoms.get_dihedral(1, 4, 6, 8), amine)) < 1e-6  # rigid
    result = scan.relax_fixed_dihedrals(atoms, XTBOracle().make_calculator(atoms), max_steps=6)
    assert result.error is None and result.steps == 6
    assert np.abs(result.atoms.positions - atoms.positions).max() > 1e-3
    measured = [result.atoms.get_dihedral(*idx) for idx in scan.DIHEDRALS.values()]
    assert np.abs(scan.angle_difference(measured, targets)).max() < 1e-4
    assert abs(scan.angle_difference(result.atoms.get_dihedral(1, 4, 6, 8), amine)) < 1e-4
    # Holding only alpha, beta, gamma (the free-amine recipe), the same relaxation turns the
    # amine group, and still holds the three scan dihedrals.
    free = scan.relax_fixed_dihedrals(
        atoms, XTBOracle().make_calculator(atoms), max_steps=6, held=tuple(scan.DIHEDRALS)
    )
    assert free.error is None
    assert abs(scan.angle_difference(free.atoms.get_dihedral(1, 4, 6, 8), amine)) > 1e-3
    measured = [free.atoms.get_dihedral(*idx) for idx in scan.DIHEDRALS.values()]
    assert np.abs(scan.angle_difference(measured, targets)).max() < 1e-4
    assert result.atoms.constraints == [] and result.atoms.calc is None
