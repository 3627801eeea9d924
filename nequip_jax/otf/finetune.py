"""Warm-start fine-tuning that compiles once for a growing training set.

After every oracle call the training set grows by one structure and the model is refitted for a
few epochs from its current weights. :func:`nequip_jax.training.train` would rebuild its jitted
step (and its padded shapes) on every call — tens of seconds of compilation per oracle call on a
CPU. :class:`FineTuner` keeps one jitted step per model configuration and a padded budget that
only grows (with head-room) when a batch no longer fits, so a whole on-the-fly run compiles its
training step once or twice. An ensemble is fine-tuned with the same step ``vmap``-ped over a
leading member axis (each member its own batch order), as in the ensemble trainer; both run
their epochs through the trainer's :func:`nequip_jax.training.loop.train_epoch`.

The optimiser (Adam) starts with fresh moments at every call: the state of a fine-tuning run is
only its parameters, so a checkpoint needs nothing else.
"""

from __future__ import annotations

import functools
from collections.abc import Sequence
from typing import Any, NamedTuple

import jax
import jax.numpy as jnp
import numpy as np

from nequip_jax.data import GraphDataset, PaddingBudget, compute_budget, round_up
from nequip_jax.model import NequIPConfig, make_model_fns, model_jit
from nequip_jax.training import (
    init_train_state,
    make_optimizer,
    make_train_step,
    summarize,
)
from nequip_jax.training.loop import member_key, train_epoch, unstack_member

__all__ = ["FineTuner", "FineTuneResult", "grow_budget"]


def grow_budget(
    current: PaddingBudget | None, needed: PaddingBudget, headroom: float = 1.25
) -> PaddingBudget:
    """``current`` if ``needed`` fits in it, else ``needed`` with head-room.

    Nodes and edges are enlarged to ``headroom`` × the need, rounded up to multiples of 32 and
    64; the number of graphs is kept from ``needed``.

    Args:
        current: the budget in use (``None``: none yet).
        needed: the smallest budget that fits (e.g. :func:`nequip_jax.data.compute_budget`).
        headroom: growth factor (≥ 1).
    """
    if (
        current is not None
        and needed.n_node <= current.n_node
        and needed.n_edge <= current.n_edge
        and needed.n_graph <= current.n_graph
    ):
        return current
    return PaddingBudget(
        n_node=round_up(headroom * needed.n_node, 32),
        n_edge=round_up(headroom * needed.n_edge, 64),
        n_graph=needed.n_graph,
    )


@functools.lru_cache(maxsize=16)
def _compiled(config: NequIPConfig, n_members: int | None, learning_rate: float, energy_loss: str):
    """Jitted ``(init_state, train_step)`` per configuration, shared by every :class:`FineTuner`
    of it (a resumed run in the same process reuses the compiled step)."""
    _, predict = make_model_fns(config)
    optimizer = make_optimizer("adam", learning_rate)
    step = make_train_step(predict, optimizer, energy_loss=energy_loss)

    def init(params):
        return init_train_state(params, optimizer)

    if n_members is not None:
        step, init = jax.vmap(step), jax.vmap(init)
    # init under jit: its outputs are fresh buffers (``params`` and ``ema_params`` must not be
    # one buffer, as the step donates the state).
    return (
        model_jit(init),
        model_jit(step, donate_argnums=0),
    )


class FineTuneResult(NamedTuple):
    """Parameters after fine-tuning and the per-epoch training errors.

    Attributes:
        params: the final parameters (leading member axis for an ensemble).
        history: one dict per epoch with ``forces_rmse`` (eV/Å) and ``energy_rmse`` (eV/atom),
            each a list over members (length 1 for a single model).
    """

    params: Any
    history: list[dict]


class FineTuner:
    """Warm-start training of one model or a same-shaped ensemble on a growing data set.

    Args:
        config: the model hyperparameters (statistics included; they stay fixed).
        n_members: ``None`` for a single model, else the size of the member axis of the params.
        learning_rate: Adam learning rate (constant).
        batch_size: structures per batch.
        energy_weight / forces_weight: loss weights of the energy and force MSE.
        energy_loss: ``"total"`` (MSE of the total energy) or ``"per_atom"``
            (see :func:`nequip_jax.training.weighted_loss`).

    Attributes:
        budget: the padded batch shape in use (grows only when a data set needs more).
        n_compiles: number of distinct batch shapes the step has been run with.
    """

    def __init__(
        self,
        config: NequIPConfig,
        *,
        n_members: int | None = None,
        learning_rate: float = 0.002,
        batch_size: int = 5,
        energy_weight: float = 1.0,
        forces_weight: float = 729.0,
        energy_loss: str = "total",
    ):
        if batch_size < 1:
            raise ValueError(f"batch_size={batch_size} must be at least 1.")
        self.config = config
        self.n_members = n_members
        self.batch_size = batch_size
        self.weights = (float(energy_weight), float(forces_weight))
        self.energy_loss = energy_loss
        self.learning_rate = float(learning_rate)
        self._init, self._step = _compiled(config, n_members, self.learning_rate, energy_loss)
        self.budget: PaddingBudget | None = None
        self._shapes: set[PaddingBudget] = set()

    @property
    def n_compiles(self) -> int:
        return len(self._shapes)

    def run(
        self,
        params,
        dataset: GraphDataset,
        *,
        epochs: int,
        key: jax.Array,
        members: Sequence[int] | None = None,
    ) -> FineTuneResult:
        """Fine-tune ``params`` on ``dataset`` for ``epochs`` epochs.

        Args:
            params: starting parameters ([members, ...] leaves for an ensemble).
            dataset: the labelled training graphs (built with the model's cutoff and species).
            epochs: passes over the data set.
            key: ``jax.random`` key of the call. Member ``m`` shuffles epoch ``e`` with
                ``fold_in(member_key(key, m), e)`` (:func:`nequip_jax.training.loop.member_key`,
                the trainer's rule), so member ``j`` of an ensemble equals a single model
                fine-tuned from its parameters as member ``j``.
            members: the member numbers of the params' members (default ``0, 1, …``; a single
                model is member 0).

        Returns:
            :class:`FineTuneResult`.
        """
        needed = compute_budget(dataset, self.batch_size)
        needed = needed._replace(n_graph=self.batch_size + 1)
        self.budget = grow_budget(self.budget, needed)
        self._shapes.add(self.budget)
        float64 = self.config.dtype == "float64"
        dtype = np.float64 if float64 else np.float32
        n = 1 if self.n_members is None else self.n_members
        members = tuple(range(n)) if members is None else tuple(int(m) for m in members)
        if len(members) != n:
            raise ValueError(
                f"members={members}: expected {n} member number(s), one per member of the params."
            )
        shuffle_keys = [member_key(key, m) for m in members]
        history = []
        with jax.enable_x64(float64):
            state = self._init(jax.tree.map(jnp.asarray, params))
            lr = np.full(n, self.learning_rate, dtype)
            ew, fw = (np.full(n, w, dtype) for w in self.weights)
            active = np.ones(n, bool)
            if self.n_members is None:
                lr, ew, fw, active = lr[0], ew[0], fw[0], active[0]
            for epoch in range(epochs):
                state, total = train_epoch(
                    self._step,
                    state,
                    dataset,
                    batch_size=self.batch_size,
                    budget=self.budget,
                    shuffle_keys=shuffle_keys,
                    epoch=epoch,
                    step_args=(lr, ew, fw, active),
                    dtype=dtype,
                    member_axis=self.n_members is not None,
                )
                total = jax.device_get(total)
                rows = [
                    summarize(
                        total if self.n_members is None else unstack_member(total, j),
                        *self.weights,
                        self.energy_loss,
                    )
                    for j in range(n)
                ]
                history.append(
                    {
                        "epoch": epoch,
                        "forces_rmse": [float(r["forces_rmse"]) for r in rows],
                        "energy_rmse": [float(r["energy_rmse"]) for r in rows],
                    }
                )
            params = jax.device_get(state.params)
        return FineTuneResult(params, history)
