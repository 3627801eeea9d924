"""Labelling over a process pool with one single-threaded worker per core.

Why single-threaded: tblite (and numpy's OpenBLAS) start one OpenMP/BLAS thread per core in every
process. Two such processes on a 2-core machine oversubscribe it: a constrained 3BPA relaxation
took 22-55 s that way against ~1 s with ``OMP_NUM_THREADS=1``. The thread
counts are read when the libraries load, so the variables must be in a worker's environment
before tblite is imported.

How: workers come from multiprocessing's *forkserver*, a clean single-threaded server process
(started with the variables set, and preloading this module so that later pools start in a
fraction of a second instead of re-importing the package, which pulls in jax); forking from it
inherits no threads and no loaded tblite. The worker initializer sets the variables again (for a
server started by someone else) and caps thread pools already loaded (threadpoolctl).
"""

from __future__ import annotations

import contextlib
import math
import multiprocessing
import os
import threading
from collections.abc import Callable, Iterable, Iterator, Sequence
from typing import TypeVar

from ase import Atoms

from nequip_jax.oracle._base import Labels, Oracle, OracleError, bare_copy, concatenate_labels
from nequip_jax.oracle._threads import SINGLE_THREAD_ENV, single_threaded

__all__ = ["SINGLE_THREAD_ENV", "label_parallel", "map_single_threaded", "single_threaded"]

T = TypeVar("T")
R = TypeVar("R")
OracleSpec = Oracle | Callable[[], Oracle]

_ENV_LOCK = threading.Lock()
_WORKER_ORACLE: Oracle | None = None


@contextlib.contextmanager
def _environ(values: dict[str, str]) -> Iterator[None]:
    """Temporarily set environment variables (children spawned meanwhile inherit them)."""
    with _ENV_LOCK:
        saved = {k: os.environ.get(k) for k in values}
        os.environ.update(values)
        try:
            yield
        finally:
            for k, v in saved.items():
                if v is None:
                    os.environ.pop(k, None)
                else:
                    os.environ[k] = v


def _worker_init(initializer: Callable[..., None] | None, initargs: tuple) -> None:
    os.environ.update(SINGLE_THREAD_ENV)
    try:
        from threadpoolctl import threadpool_limits

        threadpool_limits(limits=1)  # libraries already loaded (e.g. imported by __mp_main__)
    except ImportError:  # pragma: no cover
        pass
    if initializer is not None:
        initializer(*initargs)


def map_single_threaded(
    func: Callable[[T], R],
    items: Iterable[T],
    *,
    n_workers: int = 2,
    initializer: Callable[..., None] | None = None,
    initargs: tuple = (),
    ordered: bool = True,
) -> Iterator[R]:
    """Lazily map ``func`` over ``items`` on ``n_workers`` single-threaded worker processes.

    ``func``, ``initializer`` and the items must be picklable (module-level functions).
    ``initializer(*initargs)`` runs once per worker, after the thread caps are in place, and is the
    place to build per-worker state. With ``n_workers=1`` everything runs in this process (with the
    loaded thread pools capped at one thread while ``func`` runs).

    Closing the returned iterator early (``break``, an exception) terminates the workers; work in
    flight is discarded.

    Yields:
        ``func(item)`` in the order of ``items`` (``ordered=True``) or as completed.
    """
    if n_workers < 1:
        raise ValueError(f"n_workers must be >= 1, got {n_workers}")
    if n_workers == 1:
        if initializer is not None:
            initializer(*initargs)
        for item in items:
            with single_threaded():
                result = func(item)
            yield result
        return
    context = multiprocessing.get_context("forkserver")
    context.set_forkserver_preload([__name__])
    with _environ(SINGLE_THREAD_ENV):
        pool = context.Pool(n_workers, initializer=_worker_init, initargs=(initializer, initargs))
    try:
        mapper = pool.imap if ordered else pool.imap_unordered
        yield from mapper(func, items, chunksize=1)
        pool.close()
        pool.join()
    finally:
        pool.terminate()
        pool.join()


def _resolve(spec: OracleSpec) -> Oracle:
    if isinstance(spec, Oracle):
        return spec
    if callable(spec):
        oracle = spec()
        if isinstance(oracle, Oracle):
            return oracle
        raise TypeError(
            f"the oracle factory returned {type(oracle).__name__}, which lacks label/name/"
            "provenance; return an Oracle (XTBOracle, ASECalculatorOracle, PoolOracle ...)"
        )
    raise TypeError(
        f"oracle_spec must be an Oracle or a zero-argument factory of one, got "
        f"{type(spec).__name__}"
    )


def _init_oracle(spec: OracleSpec) -> None:
    global _WORKER_ORACLE
    _WORKER_ORACLE = _resolve(spec)


def _label_chunk(task: tuple[int, list[Atoms]]) -> Labels:
    start, frames = task
    assert _WORKER_ORACLE is not None, "worker oracle not initialised"
    try:
        return _WORKER_ORACLE.label(frames)
    except OracleError as err:
        raise err.with_offset(start) from None


def label_parallel(
    oracle_spec: OracleSpec,
    atoms_list: Sequence[Atoms],
    n_workers: int = 2,
    chunk_size: int | None = None,
) -> Labels:
    """Label ``atoms_list`` with one single-threaded worker process per core, preserving order.

    Args:
        oracle_spec: a picklable oracle (XTBOracle, PoolOracle, ASECalculatorOracle with a
            picklable factory) or a picklable zero-argument factory returning one; each worker
            builds its own copy once.
        atoms_list: n structures.
        n_workers: worker processes (default 2, the cores of this machine); 1 runs in-process.
        chunk_size: structures per task; default ceil(n / (4 * n_workers)) (load balance vs
            per-task overhead).

    Returns:
        Labels: energies [n] (eV) and forces (n arrays [n_atoms, 3], eV/Å), in input order; the
        same as ``oracle.label(atoms_list)`` when the oracle's labels depend on geometry alone.

    Raises:
        OracleError: as the oracle raises it, with ``frame`` the index in ``atoms_list``.
    """
    n = len(atoms_list)
    if n == 0:
        return Labels(energies=concatenate_labels([]).energies, forces=[])
    if n_workers == 1:
        with single_threaded():
            return _resolve(oracle_spec).label(atoms_list)
    if chunk_size is None:
        chunk_size = max(1, math.ceil(n / (4 * n_workers)))
    if chunk_size < 1:
        raise ValueError(f"chunk_size must be >= 1, got {chunk_size}")
    tasks = [
        (start, [bare_copy(a) for a in atoms_list[start : start + chunk_size]])
        for start in range(0, n, chunk_size)
    ]
    n_workers = min(n_workers, len(tasks))
    parts = list(
        map_single_threaded(
            _label_chunk,
            tasks,
            n_workers=n_workers,
            initializer=_init_oracle,
            initargs=(oracle_spec,),
        )
    )
    return concatenate_labels(parts)
