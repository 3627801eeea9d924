"""Gaussian log-densities parametrised by the Cholesky factor of the precision.

All functions are pure, trace-safe and compute in the dtype of ``x``.
"""

from __future__ import annotations

import math

import jax
import jax.numpy as jnp
from jax.scipy.linalg import solve_triangular
from jax.scipy.special import logsumexp

from gmm._types import Array, GMMParams

_HI = jax.lax.Precision.HIGHEST


def log_det_cholesky(precisions_cholesky: Array) -> Array:
    """``[K]`` ``Σ_d log (P_k)_dd = -½ log det Σ_k`` for ``precisions_cholesky`` ``[K, D, D]``."""
    diag = jnp.diagonal(precisions_cholesky, axis1=-2, axis2=-1)
    return jnp.sum(jnp.log(diag), axis=-1)


def log_gaussian_prob(x: Array, means: Array, precisions_cholesky: Array) -> Array:
    """Per-component Gaussian log-densities, Zhu et al. 2023, Eq. (6) in log form.

    ``log N(x | μ_k, Σ_k) = -½ (D log 2π + ‖x P_k - μ_k P_k‖²) + Σ_d log (P_k)_dd``; the
    product ``x P_k`` is done for all ``k`` as one ``[N, D] × [D, K·D]`` matrix product.

    Args:
        x: ``[N, D]`` samples.
        means: ``[K, D]``.
        precisions_cholesky: ``[K, D, D]``.

    Returns:
        ``[N, K]`` log-densities.
    """
    n_features = x.shape[-1]
    y = jnp.einsum("nd,kde->nke", x, precisions_cholesky, precision=_HI)
    mu_p = jnp.einsum("kd,kde->ke", means, precisions_cholesky, precision=_HI)
    maha = jnp.sum(jnp.square(y - mu_p[None]), axis=-1)
    log_2pi = jnp.asarray(n_features * math.log(2.0 * math.pi), dtype=x.dtype)
    return -0.5 * (log_2pi + maha) + log_det_cholesky(precisions_cholesky)[None, :]


def weighted_log_prob(params: GMMParams, x: Array) -> Array:
    """``[N, K]`` ``log w_k + log N(x_n | μ_k, Σ_k)`` for ``x`` ``[N, D]``."""
    return (
        log_gaussian_prob(x, params.means, params.precisions_cholesky)
        + jnp.log(params.weights)[None, :]
    )


def log_prob_and_resp(params: GMMParams, x: Array) -> tuple[Array, Array]:
    """Log-density of the mixture and log-responsibilities (the E-step quantities).

    Args:
        params: mixture parameters (``K`` components, ``D`` features).
        x: ``[N, D]`` samples.

    Returns:
        ``log_prob`` ``[N]`` = ``log Σ_k w_k N(x_n | μ_k, Σ_k)`` (Zhu et al. 2023, Eq. (5),
        through ``logsumexp``) and ``log_resp`` ``[N, K]``, whose ``exp`` sums to one per row.
    """
    wlp = weighted_log_prob(params, x)
    log_prob = logsumexp(wlp, axis=1)
    return log_prob, wlp - log_prob[:, None]


def log_prob_and_resp_t(params: GMMParams, xt: Array) -> tuple[Array, Array]:
    """Mixture log-density and responsibilities of feature-major samples (the EM hot loop).

    Same formula as :func:`log_prob_and_resp` (``‖x P_k - μ_k P_k‖²`` as scikit-learn, here
    ``P_kᵀ x`` for all ``k`` as one ``[K·D, D] × [D, C]`` product), with samples on the minor
    axis and one ``exp`` per entry: with ``m = max_k wlp_k`` and ``e_k = exp(wlp_k - m)``,
    ``log_prob = m + log Σ_k e_k`` and ``resp_k = e_k / Σ_j e_j``. A sample whose
    log-densities are all ``-inf`` gets ``log_prob = -inf`` (and NaN responsibilities), which
    the caller detects through the likelihood.

    Args:
        params: mixture parameters (``K`` components, ``D`` features).
        xt: ``[D, C]`` samples, one per column.

    Returns:
        ``log_prob`` ``[C]`` and ``resp`` ``[K, C]`` (columns summing to one).
    """
    p = params.precisions_cholesky
    k, d = params.means.shape
    p_stack = jnp.swapaxes(p, 1, 2).reshape(k * d, d)  # rows (k, e): column e of P_k
    mu_p = jnp.einsum("kd,kde->ke", params.means, p, precision=_HI)
    y = jnp.matmul(p_stack, xt, precision=_HI).reshape(k, d, -1) - mu_p[:, :, None]
    log_2pi = jnp.asarray(d * math.log(2.0 * math.pi), dtype=xt.dtype)
    const = -0.5 * log_2pi + log_det_cholesky(p) + jnp.log(params.weights)
    wlp = const[:, None] - 0.5 * jnp.sum(jnp.square(y), axis=1)  # [K, C]
    top = jnp.max(wlp, axis=0)
    top = jnp.where(jnp.isfinite(top), top, 0.0)
    e = jnp.exp(wlp - top[None, :])
    total = jnp.sum(e, axis=0)
    return top + jnp.log(total), e / total[None, :]


def _factor_failed(p: Array) -> Array:
    """``[K]`` bool: the factor ``P_k`` ``[K, D, D]`` is not finite or has a diagonal <= 0."""
    diag = jnp.diagonal(p, axis1=-2, axis2=-1)
    return ~(jnp.all(jnp.isfinite(p), axis=(-2, -1)) & jnp.all(diag > 0, axis=-1))


def precision_cholesky_from_covariances(
    covariances: Array, active: Array | None = None
) -> tuple[Array, Array]:
    """Upper-triangular precision Cholesky factors from covariances, with a failure flag.

    ``Σ_k = L_k L_kᵀ`` (lower ``L_k``), ``P_k = L_k⁻ᵀ``. Inside jit a non positive definite
    ``Σ_k`` gives NaN in ``L_k``; that is reported in the flag instead of raised.

    Args:
        covariances: ``[K, D, D]`` symmetric matrices.
        active: optional ``[K]`` bool; inactive (padding) components are factorised as the
            identity and never fail. Default: all active.

    Returns:
        ``precisions_cholesky`` ``[K, D, D]`` and ``failed`` ``[]`` bool (the factor of some
        active component is not finite or has a non-positive diagonal).
    """
    d = covariances.shape[-1]
    eye = jnp.broadcast_to(jnp.eye(d, dtype=covariances.dtype), covariances.shape)
    if active is not None:
        covariances = jnp.where(active[:, None, None], covariances, eye)
    chol = jnp.linalg.cholesky(covariances)
    p = jnp.swapaxes(solve_triangular(chol, eye, lower=True), -1, -2)
    failed = _factor_failed(p)
    if active is not None:
        failed = failed & active
    return p, jnp.any(failed)


def precision_cholesky_from_precisions(precisions: Array) -> tuple[Array, Array]:
    """Upper-triangular ``P_k`` with ``P_k P_kᵀ = Λ_k`` from precision matrices ``Λ_k``.

    Uses the exchange matrix ``J``: ``J Λ J = C Cᵀ`` (lower ``C``) gives ``P = J C J``.

    Args:
        precisions: ``[K, D, D]`` symmetric positive definite matrices.

    Returns:
        ``precisions_cholesky`` ``[K, D, D]`` and ``failed`` ``[]`` bool.
    """
    flipped = jnp.flip(precisions, axis=(-2, -1))
    p = jnp.flip(jnp.linalg.cholesky(flipped), axis=(-2, -1))
    return p, jnp.any(_factor_failed(p))
