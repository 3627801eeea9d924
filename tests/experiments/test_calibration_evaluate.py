"""The calibration experiment's rows against an independent computation.

Oracles: scikit-learn's isotonic regression, the split-conformal order statistic written out with
numpy, scipy's χ distributions and Spearman correlation. Synthetic U and ε with a known error
model (ε of Eq. 2 for Gaussian force components of standard deviation ∝ U), so that no trained
model is needed.
"""

import math

import numpy as np
import pytest
from scipy import stats
from sklearn.isotonic import IsotonicRegression

from experiments.calibration.run import evaluate

ALPHA = 0.1
FLOOR = 1e-6  # the experiment's lower clip of every calibrated error scale


def _set(rng, n):
    """U = σ of each force component; ε = RMS over three N(0, U²) components (Eq. 2)."""
    u = rng.gamma(2.0, 0.5, size=n)
    eps = np.sqrt(np.mean((u[:, None] * rng.normal(size=(n, 3))) ** 2, axis=1))
    return u, eps


@pytest.fixture(scope="module")
def methods():
    rng = np.random.default_rng(7)
    out = {}
    for name, n in (("cal_A", 400), ("cal_B", 251), ("test", 600)):
        u, eps = _set(rng, n)
        out[name] = {
            "ensemble": (u, eps),
            "gmm": (np.log(u) * 3.0 - 2.0, eps),  # an NLL-like score, monotone in U
            "constant": (np.ones(n), eps),
        }
    return out


def _conformal_q(eps_b, scale_b):
    scores = np.sort(eps_b / scale_b)
    k = math.ceil((len(scores) + 1) * (1 - ALPHA))
    return scores[k - 1]


def _scale(kind, u_a, eps_a):
    """The calibrated error scale ĝ(U), fitted on half A, computed without the library."""
    if kind == "isotonic":
        iso = IsotonicRegression(out_of_bounds="clip").fit(u_a, eps_a)
        return lambda u: np.maximum(iso.predict(u), FLOOR)
    if kind == "direct":  # E[ε] = σ E[χ₃]/√3 for σ = U
        per_sigma = stats.chi(3).mean() / np.sqrt(3.0)
        return lambda u: np.maximum(per_sigma * u, FLOOR)
    if kind == "constant":
        return lambda u: np.full(np.shape(u), np.mean(eps_a))
    raise AssertionError(kind)


def test_rows_equal_an_independent_computation(methods):
    rows = evaluate(methods, ["test"], alpha=ALPHA)
    kinds = {(r["method"], r["calibrator"]) for r in rows}
    assert kinds == {
        ("ensemble", "isotonic"),
        ("ensemble", "power law"),
        ("ensemble", "direct"),
        ("gmm", "isotonic"),
        ("gmm", "power law"),
        ("constant", "constant"),
    }
    checked = 0
    for row in rows:
        if row["calibrator"] == "power law":  # its mean is checked against Monte Carlo elsewhere
            continue
        u_a, eps_a = methods["cal_A"][row["method"]]
        u_b, eps_b = methods["cal_B"][row["method"]]
        u, eps = methods["test"][row["method"]]
        g = _scale(row["calibrator"], u_a, eps_a)
        q = _conformal_q(eps_b, g(u_b))
        upper = q * g(u)
        got = row["splits"]["test"]
        assert row["quantile"] == pytest.approx(q, rel=1e-12)
        assert row["n_cal_B"] == len(eps_b)
        assert got["coverage"] == pytest.approx(np.mean(eps <= upper), abs=1e-12)
        assert got["mean_upper"] == pytest.approx(np.mean(upper), rel=1e-12)
        assert got["mean_eps"] == pytest.approx(np.mean(eps), rel=1e-12)
        assert got["n_atoms"] == len(eps)
        if row["method"] == "constant":
            assert got["spearman"] is None
        else:
            assert got["spearman"] == pytest.approx(stats.spearmanr(u, eps)[0], abs=1e-12)
        # Calibration curve: the fraction of atoms with ε inside the predicted p-quantile of
        # ε under Gaussian components of σ = E[ε] / (E[χ₃]/√3), i.e. 3ε²/σ² ≤ χ²₃ quantile.
        sigma = g(u) / (stats.chi(3).mean() / np.sqrt(3.0))
        pit = stats.chi2(3).cdf(3.0 * eps**2 / sigma**2)
        expected = np.asarray(got["curve"]["expected"])
        observed = [np.mean(pit <= p) for p in expected]
        np.testing.assert_allclose(got["curve"]["observed"], observed, atol=1e-12)
        checked += 1
    assert checked == 4
    # Not vacuous: the known error model makes the scale-aware bounds cover close to 1 − α on
    # the exchangeable test set, and the direct σ is already calibrated (area near 0).
    by_kind = {(r["method"], r["calibrator"]): r["splits"]["test"] for r in rows}
    for key in [("ensemble", "isotonic"), ("ensemble", "direct"), ("constant", "constant")]:
        assert abs(by_kind[key]["coverage"] - (1 - ALPHA)) < 0.05
    assert by_kind[("ensemble", "direct")]["miscalibration_area"] < 0.05
