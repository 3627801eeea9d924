"""On-device MD: the potential equals Potential.predict, NVE conserves energy with a dt² error,
an overflowing neighbour list is grown without changing the result, the uncertainty stop fires
at the first step above the threshold, pieces and vmapped replicas equal whole single runs, and
BAOAB samples a harmonic well's exact Boltzmann variance."""

import functools

import jax
import jax.numpy as jnp
import numpy as np
import pytest
from ase import units

from nequip_jax.md import (
    baoab,
    build_neighbours,
    init_state,
    make_loop,
    make_system,
    run_md,
    velocity_verlet,
)
from nequip_jax.model.ensemble import Ensemble


def _evaluate_frames(system, frames):
    evaluate = jax.jit(system.evaluate)
    out = []
    for atoms in frames:
        x = jnp.asarray(atoms.positions)
        energy, forces, uncertainty, _ = evaluate(x, system.neighbours(x, 1024))
        out.append((float(energy), np.asarray(forces), np.asarray(uncertainty)))
    return out


def test_potential_and_ensemble_match_predict(x64, potential64, ensemble64, frames_300K):
    frames = frames_300K[:3]
    pred = potential64.predict(frames)
    for i, (energy, forces, nll) in enumerate(
        _evaluate_frames(make_system(potential64, frames[0].numbers), frames)
    ):
        np.testing.assert_allclose(energy, pred["energy"][i], rtol=1e-10)
        np.testing.assert_allclose(forces, pred["forces"][i], atol=1e-10)
        np.testing.assert_allclose(nll, pred["uncertainty"][i], atol=1e-8)
    one_group = Ensemble(groups=[ensemble64.groups[0]], species=ensemble64.species)
    pred = one_group.predict(frames)
    system = make_system(one_group, frames[0].numbers)
    assert system.uncertainty == "ensemble"
    for i, (energy, forces, sigma) in enumerate(_evaluate_frames(system, frames)):
        np.testing.assert_allclose(energy, pred["energy"][i], rtol=1e-10)
        np.testing.assert_allclose(forces, pred["forces"][i], atol=1e-10)
        np.testing.assert_allclose(sigma, pred["uncertainty"][i], atol=1e-10)


def test_bad_input_is_refused(potential64, ensemble64, frames_300K):
    atoms = frames_300K[0].copy()
    with pytest.raises(ValueError, match="groups"):
        make_system(ensemble64, atoms.numbers)
    numbers = atoms.numbers.copy()
    numbers[0] = 9
    with pytest.raises(ValueError, match=r"\[9\]"):
        make_system(potential64, numbers)
    with pytest.raises(ValueError, match="temperature_K"):
        run_md(potential64, atoms, n_steps=1, ensemble="langevin")
    atoms.cell = [20.0, 20.0, 20.0]
    atoms.pbc = [True, True, False]
    with pytest.raises(ValueError, match="slabs"):
        run_md(potential64, atoms, n_steps=1)
    atoms.pbc = True
    atoms.cell = [20.0, 20.0, 8.9]  # 8.9 Å < 2 (r_max + skin) = 9 Å
    with pytest.raises(ValueError, match=r"repeat the cell"):
        run_md(potential64, atoms, n_steps=1)


def _total_energy(frames):
    return np.array([a.info["energy"] + a.info["kinetic_energy"] for a in frames])


def test_nve_energy_error_scales_as_dt_squared(x64, potential64, frames_300K):
    # Same 60 fs at dt and dt/2: velocity Verlet's energy error is O(dt²).
    errors = []
    for dt, steps in ((0.5, 120), (0.25, 240)):
        result = run_md(
            potential64,
            frames_300K[0],
            n_steps=steps,
            dt_fs=dt,
            temperature_K=300.0,
            record_every=steps // 60,
            seed=1,
        )
        energy = _total_energy(result.frames[0])
        errors.append(np.max(np.abs(energy - energy[0])))
        assert result.steps[0] == steps and result.stop_step[0] == -1
    ratio = errors[0] / errors[1]
    assert 2.5 < ratio < 6.0, (errors, ratio)
    assert errors[0] < 1e-3 * len(frames_300K[0])  # and small: < 1 meV/atom


def test_overflowing_list_grows_and_changes_nothing(x64, potential64, frames_300K):
    # A stretched molecule contracts, so the number of pairs within the cutoff grows during the
    # run; a list with room for the start geometry's pairs only must overflow and be grown.
    atoms = frames_300K[0].copy()
    centre = atoms.positions.mean(axis=0)
    atoms.positions = centre + 1.06 * (atoms.positions - centre)
    kwargs = dict(n_steps=60, dt_fs=0.5, record_every=10, skin=0.1, temperature_K=1200.0)
    big = run_md(potential64, atoms, **kwargs)
    start = int(build_neighbours(jnp.asarray(atoms.positions), 4.1, 1).count)
    small = run_md(potential64, atoms, capacity=start, **kwargs)
    assert small.capacities > 1 and small.capacity > start and big.capacities == 1
    for a, b in zip(big.frames[0], small.frames[0], strict=True):
        assert a.info["step"] == b.info["step"]
        np.testing.assert_allclose(a.positions, b.positions, atol=1e-9)
        np.testing.assert_allclose(a.arrays["uncertainty"], b.arrays["uncertainty"], atol=1e-7)


def test_uncertainty_stop_fires_at_the_first_step_above_threshold(x64, potential64, frames_300K):
    kwargs = dict(
        n_steps=60, dt_fs=1.0, ensemble="langevin", temperature_K=1500.0, record_every=1, seed=4
    )
    free = run_md(potential64, frames_300K[0], **kwargs)
    peaks = np.array([a.arrays["uncertainty"].max() for a in free.frames[0]])  # steps 1..60
    running = np.maximum.accumulate(peaks)
    k = next(i for i in range(10, len(peaks)) if peaks[i] > running[i - 1])  # a new maximum
    threshold = 0.5 * (running[k - 1] + peaks[k])
    # In one device call, and cut into one-step pieces (host loop): the same stop step and frame.
    for chunk in (100, 1):
        stopped = run_md(
            potential64, frames_300K[0], stop_uncertainty=threshold, chunk_steps=chunk, **kwargs
        )
        assert stopped.stop_step[0] == k + 1 == stopped.steps[0]
        last = stopped.frames[0][-1]
        assert last.info["step"] == k + 1 and last.arrays["uncertainty"].max() > threshold
        np.testing.assert_allclose(last.positions, free.frames[0][k].positions, atol=1e-10)
        assert len(stopped.frames[0]) == k + 1


def test_vmapped_replicas_equal_single_runs(x64, potential64, frames_300K):
    atoms = frames_300K[0]
    system = make_system(potential64, atoms.numbers)
    masses = jnp.asarray(atoms.get_masses())
    rng = np.random.default_rng(0)
    velocities = rng.normal(scale=0.02, size=(2, len(atoms), 3))

    def step(state, key):
        return baoab(system.evaluate, state, 0.5 * units.fs, masses, key, kT=0.05, friction=0.1)

    loop = make_loop(step, masses, n_steps=15, record_every=5)
    x = jnp.asarray(atoms.positions)
    init = jax.jit(functools.partial(init_state, system.evaluate))
    states = [init(x, v, system.neighbours(x, 1024)) for v in velocities]
    keys = jax.random.split(jax.random.key(0), 2)
    together = jax.jit(jax.vmap(loop))(jax.tree.map(lambda *s: jnp.stack(s), *states), keys)
    for r in range(2):
        alone = jax.jit(loop)(states[r], keys[r])
        np.testing.assert_allclose(together.state.positions[r], alone.state.positions, atol=1e-12)
        np.testing.assert_array_equal(together.records.step[r], alone.records.step)
        np.testing.assert_array_equal(alone.records.step, [5, 10, 15])


def _harmonic(k):
    def evaluate(x, aux):
        return 0.5 * k * jnp.sum(x**2), -k * x, jnp.zeros(x.shape[0], x.dtype), aux

    return evaluate


def test_baoab_samples_the_exact_harmonic_variance(x64):
    # BAOAB's configurational distribution is exact for a harmonic well at any stable dt:
    # Var(x) = kT / k for every coordinate. 400 particles x 3 coordinates, 300 late steps.
    k, kT, n = 2.0, 0.05, 400
    evaluate = _harmonic(k)
    masses = jnp.full((n,), 2.0)
    dt = 0.8 * float(jnp.sqrt(2.0 / k))  # a large step: 0.8 of the stability limit 2/ω

    def step(state, key):
        return baoab(evaluate, state, dt, masses, key, kT=kT, friction=1.0)

    loop = make_loop(step, masses, n_steps=600, record_every=2)
    state = init_state(evaluate, jnp.zeros((n, 3)), jnp.zeros((n, 3)), None)
    out = jax.jit(loop)(state, jax.random.key(5))
    late = np.asarray(out.records.positions[150:])  # after 300 steps of burn-in
    variance = late.var()
    assert abs(variance / (kT / k) - 1.0) < 0.05, variance


def test_velocity_verlet_is_time_reversible(x64):
    evaluate = _harmonic(3.0)
    masses = jnp.array([1.0, 4.0, 2.0])
    rng = np.random.default_rng(1)
    x0, v0 = jnp.asarray(rng.normal(size=(3, 3))), jnp.asarray(rng.normal(size=(3, 3)))

    def step(state, key):
        return velocity_verlet(evaluate, state, 0.05, masses, key)

    loop = jax.jit(make_loop(step, masses, n_steps=200, record_every=200))
    forward = loop(init_state(evaluate, x0, v0, None), jax.random.key(0)).state
    back = loop(
        init_state(evaluate, forward.positions, -forward.velocities, None), jax.random.key(0)
    ).state
    np.testing.assert_allclose(back.positions, x0, atol=1e-10)
    np.testing.assert_allclose(-back.velocities, v0, atol=1e-10)


def test_neighbour_list_is_the_brute_force_pair_set(frames_300K):
    x = jnp.asarray(frames_300K[0].positions)
    nbrs = build_neighbours(x, 4.5, 1024)
    d = np.linalg.norm(frames_300K[0].positions[:, None] - frames_300K[0].positions[None], axis=-1)
    expected = {(j, i) for i in range(len(d)) for j in range(len(d)) if i != j and d[i, j] < 4.5}
    mask = np.asarray(nbrs.mask)
    got = set(
        zip(np.asarray(nbrs.senders)[mask].tolist(), np.asarray(nbrs.receivers)[mask].tolist())
    )
    assert got == expected and int(nbrs.count) == len(expected) and not bool(nbrs.overflow)
    assert bool(build_neighbours(x, 4.5, len(expected) - 1).overflow)


def test_cli_writes_trajectory_with_uncertainty_and_summary(potential64, frames_300K, tmp_path):
    import json

    import ase.io

    from nequip_jax.cli import main

    potential64.save(tmp_path / "model")
    ase.io.write(tmp_path / "start.xyz", frames_300K[0])
    out = tmp_path / "traj.xyz"
    argv = [
        "md",
        str(tmp_path / "model"),
        str(tmp_path / "start.xyz"),
        "--steps",
        "20",
        "--ensemble",
        "langevin",
        "--temperature",
        "300",
        "--replicas",
        "2",
        "--record-every",
        "5",
        "--out",
        str(out),
    ]
    assert main(argv) == 0
    frames = ase.io.read(out, ":")
    assert [a.info["replica"] for a in frames] == [0] * 4 + [1] * 4
    assert [a.info["step"] for a in frames[:4]] == [5, 10, 15, 20]
    assert all(a.arrays["uncertainty"].shape == (len(a),) for a in frames)
    summary = json.loads(out.with_suffix(".json").read_text())
    assert summary["steps"] == [20, 20] and summary["uncertainty"] == "gmm"
    assert summary["stop_step"] == [None, None] and summary["replicas"] == 2
    with pytest.raises(SystemExit, match="frame"):
        main([*argv[:3], "--steps", "1", "--frame", "3", "--out", str(out)])


def test_nve_follows_ase_velocity_verlet_with_the_calculator(x64, potential64, frames_300K):
    # The same integrator through ASE (host loop, NequIPCalculator) from the same velocities:
    # the same trajectory to float64 round-off after 200 steps of 0.5 fs.
    from ase.md.verlet import VelocityVerlet

    from nequip_jax.calculator import NequIPCalculator

    atoms = frames_300K[0].copy()
    atoms.calc = None
    rng = np.random.default_rng(7)
    atoms.set_velocities(rng.normal(scale=0.005, size=(len(atoms), 3)))
    device = run_md(potential64, atoms, n_steps=200, dt_fs=0.5, record_every=50)
    host = atoms.copy()
    host.set_velocities(atoms.get_velocities())
    host.calc = NequIPCalculator(potential64)
    dyn = VelocityVerlet(host, 0.5 * units.fs)
    for frame in device.frames[0]:
        dyn.run(50)
        assert frame.info["step"] == dyn.nsteps
        np.testing.assert_allclose(frame.positions, host.positions, atol=1e-9)
        np.testing.assert_allclose(frame.get_velocities(), host.get_velocities(), atol=1e-9)
        np.testing.assert_allclose(
            frame.arrays["uncertainty"], host.calc.results["uncertainty"], atol=1e-7
        )


def test_new_weights_and_settings_reuse_the_compiled_programs(
    x64, potential64, frames_300K, lowerings
):
    # The weights, masses, time step, temperature, friction and stop threshold are arguments of
    # the MD programs, not constants: a potential of the same configuration with other weights,
    # or other integrator settings, runs without lowering any new program, with its own forces.
    from nequip_jax.model import Potential

    kwargs = dict(n_steps=10, record_every=10, ensemble="langevin")
    first = run_md(potential64, frames_300K[0], temperature_K=300.0, **kwargs)
    params = jax.tree.map(np.asarray, potential64.params)
    params["params"]["energy_scale"] = 2.0 * params["params"]["energy_scale"]
    other = Potential(potential64.config, params, potential64.species, head=potential64.head)
    with lowerings() as counted:
        second = run_md(other, frames_300K[0], temperature_K=300.0, **kwargs)
        hotter = run_md(
            potential64,
            frames_300K[0],
            temperature_K=600.0,
            dt_fs=0.25,
            friction_per_fs=0.05,
            stop_uncertainty=1e9,
            **kwargs,
        )
    assert counted.n == 0
    assert hotter.steps.tolist() == [10]
    assert not np.allclose(first.frames[0][-1].positions, hotter.frames[0][-1].positions)
    x = jnp.asarray(frames_300K[0].positions)
    forces = [
        make_system(p, frames_300K[0].numbers).evaluate(x, build_neighbours(x, 4.5, 1024))[1]
        for p in (potential64, other)
    ]
    np.testing.assert_allclose(forces[1], 2.0 * forces[0], rtol=1e-10, atol=1e-12)
    assert not np.allclose(first.frames[0][-1].positions, second.frames[0][-1].positions)
