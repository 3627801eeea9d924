"""k-means++ seeding and Lloyd iterations in JAX, mask-aware and jit-friendly.

The loops are ``lax.fori_loop``/``lax.while_loop`` with static shapes: ``n_clusters`` and the
iteration budget are static, the data and the mask are traced. Masked samples (``mask`` False)
carry zero weight everywhere: they are never drawn as seeds, never move a centre and never
count in the inertia.
"""

from __future__ import annotations

import math
from typing import NamedTuple

import jax
import jax.numpy as jnp

from gmm._types import Array

_HI = jax.lax.Precision.HIGHEST


class KMeansResult(NamedTuple):
    """Outcome of :func:`kmeans`.

    Attributes:
        centers: ``[K, D]`` cluster centres.
        labels: ``[N]`` int32 index of the nearest centre of every sample (also for masked
            samples, whose labels are meaningless).
        inertia: ``[]`` sum over unmasked samples of the squared distance to their centre.
        n_iter: ``[]`` int32 number of Lloyd iterations run.
    """

    centers: Array
    labels: Array
    inertia: Array
    n_iter: Array


def squared_distances(x: Array, centers: Array, x_sq: Array | None = None) -> Array:
    """``[N, M]`` squared Euclidean distances ``‖x_n - c_m‖²`` (clamped at zero).

    Uses ``‖x‖² - 2 x·c + ‖c‖²`` so the work is one ``[N, D] × [D, M]`` product.

    Args:
        x: ``[N, D]``.
        centers: ``[M, D]``.
        x_sq: optional precomputed ``[N]`` ``‖x_n‖²``.
    """
    if x_sq is None:
        x_sq = jnp.sum(jnp.square(x), axis=1)
    c_sq = jnp.sum(jnp.square(centers), axis=1)
    cross = jnp.matmul(x, centers.T, precision=_HI)
    return jnp.maximum(x_sq[:, None] - 2.0 * cross + c_sq[None, :], 0.0)


def _sample_index(key: Array, weights: Array, fallback: Array, n_draws: int) -> Array:
    """Draw ``n_draws`` indices with probability proportional to ``weights`` ``[N]``.

    Inverse-CDF sampling (the index is the number of CDF entries ``<= u · total``, a
    right-sided search written as a count); an index of zero weight is never returned. When
    all weights are zero, ``fallback`` ``[N]`` (non-negative, not all zero) is used instead.
    """
    total = jnp.sum(weights)
    weights = jnp.where(total > 0, weights, fallback)
    cdf = jnp.cumsum(weights)
    idx_all = jnp.arange(weights.shape[0])
    last_positive = jnp.max(jnp.where(weights > 0, idx_all, 0))
    u = jax.random.uniform(key, (n_draws,), dtype=weights.dtype)
    idx = jnp.sum(cdf[None, :] <= (u * cdf[-1])[:, None], axis=1)
    return jnp.minimum(idx, last_positive).astype(jnp.int32)


def kmeans_plusplus(
    x: Array,
    n_clusters: int,
    *,
    key: Array,
    mask: Array,
    n_local_trials: int | None = None,
) -> tuple[Array, Array]:
    """Greedy k-means++ seeding (Arthur & Vassilvitskii 2007).

    Every seed is the best of ``n_local_trials`` candidates ("best" = smallest resulting
    potential, the sum of squared distances to the nearest seed). Candidates for the first
    seed are drawn uniformly among unmasked samples, later ones with probability proportional
    to the squared distance to the nearest seed so far; when every unmasked sample already
    coincides with a seed, uniformly among unmasked samples again.

    Args:
        x: ``[N, D]`` samples.
        n_clusters: static number of seeds ``K``.
        key: PRNG key.
        mask: ``[N]`` bool, False for padding.
        n_local_trials: static; default ``2 + floor(log K)``.

    Returns:
        ``centers`` ``[K, D]`` and their sample ``indices`` ``[K]`` int32 (never masked ones).
    """
    n_features = x.shape[1]
    if n_local_trials is None:
        n_local_trials = 2 + int(math.log(n_clusters))
    w = mask.astype(x.dtype)
    x_sq = jnp.sum(jnp.square(x), axis=1)

    def body(i, state):
        centers, indices, closest, key = state
        key, sub = jax.random.split(key)
        potential = jnp.where(i == 0, w, closest * w)
        candidates = _sample_index(sub, potential, w, n_local_trials)  # [T]
        d_cand = squared_distances(x, x[candidates], x_sq)  # [N, T]
        d_cand = d_cand.at[candidates, jnp.arange(n_local_trials)].set(0.0)
        new_closest = jnp.where(i == 0, d_cand, jnp.minimum(closest[:, None], d_cand))
        potentials = jnp.sum(new_closest * w[:, None], axis=0)
        best = jnp.argmin(potentials)
        chosen = candidates[best]
        return (
            centers.at[i].set(x[chosen]),
            indices.at[i].set(chosen),
            new_closest[:, best],
            key,
        )

    init = (
        jnp.zeros((n_clusters, n_features), x.dtype),
        jnp.zeros((n_clusters,), jnp.int32),
        jnp.zeros_like(w),
        key,
    )
    centers, indices, _, _ = jax.lax.fori_loop(0, n_clusters, body, init)
    return centers, indices


def _assign(x: Array, x_sq: Array, centers: Array) -> tuple[Array, Array]:
    """Nearest centre ``[N]`` int32 and the squared distance to it ``[N]``."""
    d2 = squared_distances(x, centers, x_sq)
    labels = jnp.argmin(d2, axis=1).astype(jnp.int32)
    return labels, jnp.take_along_axis(d2, labels[:, None], axis=1)[:, 0]


def lloyd(
    x: Array,
    centers: Array,
    *,
    mask: Array,
    max_iter: int = 300,
    tol: float = 1e-4,
) -> KMeansResult:
    """Lloyd iterations from given centres, in a ``lax.while_loop``.

    Stops when the labels no longer change, when the summed squared centre shift is at most
    ``tol`` times the mean per-feature variance of the (unmasked) data, or after ``max_iter``
    iterations (static). An empty cluster is moved to the unmasked sample farthest from its
    centre (distinct samples for distinct empty clusters).

    Args:
        x: ``[N, D]`` samples.
        centers: ``[K, D]`` initial centres.
        mask: ``[N]`` bool, False for padding.
        max_iter: static maximum number of iterations.
        tol: relative tolerance on the centre shift.

    Returns:
        :class:`KMeansResult`; ``labels`` and ``inertia`` refer to the final centres.
    """
    n_clusters = centers.shape[0]
    w = mask.astype(x.dtype)
    n_valid = jnp.sum(w)
    x_sq = jnp.sum(jnp.square(x), axis=1)
    mean = jnp.sum(x * w[:, None], axis=0) / n_valid
    variance = jnp.sum(jnp.square(x - mean) * w[:, None], axis=0) / n_valid
    tol_abs = tol * jnp.mean(variance)

    def update(centers):
        labels, min_d2 = _assign(x, x_sq, centers)
        onehot = jax.nn.one_hot(labels, n_clusters, dtype=x.dtype) * w[:, None]
        counts = jnp.sum(onehot, axis=0)
        sums = jnp.matmul(onehot.T, x, precision=_HI)
        new = sums / jnp.maximum(counts, 1.0)[:, None]
        empty = counts == 0
        far = jax.lax.top_k(jnp.where(mask, min_d2, -1.0), n_clusters)[1]
        rank = jnp.clip(jnp.cumsum(empty) - 1, 0, n_clusters - 1)
        new = jnp.where(empty[:, None], x[far[rank]], new)
        return new, labels

    def cond(state):
        _, _, it, done = state
        return (it < max_iter) & ~done

    def body(state):
        centers, prev_labels, it, _ = state
        new, labels = update(centers)
        shift = jnp.sum(jnp.square(new - centers))
        strict = jnp.all((labels == prev_labels) | ~mask)
        return new, labels, it + 1, strict | (shift <= tol_abs)

    init = (centers, jnp.full((x.shape[0],), -1, jnp.int32), jnp.int32(0), jnp.bool_(False))
    centers, _, n_iter, _ = jax.lax.while_loop(cond, body, init)
    labels, min_d2 = _assign(x, x_sq, centers)
    inertia = jnp.sum(min_d2 * w)
    return KMeansResult(centers, labels, inertia, n_iter)


def kmeans(
    x: Array,
    n_clusters: int,
    *,
    key: Array,
    mask: Array,
    max_iter: int = 300,
    tol: float = 1e-4,
) -> KMeansResult:
    """k-means: :func:`kmeans_plusplus` seeding followed by :func:`lloyd`.

    Args:
        x: ``[N, D]`` samples.
        n_clusters: static ``K``.
        key: PRNG key (used by the seeding only).
        mask: ``[N]`` bool, False for padding.
        max_iter: static Lloyd iteration budget (scikit-learn's default 300).
        tol: Lloyd relative tolerance (scikit-learn's default 1e-4).

    Returns:
        :class:`KMeansResult`.
    """
    centers, _ = kmeans_plusplus(x, n_clusters, key=key, mask=mask)
    return lloyd(x, centers, mask=mask, max_iter=max_iter, tol=tol)
