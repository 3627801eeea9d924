"""Static (trace-time) bookkeeping of irreps: which tensor-product paths each layer has.

Nothing here touches arrays; the functions turn a configuration into tuples of integers that the
layers read while tracing. Irreps are written ``(mul, l, p)`` with parity ``p = ±1``.

Batzner et al. (2022): a layer keeps only the hidden irreps that the tensor product of its input
features with the edge spherical harmonics (``0e + 1o + 2e + …`` up to ``lmax``) can reach; the
gate nonlinearity needs one extra scalar ("gate") per non-scalar output channel.
"""

from __future__ import annotations

from typing import NamedTuple

import e3nn_jax as e3nn
import numpy as np

__all__ = [
    "ConvolutionPlan",
    "LayerIrreps",
    "Mul",
    "convolution_plan",
    "layer_irreps",
    "packed_clebsch_gordan",
]

Mul = tuple[int, int, int]  # (multiplicity, l, parity)


def _triples(irreps: str | e3nn.Irreps) -> tuple[Mul, ...]:
    return tuple((mul, ir.l, ir.p) for mul, ir in e3nn.Irreps(irreps))


def _to_str(triples: tuple[Mul, ...]) -> str:
    parts = [f"{mul}x{ell}{'e' if p == 1 else 'o'}" for mul, ell, p in triples if mul > 0]
    return "+".join(parts) if parts else ""


def _reachable(irreps_in: tuple[Mul, ...], lmax_sh: int) -> set[tuple[int, int]]:
    """(l, p) pairs that ``irreps_in ⊗ (0e + 1o + … lmax_sh)`` contains."""
    out = set()
    for _, l1, p1 in irreps_in:
        for l2 in range(lmax_sh + 1):
            for l3 in range(abs(l1 - l2), l1 + l2 + 1):
                out.add((l3, p1 * (-1) ** l2))
    return out


class LayerIrreps(NamedTuple):
    """Irreps of one interaction block, as strings (flax-friendly).

    Attributes:
        inputs: irreps of the node features entering the block.
        conv_out: irreps produced by the convolution + self-connection: scalars, then gates,
            then gated irreps (the layout the gate expects).
        outputs: irreps after the gate (scalars + gated), regrouped.
        num_gates: number of gate scalars (= number of gated channels).
    """

    inputs: str
    conv_out: str
    outputs: str
    num_gates: int


def layer_irreps(
    inputs: str,
    hidden: str,
    lmax_sh: int,
    *,
    scalars_only: bool = False,
    odd_gate_activation_is_even: bool = False,
) -> LayerIrreps:
    """Irreps of an interaction block (Batzner et al. 2022; nequip ``ConvNetLayer``).

    Args:
        inputs: irreps of the incoming node features, e.g. ``"32x0e"`` for the first layer.
        hidden: the hidden irreps of the model, e.g. ``"32x0e+32x0o+32x1o+32x1e"``.
        lmax_sh: largest l of the edge spherical harmonics.
        scalars_only: keep only the ``0e`` outputs (the last block: only its even scalars reach
            the readout, so the other outputs would be dead computation).
        odd_gate_activation_is_even: the activation of odd gates is an even function (``abs``),
            so odd gates are even after it and keep the parity of the channels they gate; with
            an odd function (``tanh``) they flip it. Gates are odd only when ``0e`` is not
            reachable.

    Raises:
        ValueError: no hidden irrep is reachable from ``inputs``.
    """
    triples_in = _triples(e3nn.Irreps(inputs).regroup())
    reach = _reachable(triples_in, lmax_sh)
    hidden_t = _triples(hidden)
    if scalars_only:
        hidden_t = tuple(t for t in hidden_t if (t[1], t[2]) == (0, 1))
    kept = [t for t in hidden_t if (t[1], t[2]) in reach]
    if not kept:
        raise ValueError(
            f"no irrep of {hidden!r} is reachable from {inputs!r} with spherical harmonics up to "
            f"l={lmax_sh}; increase lmax or num_features."
        )
    scalars = tuple(t for t in kept if t[1] == 0)
    gated = tuple(t for t in kept if t[1] > 0)
    num_gates = sum(mul for mul, _, _ in gated)
    gate_parity = 1 if (0, 1) in reach else -1
    gates = ((num_gates, 0, gate_parity),) if num_gates else ()
    conv_out = _to_str(scalars + gates + gated)
    flip = 1 if odd_gate_activation_is_even else gate_parity
    gated_out = tuple((mul, ell, p * flip) for mul, ell, p in gated)
    outputs = str(e3nn.Irreps(_to_str(scalars + gated_out)).regroup())
    return LayerIrreps(
        inputs=str(e3nn.Irreps(inputs).regroup()),
        conv_out=conv_out,
        outputs=outputs,
        num_gates=num_gates,
    )


class ConvolutionPlan(NamedTuple):
    """Paths of the NequIP convolution ``TP(h_j, Y(r̂_ij))`` in "uvu" mode.

    For input irrep ``a = (mul_a, l1, p1)`` and spherical harmonic ``l2``, every output
    ``(l3, p1·(−1)^l2)`` with ``|l1 − l2| ≤ l3 ≤ l1 + l2`` that appears in the targets is a path;
    each path has ``mul_a`` channels and one weight per channel and edge. Paths of one input
    irrep with the same output ``(l3, p3)`` form a *group* and are computed together; the
    messages of all groups with the same output irrep are stacked along the channel axis.

    Attributes:
        inputs: the input irreps ``(mul, l, p)`` (regrouped).
        lmax_sh: largest l of the spherical harmonics.
        groups: for each input irrep, a tuple of groups ``(l3, p3, (l2, ...))``.
        outputs: the output irreps ``(M, l3, p3)`` in sorted order, ``M`` being the number of
            message channels (``sum mul_a · n_paths`` over the groups reaching it).
        num_weights: path weights per edge, ``sum_a mul_a · n_paths(a)``.
    """

    inputs: tuple[Mul, ...]
    lmax_sh: int
    groups: tuple[tuple[tuple[int, int, tuple[int, ...]], ...], ...]
    outputs: tuple[Mul, ...]
    num_weights: int

    @property
    def num_paths(self) -> int:
        return sum(len(l2s) for groups in self.groups for _, _, l2s in groups)


def convolution_plan(inputs: str, targets: str, lmax_sh: int) -> ConvolutionPlan:
    """All "uvu" paths from ``inputs ⊗ Y`` into the (l, p) present in ``targets``."""
    triples_in = _triples(e3nn.Irreps(inputs).regroup())
    wanted = {(ell, p) for _, ell, p in _triples(targets)}
    all_groups, num_weights = [], 0
    channels: dict[tuple[int, int], int] = {}
    for mul, l1, p1 in triples_in:
        by_output: dict[tuple[int, int], list[int]] = {}
        for l2 in range(lmax_sh + 1):
            p3 = p1 * (-1) ** l2
            for l3 in range(abs(l1 - l2), l1 + l2 + 1):
                if (l3, p3) in wanted:
                    by_output.setdefault((l3, p3), []).append(l2)
        groups = tuple((l3, p3, tuple(l2s)) for (l3, p3), l2s in sorted(by_output.items()))
        all_groups.append(groups)
        for l3, p3, l2s in groups:
            channels[(l3, p3)] = channels.get((l3, p3), 0) + mul * len(l2s)
            num_weights += mul * len(l2s)
    outputs = tuple((m, l3, p3) for (l3, p3), m in sorted(channels.items()))
    return ConvolutionPlan(triples_in, lmax_sh, tuple(all_groups), outputs, num_weights)


def packed_clebsch_gordan(l1: int, l3: int, l2s: tuple[int, ...], lmax_sh: int) -> np.ndarray:
    """Clebsch–Gordan coefficients of one path group, packed for one matmul.

    Returns ``C`` of shape ``[(lmax_sh + 1)^2, (2 l1 + 1) · (2 l3 + 1) · n]`` (``n = len(l2s)``)
    such that ``(Y @ C).reshape(-1, 2 l1 + 1, 2 l3 + 1, n)[e, i, k, g]`` is
    ``sum_j cg[i, j, k] Y_{l2_g}[e, j]``. The coefficients are e3nn's (Frobenius-normalised)
    times ``sqrt(2 l3 + 1)``: "component" normalisation, so that unit-variance inputs give
    unit-variance path outputs.
    """
    d1, d3 = 2 * l1 + 1, 2 * l3 + 1
    packed = np.zeros(((lmax_sh + 1) ** 2, d1, d3, len(l2s)))
    for g, l2 in enumerate(l2s):
        cg = np.asarray(e3nn.clebsch_gordan(l1, l2, l3)) * np.sqrt(d3)  # [d1, d2, d3]
        packed[l2 * l2 : (l2 + 1) ** 2, :, :, g] = cg.transpose(1, 0, 2)
    return packed.reshape((lmax_sh + 1) ** 2, d1 * d3 * len(l2s))
