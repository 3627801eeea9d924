"""Every candidate number of components of a model selection in one compiled program.

The components are padded to the largest candidate ``K_pad``: a candidate with ``K``
components uses the first ``K`` slots, the others are inactive (zero weight, hence zero
responsibility and no contribution to the likelihood; zero mean and identity precision, so
they never fail). ``K`` is a traced value, so the whole sweep — k-means++ seeding, Lloyd
iterations, EM, restarts and the criterion — is one jitted call, compiled once per (N, D,
``K_pad``, number of candidates, dtype, static options). The candidates run one after the
other (``lax.map``), each with its own ``lax.while_loop`` convergence tests, so a candidate
that converges early stops early. (Batching the candidates with ``vmap`` instead makes every
candidate run as long as the slowest one, and every branch of the k-means++ draws run for
each; on a 2-core CPU at N = 2430, D = 8, K = 1…20 that was about 4x slower.)

For every ``K`` the result equals ``gmm.fit(x, K, key=jax.random.fold_in(key, K), ...)``:
the same draws, the same iterations; only the order of some floating-point sums differs.
"""

from __future__ import annotations

import functools
from typing import NamedTuple

import jax
import jax.numpy as jnp

from gmm import _xla
from gmm._chunks import em_chunk_rows, to_chunks, to_chunks_t
from gmm._em import Candidate, fit_padded
from gmm._gaussian import log_prob_and_resp_t
from gmm._moments import moment_data, moment_stats, use_moments
from gmm._types import Array, FitResult, GMMParams


class SweepResult(NamedTuple):
    """Outcome of :func:`sweep_jit`, one entry per candidate along the leading axis ``C``.

    Attributes:
        fits: :class:`FitResult` with leading axis ``[C]``; ``params`` have ``K_pad`` slots
            (``weights [C, K_pad]``, ...), of which the first ``K`` of each candidate are its
            components and the rest have zero weight.
        criterion: ``[C]`` ``-2 Σ_n log p(x_n) + penalty`` of the fitted parameters (lower is
            better); ``inf`` where the fit failed.
    """

    fits: FitResult
    criterion: Array


def total_log_prob(params: GMMParams, xs: Array, ms: Array) -> Array:
    """``[]`` ``Σ_n log p(x_n)`` over unmasked samples of feature-major chunks ``xs``
    ``[n_chunks, D, rows]`` with mask ``ms`` ``[n_chunks, rows]``."""

    def body(acc: Array, chunk: tuple[Array, Array]) -> tuple[Array, None]:
        xt, mc = chunk
        log_prob, _ = log_prob_and_resp_t(params, xt)
        return acc + jnp.sum(jnp.where(mc, log_prob, 0.0)), None

    total, _ = jax.lax.scan(body, jnp.zeros((), xs.dtype), (xs, ms))
    return total


@functools.partial(
    _xla.jit,
    static_argnames=("n_slots", "trial_sizes", "k_sizes", "max_iter", "n_init", "init"),
    light_if=_xla.small_em,
)
def sweep_jit(
    x: Array,
    mask: Array,
    key: Array,
    tol: Array,
    reg_covar: Array,
    n_components: Array,
    n_trials: Array,
    penalties: Array,
    *,
    n_slots: int,
    trial_sizes: tuple[int, ...],
    k_sizes: tuple[int, ...],
    max_iter: int = 100,
    n_init: int = 1,
    init: str = "kmeans",
) -> SweepResult:
    """Fit every candidate and evaluate its criterion, in one compiled program (no checks).

    Candidate ``c`` has ``n_components[c]`` components and is fitted as
    ``gmm.fit(x, n_components[c], key=jax.random.fold_in(key, n_components[c]), ...)``.

    Args:
        x: ``[N, D]`` features (padding rows may hold anything); mask: ``[N]`` bool.
        key: PRNG key; tol, reg_covar: ``[]`` in the dtype of ``x``.
        n_components: ``[C]`` int32 candidate ``K`` (each in ``k_sizes``, at most ``n_slots``).
        n_trials: ``[C]`` int32 k-means++ candidates per seed, ``2 + floor(log K)`` (each in
            ``trial_sizes``).
        penalties: ``[C]`` the criterion's penalty, e.g. ``p(K) ln N`` for BIC.
        n_slots: static ``K_pad``, the largest candidate.
        trial_sizes, k_sizes: static sorted tuples of the distinct ``n_trials`` and ``K``.
        max_iter, n_init, init: as :func:`gmm.fit`.

    Returns:
        :class:`SweepResult`.
    """
    n_candidates = n_components.shape[0]
    assert x.ndim == 2 and mask.shape == x.shape[:1], (x.shape, mask.shape)
    assert n_components.shape == n_trials.shape == penalties.shape == (n_candidates,)
    assert x.shape[0] >= n_slots, "top_k in Lloyd needs at least K_pad samples"
    x = jnp.where(mask[:, None], x, jnp.zeros((), x.dtype))  # padding may hold NaN or inf
    rows = em_chunk_rows(x.shape[0], n_slots, x.shape[1])
    xs, ms = to_chunks_t(x, rows), to_chunks(mask, rows)
    moments = moment_data(x, mask) if use_moments(x) else None

    def one(candidate: tuple[Array, Array, Array]) -> tuple[FitResult, Array]:
        k, trials, penalty = candidate
        result = fit_padded(
            x,
            mask,
            xs,
            ms,
            jax.random.fold_in(key, k),
            tol,
            reg_covar,
            candidate=Candidate(k, trials),
            n_components=n_slots,
            max_iter=max_iter,
            n_init=n_init,
            init=init,
            trial_sizes=trial_sizes,
            k_sizes=k_sizes,
            moments=moments,
        )
        if moments is None:
            log_likelihood = total_log_prob(result.params, xs, ms)
        else:
            centred = result.params._replace(means=result.params.means - moments.offset)
            log_likelihood = moment_stats(centred, moments).log_prob_sum
        value = -2.0 * log_likelihood + penalty
        ok = ~result.failed & jnp.isfinite(value)
        return result, jnp.where(ok, value, jnp.inf)

    fits, criterion = jax.lax.map(one, (n_components, n_trials, penalties))
    return SweepResult(fits, criterion)
