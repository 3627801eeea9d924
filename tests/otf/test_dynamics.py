"""The two MD drivers of the on-the-fly loop.

Oracles: with zero friction both integrators are velocity Verlet under ``FixCom``, so the
device segments must follow the ASE calculator's trajectory step for step (float64, a few
hundred steps), their per-step trace included; a segment must stop at exactly the first
eligible step whose score exceeds the threshold, as found by stepping ASE one step at a time;
a neighbour list that overflows is grown without changing the trajectory. (The device's
broken-structure test is checked against ``broken_reason`` in ``test_parts.py``.)
"""

import ase
import jax
import jax.numpy as jnp
import numpy as np
import pytest
from ase.constraints import FixCom
from ase.md.velocitydistribution import Stationary, thermalize_momenta

from nequip_jax.otf import dynamics
from nequip_jax.otf.config import OTFConfig
from nequip_jax.otf.dynamics import AseDriver, DeviceDriver
from nequip_jax.otf.surrogate import Surrogate

N_STEPS = 300


def _start(frame, temperature_K=600.0, seed=0):
    atoms = ase.Atoms(numbers=frame.numbers, positions=frame.positions)
    thermalize_momenta(atoms, temperature_K=temperature_K, rng=np.random.default_rng(seed))
    Stationary(atoms)
    atoms.set_constraint(FixCom())
    return atoms


def _nve_config(**changes):
    # The untrained model lets two hydrogens approach to 0.6 Å within tens of steps and one
    # fly 7 Å from the rest within 300; the broken-structure limits are widened so that only
    # the scheduled stops end a segment.
    fields = dict(
        friction_per_fs=0.0,
        timestep_fs=0.5,
        temperature_K=600.0,
        broken_min_distance=0.1,
        broken_max_neighbour_distance=50.0,
    )
    return OTFConfig(**(fields | changes))


def _ase_trajectory(surrogate, frame, config, n_steps):
    atoms = _start(frame)
    driver = AseDriver(surrogate, atoms, config, np.random.default_rng(1))
    positions, trace = [], []
    for step in range(n_steps):
        out = driver.advance(step, until=step + 1, threshold=np.inf, fire_from=0)
        positions.append(atoms.positions.copy())
        trace += out.trace
    return np.array(positions), trace


@pytest.fixture(scope="module")
def nve_reference(potential64, frames_300K):
    surrogate = Surrogate(potential64, "gmm")
    return surrogate, _ase_trajectory(surrogate, frames_300K[0], _nve_config(), N_STEPS)


def _device_run(surrogate, frame, config, stops):
    atoms = _start(frame)
    driver = DeviceDriver(surrogate, atoms, config, jax.random.key(3), step=0)
    step, positions, trace = 0, {}, []
    for until in stops:
        out = driver.advance(step, until=until, threshold=np.inf, fire_from=0)
        assert out.step == until  # nothing else stops a segment here
        step = out.step
        positions[step] = atoms.positions.copy()
        trace += out.trace
    return driver, positions, trace


def _assert_same_trace(trace, reference):
    assert [p.step for p in trace] == [p.step for p in reference] == list(range(1, N_STEPS + 1))
    for name in ("score", "energy", "temperature_K"):
        np.testing.assert_allclose(
            [getattr(p, name) for p in trace],
            [getattr(p, name) for p in reference],
            rtol=1e-7,
            atol=1e-7,
            err_msg=name,
        )


def test_device_segments_follow_the_ase_trajectory(nve_reference, frames_300K):
    surrogate, (ase_positions, ase_trace) = nve_reference
    # Segments of uneven length, one longer than a device call (SEGMENT_STEPS).
    stops = [7, 40, 41, 300]
    assert stops[-1] - stops[-2] > dynamics.SEGMENT_STEPS
    driver, positions, trace = _device_run(surrogate, frames_300K[0], _nve_config(), stops)
    for step, x in positions.items():
        np.testing.assert_allclose(x, ase_positions[step - 1], atol=1e-8, err_msg=f"step {step}")
    _assert_same_trace(trace, ase_trace)
    # The molecule moved, its centre of mass did not, and the list was rebuilt on the device.
    masses = frames_300K[0].get_masses()
    assert np.abs(positions[300] - frames_300K[0].positions).max() > 0.2
    np.testing.assert_allclose(
        masses @ positions[300] / masses.sum(),
        masses @ frames_300K[0].positions / masses.sum(),
        atol=1e-9,
    )
    assert int(driver.state.aux.builds) > 1


def test_a_restart_continues_the_same_trajectory(nve_reference, frames_300K):
    """A restart (what every checkpoint and a resumed run do) rebuilds the state from the
    atoms' positions and momenta and changes nothing."""
    surrogate, (ase_positions, _) = nve_reference
    atoms = _start(frames_300K[0])
    driver = DeviceDriver(surrogate, atoms, _nve_config(), jax.random.key(3), step=0)
    driver.advance(0, until=100, threshold=np.inf, fire_from=0)
    driver.restart(surrogate, step=100)
    out = driver.advance(100, until=200, threshold=np.inf, fire_from=0)
    assert out.step == 200
    np.testing.assert_allclose(atoms.positions, ase_positions[199], atol=1e-8)


def test_overflowing_list_is_grown_without_changing_the_trajectory(
    nve_reference, frames_300K, monkeypatch
):
    surrogate, (ase_positions, ase_trace) = nve_reference
    # Exactly as many slots as pairs at the first build: a rebuild with more pairs overflows.
    monkeypatch.setattr(dynamics, "capacity_for", lambda count, *a, **k: int(count))
    driver, positions, trace = _device_run(surrogate, frames_300K[0], _nve_config(), [300])
    assert driver.capacity > int(build_count(frames_300K[0], driver))
    np.testing.assert_allclose(positions[300], ase_positions[-1], atol=1e-8)
    _assert_same_trace(trace, ase_trace)


def build_count(frame, driver):
    from nequip_jax.md import build_neighbours

    with jax.enable_x64(True):
        x = jnp.asarray(frame.positions)
        return build_neighbours(x, driver.system.cutoff, 1).count


def test_segment_stops_at_the_first_eligible_step_above_the_threshold(nve_reference, frames_300K):
    surrogate, (_, ase_trace) = nve_reference
    scores = np.array([p.score for p in ase_trace])  # score of step k at index k - 1
    fire_from = 60
    late = np.sort(scores[fire_from - 1 : 200])
    gaps = np.diff(late)
    i = int(np.argmax(gaps[len(gaps) // 2 :])) + len(gaps) // 2  # a wide gap in the upper half
    threshold = 0.5 * (late[i] + late[i + 1])
    eligible = np.arange(1, N_STEPS + 1) >= fire_from
    expected = int(np.argmax(eligible & (scores > threshold))) + 1
    assert fire_from < expected < 200
    # Without the eligibility rule it fires at the first step above the threshold at all.
    first = int(np.argmax(scores > threshold)) + 1
    for start_at, stop in ((fire_from, expected), (0, first)):
        atoms = _start(frames_300K[0])
        driver = DeviceDriver(surrogate, atoms, _nve_config(), jax.random.key(3), step=0)
        out = driver.advance(0, until=200, threshold=threshold, fire_from=start_at)
        assert out.step == stop
        assert [p.step for p in out.trace] == list(range(1, stop + 1))
        assert out.trace[-1].score == pytest.approx(scores[stop - 1], rel=1e-7)
        assert max(out.uncertainty) == pytest.approx(scores[stop - 1], rel=1e-7)


def test_langevin_segments_are_seeded_and_keep_the_centre_of_mass(
    potential64, frames_300K, lowerings
):
    """With friction: the same key gives the same trajectory, another key another one, and the
    noise moves no centre of mass (FixCom). Keys, temperatures and frictions are arguments of
    the compiled segment: after the first run nothing new is lowered."""
    surrogate = Surrogate(potential64, "gmm")
    config = _nve_config(friction_per_fs=0.05)
    hotter = _nve_config(friction_per_fs=0.1, temperature_K=900.0, timestep_fs=0.25)
    out = {}

    def run(name, key, config):
        atoms = _start(frames_300K[0])
        driver = DeviceDriver(surrogate, atoms, config, jax.random.key(key), step=0)
        driver.advance(0, until=50, threshold=np.inf, fire_from=0)
        out[name] = atoms.positions.copy(), atoms.get_momenta().sum(axis=0)

    run("a", 3, config)
    with lowerings() as counted:
        for name, key, settings in (("b", 3, config), ("c", 4, config), ("d", 3, hotter)):
            run(name, key, settings)
    assert counted.n == 0
    np.testing.assert_array_equal(out["a"][0], out["b"][0])
    assert np.abs(out["a"][0] - out["c"][0]).max() > 1e-3
    assert np.abs(out["a"][0] - out["d"][0]).max() > 1e-3
    masses = frames_300K[0].get_masses()
    np.testing.assert_allclose(
        masses @ out["a"][0] / masses.sum(),
        masses @ frames_300K[0].positions / masses.sum(),
        atol=1e-9,
    )
    np.testing.assert_allclose(out["a"][1], 0.0, atol=1e-9)
