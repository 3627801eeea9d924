"""Evaluating a fitted mixture: log-density, negative log-likelihood, responsibilities.

Each public function validates shapes eagerly and calls a jitted kernel (compiled once per
shape and dtype). Values are in the dtype of ``x``.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import jax
import jax.numpy as jnp

from gmm import _validation as val
from gmm._chunks import chunk_rows, from_chunks, to_chunks
from gmm._gaussian import log_prob_and_resp
from gmm._types import Array, GMMParams


def _prepare(params: GMMParams, x: Any) -> tuple[GMMParams, Array]:
    xa = val.as_features(x)
    val.check_params(params, n_features=xa.shape[1])
    params = GMMParams(*(jnp.asarray(a, dtype=xa.dtype) for a in params))
    return params, xa


def _map_chunks(fn: Callable[[Array], Array], params: GMMParams, x: Array) -> Array:
    """``fn`` over fixed-size chunks of ``x`` (``lax.map``): memory O(chunk·K·D), not N·K·D.

    A symbolic number of samples (a ``jax.export`` program for any N) is one chunk."""
    if not isinstance(x.shape[0], int):
        return fn(x)
    rows = chunk_rows(x.shape[0], params.means.shape[0], x.shape[1])
    return from_chunks(jax.lax.map(fn, to_chunks(x, rows)), x.shape[0])


@jax.jit
def _log_prob(params: GMMParams, x: Array) -> Array:
    """``[N]`` mixture log-density of ``x`` ``[N, D]`` (traceable, no validation)."""
    return _map_chunks(lambda xc: log_prob_and_resp(params, xc)[0], params, x)


@jax.jit
def _resp(params: GMMParams, x: Array) -> Array:
    """``[N, K]`` responsibilities of ``x`` ``[N, D]`` (traceable, no validation)."""
    return _map_chunks(lambda xc: jnp.exp(log_prob_and_resp(params, xc)[1]), params, x)


def score_samples(params: GMMParams, x: Any) -> Array:
    """Log-density of the mixture per sample, ``log Σ_k w_k N(x | μ_k, Σ_k)`` (Eq. (5)).

    Args:
        params: fitted parameters (``K`` components, ``D`` features).
        x: ``[N, D]`` features.

    Returns:
        ``[N]`` log-densities (higher = more typical of the training data).
    """
    params, xa = _prepare(params, x)
    return _log_prob(params, xa)


def nll(params: GMMParams, x: Any) -> Array:
    """Negative log-likelihood per sample, the uncertainty of Zhu et al. 2023, Eq. (8).

    Args:
        params: fitted parameters.
        x: ``[N, D]`` features.

    Returns:
        ``[N]`` ``-score_samples(params, x)``; higher = more uncertain.
    """
    return -score_samples(params, x)


def predict_proba(params: GMMParams, x: Any) -> Array:
    """Posterior component probabilities (responsibilities) per sample.

    Args:
        params: fitted parameters.
        x: ``[N, D]`` features.

    Returns:
        ``[N, K]``, each row summing to one (computed through ``logsumexp``).
    """
    params, xa = _prepare(params, x)
    return _resp(params, xa)


def predict(params: GMMParams, x: Any) -> Array:
    """Most probable component per sample, ``[N]`` int32 (``argmax`` of :func:`predict_proba`)."""
    return jnp.argmax(predict_proba(params, x), axis=1).astype(jnp.int32)
