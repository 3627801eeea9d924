"""The random baseline as an uncertainty method: a score that knows nothing about the error.

Each atom gets a uniform draw in [0, 1) from the fitted key folded with a checksum of the
model's outputs for the structure set (the float32 bits of the features, or of the member
forces), so the same inputs get the same scores on the host and inside a program, and other
inputs independent ones. Ranking by it is ranking at random (AUC 0.5 in expectation); the
on-the-fly loop, told by ``informative=False``, spends its label budget at random steps instead.
"""

from __future__ import annotations

from pathlib import Path
from typing import NamedTuple

import jax
import jax.numpy as jnp
import numpy as np

from nequip_jax.uncertainty.protocol import (
    ModelOutputs,
    UncertaintyMethod,
    array_module,
    load_state,
    save_state,
)

__all__ = ["RANDOM", "RandomState"]


class RandomState(NamedTuple):
    """``key_data``: [2] uint32, the raw data of the ``jax.random`` key given to the fit."""

    key_data: np.ndarray


def _fit(train_outputs: ModelOutputs, *, key: jax.Array) -> RandomState:
    del train_outputs
    return RandomState(np.asarray(jax.random.key_data(key), np.uint32))


def _source(outputs: ModelOutputs):
    source = outputs.features if outputs.features is not None else outputs.member_forces
    if source is None:
        raise ValueError("the random score needs the model's features or member forces.")
    return source


def _score(state: RandomState, outputs: ModelOutputs):
    source = _source(outputs)
    n_atoms = source.shape[-2]
    if array_module(source) is np:
        bits = np.asarray(source, np.float32).view(np.uint32)
        checksum = np.sum(bits, dtype=np.uint32)
    else:
        bits = jax.lax.bitcast_convert_type(source.astype(jnp.float32), jnp.uint32)
        checksum = jnp.sum(bits, dtype=jnp.uint32)
    key = jax.random.fold_in(jax.random.wrap_key_data(jnp.asarray(state.key_data)), checksum)
    u = jax.random.uniform(key, (n_atoms,))
    return np.asarray(u, np.float64) if array_module(source) is np else u


def _aggregate(per_atom, structure_index, n_structures=None) -> np.ndarray:
    index = np.asarray(structure_index)
    s = int(index.max()) + 1 if n_structures is None else int(n_structures)
    return np.bincount(index, weights=np.asarray(per_atom, np.float64), minlength=s)


RANDOM = UncertaintyMethod(
    name="random",
    model="potential",
    unit="1",
    label="random",
    fit=_fit,
    score=_score,
    aggregate=_aggregate,
    save=save_state,
    load=lambda path: load_state(RandomState, Path(path)),
    describe=lambda state: {},
    informative=False,
)
