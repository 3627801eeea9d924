"""Integrators as pure functions of an :class:`MDState` (jittable, vmappable over replicas).

Units are ASE's: positions Å, energies eV, masses amu, time in ASE units
(``dt_fs * ase.units.fs``), velocities Å per ASE time unit, so trajectories compare with ASE's
integrators on the same system.

``evaluate(positions, aux) -> (energy [], forces [n, 3], uncertainty [n], aux)`` is the
potential: ``aux`` carries whatever it keeps between steps (the neighbour list).
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any, NamedTuple

import jax
import jax.numpy as jnp

__all__ = [
    "MDState",
    "Evaluate",
    "init_state",
    "velocity_verlet",
    "baoab",
    "kinetic_energy",
    "remove_com",
]

Evaluate = Callable[[jax.Array, Any], tuple[jax.Array, jax.Array, jax.Array, Any]]


class MDState(NamedTuple):
    """One replica at one step.

    Attributes:
        positions, velocities, forces: [n, 3].
        energy: [] potential energy (eV).
        uncertainty: [n] per-atom uncertainty at ``positions``.
        step: [] int32, steps taken (the Langevin noise of step k is drawn from
            ``fold_in(key, k)``, so a run cut into pieces equals the uninterrupted one).
        aux: what ``evaluate`` carries between steps (e.g. the neighbour list).
    """

    positions: jax.Array
    velocities: jax.Array
    forces: jax.Array
    energy: jax.Array
    uncertainty: jax.Array
    step: jax.Array
    aux: Any


def init_state(evaluate: Evaluate, positions, velocities, aux) -> MDState:
    """The state at step 0 (one evaluation of the potential)."""
    energy, forces, uncertainty, aux = evaluate(positions, aux)
    return MDState(
        positions, velocities, forces, energy, uncertainty, jnp.zeros((), jnp.int32), aux
    )


def kinetic_energy(velocities: jax.Array, masses: jax.Array) -> jax.Array:
    """[] ½ Σ m v² (eV)."""
    return 0.5 * jnp.sum(masses[:, None] * velocities**2)


def remove_com(vectors: jax.Array, masses: jax.Array, *, per_mass: bool) -> jax.Array:
    """``vectors`` [n, 3] with the centre-of-mass part removed, as ASE's ``FixCom`` does.

    ``per_mass=False`` (forces): ``f_i − m_i Σ f / Σ m`` (zero net force); ``per_mass=True``
    (velocities): ``v_i − Σ m v / Σ m`` (zero total momentum).
    """
    total = jnp.sum(masses)
    if per_mass:
        return vectors - jnp.sum(masses[:, None] * vectors, axis=0) / total
    return vectors - masses[:, None] * (jnp.sum(vectors, axis=0) / total)


def _kick_forces(forces: jax.Array, masses: jax.Array, fix_com: bool) -> jax.Array:
    return remove_com(forces, masses, per_mass=False) if fix_com else forces


def _refresh(state: MDState, evaluate: Evaluate, positions, velocities) -> MDState:
    energy, forces, uncertainty, aux = evaluate(positions, state.aux)
    return MDState(positions, velocities, forces, energy, uncertainty, state.step + 1, aux)


def velocity_verlet(
    evaluate: Evaluate,
    state: MDState,
    dt: float,
    masses: jax.Array,
    key: jax.Array | None = None,
    *,
    fix_com: bool = False,
) -> MDState:
    """One NVE step (velocity Verlet, symplectic, time reversible).

    ``v ← v + dt F / 2m;  x ← x + dt v;  F ← F(x);  v ← v + dt F / 2m``. ``key`` is unused
    (the signature matches :func:`baoab`). ``fix_com``: the kicks use the forces without their
    net part (:func:`remove_com`), so a start with zero total momentum keeps the centre of mass
    fixed (ASE's ``FixCom``); ``state.forces`` stay the model's.
    """
    del key
    inv_m = 1.0 / masses[:, None]
    v = state.velocities + 0.5 * dt * _kick_forces(state.forces, masses, fix_com) * inv_m
    x = state.positions + dt * v
    new = _refresh(state, evaluate, x, v)
    return new._replace(velocities=v + 0.5 * dt * _kick_forces(new.forces, masses, fix_com) * inv_m)


def baoab(
    evaluate: Evaluate,
    state: MDState,
    dt: float,
    masses: jax.Array,
    key: jax.Array,
    *,
    kT: float,
    friction: float,
    fix_com: bool = False,
) -> MDState:
    """One Langevin step, BAOAB splitting (Leimkuhler & Matthews 2013).

    ``B`` half kick, ``A`` half drift, ``O`` exact Ornstein–Uhlenbeck update
    ``v ← c v + sqrt((1 − c²) kT / m) ξ`` with ``c = exp(−friction dt)``, ``A`` half drift, new
    forces, ``B`` half kick. ``kT`` in eV, ``friction`` per ASE time unit. For a harmonic
    potential the sampled positions have exactly the Boltzmann variance at any ``dt`` (within
    stability), a property the tests use. ``fix_com``: kicks without the net force and the
    total momentum removed after the ``O`` step (ASE's ``FixCom``; 3 fewer degrees of freedom);
    ``state.forces`` stay the model's. With ``friction = 0`` the step is velocity Verlet.
    """
    inv_m = 1.0 / masses[:, None]
    c = jnp.exp(-friction * dt)
    noise = jax.random.normal(
        jax.random.fold_in(key, state.step), state.velocities.shape, state.velocities.dtype
    )
    v = state.velocities + 0.5 * dt * _kick_forces(state.forces, masses, fix_com) * inv_m
    x = state.positions + 0.5 * dt * v
    v = c * v + jnp.sqrt((1.0 - c**2) * kT * inv_m) * noise
    if fix_com:
        v = remove_com(v, masses, per_mass=True)
    x = x + 0.5 * dt * v
    new = _refresh(state, evaluate, x, v)
    return new._replace(velocities=v + 0.5 * dt * _kick_forces(new.forces, masses, fix_com) * inv_m)
