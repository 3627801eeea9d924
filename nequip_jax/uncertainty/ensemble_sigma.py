"""The ensemble force uncertainty σ (Zhu et al. 2023, Eq. (4)) as an uncertainty method.

σ_i = sqrt((1/3) Σ_α Var_j F̂_{j,i,α}), the population variance over the J members
(:func:`nequip_jax.uncertainty.metrics.ensemble_sigma`). It has nothing to fit; a structure's
score is the square root of the summed atomic variances (text before Eq. (11)).
"""

from __future__ import annotations

from pathlib import Path
from typing import NamedTuple

import jax
import jax.numpy as jnp
import numpy as np

from nequip_jax.uncertainty.metrics import aggregate_sigma, ensemble_sigma
from nequip_jax.uncertainty.protocol import (
    ModelOutputs,
    UncertaintyMethod,
    array_module,
    load_state,
    save_state,
)

__all__ = ["ENSEMBLE", "EnsembleState", "member_mean"]


def member_mean(member_values):
    """The ensemble's prediction from its members' — the mean over the leading member axis
    (Zhu et al. 2023, Eq. (1) for forces; energies alike): numpy for host arrays, JAX inside a
    compiled program (on-device MD)."""
    return array_module(member_values).mean(member_values, axis=0)


class EnsembleState(NamedTuple):
    """σ has nothing to fit: the empty state."""


def _fit(train_outputs: ModelOutputs | None = None, *, key: jax.Array | None = None):
    del train_outputs, key
    return EnsembleState()


def _score(state: EnsembleState, outputs: ModelOutputs):
    del state
    forces = outputs.member_forces
    if array_module(forces) is np:
        return ensemble_sigma(forces)
    return jnp.sqrt(jnp.mean(jnp.var(forces, axis=0), axis=-1))


ENSEMBLE = UncertaintyMethod(
    name="ensemble",
    model="ensemble",
    unit="eV/Å",
    label="ensemble σ",
    fit=_fit,
    score=_score,
    aggregate=aggregate_sigma,
    save=save_state,
    load=lambda path: load_state(EnsembleState, Path(path)),
    describe=lambda state: {},
)
