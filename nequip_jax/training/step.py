"""Pure training and evaluation steps over a padded batch.

``make_train_step`` returns a function of ``(state, batch, learning_rate)`` with no Python side
effects, so a single model jits it and an ensemble ``vmap``s it over a member axis.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any, NamedTuple

import jax
import jax.numpy as jnp
import optax

from nequip_jax.training.loss import ErrorSums, error_sums, weighted_loss

__all__ = ["TrainState", "make_optimizer", "make_train_step", "make_eval_step", "init_train_state"]


class TrainState(NamedTuple):
    """Parameters, optimiser state, EMA parameters (equal to ``params`` when EMA is off), step."""

    params: Any
    opt_state: Any
    ema_params: Any
    step: jnp.ndarray


def make_optimizer(name: str, learning_rate: float, grad_clip: float | None = None):
    """Adam or AMSGrad whose learning rate lives in the state (``optax.inject_hyperparams``)."""
    factories = {"adam": optax.adam, "amsgrad": optax.amsgrad}
    if name not in factories:
        raise ValueError(f"optimizer={name!r}: choose one of {sorted(factories)}.")

    def factory(learning_rate):
        opt = factories[name](learning_rate)
        return optax.chain(optax.clip_by_global_norm(grad_clip), opt) if grad_clip else opt

    return optax.inject_hyperparams(factory)(learning_rate=learning_rate)


def init_train_state(params, optimizer) -> TrainState:
    return TrainState(params, optimizer.init(params), params, jnp.zeros((), jnp.int32))


def _set_learning_rate(opt_state, learning_rate):
    hyper = dict(opt_state.hyperparams)
    hyper["learning_rate"] = jnp.asarray(learning_rate, hyper["learning_rate"].dtype)
    return opt_state._replace(hyperparams=hyper)


def make_train_step(
    predict: Callable,
    optimizer,
    *,
    ema_decay: float | None = None,
    energy_loss: str = "total",
) -> Callable[..., tuple[TrainState, ErrorSums]]:
    """One optimiser step on the weighted energy + force MSE of a batch
    (:func:`nequip_jax.training.weighted_loss`).

    Args:
        predict: ``predict(params, graph) -> {"energy", "forces", ...}``.
        optimizer: from :func:`make_optimizer`.
        ema_decay: decay of the parameter EMA, or ``None``.
        energy_loss: ``"total"`` (MSE of the total energy, eV²) or ``"per_atom"``.

    Returns:
        ``step(state, batch, learning_rate, energy_weight, forces_weight, active)
        -> (state, error_sums)`` with the errors before the update. ``active`` is a boolean; an
        inactive (stopped) model keeps its state unchanged. All arguments are arrays, so the step
        can be ``vmap``-ped over ensemble members with per-member hyperparameters.
    """

    def loss_fn(params, batch, energy_weight, forces_weight):
        pred = predict(params, batch)
        sums = error_sums(pred, batch)
        return weighted_loss(sums, energy_weight, forces_weight, energy_loss), sums

    def step(state: TrainState, batch, learning_rate, energy_weight, forces_weight, active):
        grad_fn = jax.value_and_grad(loss_fn, has_aux=True)
        (_, sums), grads = grad_fn(state.params, batch, energy_weight, forces_weight)
        opt_state = _set_learning_rate(state.opt_state, learning_rate)
        updates, opt_state = optimizer.update(grads, opt_state, state.params)
        params = optax.apply_updates(state.params, updates)
        if ema_decay is None:
            ema = params
        else:
            ema = jax.tree.map(
                lambda e, p: ema_decay * e + (1.0 - ema_decay) * p, state.ema_params, params
            )
        new = TrainState(params, opt_state, ema, state.step + 1)
        new = jax.tree.map(lambda n, o: jnp.where(active, n, o), new, state)
        return new, sums

    return step


def make_eval_step(predict: Callable) -> Callable[[Any, Any], ErrorSums]:
    """``eval_step(params, batch) -> error_sums`` (no gradient with respect to parameters)."""

    def eval_step(params, batch) -> ErrorSums:
        return error_sums(predict(params, batch), batch)

    return eval_step
