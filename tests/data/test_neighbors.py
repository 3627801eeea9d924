"""Neighbour lists against a brute-force O(N²) search."""

import itertools

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from hypothesis.extra.numpy import arrays

from nequip_jax.data import _neighbors, neighbour_list


def brute_force(positions, r_max, cell=None, pbc=(False, False, False)):
    """Every (sender, receiver, shift) with |r_j - r_i + shift| < r_max, by explicit loops."""
    ranges = [range(-2, 3) if p else range(1) for p in pbc]
    cell = np.zeros((3, 3)) if cell is None else np.asarray(cell)
    found = set()
    for i, j in itertools.product(range(len(positions)), repeat=2):
        for n in itertools.product(*ranges):
            shift = np.asarray(n) @ cell
            if i == j and not any(n):
                continue
            if np.linalg.norm(positions[j] - positions[i] + shift) < r_max:
                found.add((j, i, tuple(np.round(shift, 9))))
    return found


def as_set(senders, receivers, shifts):
    return {
        (int(s), int(r), tuple(np.round(sh, 9))) for s, r, sh in zip(senders, receivers, shifts)
    }


clouds = st.integers(1, 25).flatmap(
    lambda n: arrays(np.float64, (n, 3), elements=st.floats(-4.0, 4.0, allow_nan=False))
)


@pytest.mark.parametrize("dense_limit", [10_000, 0], ids=["dense", "cell-list"])
@settings(max_examples=40, deadline=None)
@given(positions=clouds, r_max=st.floats(0.5, 3.0))
def test_molecule_matches_brute_force(dense_limit, positions, r_max):
    original = _neighbors._DENSE_LIMIT
    _neighbors._DENSE_LIMIT = dense_limit
    try:
        got = neighbour_list(positions, r_max)
    finally:
        _neighbors._DENSE_LIMIT = original
    assert as_set(*got) == brute_force(positions, r_max)
    senders, receivers, _ = got
    # Sorted by receiver, then sender.
    assert np.all(np.diff(receivers.astype(np.int64) * 10_000 + senders) >= 0)


def test_isolated_atoms_have_no_edges():
    positions = np.array([[0.0, 0, 0], [10.0, 0, 0], [10.5, 0, 0]])
    senders, receivers, _ = neighbour_list(positions, 1.0)
    assert as_set(senders, receivers, np.zeros((len(senders), 3))) == {
        (1, 2, (0.0, 0.0, 0.0)),
        (2, 1, (0.0, 0.0, 0.0)),
    }


@settings(max_examples=15, deadline=None)
@given(
    frac=st.integers(1, 8).flatmap(
        lambda n: arrays(np.float64, (n, 3), elements=st.floats(0.0, 0.999))
    ),
    r_max=st.floats(0.5, 2.4),
)
def test_periodic_matches_brute_force(frac, r_max):
    cell = np.diag([5.0, 5.5, 6.0])
    positions = frac @ cell
    got = neighbour_list(positions, r_max, cell=cell, pbc=(True, True, True))
    assert as_set(*got) == brute_force(positions, r_max, cell, (True, True, True))


def test_bad_cutoff():
    with pytest.raises(ValueError, match="r_max"):
        neighbour_list(np.zeros((2, 3)), 0.0)
