"""The one-program model selection against its oracle, one ``gmm.fit`` per candidate (and
through it scikit-learn, see test_gmm_sklearn_parity.py): same parameters, iterations, lower
bounds and criteria; padding components that never get weight; masks; float32; recompiles."""

import logging

import jax
import jax.numpy as jnp
import numpy as np
import pytest
from gmm_test_data import D_STD, N_STD, mixture_sample
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from sklearn.mixture import GaussianMixture

import gmm
from gmm._selection import sweep_candidates

PROPERTY = settings(
    max_examples=5, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture]
)
RTOL = 1e-8
CANDIDATES = [7, 1, 3]  # unsorted, not contiguous: K_pad = 7 slots


def _own_fit(x, k, key, **kwargs) -> gmm.FitResult:
    """The oracle: the candidate fitted alone, with the key select_n_components gives it."""
    return gmm.fit(x, k, key=jax.random.fold_in(key, k), **kwargs)


def _scaled_close(actual, desired, rtol):
    actual, desired = np.asarray(actual), np.asarray(desired)
    np.testing.assert_allclose(actual, desired, rtol=rtol, atol=rtol * np.abs(desired).max())


def _assert_same_fit(a: gmm.FitResult, b: gmm.FitResult, rtol: float = RTOL) -> None:
    assert a.params.n_components == b.params.n_components
    assert int(a.n_iter) == int(b.n_iter)
    assert bool(a.converged) == bool(b.converged)
    assert not bool(a.failed) and not bool(b.failed)
    np.testing.assert_allclose(float(a.lower_bound), float(b.lower_bound), rtol=rtol)
    n = int(b.n_iter)
    np.testing.assert_allclose(a.lower_bounds[:n], b.lower_bounds[:n], rtol=rtol)
    assert np.all(np.isnan(np.asarray(a.lower_bounds)[n:]))
    for name in ("weights", "means", "covariances", "precisions_cholesky"):
        _scaled_close(getattr(a.params, name), getattr(b.params, name), rtol)


def _raw_sweep(x, ks, key, mask=None, **kwargs):
    """The padded result of every candidate, as select_n_components computes it (BIC)."""
    x = jnp.asarray(x)
    mask = jnp.ones(x.shape[0], bool) if mask is None else jnp.asarray(mask)
    options = dict(max_iter=100, tol=1e-3, reg_covar=1e-6, n_init=1, init="kmeans") | kwargs
    return sweep_candidates(x, mask, ks, key, criterion="bic", **options)


@PROPERTY
@given(seed=st.integers(0, 2**31 - 1), separation=st.floats(2.0, 8.0))
def test_every_candidate_equals_its_own_fit(x64, seed, separation):
    x, _ = mixture_sample(seed, 4, N_STD, D_STD, separation=separation)
    key = jax.random.key(seed)
    best, table = gmm.select_n_components(x, CANDIDATES, key=key)
    assert [row.n_components for row in table] == CANDIDATES
    fits = {k: _own_fit(x, k, key) for k in CANDIDATES}
    for row in table:
        own = fits[row.n_components]
        np.testing.assert_allclose(row.criterion, float(gmm.bic(own.params, x)), rtol=1e-10)
        np.testing.assert_allclose(row.lower_bound, float(own.lower_bound), rtol=RTOL)
        assert row.converged == bool(own.converged)
    bics = [float(gmm.bic(fits[k].params, x)) for k in CANDIDATES]
    chosen = CANDIDATES[int(np.argmin(bics))]
    _assert_same_fit(best, fits[chosen])


@pytest.mark.parametrize("k", CANDIDATES)
def test_every_slot_of_the_sweep_equals_its_own_fit(x64, k):
    """All candidates (not only the chosen one), read from the padded result."""
    x, _ = mixture_sample(20, 4, N_STD, D_STD, separation=3.0)
    key = jax.random.key(20)
    sweep = _raw_sweep(x, CANDIDATES, key)
    c = CANDIDATES.index(k)
    fit = jax.tree.map(lambda a: a[c], sweep.fits)
    fit = fit._replace(params=gmm.GMMParams(*(a[:k] for a in fit.params)))
    _assert_same_fit(fit, _own_fit(x, k, key))


def test_padding_components_never_get_weight(x64):
    """Slots from K on: weight exactly 0, mean 0, identity precision factor, in every
    candidate; the active weights sum to one and are all positive."""
    x, _ = mixture_sample(21, 4, N_STD, D_STD, separation=2.0)
    sweep = _raw_sweep(x, CANDIDATES, jax.random.key(21))
    params = jax.device_get(sweep.fits.params)
    for c, k in enumerate(CANDIDATES):
        np.testing.assert_array_equal(params.weights[c, k:], 0.0)
        np.testing.assert_array_equal(params.means[c, k:], 0.0)
        for p in params.precisions_cholesky[c, k:]:
            np.testing.assert_array_equal(p, np.eye(D_STD))
        assert np.all(params.weights[c, :k] > 0)
        np.testing.assert_allclose(params.weights[c, :k].sum(), 1.0, rtol=1e-14)
    assert not np.any(np.asarray(sweep.fits.failed))


def test_criteria_equal_scikit_learn_of_the_same_parameters(x64):
    """BIC and AIC of each row equal scikit-learn's ``bic``/``aic`` of a GaussianMixture holding
    the fitted parameters (its own parameter count and log-likelihood)."""
    x, _ = mixture_sample(22, 3, N_STD, D_STD, separation=4.0)
    key = jax.random.key(22)
    for criterion in ("bic", "aic"):
        _, table = gmm.select_n_components(x, CANDIDATES, key=key, criterion=criterion)
        for row in table:
            p = _own_fit(x, row.n_components, key).params
            sk = GaussianMixture(row.n_components, covariance_type="full")
            sk.weights_, sk.means_ = np.asarray(p.weights), np.asarray(p.means)
            sk.covariances_ = np.asarray(p.covariances)
            sk.precisions_cholesky_ = np.asarray(p.precisions_cholesky)
            expected = sk.bic(x) if criterion == "bic" else sk.aic(x)
            np.testing.assert_allclose(row.criterion, expected, rtol=1e-10)


def _with_junk(x: np.ndarray, n_junk: int, seed: int):
    """``x`` with ``n_junk`` rows of junk (NaN, inf, huge) spread among its rows; the mask."""
    rng = np.random.default_rng(seed)
    mask = np.zeros(len(x) + n_junk, bool)
    mask[np.sort(rng.choice(mask.size, size=len(x), replace=False))] = True
    out = np.empty((mask.size, x.shape[1]))
    out[mask] = x
    junk = rng.normal(scale=1e6, size=(n_junk, x.shape[1]))
    junk[::3] = np.nan
    junk[1::3, 0] = np.inf
    out[~mask] = junk
    return out, mask


def test_masked_samples_change_nothing(x64):
    """sweep(x ∪ junk, mask) equals sweep(x): seeding, EM, the criterion and its N."""
    x, _ = mixture_sample(23, 3, N_STD - 100, D_STD, separation=4.0)
    padded, mask = _with_junk(x, 100, 23)
    key = jax.random.key(23)
    best_a, table_a = gmm.select_n_components(padded, CANDIDATES, key=key, mask=mask)
    best_b, table_b = gmm.select_n_components(x, CANDIDATES, key=key)
    _assert_same_fit(best_a, best_b, rtol=1e-9)
    for a, b in zip(table_a, table_b, strict=True):
        assert a.n_components == b.n_components and a.converged == b.converged
        np.testing.assert_allclose(a.criterion, b.criterion, rtol=1e-11)
        np.testing.assert_allclose(a.lower_bound, b.lower_bound, rtol=1e-11)


def test_restarts_and_random_init_equal_their_own_fits(x64):
    x, _ = mixture_sample(24, 3, N_STD, D_STD, separation=3.0)
    key = jax.random.key(24)
    kwargs = dict(n_init=2, init="random", max_iter=50)
    sweep = _raw_sweep(x, [3, 2], key, **kwargs)
    for c, k in enumerate([3, 2]):
        fit = jax.tree.map(lambda a, c=c: a[c], sweep.fits)
        fit = fit._replace(params=gmm.GMMParams(*(a[:k] for a in fit.params)))
        _assert_same_fit(fit, _own_fit(x, k, key, **kwargs))


def test_float32_features_run_in_float32_like_their_own_fits():
    """Default JAX (x64 off): float32 throughout, each candidate as its own float32 fit."""
    x, _ = mixture_sample(25, 3, N_STD, D_STD, separation=8.0)
    x = x.astype(np.float32)
    key = jax.random.key(25)
    best, table = gmm.select_n_components(x, [1, 3], key=key)
    assert best.params.means.dtype == jnp.float32 and best.lower_bound.dtype == jnp.float32
    assert best.params.n_components == 3
    for row in table:
        own = _own_fit(x, row.n_components, key)
        assert own.params.means.dtype == jnp.float32
        np.testing.assert_allclose(row.lower_bound, float(own.lower_bound), rtol=1e-5)
        np.testing.assert_allclose(row.criterion, float(gmm.bic(own.params, x)), rtol=1e-5)
    _assert_same_fit(best, _own_fit(x, 3, key), rtol=1e-4)


def _three_points() -> np.ndarray:
    """Three distinct points, repeated: with reg_covar = 0, K = 2 leaves a component on a single
    point (a singular covariance), K = 1 is fine."""
    return np.tile(np.array([[0.0, 0.0], [1.0, 0.0], [0.0, 1.0]]), (N_STD // 3, 1))


@pytest.mark.parametrize("dtype", [np.float32, np.float64])
def test_failing_candidates_get_infinite_criterion_like_their_own_fits(x64, dtype):
    x = _three_points().astype(dtype)
    key = jax.random.key(0)
    best, table = gmm.select_n_components(x, [2, 1], key=key, reg_covar=0.0)
    with pytest.raises(gmm.CovarianceError):
        _own_fit(x, 2, key, reg_covar=0.0)  # the oracle fails too
    assert best.params.n_components == 1 and best.params.means.dtype == dtype
    assert table[0].criterion == np.inf and np.isnan(table[0].lower_bound)
    assert not table[0].converged and np.isfinite(table[1].criterion)
    _assert_same_fit(best, _own_fit(x, 1, key, reg_covar=0.0), rtol=1e-5)


@pytest.mark.parametrize("dtype", [np.float32, np.float64])
def test_all_candidates_failing_raise_the_documented_error(x64, dtype):
    x = _three_points().astype(dtype)
    with pytest.raises(gmm.CovarianceError, match="decrease the number of components") as err:
        gmm.select_n_components(x, [2], key=jax.random.key(0), reg_covar=0.0)
    assert ("float64" in str(err.value)) == (dtype == np.float32)  # the float32 hint


def _count_sweep_traces(caplog) -> int:
    return sum(
        1 for r in caplog.records if r.getMessage().startswith("Finished tracing sweep_jit ")
    )


def test_the_sweep_traces_once_per_largest_candidate_and_count(x64, caplog):
    x, _ = mixture_sample(26, 3, 250, 3)
    x2, _ = mixture_sample(27, 2, 250, 3)
    caplog.set_level(logging.WARNING)
    with jax.log_compiles():
        gmm.select_n_components(x, [1, 2, 5], key=jax.random.key(0))
        gmm.select_n_components(x2, [5, 4, 3], key=jax.random.key(1), tol=1e-4, reg_covar=1e-3)
        gmm.select_n_components(x2, [2, 5, 2], key=jax.random.key(2), mask=np.arange(250) % 4 > 0)
        assert _count_sweep_traces(caplog) == 1  # new data, candidates, keys, masks: one trace
        gmm.select_n_components(x, [1, 6, 3], key=jax.random.key(0))  # a new largest K
        assert _count_sweep_traces(caplog) == 2
        gmm.select_n_components(x, [1, 6], key=jax.random.key(0))  # a new number of candidates
        assert _count_sweep_traces(caplog) == 3


def test_jit_and_no_jit_agree(x64):
    """The sweep executed op by op (``disable_jit``) equals the compiled one.

    Marked slow: op-by-op execution compiles each of a few hundred primitives.
    """
    x, _ = mixture_sample(28, 2, 60, D_STD, separation=6.0)
    key = jax.random.key(28)
    jitted = _raw_sweep(x, [2, 1], key, max_iter=3)
    with jax.disable_jit():
        eager = _raw_sweep(x, [2, 1], key, max_iter=3)
    np.testing.assert_array_equal(eager.fits.n_iter, jitted.fits.n_iter)
    np.testing.assert_allclose(eager.criterion, jitted.criterion, rtol=1e-12)
    for a, b in zip(eager.fits.params, jitted.fits.params, strict=True):
        np.testing.assert_allclose(a, b, rtol=1e-10, atol=1e-12)
