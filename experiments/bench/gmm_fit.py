"""Benchmark: ``gmm.fit`` (JAX, jit-compiled EM) against scikit-learn's GaussianMixture.

Both run in this process on the same float64 data from the same initial parameters
(uniform weights, K data points as means, the inverse data covariance as every precision) for
a fixed number of EM iterations (``tol = 0``). Printed per size: wall time of scikit-learn
(best of its default BLAS threading and one thread, both shown), the JAX time of a compiled
call and the compile time (first call minus a compiled call), the ratio, and the relative
difference of the final mean log-likelihood (the lower bound of the last iteration, and the
score of the final parameters). Then a BIC sweep over K at one size, fitted the same way.

Usage::

    python experiments/bench/gmm_fit.py            # N = 1e4, 1e5, 1e6; sweep K = 1..16 at 1e5
    python experiments/bench/gmm_fit.py --quick    # small sizes, a smoke run
    python experiments/bench/gmm_fit.py --sizes 1e4 1e5 --sweep-n 1e5 --sweep-k 16

Goal (issue 4): at N = 1e5, D = 16, K = 8, at least 3x faster than scikit-learn with the same
likelihood to 1e-6 relative.
"""

from __future__ import annotations

import argparse
import os
import time
import warnings
from collections.abc import Callable
from typing import Any

import jax
import numpy as np
from sklearn.exceptions import ConvergenceWarning
from sklearn.mixture import GaussianMixture
from threadpoolctl import threadpool_limits

import gmm


def make_data(seed: int, n: int, d: int, k: int) -> np.ndarray:
    """``[n, d]`` float64 samples of a ``k``-component mixture with overlapping components."""
    rng = np.random.default_rng(seed)
    centres = 3.0 * rng.normal(size=(k, d))
    mixing = rng.normal(size=(k, d, d)) / np.sqrt(d)
    labels = rng.integers(0, k, size=n)
    z = rng.normal(size=(n, d))
    return centres[labels] + np.einsum("nd,nde->ne", z, mixing[labels]) + 0.1 * z


def make_init(x: np.ndarray, k: int, seed: int) -> dict[str, np.ndarray]:
    """Explicit initial parameters shared by both implementations."""
    rng = np.random.default_rng(seed)
    precision = np.linalg.inv(np.cov(x.T))
    return {
        "weights_init": np.full(k, 1.0 / k),
        "means_init": x[rng.choice(x.shape[0], size=k, replace=False)],
        "precisions_init": np.stack([precision] * k),
    }


def best_time(fn: Callable[[], Any], repeats: int) -> tuple[float, Any]:
    """Smallest wall time of ``repeats`` calls and the last result."""
    best, out = float("inf"), None
    for _ in range(repeats):
        start = time.perf_counter()
        out = fn()
        best = min(best, time.perf_counter() - start)
    return best, out


def sklearn_fit(x: np.ndarray, k: int, init: dict, iters: int) -> GaussianMixture:
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", ConvergenceWarning)  # tol = 0: never "converged"
        return GaussianMixture(
            k, covariance_type="full", tol=0.0, max_iter=iters, reg_covar=1e-6, **init
        ).fit(x)


def gmm_fit(x: np.ndarray, k: int, init: dict, iters: int, key: jax.Array) -> gmm.FitResult:
    res = gmm.fit(x, k, key=key, tol=0.0, max_iter=iters, reg_covar=1e-6, **init)
    jax.block_until_ready(res)
    return res


def time_sklearn(fn: Callable[[], Any], repeats: int) -> dict[str, Any]:
    """scikit-learn with its default BLAS threading and with one thread; the faster counts."""
    t_default, out = best_time(fn, repeats)
    with threadpool_limits(limits=1):
        t_one, _ = best_time(fn, repeats)
    return {"default": t_default, "one_thread": t_one, "best": min(t_default, t_one), "out": out}


def bench_size(n: int, d: int, k: int, iters: int, repeats: int, key: jax.Array) -> dict:
    x = make_data(0, n, d, k)
    init = make_init(x, k, 1)
    sk = time_sklearn(lambda: sklearn_fit(x, k, init, iters), repeats)
    start = time.perf_counter()
    gmm_fit(x, k, init, iters, key)
    first = time.perf_counter() - start
    t_jax, res = best_time(lambda: gmm_fit(x, k, init, iters, key), repeats)
    ref = sk["out"]
    lb_diff = abs(float(res.lower_bound) - ref.lower_bound_) / abs(ref.lower_bound_)
    score = float(np.mean(np.asarray(gmm.score_samples(res.params, x))))
    score_diff = abs(score - ref.score(x)) / abs(ref.score(x))
    assert int(res.n_iter) == ref.n_iter_ == iters
    return {
        "n": n, "sk_default": sk["default"], "sk_one": sk["one_thread"], "sk": sk["best"],
        "jax": t_jax, "compile": max(first - t_jax, 0.0), "ratio": sk["best"] / t_jax,
        "lb_diff": lb_diff, "score_diff": score_diff,
    }  # fmt: skip


def bench_sweep(n: int, d: int, k_max: int, iters: int, key: jax.Array) -> dict:
    """BIC for K = 1..k_max, same init and fixed iterations; each K compiled once."""
    x = make_data(2, n, d, 8)
    inits = {k: make_init(x, k, 10 + k) for k in range(1, k_max + 1)}

    def sweep_sklearn():
        return [sklearn_fit(x, k, inits[k], iters).bic(x) for k in inits]

    def sweep_gmm():
        return [float(gmm.bic(gmm_fit(x, k, inits[k], iters, key).params, x)) for k in inits]

    sk = time_sklearn(sweep_sklearn, 1)
    start = time.perf_counter()
    sweep_gmm()  # compiles one fit per K
    first = time.perf_counter() - start
    t_jax, bics = best_time(sweep_gmm, 1)
    sk_bics = np.asarray(sk["out"])
    return {
        "n": n, "k_max": k_max, "sk_default": sk["default"], "sk_one": sk["one_thread"],
        "sk": sk["best"], "jax": t_jax, "compile": max(first - t_jax, 0.0),
        "ratio": sk["best"] / t_jax, "ratio_with_compile": sk["best"] / first,
        "bic_diff": float(np.max(np.abs(np.asarray(bics) - sk_bics) / np.abs(sk_bics))),
        "best_k": int(np.argmin(bics)) + 1, "best_k_sklearn": int(np.argmin(sk_bics)) + 1,
    }  # fmt: skip


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--quick", action="store_true", help="small sizes (smoke run)")
    parser.add_argument("--sizes", type=float, nargs="+", default=None)
    parser.add_argument("--features", type=int, default=16)
    parser.add_argument("--components", type=int, default=8)
    parser.add_argument("--iters", type=int, default=20, help="fixed EM iterations")
    parser.add_argument("--sweep-n", type=float, default=None)
    parser.add_argument("--sweep-k", type=int, default=None)
    parser.add_argument("--seed", type=int, default=0)
    args = parser.parse_args(argv)
    sizes = args.sizes or ([2e3, 1e4] if args.quick else [1e4, 1e5, 1e6])
    sweep_n = args.sweep_n or (2e3 if args.quick else 1e5)
    sweep_k = args.sweep_k or (4 if args.quick else 16)
    key = jax.random.key(args.seed)
    d, k = args.features, args.components

    print(
        f"jax {jax.__version__} on {jax.devices()[0].platform}, {os.cpu_count()} CPUs, "
        f"load average {os.getloadavg()[0]:.2f} (1 min) at start"
    )
    print(f"float64, D = {d}, K = {k}, {args.iters} EM iterations (tol = 0), same init")
    header = (
        f"{'N':>9} {'sk default':>11} {'sk 1 thr':>9} {'gmm':>8} {'compile':>8} "
        f"{'ratio':>6} {'rel d(lower bound)':>19} {'rel d(score)':>13}"
    )
    print(header)
    with jax.enable_x64(True):
        for n in sizes:
            n = int(n)
            repeats = 3 if n <= 10_000 else (2 if n <= 100_000 else 1)
            r = bench_size(n, d, k, args.iters, repeats, key)
            print(
                f"{r['n']:>9} {r['sk_default']:>10.3f}s {r['sk_one']:>8.3f}s "
                f"{r['jax']:>7.3f}s {r['compile']:>7.2f}s {r['ratio']:>5.2f}x "
                f"{r['lb_diff']:>19.2e} {r['score_diff']:>13.2e}",
                flush=True,
            )
        s = bench_sweep(int(sweep_n), d, sweep_k, args.iters, key)
    print(f"\nBIC sweep K = 1..{s['k_max']} at N = {s['n']} ({args.iters} iterations each):")
    print(
        f"  scikit-learn {s['sk']:.2f}s (default threads {s['sk_default']:.2f}s, one thread "
        f"{s['sk_one']:.2f}s); gmm {s['jax']:.2f}s compiled + {s['compile']:.2f}s compiling"
    )
    print(
        f"  ratio {s['ratio']:.2f}x compiled, {s['ratio_with_compile']:.2f}x including "
        f"compilation; max rel BIC difference {s['bic_diff']:.2e}; best K {s['best_k']} "
        f"(scikit-learn {s['best_k_sklearn']})"
    )
    print(f"load average {os.getloadavg()[0]:.2f} (1 min) at end")


if __name__ == "__main__":
    main()
