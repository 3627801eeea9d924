"""Turning an uncertainty score into a force-error estimate, and checking that estimate.

Zhu et al. (J. Chem. Phys. 2023) note that their uncertainties "cannot be interpreted as error
estimates" and name calibration as future work (Results, "Uncertainty quantification"). The GMM
NLL of Eq. (8) is in feature-space nats and the ensemble σ of Eq. (4) is in eV/Å but not an
error. This module maps either to the per-atom force error ε of Eq. (2):

* :func:`fit_isotonic` / :func:`predict_isotonic` — monotone non-parametric map U → E[ε | U]
  (pool-adjacent-violators, PAV).
* :func:`fit_power_law` / :func:`predict_power_law` — a two-parameter map, log ε ≈ a + b·g(U).
* :func:`fit_conformal` / :func:`conformal_upper` / :func:`coverage` — split conformal upper
  bounds for ε with a finite-sample coverage guarantee.
* :func:`calibration_curve` / :func:`miscalibration_area` — expected vs observed coverage across
  levels (Kuleshov et al. 2018; Tran et al. 2020) for a probabilistic error model.

Calibrators are fitted on a held-out calibration set (never the training set of the potential).
States are NamedTuples of numpy arrays/scalars; :func:`save_state`/:func:`load_state` write and
read them as ``.npz`` files. Everything here is host-side numpy.
"""

from __future__ import annotations

import math
from typing import Literal, NamedTuple, TypeVar

import numpy as np

__all__ = [
    "CalibrationCurve",
    "ConformalState",
    "IsotonicState",
    "MEAN_EPS_PER_SIGMA",
    "PowerLawState",
    "calibration_curve",
    "chi3_pit",
    "conformal_quantile",
    "conformal_upper",
    "coverage",
    "fit_conformal",
    "fit_isotonic",
    "fit_power_law",
    "gaussian_central_pit",
    "load_state",
    "miscalibration_area",
    "pava",
    "predict_isotonic",
    "predict_power_law",
    "save_state",
    "sigma_from_mean_eps",
]


def _finite_1d(x: np.ndarray, name: str) -> np.ndarray:
    arr = np.asarray(x, dtype=np.float64)
    if arr.ndim != 1:
        raise ValueError(f"{name} must be 1-D (one value per atom), got shape {arr.shape}.")
    if not np.all(np.isfinite(arr)):
        raise ValueError(
            f"{name} contains {int(np.sum(~np.isfinite(arr)))} non-finite value(s); drop those "
            f"atoms before calibrating."
        )
    return arr


def _pair(u: np.ndarray, eps: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    a = _finite_1d(u, "u")
    b = _finite_1d(eps, "eps")
    if a.size != b.size:
        raise ValueError(f"u has {a.size} entries but eps has {b.size}; pair them per atom.")
    if a.size == 0:
        raise ValueError("the calibration set is empty.")
    return a, b


# ---------------------------------------------------------------------------------------------
# isotonic regression


def pava(y: np.ndarray, weights: np.ndarray | None = None) -> np.ndarray:
    """Weighted least-squares non-decreasing fit by pool-adjacent-violators.

    Minimises Σ_i w_i (ŷ_i − y_i)² subject to ŷ_1 ≤ ŷ_2 ≤ … ≤ ŷ_m. Blocks of adjacent values that
    violate the order are merged into their weighted mean; a stack makes this O(m).

    Args:
        y: ``[m]`` values in the order to be made monotone.
        weights: ``[m]`` positive weights (default ones).

    Returns:
        ŷ: ``[m]`` non-decreasing.
    """
    yy = _finite_1d(y, "y")
    ww = np.ones_like(yy) if weights is None else _finite_1d(weights, "weights")
    if ww.shape != yy.shape or np.any(ww <= 0):
        raise ValueError("weights must be positive and have the same shape as y.")
    means: list[float] = []
    wsum: list[float] = []
    count: list[int] = []
    for value, weight in zip(yy.tolist(), ww.tolist(), strict=True):
        means.append(value)
        wsum.append(weight)
        count.append(1)
        while len(means) > 1 and means[-2] > means[-1]:
            w_new = wsum[-2] + wsum[-1]
            m_new = (wsum[-2] * means[-2] + wsum[-1] * means[-1]) / w_new
            c_new = count[-2] + count[-1]
            del means[-1], wsum[-1], count[-1]
            means[-1], wsum[-1], count[-1] = m_new, w_new, c_new
    return np.repeat(np.asarray(means), count)


class IsotonicState(NamedTuple):
    """Monotone map U → ε as a piecewise-linear interpolant through ``(x, y)`` knots."""

    x: np.ndarray  # [m] distinct calibration U values, increasing
    y: np.ndarray  # [m] fitted ε at those U, monotone


def fit_isotonic(
    u: np.ndarray,
    eps: np.ndarray,
    *,
    sample_weight: np.ndarray | None = None,
    increasing: bool = True,
) -> IsotonicState:
    """Isotonic regression of ε on U (an estimate of E[ε | U] constrained to be monotone).

    Atoms with equal U are first pooled into their weighted mean (they must share a prediction),
    then :func:`pava` makes the sequence monotone. Same estimator as
    ``sklearn.isotonic.IsotonicRegression(out_of_bounds="clip")``, except that sklearn also pools
    U values closer than 1e-15 (absolute) while this pools exact ties only.

    Args:
        u: ``[n]`` uncertainty on the calibration set (NLL of Eq. (8) or σ of Eq. (4)).
        eps: ``[n]`` observed ε of Eq. (2) on the same atoms.
        sample_weight: ``[n]`` positive weights (default ones).
        increasing: fit a non-decreasing map (default; more uncertain → larger error) or a
            non-increasing one.

    Returns:
        :class:`IsotonicState`.
    """
    a, b = _pair(u, eps)
    w = np.ones_like(a) if sample_weight is None else _finite_1d(sample_weight, "sample_weight")
    if w.shape != a.shape or np.any(w <= 0):
        raise ValueError("sample_weight must be positive, one entry per atom.")
    order = np.argsort(a, kind="stable")
    xs, ys, ws = a[order], b[order], w[order]
    starts = np.flatnonzero(np.r_[True, xs[1:] != xs[:-1]])
    w_group = np.add.reduceat(ws, starts)
    y_group = np.add.reduceat(ws * ys, starts) / w_group
    sign = 1.0 if increasing else -1.0
    fitted = sign * pava(sign * y_group, w_group)
    return IsotonicState(x=xs[starts], y=fitted)


def predict_isotonic(state: IsotonicState, u: np.ndarray) -> np.ndarray:
    """Evaluate a fitted isotonic map; U outside the calibration range is clipped to its ends.

    Args:
        state: from :func:`fit_isotonic`.
        u: any shape.

    Returns:
        expected ε, same shape as ``u`` (units of ε).
    """
    return np.interp(np.asarray(u, dtype=np.float64), state.x, state.y)


# ---------------------------------------------------------------------------------------------
# power law


class PowerLawState(NamedTuple):
    """log ε = a + b·g(U) + noise, noise ~ N(0, resid_var); g = log (σ) or identity (NLL)."""

    a: float
    b: float
    log_u: bool  # True: g(U) = log U; False: g(U) = U
    resid_var: float  # residual variance of log ε (unbiased, n − 2 degrees of freedom)


def _transform(u: np.ndarray, log_u: bool) -> np.ndarray:
    if not log_u:
        return u
    if np.any(u <= 0):
        raise ValueError(
            "u_transform='log' needs U > 0 (e.g. the ensemble σ of Eq. (4)); for the GMM NLL of "
            "Eq. (8), which can be negative, use u_transform='identity'."
        )
    return np.log(u)


def fit_power_law(
    u: np.ndarray, eps: np.ndarray, *, u_transform: Literal["log", "identity"]
) -> PowerLawState:
    """Least-squares fit of log ε = a + b·g(U) on a calibration set.

    Two forms, chosen by ``u_transform``:

    * ``"log"`` — for a positive U such as the ensemble σ (Eq. 4): ε ≈ e^a · U^b, a power law.
    * ``"identity"`` — for the GMM NLL (Eq. 8), which can be negative: ε ≈ e^a · e^{b·NLL}. Since
      NLL = −log p(x), this is ε ∝ p(x)^{−b}, a power law in the mixture density.

    Fitting in log space treats errors multiplicatively (ε spans decades) and makes (a, b) the
    ordinary-least-squares estimates, unbiased for the conditional mean of log ε.

    Args:
        u: ``[n]`` uncertainties; eps: ``[n]`` ε of Eq. (2), all > 0; n ≥ 3.
        u_transform: ``"log"`` or ``"identity"`` (no default: the right one depends on U).

    Returns:
        :class:`PowerLawState`.
    """
    a, b = _pair(u, eps)
    if u_transform not in ("log", "identity"):
        raise ValueError(f"u_transform must be 'log' or 'identity', got {u_transform!r}.")
    if a.size < 3:
        raise ValueError(f"need at least 3 calibration atoms for a 2-parameter fit, got {a.size}.")
    if np.any(b <= 0):
        raise ValueError(
            "eps must be > 0 to take its logarithm; an exact zero error usually means the "
            "reference forces were copied from the prediction — drop those atoms."
        )
    log_u = u_transform == "log"
    g = _transform(a, log_u)
    if np.ptp(g) == 0:
        raise ValueError("all calibration U are equal; the slope b is not identifiable.")
    design = np.stack([np.ones_like(g), g], axis=1)  # [n, 2]
    coef, *_ = np.linalg.lstsq(design, np.log(b), rcond=None)
    resid = np.log(b) - design @ coef
    return PowerLawState(
        a=float(coef[0]),
        b=float(coef[1]),
        log_u=log_u,
        resid_var=float(resid @ resid / (a.size - 2)),
    )


def predict_power_law(
    state: PowerLawState, u: np.ndarray, *, statistic: Literal["mean", "median"] = "mean"
) -> np.ndarray:
    """Expected per-atom force error from a fitted power law.

    With log-normal residuals, the median of ε given U is exp(a + b·g(U)) and the mean is that
    times exp(resid_var / 2).

    Args:
        state: from :func:`fit_power_law`.
        u: any shape.
        statistic: ``"mean"`` (default, E[ε | U]) or ``"median"``.

    Returns:
        ε estimate, same shape as ``u`` (units of ε).
    """
    g = _transform(np.asarray(u, dtype=np.float64), state.log_u)
    log_median = state.a + state.b * g
    if statistic == "median":
        return np.exp(log_median)
    if statistic == "mean":
        return np.exp(log_median + 0.5 * state.resid_var)
    raise ValueError(f"statistic must be 'mean' or 'median', got {statistic!r}.")


# ---------------------------------------------------------------------------------------------
# split conformal prediction


class ConformalState(NamedTuple):
    """Upper bound ε ≤ quantile · scale(U) holding with probability ≥ 1 − alpha."""

    quantile: float  # q̂, finite-sample quantile of ε / scale on the calibration set (may be inf)
    alpha: float  # miscoverage level
    n_cal: int  # calibration set size


def conformal_quantile(scores: np.ndarray, alpha: float) -> float:
    """Split-conformal quantile: the k-th smallest score with k = ⌈(n + 1)(1 − α)⌉.

    Equivalently the empirical quantile of level ⌈(n + 1)(1 − α)⌉ / n (Vovk et al.; Lei et al.
    2018). If k > n the bound is +inf (the calibration set is too small for that α: need
    n ≥ 1/α − 1). A 1e-9 relative slack in the ceiling guards against ``(n+1)*(1-α)`` landing a
    rounding error above an integer.

    Args:
        scores: ``[n]`` nonconformity scores.
        alpha: miscoverage in (0, 1).

    Returns:
        q̂ as a float.
    """
    s = _finite_1d(scores, "scores")
    if not 0.0 < alpha < 1.0:
        raise ValueError(f"alpha must be in (0, 1), got {alpha}.")
    n = s.size
    if n == 0:
        raise ValueError("no calibration scores.")
    target = (n + 1) * (1.0 - alpha)
    k = math.ceil(target - 1e-9 * target)
    if k > n:
        return float("inf")
    return float(np.partition(s, k - 1)[k - 1])


def fit_conformal(eps: np.ndarray, scale: np.ndarray, *, alpha: float) -> ConformalState:
    """Split conformal calibration of a normalised error bound.

    Nonconformity score s_i = ε_i / ĝ(U_i), where ĝ(U) > 0 is any error scale fixed *before*
    seeing this calibration set — e.g. :func:`predict_isotonic` or :func:`predict_power_law`
    fitted on a different split, or σ of Eq. (4) directly. If calibration and test atoms are
    exchangeable, P(ε_test ≤ q̂ · ĝ(U_test)) ≥ 1 − α (marginally, over both draws).

    Atoms of one structure are not exchangeable with each other in general; split by structure
    and treat the guarantee as per-atom marginal over structures.

    Args:
        eps: ``[n]`` ε of Eq. (2) on the calibration atoms.
        scale: ``[n]`` ĝ(U) > 0 on the same atoms.
        alpha: miscoverage, e.g. 0.1 for 90 % coverage.

    Returns:
        :class:`ConformalState`.
    """
    g, e = _pair(scale, eps)
    if np.any(g <= 0):
        raise ValueError(
            "scale must be > 0 on every atom; clip the calibrator output, e.g. np.maximum(g, 1e-6)."
        )
    return ConformalState(
        quantile=conformal_quantile(e / g, alpha), alpha=float(alpha), n_cal=int(e.size)
    )


def conformal_upper(state: ConformalState, scale: np.ndarray) -> np.ndarray:
    """Upper end of the interval [0, q̂ · ĝ(U)] for ε (ε ≥ 0, so the lower end is 0).

    Args:
        state: from :func:`fit_conformal`.
        scale: ĝ(U) on the test atoms, any shape.

    Returns:
        bound on ε, same shape as ``scale``.
    """
    return state.quantile * np.asarray(scale, dtype=np.float64)


def coverage(eps: np.ndarray, upper: np.ndarray) -> float:
    """Fraction of atoms whose error lies inside its interval, ε_i ≤ upper_i.

    Args:
        eps: ``[n]``; upper: ``[n]`` (e.g. from :func:`conformal_upper`).

    Returns:
        observed coverage in [0, 1]; compare with 1 − α.
    """
    e = _finite_1d(eps, "eps")
    up = np.asarray(upper, dtype=np.float64)
    if up.shape != e.shape or np.any(np.isnan(up)):
        raise ValueError(f"upper must be a NaN-free array of shape {e.shape}, got {up.shape}.")
    return float(np.mean(e <= up))


# ---------------------------------------------------------------------------------------------
# calibration curve of a probabilistic error model

#: E[ε] / σ when each force component error is N(0, σ²): ε = σ·χ₃/√3, E[χ₃] = 2√2/√π.
MEAN_EPS_PER_SIGMA: float = 2.0 * math.sqrt(2.0 / (3.0 * math.pi))

_erf = np.frompyfunc(math.erf, 1, 1)


def sigma_from_mean_eps(mean_eps: np.ndarray) -> np.ndarray:
    """Component standard deviation σ implied by a calibrated expected error E[ε].

    Under the Gaussian model of :func:`chi3_pit`, E[ε] = σ · 2√(2/(3π)) ≈ 0.9213 σ.

    Args:
        mean_eps: any shape, e.g. the output of :func:`predict_isotonic`.
    """
    return np.asarray(mean_eps, dtype=np.float64) / MEAN_EPS_PER_SIGMA


def gaussian_central_pit(residuals: np.ndarray, sigma: np.ndarray) -> np.ndarray:
    """Smallest central-interval level containing each residual under N(0, σ²).

    c = erf(|r| / (σ√2)) = 2Φ(|r|/σ) − 1: the residual lies in the central p-interval
    [−σ z, σ z] with z = Φ⁻¹((1 + p)/2) exactly when c ≤ p. For a calibrated model c ~ U(0, 1).

    Args:
        residuals: any shape (e.g. force components ``[n, 3]``, prediction − reference).
        sigma: broadcastable to ``residuals`` (e.g. ``sigma[:, None]``), > 0.

    Returns:
        c in [0, 1], the broadcast shape.
    """
    r = np.asarray(residuals, dtype=np.float64)
    s = np.asarray(sigma, dtype=np.float64)
    if np.any(~(s > 0)):
        raise ValueError("sigma must be > 0 everywhere (a zero σ makes every residual an outlier).")
    z = np.abs(r) / (s * math.sqrt(2.0))
    return _erf(z).astype(np.float64)


def chi3_pit(eps: np.ndarray, sigma: np.ndarray) -> np.ndarray:
    """Probability integral transform of ε under the Gaussian force-component model.

    If the three components of the force error on atom i are independent N(0, σ_i²) — the model
    behind Eq. (4) — then 3ε_i²/σ_i² ~ χ²₃ (ε of Eq. 2) and its CDF
    F(x) = erf(√(x/2)) − √(2x/π)·e^{−x/2} maps ε to U(0, 1). ε ≤ the p-quantile of its
    predicted distribution exactly when the PIT ≤ p. Absolute accuracy ~1e-12 (cancellation for
    tiny x costs relative, not absolute, precision).

    Args:
        eps: ``[n]`` (any shape) ε ≥ 0; sigma: broadcastable, > 0.

    Returns:
        PIT values in [0, 1].
    """
    e = np.asarray(eps, dtype=np.float64)
    s = np.asarray(sigma, dtype=np.float64)
    if np.any(~(s > 0)) or np.any(~(e >= 0)):
        raise ValueError("need eps >= 0 and sigma > 0 (no NaN).")
    x = 3.0 * (e / s) ** 2
    return _erf(np.sqrt(x / 2.0)).astype(np.float64) - np.sqrt(2.0 * x / math.pi) * np.exp(-x / 2)


class CalibrationCurve(NamedTuple):
    """Observed vs expected coverage; both ``[n_levels]``. Calibrated ⇔ observed ≈ expected."""

    expected: np.ndarray  # nominal levels p, increasing in [0, 1]
    observed: np.ndarray  # fraction of samples with PIT ≤ p


def calibration_curve(pit: np.ndarray, levels: np.ndarray | None = None) -> CalibrationCurve:
    """Calibration curve (Kuleshov et al. 2018; Tran et al. 2020) from PIT values.

    For each nominal level p, the observed coverage is the fraction of samples inside their
    predicted p-interval, i.e. with PIT ≤ p (use :func:`gaussian_central_pit` for signed residuals
    with central intervals, :func:`chi3_pit` for ε with one-sided intervals).

    Args:
        pit: any shape, values in [0, 1].
        levels: ``[n_levels]`` increasing in [0, 1]; default 101 points 0, 0.01, …, 1.

    Returns:
        :class:`CalibrationCurve`.
    """
    p = np.sort(np.asarray(pit, dtype=np.float64).ravel())
    if p.size == 0 or np.any(~((p >= 0) & (p <= 1))):
        raise ValueError("pit must be non-empty with values in [0, 1] (no NaN).")
    lv = np.linspace(0.0, 1.0, 101) if levels is None else _finite_1d(levels, "levels")
    if np.any(np.diff(lv) <= 0) or lv[0] < 0 or lv[-1] > 1:
        raise ValueError("levels must be strictly increasing inside [0, 1].")
    observed = np.searchsorted(p, lv, side="right") / p.size
    return CalibrationCurve(expected=lv, observed=observed)


def miscalibration_area(curve: CalibrationCurve) -> float:
    """Area between the calibration curve and the diagonal, ∫ |observed(p) − p| dp.

    Trapezoidal rule over ``curve.expected`` (Tran et al. 2020). 0 is perfectly calibrated; the
    maximum is 0.5. Over-confident models (intervals too narrow) have observed < expected.

    Args:
        curve: from :func:`calibration_curve`.

    Returns:
        area as a float. Lower is better.
    """
    dev = np.abs(curve.observed - curve.expected)
    return float(np.trapezoid(dev, curve.expected))


# ---------------------------------------------------------------------------------------------
# persistence

_S = TypeVar("_S", bound=tuple)


def save_state(path: str, state: NamedTuple) -> None:
    """Write a calibrator state (any NamedTuple of arrays/scalars) to an ``.npz`` file.

    The class name is stored too and checked by :func:`load_state`.

    Args:
        path: file name (numpy appends ``.npz`` if missing).
        state: e.g. :class:`IsotonicState`, :class:`PowerLawState`, :class:`ConformalState`.
    """
    fields = {k: np.asarray(v) for k, v in state._asdict().items()}
    np.savez(path, __kind__=np.asarray(type(state).__name__), **fields)


def load_state(path: str, cls: type[_S]) -> _S:
    """Read a state written by :func:`save_state` back into ``cls``.

    0-d arrays come back as Python scalars (float, int or bool), others as numpy arrays.

    Args:
        path: the ``.npz`` file.
        cls: the NamedTuple class expected (no registry: the caller says what it loads).
    """
    with np.load(path, allow_pickle=False) as data:
        kind = str(data["__kind__"])
        if kind != cls.__name__:
            raise ValueError(f"{path} holds a {kind}, not a {cls.__name__}; pass cls={kind}.")
        values = {}
        for name in cls._fields:  # type: ignore[attr-defined]
            arr = data[name]
            values[name] = arr.item() if arr.ndim == 0 else arr
    return cls(**values)
