"""On-device MD in a periodic cell: the minimum-image list is the pair set of ASE's neighbour
list, the potential equals Potential.predict on the periodic frame (and differs from the
isolated molecule's: the images interact), and NVE follows ASE's velocity Verlet with the
calculator."""

import ase
import jax
import jax.numpy as jnp
import numpy as np
import pytest
from ase import units
from ase.neighborlist import neighbor_list

from nequip_jax.md import build_neighbours, make_system, run_md
from nequip_jax.md._neighbours import check_cell, perpendicular_widths

#: A cubic and a triclinic cell, each wider than 2 × (4 Å + 0.5 Å skin) in every direction.
CELLS = {
    "cubic": np.diag([10.0, 10.0, 10.0]),
    "triclinic": np.array([[10.0, 0.0, 0.0], [3.0, 9.8, 0.0], [-2.0, 2.5, 10.4]]),
}


def _periodic(frame, cell):
    atoms = frame.copy()
    atoms.calc = None
    atoms.cell = cell
    atoms.pbc = True
    return atoms


def _edges(senders, receivers, shifts):
    return {(int(j), int(i), *np.round(s, 6)) for j, i, s in zip(senders, receivers, shifts)}


@pytest.mark.parametrize("name", sorted(CELLS))
def test_minimum_image_list_is_ase_pair_set(x64, frames_300K, name):
    cell = CELLS[name]
    rng = np.random.default_rng(3)
    # Atoms anywhere, also outside the cell (positions are never wrapped).
    atoms = ase.Atoms("H40", positions=rng.uniform(-3, 14, size=(40, 3)), cell=cell, pbc=True)
    assert perpendicular_widths(cell).min() > 9.0
    nbrs = build_neighbours(jnp.asarray(atoms.positions), 4.5, 2048, 0, jnp.asarray(cell))
    i, j, shift = neighbor_list("ijS", atoms, 4.5)
    expected = _edges(j, i, shift @ cell)
    mask = np.asarray(nbrs.mask)
    got = _edges(
        np.asarray(nbrs.senders)[mask],
        np.asarray(nbrs.receivers)[mask],
        np.asarray(nbrs.shifts)[mask],
    )
    assert not bool(nbrs.overflow) and int(nbrs.count) == len(expected)
    assert got == expected


@pytest.mark.parametrize("name", sorted(CELLS))
def test_periodic_potential_equals_predict(x64, potential64, frames_300K, name):
    frames = [_periodic(f, CELLS[name]) for f in frames_300K[:2]]
    system = make_system(potential64, frames[0].numbers, periodic=True)
    pred = potential64.predict(frames)
    isolated = potential64.predict(frames_300K[:2])
    evaluate = jax.jit(system.evaluate)
    for k, atoms in enumerate(frames):
        x = jnp.asarray(atoms.positions)
        nbrs = system.neighbours(x, 2048, CELLS[name])
        energy, forces, nll, _ = evaluate(x, nbrs)
        np.testing.assert_allclose(float(energy), pred["energy"][k], rtol=1e-10)
        np.testing.assert_allclose(np.asarray(forces), pred["forces"][k], atol=1e-10)
        np.testing.assert_allclose(np.asarray(nll), pred["uncertainty"][k], atol=1e-8)
        # Images are within the cutoff: edges with shifts, and not the isolated molecule.
        assert np.abs(np.asarray(nbrs.shifts)[np.asarray(nbrs.mask)]).max() > 5.0
        assert abs(float(energy) - isolated["energy"][k]) > 1e-8


def test_periodic_system_needs_its_cell(x64, potential64, frames_300K):
    molecule = make_system(potential64, frames_300K[0].numbers)
    periodic = make_system(potential64, frames_300K[0].numbers, periodic=True)
    x = frames_300K[0].positions
    with pytest.raises(ValueError, match="its cell"):
        periodic.neighbours(x, 64)
    with pytest.raises(ValueError, match="no cell"):
        molecule.neighbours(x, 64, CELLS["cubic"])
    assert check_cell(CELLS["cubic"], [False] * 3, 4.5) is None


def test_periodic_nve_follows_ase_velocity_verlet(x64, potential64, frames_300K):
    from ase.md.verlet import VelocityVerlet

    from nequip_jax.calculator import NequIPCalculator

    atoms = _periodic(frames_300K[0], CELLS["triclinic"])
    rng = np.random.default_rng(11)
    # Fast enough that the molecule moves by several Å and crosses the cell faces.
    drift = np.array([0.25, -0.2, 0.15]) * units.Ang / units.fs
    atoms.set_velocities(rng.normal(scale=0.005, size=(len(atoms), 3)) + drift)
    device = run_md(potential64, atoms, n_steps=200, dt_fs=0.5, record_every=50, skin=0.3)
    host = atoms.copy()
    host.set_velocities(atoms.get_velocities())
    host.calc = NequIPCalculator(potential64)
    dyn = VelocityVerlet(host, 0.5 * units.fs)
    for frame in device.frames[0]:
        dyn.run(50)
        assert frame.info["step"] == dyn.nsteps and frame.pbc.all()
        np.testing.assert_allclose(frame.cell.array, CELLS["triclinic"])
        np.testing.assert_allclose(frame.positions, host.positions, atol=1e-9)
        np.testing.assert_allclose(frame.get_velocities(), host.get_velocities(), atol=1e-9)
    moved = np.abs(device.frames[0][-1].positions.mean(0) - atoms.positions.mean(0))
    assert moved.max() > 5.0 and int(device.neighbour_builds[0]) > 5
