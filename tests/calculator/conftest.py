"""Tiny float64 models (no training needed: the calculator must reproduce any parameters)."""

import jax
import numpy as np
import pytest

import gmm
from nequip_jax.data import GraphDataset, compute_budget
from nequip_jax.model import NequIPConfig, Potential, make_model_fns
from nequip_jax.uncertainty.ensemble import Ensemble, EnsembleGroup

SPECIES = (1, 6, 7, 8)
# The tiny hyperparameters of tests/conftest.py (TINY), needed here at session scope.
TINY = {
    "num_features": 4,
    "lmax": 1,
    "num_layers": 2,
    "r_max": 4.0,
    "num_basis": 4,
    "radial_mlp_depth": 1,
    "radial_mlp_width": 8,
}


#: Force RMS (eV/Å) the untrained models are scaled to on a 3BPA frame: a smooth, realistic
#: surface for MD and relaxation whatever the initialisation of the network.
FORCE_RMS = 0.15


def _config(**fields):
    values = {**TINY, **fields}
    return NequIPConfig(num_species=4, avg_num_neighbors=15.0, dtype="float64", **values)


def _scaled(potential: Potential, frame) -> Potential:
    """``potential`` with its per-species energy scales multiplied so that the force RMS on
    ``frame`` is :data:`FORCE_RMS` (forces are linear in the scale)."""
    rms = float(np.sqrt(np.mean(potential.predict([frame])["forces"][0] ** 2)))
    params = jax.tree.map(np.asarray, potential.params)
    params["params"]["energy_scale"] = params["params"]["energy_scale"] * (FORCE_RMS / rms)
    return Potential(potential.config, params, potential.species)


def _init(config, frames, seed):
    with jax.enable_x64(True):
        ds = GraphDataset(frames[:1], config.r_max, SPECIES)
        init, _ = make_model_fns(config)
        batch = ds.batch([0], compute_budget(ds, 1), dtype=np.float64)
        return jax.device_get(init(jax.random.key(seed), batch))


def _mixture(dim: int, seed: int) -> gmm.GMMParams:
    """A 2-component full-covariance mixture with random means and precisions (any mixture
    will do: the calculator must reproduce ``Potential.predict`` whatever the GMM)."""
    rng = np.random.default_rng(seed)
    chol = np.triu(rng.normal(scale=0.3, size=(2, dim, dim)), 1)
    chol += np.eye(dim) * rng.uniform(0.5, 2.0, size=(2, 1, dim))
    return gmm.GMMParams(np.array([0.3, 0.7]), rng.normal(size=(2, dim)), chol)


@pytest.fixture(scope="session")
def potential64(frames_300K):
    """A tiny untrained float64 potential with a 2-component GMM attached."""
    config = _config()
    potential = _scaled(Potential(config, _init(config, frames_300K, 0), SPECIES), frames_300K[0])
    return potential.with_gmm(_mixture(config.resolved_feature_dim, 1))


@pytest.fixture(scope="session")
def ensemble64(frames_300K):
    """Three untrained float64 one-layer members in two groups with cutoffs 4 and 3.5 Å."""
    groups = []
    for members, r_max in (([0, 1], 4.0), ([2], 3.5)):
        config = _config(r_max=r_max, num_layers=1)
        params = [_init(config, frames_300K, 10 + m) for m in members]
        stacked = jax.tree.map(lambda *x: np.stack(x), *params)
        groups.append(EnsembleGroup(config, stacked, members, SPECIES))
    return Ensemble(groups=groups, species=SPECIES)
