"""The MD of an on-the-fly run: on the device in segments, or through the ASE calculator.

Both drivers advance the run's trajectory (centre of mass fixed, as ASE's ``FixCom``) and stop
at every step where the loop has something to do; :func:`nequip_jax.otf.loop.run_otf` handles
that step the same way for both.

``"device"`` (:class:`DeviceDriver`): BAOAB Langevin (:func:`nequip_jax.md.baoab`) with the
on-device neighbour list, a segment of steps per device call. A segment ends at the first step
that the loop must see: the uncertainty trigger is eligible and fires (max per-atom
uncertainty above the threshold, at least ``min_steps_between_calls`` after the last call,
budget left), the structure is broken (the test of
:func:`nequip_jax.otf.session.broken_reason`, on the device), a scheduled step (true-error
sample, checkpoint, random-baseline call, the end or the requested stop) or
:data:`SEGMENT_STEPS` steps (the length of its trace buffers). The per-step score, energy and
kinetic energy of a segment come back with it, so the uncertainty trace costs no extra stop.
The Langevin noise of step ``k`` is drawn from ``fold_in(key, k)`` with the run's ``md`` key: a
resumed run draws the same noise.

``"ase"`` (:class:`AseDriver`): ASE's ``Langevin`` through :class:`NequIPCalculator`, one step
per call, its noise from the run's checkpointed numpy generator — the path for users who
compose the loop with ASE tools.

The two integrators differ (BAOAB and ASE's Langevin scheme), so with friction the two paths
give different, equally valid trajectories; with ``friction_per_fs = 0`` both are velocity
Verlet and follow the same trajectory to float tolerance.
"""

from __future__ import annotations

import functools
from typing import NamedTuple

import ase
import ase.units
import jax
import jax.numpy as jnp
import numpy as np

from nequip_jax.md import baoab, build_neighbours, capacity_for, init_state, make_system
from nequip_jax.model import model_jit
from nequip_jax.otf.config import OTFConfig

__all__ = ["SEGMENT_STEPS", "Frame", "TracePoint", "AseDriver", "DeviceDriver", "make_driver"]

#: The most steps of one device call (the length of its per-step trace buffers).
SEGMENT_STEPS = 256


class TracePoint(NamedTuple):
    """What the uncertainty trace logs of one step (``score`` None without uncertainty)."""

    step: int
    score: float | None
    energy: float
    temperature_K: float


class Frame(NamedTuple):
    """The step a driver stopped at: the model's energy (eV), forces [n, 3] (eV/Å, before
    the centre-of-mass projection) and per-atom uncertainty [n] (None without one), and the
    trace of every step of the advance, this one last."""

    step: int
    energy: float
    forces: np.ndarray
    uncertainty: np.ndarray | None
    trace: list[TracePoint]


def _temperature(kinetic: float, n_atoms: int) -> float:
    """ASE's ``get_temperature`` of a molecule under ``FixCom`` (3 N − 3 degrees of freedom)."""
    return 2.0 * kinetic / ((3 * n_atoms - 3) * ase.units.kB)


class AseDriver:
    """ASE Langevin through the calculator; :meth:`advance` takes one step.

    Args:
        surrogate: the model.
        atoms: the MD structure (with ``FixCom``); integrated in place.
        config: the run's configuration.
        rng: the numpy generator of the noise (checkpointed by the loop).
    """

    def __init__(self, surrogate, atoms: ase.Atoms, config: OTFConfig, rng: np.random.Generator):
        self.atoms, self.config, self.rng = atoms, config, rng
        self.restart(surrogate, step=0)

    def restart(self, surrogate, *, step: int) -> None:
        """A fresh calculator (and neighbour list) and integrator at the atoms' state."""
        from nequip_jax.otf.session import langevin

        del step
        self.has_uncertainty = surrogate.has_uncertainty
        self.calc = surrogate.calculator(self.config.skin)
        self.atoms.calc = self.calc
        self.dyn = langevin(self.atoms, self.config, self.rng)

    def advance(self, step: int, *, until: int, threshold: float, fire_from: int) -> Frame:
        """One step (the loop checks every step itself); ``until`` etc. are not needed."""
        del until, threshold, fire_from
        self.dyn.step()
        results = self.calc.results
        u = results.get("uncertainty")
        score = float(np.max(u)) if u is not None else None
        point = TracePoint(
            step + 1, score, float(results["energy"]), float(self.atoms.get_temperature())
        )
        return Frame(step + 1, float(results["energy"]), results["forces"], u, [point])


def _broken(positions: jax.Array, forces: jax.Array, min_distance: float, max_neighbour: float):
    """[] bool, the test of :func:`nequip_jax.otf.session.broken_reason` on the device."""
    n = positions.shape[0]
    diff = positions[:, None, :] - positions[None, :, :]
    dist = jnp.sqrt(jnp.sum(diff**2, axis=-1))
    dist = jnp.where(jnp.eye(n, dtype=bool), jnp.inf, dist)
    finite = jnp.all(jnp.isfinite(forces)) & jnp.all(jnp.isfinite(positions))
    nearest = jnp.min(dist, axis=1)
    return ~finite | (jnp.min(dist) < min_distance) | (jnp.max(nearest) > max_neighbour)


@functools.lru_cache(maxsize=16)
def _programs(system_key):
    """Jitted ``segment`` and ``start`` for one system (compiled once per process): the weights
    and ``settings = (masses, dt, kT, friction, broken min distance, broken max neighbour
    distance)`` are traced, so new weights or other integrator settings reuse them."""
    from nequip_jax.md._system import system_functions

    evaluate_with, _ = system_functions(*system_key)
    dtype = jnp.float64 if system_key[0].dtype == "float64" else jnp.float32

    def segment(model_params, settings, state, key, max_steps, threshold, fire_from):
        m, dt, kT, friction, min_distance, max_neighbour = settings
        evaluate = functools.partial(evaluate_with, model_params)
        n_buffer = SEGMENT_STEPS
        zeros = jnp.zeros((n_buffer,), dtype)

        def cond(carry):
            _, i, stop, _, _ = carry
            return (i < max_steps) & ~stop

        def body(carry):
            state, i, _, _, trace = carry
            new = baoab(evaluate, state, dt, m, key, kT=kT, friction=friction, fix_com=True)
            overflow = new.aux.overflow
            score = jnp.max(new.uncertainty)
            fire = (new.step >= fire_from) & (score > threshold)
            broken = _broken(new.positions, new.forces, min_distance, max_neighbour)
            kinetic = 0.5 * jnp.sum(m[:, None] * new.velocities**2)
            trace = jax.tree.map(
                lambda buf, x: buf.at[i].set(x), trace, (score, new.energy, kinetic)
            )
            state = jax.tree.map(lambda a, b: jnp.where(overflow, b, a), new, state)
            stop = overflow | fire | broken
            return state, i + jnp.where(overflow, 0, 1), stop, overflow, trace

        zero = jnp.zeros((), jnp.int32)
        false = jnp.zeros((), bool)
        state, steps, _, overflow, trace = jax.lax.while_loop(
            cond, body, (state, zero, false, false, (zeros, zeros, zeros))
        )
        return state, steps, overflow, trace

    def start(model_params, positions, velocities, nbrs, step):
        evaluate = functools.partial(evaluate_with, model_params)
        state = init_state(evaluate, positions, velocities, nbrs)
        return state._replace(step=jnp.asarray(step, jnp.int32))

    return model_jit(segment), model_jit(start)


class DeviceDriver:
    """BAOAB segments on the device (see the module notes); :meth:`advance` runs one segment.

    Args:
        surrogate: the model (a potential, with the head of its trigger, or a one-group
            ensemble).
        atoms: the MD structure; its positions and momenta follow the device state after every
            segment.
        config: the run's configuration.
        key: the Langevin noise key.
        step: the global step of the atoms' state.
    """

    def __init__(self, surrogate, atoms: ase.Atoms, config: OTFConfig, key: jax.Array, *, step):
        self.atoms, self.config, self.key = atoms, config, key
        self.masses = np.asarray(atoms.get_masses(), np.float64)
        self.capacity: int | None = None
        self.restart(surrogate, step=step)

    def _x64(self):
        return jax.enable_x64(self.float64 or jax.config.jax_enable_x64)

    def restart(self, surrogate, *, step: int) -> None:
        """The device state from the atoms' positions and momenta, with a fresh neighbour list
        (what a run resumed at ``step`` starts with), for ``surrogate``'s weights."""
        c = self.config
        model = surrogate.scoring_model()
        self.has_uncertainty = surrogate.has_uncertainty
        self.float64 = surrogate.config.dtype == "float64"
        with self._x64():
            self.system = make_system(
                model, self.atoms.numbers, skin=c.skin, ensemble_method=surrogate.method
            )
            dtype = self.system.dtype
            segment, start = _programs(self.system.key)
            settings = (
                jnp.asarray(self.masses, dtype),
                *(
                    jnp.asarray(v, dtype)
                    for v in (
                        c.timestep_fs * ase.units.fs,
                        ase.units.kB * c.temperature_K,
                        c.friction_per_fs / ase.units.fs,
                        c.broken_min_distance,
                        c.broken_max_neighbour_distance,
                    )
                ),
            )
            self.segment = functools.partial(segment, self.system.params, settings)
            x = jnp.asarray(self.atoms.positions, dtype)
            v = jnp.asarray(self.atoms.get_momenta() / self.masses[:, None], dtype)
            count = int(build_neighbours(x, self.system.cutoff, 1).count)
            self.capacity = max(self.capacity or 0, capacity_for(count))
            nbrs = build_neighbours(x, self.system.cutoff, self.capacity)
            self.state = start(self.system.params, x, v, nbrs, step)

    def _grow(self) -> None:
        """A larger neighbour list at the current positions (a build overflowed)."""
        aux, x = self.state.aux, self.state.positions
        count = int(build_neighbours(x, self.system.cutoff, 1).count)
        self.capacity = max(capacity_for(count), self.capacity + 64)
        nbrs = build_neighbours(x, self.system.cutoff, self.capacity, aux.builds)
        self.state = self.state._replace(aux=nbrs)

    def advance(self, step: int, *, until: int, threshold: float, fire_from: int) -> Frame:
        """Steps from ``step`` up to ``until`` in device calls of at most
        :data:`SEGMENT_STEPS` steps, stopping early at the first step where the trigger fires
        (``threshold``: ``inf`` when it may not; it may from step ``fire_from`` on) or the
        structure is broken."""
        n = len(self.atoms)
        trace: list[TracePoint] = []
        with self._x64():
            while True:
                remaining = min(until - step, SEGMENT_STEPS)
                state, steps, overflow, (score, energy, kinetic) = self.segment(
                    self.state,
                    self.key,
                    jnp.asarray(remaining, jnp.int32),
                    jnp.asarray(threshold, self.system.dtype),
                    jnp.asarray(fire_from, jnp.int32),
                )
                self.state = state
                steps = int(steps)
                score, energy, kinetic = jax.device_get((score, energy, kinetic))
                for i in range(steps):
                    trace.append(
                        TracePoint(
                            step + i + 1,
                            float(score[i]) if self.has_uncertainty else None,
                            float(energy[i]),
                            _temperature(float(kinetic[i]), n),
                        )
                    )
                step += steps
                if bool(overflow):
                    self._grow()  # the step was not taken; go on with a larger list
                elif steps < remaining or step == until:
                    break  # the trigger fired, the structure broke, or ``until`` was reached
            state = jax.device_get(self.state)
        self.atoms.positions = np.asarray(state.positions, np.float64)
        self.atoms.set_momenta(
            self.masses[:, None] * np.asarray(state.velocities, np.float64), apply_constraint=False
        )
        assert int(state.step) == step, (int(state.step), step)
        u = np.asarray(state.uncertainty, np.float64) if self.has_uncertainty else None
        return Frame(
            step,
            float(state.energy),
            np.asarray(state.forces, np.float64),
            u,
            trace,
        )


def make_driver(surrogate, atoms, config: OTFConfig, *, rng, key, step: int):
    """The driver ``config.md`` names (``"device"`` or ``"ase"``)."""
    if config.md == "device":
        return DeviceDriver(surrogate, atoms, config, key, step=step)
    return AseDriver(surrogate, atoms, config, rng)
