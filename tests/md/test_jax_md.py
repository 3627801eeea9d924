"""The model inside JAX-MD: its energy, forces and uncertainty equal Potential.predict, and
JAX-MD's velocity Verlet follows the same trajectory as nequip_jax.md's."""

import ase.units
import jax
import jax.numpy as jnp
import numpy as np
from jax_md import simulate, space

from nequip_jax.md import jax_md_functions, run_md


def test_functions_equal_predict(x64, potential64, frames_300K):
    fns = jax_md_functions(potential64, frames_300K[0].numbers)
    pred = potential64.predict(frames_300K[:2])
    # One program for the four functions (each is traced separately inside it).
    evaluate = jax.jit(
        lambda x: (
            fns.energy_fn(x),
            fns.force_fn(x),
            jax.grad(fns.energy_fn)(x),
            fns.uncertainty_fn(x),
        )
    )
    for i, atoms in enumerate(frames_300K[:2]):
        energy, force, grad, uncertainty = evaluate(jnp.asarray(atoms.positions))
        np.testing.assert_allclose(energy, pred["energy"][i], rtol=1e-10)
        np.testing.assert_allclose(force, pred["forces"][i], atol=1e-10)
        np.testing.assert_allclose(-grad, pred["forces"][i], atol=1e-10)
        np.testing.assert_allclose(uncertainty, pred["uncertainty"][i], atol=1e-8)


def test_jax_md_nve_follows_run_md(x64, potential64, frames_300K):
    atoms = frames_300K[0].copy()
    atoms.calc = None
    rng = np.random.default_rng(3)
    atoms.set_velocities(rng.normal(scale=0.005, size=(len(atoms), 3)))
    ours = run_md(potential64, atoms, n_steps=60, dt_fs=0.5, record_every=60).frames[0][-1]
    fns = jax_md_functions(potential64, atoms.numbers)
    _, shift = space.free()
    init, apply = simulate.nve(fns.force_fn, shift, 0.5 * ase.units.fs)
    masses = jnp.asarray(atoms.get_masses())[:, None]
    state = init(jax.random.key(0), jnp.asarray(atoms.positions), kT=0.0, mass=masses)
    state = state.set(momentum=masses * jnp.asarray(atoms.get_velocities()))
    state = jax.lax.fori_loop(0, 60, lambda _, s: apply(s), state)
    # Different edge lists (all pairs vs a Verlet list) sum in different orders: round-off.
    np.testing.assert_allclose(state.position, ours.positions, atol=1e-7)
    np.testing.assert_allclose(state.momentum, ours.get_momenta(), rtol=1e-6, atol=1e-8)
