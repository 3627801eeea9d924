"""Vmapped ensembles: equal to members trained alone, sharded equal to one device, round trips."""

import os
import subprocess
import sys
import textwrap
from pathlib import Path

import jax
import numpy as np
import pytest

from nequip_jax.data import GraphDataset, compute_budget
from nequip_jax.model import NequIPConfig, make_model_fns
from nequip_jax.model.ensemble import Ensemble
from nequip_jax.training import init_train_state, make_optimizer, make_train_step
from nequip_jax.training.ensemble import group_members, member_configs, train_ensemble
from nequip_jax.uncertainty.metrics import ensemble_sigma

REPO = Path(__file__).resolve().parents[2]


def test_vmapped_step_equals_member_steps(frames_300K, tiny_model):
    ds = GraphDataset(frames_300K[:6], 4.0, [1, 6, 7, 8])
    budget = compute_budget(ds, 2)
    config = NequIPConfig(num_species=4, avg_num_neighbors=12.0, **tiny_model)
    init, predict = make_model_fns(config)
    optimizer = make_optimizer("amsgrad", 1e-2)
    step = make_train_step(predict, optimizer)
    batches = [ds.batch(idx, budget) for idx in ([0, 1], [2, 3], [4, 5])]
    lrs, ews, fws = (
        np.array([1e-2, 5e-3, 2e-2]),
        np.array([1.0, 2.0, 1.0]),
        np.array([729.0, 10.0, 1.0]),
    )
    states = [init_train_state(init(jax.random.key(k), batches[0]), optimizer) for k in range(3)]
    stack = lambda trees: jax.tree.map(lambda *x: np.stack(x), *trees)  # noqa: E731
    vstate, vsums = jax.jit(jax.vmap(step))(
        stack(states), stack(batches), lrs, ews, fws, np.array([True, True, False])
    )
    for j in range(3):
        alone, sums = jax.jit(step)(states[j], batches[j], lrs[j], ews[j], fws[j], j < 2)
        for a, b in zip(jax.tree.leaves(alone), jax.tree.leaves(vstate)):
            a, b = np.asarray(a), np.asarray(b)[j]
            # float32 sums in another order: an entry's error scales with the largest terms of
            # its leaf (the optimiser's second moments span eight decades), not with the entry.
            scale = float(np.max(np.abs(a))) if a.size else 0.0
            np.testing.assert_allclose(a, b, rtol=1e-4, atol=max(1e-5, 1e-6 * scale))
        np.testing.assert_allclose(float(sums.forces_sq), float(vsums.forces_sq[j]), rtol=1e-5)
    # The inactive member is frozen.
    for a, b in zip(jax.tree.leaves(states[2].params), jax.tree.leaves(vstate.params)):
        np.testing.assert_array_equal(np.asarray(a), np.asarray(b)[2])


def test_grouping_of_diverse_members(tiny_run_config):
    config = tiny_run_config()
    variants = [
        {"optim": {"learning_rate": 0.001}},
        {"model": {"num_layers": 1}},
        {"model": {"num_layers": 1}, "optim": {"forces_weight": 5.0}},
    ]
    configs = member_configs(config, 2, variants)
    assert group_members(configs) == [[0, 1, 2], [3, 4]]
    assert configs[2].optim.learning_rate == 0.001 and configs[4].model.num_layers == 1


def test_ensemble_predict_and_round_trip(frames_300K, tiny_run_config, tmp_path):
    frames = frames_300K[:4]
    ens = train_ensemble(
        tiny_run_config(max_epochs=1),
        tmp_path,
        n_members=2,
        variants=[{"model": {"num_layers": 1}}, {"model": {"r_max": 3.5}}],
        data=(frames, frames_300K[4:6]),
        verbose=False,
    )
    assert ens.n_members == 4 and [g.members for g in ens.groups] == [[0, 1, 3], [2]]
    assert [m.r_max for m in ens.members()] == [4.0, 4.0, 4.0, 3.5]
    test = frames_300K[10:13]
    pred = ens.predict(test)
    members = [m.predict(test) for m in ens.members()]
    for i in range(len(test)):
        stacked = np.stack([m["forces"][i] for m in members])
        np.testing.assert_allclose(pred["forces"][i], stacked.mean(0), rtol=1e-5, atol=1e-6)
        np.testing.assert_allclose(
            pred["uncertainty"][i], ensemble_sigma(stacked), rtol=1e-4, atol=1e-7
        )
    energies = np.stack([m["energy"] for m in members])
    np.testing.assert_allclose(pred["energy_std"], energies.std(0), rtol=1e-4, atol=1e-6)
    # A fixed padded shape larger than needed (as for a growing data set) changes nothing.
    datasets = ens.graphs(test)
    need = [compute_budget(d, 2) for d in datasets]
    roomy = need[0]._replace(
        n_node=2 * max(b.n_node for b in need), n_edge=2 * max(b.n_edge for b in need)
    )
    fixed = ens.predict_graphs(datasets, 2, budget=roomy)
    for a, b in zip(pred["forces"], fixed["forces"], strict=True):
        np.testing.assert_allclose(a, b, rtol=1e-5, atol=1e-6)
    with pytest.raises(ValueError, match="2 groups"):
        ens.predict_graphs(datasets[:1])
    loaded = Ensemble.load(tmp_path / "ensemble")
    again = loaded.predict(test)
    for a, b in zip(pred["member_forces"], again["member_forces"]):
        np.testing.assert_array_equal(a, b)


SHARDED_SCRIPT = textwrap.dedent(
    """
    import json, sys
    import jax, numpy as np
    from jax.sharding import Mesh
    from nequip_jax.data import load_3bpa
    from nequip_jax.training import RunConfig
    from nequip_jax.training.ensemble import train_ensemble

    assert len(jax.devices()) == 2, jax.devices()
    frames = load_3bpa("train_300K", allow_download=False)[:6]
    config = RunConfig.from_dict(json.loads(sys.argv[1]))
    out = {}
    for name, mesh in (("single", None), ("sharded", Mesh(np.array(jax.devices()), ("member",)))):
        ens = train_ensemble(config, sys.argv[2] + "/" + name, n_members=2,
                             data=(frames[:4], frames[4:]), mesh=mesh, verbose=False)
        out[name] = [np.asarray(x).tolist() for x in jax.tree.leaves(ens.groups[0].params)]
    diffs = [float(np.max(np.abs(np.asarray(a) - np.asarray(b))))
             for a, b in zip(out["single"], out["sharded"])]
    print(json.dumps({"max_diff": max(diffs), "n": len(diffs)}))
    """
)


def test_sharded_members_equal_single_device(tiny_run_config, tmp_path):
    import json

    config = tiny_run_config(max_epochs=2)
    flags = os.environ.get("XLA_FLAGS", "")  # the suite's compiler settings stay
    env = dict(os.environ, XLA_FLAGS=f"{flags} --xla_force_host_platform_device_count=2")
    result = subprocess.run(
        [sys.executable, "-c", SHARDED_SCRIPT, json.dumps(config.to_dict()), str(tmp_path)],
        capture_output=True,
        text=True,
        env=env,
        cwd=REPO,
        timeout=600,
    )
    assert result.returncode == 0, result.stderr[-3000:]
    summary = json.loads(result.stdout.strip().splitlines()[-1])
    assert summary["n"] > 0
    assert summary["max_diff"] < 1e-5
