"""Closed forms and reference densities: K = 1 maximum likelihood, BIC/AIC, n_parameters,
mixture log-density and responsibilities against scipy."""

import math

import jax
import numpy as np
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from scipy import special, stats

import gmm

PROPERTY = settings(
    max_examples=15, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture]
)


def _correlated(seed: int, n: int, d: int) -> np.ndarray:
    rng = np.random.default_rng(seed)
    return rng.normal(size=(n, d)) @ rng.normal(size=(d, d)) + 5.0 * rng.normal(size=d)


def _scipy_mixture_logpdf(weights, means, covs, x):
    per = np.stack(
        [stats.multivariate_normal.logpdf(x, m, c) for m, c in zip(means, covs, strict=True)],
        axis=1,
    )
    return special.logsumexp(per + np.log(weights), axis=1), per + np.log(weights)


# (60, 3) is fitted with init="random" in test_gmm_io.py too (one compilation per session);
# with K = 1 every initialisation gives responsibilities of exactly one.
SHAPES = [(600, 2, 1e-6), (60, 3, 1e-2)]


@pytest.mark.parametrize(("n_samples", "n_features", "reg_covar"), SHAPES)
def test_single_component_equals_closed_form_mle(x64, n_samples, n_features, reg_covar):
    x = _correlated(n_features, n_samples, n_features)
    res = gmm.fit(x, 1, key=jax.random.key(0), reg_covar=reg_covar, init="random")
    mean = x.mean(axis=0)
    cov = np.cov(x.T, bias=True).reshape(n_features, n_features) + reg_covar * np.eye(n_features)
    np.testing.assert_allclose(res.params.weights, [1.0], rtol=1e-14)
    np.testing.assert_allclose(res.params.means[0], mean, rtol=1e-12)
    np.testing.assert_allclose(res.params.covariances[0], cov, rtol=1e-10, atol=1e-14)
    # EM started at the maximum-likelihood point stops after the second iteration (change 0).
    assert int(res.n_iter) == 2 and bool(res.converged)
    x_test = _correlated(n_features + 10, 25, n_features) * 1.5
    expected = stats.multivariate_normal.logpdf(x_test, mean, cov).reshape(-1)
    np.testing.assert_allclose(gmm.score_samples(res.params, x_test), expected, rtol=1e-10)
    np.testing.assert_allclose(gmm.nll(res.params, x_test), -expected, rtol=1e-10)


@pytest.mark.parametrize(("n_samples", "n_features", "reg_covar"), SHAPES)
def test_single_component_bic_and_aic_closed_form(x64, n_samples, n_features, reg_covar):
    x = _correlated(n_features, n_samples, n_features)
    res = gmm.fit(x, 1, key=jax.random.key(0), reg_covar=reg_covar, init="random")
    s = np.cov(x.T, bias=True).reshape(n_features, n_features)
    sigma = s + reg_covar * np.eye(n_features)
    _, logdet = np.linalg.slogdet(sigma)
    trace = np.trace(np.linalg.solve(sigma, s))
    loglik = -0.5 * n_samples * (n_features * math.log(2 * math.pi) + logdet + trace)
    p = n_features * (n_features + 1) / 2 + n_features
    np.testing.assert_allclose(
        gmm.bic(res.params, x), -2 * loglik + p * math.log(n_samples), rtol=1e-11
    )
    np.testing.assert_allclose(gmm.aic(res.params, x), -2 * loglik + 2 * p, rtol=1e-11)


@pytest.mark.parametrize(
    ("n_components", "n_features", "expected"),
    [
        (1, 1, 2),
        (1, 2, 5),
        (2, 2, 11),
        (3, 4, 44),
        (1, 8, 44),
        (8, 16, 1223),
        (49, 8, 2204),
        (49, 16, 7496),
    ],
)
def test_n_parameters_literal_table(n_components, n_features, expected):
    assert gmm.n_parameters(n_components, n_features) == expected


def _random_params(data, n_components: int, n_features: int):
    rng = np.random.default_rng(data.draw(st.integers(0, 2**32 - 1), label="seed"))
    weights = rng.dirichlet(np.ones(n_components))
    means = rng.normal(scale=3.0, size=(n_components, n_features))
    covs = np.stack(
        [
            np.eye(n_features) * rng.uniform(0.1, 2.0)
            + (lambda a: a @ a.T)(rng.normal(size=(n_features, n_features)))
            for _ in range(n_components)
        ]
    )
    chol = np.linalg.cholesky(covs)
    p = np.swapaxes(np.linalg.inv(chol), 1, 2)  # upper-triangular, P Pᵀ = Σ⁻¹
    x = rng.normal(scale=4.0, size=(20, n_features))
    return gmm.GMMParams(weights, means, p), covs, x


@PROPERTY
@given(data=st.data())
def test_score_samples_and_responsibilities_match_scipy(x64, data):
    params, covs, x = _random_params(data, 3, 2)
    expected, weighted = _scipy_mixture_logpdf(params.weights, params.means, covs, x)
    np.testing.assert_allclose(gmm.score_samples(params, x), expected, rtol=1e-10, atol=1e-10)
    proba = np.asarray(gmm.predict_proba(params, x))
    np.testing.assert_allclose(proba.sum(axis=1), 1.0, rtol=1e-12)
    np.testing.assert_allclose(proba, np.exp(weighted - expected[:, None]), rtol=1e-9, atol=1e-12)
    np.testing.assert_array_equal(gmm.predict(params, x), np.argmax(weighted, axis=1))


@PROPERTY
@given(data=st.data())
def test_covariances_and_precisions_invert_each_other(x64, data):
    params, covs, _ = _random_params(data, 2, 3)
    np.testing.assert_allclose(params.covariances, covs, rtol=1e-10, atol=1e-12)
    np.testing.assert_allclose(params.precisions, np.linalg.inv(covs), rtol=1e-9, atol=1e-12)


def test_far_samples_have_finite_log_density_and_responsibilities(x64):
    """Far from every component the densities underflow; logsumexp keeps everything finite."""
    params = gmm.GMMParams(
        np.array([0.5, 0.5]), np.array([[0.0], [1.0]]), np.array([[[1.0]], [[1.0]]])
    )
    x = np.array([[1e4], [-1e4]])
    log_prob = np.asarray(gmm.score_samples(params, x))
    proba = np.asarray(gmm.predict_proba(params, x))
    expected, _ = _scipy_mixture_logpdf(params.weights, params.means, [[[1.0]], [[1.0]]], x)
    np.testing.assert_allclose(log_prob, expected, rtol=1e-12)
    np.testing.assert_allclose(proba, [[0.0, 1.0], [1.0, 0.0]], atol=1e-300)
