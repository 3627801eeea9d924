"""Benchmark: ``gmm`` (JAX, jit-compiled) against scikit-learn's GaussianMixture.

Every timing runs in a fresh Python process, twice in a row: *cold* is the first call
(compilation included for ``gmm``), *warm* the second call in the same process. Next to every
timing the 1-minute load average (``os.getloadavg()``) at its start is printed. Ratios are
scikit-learn time / ``gmm`` time (above 1: ``gmm`` is faster), cold against cold and warm
against warm. Data are samples of an 8-component mixture with overlapping components, given
to both libraries in the same dtype (``--dtype``): float64 by default; float32 is the real
workload of the uncertainty head (the model's features are float32), in which ``gmm`` computes
in float32 and scikit-learn (which accepts float32 input) too.

``gmm`` is also timed in a second fresh process that reads the programs the first one wrote to
JAX's persistent compilation cache (which ``nequip_jax`` turns on for its entry points): the
first call of a later process, compiled once before.

1. Model selection by BIC over K = 1 … K_max at two sizes, the demo's (N = 2430, D = 8,
   K_max = 20) and the paper's (N = 12 150, D = 16, K_max = 49): ``gmm.select_n_components``
   against one ``GaussianMixture(K, covariance_type="full", random_state=K).fit(x).bic(x)``
   per K. Both with their defaults, which coincide: k-means initialisation, ``tol = 1e-3``,
   ``max_iter = 100``, ``reg_covar = 1e-6``, ``n_init = 1``. The k-means seeds differ (two
   random streams), so the fits differ too; the chosen K of both is printed.
2. Fixed K = 8, N = 1e5, D = 16: exactly 20 EM iterations (``tol = 0``) from the same explicit
   initial parameters (uniform weights, K data points as means, the inverse data covariance as
   every precision), ``gmm.fit`` against ``GaussianMixture.fit``, with the relative difference
   of the final lower bounds.

scikit-learn runs with one BLAS thread and, except at the paper size, also with its default
threading (``default``); ``--sklearn-threads`` overrides both. On the loaded 2-core machine this
was written on, one thread was the faster setting (the default threading took 758 s for the
paper-size sweep, one thread 142 s).

Usage::

    python experiments/bench/gmm_fit.py              # the three cases above (~10 min)
    python experiments/bench/gmm_fit.py --quick      # small sizes, a smoke run
    python experiments/bench/gmm_fit.py --cases demo --sklearn-threads 1 default
    python experiments/bench/gmm_fit.py --dtype float32   # the model's feature dtype
    python experiments/bench/gmm_fit.py --out R.json      # also the timings as JSON
    python experiments/bench/gmm_fit.py --table R.json    # the README's table of a stored run
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import tempfile
import time
import warnings
from pathlib import Path
from typing import Any

import numpy as np

CASES = {
    # name: (kind, N, D, K: K_max of a sweep or the fixed K)
    "demo": ("sweep", 2430, 8, 20),
    "paper": ("sweep", 12_150, 16, 49),
    "fixed": ("fixed", 100_000, 16, 8),
}
QUICK = {
    "demo": ("sweep", 600, 4, 6),
    "paper": ("sweep", 1200, 8, 10),
    "fixed": ("fixed", 5000, 8, 4),
}
FIXED_ITERS = 20


def make_data(seed: int, n: int, d: int, k: int, dtype: str = "float64") -> np.ndarray:
    """``[n, d]`` samples of a ``k``-component mixture with overlapping components (drawn in
    float64, then cast to ``dtype``)."""
    rng = np.random.default_rng(seed)
    centres = 3.0 * rng.normal(size=(k, d))
    mixing = rng.normal(size=(k, d, d)) / np.sqrt(d)
    labels = rng.integers(0, k, size=n)
    z = rng.normal(size=(n, d))
    x = centres[labels] + np.einsum("nd,nde->ne", z, mixing[labels]) + 0.1 * z
    return x.astype(dtype)


def make_init(x: np.ndarray, k: int, seed: int) -> dict[str, np.ndarray]:
    """Explicit initial parameters shared by both implementations."""
    rng = np.random.default_rng(seed)
    precision = np.linalg.inv(np.cov(x.T.astype(np.float64)))
    return {
        "weights_init": np.full(k, 1.0 / k, x.dtype),
        "means_init": x[rng.choice(x.shape[0], size=k, replace=False)],
        "precisions_init": np.stack([precision] * k).astype(x.dtype),
    }


def _timed(fn) -> dict[str, Any]:
    """Cold and warm wall times of ``fn`` (two calls), the load average before each."""
    out: dict[str, Any] = {}
    for name in ("cold", "warm"):
        out[f"load_{name}"] = os.getloadavg()[0]
        start = time.perf_counter()
        out["result"] = fn()
        out[name] = time.perf_counter() - start
    return out


def worker_gmm(
    kind: str, n: int, d: int, k: int, dtype: str, cache: str | None = None
) -> dict[str, Any]:
    import jax

    import gmm

    jax.config.update("jax_enable_x64", dtype == "float64")
    if cache is not None:  # JAX's persistent compilation cache in that folder, every program
        jax.config.update("jax_compilation_cache_dir", cache)
        jax.config.update("jax_persistent_cache_min_compile_time_secs", 0.0)
        jax.config.update("jax_persistent_cache_min_entry_size_bytes", 0)
    x = make_data(0, n, d, 8, dtype)
    jax.block_until_ready(jax.numpy.asarray(x))  # start the backend before timing
    key = jax.random.key(0)
    if kind == "sweep":

        def run():
            best, table = gmm.select_n_components(x, range(1, k + 1), key=key)
            jax.block_until_ready(best)
            return {"best_k": best.params.n_components, "bic": [r.criterion for r in table]}

    else:
        init = make_init(x, k, 1)

        def run():
            res = gmm.fit(x, k, key=key, tol=0.0, max_iter=FIXED_ITERS, **init)
            jax.block_until_ready(res)
            return {"lower_bound": float(res.lower_bound), "n_iter": int(res.n_iter)}

    return _timed(run)


def worker_sklearn(kind: str, n: int, d: int, k: int, dtype: str, threads: str) -> dict[str, Any]:
    from sklearn.exceptions import ConvergenceWarning
    from sklearn.mixture import GaussianMixture
    from threadpoolctl import threadpool_limits

    x = make_data(0, n, d, 8, dtype)
    if kind == "sweep":

        def run():
            bics = [
                GaussianMixture(j, covariance_type="full", random_state=j).fit(x).bic(x)
                for j in range(1, k + 1)
            ]
            return {"best_k": int(np.argmin(bics)) + 1, "bic": bics}

    else:
        init = make_init(x, k, 1)

        def run():
            with warnings.catch_warnings():
                warnings.simplefilter("ignore", ConvergenceWarning)  # tol = 0: never converges
                sk = GaussianMixture(
                    k, covariance_type="full", tol=0.0, max_iter=FIXED_ITERS, **init
                ).fit(x)
            return {"lower_bound": float(sk.lower_bound_), "n_iter": int(sk.n_iter_)}

    with threadpool_limits(limits=None if threads == "default" else int(threads)):
        return _timed(run)


def in_fresh_process(*args: str) -> dict[str, Any]:
    """Run this file's worker with ``args`` in a new interpreter; its JSON result.

    The checkout's root goes first on the path, so that its ``gmm`` is the one measured.
    """
    root = str(Path(__file__).resolve().parents[2])
    path = os.pathsep.join(filter(None, [root, os.environ.get("PYTHONPATH")]))
    env = dict(os.environ, PYTHONPATH=path)
    cmd = [sys.executable, __file__, "--worker", *args]
    out = subprocess.run(cmd, check=True, capture_output=True, text=True, env=env)
    return json.loads(out.stdout.strip().splitlines()[-1])


def _timing(label: str, r: dict[str, Any]) -> str:
    return (
        f"  {label:<27} cold {r['cold']:7.2f}s (load {r['load_cold']:4.2f})   "
        f"warm {r['warm']:7.2f}s (load {r['load_warm']:4.2f})"
    )


def _loads() -> str:
    return ", ".join(f"{v:.2f}" for v in os.getloadavg())


def run_case(
    name: str, kind: str, n: int, d: int, k: int, sklearn_threads: list[str], dtype: str
) -> dict[str, Any]:
    """Run one case; prints its lines and returns its timings (the JSON record of the case)."""
    spec = [kind, str(n), str(d), str(k), dtype]
    if kind == "sweep":
        print(f"\n{name}: BIC sweep over K = 1..{k}, N = {n}, D = {d} (defaults of both)")
    else:
        print(
            f"\n{name}: fixed K = {k}, N = {n}, D = {d}, {FIXED_ITERS} EM iterations from the "
            "same initial parameters"
        )
    with tempfile.TemporaryDirectory() as cache:
        ours = in_fresh_process("gmm", *spec, cache)  # compiles, fills the empty cache
        cached = in_fresh_process("gmm", *spec, cache)  # a fresh process reading the cache
    print(_timing("gmm", ours))
    print(
        f"  {'gmm, persistent cache':<27} first call in a fresh process {cached['cold']:7.2f}s "
        f"(load {cached['load_cold']:4.2f})"
    )
    record: dict[str, Any] = {
        "kind": kind,
        "n": n,
        "d": d,
        "k": k,
        "gmm": ours,
        "gmm_cached": cached,
        "sklearn": {},
    }
    for threads in sklearn_threads:
        sk = in_fresh_process("sklearn", *spec, threads)
        record["sklearn"][threads] = sk
        print(
            _timing(f"scikit-learn ({threads} thr)", sk)
            + f"   ratio cold {sk['cold'] / ours['cold']:5.2f}x, warm "
            f"{sk['warm'] / ours['warm']:5.2f}x, cold against the cached first call "
            f"{sk['cold'] / cached['cold']:5.2f}x"
        )
        if kind == "sweep":
            best = (ours["result"]["best_k"], sk["result"]["best_k"])
            print(f"    best K: gmm {best[0]}, scikit-learn {best[1]}")
        else:
            ref, mine = sk["result"]["lower_bound"], ours["result"]["lower_bound"]
            print(
                f"    relative difference of the lower bounds {abs(mine - ref) / abs(ref):.2e} "
                f"({ours['result']['n_iter']} and {sk['result']['n_iter']} iterations)"
            )
    return record


def markdown_table(results: dict[str, Any]) -> str:
    """The README's table of a stored run (``--out``): per case, the times of both libraries
    and the ratios scikit-learn / gmm (one BLAS thread, and scikit-learn's default threading
    where measured)."""
    lines = [
        "| case | gmm cold / cached first call / warm (s) | scikit-learn 1 thread cold / warm (s) "
        "| ratio cold / cached / warm | scikit-learn default threads, ratio warm |",
        "|---|---|---|---|---|",
    ]
    for name, c in results["cases"].items():
        ours, cached, one = c["gmm"], c["gmm_cached"], c["sklearn"]["1"]
        if c["kind"] == "sweep":
            label = f"BIC sweep K = 1 … {c['k']}, N = {c['n']}, D = {c['d']} ({name})"
        else:
            label = f"fixed K = {c['k']}, N = {c['n']}, D = {c['d']}, {FIXED_ITERS} EM iterations"
        default = c["sklearn"].get("default")
        threads = (
            f"{default['warm']:.2f} s, {default['warm'] / ours['warm']:.1f}×"
            if default
            else "not run"
        )
        lines.append(
            f"| {label} | {ours['cold']:.2f} / {cached['cold']:.2f} / {ours['warm']:.2f} "
            f"| {one['cold']:.2f} / {one['warm']:.2f} "
            f"| {one['cold'] / ours['cold']:.2f}× / {one['cold'] / cached['cold']:.2f}× / "
            f"{one['warm'] / ours['warm']:.1f}× | {threads} |"
        )
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--quick", action="store_true", help="small sizes (smoke run)")
    parser.add_argument("--cases", nargs="+", choices=list(CASES), default=list(CASES))
    parser.add_argument(
        "--sklearn-threads", nargs="+", default=None, help="BLAS threads: integers or 'default'"
    )
    parser.add_argument("--dtype", choices=("float64", "float32"), default="float64")
    parser.add_argument("--out", default=None, help="also write the timings to this JSON file")
    parser.add_argument("--table", default=None, help="print the table of a stored run; exit")
    parser.add_argument("--worker", nargs="+", help=argparse.SUPPRESS)
    args = parser.parse_args(argv)
    if args.table:
        print(markdown_table(json.loads(Path(args.table).read_text())))
        return
    if args.worker:
        who, kind, n, d, k, dtype, *rest = args.worker
        if who == "gmm":
            out = worker_gmm(kind, int(n), int(d), int(k), dtype, *rest)
        else:
            out = worker_sklearn(kind, int(n), int(d), int(k), dtype, *rest)
        print(json.dumps(out))
        return
    print(
        f"{os.cpu_count()} CPUs, load average {_loads()} (1, 5, 15 min) at start; {args.dtype}; "
        "every timing in a fresh process: cold = first call, warm = second call"
    )
    sizes = QUICK if args.quick else CASES
    sys.path.insert(0, str(Path(__file__).resolve().parents[2]))  # the checkout's experiments
    from experiments.common.provenance import begin_run, provenance

    start = begin_run()
    cases = {}
    for name in args.cases:
        threads = args.sklearn_threads or (["1"] if name == "paper" else ["1", "default"])
        cases[name] = run_case(name, *sizes[name], threads, args.dtype)
    print(f"\nload average {_loads()} (1, 5, 15 min) at end")
    if args.out:
        from nequip_jax._io import atomic_write_json

        record = provenance(start, preset=None, seeds=[], data_source="synthetic", data_files={})
        atomic_write_json(
            args.out,
            {"dtype": args.dtype, "quick": args.quick, "cases": cases, "provenance": record},
        )


if __name__ == "__main__":
    main()
