"""Information criteria and the choice of the number of components.

``BIC = -2 Σ_n log p(x_n) + p ln N`` and ``AIC = -2 Σ_n log p(x_n) + 2 p`` with ``p`` free
parameters and ``N`` unmasked samples; lower is better for both. The paper chooses the number
of components by BIC on the training features (Zhu et al. 2023, Sec. II B).
"""

from __future__ import annotations

from typing import Any, NamedTuple

import jax
import jax.numpy as jnp
import numpy as np

from gmm import _validation as val
from gmm._em import CovarianceError
from gmm._kmeans import default_n_local_trials
from gmm._scoring import _log_prob, _prepare
from gmm._sweep import SweepResult, sweep_jit
from gmm._types import Array, FitResult, GMMParams

CRITERIA = ("bic", "aic")


def n_parameters(n_components: int, n_features: int) -> int:
    """Free parameters of a full-covariance mixture: ``K·D(D+1)/2 + K·D + K - 1``."""
    k = val.check_positive_int(n_components, "n_components", 1)
    d = val.check_positive_int(n_features, "n_features", 1)
    return k * d * (d + 1) // 2 + k * d + k - 1


@jax.jit
def _total_log_prob(params: GMMParams, x: Array, mask: Array) -> tuple[Array, Array]:
    log_prob = _log_prob(params, x)
    total = jnp.sum(jnp.where(mask, log_prob, 0.0))
    return total, jnp.sum(mask).astype(x.dtype)


def _criterion_terms(params: GMMParams, x: Any, mask: Any) -> tuple[Array, Array, int]:
    params, xa = _prepare(params, x)
    mask_a = val.as_mask(mask, xa.shape[0])
    xa = jnp.where(mask_a[:, None], xa, jnp.zeros((), xa.dtype))
    total, n = _total_log_prob(params, xa, mask_a)
    return total, n, n_parameters(params.n_components, params.n_features)


def bic(params: GMMParams, x: Any, mask: Any = None) -> Array:
    """Bayesian information criterion, ``-2 Σ_n log p(x_n) + p ln N`` (lower is better).

    Args:
        params: fitted parameters.
        x: ``[N, D]`` features.
        mask: optional ``[N]`` bool; masked samples count neither in the sum nor in ``N``.

    Returns:
        ``[]`` BIC in the dtype of ``x``.
    """
    total, n, p = _criterion_terms(params, x, mask)
    return -2.0 * total + p * jnp.log(n)


def aic(params: GMMParams, x: Any, mask: Any = None) -> Array:
    """Akaike information criterion, ``-2 Σ_n log p(x_n) + 2 p`` (lower is better).

    Args and returns as :func:`bic`.
    """
    total, _, p = _criterion_terms(params, x, mask)
    return -2.0 * total + 2.0 * p


class SelectionRow(NamedTuple):
    """One candidate of :func:`select_n_components`.

    Attributes:
        n_components: ``K``.
        criterion: BIC or AIC of the fit (lower is better); ``inf`` if the fit failed with a
            non positive-definite covariance.
        lower_bound: mean log-likelihood per sample of the fit (NaN if it failed).
        converged: whether EM converged (False if it failed).
    """

    n_components: int
    criterion: float
    lower_bound: float
    converged: bool


def sweep_candidates(
    x: Array,
    mask: Array,
    candidates: list[int],
    key: Array,
    *,
    criterion: str,
    max_iter: int,
    tol: float,
    reg_covar: float,
    n_init: int,
    init: str,
) -> SweepResult:
    """The compiled sweep over validated inputs (``x`` ``[N, D]``, ``mask`` ``[N]``).

    Returns:
        :class:`gmm._sweep.SweepResult` in the order of ``candidates``, with ``K_pad =
        max(candidates)`` component slots.
    """
    n_valid = val.n_valid_samples(mask)
    n_params = np.array([n_parameters(k, x.shape[1]) for k in candidates], dtype=np.float64)
    penalties = n_params * np.log(n_valid) if criterion == "bic" else 2.0 * n_params
    k_pad = max(candidates)
    # Static sets that depend on the largest candidate only, so that candidate lists with the
    # same largest K share one compiled sweep (init="random" draws through one branch per K of
    # the list, see gmm._em.initial_resp).
    trial_sizes = tuple(sorted({default_n_local_trials(k) for k in range(1, k_pad + 1)}))
    k_sizes = tuple(sorted(set(candidates))) if init == "random" else (k_pad,)
    return sweep_jit(
        x,
        mask,
        key,
        jnp.asarray(tol, x.dtype),
        jnp.asarray(reg_covar, x.dtype),
        jnp.asarray(candidates, jnp.int32),
        jnp.asarray([default_n_local_trials(k) for k in candidates], jnp.int32),
        jnp.asarray(penalties, x.dtype),
        n_slots=k_pad,
        trial_sizes=trial_sizes,
        k_sizes=k_sizes,
        max_iter=max_iter,
        n_init=n_init,
        init=init,
    )


def select_n_components(
    x: Any,
    candidates: Any = None,
    *,
    key: Any,
    criterion: str = "bic",
    mask: Any = None,
    max_iter: int = 100,
    tol: float = 1e-3,
    reg_covar: float = 1e-6,
    n_init: int = 1,
    init: str = "kmeans",
) -> tuple[FitResult, list[SelectionRow]]:
    """Fit every candidate number of components and keep the lowest criterion.

    All candidates run in one compiled program (:func:`gmm._sweep.sweep_jit`): the
    components are padded to the largest candidate and masked, the candidate ``K`` is a
    traced value, so the sweep compiles once per (N, D, largest ``K``, number of candidates,
    dtype, options), not once per ``K``. Candidate ``K`` is fitted with the key
    ``jax.random.fold_in(key, K)`` and equals ``gmm.fit(x, K, key=jax.random.fold_in(key, K),
    mask=mask, ...)`` with the same options (same initialisation, same iterations, up to the
    rounding of floating-point sums), so its fit does not depend on the other candidates. A
    candidate whose covariance is not positive definite after regularisation gets
    ``criterion = inf`` and is never chosen. Computation is in the dtype of ``x`` (float32
    or float64).

    Args:
        x: ``[N, D]`` features.
        candidates: iterable of ``K`` (any order, repeats allowed); default
            ``1 … min(49, N - 1)`` with ``N`` the number of unmasked samples, as in the
            authors' code (``range(1, min(50, N))``).
        key: PRNG key.
        criterion: ``"bic"`` (default) or ``"aic"``; lower is better.
        mask: optional ``[N]`` bool padding mask, used by the fits and the criterion.
        max_iter, tol, reg_covar, n_init, init: as :func:`gmm.fit` (defaults 100, 1e-3,
            1e-6, 1, ``"kmeans"``). Explicit initial values fix ``K``; use :func:`gmm.fit`.

    Returns:
        The best :class:`FitResult` (smallest ``K`` on ties; ``params`` with ``K``
        components) and the table, one :class:`SelectionRow` per candidate in the given order.

    Raises:
        ValueError: unknown criterion, empty candidate list, a candidate larger than the
            number of unmasked samples, or invalid inputs as in :func:`gmm.fit`.
        CovarianceError: (a ``ValueError``) every candidate failed.
    """
    if criterion not in CRITERIA:
        raise ValueError(f"criterion must be one of {CRITERIA}, got {criterion!r}.")
    key = val.check_key(key)
    xa = val.as_features(x)
    n_samples, n_features = xa.shape
    mask_a = val.as_mask(mask, n_samples)
    n_valid = val.n_valid_samples(mask_a)
    if candidates is None:
        candidates = range(1, min(50, n_valid))
    ks = [val.check_positive_int(k, "candidate n_components", 1) for k in candidates]
    if not ks:
        raise ValueError(
            "No candidate numbers of components (with N <= 1 unmasked samples the default "
            "range 1 … min(49, N - 1) is empty); pass candidates explicitly or more samples."
        )
    max_iter = val.check_positive_int(max_iter, "max_iter", 0)
    n_init = val.check_positive_int(n_init, "n_init", 1)
    init = val.check_init(init)
    tol = val.check_float(tol, "tol")
    reg_covar = val.check_float(reg_covar, "reg_covar", minimum=0.0)
    val.check_n_samples(n_valid, max(ks))
    val.check_finite_features(xa, mask_a)
    dtype = xa.dtype
    sweep = sweep_candidates(
        xa,
        mask_a,
        ks,
        key,
        criterion=criterion,
        max_iter=max_iter,
        tol=tol,
        reg_covar=reg_covar,
        n_init=n_init,
        init=init,
    )
    host = jax.device_get(sweep)  # one transfer; the rest is numpy (no dispatch, no compile)
    values = host.criterion.astype(np.float64)
    failed = host.fits.failed | ~np.isfinite(values)
    table = [
        SelectionRow(
            k,
            float("inf") if bad else float(value),
            float("nan") if bad else float(lower_bound),
            bool(converged) and not bad,
        )
        for k, value, lower_bound, converged, bad in zip(
            ks, values, host.fits.lower_bound, host.fits.converged, failed
        )
    ]
    if np.all(failed):
        raise CovarianceError(
            "Every candidate number of components failed. "
            + val.ill_defined_message(reg_covar, dtype)
        )
    order = sorted(np.flatnonzero(~failed), key=lambda i: (values[i], ks[i]))
    best, k = int(order[0]), ks[int(order[0])]
    fit = jax.tree.map(lambda a: a[best], host.fits)
    fit = fit._replace(params=GMMParams(*(a[:k] for a in fit.params)))
    return jax.tree.map(jnp.asarray, fit), table
