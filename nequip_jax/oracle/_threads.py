"""Thread caps for the numerical libraries under tblite (OpenMP, OpenBLAS, MKL).

On this 2-core machine a GFN2-xTB single point of 3BPA took 0.15 s with the default two OpenMP
threads while another process was busy and 0.02 s with one thread (a constrained relaxation: 22-55 s
against ~1 s). Small molecules gain nothing from threads, so the
oracles always compute single-threaded and parallelise over processes instead.
"""

from __future__ import annotations

import contextlib
from collections.abc import Iterator

__all__ = ["SINGLE_THREAD_ENV", "single_threaded"]

#: Environment of every worker process, set before any numerical library loads.
SINGLE_THREAD_ENV: dict[str, str] = {
    "OMP_NUM_THREADS": "1",
    "OPENBLAS_NUM_THREADS": "1",
    "MKL_NUM_THREADS": "1",
}


@contextlib.contextmanager
def single_threaded() -> Iterator[None]:
    """Cap the OpenMP/BLAS thread pools loaded in this process at one thread while inside.

    Only libraries already loaded are affected (import tblite before entering). A no-op when
    threadpoolctl (a scikit-learn dependency) is not installed.
    """
    try:
        from threadpoolctl import threadpool_limits
    except ImportError:  # pragma: no cover - depends on the environment
        yield
        return
    with threadpool_limits(limits=1):
        yield
