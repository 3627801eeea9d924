"""The paper's splits: sizes, disjointness, determinism."""

import jax
import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from nequip_jax.data import load_3bpa, paper_split, split_indices


@settings(max_examples=30, deadline=None)
@given(
    n_total=st.integers(20, 600),
    n_train=st.integers(2, 10),
    val_fraction=st.sampled_from([0.0, 0.1, 0.2, 0.4]),
    n_test=st.integers(0, 5),
    seed=st.integers(0, 2**31 - 1),
)
def test_split_indices_are_disjoint_and_complete(n_total, n_train, val_fraction, n_test, seed):
    idx = split_indices(
        n_total, n_train, key=jax.random.key(seed), val_fraction=val_fraction, n_test=n_test
    )
    parts = [idx.train, idx.val, idx.pool, idx.test]
    everything = np.concatenate(parts)
    assert len(np.unique(everything)) == len(everything) == n_total
    assert len(idx.train) + len(idx.val) == n_train
    assert len(idx.val) == round(val_fraction * n_train)
    assert len(idx.test) == n_test
    again = split_indices(
        n_total, n_train, key=jax.random.key(seed), val_fraction=val_fraction, n_test=n_test
    )
    for a, b in zip(idx, again):
        np.testing.assert_array_equal(a, b)


def test_different_seeds_differ():
    a = split_indices(500, 50, key=jax.random.key(0))
    b = split_indices(500, 50, key=jax.random.key(1))
    assert not np.array_equal(np.concatenate([a.train, a.val]), np.concatenate([b.train, b.val]))


@pytest.mark.parametrize("n_train", [50, 100])
def test_300K_setting(n_train, recwarn):
    split = paper_split("300K", n_train, key=jax.random.key(7))
    assert len(split.train) + len(split.val) == n_train
    assert len(split.val) == n_train // 10
    assert len(split.pool) == 500 - n_train
    assert set(split.test) == {"test_300K", "test_600K", "test_1200K"}
    # Disjoint by geometry, not only by index.
    keys = [a.positions.tobytes() for a in split.train + split.val + split.pool]
    assert len(set(keys)) == 500


def test_mixed_setting_draws_from_all_temperatures(recwarn):
    split = paper_split("mixed", 100, key=jax.random.key(3), n_test_mixed=400)
    keys = [
        a.positions.tobytes()
        for a in split.train + split.val + split.pool + split.test["test_mixed"]
    ]
    # Oracle: the distinct geometries of the four files (31 train_mixedT frames repeat train_300K).
    distinct = {
        a.positions.tobytes()
        for name in ("train_300K", "train_mixedT", "test_300K", "test_600K")
        for a in load_3bpa(name, allow_download=False)
    }
    assert set(keys) == distinct and len(keys) == len(distinct)
    assert len(split.test["test_mixed"]) == 400


def test_bad_sizes():
    with pytest.raises(ValueError, match="cannot draw"):
        split_indices(10, 8, key=jax.random.key(0), n_test=5)
    with pytest.raises(ValueError, match="val_fraction"):
        split_indices(10, 5, key=jax.random.key(0), val_fraction=1.0)
