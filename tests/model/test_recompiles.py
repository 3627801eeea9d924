"""The production entry points compile once per shape and configuration.

Counted by JAX itself (its monitoring event for every program lowered, the ``lowerings``
fixture), not by the code under test: a second call on structures of the same sizes, or a model
of the same hyperparameters with other weights, must lower no new program.
"""

from __future__ import annotations

import dataclasses
import json
import subprocess
import sys

import jax
import numpy as np

from nequip_jax.calculator import NequIPCalculator
from nequip_jax.data import compute_budget
from nequip_jax.model import NequIP, Potential, energy_forces_features
from nequip_jax.model.ensemble import Ensemble
from nequip_jax.training import RunConfig, train
from nequip_jax.training.config import apply_overrides


def _reweighted(potential: Potential, factor: float) -> Potential:
    params = jax.tree.map(np.asarray, potential.params)
    params["params"]["energy_scale"] = factor * params["params"]["energy_scale"]
    return Potential(potential.config, params, potential.species, head=potential.head)


def _no_new_programs(model, other, factor, key, frames, lowerings):
    """``model`` predicted twice and ``other`` (same configuration, weights scaling ``key`` by
    ``factor``) once lower no program after ``model``'s first call."""
    first = model.predict(frames, batch_size=2)
    with lowerings() as counted:
        again = model.predict(frames, batch_size=2)
        changed = other.predict(frames, batch_size=2)
    assert counted.n == 0
    np.testing.assert_array_equal(np.concatenate(again[key]), np.concatenate(first[key]))
    np.testing.assert_allclose(
        np.concatenate(changed[key]), factor * np.concatenate(first[key]), rtol=1e-9, atol=1e-12
    )


def test_potential_predict_compiles_once_per_configuration(
    x64, potential64, frames_300K, lowerings
):
    other = _reweighted(potential64, 3.0)
    _no_new_programs(potential64, other, 3.0, "forces", frames_300K[:5], lowerings)


def test_potentials_of_other_data_statistics_share_the_program(
    x64, potential64, frames_300K, lowerings
):
    """Another neighbour normalisation, cutoff and energy scale/shift (what training on other
    data changes) lower no program; the outputs are those of the module evaluated directly with
    that configuration."""
    frames = frames_300K[:5]
    potential64.predict(frames, batch_size=2)
    config = dataclasses.replace(
        potential64.config,
        avg_num_neighbors=2.5 * potential64.config.avg_num_neighbors,
        r_max=potential64.config.r_max + 1e-3,  # a cutoff that keeps every edge and its count
        energy_shift=tuple(s - 0.5 for s in potential64.config.shifts),
    )
    other = dataclasses.replace(potential64, config=config)
    with lowerings() as counted:
        out = other.predict(frames, batch_size=2)
    assert counted.n == 0, counted.names
    graphs = other.graphs(frames)
    budget = compute_budget(graphs, len(frames))
    batch = graphs.batch(np.arange(len(frames)), budget, dtype=np.float64)
    direct = energy_forces_features(NequIP(config), other.params, batch)
    n = sum(len(a) for a in frames)
    np.testing.assert_allclose(out["energy"], np.asarray(direct["energy"])[: len(frames)])
    np.testing.assert_allclose(
        np.concatenate(out["forces"]), np.asarray(direct["forces"])[:n], rtol=1e-10, atol=1e-12
    )
    before = potential64.predict(frames, batch_size=2)
    assert np.abs(np.concatenate(out["forces"]) - np.concatenate(before["forces"])).max() > 1e-6


def test_ensemble_predict_compiles_once_per_configuration(x64, ensemble64, frames_300K, lowerings):
    groups = []
    for group in ensemble64.groups:  # two groups of other cutoffs: two programs
        params = jax.tree.map(np.asarray, group.params)
        params["params"]["energy_scale"] = 2.0 * params["params"]["energy_scale"]
        groups.append(dataclasses.replace(group, params=params))
    other = Ensemble(groups, ensemble64.species)
    _no_new_programs(ensemble64, other, 2.0, "uncertainty", frames_300K[:5], lowerings)


def test_calculator_steps_and_new_weights_compile_nothing(x64, potential64, frames_300K, lowerings):
    atoms = frames_300K[0].copy()
    atoms.calc = NequIPCalculator(potential64)
    atoms.get_forces()
    rng = np.random.default_rng(0)
    with lowerings() as counted:
        for _ in range(5):  # small moves: the same padded shape, maybe a neighbour rebuild
            atoms.positions += rng.normal(scale=0.02, size=atoms.positions.shape)
            atoms.get_forces()
        other = atoms.copy()
        other.calc = NequIPCalculator(_reweighted(potential64, 0.5))
        forces = other.get_forces()
    assert counted.n == 0
    np.testing.assert_allclose(forces, 0.5 * atoms.get_forces(), rtol=1e-10, atol=1e-12)


def test_training_again_on_batches_of_the_same_shape_compiles_no_step(
    tiny_run_config, frames_300K, lowerings, tmp_path
):
    """A second network (another seed and learning rate, same model and data shapes) reuses the
    trainer's compiled steps, and trains as it would in a fresh process."""
    data = (frames_300K[:4], frames_300K[4:6])
    first = tiny_run_config(max_epochs=2)
    train(first, tmp_path / "first", data=data, verbose=False)
    second = RunConfig.from_dict(
        apply_overrides(first.to_dict(), ["seed=4", "optim.learning_rate=0.003"])
    )
    with lowerings() as counted:
        again = train(second, tmp_path / "second", data=data, verbose=False)
    steps = [n for n in counted.names if "member_step" in str(n) or "member_eval" in str(n)]
    assert steps == [], counted.names
    # The same numbers as the second network trained alone (its own process's compilation).
    script = (
        "import json, sys, numpy as np, jax\n"
        "from nequip_jax.data import load_3bpa\n"
        "from nequip_jax.training import RunConfig, train\n"
        "frames = load_3bpa('train_300K', allow_download=False)\n"
        "config = RunConfig.from_dict(json.loads(sys.argv[1]))\n"
        "p = train(config, sys.argv[2], data=(frames[:4], frames[4:6]), verbose=False)\n"
        "leaves = jax.tree.leaves(p.params)\n"
        "print(json.dumps([np.asarray(x).ravel()[:8].tolist() for x in leaves]))\n"
    )
    out = subprocess.run(
        [sys.executable, "-c", script, json.dumps(second.to_dict()), str(tmp_path / "alone")],
        check=True,
        capture_output=True,
        text=True,
    )
    alone = json.loads(out.stdout.strip().splitlines()[-1])
    mine = [np.asarray(x).ravel()[:8].tolist() for x in jax.tree.leaves(again.params)]
    for a, b in zip(alone, mine, strict=True):
        np.testing.assert_allclose(a, b, rtol=1e-5, atol=1e-7)
