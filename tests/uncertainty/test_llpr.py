"""Tests of nequip_jax.uncertainty.llpr: direct numpy inverses, Bayesian linear regression in
closed form, and brute-force likelihood maximisation."""

import math

import numpy as np
import pytest
import scipy.stats
from hypothesis import given, settings
from hypothesis import strategies as st

from nequip_jax.uncertainty import llpr

SETTINGS = settings(max_examples=40, deadline=None)


@SETTINGS
@given(
    n=st.integers(1, 40),
    d=st.integers(1, 8),
    log_reg=st.floats(-4, 2),
    seed=st.integers(0, 2**32 - 1),
)
def test_covariance_and_variance_match_direct_inverse(n, d, log_reg, seed):
    rng = np.random.default_rng(seed)
    feats = rng.normal(size=(n, d)) * rng.lognormal(size=d)
    reg = 10.0**log_reg
    state = llpr.fit_llpr(feats, reg=reg)
    inv = np.linalg.inv(feats.T @ feats + reg * np.eye(d))
    np.testing.assert_allclose(state.inv_cov, inv, rtol=1e-7, atol=1e-10 * np.abs(inv).max())
    np.testing.assert_allclose(state.inv_chol, np.tril(state.inv_chol))  # lower-triangular
    query = rng.normal(size=(7, d))
    direct = np.einsum("id,de,ie->i", query, inv, query)
    np.testing.assert_allclose(llpr.llpr_variance(state, query), direct, rtol=1e-7)


def test_structure_rows_are_per_structure_feature_sums():
    rng = np.random.default_rng(0)
    feats = rng.normal(size=(12, 3))
    idx = np.array([0, 0, 0, 1, 1, 2, 2, 2, 2, 3, 3, 3])
    sums = np.array([sum(feats[i] for i in range(12) if idx[i] == s) for s in range(4)])
    np.testing.assert_allclose(llpr.sum_per_structure(feats, idx), sums, rtol=1e-14)
    state = llpr.fit_llpr(feats, idx, reg=0.1)
    np.testing.assert_allclose(state.gram, sums.T @ sums, rtol=1e-13)
    assert state.n_rows == 4
    inv = np.linalg.inv(sums.T @ sums + 0.1 * np.eye(3))
    np.testing.assert_allclose(
        llpr.llpr_variance(state, feats, idx),
        np.einsum("sd,de,se->s", sums, inv, sums),
        rtol=1e-10,
    )


def test_variance_is_invariant_to_feature_scale():
    # f → c f and ς² → c² ς² leave fᵀ(FᵀF + ς² I)⁻¹ f unchanged
    rng = np.random.default_rng(1)
    feats, query = rng.normal(size=(20, 4)), rng.normal(size=(5, 4))
    base = llpr.llpr_variance(llpr.fit_llpr(feats, reg=0.3), query)
    scaled = llpr.llpr_variance(llpr.fit_llpr(7.0 * feats, reg=0.3 * 49.0), 7.0 * query)
    np.testing.assert_allclose(scaled, base, rtol=1e-10)


# ------------------------------------------------------------------------------------------------
# Bayesian linear regression y = wᵀf + noise, w ~ N(0, σ_w² I), noise ~ N(0, σ_n²)

SIGMA_W, SIGMA_N = 1.5, 0.3
REG_TRUE = SIGMA_N**2 / SIGMA_W**2


def _blr_predictive_variance(train, query):
    """Closed-form posterior variance of wᵀf*: f*ᵀ (FᵀF/σ_n² + I/σ_w²)⁻¹ f*."""
    d = train.shape[1]
    post_cov = np.linalg.inv(train.T @ train / SIGMA_N**2 + np.eye(d) / SIGMA_W**2)
    return np.einsum("id,de,ie->i", query, post_cov, query)


def test_llpr_with_true_hyperparameters_is_blr_predictive_variance():
    rng = np.random.default_rng(2)
    train, query = rng.normal(size=(25, 5)), 2 * rng.normal(size=(30, 5))
    state = llpr.fit_llpr(train, reg=REG_TRUE)._replace(alpha2=SIGMA_N**2)
    np.testing.assert_allclose(
        llpr.llpr_variance(state, query), _blr_predictive_variance(train, query), rtol=1e-10
    )


def _blr_errors(rng, train, query, reps):
    """Errors of the posterior-mean predictor on query points, one row per replicate world."""
    d = train.shape[1]
    w = SIGMA_W * rng.normal(size=(reps, d))
    y = w @ train.T + SIGMA_N * rng.normal(size=(reps, train.shape[0]))
    a_inv = np.linalg.inv(train.T @ train + REG_TRUE * np.eye(d))
    w_hat = y @ train @ a_inv
    return (w_hat - w) @ query.T  # [reps, m]


def test_calibrated_alpha_recovers_noise_and_blr_variance():
    rng = np.random.default_rng(3)
    train, query = rng.normal(size=(30, 4)), 2.0 * rng.normal(size=(40, 4))
    reps = 200
    errors = _blr_errors(rng, train, query, reps)
    state = llpr.calibrate_llpr(
        llpr.fit_llpr(train, reg=REG_TRUE), np.tile(query, (reps, 1)), errors.ravel()
    )
    assert state.reg == REG_TRUE
    # The errors of one replicate are jointly N(0, σ_n² V), V = F*(FᵀF + ς²I)⁻¹F*ᵀ, so
    # α̂² = mean(e²/v) has variance 2 σ_n⁴ tr(C²) / (reps m²), C the correlation matrix of V.
    v_mat = query @ np.linalg.inv(train.T @ train + REG_TRUE * np.eye(4)) @ query.T
    corr = v_mat / np.sqrt(np.outer(np.diag(v_mat), np.diag(v_mat)))
    m = query.shape[0]
    sd_rel = math.sqrt(2 * np.sum(corr**2) / (reps * m**2))
    assert abs(state.alpha2 / SIGMA_N**2 - 1) < 5 * sd_rel
    ratio = llpr.llpr_variance(state, query) / _blr_predictive_variance(train, query)
    np.testing.assert_allclose(ratio, state.alpha2 / SIGMA_N**2, rtol=1e-9)
    assert np.all(np.abs(ratio - 1) < 5 * sd_rel)


def test_reg_grid_choice_matches_brute_force_likelihood():
    rng = np.random.default_rng(4)
    # One weakly sampled feature direction (eigenvalue of FᵀF ~ ς²) makes ς² identifiable.
    train = rng.normal(size=(30, 4)) * np.array([1.0, 1.0, 1.0, 0.03])
    query = 2.0 * rng.normal(size=(40, 4))
    reps = 100
    errors = _blr_errors(rng, train, query, reps).ravel()
    feats = np.tile(query, (reps, 1))
    grid = REG_TRUE * np.geomspace(1e-3, 1e3, 13)
    state = llpr.calibrate_llpr(llpr.fit_llpr(train), feats, errors, reg_grid=grid)

    best = (-np.inf, None, None)
    for reg in grid:
        inv = np.linalg.inv(train.T @ train + reg * np.eye(4))
        v = np.einsum("id,de,ie->i", feats, inv, feats)
        alpha2 = np.mean(errors**2 / v)
        loglik = scipy.stats.norm(0.0, np.sqrt(alpha2 * v)).logpdf(errors).sum()
        if loglik > best[0]:
            best = (loglik, reg, alpha2)
    assert state.reg == best[1]
    assert state.alpha2 == pytest.approx(best[2], rel=1e-9)
    np.testing.assert_allclose(
        state.inv_cov, np.linalg.inv(train.T @ train + best[1] * np.eye(4)), rtol=1e-8
    )
    # with 4000 errors the likelihood locates ς² within a decade of the truth (40 seeds tried:
    # all within half a decade)
    assert 0.1 < state.reg / REG_TRUE < 10


def test_component_errors_and_eps_give_same_calibration():
    rng = np.random.default_rng(5)
    train, val = rng.normal(size=(50, 3)), rng.normal(size=(60, 3))
    comps = rng.normal(size=(60, 3)) * np.linalg.norm(val, axis=1)[:, None]
    eps = np.sqrt(np.mean(comps**2, axis=1))  # Zhu et al. Eq. (2)
    state = llpr.fit_llpr(train)
    grid = np.geomspace(1e-3, 10, 9)
    a = llpr.calibrate_llpr(state, val, comps, reg_grid=grid)
    b = llpr.calibrate_llpr(state, val, eps, reg_grid=grid)
    assert a.reg == b.reg
    assert a.alpha2 == pytest.approx(b.alpha2, rel=1e-12)


def test_gaussian_nll_matches_scipy():
    rng = np.random.default_rng(6)
    var = rng.lognormal(size=30)
    err = rng.normal(size=(30, 3))
    expected = -np.mean(scipy.stats.norm(0, np.sqrt(var)[:, None]).logpdf(err))
    assert llpr.llpr_gaussian_nll(var, err) == pytest.approx(expected, rel=1e-12)


@pytest.mark.parametrize(
    ("call", "match"),
    [
        (lambda: llpr.fit_llpr(np.ones((5, 2)), reg=0.0), "larger"),
        (lambda: llpr.fit_llpr(np.ones(5)), r"\[n, d\]"),
        (lambda: llpr.llpr_variance(llpr.fit_llpr(np.eye(3)), np.ones((2, 4))), "width"),
        (
            lambda: llpr.calibrate_llpr(llpr.fit_llpr(np.eye(3)), np.ones((4, 3)), np.ones(5)),
            "rows",
        ),
    ],
    ids=["singular-gram", "features-1d", "width-mismatch", "errors-length"],
)
def test_bad_inputs_raise_with_cause(call, match):
    with pytest.raises(ValueError, match=match):
        call()
