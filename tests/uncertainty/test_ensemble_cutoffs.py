"""Members with different cutoffs in one vmapped group: each is the model it would be alone.

Oracles: a member evaluated (or trained) alone, with neighbour lists built at its own r_max.
"""

import dataclasses
import json

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from nequip_jax.data import GraphDataset, compute_budget
from nequip_jax.model import (
    NequIPConfig,
    RadialSettings,
    group_radial,
    init_params,
    make_model_fns,
)
from nequip_jax.model.ensemble import Ensemble, EnsembleGroup
from nequip_jax.training import RunConfig
from nequip_jax.training.ensemble import DIVERSE_VARIANTS, group_members, member_configs
from nequip_jax.training.loop import train_group

SPECIES = (1, 6, 7, 8)
#: (r_max, cutoff_p, avg_num_neighbors) of the three members; the last has the largest cutoff.
CUTOFFS = ((3.0, 6, 7.0), (3.5, 8, 9.5), (4.0, 5, 12.0))


def _configs(tiny_model, **fields) -> list[NequIPConfig]:
    base = NequIPConfig(
        num_species=len(SPECIES),
        energy_shift=(-13.6, -1029.5, -1485.0, -2042.0),
        energy_scale=0.7,
        dtype="float64",
        **{**tiny_model, **fields},
    )
    return [
        dataclasses.replace(base, r_max=r, cutoff_p=p, avg_num_neighbors=a) for r, p, a in CUTOFFS
    ]


def _group(configs, seed=0) -> EnsembleGroup:
    params = [init_params(c, key=jax.random.key(seed + j)) for j, c in enumerate(configs)]
    stacked = jax.tree.map(lambda *xs: np.stack(xs), *params)
    radial = RadialSettings.stack(configs)
    return EnsembleGroup(configs[-1], stacked, list(range(len(configs))), SPECIES, radial)


@pytest.mark.parametrize("edge_chunk_size", [None, 64])
def test_group_with_cutoffs_predicts_like_members_alone(
    frames_300K, tiny_model, x64, edge_chunk_size
):
    configs = _configs(tiny_model, edge_chunk_size=edge_chunk_size, trainable_basis=True)
    group = _group(configs)
    frames = frames_300K[:3]
    pred = Ensemble([group], SPECIES).predict(frames, batch_size=2)
    for j, config in enumerate(configs):
        member = group.member(j)
        assert member.config == config
        alone = member.predict(frames, batch_size=2)  # graphs built at the member's own r_max
        tol = dict(rtol=1e-10, atol=1e-11)
        np.testing.assert_allclose(pred["member_energy"][j], alone["energy"], **tol)
        for i in range(len(frames)):
            np.testing.assert_allclose(pred["member_forces"][i][j], alone["forces"][i], **tol)
            np.testing.assert_allclose(pred["features"][i][j], alone["features"][i], **tol)
    # Not vacuous: the members' graphs differ (edges beyond 3 Å exist) and so do their forces.
    assert (
        GraphDataset(frames, 3.0, SPECIES).n_edge.sum()
        < GraphDataset(frames, 4.0, SPECIES).n_edge.sum()
    )
    assert np.abs(pred["member_forces"][0][0] - pred["member_forces"][0][2]).max() > 1e-3


def test_gradients_on_padded_batch_match_members_alone(frames_300K, tiny_model, x64):
    # Loss of energies and forces (second derivatives, as in training) on a batch with padding
    # edges and edges beyond the smaller cutoffs: finite, and equal to each member's gradient on
    # its own graphs.
    configs = _configs(tiny_model, edge_chunk_size=64)
    group = _group(configs, seed=5)
    frames = frames_300K[:2]

    def padded_batch(r_max):
        ds = GraphDataset(frames, r_max, SPECIES)
        budget = compute_budget(ds, 2)
        budget = budget._replace(n_node=budget.n_node + 3, n_edge=budget.n_edge + 37)
        return ds.batch([0, 1], budget, dtype=np.float64)

    def loss_fn(predict):
        def loss(params, batch, *radial):
            out = predict(params, batch, *radial)
            return jnp.sum(out["energy"] ** 2) + jnp.sum(out["forces"] ** 2) / 10.0

        return loss

    _, predict = make_model_fns(group.config)
    with jax.debug_nans(True):
        grads = jax.jit(jax.vmap(jax.grad(loss_fn(predict)), in_axes=(0, None, 0)))(
            group.params, padded_batch(4.0), group.radial.cast(np.float64)
        )
    for j, config in enumerate(configs):
        _, alone_predict = make_model_fns(config)
        params = group.member(j).params
        alone = jax.jit(jax.grad(loss_fn(alone_predict)))(params, padded_batch(config.r_max))
        for g, a in zip(jax.tree.leaves(grads), jax.tree.leaves(alone), strict=True):
            assert np.all(np.isfinite(np.asarray(g)))
            np.testing.assert_allclose(np.asarray(g)[j], np.asarray(a), rtol=1e-9, atol=1e-11)
        assert any(np.abs(np.asarray(a)).max() > 0 for a in jax.tree.leaves(alone))


def test_group_training_with_cutoffs_equals_members_trained_alone(
    frames_300K, tiny_run_config, x64, tmp_path
):
    def config(model=None, **optim):
        raw = tiny_run_config(max_epochs=2, **optim).to_dict()
        raw["model"].update({"dtype": "float64", "trainable_basis": True, **(model or {})})
        return RunConfig.from_dict(raw)

    configs = [
        config({"r_max": 3.0}),
        config({"r_max": 3.5, "cutoff_p": 8}, learning_rate=0.005),
        config(),  # r_max 4.0
    ]
    data = (frames_300K[:4], frames_300K[4:6])
    members = [0, 1, 2]
    group = train_group(configs, members, tmp_path / "group", data=data, verbose=False)
    assert group.prep.model_config.r_max == 4.0 and group.prep.radial is not None
    assert group.prep.train.r_max == 4.0
    for j, member in enumerate(members):
        alone = train_group(
            [configs[j]], [member], tmp_path / f"alone{j}", data=data, verbose=False
        )
        # Own r_max, cutoff_p and neighbour statistics at its own cutoff.
        assert group.prep.member_configs[j] == alone.prep.model_config
        np.testing.assert_array_equal(group.best_epoch[j], alone.best_epoch[0])
        for g, a in zip(jax.tree.leaves(group.params), jax.tree.leaves(alone.params), strict=True):
            np.testing.assert_allclose(np.asarray(g)[j], np.asarray(a)[0], rtol=1e-8, atol=1e-10)
    neighbours = [c.avg_num_neighbors for c in group.prep.member_configs]
    assert neighbours[0] < neighbours[1] < neighbours[2]


def test_save_load_round_trip_keeps_member_cutoffs(frames_300K, tiny_model, tmp_path):
    configs = [dataclasses.replace(c, dtype="float32") for c in _configs(tiny_model)]
    ensemble = Ensemble([_group(configs)], SPECIES)
    ensemble.save(tmp_path / "ens")
    loaded = Ensemble.load(tmp_path / "ens")
    group = loaded.groups[0]
    for a, b in zip(group.radial, ensemble.groups[0].radial, strict=True):
        np.testing.assert_array_equal(a, b)
        assert np.asarray(a).dtype == np.asarray(b).dtype
    assert [group.member(j).config for j in range(3)] == configs
    frames = frames_300K[:2]
    before, after = ensemble.predict(frames), loaded.predict(frames)
    for a, b in zip(before["member_forces"], after["member_forces"], strict=True):
        np.testing.assert_array_equal(a, b)
    np.testing.assert_array_equal(before["member_energy"], after["member_energy"])


def test_ensemble_saved_without_member_cutoffs_still_loads(tiny_model, tmp_path):
    # Identical members carry no per-member settings; that is also the layout of ensembles saved
    # before per-member cutoffs existed.
    config = NequIPConfig(num_species=len(SPECIES), **tiny_model)
    params = [init_params(config, key=jax.random.key(j)) for j in range(2)]
    stacked = jax.tree.map(lambda *xs: np.stack(xs), *params)
    Ensemble([EnsembleGroup(config, stacked, [0, 1], SPECIES)], SPECIES).save(tmp_path / "old")
    info = json.loads((tmp_path / "old" / "ensemble.json").read_text())
    assert set(info["groups"][0]) == {"config", "members"}
    group = Ensemble.load(tmp_path / "old").groups[0]
    assert group.radial is None and group.member(1).config == config


def test_cutoff_variants_join_the_base_group(tiny_run_config):
    raw = tiny_run_config().to_dict()
    raw["model"].update(num_layers=4, lmax=2)  # so that every shape variant changes the shape
    config = RunConfig.from_dict(raw)
    configs = member_configs(config, 3, DIVERSE_VARIANTS)
    # layers 2, layers 3, lmax 1, f 8 change shapes; r_max 3.5, r_max 5.0 and lr 0.005 do not.
    assert group_members(configs) == [[0, 1, 2, 7, 8, 9], [3], [4], [5], [6]]
    variants = [
        {"model": {"cutoff_p": 8}},
        {"model": {"r_max": 3.0, "cutoff_p": 4}, "optim": {"forces_weight": 5.0}},
        {"model": {"num_basis": 6}},
        {"model": {"num_basis": 6, "r_max": 5.0}},
    ]
    assert group_members(member_configs(config, 2, variants)) == [[0, 1, 2, 3], [4, 5]]


def test_groups_of_other_shapes_or_a_too_small_graph_cutoff_are_rejected(tiny_model, x64):
    configs = _configs(tiny_model)
    assert group_radial([configs[0]] * 3) is None  # identical members: the static config
    with pytest.raises(ValueError, match="num_layers"):
        group_radial([configs[0], dataclasses.replace(configs[1], num_layers=1)])
    group = _group(configs)
    with pytest.raises(ValueError, match="exceeds the group's graph cutoff"):
        EnsembleGroup(configs[0], group.params, [0, 1, 2], SPECIES, group.radial)
