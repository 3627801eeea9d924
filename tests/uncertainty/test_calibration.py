"""Tests of nequip_jax.uncertainty.calibration: sklearn/scipy oracles, known parameters, coverage
bounds from the binomial/Beta law and the Dvoretzky–Kiefer–Wolfowitz inequality."""

import math

import numpy as np
import pytest
import scipy.stats
from hypothesis import given, settings
from hypothesis import strategies as st
from hypothesis.extra import numpy as hnp
from sklearn.isotonic import IsotonicRegression, isotonic_regression

from nequip_jax.uncertainty import calibration as cal

SETTINGS = settings(max_examples=60, deadline=None)

_VALUES = st.one_of(
    st.integers(-3, 3).map(float),
    st.floats(-100, 100, allow_nan=False, allow_infinity=False, width=64),
)


def _dkw(n: int, delta: float = 1e-6) -> float:
    """Sup-deviation of an empirical CDF exceeded with probability ≤ delta (DKW, Massart)."""
    return math.sqrt(math.log(2.0 / delta) / (2.0 * n))


# ------------------------------------------------------------------------------------------------
# isotonic regression


@SETTINGS
@given(
    y=hnp.arrays(np.float64, st.integers(1, 50), elements=_VALUES),
    data=st.data(),
)
def test_pava_matches_sklearn(y, data):
    w = data.draw(hnp.arrays(np.float64, y.size, elements=st.floats(0.1, 10)))
    ours = cal.pava(y, w)
    np.testing.assert_allclose(ours, isotonic_regression(y, sample_weight=w), atol=1e-9)
    assert np.all(np.diff(ours) >= -1e-12)  # monotone
    # the weighted least-squares solution preserves the weighted sum
    assert np.dot(w, ours) == pytest.approx(np.dot(w, y), abs=1e-8)


# sklearn also pools x values closer than 1e-15 (absolute) as ties; ours pools exact ties only,
# so x is drawn on a grid of spacing 1/8 (many exact ties, no near-ties).
_GRID = st.integers(-400, 400).map(lambda i: i / 8)


@SETTINGS
@given(
    x=hnp.arrays(np.float64, st.integers(1, 50), elements=_GRID),
    data=st.data(),
    increasing=st.booleans(),
)
def test_isotonic_calibrator_matches_sklearn(x, data, increasing):
    y = data.draw(hnp.arrays(np.float64, x.size, elements=_VALUES))
    w = data.draw(hnp.arrays(np.float64, x.size, elements=st.floats(0.1, 10)))
    state = cal.fit_isotonic(x, y, sample_weight=w, increasing=increasing)
    ref = IsotonicRegression(increasing=increasing, out_of_bounds="clip").fit(x, y, sample_weight=w)
    query = np.concatenate([x, np.linspace(x.min() - 5, x.max() + 5, 23)])
    np.testing.assert_allclose(cal.predict_isotonic(state, query), ref.predict(query), atol=1e-9)


# ------------------------------------------------------------------------------------------------
# power law


@pytest.mark.parametrize(("u_transform", "a", "b"), [("log", -3.0, 0.8), ("identity", -2.0, 0.05)])
def test_power_law_recovers_known_parameters(u_transform, a, b):
    rng = np.random.default_rng(11)
    n, s = 4000, 0.4
    u = rng.lognormal(0.0, 1.0, n) if u_transform == "log" else rng.normal(-20.0, 15.0, n)
    g = np.log(u) if u_transform == "log" else u
    eps = np.exp(a + b * g + s * rng.normal(size=n))
    state = cal.fit_power_law(u, eps, u_transform=u_transform)
    # ordinary least squares: Cov(â, b̂) = s² (XᵀX)⁻¹
    design = np.stack([np.ones(n), g], axis=1)
    se = s * np.sqrt(np.diag(np.linalg.inv(design.T @ design)))
    assert abs(state.a - a) < 5 * se[0]
    assert abs(state.b - b) < 5 * se[1]
    assert abs(state.resid_var - s**2) < 5 * s**2 * math.sqrt(2 / (n - 2))
    # and the point estimates are exactly the least-squares line through (g, log ε)
    slope, intercept = np.polyfit(g, np.log(eps), 1)
    assert (state.a, state.b) == pytest.approx((intercept, slope), rel=1e-9)


def test_power_law_mean_prediction_matches_monte_carlo():
    rng = np.random.default_rng(5)
    state = cal.PowerLawState(a=-2.0, b=0.7, log_u=True, resid_var=0.5**2)
    u = 3.0
    draws = np.exp(state.a + state.b * np.log(u) + 0.5 * rng.normal(size=200_000))
    se = draws.std() / math.sqrt(draws.size)
    assert abs(cal.predict_power_law(state, u) - draws.mean()) < 5 * se
    median = cal.predict_power_law(state, u, statistic="median")
    assert median == pytest.approx(np.median(draws), rel=0.01)


def test_power_law_log_transform_rejects_negative_nll():
    with pytest.raises(ValueError, match="identity"):
        cal.fit_power_law(np.array([-1.0, 2.0, 3.0]), np.ones(3), u_transform="log")


# ------------------------------------------------------------------------------------------------
# split conformal


@pytest.mark.parametrize(
    ("n", "alpha", "k"),
    [(19, 0.1, 18), (9, 0.2, 8), (10, 0.1, 10), (99, 0.05, 95), (100, 0.1, 91), (5, 0.1, None)],
)
def test_conformal_quantile_order_statistic(n, alpha, k):
    # k = ceil((n+1)(1-α)) worked by hand; None: k > n, so the bound is infinite
    scores = np.random.default_rng(n).permutation(np.arange(1.0, n + 1))
    expected = math.inf if k is None else float(k)
    assert cal.conformal_quantile(scores, alpha) == expected


def _conformal_trial(rng, alpha, n_cal, n_test, scale_kind):
    n_fit = 200
    n = n_fit + n_cal + n_test
    u = rng.lognormal(0.0, 0.7, n)
    eps = 0.05 * u**1.3 * np.sqrt(rng.chisquare(3, n) / 3)  # heteroscedastic, exchangeable
    fit, calib, test = np.split(np.arange(n), [n_fit, n_fit + n_cal])
    if scale_kind == "power_law":
        state = cal.fit_power_law(u[fit], eps[fit], u_transform="log")
        scale = cal.predict_power_law(state, u)
    elif scale_kind == "isotonic":
        scale = np.maximum(cal.predict_isotonic(cal.fit_isotonic(u[fit], eps[fit]), u), 1e-6)
    else:  # a useless constant scale: coverage must still hold
        scale = np.ones(n)
    conf = cal.fit_conformal(eps[calib], scale[calib], alpha=alpha)
    return cal.coverage(eps[test], cal.conformal_upper(conf, scale[test]))


@pytest.mark.parametrize("scale_kind", ["power_law", "isotonic", "constant"])
@pytest.mark.parametrize(("alpha", "n_cal"), [(0.1, 19), (0.1, 50), (0.2, 30)])
def test_conformal_coverage_on_exchangeable_data(alpha, n_cal, scale_kind):
    rng = np.random.default_rng([round(100 * alpha), n_cal, len(scale_kind)])
    reps, n_test = 300, 100
    cov = np.array([_conformal_trial(rng, alpha, n_cal, n_test, scale_kind) for _ in range(reps)])
    # With continuous scores the coverage given the calibration set is Beta(k, n+1-k), mean
    # k/(n+1) ≥ 1-α; add binomial noise of n_test test points and average over reps.
    k = math.ceil((n_cal + 1) * (1 - alpha))
    beta = scipy.stats.beta(k, n_cal + 1 - k)
    mean, var_c = beta.mean(), beta.var()
    var_trial = var_c + (mean - (var_c + mean**2)) / n_test
    tol = 5 * math.sqrt(var_trial / reps)
    assert cov.mean() >= 1 - alpha - tol
    assert abs(cov.mean() - mean) <= tol  # not just valid: exactly as conservative as theory


def test_coverage_counts_boundary_as_covered():
    observed = cal.coverage(np.array([1.0, 2.0, 3.0]), np.array([1.0, 1.0, 5.0]))
    assert observed == pytest.approx(2 / 3)


# ------------------------------------------------------------------------------------------------
# calibration curves


def test_pit_functions_match_scipy():
    rng = np.random.default_rng(2)
    r = rng.normal(size=(500, 3)) * 3
    sigma = rng.lognormal(size=500)
    np.testing.assert_allclose(
        cal.gaussian_central_pit(r, sigma[:, None]),
        2 * scipy.stats.norm.cdf(np.abs(r) / sigma[:, None]) - 1,
        atol=1e-13,
    )
    eps = np.sqrt(np.mean(r**2, axis=1))
    np.testing.assert_allclose(
        cal.chi3_pit(eps, sigma),
        scipy.stats.chi2(3).cdf(3 * eps**2 / sigma**2),
        atol=1e-12,
    )
    assert cal.MEAN_EPS_PER_SIGMA == pytest.approx(scipy.stats.chi(3).mean() / math.sqrt(3))


@SETTINGS
@given(
    pit=hnp.arrays(np.float64, st.integers(1, 40), elements=st.floats(0, 1)),
    levels=hnp.arrays(np.float64, st.integers(2, 10), elements=st.floats(0, 1), unique=True),
)
def test_calibration_curve_matches_counts(pit, levels):
    levels = np.sort(levels)
    curve = cal.calibration_curve(pit, levels)
    expected = [sum(1 for x in pit if x <= p) / pit.size for p in levels]
    np.testing.assert_allclose(curve.observed, expected, rtol=1e-14)
    np.testing.assert_array_equal(curve.expected, levels)


def _samples(rng, n, kind, scale):
    """PIT values of a model that predicts σ_pred = σ_true / scale (scale 1: calibrated)."""
    sigma_true = rng.lognormal(-2.0, 0.5, n)
    r = rng.normal(size=(n, 3)) * sigma_true[:, None]
    sigma_pred = sigma_true / scale
    if kind == "central":
        return cal.gaussian_central_pit(r[:, 0], sigma_pred)
    return cal.chi3_pit(np.sqrt(np.mean(r**2, axis=1)), sigma_pred)


def _true_curve(kind, scale, levels):
    """Observed coverage as n → ∞ for σ_pred = σ_true / scale."""
    inner = levels[1:-1]
    if kind == "central":
        z = scipy.stats.norm.ppf((1 + inner) / 2)
        obs = 2 * scipy.stats.norm.cdf(z / scale) - 1
    else:
        obs = scipy.stats.chi2(3).cdf(scipy.stats.chi2(3).ppf(inner) / scale**2)
    return np.concatenate([[0.0], obs, [1.0]])


@pytest.mark.parametrize("kind", ["central", "chi3"])
@pytest.mark.parametrize("scale", [1.0, 0.5, 2.0])
def test_miscalibration_area_matches_population_value(kind, scale):
    rng = np.random.default_rng(int(scale * 10) + len(kind))
    n = 20_000
    curve = cal.calibration_curve(_samples(rng, n, kind, scale))
    exact_obs = _true_curve(kind, scale, curve.expected)
    exact_area = float(np.trapezoid(np.abs(exact_obs - curve.expected), curve.expected))
    # |area_n − area| ≤ ∫|F_n − F| ≤ sup|F_n − F|, bounded by DKW with probability 1 − 1e-6
    tol = _dkw(n)
    assert abs(cal.miscalibration_area(curve) - exact_area) <= tol
    if scale == 1.0:
        assert exact_area < 1e-12 and cal.miscalibration_area(curve) <= tol
    else:
        assert cal.miscalibration_area(curve) > 3 * tol  # clearly above the calibrated bound


# ------------------------------------------------------------------------------------------------
# persistence


@pytest.mark.parametrize(
    "state",
    [
        cal.IsotonicState(x=np.array([0.0, 1.0, 2.5]), y=np.array([0.1, 0.1, 0.4])),
        cal.PowerLawState(a=-1.5, b=0.25, log_u=False, resid_var=0.3),
        cal.ConformalState(quantile=1.7, alpha=0.1, n_cal=57),
    ],
)
def test_save_load_roundtrip(tmp_path, state):
    path = str(tmp_path / "state.npz")
    cal.save_state(path, state)
    loaded = cal.load_state(path, type(state))
    assert type(loaded) is type(state)
    for a, b in zip(loaded, state, strict=True):
        np.testing.assert_array_equal(a, b)
        assert type(a) is type(b)
    other = cal.PowerLawState if type(state) is cal.IsotonicState else cal.IsotonicState
    with pytest.raises(ValueError, match="not a"):
        cal.load_state(path, other)
