"""Scheduler, loss and checkpoint writes against plain reference implementations."""

import os

import jax
import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from nequip_jax.data import GraphDataset, compute_budget
from nequip_jax.training import (
    OptimConfig,
    PlateauState,
    error_sums,
    load_checkpoint,
    plateau_init,
    plateau_update,
    save_checkpoint,
    summarize,
    weighted_loss,
)


def reference_plateau(losses, lr, patience, factor, threshold, min_lr):
    """ReduceLROnPlateau (mode min, rel threshold, cooldown 0) as a plain loop, plus stopping."""
    best, bad, lrs = float("inf"), 0, []
    for loss in losses:
        if loss < best * (1 - threshold):
            best, bad = loss, 0
        else:
            bad += 1
        if bad > patience:
            lr *= factor
            bad = 0
        lrs.append(lr)
        if lr < min_lr:
            break
    return lrs


@settings(max_examples=50, deadline=None)
@given(
    losses=st.lists(st.floats(0.01, 10.0), min_size=1, max_size=60),
    patience=st.integers(0, 5),
    factor=st.sampled_from([0.5, 0.1]),
)
def test_plateau_matches_reference(losses, patience, factor):
    expected = reference_plateau(losses, 1.0, patience, factor, 1e-4, 1e-3)
    state = plateau_init(1.0)
    got = []
    for loss in losses:
        if state.stopped:
            break
        state = plateau_update(
            state, loss, patience=patience, factor=factor, threshold=1e-4, min_learning_rate=1e-3
        )
        got.append(float(state.learning_rate))
    assert got == pytest.approx(expected)


def test_plateau_members_are_independent_and_frozen():
    state = plateau_init(np.array([1.0, 1.0]), (2,))
    state = plateau_update(state, [1.0, 1.0], patience=0, factor=0.5)
    state = plateau_update(state, [0.5, 2.0], patience=0, factor=0.5, min_learning_rate=0.6)
    # Member 1 did not improve: its lr halves below the minimum and it stops; member 0 goes on.
    assert state.learning_rate.tolist() == [1.0, 0.5]
    assert state.stopped.tolist() == [False, True]
    frozen = plateau_update(state, [0.1, 0.1], patience=0, factor=0.5)
    assert frozen.best[1] == state.best[1] and frozen.stopped[1]
    assert frozen.best[0] == 0.1


def _molecules_of_different_sizes(frames, sizes, rng):
    """Fragments of 3BPA frames with ``sizes`` atoms and random labels."""
    from ase.calculators.singlepoint import SinglePointCalculator

    out = []
    for frame, n in zip(frames, sizes, strict=False):
        atoms = frame[:n].copy()
        atoms.calc = SinglePointCalculator(
            atoms, energy=float(rng.normal(-100.0, 5.0)), forces=rng.normal(size=(n, 3))
        )
        out.append(atoms)
    return out


@pytest.mark.parametrize("energy_loss", ["total", "per_atom"])
def test_loss_matches_numpy_on_molecules_of_different_sizes(frames_300K, energy_loss):
    rng = np.random.default_rng(0)
    sizes = [27, 9, 15]
    frames = _molecules_of_different_sizes(frames_300K, sizes, rng)
    ds = GraphDataset(frames, 4.0, [1, 6, 7, 8])
    batch = ds.batch([0, 1, 2], compute_budget(ds, 5))  # padded: extra atoms and one graph
    n_node, n_graph = len(batch.nodes["mask"]), len(batch.n_node)
    assert n_node > sum(sizes) and n_graph > len(sizes)
    pred = {"energy": rng.normal(-100.0, 5.0, n_graph), "forces": rng.normal(size=(n_node, 3))}
    sums = error_sums(pred, batch)
    # Reference: the formula written out over the real molecules only.
    e_true = np.array([a.get_potential_energy() for a in frames])
    f_true = np.concatenate([a.get_forces() for a in frames])
    de_total = pred["energy"][:3] - e_true
    de_atom = de_total / np.array(sizes)
    df = pred["forces"][: sum(sizes)] - f_true
    energy_mse = np.mean(de_total**2) if energy_loss == "total" else np.mean(de_atom**2)
    expected = 1.0 * energy_mse + 729.0 * np.mean(df**2)
    loss = weighted_loss(sums, 1.0, 729.0, energy_loss)
    assert float(loss) == pytest.approx(expected, rel=1e-5)
    got = summarize(jax.device_get(sums), 1.0, 729.0, energy_loss)
    assert got["loss"] == pytest.approx(expected, rel=1e-5)
    assert got["energy_rmse"] == pytest.approx(np.sqrt(np.mean(de_atom**2)), rel=1e-5)
    assert got["total_energy_rmse"] == pytest.approx(np.sqrt(np.mean(de_total**2)), rel=1e-5)
    assert got["forces_mae"] == pytest.approx(np.mean(np.abs(df)), rel=1e-5)
    assert got["forces_rmse"] == pytest.approx(np.sqrt(np.mean(df**2)), rel=1e-5)


def test_unknown_energy_loss_is_refused():
    with pytest.raises(ValueError, match="energy_loss='per_molecule'"):
        OptimConfig(energy_loss="per_molecule")


def test_checkpoint_write_is_atomic(tmp_path, monkeypatch):
    path = tmp_path / "last.ckpt"
    state = {"w": np.arange(4.0)}
    sched = plateau_init(0.1)
    save_checkpoint(path, state, epoch=1, scheduler=sched, meta={"a": 1})

    def crash(fd):
        raise OSError("disk full")

    monkeypatch.setattr(os, "fsync", crash)
    with pytest.raises(OSError, match="disk full"):
        save_checkpoint(path, {"w": np.zeros(4)}, epoch=2, scheduler=sched, meta={})
    monkeypatch.undo()
    restored, _, epoch, meta = load_checkpoint(path, state, PlateauState)
    assert epoch == 1 and meta == {"a": 1}
    np.testing.assert_array_equal(restored["w"], np.arange(4.0))
    assert [p.name for p in tmp_path.iterdir()] == ["last.ckpt"]
