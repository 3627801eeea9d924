"""The moments form of the float64 EM pass (see :mod:`gmm._em`).

With ``z(x) = [x_i x_j (i ≤ j), x]`` of the mean-centred samples, ``log w_k + log N(x | μ_k,
Σ_k)`` is linear in ``z``: the weighted log-densities of all components are one ``[N, F] × [F,
K]`` product and the M-step's responsibility-weighted sums another, ``F = D(D+1)/2 + D``. The
sums are around the origin (the samples' mean), so the covariances come out of
:func:`gmm._em.params_from_stats` with zero reference centres.
"""

from __future__ import annotations

import math
from typing import NamedTuple

import jax
import jax.numpy as jnp

from gmm._chunks import to_chunks
from gmm._types import Array, GMMParams, SufficientStats

_HI = jax.lax.Precision.HIGHEST


#: Largest ``N × F`` (samples × moment features) whose moments are kept for the whole fit; larger
#: float64 problems use the centred pass.
MOMENT_ELEMENTS = 2**24
#: Rows per chunk of the moments pass (the ``[rows, K]`` responsibilities stay small).
_MOMENT_ROWS = 4096


def upper_pairs(n_features: int) -> tuple[tuple[int, ...], tuple[int, ...]]:
    """Row and column indices of the upper triangle (``i ≤ j``), row by row (numpy order)."""
    rows, cols = zip(*[(i, j) for i in range(n_features) for j in range(i, n_features)])
    return rows, cols


def use_moments(x: Array) -> bool:
    """Whether the EM pass of ``x`` ``[N, D]`` runs on moments (float64, moments small enough)."""
    n, d = x.shape
    return x.dtype == jnp.float64 and n * (d * (d + 1) // 2 + d + 1) <= MOMENT_ELEMENTS


class Moments(NamedTuple):
    """The samples as the moments pass reads them (:func:`moment_data`).

    Attributes:
        zs: ``[n_chunks, rows, F]`` ``z(x_n - offset)`` = the upper-triangular products and
            the coordinates; zero rows where masked.
        ms: ``[n_chunks, rows]`` bool mask.
        offset: ``[D]`` mean of the unmasked samples.
    """

    zs: Array
    ms: Array
    offset: Array


def moment_data(x: Array, mask: Array) -> Moments:
    """:class:`Moments` of ``x`` ``[N, D]`` (zero where ``mask`` ``[N]`` is False)."""
    n, d = x.shape
    n_valid = jnp.maximum(jnp.sum(mask), 1).astype(x.dtype)
    offset = jnp.sum(jnp.where(mask[:, None], x, 0.0), axis=0) / n_valid
    xc = jnp.where(mask[:, None], x - offset, 0.0)
    i, j = upper_pairs(d)
    z = jnp.concatenate([xc[:, i] * xc[:, j], xc], axis=1)
    rows = min(_MOMENT_ROWS, -(-n // 8) * 8)
    return Moments(to_chunks(z, rows), to_chunks(mask, rows), offset)


def moment_stats(params: GMMParams, data: Moments) -> SufficientStats:
    """E-step fused with the M-step's sums on moments (see the module docstring).

    ``log w_k + log N(x | μ_k, Σ_k) = c_k + bᵀ_k x − ½ xᵀ Λ_k x`` with ``Λ_k = P_k P_kᵀ``,
    ``b_k = Λ_k μ_k``, ``c_k = log w_k + Σ_d log (P_k)_dd − ½ (D log 2π + μ_kᵀ b_k)``: one
    ``[rows, F] × [F, K]`` product per chunk (``z`` without its constant), then a stable
    log-sum-exp over ``k`` and ``Σ_n r_nk z(x_n)`` as ``[K, rows] × [rows, F]``.

    Args:
        params: current parameters, means relative to ``data.offset``.
        data: the moments.

    Returns:
        :class:`SufficientStats` around the origin (``c_k = 0``; relative to ``data.offset``).
    """
    k, d = params.means.shape
    p = params.precisions_cholesky
    lam = jnp.einsum("kij,klj->kil", p, p, precision=_HI)
    b = jnp.einsum("kij,kj->ki", lam, params.means, precision=_HI)
    i, j = upper_pairs(d)
    twice = jnp.asarray([1.0 if a == c else 2.0 for a, c in zip(i, j)], params.means.dtype)
    log_2pi = d * math.log(2.0 * math.pi)
    const = (
        jnp.log(params.weights)
        + jnp.sum(jnp.log(jnp.diagonal(p, axis1=1, axis2=2)), axis=1)
        - 0.5 * (log_2pi + jnp.sum(b * params.means, axis=1))
    )
    w = jnp.concatenate([-0.5 * twice * lam[:, i, j], b], axis=1)  # [K, F]

    def body(acc: tuple[Array, Array, Array], chunk: tuple[Array, Array]):
        z, mc = chunk
        # Components on the major axis: the reductions over k run along rows of samples.
        wlp = jnp.matmul(w, z.T, precision=_HI) + const[:, None]  # [K, rows]
        top = jnp.max(wlp, axis=0)
        top = jnp.where(jnp.isfinite(top), top, 0.0)
        e = jnp.exp(wlp - top[None, :])
        total = jnp.sum(e, axis=0)
        resp = jnp.where(mc[None, :], e / total[None, :], 0.0)
        log_prob = jnp.where(mc, top + jnp.log(total), 0.0)
        sums = jnp.matmul(resp, z, precision=_HI)  # [K, F]
        return (acc[0] + jnp.sum(resp, axis=1), acc[1] + sums, acc[2] + jnp.sum(log_prob)), None

    dtype = data.zs.dtype
    zero = (jnp.zeros((k,), dtype), jnp.zeros((k, w.shape[1]), dtype), jnp.zeros((), dtype))
    (resp_sum, sums, log_prob_sum), _ = jax.lax.scan(body, zero, (data.zs, data.ms))
    return _moment_sums_to_stats(resp_sum, sums, log_prob_sum, d)


def moment_resp_stats(resp: Array, data: Moments) -> SufficientStats:
    """:class:`SufficientStats` around the origin (relative to ``data.offset``) of given
    responsibilities ``resp`` ``[N, K]`` (zero rows where masked): one product
    ``Σ_n r_nk z(x_n)``."""
    chunks = to_chunks(resp, data.zs.shape[1])  # [n_chunks, rows, K]
    sums = jnp.einsum("cnk,cnf->kf", chunks, data.zs, precision=_HI)
    d = data.offset.shape[0]
    return _moment_sums_to_stats(jnp.sum(resp, axis=0), sums, jnp.zeros((), resp.dtype), d)


def _moment_sums_to_stats(resp_sum: Array, sums: Array, log_prob_sum: Array, d: int):
    i, j = upper_pairs(d)
    n_t = len(i)
    upper = jnp.zeros((sums.shape[0], d, d), sums.dtype).at[:, i, j].set(sums[:, :n_t])
    scatter = upper + jnp.swapaxes(jnp.triu(upper, 1), 1, 2)
    return SufficientStats(resp_sum, sums[:, n_t:], scatter, log_prob_sum)


def shift_means(params: GMMParams, offset: Array, active: Array | None) -> GMMParams:
    """``params`` with ``offset`` added to the means of the active components (the others keep
    zero means)."""
    means = params.means + offset
    if active is not None:
        means = jnp.where(active[:, None], means, 0.0)
    return params._replace(means=means)
