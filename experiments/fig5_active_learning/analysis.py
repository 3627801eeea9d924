"""Selection and the Table I numbers of the active-learning experiment (Zhu et al. 2023).

Pure functions: pool scores → selected indices (Eq. (12)); per-atom errors → ε̄, ε̄_200, ε_max;
paired active-vs-random improvements over seeds.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence

import jax
import numpy as np

from experiments.common.pipeline import Prediction, compare_to_spread
from nequip_jax.uncertainty.metrics import active_learning_score, error_summary, select_top

__all__ = [
    "TABLE_METRICS",
    "select_active",
    "select_random",
    "table_metrics",
    "improvement",
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


def improvement_table(
    random: Sequence[Mapping[str, float]], active: Sequence[Mapping[str, float]]
) -> dict:
    """Over seeds (paired lists, one metrics dict per seed): for every Table I metric, the
    absolute and percentage improvements and their :func:`compare_to_spread` verdict against
    the spread of the improvements and of the random baseline."""
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
        }
    return out
