"""The ASE calculator: equal to batch prediction, Verlet skin exact, MD and optimisers work.

Oracles: ``Potential.predict`` / ``Ensemble.predict`` (independent padding and neighbour lists),
a brute-force pair search, a skin-0 calculator, energy conservation of velocity Verlet, and the
monotone energy of a BFGS relaxation.
"""

import numpy as np
import pytest
from ase import units
from ase.md.velocitydistribution import Stationary, thermalize_momenta
from ase.md.verlet import VelocityVerlet
from ase.optimize import BFGS
from hypothesis import given, settings
from hypothesis import strategies as st

from nequip_jax import load
from nequip_jax.calculator import (
    NequIPCalculator,
    build_neighbours,
    edge_budget,
    needs_rebuild,
)
from nequip_jax.model.potential import PROGRAM_NAME, potential_program
from nequip_jax.oracle import bare_copy


def _variants(frames):
    """New positions, a periodic cell, fewer atoms, other species, then the first structure."""
    a, b = bare_copy(frames[20]), bare_copy(frames[21])
    periodic = bare_copy(frames[14])
    # A cell smaller than the molecule plus the cutoff: images interact through the shifts.
    periodic.set_cell(np.diag([9.0, 10.0, 11.0]))
    periodic.pbc = True
    fewer = a[[i for i in range(len(a)) if i not in (3, 17, 25)]]
    swapped = b.copy()
    numbers = swapped.numbers.copy()
    h, c = np.flatnonzero(numbers == 1)[0], np.flatnonzero(numbers == 6)[0]
    numbers[h], numbers[c] = 6, 1
    swapped.numbers = numbers
    return [a, b, periodic, fewer, swapped, a]


@pytest.fixture(scope="module")
def variants(frames_300K):
    return _variants(frames_300K)


@pytest.fixture(scope="module")
def references(potential64, ensemble64, variants):
    """Batch predictions (one call per model) of the variants."""
    return {
        "potential64": potential64.predict(variants),
        "ensemble64": ensemble64.predict(variants),
    }


def _model_programs(counted) -> int:
    """Model programs among the programs JAX lowered (``lowerings`` fixture)."""
    return sum(name == f"jit({PROGRAM_NAME})" for name in counted.names)


def _check(calc, atoms, pred, i, atol=1e-10):
    atoms = atoms.copy()
    atoms.calc = calc
    np.testing.assert_allclose(atoms.get_potential_energy(), pred["energy"][i], atol=atol)
    np.testing.assert_allclose(atoms.get_forces(), pred["forces"][i], atol=atol)
    per_atom = atoms.get_potential_energies()
    np.testing.assert_allclose(per_atom.sum(), pred["energy"][i], atol=atol)
    if "node_energy" in pred:  # a potential (Ensemble.predict has no per-atom energies)
        np.testing.assert_allclose(per_atom, pred["node_energy"][i], atol=atol)
    np.testing.assert_allclose(calc.results["uncertainty"], pred["uncertainty"][i], atol=1e-8)


@pytest.mark.parametrize("name", ["potential64", "ensemble64"])
def test_changing_atoms_between_calls(x64, request, name, variants, references, lowerings):
    """Positions, periodic cell, number of atoms and species change between calls."""
    calc = NequIPCalculator(request.getfixturevalue(name))
    with lowerings() as first:  # counted by JAX, not by the calculator
        for i, atoms in enumerate(variants):
            _check(calc, atoms, references[name], i)
    with lowerings() as second:
        for i, atoms in enumerate(variants):
            _check(calc, atoms, references[name], i)
    assert second.n == 0
    # At most one compilation per (system size, edge budget): 27 atoms, the periodic 27 atoms
    # (more edges) and 24 atoms; species changes reuse the shape, and a second pass compiles
    # nothing (per group for the ensemble, which has two).
    groups = len(getattr(calc.model, "groups", [None]))
    assert _model_programs(first) <= 3 * groups


def test_ensemble_extra_results(x64, ensemble64, variants, references):
    atoms = variants[1].copy()
    atoms.calc = NequIPCalculator(ensemble64)
    atoms.get_potential_energy()
    pred = references["ensemble64"]
    np.testing.assert_allclose(atoms.calc.results["energy_std"], pred["energy_std"][1], atol=1e-10)
    np.testing.assert_allclose(
        atoms.calc.results["member_forces"], pred["member_forces"][1], atol=1e-10
    )


def test_one_atoms_object_changed_in_place(x64, potential64, variants, references):
    """ASE's change detection: editing the attached Atoms object recomputes."""
    atoms = variants[0].copy()
    atoms.calc = NequIPCalculator(potential64)
    np.testing.assert_allclose(atoms.get_forces(), references["potential64"]["forces"][0])
    atoms.positions = variants[1].positions
    np.testing.assert_allclose(
        atoms.get_forces(), references["potential64"]["forces"][1], atol=1e-10
    )


def _random_walk(atoms, n_steps, step, seed):
    rng = np.random.default_rng(seed)
    frames = []
    current = atoms.copy()
    for _ in range(n_steps):
        current = current.copy()
        current.positions += rng.normal(scale=step, size=current.positions.shape)
        frames.append(current)
    return frames


@pytest.mark.parametrize("name", ["potential64", "ensemble64"])
def test_skin_edges_contribute_exactly_zero(x64, request, name, frames_300K):
    model = request.getfixturevalue(name)
    skin, plain = NequIPCalculator(model, skin=0.5), NequIPCalculator(model, skin=0.0)
    frames = _random_walk(frames_300K[7], 40, 0.02, seed=0)
    for atoms in frames:
        for calc in (skin, plain):
            atoms.calc = calc
            atoms.get_forces()
        np.testing.assert_allclose(skin.results["energy"], plain.results["energy"], atol=1e-10)
        np.testing.assert_allclose(skin.results["forces"], plain.results["forces"], atol=1e-10)
        np.testing.assert_allclose(
            skin.results["uncertainty"], plain.results["uncertainty"], atol=1e-9
        )
    # The comparison is not vacuous: the skin list holds edges beyond r_max ...
    positions = frames[-1].positions
    lengths = np.linalg.norm(
        positions[skin._nl.senders] - positions[skin._nl.receivers] + skin._nl.shifts, axis=1
    )
    assert np.any(lengths > 4.0)
    # ... and it was rebuilt far less often than at every step (skin 0 rebuilds every time).
    assert plain.n_neighbour_builds == len(frames)
    assert skin.n_neighbour_builds < len(frames) // 4


@settings(max_examples=25, deadline=None)
@given(
    seed=st.integers(0, 2**31 - 1),
    skin=st.floats(0.1, 1.0),
    fraction=st.floats(0.0, 0.999),
)
def test_verlet_criterion_never_misses_a_pair(frames_300K, seed, skin, fraction):
    """Brute force: when no rebuild is asked for, every pair within r_max is in the list."""
    r_max = 4.0
    atoms = frames_300K[seed % 40].copy()
    nl = build_neighbours(atoms, r_max + skin)
    rng = np.random.default_rng(seed)
    direction = rng.normal(size=atoms.positions.shape)
    direction /= np.linalg.norm(direction, axis=1, keepdims=True)
    # Every atom moves by up to fraction · skin / 2 (the worst case is a head-on approach).
    moved = atoms.copy()
    moved.positions += direction * (fraction * 0.5 * skin) * rng.uniform(size=(len(atoms), 1))
    assert not needs_rebuild(nl, moved, skin)
    diff = moved.positions[None, :, :] - moved.positions[:, None, :]
    close = np.linalg.norm(diff, axis=-1) < r_max
    np.fill_diagonal(close, False)
    want = set(zip(*np.nonzero(close)))  # (receiver, sender)
    have = set(zip(nl.receivers.tolist(), nl.senders.tolist()))
    assert want <= have
    # One atom moving just beyond skin / 2 asks for a rebuild.
    far = atoms.copy()
    far.positions[seed % len(atoms)] += direction[0] * 0.5 * skin * 1.001
    assert needs_rebuild(nl, far, skin)


@pytest.mark.parametrize(
    ("n_edges", "headroom", "expected"),
    [(0, 1.5, 64), (1, 1.0, 64), (64, 1.0, 64), (65, 1.0, 128), (400, 1.5, 640), (427, 1.5, 704)],
)
def test_edge_budget(n_edges, headroom, expected):
    assert edge_budget(n_edges, headroom) == expected


def test_edge_budget_grows_only_when_exceeded(x64, potential64, frames_300K, lowerings):
    calc = NequIPCalculator(potential64, edge_headroom=1.0)
    atoms = frames_300K[0].copy()
    atoms.calc = calc
    atoms.get_forces()
    first = calc.budget_for(len(atoms))
    # Compress the molecule: more pairs within the cutoff than the first budget holds.
    atoms.positions *= 0.8
    atoms.get_forces()
    second = calc.budget_for(len(atoms))
    assert second.n_edge > first.n_edge
    compressed = atoms.get_forces().copy()
    # Expanding back fits the enlarged budget: no new compilation.
    atoms.positions /= 0.8
    with lowerings() as counted:
        atoms.get_forces()
    assert calc.budget_for(len(atoms)) == second and _model_programs(counted) == 0
    atoms.positions *= 0.8
    np.testing.assert_allclose(
        compressed, potential64.predict([bare_copy(atoms)])["forces"][0], atol=1e-10
    )


def _nve(potential, frame, timestep_fs, steps=300):
    """Velocity Verlet from 300 K velocities; returns the largest deviation of the total energy
    and its linear drift over the run, both relative to the kinetic-energy fluctuation, and
    that fluctuation (eV), plus the calculator."""
    atoms = frame.copy()
    atoms.calc = NequIPCalculator(potential)
    thermalize_momenta(atoms, temperature_K=300, rng=np.random.default_rng(0))
    Stationary(atoms)
    dyn = VelocityVerlet(atoms, timestep=timestep_fs * units.fs)
    total, kinetic = [], []

    def record():
        kinetic.append(atoms.get_kinetic_energy())
        total.append(atoms.get_potential_energy() + kinetic[-1])

    dyn.attach(record, interval=1)
    dyn.run(steps)
    total, kinetic = np.asarray(total), np.asarray(kinetic)
    scale = np.std(kinetic)
    deviation = np.abs(total - total[0]).max() / scale
    drift = abs(np.polyfit(np.arange(len(total)), total, 1)[0]) * len(total) / scale
    return deviation, drift, scale, atoms.calc


def test_nve_conserves_total_energy(x64, potential64, frames_300K, lowerings):
    """300 steps of 0.5 fs: the total energy stays within 2 % of the kinetic-energy fluctuation
    with no drift, and the error is that of Verlet's shadow Hamiltonian, O(dt²): four times the
    step gives about 16 times the error (at least 6 required). Forces inconsistent with the
    energy (a missed neighbour, a wrong sign) would drift instead, whatever the step.
    """
    with lowerings() as counted:
        deviation, drift, scale, calc = _nve(potential64, frames_300K[1], 0.5)
    assert scale > 0.1  # forces do work: this is not free flight
    assert deviation < 0.02 and drift < 0.005, (deviation, drift)
    assert _model_programs(counted) <= 1 and calc.n_neighbour_builds < 300 // 4
    coarse, _, _, _ = _nve(potential64, frames_300K[1], 2.0)
    assert coarse > 6 * deviation, (coarse, deviation)


def test_bfgs_lowers_the_energy(x64, potential64, frames_300K):
    atoms = frames_300K[2].copy()
    atoms.calc = NequIPCalculator(potential64)
    energies = [atoms.get_potential_energy()]
    fmax0 = np.linalg.norm(atoms.get_forces(), axis=1).max()
    opt = BFGS(atoms, logfile=None)
    opt.attach(lambda: energies.append(atoms.get_potential_energy()), interval=1)
    opt.run(fmax=0.01 * fmax0, steps=30)
    # A descent method fed consistent energies and forces: the energy goes down step by step.
    steps = np.diff(energies[1:])  # the observer also runs before the first step
    assert len(steps) == 30 and energies[-1] < energies[0]
    assert np.mean(steps < 0) > 2 / 3


def test_unknown_species_and_bad_arguments(potential64, frames_300K):
    atoms = frames_300K[0].copy()
    atoms.numbers[0] = 9  # fluorine: not in the model
    atoms.calc = NequIPCalculator(potential64)
    with pytest.raises(ValueError, match=r"atomic number \[9\].*species list"):
        atoms.get_potential_energy()
    with pytest.raises(ValueError, match="skin"):
        NequIPCalculator(potential64, skin=-0.1)
    with pytest.raises(TypeError, match="Potential or Ensemble"):
        NequIPCalculator(object())


def test_potential_without_gmm_has_no_uncertainty(x64, potential64, variants, references):
    atoms = variants[0].copy()
    atoms.calc = NequIPCalculator(potential64.with_head(None))
    np.testing.assert_allclose(
        atoms.get_potential_energy(), references["potential64"]["energy"][0], atol=1e-10
    )
    assert "uncertainty" not in atoms.calc.results


def test_one_program_per_configuration_and_shape(
    x64, potential64, frames_300K, tmp_path, lowerings
):
    """A reloaded potential of the same hyperparameters reuses the compiled program of the first
    (no trace for shapes already seen), the calculator and Potential.predict share it, and the
    reloaded copy predicts the same numbers."""
    frames = frames_300K[:3]
    first = potential64.predict(frames)
    potential64.save(tmp_path / "model")
    again = load(tmp_path / "model")
    assert again is not potential64 and again.config == potential64.config
    with lowerings() as counted:
        second = again.predict(frames)
    assert counted.n == 0
    np.testing.assert_array_equal(first["energy"], second["energy"])
    calc = NequIPCalculator(again)
    assert calc._backend._fn is potential_program(potential64.config, again.head.method)
