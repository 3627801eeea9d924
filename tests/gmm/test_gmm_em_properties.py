"""Properties of the EM fit: monotone lower bound, invariance to sample order and to masked
padding, one trace per shape, jit/no-jit parity, float32/float64 agreement."""

import logging

import jax
import jax.numpy as jnp
import numpy as np
import pytest
from gmm_test_data import D_STD, N_STD, explicit_init, mixture_sample
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

import gmm

PROPERTY = settings(
    max_examples=8, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture]
)


def _assert_same_fit(a: gmm.FitResult, b: gmm.FitResult, rtol: float) -> None:
    assert int(a.n_iter) == int(b.n_iter)
    assert bool(a.converged) == bool(b.converged)
    np.testing.assert_allclose(float(a.lower_bound), float(b.lower_bound), rtol=rtol)
    for name in ("weights", "means", "precisions_cholesky"):
        actual, desired = np.asarray(getattr(a.params, name)), np.asarray(getattr(b.params, name))
        np.testing.assert_allclose(actual, desired, rtol=rtol, atol=rtol * np.abs(desired).max())


@PROPERTY
@given(
    seed=st.integers(0, 2**31 - 1),
    n_components=st.sampled_from([2, 3]),
    separation=st.floats(1.0, 6.0),
)
def test_em_lower_bound_never_decreases(x64, seed, n_components, separation):
    """EM's monotonicity theorem holds for the exact M-step, i.e. reg_covar = 0; random
    initial responsibilities give long, non-trivial trajectories."""
    x, _ = mixture_sample(seed, n_components, N_STD, D_STD, separation=separation)
    res = gmm.fit(
        x, n_components, key=jax.random.key(seed), init="random", reg_covar=0.0, tol=1e-10
    )
    bounds = np.asarray(res.lower_bounds)[: int(res.n_iter)]
    assert bounds.size >= 2 and np.all(np.isfinite(bounds))
    assert np.all(np.diff(bounds) >= -1e-12 * np.abs(bounds[1:]))
    # the final parameters are at least as good as those of the last lower bound
    assert float(gmm.score_samples(res.params, x).mean()) >= bounds[-1] - 1e-12 * abs(bounds[-1])


@PROPERTY
@given(seed=st.integers(0, 2**31 - 1))
def test_permuting_the_samples_leaves_the_fit_unchanged(x64, seed):
    x, _ = mixture_sample(seed, 3, N_STD, D_STD, separation=4.0)
    init = explicit_init(x, 3, seed)
    perm = np.random.default_rng(seed).permutation(N_STD)
    a = gmm.fit(x, 3, key=jax.random.key(0), tol=1e-8, max_iter=300, **init)
    b = gmm.fit(x[perm], 3, key=jax.random.key(0), tol=1e-8, max_iter=300, **init)
    _assert_same_fit(a, b, rtol=1e-9)


def _with_junk(x: np.ndarray, n_junk: int, seed: int):
    """``x`` with ``n_junk`` junk rows (huge values, NaN, inf) interleaved, and the mask."""
    rng = np.random.default_rng(seed)
    junk = rng.normal(scale=1e6, size=(n_junk, x.shape[1]))
    junk[::3] = np.nan
    junk[1::3, 0] = np.inf
    keep = np.concatenate([np.ones(len(x), bool), np.zeros(n_junk, bool)])
    order = rng.permutation(len(keep))
    order = np.concatenate([np.sort(order[keep[order]]), order[~keep[order]]])  # x order kept
    positions = np.sort(rng.choice(len(keep), size=len(x), replace=False))
    out = np.empty((len(keep), x.shape[1]))
    mask = np.zeros(len(keep), bool)
    mask[positions] = True
    out[positions] = x
    out[~mask] = junk
    return out, mask


@pytest.mark.parametrize("init", ["kmeans", "explicit"])
def test_masked_samples_have_no_influence(x64, init):
    """fit(x ∪ junk, mask) == fit(x): responsibilities, seeding, lower bound and N."""
    x, _ = mixture_sample(3, 3, N_STD - 100, D_STD, separation=5.0)
    padded, mask = _with_junk(x, 100, 3)
    kwargs = explicit_init(x, 3, 3) if init == "explicit" else {}
    a = gmm.fit(padded, 3, key=jax.random.key(5), mask=mask, **kwargs)
    b = gmm.fit(x, 3, key=jax.random.key(5), **kwargs)
    _assert_same_fit(a, b, rtol=1e-9)
    np.testing.assert_allclose(
        float(gmm.bic(a.params, padded, mask=mask)), float(gmm.bic(b.params, x)), rtol=1e-11
    )


def _count_fit_traces(caplog) -> int:
    return sum(1 for r in caplog.records if r.getMessage().startswith("Finished tracing fit_jit "))


def test_fit_traces_once_per_shape(x64, caplog):
    x, _ = mixture_sample(8, 2, 250, 3)
    x2, _ = mixture_sample(9, 2, 250, 3)
    init2, init3 = explicit_init(x, 2, 0), explicit_init(x, 3, 0)
    caplog.set_level(logging.WARNING)
    with jax.log_compiles():
        gmm.fit(x, 2, key=jax.random.key(0), **init2)
        gmm.fit(x2, 2, key=jax.random.key(1), tol=1e-5, reg_covar=1e-4, **explicit_init(x2, 2, 1))
        gmm.fit(x2, 2, key=jax.random.key(2), mask=np.arange(250) % 5 > 0, **init2)
        assert _count_fit_traces(caplog) == 1  # new values, keys and masks: no new trace
        gmm.fit(x[:240], 2, key=jax.random.key(0), **init2)  # a new N
        assert _count_fit_traces(caplog) == 2
        gmm.fit(x[:240], 3, key=jax.random.key(0), **init3)  # a new K
        assert _count_fit_traces(caplog) == 3


def test_jit_and_no_jit_agree(x64):
    """The EM loop executed op by op (``disable_jit``) equals the compiled one.

    Marked slow: op-by-op execution compiles each of a few hundred primitives (~6 s).
    """
    x, _ = mixture_sample(10, 3, N_STD, D_STD, separation=4.0)
    # two iterations: op-by-op execution compiles every primitive, so keep the eager run short
    kwargs = dict(key=jax.random.key(3), tol=0.0, max_iter=2, **explicit_init(x, 3, 10))
    jitted = gmm.fit(x, 3, **kwargs)
    with jax.disable_jit():
        eager = gmm.fit(x, 3, **kwargs)
    _assert_same_fit(eager, jitted, rtol=1e-12)


def test_float32_and_float64_agree_to_float32_precision(x64):
    x, _ = mixture_sample(11, 3, N_STD, D_STD, separation=5.0)
    init = explicit_init(x, 3, 11)
    # a fixed number of iterations (tol = 0); max_iter as in the permutation test (one compile)
    f64 = gmm.fit(x, 3, key=jax.random.key(0), tol=0.0, max_iter=300, **init)
    init32 = {k: v.astype(np.float32) for k, v in init.items()}
    f32 = gmm.fit(x.astype(np.float32), 3, key=jax.random.key(0), tol=0.0, max_iter=300, **init32)
    assert f64.params.means.dtype == jnp.float64 and f32.params.means.dtype == jnp.float32
    assert f32.lower_bound.dtype == jnp.float32
    np.testing.assert_allclose(float(f32.lower_bound), float(f64.lower_bound), rtol=1e-5)
    for name in ("weights", "means", "covariances"):
        desired = np.asarray(getattr(f64.params, name))
        np.testing.assert_allclose(
            getattr(f32.params, name), desired, rtol=1e-4, atol=1e-4 * np.abs(desired).max()
        )


def test_float32_works_without_x64():
    """Default JAX (x64 off): float32 throughout, and the same fit as float64 to ~1e-4."""
    x, _ = mixture_sample(12, 3, N_STD, D_STD, separation=8.0)
    init = explicit_init(x, 3, 12)
    init32 = {k: v.astype(np.float32) for k, v in init.items()}
    res = gmm.fit(x.astype(np.float32), 3, key=jax.random.key(0), **init32)
    assert res.params.precisions_cholesky.dtype == jnp.float32
    with jax.enable_x64(True):
        ref = gmm.fit(x, 3, key=jax.random.key(0), **init)
    assert int(res.n_iter) == int(ref.n_iter)
    np.testing.assert_allclose(float(res.lower_bound), float(ref.lower_bound), rtol=1e-5)
    np.testing.assert_allclose(res.params.means, ref.params.means, rtol=1e-4, atol=1e-4)
