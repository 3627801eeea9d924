"""The NequIP convolution as a pure function of plain arrays (Batzner et al. 2022, Eq. (3)).

For every edge ``e = (j → i)`` and every path ``(a, l2 → l3)`` of a :class:`ConvolutionPlan`::

    m_i[path, u, k] = sum_{e → i} w_e[path, u] · sum_{m, q} C[m, q, k] h_j[a, u, m] Y_e[l2, q]

with ``h`` the (already self-interacted) node features, ``Y`` the edge spherical harmonics and
``w`` the path weights from the radial MLP of the edge embedding.

Implementation notes (the forward+forces pass is memory-bound on a CPU, and what matters is as
much the backward pass as the forward one):

- features are kept "channels last", ``[.., 2l+1, mul]``, one array per irrep, so the per-edge
  arithmetic runs along the channels and vectorises;
- the Clebsch–Gordan contraction is done in two steps: a small per-edge matmul ``B_e = Y_e @ C``
  ([d1, d3, n_paths] per edge, shared by all channels), then ``sum_m h[m, u] B[m, k, g]`` written
  out as a sum over the (at most 2 lmax + 1) components ``m``, one output component ``k`` at a
  time, so that neither it nor its reverse pass is a reduction over a small middle axis;
- no per-edge array has an axis of extent one (``l = 0`` irreps and one-path groups drop it):
  on a CPU, jaxlib's default YNNPACK fusions treat such an axis as a broadcast, and their
  reductions of these arrays (the reverse pass of every broadcast product) run 30–50× slower
  than XLA's loops (jaxlib 0.10), enough to make forward+forces ~15× slower under a plain
  ``jax.jit`` than with :func:`nequip_jax.model.compiler_options`;
  tests/model/test_compiled_program.py checks the compiled program for such reductions;
- one matmul per path group for the weights, one accumulator per output irrep for the messages;
- edges are processed in chunks by ``lax.scan`` under ``jax.checkpoint``: gather, radial MLP,
  messages and scatter-add all work on cache-sized arrays, and the backward pass recomputes a
  chunk instead of storing [n_edge, D] residuals.
"""

from __future__ import annotations

import math
from collections.abc import Sequence

import e3nn_jax as e3nn
import jax
import jax.numpy as jnp

from nequip_jax.model._irreps import ConvolutionPlan, packed_clebsch_gordan
from nequip_jax.model._radial import radial_mlp

__all__ = ["channels_last_blocks", "convolution", "edge_messages", "group_columns"]


def channels_last_blocks(x: e3nn.IrrepsArray) -> list[jnp.ndarray]:
    """One ``[n, 2l+1, mul]`` array per irrep of ``x`` (e3nn stores ``[mul, 2l+1]``)."""
    return [
        jnp.swapaxes(chunk, 1, 2)
        for (mul, _), chunk in zip(x.irreps, x.chunks, strict=True)
        if chunk is not None and mul > 0
    ]


def group_columns(plan: ConvolutionPlan) -> list[tuple[int, int]]:
    """``(start, stop)`` of each path group's weights ``[n_paths, mul]`` in the
    ``plan.num_weights`` outputs of the radial MLP (input irrep major, then group)."""
    columns, w0 = [], 0
    for (mul, _, _), groups in zip(plan.inputs, plan.groups, strict=True):
        for _, _, l2s in groups:
            columns.append((w0, w0 + len(l2s) * mul))
            w0 += len(l2s) * mul
    return columns


def _columns(b: jnp.ndarray, count: int, n: int) -> list[jnp.ndarray]:
    """The ``count`` consecutive column blocks of width ``n`` of ``b`` [n_edge, count · n], each
    [n_edge, n] ([n_edge] when ``n = 1``)."""
    n_edge = b.shape[0]
    if count == 1:
        return [b if n > 1 else b.reshape(n_edge)]
    b = b.reshape(n_edge, count, n) if n > 1 else b
    return [b[:, j] for j in range(count)]


def _scaled(x: jnp.ndarray, column: jnp.ndarray) -> jnp.ndarray:
    """[n_edge, n, mul] ``x[e, u] · column[e, g]`` ([n_edge, mul] for a column [n_edge])."""
    n_edge, mul = x.shape
    if column.ndim == 1:
        return x * jax.lax.broadcast_in_dim(column, (n_edge, mul), (0,))
    shape = (n_edge, column.shape[1], mul)
    return jax.lax.broadcast_in_dim(x, shape, (0, 2)) * jax.lax.broadcast_in_dim(
        column, shape, (0, 1)
    )


def edge_messages(
    sender_blocks: Sequence[jnp.ndarray],
    sh: jnp.ndarray,
    group_weights: Sequence[jnp.ndarray],
    plan: ConvolutionPlan,
) -> list[jnp.ndarray]:
    """Per-edge messages of all paths, one array per output irrep.

    For each output component ``k`` of a path group, ``sum_m x[e, m, u] B[e, m, k, g]`` is an
    explicit sum over the ``2 l1 + 1`` components ``m`` and is multiplied by the path weights
    ``w[e, g, u]`` before the components are stacked. No array here or in the reverse pass has
    an axis of extent one (an ``l = 0`` irrep or a one-path group is stored without that axis),
    and the only reductions of the reverse pass run over the paths ``g`` or the channels
    ``u``; see the module notes.

    Args:
        sender_blocks: for each input irrep of ``plan.inputs``, [n_edge, 2 l1 + 1, mul] features
            of each edge's sender (see :func:`channels_last_blocks`).
        sh: [n_edge, (lmax_sh + 1)^2] edge spherical harmonics (component normalisation).
        group_weights: for each path group (input irrep major), [n_edge, n_paths · mul] path
            weights laid out ``[n_paths, mul]``.
        plan: the paths.

    Returns:
        For each ``(M, l3, p3)`` of ``plan.outputs``, [n_edge, 2 l3 + 1, M] messages; the
        channels are the groups reaching that irrep in input order, each ``[n_paths, mul]``.
    """
    n_edge = sh.shape[0]
    dtype = sh.dtype
    parts: dict[tuple[int, int], list[jnp.ndarray]] = {}
    weights = iter(group_weights)
    for (mul, l1, _), groups, x in zip(plan.inputs, plan.groups, sender_blocks, strict=True):
        d1 = 2 * l1 + 1
        x_m = [x[:, m, :] for m in range(d1)] if d1 > 1 else [x.reshape(n_edge, mul)]
        for l3, p3, l2s in groups:
            n, d3 = len(l2s), 2 * l3 + 1
            packed = jnp.asarray(packed_clebsch_gordan(l1, l3, l2s, plan.lmax_sh), dtype)
            # Column (m, k) of B_e = Y_e @ C is cols[m * d3 + k].
            cols = _columns(sh @ packed, d1 * d3, n)
            w = next(weights)
            w = w.reshape(n_edge, n, mul) if n > 1 else w
            components = []
            for k in range(d3):
                t = _scaled(x_m[0], cols[k])
                for m in range(1, d1):
                    t = t + _scaled(x_m[m], cols[m * d3 + k])
                components.append((t * w).reshape(n_edge, n * mul))
            stacked = (
                jnp.stack(components, axis=1) if d3 > 1 else components[0][:, None, :]
            )  # [n_edge, d3, n · mul]
            parts.setdefault((l3, p3), []).append(stacked)
    return [
        jnp.concatenate(parts[(l3, p3)], axis=2) if len(parts[(l3, p3)]) > 1 else parts[(l3, p3)][0]
        for _, l3, p3 in plan.outputs
    ]


def convolution(
    node_blocks: Sequence[jnp.ndarray],
    sh: jnp.ndarray,
    embedding: jnp.ndarray,
    mlp_weights: Sequence[jnp.ndarray],
    senders: jnp.ndarray,
    receivers: jnp.ndarray,
    plan: ConvolutionPlan,
    *,
    chunk_size: int = 512,
    activation: str = "silu",
) -> list[jnp.ndarray]:
    """Gather senders, weight the tensor-product paths by the radial MLP, sum on receivers.

    Args:
        node_blocks: for each input irrep of ``plan.inputs``, [n_node, 2 l1 + 1, mul] node
            features (channels last).
        sh: [n_edge, (lmax_sh + 1)^2] spherical harmonics of the edge directions.
        embedding: [n_edge, num_basis] radial embedding (zero on padding edges, which makes
            their path weights and messages exactly zero).
        mlp_weights: the radial MLP's matrices (see :func:`radial_mlp`); the last one has
            ``plan.num_weights`` columns (see :func:`group_columns`).
        senders, receivers: [n_edge] int node indices in ``[0, n_node)`` (message j → i).
        plan: the paths.
        chunk_size: edges per chunk (a speed knob; results do not depend on it).
        activation: the radial MLP's activation (see :func:`radial_mlp`).

    Returns:
        For each ``(M, l3, p3)`` of ``plan.outputs``, [n_node, 2 l3 + 1, M] summed messages (not
        yet divided by the neighbour normalisation).
    """
    n_node, n_edge = node_blocks[0].shape[0], sh.shape[0]
    *hidden_weights, last = mlp_weights
    scale = 1.0 / math.sqrt(last.shape[0])
    last_blocks = [last[:, a:b] * scale for a, b in group_columns(plan)]

    def chunk_messages(s, r, y, emb, acc):
        hidden = radial_mlp(hidden_weights, emb, final_activation=True, activation=activation)
        group_weights = [hidden @ w for w in last_blocks]
        sender_blocks = [x.at[s].get(mode="promise_in_bounds") for x in node_blocks]
        messages = edge_messages(sender_blocks, y, group_weights, plan)
        return [
            a.at[r].add(m, mode="promise_in_bounds") for a, m in zip(acc, messages, strict=True)
        ]

    zeros = [jnp.zeros((n_node, 2 * l3 + 1, m), sh.dtype) for m, l3, _ in plan.outputs]
    # A symbolic edge count (a program exported for any number of atoms) is one chunk.
    if not isinstance(n_edge, int) or n_edge <= chunk_size:
        return chunk_messages(senders, receivers, sh, embedding, zeros)

    n_chunks = math.ceil(n_edge / chunk_size)
    pad = n_chunks * chunk_size - n_edge

    def split(a):  # pad with zero edges 0 → 0 (zero embedding: zero messages)
        a = jnp.pad(a, ((0, pad),) + ((0, 0),) * (a.ndim - 1))
        return a.reshape((n_chunks, chunk_size) + a.shape[1:])

    @jax.checkpoint
    def body(acc, xs):
        s, r, y, emb = xs
        return chunk_messages(s, r, y, emb, acc), None

    acc, _ = jax.lax.scan(
        body, zeros, (split(senders), split(receivers), split(sh), split(embedding))
    )
    return acc
