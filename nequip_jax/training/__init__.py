"""Training: configuration, loss, steps, scheduler, checkpoints, the loop and vmapped ensembles."""

from nequip_jax.training.checkpoint import load_checkpoint, save_checkpoint
from nequip_jax.training.config import (
    UNSET,
    DataConfig,
    ModelConfig,
    OptimConfig,
    RunConfig,
    apply_overrides,
    load_config,
)
from nequip_jax.training.ensemble import train_ensemble
from nequip_jax.training.loop import evaluate_sums, load_training_data, prepare, train
from nequip_jax.training.loss import ErrorSums, error_sums, summarize, weighted_loss
from nequip_jax.training.schedule import PlateauState, plateau_init, plateau_update
from nequip_jax.training.step import (
    TrainState,
    init_train_state,
    make_eval_step,
    make_optimizer,
    make_train_step,
)

__all__ = [
    "UNSET",
    "DataConfig",
    "ErrorSums",
    "ModelConfig",
    "OptimConfig",
    "PlateauState",
    "RunConfig",
    "TrainState",
    "apply_overrides",
    "error_sums",
    "evaluate_sums",
    "init_train_state",
    "load_checkpoint",
    "load_config",
    "load_training_data",
    "make_eval_step",
    "make_optimizer",
    "make_train_step",
    "plateau_init",
    "plateau_update",
    "prepare",
    "save_checkpoint",
    "summarize",
    "train",
    "train_ensemble",
    "weighted_loss",
]
