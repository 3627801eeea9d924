"""The one epoch loop shared by the trainer and the on-the-fly fine-tuner.

Oracle: each member visits every structure exactly once per epoch, in the order of
``jax.random.permutation(fold_in(its key, epoch), n)`` written out here, in batches of the given
size; the step's sums add up over the batches.
"""

import ase
import jax
import numpy as np
import pytest
from ase.calculators.singlepoint import SinglePointCalculator

from nequip_jax.data import GraphDataset, compute_budget
from nequip_jax.training.loop import train_epoch

N, BATCH = 7, 3


@pytest.fixture(scope="module")
def dataset():
    frames = []
    for i in range(N):
        atoms = ase.Atoms("H2", positions=[[0, 0, 0], [0, 0, 0.7 + 0.01 * i]])
        # The energy labels the structure: structure i has energy i.
        atoms.calc = SinglePointCalculator(atoms, energy=float(i), forces=np.zeros((2, 3)))
        frames.append(atoms)
    return GraphDataset(frames, 2.0, (1,))


def _recording_step(state, batch):
    """Records the structures of each member's batch; sums = real structures per member."""
    energy = np.asarray(batch.globals["energy"])
    mask = np.asarray(batch.globals["mask"])
    energy, mask = np.atleast_2d(energy), np.atleast_2d(mask)
    visited = [list(e[m].round().astype(int)) for e, m in zip(energy, mask, strict=True)]
    return state + [visited], mask.sum(axis=-1)


@pytest.mark.parametrize("epoch", [0, 5])
def test_each_member_visits_every_structure_once_in_its_own_order(dataset, epoch):
    keys = [jax.random.key(11), jax.random.key(12)]
    calls = []
    state, total = train_epoch(
        _recording_step,
        [],
        dataset,
        batch_size=BATCH,
        budget=compute_budget(dataset, BATCH),
        shuffle_keys=keys,
        epoch=epoch,
        on_batch=lambda: calls.append(1),
    )
    assert len(state) == len(calls) == -(-N // BATCH)
    for j, key in enumerate(keys):
        order = np.asarray(jax.random.permutation(jax.random.fold_in(key, epoch), N))
        batches = [step[j] for step in state]
        assert [len(b) for b in batches] == [3, 3, 1]
        assert np.concatenate(batches).tolist() == order.tolist()
    np.testing.assert_array_equal(total, [N, N])


def test_one_member_without_member_axis(dataset):
    key = jax.random.key(3)
    state, total = train_epoch(
        _recording_step,
        [],
        dataset,
        batch_size=BATCH,
        budget=compute_budget(dataset, BATCH),
        shuffle_keys=[key],
        epoch=2,
        member_axis=False,
    )
    order = np.asarray(jax.random.permutation(jax.random.fold_in(key, 2), N))
    assert np.concatenate([step[0] for step in state]).tolist() == order.tolist()
    assert int(np.sum(total)) == N
    with pytest.raises(ValueError, match="one shuffle key"):
        train_epoch(
            _recording_step,
            [],
            dataset,
            batch_size=BATCH,
            budget=None,
            shuffle_keys=[key, key],
            epoch=0,
            member_axis=False,
        )
