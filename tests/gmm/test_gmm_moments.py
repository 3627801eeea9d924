"""The two forms of the EM pass and of Lloyd's cluster sums agree.

Oracles: the centred EM pass (:func:`gmm._em.e_step_stats`, per component around its mean) for
the moments pass (:func:`gmm._moments.moment_stats`, one product with ``z(x) = [x_i x_j, x]``);
numpy for the moments themselves; the one-hot product for the scatter-add of Lloyd's sums.
"""

import jax
import jax.numpy as jnp
import numpy as np
import pytest
from gmm_test_data import mixture_sample
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

import gmm
from gmm._chunks import em_chunk_rows, to_chunks, to_chunks_t
from gmm._em import e_step_stats, params_from_stats, resp_stats
from gmm._kmeans import _one_hot_sums, _scatter_sums
from gmm._moments import (
    MOMENT_ELEMENTS,
    moment_data,
    moment_resp_stats,
    moment_stats,
    use_moments,
)
from gmm._types import GMMParams

PROPERTY = settings(
    max_examples=10, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture]
)


def _random_params(rng, x, k):
    d = x.shape[1]
    a = rng.normal(size=(k, d, d)) / np.sqrt(d)
    covariances = a @ np.swapaxes(a, 1, 2) + 0.3 * np.eye(d)
    # upper-triangular P with P Pᵀ = Σ⁻¹ (scikit-learn's precisions_cholesky)
    p = np.swapaxes(np.linalg.inv(np.linalg.cholesky(covariances)), 1, 2)
    weights = rng.dirichlet(np.ones(k))
    means = x[rng.choice(len(x), k, replace=False)] + rng.normal(scale=0.1, size=(k, d))
    return GMMParams(jnp.asarray(weights), jnp.asarray(means), jnp.asarray(p))


def test_moments_are_the_centred_products(x64):
    """``z`` holds ``(x − mean)_i (x − mean)_j`` for ``i ≤ j`` row by row, then ``x − mean``;
    masked rows are zero and do not enter the mean."""
    rng = np.random.default_rng(0)
    x = rng.normal(size=(37, 4)) + 5.0
    mask = np.arange(37) < 30
    data = moment_data(jnp.asarray(np.where(mask[:, None], x, 0.0)), jnp.asarray(mask))
    mean = x[mask].mean(axis=0)
    xc = x - mean
    i, j = np.triu_indices(4)
    expected = np.concatenate([xc[:, i] * xc[:, j], xc], axis=1)
    z = np.asarray(data.zs).reshape(-1, expected.shape[1])[:37]
    np.testing.assert_allclose(np.asarray(data.offset), mean, rtol=1e-13)
    np.testing.assert_allclose(z[mask], expected[mask], rtol=1e-12, atol=1e-12)
    assert np.all(z[~mask] == 0.0)
    assert not np.any(np.asarray(data.ms).reshape(-1)[30:])


@PROPERTY
@given(
    seed=st.integers(0, 2**31 - 1),
    k=st.integers(1, 6),
    offset=st.sampled_from([0.0, 1e3]),
    n_masked=st.integers(0, 40),
)
def test_moment_pass_equals_the_centred_pass(x64, seed, k, offset, n_masked):
    """E-step log-likelihood and the M-step's parameters of both passes agree to 1e-9 in
    float64, also for data far from the origin (the moments are centred first) and with
    masked padding rows."""
    rng = np.random.default_rng(seed)
    x, _ = mixture_sample(seed, 3, 300, 5, separation=3.0)
    x = np.asarray(x) + offset
    mask = np.ones(len(x), bool)
    mask[len(x) - n_masked :] = False
    x = np.where(mask[:, None], x, 0.0)
    params = _random_params(rng, x[mask], k)
    xa, ma = jnp.asarray(x), jnp.asarray(mask)
    reg = jnp.asarray(1e-6)

    rows = em_chunk_rows(len(x), k, 5)
    centred = e_step_stats(params, to_chunks_t(xa, rows), to_chunks(ma, rows))
    want, _ = params_from_stats(centred, params.means, reg)

    data = moment_data(xa, ma)
    shifted = params._replace(means=params.means - data.offset)
    stats = moment_stats(shifted, data)
    got, _ = params_from_stats(stats, jnp.zeros_like(params.means), reg)

    np.testing.assert_allclose(float(stats.log_prob_sum), float(centred.log_prob_sum), rtol=1e-11)
    np.testing.assert_allclose(np.asarray(got.weights), np.asarray(want.weights), rtol=1e-10)
    np.testing.assert_allclose(
        np.asarray(got.means) + np.asarray(data.offset), np.asarray(want.means), rtol=1e-10
    )
    p_want = np.asarray(want.precisions_cholesky)
    np.testing.assert_allclose(
        np.asarray(got.precisions_cholesky), p_want, rtol=1e-9, atol=1e-9 * np.abs(p_want).max()
    )


def test_moment_sums_of_given_responsibilities_equal_the_centred_sums(x64):
    """The initialisation's sums (one product with the moments) equal the two-pass sums
    around the component means, up to the shift of the origin."""
    rng = np.random.default_rng(3)
    x = jnp.asarray(rng.normal(size=(200, 3)) * 2.0 + 7.0)
    mask = jnp.ones(200, bool)
    resp = jax.nn.softmax(jnp.asarray(rng.normal(size=(200, 4))), axis=1)
    data = moment_data(x, mask)
    stats = moment_resp_stats(resp, data)
    centred = resp_stats(to_chunks_t(x, 64), to_chunks_t(resp, 64), jnp.zeros((4, 3)) + data.offset)
    np.testing.assert_allclose(np.asarray(stats.resp_sum), np.asarray(centred.resp_sum), rtol=1e-13)
    np.testing.assert_allclose(np.asarray(stats.diff_sum), np.asarray(centred.diff_sum), atol=1e-10)
    np.testing.assert_allclose(np.asarray(stats.scatter), np.asarray(centred.scatter), rtol=1e-11)


def test_moments_are_used_for_float64_below_the_memory_bound():
    f64 = jax.ShapeDtypeStruct((1000, 16), jnp.float64)
    f32 = jax.ShapeDtypeStruct((1000, 16), jnp.float32)
    per_sample = 16 * 17 // 2 + 16
    too_many = jax.ShapeDtypeStruct((MOMENT_ELEMENTS // per_sample + 1, 16), jnp.float64)
    assert use_moments(f64) and not use_moments(f32) and not use_moments(too_many)


@pytest.mark.parametrize("n_masked", [0, 5])
def test_scatter_and_one_hot_cluster_sums_agree(x64, n_masked):
    """Lloyd's per-cluster weights and sums: the CPU scatter-add equals the one-hot product."""
    rng = np.random.default_rng(1)
    x = jnp.asarray(rng.normal(size=(50, 3)))
    w = jnp.asarray((np.arange(50) < 50 - n_masked).astype(float))
    labels = jnp.asarray(rng.integers(0, 6, size=50), jnp.int32)
    counts_a, sums_a = _scatter_sums(x, w, labels, 7)
    counts_b, sums_b = _one_hot_sums(x, w, labels, 7)
    np.testing.assert_array_equal(np.asarray(counts_a), np.asarray(counts_b))
    np.testing.assert_allclose(np.asarray(sums_a), np.asarray(sums_b), rtol=1e-13, atol=1e-14)
    assert float(counts_a[6]) == 0.0  # a slot nobody is nearest to


def test_fit_is_translation_equivariant(x64):
    """Shifting the data by a constant shifts the fitted means and nothing else."""
    x, _ = mixture_sample(11, 3, 400, 4, separation=4.0)
    a = gmm.fit(x, 3, key=jax.random.key(0))
    b = gmm.fit(np.asarray(x) + 250.0, 3, key=jax.random.key(0))
    assert int(a.n_iter) == int(b.n_iter)
    np.testing.assert_allclose(float(a.lower_bound), float(b.lower_bound), rtol=1e-9)
    np.testing.assert_allclose(np.asarray(b.params.means) - 250.0, a.params.means, atol=1e-8)
    np.testing.assert_allclose(b.params.weights, a.params.weights, rtol=1e-8)
