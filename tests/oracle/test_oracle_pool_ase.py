"""PoolOracle returns exactly the stored labels; ASECalculatorOracle matches a closed form."""

import functools

import ase.io
import numpy as np
import pytest
from ase import Atoms
from ase.calculators.lj import LennardJones
from ase.calculators.singlepoint import SinglePointCalculator
from ase.constraints import FixAtoms
from hypothesis import given, settings
from hypothesis import strategies as st

from nequip_jax.oracle import (
    ASECalculatorOracle,
    Labels,
    NotInPoolError,
    Oracle,
    PoolOracle,
    attach_labels,
)


@pytest.fixture(scope="module")
def pool_frames(dft_frames):
    return dft_frames[:10]


@pytest.fixture(scope="module")
def pool(pool_frames):
    return PoolOracle(pool_frames, source={"method": "wB97X/6-31G(d)"})


def test_pool_is_an_oracle(pool):
    assert isinstance(pool, Oracle)
    assert pool.provenance()["n_pool"] == 10


@settings(max_examples=20, deadline=None)
@given(indices=st.lists(st.integers(0, 9), min_size=1, max_size=8))
def test_label_indices_returns_stored_labels(pool, pool_frames, indices):
    labels = pool.label_indices(indices)
    for k, i in enumerate(indices):
        assert labels.energies[k] == pool_frames[i].get_potential_energy()
        np.testing.assert_array_equal(labels.forces[k], pool_frames[i].get_forces())


def test_label_by_geometry_after_file_round_trip(pool, pool_frames, tmp_path):
    """Positions rounded to 1e-8 Å by extxyz still match; order of the query is kept."""
    order = [7, 2, 2, 9, 0]
    path = tmp_path / "q.xyz"
    ase.io.write(path, [pool_frames[i] for i in order], format="extxyz")
    queries = ase.io.read(path, ":")
    for q in queries:
        q.calc = None
    labels = pool.label(queries)
    for k, i in enumerate(order):
        assert labels.energies[k] == pool_frames[i].get_potential_energy()
        np.testing.assert_array_equal(labels.forces[k], pool_frames[i].get_forces())


@pytest.mark.parametrize("change", ["moved", "species", "size"])
def test_unknown_geometry_raises_naming_frame(pool, pool_frames, change):
    bad = pool_frames[4].copy()
    if change == "moved":
        bad.positions[3] += [0.0, 1e-3, 0.0]
    elif change == "species":
        bad.numbers[0] = 14
    else:
        bad = bad[:-1]
    with pytest.raises(NotInPoolError) as info:
        pool.label([pool_frames[1], pool_frames[2], bad])
    assert info.value.frame == 2 and "frame 2" in str(info.value)


def test_pool_frame_without_labels_is_rejected(pool_frames):
    bare = pool_frames[0].copy()
    with pytest.raises(ValueError, match="no labels"):
        PoolOracle([pool_frames[1], bare])


def test_attach_labels_round_trip(pool_frames):
    rng = np.random.default_rng(0)
    labels = Labels(rng.normal(size=3), [rng.normal(size=(27, 3)) for _ in range(3)])
    attached = attach_labels(pool_frames[:3], labels)
    back = PoolOracle(attached).label_indices([0, 1, 2])
    np.testing.assert_array_equal(back.energies, labels.energies)
    for a, b in zip(back.forces, labels.forces, strict=True):
        np.testing.assert_array_equal(a, b)


def _lj_dimer(r, sigma, epsilon, rc):
    """Closed form of ASE's (shifted, unsmoothed) Lennard-Jones pair: energy and dE/dr."""

    def pair(x):
        return 4 * epsilon * ((sigma / x) ** 12 - (sigma / x) ** 6)

    dedr = 4 * epsilon * (-12 * sigma**12 / r**13 + 6 * sigma**6 / r**7)
    return pair(r) - pair(rc), dedr


@settings(max_examples=15, deadline=None)
@given(r=st.floats(0.9, 2.5), sigma=st.floats(0.8, 1.2), epsilon=st.floats(0.1, 2.0))
def test_ase_oracle_matches_closed_form_lj(r, sigma, epsilon):
    rc = 4.0
    oracle = ASECalculatorOracle(
        functools.partial(LennardJones, sigma=sigma, epsilon=epsilon, rc=rc)
    )
    dimer = Atoms("Ar2", positions=[[0, 0, 0], [0, 0, r]])
    dimer.set_constraint(FixAtoms([0]))  # constraints must not touch the labels
    dimer.calc = SinglePointCalculator(dimer, energy=123.0)  # nor a stale calculator
    labels = oracle.label([dimer])
    energy, dedr = _lj_dimer(r, sigma, epsilon, rc)
    assert labels.energies[0] == pytest.approx(energy, rel=1e-10, abs=1e-12)
    np.testing.assert_allclose(labels.forces[0][:, 2], [dedr, -dedr], rtol=1e-9, atol=1e-12)
    np.testing.assert_allclose(labels.forces[0][:, :2], 0.0, atol=1e-12)
