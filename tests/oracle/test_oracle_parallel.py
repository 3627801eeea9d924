"""label_parallel equals serial labelling; workers are single-threaded; errors keep their frame."""

import os

import numpy as np
import pytest

from nequip_jax.oracle import (
    SINGLE_THREAD_ENV,
    NotInPoolError,
    PoolOracle,
    XTBOracle,
    label_parallel,
    map_single_threaded,
)


def _worker_report(item: int) -> tuple[int, int, dict, list]:
    """Runs in a worker: the item, its square, the thread env and the loaded pools' threads."""
    import tblite.ase  # noqa: F401 - load the OpenMP runtime tblite links
    import threadpoolctl

    env = {k: os.environ.get(k) for k in SINGLE_THREAD_ENV}
    pools = [(p["user_api"], p["num_threads"]) for p in threadpoolctl.threadpool_info()]
    return item, item * item, env, pools


def test_workers_are_single_threaded_and_order_is_kept():
    before = {k: os.environ.get(k) for k in SINGLE_THREAD_ENV}
    out = list(map_single_threaded(_worker_report, range(7), n_workers=2))
    assert [o[0] for o in out] == list(range(7))
    assert [o[1] for o in out] == [i * i for i in range(7)]
    for _, _, env, pools in out:
        assert env == SINGLE_THREAD_ENV
        assert any(api == "openmp" for api, _ in pools)
        assert all(n == 1 for _, n in pools), pools
    # The parent's environment is left as it was.
    assert {k: os.environ.get(k) for k in SINGLE_THREAD_ENV} == before


def test_xtb_parallel_equals_serial(dft_frames):
    frames = dft_frames[:5]
    oracle = XTBOracle()
    serial = oracle.label(frames)
    parallel = label_parallel(oracle, frames, n_workers=2, chunk_size=2)
    # Same geometry, same fresh SCF start, one thread each: equal to far below SCF noise.
    np.testing.assert_allclose(parallel.energies, serial.energies, rtol=0, atol=1e-9)
    for p, s in zip(parallel.forces, serial.forces, strict=True):
        np.testing.assert_allclose(p, s, rtol=0, atol=1e-9)


def test_error_in_a_worker_names_the_global_frame(dft_frames):
    pool = PoolOracle(dft_frames[:6])
    queries = [a.copy() for a in dft_frames[:6]]
    queries[5].positions[0] += 0.01
    with pytest.raises(NotInPoolError) as info:
        label_parallel(pool, queries, n_workers=2, chunk_size=2)
    assert info.value.frame == 5


@pytest.mark.parametrize("chunk_size", [None, 1, 4])
def test_in_process_path_equals_oracle(dft_frames, chunk_size):
    pool = PoolOracle(dft_frames)
    order = [3, 1, 4, 1, 5, 9, 2, 6]
    queries = [dft_frames[i] for i in order]
    labels = label_parallel(pool, queries, n_workers=1, chunk_size=chunk_size)
    np.testing.assert_array_equal(
        labels.energies, [dft_frames[i].get_potential_energy() for i in order]
    )


def test_bad_worker_count():
    with pytest.raises(ValueError, match="n_workers"):
        list(map_single_threaded(abs, [1], n_workers=0))
