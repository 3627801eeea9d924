"""Eager input validation (cause + remedy in every message) and degenerate data: either a fit
thanks to reg_covar or the documented error — never NaN."""

import jax
import numpy as np
import pytest
from gmm_test_data import D_STD, N_STD, mixture_sample

import gmm

REMEDY = "decrease the number of components, increase reg_covar, or scale the features"


def _x(n=10, d=2):
    return np.random.default_rng(0).normal(size=(n, d))


def _bad_nan():
    x = _x()
    x[3, 1] = np.nan
    return x


def _bad_inf():
    x = _x()
    x[7, 0] = -np.inf
    return x


BAD_FIT_INPUTS = [
    (lambda: (_x(3), 4, {}), "Fewer samples than components"),
    (lambda: (_x(), 3, {"mask": np.arange(10) < 2}), "Fewer samples than components"),
    (lambda: (_bad_nan(), 2, {}), "NaN or infinite.*row 3"),
    (lambda: (_bad_inf(), 2, {}), "NaN or infinite.*row 7"),
    (lambda: (_x()[:, 0], 1, {}), "2-D array"),
    (lambda: (_x()[None], 1, {}), "2-D array"),
    (lambda: (_x(), 2, {"mask": np.ones(9, bool)}), r"mask must have shape"),
    (lambda: (_x(), 2, {"mask": np.ones(10)}), "mask must be boolean"),
    (lambda: (_x(), 0, {}), "n_components must be >= 1"),
    (lambda: (_x(), 2, {"reg_covar": -1.0}), "reg_covar must be >= 0"),
    (lambda: (_x(), 2, {"tol": float("nan")}), "tol must not be NaN"),
    (lambda: (_x(), 2, {"init": "k-means++"}), "init must be one of"),
    (lambda: (_x(), 2, {"n_init": 0}), "n_init must be >= 1"),
    (lambda: (_x(), 2, {"max_iter": 2.5}), "max_iter must be an integer"),
    (lambda: (_x(), 2, {"key": None}), "key is required"),
    (lambda: (_x(), 2, {"key": np.zeros(3, np.uint32)}), "single PRNG key"),
    (lambda: (_x(), 2, {"means_init": np.zeros((3, 2))}), "means_init must have shape"),
    (lambda: (_x(), 2, {"weights_init": [0.2, 0.2]}), "weights_init must sum to 1"),
    (lambda: (_x(), 2, {"precisions_init": np.ones((2, 2, 2))}), "not positive definite"),
    (lambda: (_x(), 2, {"precisions_init": np.eye(2)}), "precisions_init must have shape"),
    (
        lambda: (_x(), 2, {"precisions_init": np.array([[[2.0, 1.0], [0.0, 2.0]]] * 2)}),
        "must be symmetric",
    ),
]


@pytest.mark.parametrize(("make", "match"), BAD_FIT_INPUTS)
def test_invalid_fit_inputs_raise_with_cause_and_remedy(make, match):
    x, k, kwargs = make()
    kwargs.setdefault("key", jax.random.key(0))
    with pytest.raises(ValueError, match=match):
        gmm.fit(x, k, **kwargs)


def test_scoring_checks_the_feature_dimension():
    params = gmm.GMMParams(np.ones(1), np.zeros((1, 2)), np.eye(2)[None])
    with pytest.raises(ValueError, match="x has 3 features but the mixture was fitted on 2"):
        gmm.score_samples(params, np.zeros((4, 3)))
    with pytest.raises(ValueError, match="inconsistent shapes"):
        gmm.nll(gmm.GMMParams(np.ones(2), np.zeros((1, 2)), np.eye(2)[None]), np.zeros((4, 2)))


def _constant_feature(value: float) -> np.ndarray:
    x, _ = mixture_sample(0, 2, N_STD, D_STD)
    x[:, 1] = value
    return x


def _duplicates(n_distinct: int) -> np.ndarray:
    points = np.random.default_rng(1).normal(size=(n_distinct, D_STD))
    return np.resize(points, (N_STD, D_STD))  # cycled: every point about N / n times


DEGENERATE = [
    ("one point repeated", lambda: _duplicates(1), 1, 1e-6),
    ("4 points, K = 4", lambda: _duplicates(4), 4, 1e-6),
    ("5 points, K = 3", lambda: _duplicates(5), 3, 1e-6),
    ("3 points, K = 4", lambda: _duplicates(3), 4, 1e-6),  # more components than points
    ("constant feature", lambda: _constant_feature(3.7), 2, 1e-6),
    ("zero feature, no reg", lambda: _constant_feature(0.0), 2, 0.0),
    ("3 points, K = 2, no reg", lambda: _duplicates(3), 2, 0.0),
]
# float32 on one case (each dtype and K is one compilation); float32 k-means and EM on
# degenerate data also run in test_singular_covariance_raises_the_documented_error
CASES = [(*c, np.float64) for c in DEGENERATE] + [(*DEGENERATE[4], np.float32)]


@pytest.mark.parametrize(("name", "make", "n_components", "reg_covar", "dtype"), CASES)
def test_degenerate_data_fits_or_raises_the_documented_error(
    x64, name, make, n_components, reg_covar, dtype
):
    x = make().astype(dtype)
    try:
        res = gmm.fit(x, n_components, key=jax.random.key(0), reg_covar=reg_covar)
    except gmm.CovarianceError as err:
        assert REMEDY in str(err)
        assert reg_covar == 0.0 or dtype == np.float32, name  # 1e-6 suffices in float64
        return
    assert not bool(res.failed)
    for leaf in res.params:
        assert np.all(np.isfinite(np.asarray(leaf))), name
    assert np.isfinite(float(res.lower_bound))
    assert np.all(np.isfinite(np.asarray(gmm.score_samples(res.params, x))))


def test_identical_points_give_reg_covar_times_identity(x64):
    """Closed form: N copies of one point → mean = the point, covariance = reg_covar·I."""
    x = _duplicates(1)
    res = gmm.fit(x, 1, key=jax.random.key(0), reg_covar=1e-3)
    np.testing.assert_allclose(res.params.means[0], x[0], rtol=1e-13)
    np.testing.assert_allclose(
        res.params.covariances[0], 1e-3 * np.eye(D_STD), rtol=1e-10, atol=1e-16
    )


@pytest.mark.parametrize("dtype", [np.float64, np.float32])
def test_singular_covariance_raises_the_documented_error(x64, dtype):
    """A feature that is exactly zero has exactly zero variance; without reg_covar the
    Cholesky factorisation fails inside jit and the eager boundary raises."""
    x = _constant_feature(0.0).astype(dtype)
    with pytest.raises(gmm.CovarianceError, match=REMEDY) as info:
        gmm.fit(x, 2, key=jax.random.key(0), reg_covar=0.0)
    assert isinstance(info.value, ValueError)
    assert ("float64" in str(info.value)) == (dtype == np.float32)
    # the jitted core reports the failure as a flag, with finite (last valid) parameters
    init = {"weights": np.full(2, 0.5), "means": x[:2], "precisions": np.stack([np.eye(2)] * 2)}
    core = gmm.fit_jit(
        jax.numpy.asarray(x),
        jax.numpy.ones(N_STD, bool),
        jax.random.key(0),
        jax.numpy.asarray(1e-3, dtype),
        jax.numpy.asarray(0.0, dtype),
        *(jax.numpy.asarray(v, dtype) for v in init.values()),
        n_components=2,
    )
    assert bool(core.failed) and int(core.n_iter) == 1
    for leaf in core.params:
        assert np.all(np.isfinite(np.asarray(leaf)))
