"""Forces, padding, compilation and the cutoff: finite differences, padded vs unpadded batches,
trace counting, and the order of contact of the energy at r_max."""

import ase
import jax
import jax.numpy as jnp
import numpy as np
import pytest
from nequip_testing import R_MAX, SPECIES, params_for, predict_fn, tiny_config

from nequip_jax.data import GraphDataset, PaddingBudget, iterate_batches
from nequip_jax.model import NequIP, energy_forces_features

CONFIG = tiny_config()


def _moved(graph, atom, component, delta):
    nodes = dict(graph.nodes)
    positions = np.array(graph.nodes["positions"], dtype=np.float64)
    positions[atom, component] += delta
    nodes["positions"] = positions
    return graph._replace(nodes=nodes)


def test_forces_equal_central_finite_differences(x64, batch):
    params = params_for(CONFIG, batch)
    predict = predict_fn(CONFIG)
    forces = np.asarray(predict(params, batch)["forces"])
    n_real = int(np.sum(batch.nodes["mask"]))
    rng = np.random.default_rng(0)
    h = 1e-4
    for atom, component in zip(rng.integers(0, n_real, 8), rng.integers(0, 3, 8), strict=True):
        up = float(np.sum(predict(params, _moved(batch, atom, component, h))["energy"]))
        down = float(np.sum(predict(params, _moved(batch, atom, component, -h))["energy"]))
        numeric = -(up - down) / (2 * h)
        assert forces[atom, component] == pytest.approx(numeric, rel=1e-6, abs=1e-7)


def test_node_energy_is_affine_in_the_final_features(x64, batch):
    # Zhu et al. (2023): the features are the input of the last linear map to the atomic energy,
    # so (E_i − shift_s) / scale_s must be an exact linear function of the features (no bias).
    params = params_for(CONFIG, batch)
    out = predict_fn(CONFIG)(params, batch)
    mask = np.asarray(batch.nodes["mask"])
    species = np.asarray(batch.nodes["species"])[mask]
    scaled = (
        np.asarray(out["node_energy"])[mask] - np.asarray(CONFIG.shifts)[species]
    ) / np.asarray(CONFIG.scales)[species]
    features = np.asarray(out["features"])[mask]
    assert features.shape[1] == CONFIG.resolved_feature_dim == 2
    coef, *_ = np.linalg.lstsq(features, scaled, rcond=None)
    np.testing.assert_allclose(features @ coef, scaled, rtol=1e-10, atol=1e-12)
    assert np.std(scaled) > 1e-6  # a constant would be trivially affine


def test_padding_does_not_change_outputs(x64, dataset, batch, budget):
    params = params_for(CONFIG, batch)
    predict = predict_fn(CONFIG)
    bigger = PaddingBudget(budget.n_node + 17, budget.n_edge + 101, budget.n_graph + 3)
    padded = dataset.batch(np.arange(3), bigger, dtype=np.float64)
    a, b = predict(params, batch), predict(params, padded)
    n = int(np.sum(batch.nodes["mask"]))
    np.testing.assert_allclose(np.asarray(b["energy"])[:3], np.asarray(a["energy"])[:3], rtol=1e-13)
    for key in ("forces", "node_energy", "features"):
        np.testing.assert_allclose(
            np.asarray(b[key])[:n], np.asarray(a[key])[:n], rtol=1e-11, atol=1e-12
        )
        assert np.all(np.asarray(b[key])[n:] == 0.0), key  # padding atoms give zeros
    assert np.all(np.asarray(b["energy"])[3:] == 0.0)  # padding graphs give zeros


def _loss_grad(config):
    model = NequIP(config)

    def loss(params, graph):
        out = energy_forces_features(model, params, graph)
        energy_error = (out["energy"] - graph.globals["energy"]) * graph.globals["mask"]
        force_error = (out["forces"] - graph.nodes["forces"]) * graph.nodes["mask"][:, None]
        return jnp.sum(energy_error**2) + jnp.sum(force_error**2)

    return jax.jit(jax.value_and_grad(loss))


def test_parameter_gradients_are_finite_on_padded_batches(dataset, budget):
    # float32, the production dtype; the second batch is a single isolated atom: every edge is
    # a zero-length padding self-loop.
    config = tiny_config(num_features=2, dtype="float32")
    lone = ase.Atoms("H", positions=[[0.0, 0.0, 0.0]])
    lone_graphs = GraphDataset([lone], R_MAX, SPECIES, require_labels=False)
    batches = [dataset.batch(np.arange(3), budget), lone_graphs.batch([0], budget)]
    assert not np.any(batches[1].edges["mask"])
    grad_fn = _loss_grad(config)
    params = params_for(config, batches[0])
    for graph in batches:
        value, grads = grad_fn(params, graph)
        leaves = jax.tree.leaves(grads)
        assert np.isfinite(float(value))
        assert all(np.all(np.isfinite(np.asarray(g))) for g in leaves)
        assert any(np.any(np.asarray(g) != 0.0) for g in leaves)


def test_jit_traces_once_per_padded_shape(dataset, budget):
    config = tiny_config(num_features=2, num_layers=1, dtype="float32")
    model = NequIP(config)
    traces = []

    @jax.jit
    def predict(params, graph):
        traces.append(1)  # runs only while tracing
        return energy_forces_features(model, params, graph)

    params = params_for(config, None)
    for graph in iterate_batches(dataset, 3, budget, key=jax.random.key(0)):  # an epoch
        predict(params, graph)
    for graph in iterate_batches(dataset, 3, budget, key=jax.random.key(1)):  # another one
        predict(params, graph)
    assert len(traces) == 1
    other = PaddingBudget(budget.n_node + 1, budget.n_edge, budget.n_graph)
    predict(params, dataset.batch([0], other))
    assert len(traces) == 2


def _dimer(distance: float) -> ase.Atoms:
    return ase.Atoms("CH", positions=[[0.0, 0.0, 0.0], [distance, 0.1, -0.2]])


def test_energy_and_force_vanish_smoothly_at_the_cutoff(x64, budget):
    # Near r_max the edge embedding B_n(r)·u(r/r_max) vanishes to fourth order: the p = 6
    # envelope has u(1) = u'(1) = u''(1) = 0 (third order) and every Bessel function
    # sin(nπr/r_max)/r has a simple zero at r_max. So the pair energy goes as (r_max − r)^4 and
    # the force as (r_max − r)^3; beyond r_max the atoms do not interact at all.
    params = params_for(CONFIG, None)
    predict = predict_fn(CONFIG)
    y, z = 0.1, -0.2  # the dimer's fixed offset, so that r = sqrt(d^2 + y^2 + z^2)

    def energy_force(r):
        d = np.sqrt(r**2 - y**2 - z**2)
        graphs = GraphDataset([_dimer(d)], R_MAX, SPECIES, require_labels=False)
        out = predict(params, graphs.batch([0], budget, dtype=np.float64))
        return float(out["energy"][0]), np.asarray(out["forces"])[:2]

    far, far_force = energy_force(R_MAX + 0.3)
    np.testing.assert_array_equal(far_force, 0.0)
    assert energy_force(R_MAX + 1.7)[0] == far  # no interaction beyond the cutoff
    assert energy_force(R_MAX + 1e-9)[0] == far
    # Energies carry ~1e3 eV shifts (float64 resolution ~1e-13 eV): keep ΔE well above that.
    gaps = np.array([5e-2, 2e-2, 8e-3])
    delta_e, force = [], []
    for gap in gaps:
        energy, forces = energy_force(R_MAX - gap)
        delta_e.append(abs(energy - far))
        force.append(np.linalg.norm(forces[0]))
    delta_e, force = np.array(delta_e), np.array(force)
    assert delta_e[0] > 1e-9 and force[0] > 1e-8  # the pair does interact inside the cutoff
    energy_order = np.log10(delta_e[1:] / delta_e[:-1]) / np.log10(gaps[1:] / gaps[:-1])
    force_order = np.log10(force[1:] / force[:-1]) / np.log10(gaps[1:] / gaps[:-1])
    assert np.all(np.abs(energy_order - 4.0) < [0.4, 0.15]), energy_order  # → 4 as gap → 0
    assert np.all(np.abs(force_order - 3.0) < [0.4, 0.15]), force_order


def test_jit_and_eager_agree(x64):
    # Eager execution dispatches every primitive separately: keep the model minimal.
    config = tiny_config(num_features=2, num_layers=1, lmax=0, radial_mlp_depth=1)
    graphs = GraphDataset([_dimer(1.1)], R_MAX, SPECIES, require_labels=False)
    graph = graphs.batch([0], PaddingBudget(3, 4, 2), dtype=np.float64)
    params = params_for(config, graph)
    eager = energy_forces_features(NequIP(config), params, graph)
    jitted = predict_fn(config)(params, graph)
    for key in eager:
        np.testing.assert_allclose(np.asarray(jitted[key]), np.asarray(eager[key]), rtol=1e-12)
