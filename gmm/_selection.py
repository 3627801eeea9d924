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
from gmm._em import CovarianceError, fit
from gmm._scoring import _log_prob, _prepare
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


def select_n_components(
    x: Any,
    candidates: Any = None,
    *,
    key: Any,
    criterion: str = "bic",
    mask: Any = None,
    **fit_kwargs: Any,
) -> tuple[FitResult, list[SelectionRow]]:
    """Fit every candidate number of components and keep the lowest criterion.

    A Python loop over ``K`` (each ``K`` is a new shape, hence one compiled :func:`gmm.fit`).
    Candidate ``K`` is fitted with the key ``jax.random.fold_in(key, K)``, so its fit does not
    depend on the other candidates. A candidate whose fit raises :class:`CovarianceError`
    gets ``criterion = inf`` and is never chosen; other errors propagate.

    Args:
        x: ``[N, D]`` features.
        candidates: iterable of ``K``; default ``1 … min(49, N - 1)`` with ``N`` the number of
            unmasked samples, as in the authors' code (``range(1, min(50, N))``).
        key: PRNG key.
        criterion: ``"bic"`` (default) or ``"aic"``; lower is better.
        mask: optional ``[N]`` bool padding mask, passed to the fits and the criterion.
        **fit_kwargs: passed to :func:`gmm.fit` (``max_iter``, ``tol``, ``reg_covar``, ...).

    Returns:
        The best :class:`FitResult` (smallest ``K`` on ties) and the table, one
        :class:`SelectionRow` per candidate in the given order.

    Raises:
        ValueError: unknown criterion, empty candidate list, or every candidate failed.
    """
    if criterion not in CRITERIA:
        raise ValueError(f"criterion must be one of {CRITERIA}, got {criterion!r}.")
    score_fn = bic if criterion == "bic" else aic
    key = val.check_key(key)
    xa = val.as_features(x)
    mask_a = val.as_mask(mask, xa.shape[0])
    if candidates is None:
        n_valid = val.n_valid_samples(mask_a)
        candidates = range(1, min(50, n_valid))
    ks = [val.check_positive_int(k, "candidate n_components", 1) for k in candidates]
    if not ks:
        raise ValueError(
            "No candidate numbers of components (with N <= 1 unmasked samples the default "
            "range 1 … min(49, N - 1) is empty); pass candidates explicitly or more samples."
        )
    table: list[SelectionRow] = []
    fits: list[FitResult | None] = []
    first_error: CovarianceError | None = None
    for k in ks:
        try:
            result = fit(xa, k, key=jax.random.fold_in(key, k), mask=mask_a, **fit_kwargs)
        except CovarianceError as err:
            first_error = first_error or err
            fits.append(None)
            table.append(SelectionRow(k, float("inf"), float("nan"), False))
            continue
        value = float(score_fn(result.params, xa, mask_a))
        fits.append(result)
        table.append(SelectionRow(k, value, float(result.lower_bound), bool(result.converged)))
    values = np.array([row.criterion for row in table])
    values = np.where(np.isfinite(values), values, np.inf)
    if not np.any(np.isfinite(values)):
        raise CovarianceError(f"Every candidate number of components failed. {first_error}")
    best = fits[int(np.argmin(values))]
    assert best is not None
    return best, table
