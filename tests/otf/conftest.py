"""Tiny float32 models for the on-the-fly tests (untrained: the code under test must reproduce
the library's predictions for any parameters)."""

import jax
import numpy as np
import pytest

from nequip_jax.data import GraphDataset, compute_budget
from nequip_jax.model import NequIPConfig, Potential, make_model_fns
from nequip_jax.model.ensemble import Ensemble, EnsembleGroup
from tests.tiny_models import SPECIES, TINY_MODEL


def tiny_config(**fields) -> NequIPConfig:
    return NequIPConfig(
        num_species=4, avg_num_neighbors=15.0, energy_scale=10.0, **{**TINY_MODEL, **fields}
    )


def init_params(config, frames, seed):
    ds = GraphDataset(frames[:1], config.r_max, SPECIES)
    init, _ = make_model_fns(config)
    return jax.device_get(init(jax.random.key(seed), ds.batch([0], compute_budget(ds, 1))))


@pytest.fixture(scope="session")
def tiny_potential(frames_300K):
    config = tiny_config()
    return Potential(config, init_params(config, frames_300K, 0), SPECIES)


@pytest.fixture(scope="session")
def tiny_ensemble(frames_300K):
    config = tiny_config()
    params = [init_params(config, frames_300K, 20 + j) for j in range(3)]
    stacked = jax.tree.map(lambda *x: np.stack(x), *params)
    return Ensemble(groups=[EnsembleGroup(config, stacked, [0, 1, 2], SPECIES)], species=SPECIES)
