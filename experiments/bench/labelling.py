"""Benchmark: labelling 3BPA frames with GFN2-xTB serially, on the local pool, on a Dask cluster.

The same ``n`` frames of ``train_300K`` (default 200) are labelled three ways, interleaved per
repetition:

* ``serial``: ``XTBOracle().label(frames)`` in this process, one thread (``single_threaded``);
* ``pool``: ``label_parallel(oracle, frames, n_workers=W)``, the default local pool of
  single-threaded worker processes (pool start-up included);
* ``dask``: ``label_parallel(..., executor=client.get_executor())`` on a
  ``distributed.LocalCluster`` of ``W`` single-threaded worker processes started before the
  timing (a cluster is long-lived; its start-up is printed separately).

Every setting's labels are checked against the serial ones (1e-8 eV, eV/Å). Printed: seconds,
frames per second and the 1-minute load average at the start of each run, then per setting the
speed-up over serial (median over repetitions). On a W-core machine the ideal is W.

Usage::

    python experiments/bench/labelling.py                 # ~2-3 min on 2 cores
    python experiments/bench/labelling.py --frames 50 --repeats 1 --workers 2
"""

from __future__ import annotations

import argparse
import os
import statistics
import time

import numpy as np


def _check(labels, reference, name: str) -> None:
    np.testing.assert_allclose(labels.energies, reference.energies, rtol=0, atol=1e-8, err_msg=name)
    for a, b in zip(labels.forces, reference.forces, strict=True):
        np.testing.assert_allclose(a, b, rtol=0, atol=1e-8, err_msg=name)


def main(argv=None) -> int:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawTextHelpFormatter)
    p.add_argument("--frames", type=int, default=200)
    p.add_argument("--workers", type=int, default=2)
    p.add_argument("--repeats", type=int, default=2)
    p.add_argument("--chunk-size", type=int, default=None, help="default: label_parallel's")
    args = p.parse_args(argv)

    import distributed

    from nequip_jax.data import load_3bpa
    from nequip_jax.oracle import XTBOracle, label_parallel, single_threaded, tblite_version

    frames = load_3bpa("train_300K", allow_download=False)[: args.frames]
    oracle = XTBOracle()
    print(
        f"{len(frames)} frames of train_300K ({len(frames[0])} atoms), GFN2-xTB (tblite "
        f"{tblite_version()}), {args.workers} workers, {os.cpu_count()} cores"
    )
    t0 = time.perf_counter()
    cluster = distributed.LocalCluster(
        n_workers=args.workers, threads_per_worker=1, processes=True, dashboard_address=":0"
    )
    client = distributed.Client(cluster)
    print(f"Dask cluster start-up: {time.perf_counter() - t0:.1f} s (not in the timings)")

    def serial():
        with single_threaded():
            return oracle.label(frames)

    runs = {
        "serial": serial,
        "pool": lambda: label_parallel(oracle, frames, args.workers, args.chunk_size),
        "dask": lambda: label_parallel(
            oracle, frames, args.workers, args.chunk_size, executor=client.get_executor()
        ),
    }
    times: dict[str, list[float]] = {k: [] for k in runs}
    reference = None
    try:
        serial()  # load tblite and warm the caches once, untimed
        for repeat in range(args.repeats):
            for name, run in runs.items():
                load = os.getloadavg()[0]
                t0 = time.perf_counter()
                labels = run()
                seconds = time.perf_counter() - t0
                reference = labels if reference is None else reference
                _check(labels, reference, name)
                times[name].append(seconds)
                print(
                    f"repeat {repeat} {name:>6}: {seconds:6.2f} s, {len(frames) / seconds:6.1f} "
                    f"frames/s (load {load:.2f})"
                )
    finally:
        client.close()
        cluster.close()
    base = statistics.median(times["serial"])
    print("\nmedian s, speed-up over serial:")
    for name, values in times.items():
        median = statistics.median(values)
        print(f"  {name:>6}: {median:6.2f} s  {base / median:5.2f}x")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
