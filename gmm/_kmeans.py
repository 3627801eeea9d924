"""k-means++ seeding and Lloyd iterations in JAX, mask-aware and jit-friendly.

The loops are ``lax.fori_loop``/``lax.while_loop`` with static shapes: the number of centre
slots and the iteration budget are static, the data and the mask are traced. Masked samples
(``mask`` False) carry zero weight everywhere: they are never drawn as seeds, never move a
centre and never count in the inertia.

The private ``seed_padded`` and ``lloyd_padded`` take the number of clusters as a traced value
``n_active <= K_pad`` next to ``K_pad`` static centre slots; slots from ``n_active`` on are
inactive (zero centres, never nearest, never moved). With ``n_active = K_pad`` they are the
public :func:`kmeans_plusplus` and :func:`lloyd`, and for any ``n_active`` their active slots
follow the same path as the public functions called with ``n_active`` clusters, which is
what lets a sweep over ``K`` run in one compiled program (:mod:`gmm._sweep`).
"""

from __future__ import annotations

import math
from typing import Any, NamedTuple

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


def default_n_local_trials(n_clusters: int) -> int:
    """scikit-learn's number of k-means++ candidates per seed, ``2 + floor(log K)``."""
    return 2 + int(math.log(n_clusters))


def uniform_prefix(key: Array, n: Array, sizes: tuple[int, ...], dtype: Any) -> Array:
    """``jax.random.uniform(key, (n,))`` for a traced ``n``, padded to ``max(sizes)``.

    ``n`` must be one of the static ``sizes``; a ``lax.switch`` over them draws exactly the
    values of the unpadded call (whatever the PRNG implementation), then pads with zeros.

    Returns:
        ``[max(sizes)]`` draws; entries from ``n`` on are zero.
    """
    size = max(sizes)
    if len(sizes) == 1:
        return jax.random.uniform(key, (size,), dtype=dtype)

    def branch(s: int):
        return lambda k: jnp.pad(jax.random.uniform(k, (s,), dtype=dtype), (0, size - s))

    index = jnp.sum(jnp.asarray(sizes) < n)
    return jax.lax.switch(index, [branch(s) for s in sizes], key)


def _sample_index(u: Array, weights: Array, fallback: Array) -> Array:
    """Indices ``[T]`` drawn with probability proportional to ``weights`` ``[N]``.

    ``u`` ``[T]`` are uniform draws in ``[0, 1)``. Inverse-CDF sampling (the index is the
    number of CDF entries ``<= u · total``, a right-sided search written as a count); an index
    of zero weight is never returned. When all weights are zero, ``fallback`` ``[N]``
    (non-negative, not all zero) is used instead.
    """
    total = jnp.sum(weights)
    weights = jnp.where(total > 0, weights, fallback)
    cdf = jnp.cumsum(weights)
    idx_all = jnp.arange(weights.shape[0])
    last_positive = jnp.max(jnp.where(weights > 0, idx_all, 0))
    idx = jnp.sum(cdf[None, :] <= (u * cdf[-1])[:, None], axis=1)
    return jnp.minimum(idx, last_positive).astype(jnp.int32)


def seed_padded(
    x: Array,
    n_slots: int,
    n_active: Array,
    n_trials: Array,
    *,
    key: Array,
    mask: Array,
    trial_sizes: tuple[int, ...],
) -> tuple[Array, Array]:
    """Greedy k-means++ seeding of ``n_active`` (traced) of ``n_slots`` (static) centres.

    Seed ``i < n_active`` is the best of ``n_trials`` (traced, one of the static
    ``trial_sizes``) candidates, drawn as in :func:`kmeans_plusplus`; the slots from
    ``n_active`` on stay zero.

    Returns:
        ``centers`` ``[n_slots, D]`` and ``indices`` ``[n_slots]`` int32 (zero when inactive).
    """
    n_features = x.shape[1]
    max_trials = max(trial_sizes)
    w = mask.astype(x.dtype)
    x_sq = jnp.sum(jnp.square(x), axis=1)
    trial_ok = jnp.arange(max_trials) < n_trials

    def body(i, state):
        centers, indices, closest, key = state
        key, sub = jax.random.split(key)
        potential = jnp.where(i == 0, w, closest * w)
        u = uniform_prefix(sub, n_trials, trial_sizes, x.dtype)
        candidates = _sample_index(u, potential, w)  # [T]
        d_cand = squared_distances(x, x[candidates], x_sq)  # [N, T]
        d_cand = d_cand.at[candidates, jnp.arange(max_trials)].set(0.0)
        new_closest = jnp.where(i == 0, d_cand, jnp.minimum(closest[:, None], d_cand))
        potentials = jnp.sum(new_closest * w[:, None], axis=0)
        best = jnp.argmin(jnp.where(trial_ok, potentials, jnp.inf))
        chosen = candidates[best]
        return (
            centers.at[i].set(x[chosen]),
            indices.at[i].set(chosen),
            new_closest[:, best],
            key,
        )

    init = (
        jnp.zeros((n_slots, n_features), x.dtype),
        jnp.zeros((n_slots,), jnp.int32),
        jnp.zeros_like(w),
        key,
    )
    centers, indices, _, _ = jax.lax.fori_loop(0, n_active, body, init)
    return centers, indices


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
    if n_local_trials is None:
        n_local_trials = default_n_local_trials(n_clusters)
    return seed_padded(
        x,
        n_clusters,
        jnp.int32(n_clusters),
        jnp.int32(n_local_trials),
        key=key,
        mask=mask,
        trial_sizes=(n_local_trials,),
    )


def _assign(x: Array, x_sq: Array, centers: Array, active: Array) -> tuple[Array, Array]:
    """Nearest active centre ``[N]`` int32 (the first on ties) and the squared distance to it
    ``[N]``.

    Distances are laid out ``[K, N]`` (centres on the major axis), so that the reductions over
    centres run along rows of samples; ``argmin`` is written as a ``min`` and the smallest index
    attaining it: plain reductions, several times faster on CPU than XLA's variadic (value,
    index) reduction over a minor axis of ``K``.
    """
    c_sq = jnp.sum(jnp.square(centers), axis=1)
    cross = jnp.matmul(centers, x.T, precision=_HI)  # [K, N]
    d2 = jnp.maximum(x_sq[None, :] - 2.0 * cross + c_sq[:, None], 0.0)
    d2 = jnp.where(active[:, None], d2, jnp.inf)
    min_d2 = jnp.min(d2, axis=0)
    n_slots = centers.shape[0]
    slots = jnp.arange(n_slots, dtype=jnp.int32)
    labels = jnp.min(jnp.where(d2 == min_d2[None, :], slots[:, None], n_slots), axis=0)
    return jnp.minimum(labels, n_slots - 1), min_d2  # a NaN row (masked junk) matches nothing


def _scatter_sums(x: Array, w: Array, labels: Array, n_slots: int) -> tuple[Array, Array]:
    """``[K]`` weight and ``[K, D]`` weighted sum of the samples of every cluster, by scatter-add
    (``O(N D)``)."""
    return (
        jax.ops.segment_sum(w, labels, n_slots),
        jax.ops.segment_sum(x * w[:, None], labels, n_slots),
    )


def _one_hot_sums(x: Array, w: Array, labels: Array, n_slots: int) -> tuple[Array, Array]:
    """:func:`_scatter_sums` as a product with the ``[K, N]`` one-hot labels."""
    member = jnp.where(labels[None, :] == jnp.arange(n_slots)[:, None], w[None, :], 0.0)
    return jnp.sum(member, axis=1), jnp.matmul(member, x, precision=_HI)


def _cluster_sums(x: Array, w: Array, labels: Array, n_slots: int) -> tuple[Array, Array]:
    """``[K]`` weight and ``[K, D]`` weighted sum of the samples of every cluster.

    On CPU a scatter-add (about twice as fast per Lloyd iteration at N = 12 150, K = 49);
    elsewhere the one-hot product, whose summation order is fixed (a GPU scatter-add
    accumulates in a varying order, which would make k-means, and through it the fits, differ
    between runs).
    """
    return jax.lax.platform_dependent(
        x,
        w,
        labels,
        cpu=lambda *a: _scatter_sums(*a, n_slots),
        default=lambda *a: _one_hot_sums(*a, n_slots),
    )


def lloyd_padded(
    x: Array,
    centers: Array,
    n_active: Array,
    *,
    mask: Array,
    max_iter: int = 300,
    tol: float = 1e-4,
) -> KMeansResult:
    """:func:`lloyd` on the first ``n_active`` (traced) of the ``K_pad`` rows of ``centers``.

    The other rows are never nearest, never moved and never receive an empty cluster's
    replacement; labels are in ``[0, n_active)``.

    Args:
        x: ``[N, D]``; centers: ``[K_pad, D]``; n_active: ``[]`` int; mask: ``[N]`` bool.

    Returns:
        :class:`KMeansResult` with ``centers`` ``[K_pad, D]`` (inactive rows unchanged).
    """
    n_slots = centers.shape[0]
    active = jnp.arange(n_slots) < n_active
    w = mask.astype(x.dtype)
    n_valid = jnp.sum(w)
    x_sq = jnp.sum(jnp.square(x), axis=1)
    mean = jnp.sum(x * w[:, None], axis=0) / n_valid
    variance = jnp.sum(jnp.square(x - mean) * w[:, None], axis=0) / n_valid
    tol_abs = tol * jnp.mean(variance)

    def update(centers):
        labels, min_d2 = _assign(x, x_sq, centers, active)
        counts, sums = _cluster_sums(x, w, labels, n_slots)
        new = sums / jnp.maximum(counts, 1.0)[:, None]
        empty = (counts == 0) & active

        def refill(new):
            far = jax.lax.top_k(jnp.where(mask, min_d2, -1.0), n_slots)[1]
            rank = jnp.clip(jnp.cumsum(empty) - 1, 0, n_slots - 1)
            return jnp.where(empty[:, None], x[far[rank]], new)

        new = jax.lax.cond(jnp.any(empty), refill, lambda new: new, new)  # sorts only if needed
        return jnp.where(active[:, None], new, centers), labels

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
    labels, min_d2 = _assign(x, x_sq, centers, active)
    inertia = jnp.sum(min_d2 * w)
    return KMeansResult(centers, labels, inertia, n_iter)


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
    n_clusters = jnp.int32(centers.shape[0])
    return lloyd_padded(x, centers, n_clusters, mask=mask, max_iter=max_iter, tol=tol)


def kmeans_padded(
    x: Array,
    n_slots: int,
    n_active: Array,
    n_trials: Array,
    *,
    key: Array,
    mask: Array,
    trial_sizes: tuple[int, ...],
    max_iter: int = 300,
    tol: float = 1e-4,
) -> KMeansResult:
    """:func:`kmeans` with ``n_active`` (traced) of ``n_slots`` (static) clusters.

    ``n_trials`` (traced, one of the static ``trial_sizes``) k-means++ candidates per seed;
    see :func:`seed_padded` and :func:`lloyd_padded`.
    """
    centers, _ = seed_padded(
        x, n_slots, n_active, n_trials, key=key, mask=mask, trial_sizes=trial_sizes
    )
    return lloyd_padded(x, centers, n_active, mask=mask, max_iter=max_iter, tol=tol)


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
