"""k-means++ seeding and Lloyd iterations: scikit-learn's KMeans from the same centres, and
the masking and seeding properties."""

import functools

import jax
import jax.numpy as jnp
import numpy as np
from gmm_test_data import D_STD, N_STD, mixture_sample
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from sklearn.cluster import KMeans

import gmm

PROPERTY = settings(
    max_examples=10, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture]
)


@functools.partial(jax.jit, static_argnames="k")
def _seeds(x, mask, key, k):
    return gmm.kmeans_plusplus(x, k, key=key, mask=mask)


@jax.jit
def _lloyd(x, centers, mask):
    return gmm.lloyd(x, centers, mask=mask)


@PROPERTY
@given(seed=st.integers(0, 2**31 - 1), separation=st.floats(1.0, 8.0))
def test_lloyd_matches_sklearn_kmeans_from_the_same_centres(x64, seed, separation):
    x, _ = mixture_sample(seed, 4, N_STD, D_STD, separation=separation)
    start = x[np.random.default_rng(seed).choice(N_STD, 4, replace=False)]
    ref = KMeans(4, init=start, n_init=1, algorithm="lloyd", tol=1e-4, max_iter=300).fit(x)
    res = _lloyd(jnp.asarray(x), jnp.asarray(start), jnp.ones(N_STD, bool))
    np.testing.assert_array_equal(res.labels, ref.labels_)
    np.testing.assert_allclose(res.centers, ref.cluster_centers_, rtol=1e-10, atol=1e-12)
    np.testing.assert_allclose(float(res.inertia), ref.inertia_, rtol=1e-10)


@PROPERTY
@given(seed=st.integers(0, 2**31 - 1), keep=st.floats(0.05, 0.9))
def test_seeding_never_picks_masked_samples(x64, seed, keep):
    rng = np.random.default_rng(seed)
    x = rng.normal(size=(N_STD, D_STD))
    mask = rng.random(N_STD) < keep
    mask[rng.integers(N_STD, size=5)] = True  # at least 5 unmasked samples
    x[~mask] *= 1e3  # far-away padding would be the favourite seeds if it counted
    centers, idx = _seeds(jnp.asarray(x), jnp.asarray(mask), jax.random.key(seed), 5)
    idx = np.asarray(idx)
    assert np.all(mask[idx])
    assert len(set(idx.tolist())) == 5  # distinct points are never drawn twice
    np.testing.assert_array_equal(centers, x[idx])


def test_seeding_with_as_many_clusters_as_points_picks_every_point(x64):
    """Once a point is a seed its potential is zero, so K = N_valid seeds are all points."""
    rng = np.random.default_rng(0)
    x = rng.normal(size=(12, 2))
    mask = np.arange(12) % 3 != 0  # 8 unmasked samples
    _, idx = _seeds(jnp.asarray(x), jnp.asarray(mask), jax.random.key(1), 8)
    assert sorted(np.asarray(idx).tolist()) == np.flatnonzero(mask).tolist()


def test_seeding_on_duplicates_stays_on_valid_samples(x64):
    """Two distinct points, four seeds: after both are taken the potential is zero and seeds
    are drawn uniformly among unmasked samples — never masked ones, never NaN."""
    x = np.repeat(np.array([[0.0, 0.0], [1.0, 1.0]]), 6, axis=0)
    mask = np.ones(12, bool)
    mask[[0, 11]] = False
    centers, idx = _seeds(jnp.asarray(x), jnp.asarray(mask), jax.random.key(2), 4)
    assert np.all(mask[np.asarray(idx)])
    assert np.all(np.isfinite(np.asarray(centers)))
    assert {tuple(c) for c in np.asarray(centers)[:2]} == {(0.0, 0.0), (1.0, 1.0)}


def test_empty_cluster_is_moved_to_the_farthest_sample(x64):
    x, _ = mixture_sample(4, 3, N_STD, D_STD, separation=6.0)
    start = np.concatenate([x[:2], [[1e3, 1e3]]])  # the third centre attracts nobody
    res = _lloyd(jnp.asarray(x), jnp.asarray(start), jnp.ones(N_STD, bool))
    counts = np.bincount(np.asarray(res.labels), minlength=3)
    assert np.all(counts > 0)
    # the result is a Lloyd fixed point: every centre is the mean of its samples
    means = np.stack([x[np.asarray(res.labels) == k].mean(axis=0) for k in range(3)])
    np.testing.assert_allclose(res.centers, means, rtol=1e-10, atol=1e-12)


def test_lloyd_ignores_masked_samples(x64):
    x, _ = mixture_sample(5, 3, N_STD - 100, D_STD, separation=5.0)
    padded = np.concatenate([x, np.full((100, D_STD), 1e4)])
    mask = np.arange(N_STD) < N_STD - 100
    start = x[:3]
    a = _lloyd(jnp.asarray(padded), jnp.asarray(start), jnp.asarray(mask))
    ref = KMeans(3, init=start, n_init=1, algorithm="lloyd").fit(x)
    np.testing.assert_allclose(a.centers, ref.cluster_centers_, rtol=1e-10, atol=1e-12)
    np.testing.assert_allclose(float(a.inertia), ref.inertia_, rtol=1e-10)
