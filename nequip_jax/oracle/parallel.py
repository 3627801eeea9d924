"""Labelling over a ``concurrent.futures.Executor``, in order, with lost work re-submitted.

Any executor will do: the default is a local pool of single-threaded worker processes (one per
core); a Dask cluster (``distributed.Client(address).get_executor()``), a Ray or Parsl executor
spread the same tasks over many machines. Tasks carry everything they need (the function, the
item, the per-worker initializer and its arguments), so executors that know nothing of worker
initialisation work unchanged.

Why single-threaded: tblite (and numpy's OpenBLAS) start one OpenMP/BLAS thread per core in every
process. Two such processes on a 2-core machine oversubscribe it: a constrained 3BPA relaxation
took 22-55 s that way against ~1 s with ``OMP_NUM_THREADS=1``. The thread counts are read when
the libraries load, so a worker process sets the variables (:data:`SINGLE_THREAD_ENV`) before its
first task loads tblite, and caps the thread pools already loaded (threadpoolctl); the submitting
process's own environment is never changed.

The local pool comes from multiprocessing's *forkserver*, a clean single-threaded server process
preloading this module, so that later pools start in a fraction of a second instead of
re-importing the package (which pulls in jax); forking from it inherits no threads and no loaded
tblite.

Lost work: when a task does not come back because its worker died, the connection dropped or the
pool broke, its item is submitted again, up to :attr:`RetryPolicy.max_attempts` times (a broken
local pool is replaced first; every item in flight with it counts one attempt). An error raised by
the task itself is not lost work: an :class:`~nequip_jax.oracle.OracleError` (an SCF that did not
converge, a structure not in a pool) is raised with its frame unless the policy retries it, and
any other exception is raised at once.
"""

from __future__ import annotations

import concurrent.futures as cf
import contextlib
import dataclasses
import math
import multiprocessing
import os
import socket
import threading
import uuid
from collections.abc import Callable, Iterable, Iterator, Sequence
from typing import Any, TypeVar

from ase import Atoms

from nequip_jax.oracle._base import (
    LabellingError,
    Labels,
    Oracle,
    OracleError,
    bare_copy,
    concatenate_labels,
)
from nequip_jax.oracle._threads import SINGLE_THREAD_ENV, single_threaded

__all__ = [
    "SINGLE_THREAD_ENV",
    "ExecutorOracle",
    "RetryPolicy",
    "WorkLostError",
    "label_parallel",
    "local_executor",
    "map_single_threaded",
    "single_threaded",
]

T = TypeVar("T")
R = TypeVar("R")
OracleSpec = Oracle | Callable[[], Oracle]

_ENV_LOCK = threading.Lock()
_WORKER_ORACLE: Oracle | None = None
_WORKER_INIT: str | None = None  # the initializer token this worker process last ran
_WORKER_READY = False  # this worker process has its thread caps


@dataclasses.dataclass(frozen=True)
class RetryPolicy:
    """What happens to a task whose work was lost.

    Attributes:
        max_attempts: submissions of one item, the first included (1: never re-submit).
        retry_oracle_errors: also re-submit an item whose oracle raised an
            :class:`~nequip_jax.oracle.OracleError` (off by default: the same structure with
            the same settings fails the same way).
    """

    max_attempts: int = 3
    retry_oracle_errors: bool = False

    def __post_init__(self):
        if self.max_attempts < 1:
            raise ValueError(f"RetryPolicy.max_attempts must be >= 1, got {self.max_attempts}")


class WorkLostError(RuntimeError):
    """An item's task did not come back after every attempt the :class:`RetryPolicy` allows.

    ``index`` is the item's position in the submitted sequence.
    """

    def __init__(self, message: str, index: int):
        super().__init__(message)
        self.message = message
        self.index = index

    def __reduce__(self):
        return (type(self), (self.message, self.index))


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


def _prepare_worker() -> None:
    """Single-threaded numerical libraries in this (worker) process, once."""
    global _WORKER_READY
    if _WORKER_READY:
        return
    os.environ.update(SINGLE_THREAD_ENV)
    try:
        from threadpoolctl import threadpool_limits

        threadpool_limits(limits=1)  # libraries already loaded (e.g. numpy's OpenBLAS)
    except ImportError:  # pragma: no cover
        pass
    _WORKER_READY = True


def local_executor(n_workers: int = 2) -> cf.ProcessPoolExecutor:
    """A pool of ``n_workers`` single-threaded worker processes from a forkserver (the default
    executor of :func:`map_single_threaded` and :func:`label_parallel`).

    The caller owns it: ``shutdown()`` it when done (or use it in a ``with`` block).
    """
    if n_workers < 1:
        raise ValueError(f"n_workers must be >= 1, got {n_workers}")
    context = multiprocessing.get_context("forkserver")
    context.set_forkserver_preload([__name__])
    with _environ(SINGLE_THREAD_ENV):
        from multiprocessing import forkserver

        forkserver.ensure_running()  # started with the caps in its environment
    return cf.ProcessPoolExecutor(n_workers, mp_context=context, initializer=_prepare_worker)


def _origin() -> tuple[str, int]:
    return socket.gethostname(), os.getpid()


def _run_task(func, item, init, origin, attempt):
    """Runs on a worker: the result, or the task's own exception as a value (``attempt`` only
    makes re-submissions distinct tasks for executors that cache by arguments)."""
    global _WORKER_INIT
    del attempt
    try:
        if _origin() != origin:
            _prepare_worker()
        if init is not None and _WORKER_INIT != init[0]:
            token, initializer, initargs = init
            initializer(*initargs)
            _WORKER_INIT = token
        with single_threaded():
            return True, func(item)
    except Exception as err:  # returned, so that only lost work reaches future.result()
        return False, err


class _Owned:
    """The local pool this module made (and may replace when it breaks)."""

    def __init__(self, n_workers: int):
        self.n_workers = n_workers
        self.executor = local_executor(n_workers)
        self.generation = 0  # how many times the pool was replaced

    def replace(self, generation: int) -> None:
        """Replace the pool if it is still the one of ``generation`` (once per breakage)."""
        if generation == self.generation:
            _terminate(self.executor)
            self.executor = local_executor(self.n_workers)
            self.generation += 1


def _terminate(executor: cf.ProcessPoolExecutor) -> None:
    """Stop a local pool now, discarding work in flight."""
    for process in list((getattr(executor, "_processes", None) or {}).values()):
        with contextlib.suppress(Exception):
            process.terminate()
    executor.shutdown(wait=True, cancel_futures=True)


def map_single_threaded(
    func: Callable[[T], R],
    items: Iterable[T],
    *,
    n_workers: int = 2,
    initializer: Callable[..., None] | None = None,
    initargs: tuple = (),
    ordered: bool = True,
    executor: cf.Executor | None = None,
    retry: RetryPolicy = RetryPolicy(),
) -> Iterator[R]:
    """Lazily map ``func`` over ``items`` on single-threaded workers.

    ``func``, ``initializer``, its arguments and the items must be picklable (module-level
    functions). ``initializer(*initargs)`` runs once per worker process before its first task of
    this call and is the place to build per-worker state.

    Args:
        func: the task, ``func(item) -> result``.
        items: the inputs (all are submitted at once).
        n_workers: processes of the local pool made when ``executor`` is None; with 1 (and no
            executor) everything runs in this process, with the loaded thread pools capped at
            one thread while ``func`` runs.
        initializer / initargs: per-worker set-up.
        ordered: yield in the order of ``items`` (True) or as completed.
        executor: where the tasks run (any ``concurrent.futures.Executor``, e.g. a Dask
            ``Client.get_executor()``); it stays open. None: a local pool of ``n_workers``
            processes, made here and shut down at the end.
        retry: how lost work is re-submitted (:class:`RetryPolicy`).

    Closing the returned iterator early (``break``, an exception) cancels the tasks not yet
    started; the local pool's workers are terminated, work in flight is discarded.

    Yields:
        ``func(item)`` in the order of ``items`` (``ordered=True``) or as completed.

    Raises:
        WorkLostError: an item's task was lost ``retry.max_attempts`` times.
        Exception: whatever ``func`` or ``initializer`` raised, unchanged.
    """
    if n_workers < 1:
        raise ValueError(f"n_workers must be >= 1, got {n_workers}")
    items = list(items)
    if executor is None and n_workers == 1:
        if initializer is not None:
            initializer(*initargs)
        for item in items:
            with single_threaded():
                result = func(item)
            yield result
        return
    owned = _Owned(min(n_workers, max(1, len(items)))) if executor is None else None
    init = None if initializer is None else (uuid.uuid4().hex, initializer, initargs)
    origin = _origin()
    attempts = [0] * len(items)
    pending: dict[cf.Future, tuple[int, int]] = {}  # future -> (item, pool generation)

    def submit(index: int) -> None:
        attempts[index] += 1
        task = (_run_task, func, items[index], init, origin, attempts[index])
        if owned is None:
            try:
                pending[executor.submit(*task)] = (index, 0)
            except (cf.BrokenExecutor, RuntimeError) as err:
                raise WorkLostError(
                    f"item {index}: the executor refused the task ({err!r}); pass a working "
                    "executor (a Dask client whose scheduler is up, a pool not shut down)",
                    index,
                ) from err
            return
        try:
            future = owned.executor.submit(*task)
        except (cf.BrokenExecutor, RuntimeError):
            owned.replace(owned.generation)
            future = owned.executor.submit(*task)
        pending[future] = (index, owned.generation)

    done: dict[int, Any] = {}
    next_index = 0
    try:
        for index in range(len(items)):
            submit(index)
        while pending:
            finished, _ = cf.wait(list(pending), return_when=cf.FIRST_COMPLETED)
            for future in finished:
                index, generation = pending.pop(future)
                try:
                    ok, value = future.result()
                except Exception as err:  # the work was lost, not failed
                    if attempts[index] >= retry.max_attempts:
                        raise WorkLostError(
                            f"item {index}: its task was lost {attempts[index]} time(s), last "
                            f"with {err!r}; the worker may have run out of memory or been "
                            "killed. Raise RetryPolicy.max_attempts or check the workers",
                            index,
                        ) from err
                    if owned is not None and isinstance(err, cf.BrokenExecutor):
                        owned.replace(generation)
                    submit(index)
                    continue
                if not ok:
                    if (
                        isinstance(value, OracleError)
                        and retry.retry_oracle_errors
                        and attempts[index] < retry.max_attempts
                    ):
                        submit(index)
                        continue
                    raise value
                if ordered:
                    done[index] = value
                else:
                    yield value
            while ordered and next_index in done:
                yield done.pop(next_index)
                next_index += 1
    finally:
        for future in pending:
            future.cancel()
        if owned is not None:
            if pending:
                _terminate(owned.executor)
            else:
                owned.executor.shutdown(wait=True)


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
    *,
    executor: cf.Executor | None = None,
    retry: RetryPolicy = RetryPolicy(),
) -> Labels:
    """Label ``atoms_list`` in chunks on single-threaded workers, preserving order.

    Args:
        oracle_spec: a picklable oracle (XTBOracle, PoolOracle, ASECalculatorOracle with a
            picklable factory) or a picklable zero-argument factory returning one; each worker
            process builds its own copy once.
        atoms_list: n structures.
        n_workers: processes of the local pool (default 2, the cores of this machine; 1 with no
            executor labels in this process); with an ``executor``, the parallelism assumed for
            the default chunk size.
        chunk_size: structures per task; default ceil(n / (4 * n_workers)) (load balance vs
            per-task overhead).
        executor: any ``concurrent.futures.Executor`` (a Dask ``Client.get_executor()``, a Ray
            or Parsl executor); None: a local pool of ``n_workers`` processes.
        retry: how chunks lost with a worker are re-submitted (:class:`RetryPolicy`).

    Returns:
        Labels: energies [n] (eV) and forces (n arrays [n_atoms, 3], eV/Å), in input order; the
        same as ``oracle.label(atoms_list)`` when the oracle's labels depend on geometry alone.

    Raises:
        OracleError: as the oracle raises it, with ``frame`` the index in ``atoms_list``.
        LabellingError: a chunk was lost ``retry.max_attempts`` times (``frame`` its first
            structure; the message names the chunk's frames).
    """
    n = len(atoms_list)
    if n == 0:
        return Labels(energies=concatenate_labels([]).energies, forces=[])
    if n_workers < 1:
        raise ValueError(f"n_workers must be >= 1, got {n_workers}")
    if executor is None and n_workers == 1:
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
    try:
        parts = list(
            map_single_threaded(
                _label_chunk,
                tasks,
                n_workers=min(n_workers, len(tasks)),
                initializer=_init_oracle,
                initargs=(oracle_spec,),
                executor=executor,
                retry=retry,
            )
        )
    except WorkLostError as err:
        start = tasks[err.index][0]
        stop = start + len(tasks[err.index][1]) - 1
        raise LabellingError(
            f"the chunk of frames {start}..{stop} was never labelled: {err.message}", frame=start
        ) from err
    return concatenate_labels(parts)


class ExecutorOracle:
    """An oracle that labels through :func:`label_parallel`: the same labels as ``oracle``,
    computed on an executor's workers (a Dask cluster, a local pool).

    ``name`` and ``provenance()`` are the wrapped oracle's: where the work runs does not change
    the labels, so caches keyed by the provenance stay valid.

    Args:
        oracle: a picklable oracle (or a zero-argument factory of one).
        executor: any ``concurrent.futures.Executor``; None: a local pool of ``n_workers``
            single-threaded processes for each ``label`` call.
        n_workers / chunk_size / retry: as in :func:`label_parallel`.
    """

    def __init__(
        self,
        oracle: OracleSpec,
        executor: cf.Executor | None = None,
        *,
        n_workers: int = 2,
        chunk_size: int | None = None,
        retry: RetryPolicy = RetryPolicy(),
    ):
        self.oracle = _resolve(oracle)
        self.executor = executor
        self.n_workers = n_workers
        self.chunk_size = chunk_size
        self.retry = retry

    @property
    def name(self) -> str:
        return self.oracle.name

    def provenance(self) -> dict[str, Any]:
        return self.oracle.provenance()

    def label(self, atoms_list: Sequence[Atoms]) -> Labels:
        return label_parallel(
            self.oracle,
            atoms_list,
            self.n_workers,
            self.chunk_size,
            executor=self.executor,
            retry=self.retry,
        )

    def __getstate__(self):
        raise TypeError(
            "an ExecutorOracle is not sent to workers; pass the oracle it wraps instead"
        )
