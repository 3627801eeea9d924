"""Graphs and padded batches."""

import jax
import jax.numpy as jnp
import numpy as np
import pytest
from hypothesis import example, given, settings
from hypothesis import strategies as st

from nequip_jax.data import (
    GraphDataset,
    PaddingBudget,
    compute_budget,
    compute_statistics,
    iterate_batches,
    load_3bpa,
    neighbour_list,
    round_up,
    shared_budget,
)

SPECIES = [1, 6, 7, 8]


@pytest.fixture(scope="module")
def frames():
    return load_3bpa("train_300K", allow_download=False)[:23]


@pytest.fixture(scope="module")
def dataset(frames):
    return GraphDataset(frames, 4.0, SPECIES)


def _real_edges(batch, g):
    """Set of (sender, receiver) of graph g, in that graph's local atom numbering."""
    start = int(np.sum(batch.n_node[:g]))
    e0, e1 = int(np.sum(batch.n_edge[:g])), int(np.sum(batch.n_edge[: g + 1]))
    return {
        (int(s) - start, int(r) - start)
        for s, r in zip(batch.senders[e0:e1], batch.receivers[e0:e1])
    }


@pytest.mark.parametrize("extra", [PaddingBudget(0, 0, 0), PaddingBudget(7, 113, 3)])
def test_batch_carries_the_structures(frames, dataset, extra):
    indices = [4, 0, 17]
    tight = compute_budget(dataset, 3)
    budget = PaddingBudget(*(a + b for a, b in zip(tight, extra)))
    batch = dataset.batch(indices, budget)
    assert batch.nodes["positions"].shape == (budget.n_node, 3)
    assert batch.senders.shape == (budget.n_edge,)
    assert len(batch.n_node) == budget.n_graph
    # Totals and masks describe exactly the real part.
    assert batch.n_node.sum() == budget.n_node and batch.n_edge.sum() == budget.n_edge
    n_real_nodes = sum(len(frames[i]) for i in indices)
    assert batch.nodes["mask"].sum() == n_real_nodes
    assert batch.globals["mask"].tolist() == [True] * 3 + [False] * (budget.n_graph - 3)
    offset = 0
    for g, i in enumerate(indices):
        atoms = frames[i]
        sl = slice(offset, offset + len(atoms))
        np.testing.assert_allclose(batch.nodes["positions"][sl], atoms.positions, rtol=1e-6)
        np.testing.assert_allclose(batch.nodes["forces"][sl], atoms.get_forces(), rtol=1e-6)
        assert np.all(batch.nodes["graph_index"][sl] == g)
        assert batch.globals["energy"][g] == pytest.approx(atoms.get_potential_energy(), rel=1e-7)
        expected = set(zip(*neighbour_list(atoms.positions, 4.0)[:2]))
        assert _real_edges(batch, g) == expected
        offset += len(atoms)
    # Padding edges: self-loops on a padding node, masked.
    pad = ~batch.edges["mask"]
    assert np.all(batch.senders[pad] == budget.n_node - 1)
    assert np.all(batch.receivers[pad] == budget.n_node - 1)
    assert not batch.nodes["mask"][budget.n_node - 1]


def test_same_real_data_under_two_budgets(dataset):
    small = dataset.batch([1, 2], compute_budget(dataset, 2))
    large = dataset.batch([1, 2], PaddingBudget(500, 5000, 9))
    n, e = int(small.nodes["mask"].sum()), int(small.edges["mask"].sum())
    for field in ("positions", "species", "forces", "graph_index"):
        np.testing.assert_array_equal(small.nodes[field][:n], large.nodes[field][:n])
    np.testing.assert_array_equal(small.senders[:e], large.senders[:e])
    np.testing.assert_array_equal(small.receivers[:e], large.receivers[:e])
    np.testing.assert_array_equal(small.globals["energy"][:2], large.globals["energy"][:2])


def test_budget_too_small_is_reported(dataset):
    with pytest.raises(ValueError, match="do not fit the budget"):
        dataset.batch([0, 1, 2], compute_budget(dataset, 2))


@pytest.mark.parametrize("batch_size", [1, 5, 32])
def test_epoch_compiles_once(dataset, batch_size):
    traces = []

    @jax.jit
    def masked_energy_sum(graph):
        traces.append(1)
        return jnp.sum(jnp.where(graph.globals["mask"], graph.globals["energy"], 0.0))

    budget = compute_budget(dataset, batch_size)
    total = 0.0
    for epoch in range(2):
        for batch in iterate_batches(dataset, batch_size, budget, key=jax.random.key(epoch)):
            total += float(masked_energy_sum(batch))
    assert len(traces) == 1
    assert total == pytest.approx(2 * dataset.energy.sum(), rel=1e-6)


def test_shuffle_is_a_permutation_and_seeded(dataset):
    def order(key):
        seen = []
        for batch in iterate_batches(dataset, 5, key=key):
            g = batch.globals["mask"]
            seen += list(np.asarray(batch.globals["energy"])[g])
        return seen

    a, b = order(jax.random.key(0)), order(jax.random.key(0))
    assert a == b
    assert sorted(a) == sorted(dataset.energy.astype(np.float32).tolist())
    assert a != order(jax.random.key(1))


def test_statistics_against_direct_computation(frames, dataset):
    stats = compute_statistics(dataset)
    n_edges = sum(len(neighbour_list(a.positions, 4.0)[0]) for a in frames)
    assert stats.avg_num_neighbors == pytest.approx(n_edges / (27 * len(frames)))
    forces = np.concatenate([a.get_forces() for a in frames])
    assert stats.force_rms == pytest.approx(np.sqrt(np.mean(forces**2)))
    # Least-squares shifts reproduce the mean energy for a single molecule's composition.
    counts = np.array([12, 12, 2, 1])  # H, C, N, O
    energies = np.array([a.get_potential_energy() for a in frames])
    assert counts @ stats.energy_shift == pytest.approx(energies.mean(), abs=1e-6)


@settings(max_examples=50, deadline=None)
@given(value=st.floats(0.0, 1e6), multiple=st.integers(1, 4096))
@example(value=5e-324, multiple=2)  # the quotient underflows to 0
def test_round_up_is_the_smallest_multiple_at_or_above(value, multiple):
    got = round_up(value, multiple)
    assert got % multiple == 0 and got >= value and got - multiple < value


@pytest.mark.parametrize(
    "n_node, n_edge, want_node, want_edge",
    # 16 steps per power of two, at least 8: 300 in [256, 512) by 16, 4100 in [4096, 8192)
    # by 256, 2598 and 2682 in [2048, 4096) by 128.
    [(1, 0, 8, 0), (27, 300, 32, 304), (256, 257, 256, 272), (300, 4100, 304, 4352)]
    + [(127, 2598, 128, 2688), (128, 2682, 128, 2688)],
)
def test_shared_budget_rounds_to_sixteen_steps_per_octave(n_node, n_edge, want_node, want_edge):
    budget = shared_budget(PaddingBudget(n_node=n_node, n_edge=n_edge, n_graph=3))
    assert budget == PaddingBudget(n_node=want_node, n_edge=want_edge, n_graph=3)


@settings(max_examples=100, deadline=None)
@given(n=st.integers(1, 10**7))
def test_shared_budget_pads_at_most_a_sixteenth(n):
    got = shared_budget(PaddingBudget(n_node=n, n_edge=n, n_graph=2)).n_edge
    assert n <= got <= max(n + 7, n * (1 + 1 / 16))


def test_small_data_sets_share_the_budget_of_the_next_power_of_two_of_structures():
    # 11 and 13 structures of 27 atoms and ~400 edges each, batches of 32: both padded as 16.
    eleven = shared_budget(PaddingBudget(n_node=11 * 27 + 1, n_edge=11 * 400, n_graph=12), 32)
    thirteen = shared_budget(PaddingBudget(n_node=13 * 27 + 1, n_edge=13 * 400, n_graph=14), 32)
    # 16 * 27 + 1 = 433 -> 448 (by 16); 16 * 400 = 6400 = 25 * 256 (by 256).
    assert eleven == thirteen == PaddingBudget(n_node=448, n_edge=6400, n_graph=17)
    # Never more graphs than a batch; a full batch keeps its count.
    assert shared_budget(PaddingBudget(n_node=5 * 27 + 1, n_edge=2000, n_graph=6), 6).n_graph == 7
    assert shared_budget(PaddingBudget(n_node=136, n_edge=2000, n_graph=6), 5).n_graph == 6
