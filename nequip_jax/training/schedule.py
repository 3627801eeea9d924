"""Reduce-on-plateau learning rate and early stopping, per model or per ensemble member.

The state is a NamedTuple of numpy arrays with an optional leading member axis, updated once per
epoch on the host from the validation loss (a scalar per member). Stopped members keep their
state; the caller freezes their parameters.
"""

from __future__ import annotations

from typing import NamedTuple

import numpy as np

__all__ = [
    "STOP_REASONS",
    "RECORDED_STOP_REASONS",
    "PlateauState",
    "plateau_init",
    "plateau_update",
    "stop_reason",
]

#: ``PlateauState.reason`` codes: why a member stopped (``"running"``: it has not). The training
#: loop adds ``"max_epochs"`` and ``"time_budget"`` for members still running when it ends.
STOP_REASONS = ("running", "min_learning_rate", "early_stopping", "non_finite")
#: Every stop reason a network's training record can hold (see
#: :func:`nequip_jax.training.loop.network_records`).
RECORDED_STOP_REASONS = STOP_REASONS[1:] + ("max_epochs", "time_budget")


class PlateauState(NamedTuple):
    """Scheduler state; every field has shape ``[]`` or ``[n_members]``.

    Attributes:
        learning_rate: current learning rate.
        best: best validation loss so far (``inf`` before the first epoch).
        bad_epochs: epochs since the last improvement or learning-rate reduction.
        since_best: epochs since the best validation loss (for early stopping).
        stopped: the member has stopped training.
        improved: the last update improved on the best loss (save a "best" checkpoint).
        reason: index in :data:`STOP_REASONS` of why the member stopped (0 while running).
    """

    learning_rate: np.ndarray
    best: np.ndarray
    bad_epochs: np.ndarray
    since_best: np.ndarray
    stopped: np.ndarray
    improved: np.ndarray
    reason: np.ndarray


def plateau_init(learning_rate, shape: tuple[int, ...] = ()) -> PlateauState:
    """Initial state; ``learning_rate`` is broadcast to ``shape``."""
    return PlateauState(
        learning_rate=np.broadcast_to(np.asarray(learning_rate, np.float64), shape).copy(),
        best=np.full(shape, np.inf),
        bad_epochs=np.zeros(shape, np.int64),
        since_best=np.zeros(shape, np.int64),
        stopped=np.zeros(shape, bool),
        improved=np.zeros(shape, bool),
        reason=np.zeros(shape, np.int64),
    )


def plateau_update(
    state: PlateauState,
    val_loss,
    *,
    patience: int,
    factor: float,
    threshold: float = 1e-4,
    min_learning_rate: float = 0.0,
    early_stopping_patience: int | None = None,
) -> PlateauState:
    """One epoch of ReduceLROnPlateau (mode ``min``, relative threshold) and early stopping.

    An epoch improves when ``val_loss < best · (1 − threshold)``. After more than ``patience``
    epochs without improvement the learning rate is multiplied by ``factor`` and the count
    restarts. A member stops when its learning rate falls below ``min_learning_rate``, when
    ``early_stopping_patience`` epochs pass without improvement, or when its loss is not finite.
    Stopped members are left unchanged.
    """
    loss = np.asarray(val_loss, np.float64)
    active = ~state.stopped
    improved = active & (loss < state.best * (1.0 - threshold))
    best = np.where(improved, loss, state.best)
    bad = np.where(improved, 0, state.bad_epochs + 1)
    since = np.where(improved, 0, state.since_best + 1)
    reduce = active & (bad > patience)
    lr = np.where(reduce, state.learning_rate * factor, state.learning_rate)
    bad = np.where(reduce, 0, bad)
    # The first applicable reason in the order of STOP_REASONS (a non-finite loss overrides).
    reason = np.where(lr < min_learning_rate, 1, 0)
    if early_stopping_patience is not None:
        reason = np.where((reason == 0) & (since >= early_stopping_patience), 2, reason)
    reason = np.where(~np.isfinite(loss), 3, reason)
    stop = reason > 0
    return PlateauState(
        learning_rate=np.where(active, lr, state.learning_rate),
        best=np.where(active, best, state.best),
        bad_epochs=np.where(active, bad, state.bad_epochs),
        since_best=np.where(active, since, state.since_best),
        stopped=state.stopped | (active & stop),
        improved=improved,
        reason=np.where(active & stop, reason, state.reason),
    )


def stop_reason(state: PlateauState, j: int | None = None) -> str:
    """Name of why member ``j`` (or the single model) stopped, ``"running"`` if it has not."""
    code = np.asarray(state.reason) if j is None else np.asarray(state.reason)[j]
    return STOP_REASONS[int(code)]
