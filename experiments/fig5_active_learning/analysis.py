"""Selection and the Table I numbers of the active-learning experiment (Zhu et al. 2023).

Pure functions: pool scores → selected indices (Eq. (12)); per-atom errors → ε̄, ε̄_200, ε_max;
paired active-vs-random improvements over seeds and their paired t-test.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence

import jax
import numpy as np
from scipy import stats

from experiments.common.prediction import Prediction
from experiments.common.stats import compare_to_spread
from nequip_jax.uncertainty.metrics import active_learning_score, error_summary, select_top

__all__ = [
    "TABLE_METRICS",
    "select_active",
    "select_random",
    "table_metrics",
    "improvement",
    "paired_difference",
    "format_p",
    "improvement_table",
]

#: Table I rows: key of :func:`table_metrics` and its label.
TABLE_METRICS = (("eps_bar", "ε̄"), ("eps_bar_200", "ε̄_200"), ("eps_max", "ε_max"))


def select_active(pred: Prediction, n: int) -> np.ndarray:
    """Indices of the ``n`` pool structures with the highest max-atom uncertainty U_{k*}
    (Eq. (12)), best first."""
    scores = active_learning_score(pred.u, pred.structure, int(pred.energy.shape[0]))
    return select_top(scores, n)


def select_random(n_pool: int, n: int, *, key: jax.Array) -> np.ndarray:
    """``n`` distinct pool indices drawn uniformly with ``key`` (the random baseline)."""
    if not 0 <= n <= n_pool:
        raise ValueError(f"cannot draw n={n} structures from a pool of {n_pool}.")
    return np.asarray(jax.random.choice(key, n_pool, (n,), replace=False)).astype(np.int64)


def table_metrics(eps: np.ndarray, threshold: float = 0.2) -> dict[str, float]:
    """ε̄ (Eq. (3)), ε̄_200 (mean ε of atoms above ``threshold`` eV/Å; NaN if none), ε_max and
    the number of atoms above the threshold, from per-atom ε [n] in eV/Å."""
    s = error_summary(eps, threshold)
    return {
        "eps_bar": s.eps_bar,
        "eps_bar_200": s.eps_bar_above,
        "eps_max": s.eps_max,
        "n_above_200": s.n_above,
    }


def improvement(random: Mapping[str, float], active: Mapping[str, float]) -> dict:
    """Absolute (random − active, units of ε) and percentage (100 · (random − active) / random)
    improvement of every Table I metric; positive means active learning helped."""
    out = {}
    for key, _ in TABLE_METRICS:
        r, a = float(random[key]), float(active[key])
        out[key] = {"abs": r - a, "pct": 100.0 * (r - a) / r if r else float("nan")}
    return out


def paired_difference(active: Sequence[float], random: Sequence[float]) -> dict:
    """Per-seed paired difference active − random (negative: active learning better) and a
    two-sided paired t-test of "no difference" (:func:`scipy.stats.ttest_rel`).

    Seeds where either value is not finite (e.g. ε̄_200 without an atom above 200 meV/Å) are
    left out of the statistics; their ``diff`` is NaN.

    Returns:
        ``active``, ``random`` and ``diff`` (per seed, in the input order), ``mean`` and ``sd``
        (ddof = 1) of the differences, ``n`` (seeds used), ``t`` and ``p_value`` (NaN for fewer
        than two seeds or differences without spread, where the test is undefined).
    """
    a = np.asarray(active, np.float64)
    r = np.asarray(random, np.float64)
    if a.shape != r.shape or a.ndim != 1:
        raise ValueError(
            f"paired values need equal 1-D shapes: active {a.shape}, random {r.shape}."
        )
    keep = np.isfinite(a) & np.isfinite(r)
    diff = np.where(keep, a - r, np.nan)
    d = diff[keep]
    n = int(d.size)
    mean = float(np.mean(d)) if n else float("nan")
    sd = float(np.std(d, ddof=1)) if n > 1 else float("nan")
    t = p = float("nan")
    if n > 1 and sd > 0:
        test = stats.ttest_rel(a[keep], r[keep])
        t, p = float(test.statistic), float(test.pvalue)
    return {
        "active": a.tolist(),
        "random": r.tolist(),
        "diff": diff.tolist(),
        "mean": mean,
        "sd": sd,
        "n": n,
        "t": t,
        "p_value": p,
    }


def format_p(p: float) -> str:
    """A p-value for a table: ``"p = 0.062"``, ``"p < 0.001"``, ``"p n/a"`` (NaN)."""
    p = float(p)
    if not np.isfinite(p):
        return "p n/a"
    return "p < 0.001" if p < 0.001 else f"p = {p:.3f}"


def improvement_table(
    random: Sequence[Mapping[str, float]], active: Sequence[Mapping[str, float]]
) -> dict:
    """Over seeds (paired lists, one metrics dict per seed): for every Table I metric, the
    absolute and percentage improvements, their :func:`compare_to_spread` verdict against the
    spread of the improvements and of the random baseline, and ``paired``: the paired difference
    active − random with its t-test (:func:`paired_difference`)."""
    out = {}
    for key, _ in TABLE_METRICS:
        imp = [improvement(r, a)[key] for r, a in zip(random, active)]
        abs_imp = [i["abs"] for i in imp]
        out[key] = {
            "abs": abs_imp,
            "pct": [i["pct"] for i in imp],
            "random": [float(r[key]) for r in random],
            "active": [float(a[key]) for a in active],
            **compare_to_spread(abs_imp, [float(r[key]) for r in random]),
            "paired": paired_difference(
                [float(a[key]) for a in active], [float(r[key]) for r in random]
            ),
        }
    return out
