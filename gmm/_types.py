"""Pytree containers of the Gaussian mixture: parameters and the result of a fit.

Both are NamedTuples, so they are pytrees that pass through ``jax.jit``/``vmap`` unchanged.
"""

from __future__ import annotations

from typing import NamedTuple

import jax
import jax.numpy as jnp
from jax.scipy.linalg import solve_triangular

Array = jax.Array


class GMMParams(NamedTuple):
    """Parameters of a full-covariance Gaussian mixture (Zhu et al. 2023, Eqs. (5)-(7)).

    The covariances are stored through the Cholesky factor of the precisions, as in
    scikit-learn: ``precisions_cholesky[k]`` is the upper-triangular ``P_k`` with
    ``P_k P_kᵀ = Σ_k⁻¹``, so that ``log N(x | μ_k, Σ_k) = -½ (D log 2π + ‖(x - μ_k)ᵀ P_k‖²)
    + Σ_d log (P_k)_dd``.

    Attributes:
        weights: ``[K]`` mixing weights, non-negative, summing to one.
        means: ``[K, D]`` component means.
        precisions_cholesky: ``[K, D, D]`` upper-triangular Cholesky factors of the precisions.
    """

    weights: Array
    means: Array
    precisions_cholesky: Array

    @property
    def n_components(self) -> int:
        """Number of components ``K``."""
        return int(self.means.shape[0])

    @property
    def n_features(self) -> int:
        """Feature dimension ``D``."""
        return int(self.means.shape[1])

    @property
    def precisions(self) -> Array:
        """``[K, D, D]`` precision matrices ``Σ_k⁻¹ = P_k P_kᵀ``."""
        p = jnp.asarray(self.precisions_cholesky)
        return jnp.einsum("kij,klj->kil", p, p, precision=jax.lax.Precision.HIGHEST)

    @property
    def covariances(self) -> Array:
        """``[K, D, D]`` covariance matrices ``Σ_k = P_k⁻ᵀ P_k⁻¹``.

        Computed with a triangular solve (``P_k`` upper triangular), not a general inverse.
        """
        return covariances_from_precisions_cholesky(jnp.asarray(self.precisions_cholesky))


class FitResult(NamedTuple):
    """Outcome of :func:`gmm.fit` (scikit-learn's ``fit`` semantics).

    Attributes:
        params: the fitted :class:`GMMParams` (the parameters after the last M-step).
        lower_bound: ``[]`` mean log-likelihood per (unmasked) sample computed in the E-step of
            the last iteration, i.e. of the parameters *before* the last M-step — exactly
            scikit-learn's ``lower_bound_``; ``-inf`` when ``max_iter == 0``. Higher is better.
        lower_bounds: ``[max_iter]`` the lower bound of every iteration (scikit-learn's
            ``lower_bounds_``); entries from index ``n_iter`` on were not run and hold NaN.
        n_iter: ``[]`` int, number of EM iterations run (scikit-learn's ``n_iter_``).
        converged: ``[]`` bool, the change of the lower bound fell below ``tol``.
        failed: ``[]`` bool. True when a covariance was not positive definite after
            regularisation (its Cholesky factor had NaN) or the likelihood was not finite. The
            loop then stops and ``params`` keep the last valid state. The eager :func:`gmm.fit`
            raises instead of returning a failed result, so this is only ever True for callers
            of the jitted core.
    """

    params: GMMParams
    lower_bound: Array
    lower_bounds: Array
    n_iter: Array
    converged: Array
    failed: Array


def covariances_from_precisions_cholesky(precisions_cholesky: Array) -> Array:
    """Covariances from upper-triangular precision Cholesky factors.

    Args:
        precisions_cholesky: ``[K, D, D]`` upper-triangular ``P_k`` with ``P_k P_kᵀ = Σ_k⁻¹``.

    Returns:
        ``[K, D, D]`` ``Σ_k = (P_k⁻¹)ᵀ P_k⁻¹``.
    """
    d = precisions_cholesky.shape[-1]
    eye = jnp.broadcast_to(jnp.eye(d, dtype=precisions_cholesky.dtype), precisions_cholesky.shape)
    p_inv = solve_triangular(precisions_cholesky, eye, lower=False)  # upper triangular
    return jnp.einsum("kji,kjl->kil", p_inv, p_inv, precision=jax.lax.Precision.HIGHEST)


class SufficientStats(NamedTuple):
    """Responsibility-weighted sums around reference centres ``c_k`` (one pass over the data).

    Attributes:
        resp_sum: ``[K]`` ``R_k = Σ_n r_nk``.
        diff_sum: ``[K, D]`` ``t_k = Σ_n r_nk (x_n - c_k)``.
        scatter: ``[K, D, D]`` ``S_k = Σ_n r_nk (x_n - c_k)(x_n - c_k)ᵀ``.
        log_prob_sum: ``[]`` ``Σ_n log p(x_n)`` over unmasked samples (0 when the
            responsibilities were given rather than computed).
    """

    resp_sum: Array
    diff_sum: Array
    scatter: Array
    log_prob_sum: Array
