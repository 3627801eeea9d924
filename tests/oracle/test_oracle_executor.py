"""Labelling through any concurrent.futures.Executor: a Dask cluster of single-threaded worker
processes gives the serial labels in order, lost chunks are re-run, task errors keep their frame."""

from __future__ import annotations

import os
from pathlib import Path

import numpy as np
import pytest

from nequip_jax.oracle import (
    SINGLE_THREAD_ENV,
    ExecutorOracle,
    LabellingError,
    Labels,
    PoolOracle,
    RetryPolicy,
    SCFConvergenceError,
    WorkLostError,
    label_parallel,
    map_single_threaded,
)


class FlakyOracle:
    """A pool oracle whose first call anywhere (marked by a file) fails: ``"exit"`` kills the
    worker process, ``"scf"`` raises an SCF error for the chunk's first frame."""

    def __init__(self, pool_frames, marker: Path, mode: str):
        self.pool = PoolOracle(pool_frames)
        self.marker = Path(marker)
        self.mode = mode

    name = "flaky"

    def provenance(self):
        return {"oracle": "flaky"}

    def label(self, atoms_list) -> Labels:
        try:
            self.marker.open("x").close()  # only the first call anywhere gets here
        except FileExistsError:
            return self.pool.label(atoms_list)
        if self.mode == "exit":
            os._exit(1)
        raise SCFConvergenceError("no convergence (a test failure)", frame=0)


def _report(item: int):
    """Runs on a worker: the item, the thread variables and the loaded pools' thread counts."""
    import tblite.ase  # noqa: F401 - load the OpenMP runtime tblite links
    import threadpoolctl

    env = {k: os.environ.get(k) for k in SINGLE_THREAD_ENV}
    pools = [p["num_threads"] for p in threadpoolctl.threadpool_info()]
    return item, env, pools, os.getpid()


def _assert_same(labels, frames, order):
    np.testing.assert_array_equal(
        labels.energies, [frames[i].get_potential_energy() for i in order]
    )
    for f, i in zip(labels.forces, order, strict=True):
        np.testing.assert_array_equal(f, frames[i].get_forces())


def test_dask_workers_are_single_threaded_and_order_is_kept(dask_client):
    before = {k: os.environ.get(k) for k in SINGLE_THREAD_ENV}
    out = list(map_single_threaded(_report, range(9), executor=dask_client.get_executor()))
    assert [o[0] for o in out] == list(range(9))
    assert len({o[3] for o in out} - {os.getpid()}) >= 1  # ran in the workers
    for _, env, pools, _ in out:
        assert env == SINGLE_THREAD_ENV
        assert all(n == 1 for n in pools), pools
    assert {k: os.environ.get(k) for k in SINGLE_THREAD_ENV} == before


def test_dask_labels_equal_serial_and_a_killed_workers_chunk_is_rerun(
    dask_client, dft_frames, tmp_path
):
    order = [5, 0, 7, 3, 3, 11, 1, 8, 2]
    queries = [dft_frames[i] for i in order]
    oracle = FlakyOracle(dft_frames, tmp_path / "killed", "exit")
    labels = label_parallel(oracle, queries, chunk_size=2, executor=dask_client.get_executor())
    assert (tmp_path / "killed").exists()  # a worker did die
    _assert_same(labels, dft_frames, order)
    # Without retries the same loss is an error naming the chunk.
    (tmp_path / "killed").unlink()
    with pytest.raises(LabellingError, match="was never labelled") as info:
        label_parallel(
            oracle, queries, chunk_size=2, executor=dask_client.get_executor(),
            retry=RetryPolicy(max_attempts=1),
        )  # fmt: skip
    assert "KilledWorker" in str(info.value)


def test_local_pool_is_replaced_when_a_worker_dies(dft_frames, tmp_path):
    order = [4, 9, 0, 6, 2, 2, 10]
    oracle = FlakyOracle(dft_frames, tmp_path / "killed", "exit")
    labels = label_parallel(oracle, [dft_frames[i] for i in order], n_workers=2, chunk_size=1)
    assert (tmp_path / "killed").exists()
    _assert_same(labels, dft_frames, order)


def test_lost_chunk_without_retries_names_its_frames(dft_frames):
    pool = PoolOracle(dft_frames)
    with pytest.raises(LabellingError, match=r"frames 3\.\.5 was never labelled") as info:
        label_parallel(
            pool, dft_frames[:9], chunk_size=3, executor=_LosesSecondChunk(),
            retry=RetryPolicy(max_attempts=1),
        )  # fmt: skip
    assert info.value.frame == 3
    assert isinstance(info.value.__cause__, WorkLostError)
    # With a second attempt allowed, the re-submitted chunk comes back and nothing is missing.
    labels = label_parallel(
        pool, dft_frames[:9], chunk_size=3, executor=_LosesSecondChunk(),
        retry=RetryPolicy(max_attempts=2),
    )  # fmt: skip
    _assert_same(labels, dft_frames, range(9))


class _LosesSecondChunk:
    """An in-process executor that loses the first submission of the chunk starting at frame 3
    (as if its worker had died) and runs everything else."""

    def __init__(self):
        self.lost = False

    def submit(self, fn, *args):
        import concurrent.futures as cf

        future = cf.Future()
        start = args[1][0]  # (func, (start, frames), ...)
        if start == 3 and not self.lost:
            self.lost = True
            future.set_exception(ConnectionError("worker lost"))
        else:
            future.set_result(fn(*args))
        return future


@pytest.mark.parametrize("retry_errors", [False, True])
def test_oracle_errors_keep_their_frame_unless_retried(
    dask_client, dft_frames, tmp_path, retry_errors
):
    oracle = FlakyOracle(dft_frames, tmp_path / "failed", "scf")
    policy = RetryPolicy(retry_oracle_errors=retry_errors)

    def run():
        return label_parallel(
            oracle, dft_frames[:6], chunk_size=6, executor=dask_client.get_executor(), retry=policy
        )

    if retry_errors:
        _assert_same(run(), dft_frames, range(6))
    else:
        with pytest.raises(SCFConvergenceError) as info:
            run()
        assert info.value.frame == 0


def test_retry_policy_rejects_no_attempts():
    with pytest.raises(ValueError, match="max_attempts"):
        RetryPolicy(max_attempts=0)


def test_executor_oracle_is_the_wrapped_oracle_elsewhere(dask_client, dft_frames):
    import pickle

    pool = PoolOracle(dft_frames)
    oracle = ExecutorOracle(pool, dask_client.get_executor(), chunk_size=3)
    assert oracle.name == pool.name and oracle.provenance() == pool.provenance()
    order = [2, 7, 7, 0, 11, 4, 9]
    _assert_same(oracle.label([dft_frames[i] for i in order]), dft_frames, order)
    with pytest.raises(TypeError, match="pass the oracle it wraps"):
        pickle.dumps(oracle)
