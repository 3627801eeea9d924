"""Parity with scikit-learn's GaussianMixture (float64, same initial parameters) and of the
fused, chunked EM pass with a brute-force numpy E/M step."""

import jax
import jax.numpy as jnp
import numpy as np
import pytest
from gmm_test_data import explicit_init, mixture_sample
from sklearn.exceptions import ConvergenceWarning
from sklearn.mixture import GaussianMixture

import gmm
from gmm import _em
from gmm._chunks import to_chunks, to_chunks_t

RTOL = 1e-8

# (seed, n_samples, n_features, n_components, separation, tol, reg_covar, max_iter); the
# 5000-sample case spans two chunks of the EM pass (4096 rows each, the second padded).
CASES = [
    (0, 400, 2, 3, 4.0, 1e-3, 1e-6, 100),
    (1, 500, 4, 4, 3.0, 1e-7, 1e-6, 500),
    (2, 300, 3, 2, 2.0, 1e-6, 1e-2, 500),
    (3, 5000, 2, 3, 3.0, 1e-6, 1e-6, 500),
    (4, 400, 2, 3, 4.0, 0.0, 1e-6, 7),
]


def _scaled_close(actual, desired, rtol=RTOL):
    """Relative agreement measured against the array's own scale (entries may be ~0)."""
    actual, desired = np.asarray(actual), np.asarray(desired)
    np.testing.assert_allclose(actual, desired, rtol=rtol, atol=rtol * np.abs(desired).max())


@pytest.mark.parametrize(("seed", "n", "d", "k", "sep", "tol", "reg", "max_iter"), CASES)
def test_fit_matches_sklearn_from_the_same_init(x64, seed, n, d, k, sep, tol, reg, max_iter):
    x, _ = mixture_sample(seed, k, n, d, separation=sep)
    init = explicit_init(x, k, seed)
    sk = GaussianMixture(
        k, covariance_type="full", tol=tol, reg_covar=reg, max_iter=max_iter, **init
    )
    if tol > 0:
        sk.fit(x)
        assert sk.converged_  # the case is chosen to converge (no ConvergenceWarning)
    else:  # a fixed number of iterations: scikit-learn warns that it did not converge
        with pytest.warns(ConvergenceWarning):
            sk.fit(x)
    res = gmm.fit(x, k, key=jax.random.key(seed), tol=tol, reg_covar=reg, max_iter=max_iter, **init)
    assert int(res.n_iter) == sk.n_iter_
    assert bool(res.converged) == sk.converged_
    np.testing.assert_allclose(float(res.lower_bound), sk.lower_bound_, rtol=1e-12)
    np.testing.assert_allclose(res.lower_bounds[: sk.n_iter_], sk.lower_bounds_, rtol=1e-12)
    assert np.all(np.isnan(np.asarray(res.lower_bounds)[sk.n_iter_ :]))
    _scaled_close(res.params.weights, sk.weights_)
    _scaled_close(res.params.means, sk.means_)
    _scaled_close(res.params.covariances, sk.covariances_)
    _scaled_close(res.params.precisions_cholesky, sk.precisions_cholesky_)
    x_test = np.concatenate([x[:50], 3.0 * x[50:100]])
    np.testing.assert_allclose(
        gmm.score_samples(res.params, x_test), sk.score_samples(x_test), rtol=RTOL
    )
    np.testing.assert_allclose(
        gmm.predict_proba(res.params, x_test), sk.predict_proba(x_test), rtol=1e-6, atol=1e-10
    )
    np.testing.assert_allclose(float(gmm.bic(res.params, x)), sk.bic(x), rtol=RTOL)
    np.testing.assert_allclose(float(gmm.aic(res.params, x)), sk.aic(x), rtol=RTOL)


def test_zero_iterations_return_the_initial_parameters(x64):
    """(scikit-learn 1.9 itself fails on max_iter=0 with all three initial values given.)"""
    x, _ = mixture_sample(0, 3, 400, 2, separation=4.0)
    init = explicit_init(x, 3, 0)
    init["precisions_init"] = init["precisions_init"] * np.array([1.0, 2.0, 0.5])[:, None, None]
    res = gmm.fit(x, 3, key=jax.random.key(0), max_iter=0, **init)
    assert int(res.n_iter) == 0 and not bool(res.converged)
    assert float(res.lower_bound) == -np.inf
    np.testing.assert_array_equal(res.params.weights, init["weights_init"])
    np.testing.assert_array_equal(res.params.means, init["means_init"])
    p = np.asarray(res.params.precisions_cholesky)
    np.testing.assert_array_equal(p, np.triu(p))  # scikit-learn's upper-triangular factor
    np.testing.assert_allclose(p @ np.swapaxes(p, 1, 2), init["precisions_init"], rtol=1e-13)


def _numpy_m_step(x, resp, reg_covar, weights_total=None):
    """scikit-learn's estimators written out with loops (the brute-force oracle)."""
    nk = resp.sum(axis=0) + 10 * np.finfo(np.float64).eps
    means = resp.T @ x / nk[:, None]
    covs = []
    for k in range(resp.shape[1]):
        diff = x - means[k]
        covs.append((resp[:, k, None] * diff).T @ diff / nk[k] + reg_covar * np.eye(x.shape[1]))
    weights = nk / (nk.sum() if weights_total is None else weights_total)
    return weights, means, np.stack(covs)


def _numpy_e_step(params, x):
    logp = np.stack(
        [
            -0.5 * (x.shape[1] * np.log(2 * np.pi) + np.sum(((x - m) @ p) ** 2, axis=1))
            + np.sum(np.log(np.diag(p)))
            for m, p in zip(params.means, params.precisions_cholesky, strict=True)
        ],
        axis=1,
    ) + np.log(params.weights)
    top = logp.max(axis=1, keepdims=True)
    log_prob = (top + np.log(np.exp(logp - top).sum(axis=1, keepdims=True)))[:, 0]
    return log_prob, np.exp(logp - log_prob[:, None])


@pytest.mark.parametrize("rows", [16, 64, 1000])
def test_fused_chunked_em_pass_equals_brute_force(x64, rows):
    x, _ = mixture_sample(5, 3, 300, 3, separation=3.0)
    mask = np.ones(300, bool)
    mask[::7] = False
    x[~mask] = 1e6  # padding values must not matter
    init = explicit_init(x[mask], 3, 5)
    xz = np.where(mask[:, None], x, 0.0)

    @jax.jit
    def one_pass(xz, mask, w0, m0, p0):
        params, init_failed = _em.initial_params(
            xz,
            mask,
            jax.random.key(0),
            jnp.float64(1e-6),
            w0,
            m0,
            p0,
            n_components=3,
            init="kmeans",
            rows=rows,
        )
        stats = _em.e_step_stats(params, to_chunks_t(xz, rows), to_chunks(mask, rows))
        new, failed = _em.params_from_stats(stats, params.means, jnp.float64(1e-3))
        return params, stats, new, init_failed | failed

    params, stats, new, failed = one_pass(xz, mask, *init.values())
    assert not bool(failed)
    log_prob, resp = _numpy_e_step(params, x[mask])
    np.testing.assert_allclose(float(stats.log_prob_sum), log_prob.sum(), rtol=1e-12)
    weights, means, covs = _numpy_m_step(x[mask], resp, 1e-3)
    np.testing.assert_allclose(new.weights, weights, rtol=1e-12)
    np.testing.assert_allclose(new.means, means, rtol=1e-11)
    np.testing.assert_allclose(new.covariances, covs, rtol=1e-10)


def test_parameters_from_responsibilities_equal_brute_force(x64):
    """The initialisation M-step (weights n_k / N), with masked rows and two chunks."""
    rng = np.random.default_rng(6)
    x = rng.normal(size=(200, 3)) * [1.0, 10.0, 0.1] + 50.0
    mask = rng.random(200) > 0.2
    resp = rng.dirichlet(np.ones(4), size=200) * mask[:, None]
    params, failed = jax.jit(lambda x, m, r: _em.params_from_resp(x, m, r, 1e-6, rows=128))(
        x, mask, resp
    )
    assert not bool(failed)
    weights, means, covs = _numpy_m_step(x[mask], resp[mask], 1e-6, weights_total=mask.sum())
    np.testing.assert_allclose(params.weights, weights, rtol=1e-13)
    np.testing.assert_allclose(params.means, means, rtol=1e-13)
    np.testing.assert_allclose(params.covariances, covs, rtol=1e-9)


def test_restarts_pick_the_best_run_of_an_unbatched_loop(x64):
    """n_init restarts run under vmap; the oracle is a Python loop over the same keys."""
    x, _ = mixture_sample(7, 3, 600, 2, separation=3.0)
    key = jax.random.key(11)
    res = gmm.fit(x, 3, key=key, n_init=4, init="random")
    xa, mask = jnp.asarray(x), jnp.ones(600, bool)

    @jax.jit
    def one_run(run_key):
        p0, f0 = _em.initial_params(
            xa,
            mask,
            run_key,
            jnp.float64(1e-6),
            None,
            None,
            None,
            n_components=3,
            init="random",
            rows=600,
        )
        return _em.em(
            p0,
            f0,
            to_chunks_t(xa, 600),
            to_chunks(mask, 600),
            jnp.float64(1e-3),
            jnp.float64(1e-6),
            max_iter=100,
        )

    runs = [one_run(jax.random.fold_in(key, i)) for i in range(4)]
    bounds = [float(r.lower_bound) for r in runs]
    best = runs[int(np.argmax(bounds))]
    assert len({round(b, 6) for b in bounds}) > 1  # the restarts really differ
    np.testing.assert_allclose(float(res.lower_bound), max(bounds), rtol=1e-12)
    assert int(res.n_iter) == int(best.n_iter)
    np.testing.assert_allclose(res.params.means, best.params.means, rtol=1e-10)
    single = gmm.fit(x, 3, key=key, n_init=1, init="random")  # = run 0
    np.testing.assert_allclose(float(single.lower_bound), bounds[0], rtol=1e-12)
    assert float(res.lower_bound) >= float(single.lower_bound)
