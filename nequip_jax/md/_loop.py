"""The MD loop on the device: ``lax.while_loop`` over steps with frames recorded into static
buffers, an uncertainty stop and neighbour-list overflow detection.

One call runs at most ``n_steps`` steps and returns early when

* a step's largest per-atom uncertainty exceeds ``stop_uncertainty``: that step is taken and
  its frame is the returned state (``stopped``), or
* the neighbour list rebuilt during a step overflowed: that step is *not* taken (the returned
  state is the one before it, ``overflow``), so the host can grow the list and call again;
  the result equals a run with a large enough list from the start.

Vmapping the returned function over a leading replica axis runs replicas in one program
(each replica stops on its own; finished replicas stay frozen).
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any, NamedTuple

import jax
import jax.numpy as jnp

from nequip_jax.md._integrators import MDState, kinetic_energy

__all__ = ["Records", "ChunkResult", "make_loop"]


class Records(NamedTuple):
    """Frames recorded every ``record_every`` steps (unused slots: ``step == -1``).

    Attributes:
        step: [n_records] int32 global step of each frame.
        positions, velocities: [n_records, n, 3].
        energy, kinetic: [n_records] potential and kinetic energy (eV).
        uncertainty: [n_records, n].
    """

    step: jax.Array
    positions: jax.Array
    velocities: jax.Array
    energy: jax.Array
    kinetic: jax.Array
    uncertainty: jax.Array


class ChunkResult(NamedTuple):
    """What one loop call returns (``steps``: steps taken in this call)."""

    state: MDState
    records: Records
    steps: jax.Array
    stopped: jax.Array
    overflow: jax.Array


def _empty_records(state: MDState, n_records: int) -> Records:
    n = state.positions.shape[0]
    dtype = state.positions.dtype
    return Records(
        step=jnp.full((n_records,), -1, jnp.int32),
        positions=jnp.zeros((n_records, n, 3), dtype),
        velocities=jnp.zeros((n_records, n, 3), dtype),
        energy=jnp.zeros((n_records,), dtype),
        kinetic=jnp.zeros((n_records,), dtype),
        uncertainty=jnp.zeros((n_records, n), dtype),
    )


def make_loop(
    step: Callable[[MDState, jax.Array], MDState],
    masses: jax.Array,
    *,
    n_steps: int,
    record_every: int = 1,
    stop_uncertainty: float | jax.Array | None = None,
    overflow_of: Callable[[Any], jax.Array] = lambda aux: getattr(aux, "overflow", False),
) -> Callable[[MDState, jax.Array], ChunkResult]:
    """``loop(state, key, max_steps) -> ChunkResult`` running up to ``min(n_steps,
    max_steps)`` steps of ``step`` (``max_steps`` is a traced int, so shorter pieces and
    finished replicas, ``max_steps = 0``, reuse the same program).

    Args:
        step: ``(state, key) -> state`` one integrator step (e.g. :func:`velocity_verlet` with
            its potential bound).
        masses: [n] (amu).
        n_steps: the most steps per call (static: the frame buffers are sized by it).
        record_every: a frame is recorded after every ``record_every``-th step of the run
            (global step count, so pieces of a run record the same frames as the whole).
        stop_uncertainty: stop at the first step whose largest per-atom uncertainty exceeds
            this (``None``: never); a float or a traced scalar (one program, any threshold).
        overflow_of: reads the overflow flag from the state's ``aux``.
    """
    if n_steps < 1 or record_every < 1:
        raise ValueError(f"n_steps={n_steps} and record_every={record_every} must be >= 1.")
    n_records = -(-n_steps // record_every)
    threshold = jnp.inf if stop_uncertainty is None else stop_uncertainty

    def loop(state: MDState, key: jax.Array, max_steps: jax.Array | int = n_steps) -> ChunkResult:
        limit = jnp.minimum(jnp.asarray(max_steps, jnp.int32), n_steps)

        def cond(carry):
            _, _, i, stopped, overflow, _ = carry
            return (i < limit) & ~stopped & ~overflow

        def body(carry):
            state, records, i, _, _, slot = carry
            new = step(state, key)
            overflow = jnp.asarray(overflow_of(new.aux))
            stopped = ~overflow & (jnp.max(new.uncertainty) > threshold)
            record = ~overflow & (new.step % record_every == 0)
            # Every step writes into the next free slot (an in-place update); only a recorded
            # frame marks it as used (its step) and moves on, so unrecorded writes are
            # overwritten or left with step -1.
            records = Records(
                step=records.step.at[slot].set(jnp.where(record, new.step, -1)),
                positions=records.positions.at[slot].set(new.positions),
                velocities=records.velocities.at[slot].set(new.velocities),
                energy=records.energy.at[slot].set(new.energy),
                kinetic=records.kinetic.at[slot].set(kinetic_energy(new.velocities, masses)),
                uncertainty=records.uncertainty.at[slot].set(new.uncertainty),
            )
            state = jax.tree.map(lambda n, o: jnp.where(overflow, o, n), new, state)
            return (
                state,
                records,
                i + jnp.where(overflow, 0, 1),
                stopped,
                overflow,
                slot + jnp.where(record, 1, 0),
            )

        zero = jnp.zeros((), jnp.int32)
        # One spare slot takes the writes after the last recorded frame.
        carry = (state, _empty_records(state, n_records + 1), zero, False, False, zero)
        state, records, i, stopped, overflow, _ = jax.lax.while_loop(cond, body, carry)
        records = jax.tree.map(lambda r: r[:n_records], records)
        return ChunkResult(state, records, i, stopped, overflow)

    return loop
