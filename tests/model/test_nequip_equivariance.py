"""Symmetries of the model (float64, tight tolerances): E(3) invariance of the energy and the
features, equivariance of the forces under rotations with inversion and translations, and
permutation equivariance of forces and features."""

import numpy as np
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from nequip_testing import SPECIES, params_for, predict_fn, tiny_config
from scipy.spatial.transform import Rotation

from nequip_jax.data import GraphDataset

CONFIGS = {
    "lmax1-parity": tiny_config(),
    # edge_chunk_size=None: the automatic choice (no chunking for these small batches).
    "lmax2-noparity-residual": tiny_config(
        lmax=2, parity=False, residual=True, num_layers=3, edge_chunk_size=None
    ),
    # nequip <= 0.5: shifted softplus / tanh / abs, trainable Bessel basis, fixed scale/shift.
    "ssp-paper-era": tiny_config(
        nonlinearity="ssp", trainable_basis=True, trainable_scale_shift=False
    ),
}


def _transformed(graph, rotation, translation):
    """The same batch with every position mapped to ``R r + t`` (same edges: distances are
    unchanged)."""
    nodes = dict(graph.nodes)
    nodes["positions"] = graph.nodes["positions"] @ rotation.T + translation
    edges = dict(graph.edges)
    edges["shifts"] = graph.edges["shifts"] @ rotation.T
    return graph._replace(nodes=nodes, edges=edges)


def _orthogonal(seed: int, inversion: bool) -> np.ndarray:
    matrix = Rotation.random(random_state=seed).as_matrix()
    return -matrix if inversion else matrix


@pytest.mark.parametrize("inversion", [False, True], ids=["SO3", "with-inversion"])
@pytest.mark.parametrize("name", sorted(CONFIGS))
# x64 is a context that may safely span all generated examples.
@settings(
    max_examples=3, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture]
)
@given(seed=st.integers(0, 2**31 - 1))
def test_energy_features_invariant_forces_equivariant(x64, batch, name, inversion, seed):
    config = CONFIGS[name]
    params = params_for(config, batch)
    predict = predict_fn(config)
    rotation = _orthogonal(seed, inversion)
    translation = np.random.default_rng(seed).normal(scale=3.0, size=3)
    before = predict(params, batch)
    after = predict(params, _transformed(batch, rotation, translation))
    np.testing.assert_allclose(after["energy"], before["energy"], rtol=1e-12, atol=1e-9)
    np.testing.assert_allclose(after["node_energy"], before["node_energy"], rtol=1e-10, atol=1e-9)
    np.testing.assert_allclose(after["features"], before["features"], rtol=1e-9, atol=1e-10)
    np.testing.assert_allclose(
        after["forces"], np.asarray(before["forces"]) @ rotation.T, rtol=1e-9, atol=1e-10
    )
    # The check has teeth: forces are not all zero and not invariant.
    assert np.abs(np.asarray(before["forces"])).max() > 1e-3


@pytest.mark.parametrize("seed", [0, 1])
def test_permuting_atoms_permutes_forces_and_features(x64, frames, budget, seed):
    config = CONFIGS["lmax1-parity"]
    atoms = frames[0]
    permutation = np.random.default_rng(seed).permutation(len(atoms))
    permuted = atoms[permutation]
    permuted.calc = None
    permuted.calc = _copy_labels(atoms, permutation)
    graphs = GraphDataset([atoms, permuted], 4.0, SPECIES)
    original = graphs.batch([0], budget, dtype=np.float64)
    shuffled = graphs.batch([1], budget, dtype=np.float64)
    params = params_for(config, original)
    predict = predict_fn(config)
    a, b = predict(params, original), predict(params, shuffled)
    n = len(atoms)
    np.testing.assert_allclose(b["energy"], a["energy"], rtol=1e-12)
    np.testing.assert_allclose(
        np.asarray(b["forces"])[:n], np.asarray(a["forces"])[:n][permutation], rtol=1e-9, atol=1e-11
    )
    np.testing.assert_allclose(
        np.asarray(b["features"])[:n],
        np.asarray(a["features"])[:n][permutation],
        rtol=1e-9,
        atol=1e-11,
    )


def _copy_labels(atoms, permutation):
    from ase.calculators.singlepoint import SinglePointCalculator

    return SinglePointCalculator(
        atoms[permutation],
        energy=atoms.get_potential_energy(),
        forces=atoms.get_forces()[permutation],
    )
