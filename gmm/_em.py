"""Expectation-maximisation for a full-covariance Gaussian mixture, jit-compiled end to end.

The order of operations is scikit-learn's (``sklearn/mixture/_base.py``, ``fit_predict``):
initialise (responsibilities from k-means labels or random, then one M-step; or explicit
initial parameters), then repeat {E-step → lower bound of the current parameters; M-step;
stop when ``|lower bound - previous lower bound| < tol``}. The reported lower bound is thus the
mean log-likelihood of the parameters *before* the last M-step, and ``n_iter`` counts the
iterations of that loop. The whole loop is one ``jax.lax.while_loop``.

Two forms of the E-step/M-step pass, the same estimators in exact arithmetic:

* **centred** (:func:`e_step_stats`): ``‖P_kᵀ(x − μ_k)‖²`` per component and the scatter around
  the current means, per chunk of samples: ``O(N K D²)`` work in ``K`` small products per
  chunk; numerically the most robust, used for float32.
* **moments** (:mod:`gmm._moments`, float64): with ``z(x) = [x_i x_j (i ≤ j), x]`` the
  quadratic form ``(x − μ)ᵀ Λ (x − μ)`` is linear in ``z``, so the weighted log-densities of all
  components are one matrix product ``[N, F] × [F, K]`` and the M-step's sums another,
  ``F = D(D+1)/2 + D``: about 3x faster per iteration at ``N = 12 150, D = 16, K = 49``. The
  samples are centred on their mean first (the sums are around the origin, so that removes the
  cancellation of a large common offset); in float64 the parameters then agree with the
  centred form to about 1e-11.
"""

from __future__ import annotations

import functools
from typing import Any, NamedTuple

import jax
import jax.numpy as jnp

from gmm import _validation as val
from gmm import _xla
from gmm._chunks import em_chunk_rows, to_chunks, to_chunks_t
from gmm._gaussian import (
    log_prob_and_resp_t,
    precision_cholesky_from_covariances,
    precision_cholesky_from_precisions,
)
from gmm._kmeans import default_n_local_trials, kmeans_padded
from gmm._moments import (
    Moments,
    moment_data,
    moment_resp_stats,
    moment_stats,
    shift_means,
    use_moments,
)
from gmm._types import Array, FitResult, GMMParams, SufficientStats

_HI = jax.lax.Precision.HIGHEST


class CovarianceError(ValueError):
    """A covariance was not positive definite after regularisation (documented remedy inside)."""


def _chunk_stats(xt: Array, resp: Array, centers: Array) -> tuple[Array, Array, Array]:
    """``R``, ``t``, ``S`` of one feature-major chunk: ``xt`` ``[D, C]``, ``resp`` ``[K, C]``.

    The scatter is ``A Aᵀ`` per component with ``A = sqrt(r) (x - c)``: one operand, not two.
    """
    diff = xt[None, :, :] - centers[:, :, None]  # [K, D, C]
    scaled = jnp.sqrt(resp)[:, None, :] * diff
    scatter = jnp.einsum("kdc,kec->kde", scaled, scaled, precision=_HI)
    diff_sum = jnp.einsum("kc,kdc->kd", resp, diff, precision=_HI)
    return jnp.sum(resp, axis=1), diff_sum, scatter


def _zero_stats(n_components: int, n_features: int, dtype: Any) -> SufficientStats:
    k, d = n_components, n_features
    return SufficientStats(
        jnp.zeros((k,), dtype),
        jnp.zeros((k, d), dtype),
        jnp.zeros((k, d, d), dtype),
        jnp.zeros((), dtype),
    )


def e_step_stats(params: GMMParams, xs: Array, ms: Array) -> SufficientStats:
    """E-step fused with the M-step's sums: one ``lax.scan`` over chunks of samples.

    For every chunk: log-densities and responsibilities of the current ``params`` (stable
    log-sum-exp; zero for masked samples), then the sums of :class:`SufficientStats` around
    the current means. Nothing of size ``[N, K, D]`` is materialised.

    Args:
        params: current parameters (``K`` components).
        xs: ``[n_chunks, D, C]`` feature-major samples (:func:`gmm._chunks.to_chunks_t`).
        ms: ``[n_chunks, C]`` bool mask, False for padding.

    Returns:
        :class:`SufficientStats` with ``c_k = params.means[k]``.
    """
    k, d = params.means.shape

    def body(acc: SufficientStats, chunk: tuple[Array, Array]) -> tuple[SufficientStats, None]:
        xt, mc = chunk
        log_prob, resp = log_prob_and_resp_t(params, xt)
        resp = jnp.where(mc[None, :], resp, 0.0)
        r_sum, t_sum, s_sum = _chunk_stats(xt, resp, params.means)
        lp_sum = jnp.sum(jnp.where(mc, log_prob, 0.0))
        new = SufficientStats(r_sum, t_sum, s_sum, lp_sum)
        return jax.tree.map(jnp.add, acc, new), None

    stats, _ = jax.lax.scan(body, _zero_stats(k, d, xs.dtype), (xs, ms))
    return stats


def resp_stats(xs: Array, rs: Array, centers: Array) -> SufficientStats:
    """:class:`SufficientStats` of given responsibilities.

    Args:
        xs: ``[n_chunks, D, C]`` feature-major samples.
        rs: ``[n_chunks, K, C]`` responsibilities (zero for masked samples).
        centers: ``[K, D]`` reference centres.
    """
    k, d = centers.shape

    def body(acc: SufficientStats, chunk: tuple[Array, Array]) -> tuple[SufficientStats, None]:
        xt, rc = chunk
        r_sum, t_sum, s_sum = _chunk_stats(xt, rc, centers)
        new = SufficientStats(r_sum, t_sum, s_sum, jnp.zeros((), xs.dtype))
        return jax.tree.map(jnp.add, acc, new), None

    stats, _ = jax.lax.scan(body, _zero_stats(k, d, xs.dtype), (xs, rs))
    return stats


def params_from_stats(
    stats: SufficientStats,
    centers: Array,
    reg_covar: Array,
    weights_total: Array | None = None,
    active: Array | None = None,
) -> tuple[GMMParams, Array]:
    """M-step from sums around ``centers`` (scikit-learn's estimators, exactly re-arranged).

    ``n_k = R_k + 10·eps``; ``μ_k = Σ_n r_nk x_n / n_k = (t_k + R_k c_k) / n_k``; with
    ``δ_k = μ_k - c_k``: ``Σ_n r_nk (x_n - μ_k)(x_n - μ_k)ᵀ = S_k - t_k δ_kᵀ - δ_k t_kᵀ +
    R_k δ_k δ_kᵀ``, so ``Σ_k = that / n_k + reg_covar·I`` is the centred scikit-learn
    covariance; the correction is small because ``c_k`` are the previous means.
    ``w_k = n_k / Σ_j n_j`` (M-step) or ``n_k / weights_total`` (initialisation).

    Inactive (padding) components get ``w_k = 0``, ``μ_k = 0`` and ``P_k = I``; they are left
    out of ``Σ_j n_j`` and never fail. Their sums must be zero (zero responsibilities).

    Args:
        stats: sums around ``centers``.
        centers: ``[K, D]`` reference centres ``c_k`` (zero for inactive components).
        reg_covar: ``[]`` covariance regularisation.
        weights_total: optional ``[]`` denominator of the weights.
        active: optional ``[K]`` bool, False for padding components; default all active.

    Returns:
        ``params`` and ``failed`` ``[]`` bool (some active covariance not positive definite).
    """
    dtype = centers.dtype
    n_features = centers.shape[1]
    r, t, s = stats.resp_sum, stats.diff_sum, stats.scatter
    nk = r + 10.0 * jnp.finfo(dtype).eps
    if active is not None:
        nk = jnp.where(active, nk, 1.0)  # inactive: r = t = S = 0, so μ = 0 and Σ = reg·I
    means = (t + r[:, None] * centers) / nk[:, None]
    delta = means - centers
    outer_td = t[:, :, None] * delta[:, None, :]
    scatter = (
        s
        - outer_td
        - jnp.swapaxes(outer_td, 1, 2)
        + r[:, None, None] * delta[:, :, None] * delta[:, None, :]
    )
    cov = scatter / nk[:, None, None] + reg_covar * jnp.eye(n_features, dtype=dtype)
    p, failed = precision_cholesky_from_covariances(cov, active)
    if active is not None:
        nk = jnp.where(active, nk, 0.0)
    total = jnp.sum(nk) if weights_total is None else weights_total
    return GMMParams(nk / total, means, p), failed


def params_from_resp(
    x: Array,
    mask: Array,
    resp: Array,
    reg_covar: Array,
    active: Array | None = None,
    *,
    rows: int,
    moments: Moments | None = None,
) -> tuple[GMMParams, Array]:
    """Parameters from responsibilities, as scikit-learn's ``_initialize`` (``w_k = n_k / N``).

    Two passes: the means ``Σ r x / n_k``, then the scatter around them; with ``moments``
    (:func:`moment_data`) one product of the responsibilities with the moments.

    Args:
        x: ``[N, D]``; ``mask``: ``[N]`` bool; ``resp``: ``[N, K]`` (zero rows where masked,
            zero columns for inactive components).
        reg_covar: ``[]``.
        active: optional ``[K]`` bool, False for padding components (see
            :func:`params_from_stats`).
        rows: static chunk size.

    Returns:
        ``params`` and ``failed`` ``[]`` bool.
    """
    n_valid = jnp.sum(mask).astype(x.dtype)
    if moments is not None:
        stats = moment_resp_stats(resp, moments)
        zero = jnp.zeros((resp.shape[1], x.shape[1]), x.dtype)
        params, failed = params_from_stats(stats, zero, reg_covar, n_valid, active)
        return shift_means(params, moments.offset, active), failed
    nk = jnp.sum(resp, axis=0) + 10.0 * jnp.finfo(x.dtype).eps
    centers = jnp.matmul(resp.T, x, precision=_HI) / nk[:, None]
    stats = resp_stats(to_chunks_t(x, rows), to_chunks_t(resp, rows), centers)
    return params_from_stats(stats, centers, reg_covar, n_valid, active)


class Candidate(NamedTuple):
    """A number of components as traced values, padded to ``n_slots`` static slots.

    Attributes:
        n_components: ``[]`` int32 ``K <= n_slots``; slots from ``K`` on are padding.
        n_trials: ``[]`` int32 k-means++ candidates per seed (``2 + floor(log K)``), one of
            the static ``trial_sizes`` of :func:`initial_params`.
    """

    n_components: Array
    n_trials: Array


def fixed_candidate(n_components: int) -> Candidate:
    """The :class:`Candidate` of a static ``K`` (no padding)."""
    return Candidate(jnp.int32(n_components), jnp.int32(default_n_local_trials(n_components)))


def _random_resp(key: Array, shape: tuple[int, int], n: Array, sizes: tuple[int, ...], dtype):
    """``uniform(key, (N, n))`` (``tiny`` to 1) for a traced ``n`` in the static ``sizes``,
    zero-padded to ``shape = (N, K_pad)``: a ``lax.switch`` over ``sizes`` draws the values
    of the unpadded call."""
    tiny = jnp.finfo(dtype).tiny  # > 0, so a row (K = 1) never normalises 0 / 0

    def branch(k: int):
        def draw(sub: Array) -> Array:
            r = jax.random.uniform(sub, (shape[0], k), dtype, minval=tiny)
            return jnp.pad(r, ((0, 0), (0, shape[1] - k)))

        return draw

    if len(sizes) == 1:
        return branch(sizes[0])(key)
    index = jnp.sum(jnp.asarray(sizes) < n)
    return jax.lax.switch(index, [branch(k) for k in sizes], key)


def initial_resp(
    x: Array,
    mask: Array,
    key: Array,
    candidate: Candidate,
    *,
    n_slots: int,
    init: str,
    trial_sizes: tuple[int, ...],
    k_sizes: tuple[int, ...],
) -> Array:
    """``[N, n_slots]`` initial responsibilities (zero rows for masked samples, zero columns
    for the padding slots from ``candidate.n_components`` on).

    ``"kmeans"``: one-hot labels of k-means (:func:`gmm._kmeans.kmeans`: k-means++ then
    Lloyd); ``"random"``: uniform draws normalised per row (scikit-learn's
    ``init_params="random"``). For every ``K`` the active columns equal those of an unpadded
    fit with ``K`` components and the same key. ``trial_sizes``/``k_sizes``: the static sets
    the traced ``n_trials``/``n_components`` are drawn from.
    """
    k = candidate.n_components
    if init == "kmeans":
        labels = kmeans_padded(
            x, n_slots, k, candidate.n_trials, key=key, mask=mask, trial_sizes=trial_sizes
        ).labels
        resp = jax.nn.one_hot(labels, n_slots, dtype=x.dtype)
    elif init == "random":
        resp = _random_resp(key, (x.shape[0], n_slots), k, k_sizes, x.dtype)
        resp = resp / jnp.sum(resp, axis=1, keepdims=True)
    else:  # pragma: no cover - validated eagerly
        raise ValueError(f"unknown init {init!r}")
    return jnp.where(mask[:, None], resp, 0.0)


def initial_params(
    x: Array,
    mask: Array,
    key: Array,
    reg_covar: Array,
    weights_init: Array | None,
    means_init: Array | None,
    precisions_init: Array | None,
    candidate: Candidate | None = None,
    *,
    n_components: int,
    init: str,
    rows: int,
    trial_sizes: tuple[int, ...] | None = None,
    k_sizes: tuple[int, ...] | None = None,
    moments: Moments | None = None,
) -> tuple[GMMParams, Array]:
    """Initial parameters as scikit-learn's ``GaussianMixture._initialize``.

    If any of the explicit initial values is missing, responsibilities from ``init`` give
    parameters through :func:`params_from_resp` (``w_k = n_k / N``); explicit values then
    replace the computed ones. Explicit precisions are factorised as ``P Pᵀ = Λ``
    (upper-triangular ``P``).

    Args:
        n_components: static number of component slots ``K_pad``.
        candidate: the traced number of active components (default all ``K_pad``, see
            :class:`Candidate`); explicit initial values need all slots active.
        trial_sizes, k_sizes: static sets of the candidate's ``n_trials`` and
            ``n_components`` (default: the single values of ``K_pad``).

    Returns:
        ``params`` (``K_pad`` slots; padding slots have zero weight, zero mean, identity
        precision) and ``failed`` ``[]`` bool.
    """
    if candidate is None:
        candidate = fixed_candidate(n_components)
        trial_sizes = (default_n_local_trials(n_components),)
        k_sizes = (n_components,)
    active = jnp.arange(n_components) < candidate.n_components
    failed = jnp.bool_(False)
    if weights_init is None or means_init is None or precisions_init is None:
        resp = initial_resp(
            x,
            mask,
            key,
            candidate,
            n_slots=n_components,
            init=init,
            trial_sizes=trial_sizes,
            k_sizes=k_sizes,
        )
        (weights, means, p), failed = params_from_resp(
            x, mask, resp, reg_covar, active, rows=rows, moments=moments
        )
    if weights_init is not None:
        weights = weights_init
    if means_init is not None:
        means = means_init
    if precisions_init is not None:
        p, failed = precision_cholesky_from_precisions(precisions_init)
    return GMMParams(weights, means, p), failed


class _EMState(NamedTuple):
    params: GMMParams
    lower_bound: Array
    lower_bounds: Array
    n_iter: Array
    converged: Array
    failed: Array


def em(
    params: GMMParams,
    failed: Array,
    xs: Array,
    ms: Array,
    tol: Array,
    reg_covar: Array,
    active: Array | None = None,
    *,
    max_iter: int,
    moments: Moments | None = None,
) -> FitResult:
    """The EM loop from given initial parameters, as one ``lax.while_loop``.

    Each iteration is one pass over the chunks (:func:`e_step_stats`: E-step and the sums of
    the M-step; :func:`moment_stats` when ``moments`` are given), then
    :func:`params_from_stats`. Runs while ``n_iter < max_iter`` and not
    converged and not failed. A step whose M-step gives a non positive-definite covariance, or
    whose E-step gives a non-finite likelihood, sets ``failed`` and keeps the previous
    (valid) parameters.

    Args:
        params: initial parameters; ``failed``: ``[]`` bool, the initialisation failed.
        xs: ``[n_chunks, D, C]`` feature-major samples; ``ms``: ``[n_chunks, C]`` bool mask.
        tol: ``[]`` convergence threshold on the change of the lower bound.
        reg_covar: ``[]`` covariance regularisation.
        active: optional ``[K]`` bool, False for padding components (zero weight in
            ``params``, so zero responsibility; kept at zero weight by every M-step).
        max_iter: static iteration budget.
        moments: the samples as :func:`moment_data` (float64); the loop then runs on means
            relative to ``moments.offset``.

    Returns:
        :class:`FitResult`.
    """
    dtype = xs.dtype
    n_valid = jnp.sum(ms).astype(dtype)
    neg_inf = jnp.asarray(-jnp.inf, dtype)
    if moments is not None:
        params = params._replace(means=params.means - moments.offset)

    def em_pass(p: GMMParams) -> tuple[SufficientStats, Array]:
        if moments is None:
            return e_step_stats(p, xs, ms), p.means
        return moment_stats(p, moments), jnp.zeros_like(p.means)

    def cond(s: _EMState) -> Array:
        return (s.n_iter < max_iter) & ~s.converged & ~s.failed

    def body(s: _EMState) -> _EMState:
        stats, centers = em_pass(s.params)
        lower_bound = stats.log_prob_sum / n_valid
        new_params, chol_failed = params_from_stats(stats, centers, reg_covar, active=active)
        bad = chol_failed | ~jnp.isfinite(lower_bound)
        params = jax.tree.map(lambda old, new: jnp.where(bad, old, new), s.params, new_params)
        change = lower_bound - s.lower_bound
        return _EMState(
            params=params,
            lower_bound=jnp.where(bad, s.lower_bound, lower_bound),
            lower_bounds=(
                s.lower_bounds.at[s.n_iter].set(lower_bound) if max_iter else s.lower_bounds
            ),
            n_iter=s.n_iter + 1,
            converged=(jnp.abs(change) < tol) & ~bad,
            failed=bad,
        )

    state = _EMState(
        params=params,
        lower_bound=neg_inf,
        lower_bounds=jnp.full((max_iter,), jnp.nan, dtype),
        n_iter=jnp.int32(0),
        converged=jnp.bool_(False),
        failed=failed,
    )
    s = jax.lax.while_loop(cond, body, state)
    params = s.params
    if moments is not None:
        params = shift_means(params, moments.offset, active)
    return FitResult(params, s.lower_bound, s.lower_bounds, s.n_iter, s.converged, s.failed)


def _select_best(results: FitResult) -> FitResult:
    """The run with the highest lower bound among runs that did not fail (first on ties).

    If no run has a finite lower bound (``max_iter == 0``), the first run that did not fail;
    if all failed, run 0 (whose ``failed`` flag is then True).
    """
    ok = ~results.failed
    score = jnp.where(ok, results.lower_bound, -jnp.inf)
    best = jnp.argmax(score)
    best = jnp.where(jnp.max(score) == -jnp.inf, jnp.argmax(ok), best)
    return jax.tree.map(lambda a: a[best], results)


def fit_padded(
    x: Array,
    mask: Array,
    xs: Array,
    ms: Array,
    key: Array,
    tol: Array,
    reg_covar: Array,
    weights_init: Array | None = None,
    means_init: Array | None = None,
    precisions_init: Array | None = None,
    candidate: Candidate | None = None,
    *,
    n_components: int,
    max_iter: int,
    n_init: int,
    init: str,
    trial_sizes: tuple[int, ...] | None = None,
    k_sizes: tuple[int, ...] | None = None,
    moments: Moments | None = None,
) -> FitResult:
    """Initialisation, EM and restarts for one number of components (traceable, no checks).

    ``n_components`` static slots of which ``candidate.n_components`` (traced) are active
    (default all, see :func:`initial_params`). Restart ``i`` of ``n_init`` uses the key
    ``jax.random.fold_in(key, i)``; restarts run batched with ``vmap`` and the best lower bound
    wins (see :func:`_select_best`).

    Args:
        x: ``[N, D]`` samples, zero where ``mask`` ``[N]`` is False.
        xs, ms: the same as ``[n_chunks, D, rows]`` feature-major chunks and ``[n_chunks,
            rows]`` mask (:func:`gmm._chunks.to_chunks_t`), ``rows`` as the EM pass uses.
        moments: the samples for the moments form of the EM pass (:func:`moment_data`), or
            ``None`` for the centred form (see :func:`em`).
    """
    rows = xs.shape[2]
    active = None if candidate is None else jnp.arange(n_components) < candidate.n_components

    def one_run(run_key: Array) -> FitResult:
        params, failed = initial_params(
            x,
            mask,
            run_key,
            reg_covar,
            weights_init,
            means_init,
            precisions_init,
            candidate,
            n_components=n_components,
            init=init,
            rows=rows,
            trial_sizes=trial_sizes,
            k_sizes=k_sizes,
            moments=moments,
        )
        return em(
            params, failed, xs, ms, tol, reg_covar, active, max_iter=max_iter, moments=moments
        )

    if n_init == 1:
        return one_run(jax.random.fold_in(key, 0))
    keys = jax.vmap(jax.random.fold_in, in_axes=(None, 0))(key, jnp.arange(n_init))
    return _select_best(jax.vmap(one_run)(keys))


@functools.partial(
    _xla.jit,
    static_argnames=("n_components", "max_iter", "n_init", "init"),
    light_if=_xla.small_em,
)
def fit_jit(
    x: Array,
    mask: Array,
    key: Array,
    tol: Array,
    reg_covar: Array,
    weights_init: Array | None = None,
    means_init: Array | None = None,
    precisions_init: Array | None = None,
    *,
    n_components: int,
    max_iter: int = 100,
    n_init: int = 1,
    init: str = "kmeans",
) -> FitResult:
    """The jitted core of :func:`fit`: no validation, failures reported in ``failed``.

    Restart ``i`` of ``n_init`` uses the key ``jax.random.fold_in(key, i)``; restarts run
    batched with ``vmap`` and the best lower bound wins (see :func:`_select_best`). Compiled
    once per (N, D, K, dtype, which initial values are given, max_iter, n_init, init).
    """
    x = jnp.where(mask[:, None], x, jnp.zeros((), x.dtype))  # padding may hold NaN or inf
    rows = em_chunk_rows(x.shape[0], n_components, x.shape[1])
    moments = moment_data(x, mask) if use_moments(x) else None
    return fit_padded(
        x,
        mask,
        to_chunks_t(x, rows),
        to_chunks(mask, rows),
        key,
        tol,
        reg_covar,
        weights_init,
        means_init,
        precisions_init,
        n_components=n_components,
        max_iter=max_iter,
        n_init=n_init,
        init=init,
        moments=moments,
    )


def fit(
    x: Any,
    n_components: int,
    *,
    key: Any,
    mask: Any = None,
    max_iter: int = 100,
    tol: float = 1e-3,
    reg_covar: float = 1e-6,
    n_init: int = 1,
    init: str = "kmeans",
    weights_init: Any = None,
    means_init: Any = None,
    precisions_init: Any = None,
) -> FitResult:
    """Fit a full-covariance Gaussian mixture by EM (the uncertainty model of Zhu et al. 2023).

    scikit-learn semantics (``GaussianMixture(covariance_type="full")``): stop when the change
    of the mean log-likelihood is below ``tol``; ``reg_covar`` is added to every covariance
    diagonal; ``n_init`` restarts (batched with ``vmap``, restart ``i`` keyed by
    ``fold_in(key, i)``), the best lower bound wins. Everything after validation is one jitted
    call whose EM loop is a ``lax.while_loop``; it is compiled once per (N, D, K, dtype,
    static options). Computation is in the dtype of ``x`` (float32 or float64).

    Args:
        x: ``[N, D]`` features.
        n_components: number of components ``K``.
        key: PRNG key for the initialisation (required even when it is unused).
        mask: optional ``[N]`` bool; False rows are padding, with zero weight everywhere
            (responsibilities, k-means++ seeding, lower bound, N). With ``init="kmeans"`` or
            explicit initial values the fit equals that of the unpadded data; with
            ``init="random"`` the draws depend on row positions, so padding changes them.
        max_iter: EM iteration budget (default 100).
        tol: convergence threshold on the change of the lower bound (default 1e-3; 0 or
            ``-inf`` runs exactly ``max_iter`` iterations).
        reg_covar: non-negative value added to covariance diagonals (default 1e-6).
        n_init: number of restarts (default 1).
        init: ``"kmeans"`` (k-means++ seeding then Lloyd, default) or ``"random"``.
        weights_init: optional ``[K]`` initial weights.
        means_init: optional ``[K, D]`` initial means.
        precisions_init: optional ``[K, D, D]`` initial precision matrices (inverse
            covariances, scikit-learn's convention). If all three are given, ``init`` is unused.

    Returns:
        :class:`FitResult` (``failed`` is always False: failures raise).

    Raises:
        ValueError: invalid inputs (shapes, NaN/inf features, fewer samples than components).
        CovarianceError: (a ``ValueError``) a covariance was not positive definite after
            regularisation in every restart.
    """
    xa = val.as_features(x)
    n_samples, n_features = xa.shape
    n_components = val.check_positive_int(n_components, "n_components", 1)
    max_iter = val.check_positive_int(max_iter, "max_iter", 0)
    n_init = val.check_positive_int(n_init, "n_init", 1)
    init = val.check_init(init)
    tol = val.check_float(tol, "tol")
    reg_covar = val.check_float(reg_covar, "reg_covar", minimum=0.0)
    key = val.check_key(key)
    mask_a = val.as_mask(mask, n_samples)
    val.check_n_samples(val.n_valid_samples(mask_a), n_components)
    val.check_finite_features(xa, mask_a)
    dtype = xa.dtype
    if weights_init is not None:
        weights_init = val.check_weights_init(weights_init, n_components, dtype)
    if means_init is not None:
        means_init = val.check_means_init(means_init, n_components, n_features, dtype)
    if precisions_init is not None:
        precisions_init = val.check_precisions_init(
            precisions_init, n_components, n_features, dtype
        )
    result = fit_jit(
        xa,
        mask_a,
        key,
        jnp.asarray(tol, dtype),
        jnp.asarray(reg_covar, dtype),
        weights_init,
        means_init,
        precisions_init,
        n_components=n_components,
        max_iter=max_iter,
        n_init=n_init,
        init=init,
    )
    if bool(result.failed):
        raise CovarianceError(val.ill_defined_message(reg_covar, dtype))
    return result
