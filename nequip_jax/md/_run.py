"""Running MD on the device from the host: replicas, pieces, neighbour-list growth, frames.

:func:`run_md` cuts a run into pieces of at most ``chunk_steps`` steps (one compiled program
for every piece, replicas vmapped inside it), keeps going until every replica has run its steps
or stopped on its uncertainty, grows the neighbour list when a build overflowed, and returns
the recorded frames as :class:`ase.Atoms` with per-atom ``uncertainty`` arrays.
"""

from __future__ import annotations

import dataclasses
import functools
import time
from collections.abc import Callable

import ase
import ase.units
import jax
import jax.numpy as jnp
import numpy as np

from nequip_jax.md._integrators import baoab, init_state, velocity_verlet
from nequip_jax.md._loop import make_loop
from nequip_jax.md._neighbours import build_neighbours, capacity_for, check_cell
from nequip_jax.md._system import MDSystem, make_system, system_functions
from nequip_jax.model import model_jit

__all__ = ["MDResult", "run_md", "ENSEMBLES"]

ENSEMBLES = ("nve", "langevin")


@dataclasses.dataclass
class MDResult:
    """Outcome of :func:`run_md`.

    Attributes:
        frames: per replica, the recorded frames (positions, momenta, potential ``energy``
            and ``kinetic_energy`` in ``info`` (eV; extended XYZ reads the former back as the
            frame's energy), per-atom ``uncertainty`` in ``arrays``, the step in
            ``info["step"]``); a replica that stopped ends with its stop frame.
        steps: [R] steps each replica ran.
        stop_step: [R] the step at which a replica stopped on its uncertainty (-1: it did not).
        seconds: wall time of the loop (compilation included).
        steps_per_second: replica steps per second over the run (all replicas together).
        energy_drift: [R] NVE only: (E_tot(last) − E_tot(0)) / n_atoms (eV/atom); NaN for
            Langevin.
        neighbour_builds: [R] neighbour-list builds.
        capacity: edge slots of the list at the end (it only grows).
        capacities: neighbour-list capacities used (1 + the times the list grew; each is one
            program shape, compiled once per process).
        uncertainty: the uncertainty method (see :class:`~nequip_jax.md.MDSystem`).
    """

    frames: list[list[ase.Atoms]]
    steps: np.ndarray
    stop_step: np.ndarray
    seconds: float
    steps_per_second: float
    energy_drift: np.ndarray
    neighbour_builds: np.ndarray
    capacity: int
    capacities: int
    uncertainty: str

    def summary(self) -> dict:
        """JSON-ready numbers of the run."""
        return {
            "replicas": len(self.frames),
            "steps": self.steps.tolist(),
            "stop_step": [None if s < 0 else int(s) for s in self.stop_step],
            "seconds": self.seconds,
            "steps_per_second": self.steps_per_second,
            "energy_drift_eV_per_atom": [
                None if np.isnan(d) else float(d) for d in self.energy_drift
            ],
            "neighbour_builds": self.neighbour_builds.tolist(),
            "neighbour_capacity": self.capacity,
            "neighbour_capacities": self.capacities,
            "uncertainty": self.uncertainty,
        }


def _maxwell_boltzmann(key, masses: np.ndarray, temperature_K: float, replicas: int, dtype):
    """Velocities [R, n, 3] (float64 numpy) at ``temperature_K``, centre of mass at rest; the
    normal draws in ``dtype`` (the model's)."""
    kT = ase.units.kB * temperature_K
    xi = np.asarray(jax.random.normal(key, (replicas, len(masses), 3), dtype), np.float64)
    v = xi * np.sqrt(kT / masses)[None, :, None]
    com = (masses[None, :, None] * v).sum(axis=1, keepdims=True) / masses.sum()
    return v - com


@functools.lru_cache(maxsize=16)
def _programs(system_key, ensemble: str, chunk: int, record_every: int):
    """Jitted ``(model params, masses, settings, states, keys, max_steps) -> ChunkResult`` over
    vmapped replicas and ``(model params, x, v, neighbours) -> states``, cached per system,
    ensemble and frame-buffer shape. The masses and ``settings = (dt, kT, friction, stop
    threshold)`` are traced: other weights, temperatures, time steps, frictions or thresholds
    reuse the compiled programs in this process."""
    evaluate_with, _ = system_functions(*system_key)

    def piece(model_params, masses, settings, states, keys, max_steps):
        dt, kT, friction, threshold = settings
        evaluate = functools.partial(evaluate_with, model_params)
        if ensemble == "nve":
            step = functools.partial(velocity_verlet, evaluate, dt=dt, masses=masses)
        else:
            step = functools.partial(
                baoab, evaluate, dt=dt, masses=masses, kT=kT, friction=friction
            )
        loop = make_loop(
            lambda state, key: step(state, key=key),
            masses,
            n_steps=chunk,
            record_every=record_every,
            stop_uncertainty=threshold,
        )
        return jax.vmap(loop)(states, keys, max_steps)

    def start(model_params, x, v, nbrs):
        evaluate = functools.partial(evaluate_with, model_params)
        return jax.vmap(lambda x, v, n: init_state(evaluate, x, v, n))(x, v, nbrs)

    return model_jit(piece), model_jit(start)


#: Neighbour lists of replicas ``(positions [R, n, 3], cutoff, capacity, builds [R], cells)``.
_build = jax.jit(jax.vmap(build_neighbours, in_axes=(0, None, None, 0, 0)), static_argnums=(1, 2))


def _with_model_dtype(fn):
    """Run ``fn(model, atoms, ...)`` with ``jax_enable_x64`` on when the model is float64."""

    @functools.wraps(fn)
    def wrapper(model, atoms, **kwargs):
        config = model.config if hasattr(model, "config") else model.groups[0].config
        with jax.enable_x64(config.dtype == "float64" or jax.config.jax_enable_x64):
            return fn(model, atoms, **kwargs)

    return wrapper


@_with_model_dtype
def run_md(
    model,
    atoms: ase.Atoms,
    *,
    n_steps: int,
    dt_fs: float = 0.5,
    ensemble: str = "nve",
    temperature_K: float | None = None,
    friction_per_fs: float = 0.01,
    replicas: int = 1,
    seed: int = 0,
    record_every: int = 10,
    stop_uncertainty: float | None = None,
    skin: float = 0.5,
    chunk_steps: int = 1000,
    capacity: int | None = None,
    progress: Callable[[int, int, float], None] | None = None,
) -> MDResult:
    """Molecular dynamics of ``atoms`` (a molecule, or a cell periodic in all three directions
    whose perpendicular widths exceed ``2 (r_max + skin)``) with ``model`` on the device.
    Positions are not wrapped into the cell (the neighbour list takes the minimum image).

    Args:
        model: a :class:`~nequip_jax.model.Potential` (uncertainty: GMM NLL when a mixture is
            attached) or a one-group :class:`~nequip_jax.model.ensemble.Ensemble` (σ).
        atoms: the start geometry; its velocities are used unless ``temperature_K`` is given
            for the initial draw (NVE) — Langevin always needs ``temperature_K``.
        n_steps: steps per replica.
        dt_fs: time step (fs).
        ensemble: ``"nve"`` (velocity Verlet) or ``"langevin"`` (BAOAB).
        temperature_K: Maxwell–Boltzmann initial velocities (centre of mass at rest) and the
            Langevin bath temperature.
        friction_per_fs: Langevin friction (1/fs).
        replicas: copies of the molecule run in one vmapped program (their own velocity draws
            and noise).
        seed: the one seed of the run (initial velocities and Langevin noise).
        record_every: a frame every this many steps (and the stop frame).
        stop_uncertainty: a replica stops at the first step whose largest per-atom uncertainty
            exceeds this.
        skin: Verlet skin of the neighbour list (Å).
        chunk_steps: steps per device call (the program's frame buffers hold
            ``chunk_steps / record_every`` frames).
        capacity: initial edge slots (default 1.5 × the pairs of the start geometry).
        progress: called as ``progress(steps_done, n_steps, seconds)`` after every piece.

    A float64 model runs with ``jax_enable_x64`` on for the duration of the call.
    """
    if ensemble not in ENSEMBLES:
        raise ValueError(f"ensemble={ensemble!r}; choose from {ENSEMBLES}.")
    if ensemble == "langevin" and temperature_K is None:
        raise ValueError("Langevin dynamics needs temperature_K.")
    if n_steps < 0 or replicas < 1 or dt_fs <= 0:
        raise ValueError(f"n_steps={n_steps}, replicas={replicas}, dt_fs={dt_fs}: out of range.")
    periodic = bool(np.any(atoms.pbc))
    system: MDSystem = make_system(model, atoms.numbers, skin=skin, periodic=periodic)
    cell = check_cell(atoms.cell.array, atoms.pbc, system.cutoff)
    dtype = system.dtype
    masses = np.asarray(atoms.get_masses(), np.float64)
    key_v, key_noise = jax.random.split(jax.random.key(seed))
    if temperature_K is not None:
        v0 = _maxwell_boltzmann(key_v, masses, temperature_K, replicas, dtype)
    else:
        v0 = np.repeat(atoms.get_velocities()[None], replicas, axis=0)
    x0 = np.repeat(atoms.positions[None], replicas, axis=0)
    cells = None if cell is None else jnp.asarray(np.repeat(cell[None], replicas, 0), dtype)
    kT = 0.0 if ensemble == "nve" else ase.units.kB * float(temperature_K)
    threshold = np.inf if stop_uncertainty is None else float(stop_uncertainty)
    settings = tuple(
        jnp.asarray(v, dtype)
        for v in (dt_fs * ase.units.fs, kT, friction_per_fs / ase.units.fs, threshold)
    )
    run_piece, start_state = _programs(
        system.key, ensemble, max(1, min(chunk_steps, n_steps)), record_every
    )
    run_piece = functools.partial(run_piece, system.params, jnp.asarray(masses, dtype), settings)
    start_state = functools.partial(start_state, system.params)

    began = time.perf_counter()
    x = jnp.asarray(x0, dtype)
    if capacity is None:
        first = None if cells is None else cells[:1]
        count = _build(x[:1], system.cutoff, 1, jnp.zeros((1,), jnp.int32), first).count
        capacity = capacity_for(int(count[0]))
    nbrs = _build(x, system.cutoff, capacity, jnp.zeros((replicas,), jnp.int32), cells)
    if bool(np.asarray(nbrs.overflow).any()):  # a given capacity too small for the start
        capacity = capacity_for(int(np.asarray(nbrs.count).max()))
        nbrs = _build(x, system.cutoff, capacity, jnp.zeros((replicas,), jnp.int32), cells)
    state = start_state(x, jnp.asarray(v0, dtype), nbrs)
    keys = jax.random.split(key_noise, replicas)
    done = np.zeros(replicas, np.int64)
    stop_step = np.full(replicas, -1)
    pieces: list[list] = [[] for _ in range(replicas)]
    e0 = np.asarray(state.energy) + np.array(
        [0.5 * np.sum(masses[:, None] * np.asarray(v) ** 2) for v in np.asarray(state.velocities)]
    )
    capacities = 1
    while True:
        remaining = np.where(stop_step >= 0, 0, n_steps - done)
        if not remaining.any():
            break
        result = run_piece(state, keys, jnp.asarray(remaining, jnp.int32))
        state = result.state
        steps = np.asarray(result.steps)
        done += steps
        stopped = np.asarray(result.stopped)
        stop_step = np.where(stopped, np.asarray(state.step), stop_step)
        records = jax.device_get(result.records)
        for r in range(replicas):
            used = records.step[r] >= 0
            pieces[r].append(jax.tree.map(lambda a, used=used, r=r: a[r][used], records))
            if stopped[r] and not (records.step[r][used] == int(state.step[r])).any():
                pieces[r].append(
                    jax.tree.map(
                        lambda a, r=r: np.asarray(a)[r][None],
                        _frame_of(state, jnp.asarray(masses, dtype)),
                    )
                )
        if np.asarray(result.overflow).any():
            # Grow the list for every replica at its current positions and go on.
            aux = state.aux
            counts = np.asarray(_build(state.positions, system.cutoff, 1, aux.builds, cells).count)
            capacity = max(capacity_for(int(counts.max())), capacity + 64)
            state = state._replace(
                aux=_build(state.positions, system.cutoff, capacity, aux.builds, cells)
            )
            capacities += 1
        if progress is not None:
            progress(int(done.min()), n_steps, time.perf_counter() - began)
    jax.block_until_ready(state.positions)
    seconds = time.perf_counter() - began
    frames = [_to_atoms(atoms, masses, p) for p in pieces]
    drift = np.full(replicas, np.nan)
    if ensemble == "nve":
        for r in range(replicas):
            if frames[r]:
                last = frames[r][-1].info
                drift[r] = (last["energy"] + last["kinetic_energy"] - e0[r]) / len(atoms)
    return MDResult(
        frames=frames,
        steps=done,
        stop_step=stop_step,
        seconds=seconds,
        steps_per_second=float(done.sum() / seconds) if seconds > 0 else float("nan"),
        energy_drift=drift,
        neighbour_builds=np.asarray(state.aux.builds),
        capacity=int(capacity),
        capacities=capacities,
        uncertainty=system.uncertainty,
    )


def _frame_of(state, masses):
    """The current state as a one-frame :class:`Records` (replica axis kept)."""
    from nequip_jax.md._loop import Records

    kinetic = 0.5 * jnp.sum(masses[None, :, None] * state.velocities**2, axis=(1, 2))
    return Records(
        step=state.step,
        positions=state.positions,
        velocities=state.velocities,
        energy=state.energy,
        kinetic=kinetic,
        uncertainty=state.uncertainty,
    )


def _to_atoms(template: ase.Atoms, masses: np.ndarray, pieces: list) -> list[ase.Atoms]:
    frames = []
    for records in pieces:
        for k in range(len(records.step)):
            atoms = ase.Atoms(
                numbers=template.numbers,
                positions=np.asarray(records.positions[k], np.float64),
                cell=template.cell,
                pbc=template.pbc,
            )
            atoms.set_momenta(masses[:, None] * np.asarray(records.velocities[k], np.float64))
            atoms.arrays["uncertainty"] = np.asarray(records.uncertainty[k], np.float64)
            atoms.info["step"] = int(records.step[k])
            atoms.info["energy"] = float(records.energy[k])
            atoms.info["kinetic_energy"] = float(records.kinetic[k])
            frames.append(atoms)
    return frames
