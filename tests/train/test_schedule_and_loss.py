"""Scheduler, loss and checkpoint writes against plain reference implementations."""

import os

import jax
import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from nequip_jax.data import GraphDataset, compute_budget
from nequip_jax.train import (
    PlateauState,
    error_sums,
    load_checkpoint,
    plateau_init,
    plateau_update,
    save_checkpoint,
    summarize,
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


def test_error_sums_match_numpy(frames_300K):
    frames = frames_300K[:3]
    ds = GraphDataset(frames, 4.0, [1, 6, 7, 8])
    batch = ds.batch([0, 1, 2], compute_budget(ds, 5))
    rng = np.random.default_rng(0)
    n_node, n_graph = len(batch.nodes["mask"]), len(batch.n_node)
    pred = {"energy": rng.normal(size=n_graph), "forces": rng.normal(size=(n_node, 3))}
    sums = error_sums(pred, batch)
    e_true = np.array([a.get_potential_energy() for a in frames])
    f_true = np.concatenate([a.get_forces() for a in frames])
    de = (pred["energy"][:3] - e_true) / 27
    df = pred["forces"][:81] - f_true
    got = summarize(jax.device_get(sums), 1.0, 729.0)
    assert got["energy_rmse"] == pytest.approx(np.sqrt(np.mean(de**2)), rel=1e-4)
    assert got["forces_mae"] == pytest.approx(np.mean(np.abs(df)), rel=1e-4)
    assert got["loss"] == pytest.approx(np.mean(de**2) + 729 * np.mean(df**2), rel=1e-4)


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
