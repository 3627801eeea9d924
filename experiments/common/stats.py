"""Statistics over seeds: mean ± sd, comparisons with the seed spread, aggregation."""

from __future__ import annotations

from collections.abc import Mapping, Sequence

import numpy as np

__all__ = [
    "mean_sd",
    "format_mean_sd",
    "compare_to_spread",
    "aggregate_seeds",
]


def mean_sd(values: Sequence[float]) -> tuple[float, float, int]:
    """Mean, sample standard deviation (ddof = 1; NaN for one value) and count of the finite
    values (NaN entries are left out: e.g. ε̄_200 of a model with no atom above 200 meV/Å)."""
    x = np.asarray(values, np.float64)
    x = x[np.isfinite(x)]
    if x.size == 0:
        return float("nan"), float("nan"), 0
    sd = float(np.std(x, ddof=1)) if x.size > 1 else float("nan")
    return float(np.mean(x)), sd, int(x.size)


def format_mean_sd(values: Sequence[float], scale: float = 1.0, digits: int = 1) -> str:
    """``"m ± s"`` of ``scale * values`` (``"m"`` for one seed; ``"n/a"`` for none)."""
    m, s, n = mean_sd(values)
    if n == 0:
        return "n/a"
    if n == 1:
        return f"{scale * m:.{digits}f} (1 seed)"
    return f"{scale * m:.{digits}f} ± {scale * s:.{digits}f}"


def compare_to_spread(
    improvements: Sequence[float], baseline: Sequence[float] | None = None
) -> dict:
    """Is a per-seed improvement (positive = better) larger than the seed-to-seed spread?

    ``improvements`` are paired differences over seeds (e.g. ε̄_random − ε̄_active); ``baseline``
    the per-seed values of the reference (e.g. ε̄_random). The spread is the larger of the
    standard deviation of the improvements and of the baseline. Verdict ``"yes"`` when
    mean − spread > 0, ``"worse"`` when mean + spread < 0, else ``"within spread"``; fewer than
    two seeds give ``"n/a"``.

    Returns:
        ``mean``, ``sd``, ``spread``, ``n``, ``n_better`` (seeds with improvement > 0) and
        ``verdict``.
    """
    m, s, n = mean_sd(improvements)
    spread = s
    if baseline is not None:
        b = mean_sd(baseline)[1]
        spread = float(np.nanmax([s, b])) if np.isfinite([s, b]).any() else float("nan")
    x = np.asarray(improvements, np.float64)
    if n < 2 or not np.isfinite(spread):
        verdict = "n/a"
    elif m - spread > 0:
        verdict = "yes"
    elif m + spread < 0:
        verdict = "worse"
    else:
        verdict = "within spread"
    return {
        "mean": m,
        "sd": s,
        "spread": spread,
        "n": n,
        "n_better": int(np.sum(x[np.isfinite(x)] > 0)),
        "verdict": verdict,
    }


def aggregate_seeds(per_seed: Sequence[Mapping]) -> dict:
    """Mean ± sd over seeds of nested dictionaries with equal keys and numeric leaves.

    Args:
        per_seed: one nested mapping per seed (e.g. ``{test: {method: {metric: value}}}``).

    Returns:
        The same nesting with each leaf replaced by ``{"mean", "sd", "n", "values"}``
        (see :func:`mean_sd`); booleans count as 0/1, keys missing in some seeds are skipped
        for those seeds.
    """
    first = per_seed[0]
    if isinstance(first, Mapping):
        keys = list(dict.fromkeys(k for d in per_seed for k in d))
        return {
            k: aggregate_seeds([d[k] for d in per_seed if isinstance(d, Mapping) and k in d])
            for k in keys
        }
    values = [float(v) if v is not None else float("nan") for v in per_seed]
    m, s, n = mean_sd(values)
    return {"mean": m, "sd": s, "n": n, "values": values}
