"""Building blocks of NequIP (Batzner et al. 2022) as thin flax modules over plain arrays.

Weights are drawn from N(0, 1) and every linear map divides by ``sqrt(fan_in)`` in the forward
pass (e3nn's "forward" initialisation, as in nequip), so that unit-variance inputs give
unit-variance outputs at initialisation whatever the widths.
"""

from __future__ import annotations

import functools
import math
from pathlib import Path

import e3nn_jax as e3nn
import flax.linen as nn
import jax
import jax.numpy as jnp

from nequip_jax.model._convolution import convolution
from nequip_jax.model._irreps import ConvolutionPlan, LayerIrreps, convolution_plan
from nequip_jax.model._radial import normalized_activation

__all__ = [
    "SpeciesLinear",
    "gate",
    "GATE_ACTIVATIONS",
    "InteractionBlock",
    "LINEAR_NORMALISATION",
    "auto_chunk_size",
    "cache_bytes",
]

# e3nn linear layers: weights N(0, 1) scaled by 1/sqrt(fan_in) in the forward pass, spelled out
# so that a changed global e3nn configuration cannot change the model.
LINEAR_NORMALISATION = {"path_normalization": "element", "gradient_normalization": "path"}


class SpeciesLinear(nn.Module):
    """Species-dependent equivariant linear map (the NequIP self-connection).

    Equivalent to e3nn's fully connected tensor product of the features with the one-hot species
    (nequip's ``sc``): one ``[mul_in, mul_out]`` matrix per species and matching irrep.

    Attributes:
        irreps_out: output irreps (string); outputs no input irrep can reach are zero.
        num_species: number of species.
    """

    irreps_out: str
    num_species: int

    @nn.compact
    def __call__(self, x: e3nn.IrrepsArray, species_onehot: jnp.ndarray) -> e3nn.IrrepsArray:
        """x: [n_node, irreps_in] (regrouped); species_onehot: [n_node, num_species]."""
        n_node = x.shape[0]
        chunks = []
        for i_out, (mul_out, ir_out) in enumerate(e3nn.Irreps(self.irreps_out)):
            matches = [
                (chunk, mul)
                for (mul, ir), chunk in zip(x.irreps, x.chunks, strict=True)
                if ir == ir_out and chunk is not None
            ]
            if not matches:
                chunks.append(None)
                continue
            chunk, mul_in = matches[0]  # regrouped input: at most one chunk per irrep
            w = self.param(
                f"w{i_out}_{ir_out}",
                nn.initializers.normal(1.0),
                (self.num_species * mul_in, mul_out),
                x.dtype,
            )
            # [n, S, mul_in, d] → [n, S·mul_in, d]: one matmul for all species at once (scalars
            # without their extent-one axis d, see nequip_jax.model._convolution).
            if ir_out.dim == 1:
                z = species_onehot[:, :, None] * chunk.reshape(n_node, 1, mul_in)
                z = z.reshape(n_node, self.num_species * mul_in)
                chunks.append((z @ w / math.sqrt(mul_in))[:, :, None])
                continue
            z = species_onehot[:, :, None, None] * chunk[:, None, :, :]
            z = z.reshape(n_node, self.num_species * mul_in, ir_out.dim)
            chunks.append(jnp.einsum("nkd,kv->nvd", z, w) / math.sqrt(mul_in))
        return e3nn.from_chunks(self.irreps_out, chunks, (n_node,), x.dtype)


@functools.cache
def cache_bytes() -> int:
    """Bytes of one core's level-2 cache on a CPU backend (Linux: read from sysfs), else 1 MiB
    (also when the size cannot be read): the size :func:`auto_chunk_size` aims a chunk's
    messages at."""
    default = 1 << 20
    if jax.default_backend() != "cpu":
        return default
    for index in sorted(Path("/sys/devices/system/cpu/cpu0/cache").glob("index*")):
        try:
            level = (index / "level").read_text().strip()
            kind = (index / "type").read_text().strip()
            size = (index / "size").read_text().strip()
        except OSError:
            continue
        if level == "2" and kind in ("Unified", "Data"):
            units = {"K": 1 << 10, "M": 1 << 20}
            value = int(size[:-1]) * units[size[-1]] if size[-1] in units else int(size)
            if value > 0:
                return value
    return default


def auto_chunk_size(
    plan: ConvolutionPlan,
    n_edge: int,
    *,
    chunk_bytes: int | None = None,
    max_unchunked_edges: int = 4096,
    max_unchunked_bytes: int = 24 << 20,
) -> int:
    """Edges per convolution chunk.

    All the edges in one chunk when there are at most ``max_unchunked_edges`` and their float32
    messages take at most ``max_unchunked_bytes``; otherwise the power of two in [128, 4096]
    whose messages take at most ``chunk_bytes`` (default :func:`cache_bytes`, one core's L2).

    Measured with experiments/bench/model_throughput.py, forward+forces on 32 3BPA molecules
    (10,000–14,000 edges): chunking made it 2–3× faster on a 2-core AMD EPYC (512 KiB L2), best
    at 256–1024 edges for f = 16, lmax = 1 and 128 for f = 32, lmax = 2; on a 2-core Intel Xeon
    (2 MiB L2), best at 2048 edges for f = 16 and 32, lmax = 1 (20–30 % faster than 512–1024)
    and 256–1024 for f = 32, lmax = 2: messages of one to two L2 per chunk on both. A training step
    on 5 molecules (1,500–2,200 edges) was faster in one chunk (64 vs 82 ms at f = 16, lmax = 1,
    r_max = 5: the second derivative through the rematerialised scan costs more than it saves)
    unless the messages are large (f = 32, lmax = 2, 2,200 edges ≈ 28 MB: 332 ms chunked vs
    361 ms in one chunk).
    """
    width = sum(m * (2 * ell + 1) for m, ell, _ in plan.outputs)
    if not isinstance(n_edge, int):  # symbolic (jax.export): one chunk, see convolution()
        return 1
    if n_edge <= max_unchunked_edges and n_edge * width * 4 <= max_unchunked_bytes:
        return max(n_edge, 1)
    budget = 2 * cache_bytes() if chunk_bytes is None else chunk_bytes
    edges = max(1, budget // (4 * width))
    return int(min(4096, max(128, 2 ** int(math.log2(edges)))))


#: Activations of the gate per nonlinearity family: ``(even scalars, odd scalars, even gates,
#: odd gates)``. ``"silu"``: this library's default; ``"ssp"``: nequip ≤ 0.5, the version of
#: Zhu et al. (2023) (``nonlinearity_scalars: {e: ssp, o: tanh}``, ``nonlinearity_gates:
#: {e: ssp, o: abs}``).
GATE_ACTIVATIONS = {
    "silu": ("silu", "tanh", "silu", "tanh"),
    "ssp": ("ssp", "tanh", "ssp", "abs"),
}


def gate(x: e3nn.IrrepsArray, layer: LayerIrreps, nonlinearity: str = "silu") -> e3nn.IrrepsArray:
    """Gate nonlinearity (Weiler et al. 2018; Batzner et al. 2022).

    Scalars go through an activation (by parity), gates through one (by parity) and multiply
    the non-scalar channels one to one; activations are normalised to unit second moment. The
    activations of each family are :data:`GATE_ACTIVATIONS` (``"silu"``: even scalars and gates
    SiLU, odd tanh; ``"ssp"``: even shifted softplus, odd scalars tanh, odd gates abs).

    Args:
        x: [n_node, layer.conv_out] laid out as scalars, gates, gated irreps (the last scalar
            entry of ``layer.conv_out`` is the gate block when ``layer.num_gates > 0``).
        layer: the block's irreps.
        nonlinearity: a key of :data:`GATE_ACTIVATIONS`.

    Returns:
        [n_node, layer.outputs] (regrouped).
    """
    n_node = x.shape[0]
    even, odd, even_gate, odd_gate = GATE_ACTIVATIONS[nonlinearity]
    act = {1: normalized_activation(even), -1: normalized_activation(odd)}
    gate_act = {1: normalized_activation(even_gate), -1: normalized_activation(odd_gate)}
    entries = list(e3nn.Irreps(layer.conv_out))
    n_scalar_entries = sum(1 for _, ir in entries if ir.l == 0)
    gate_entry = n_scalar_entries - 1 if layer.num_gates else None
    out_irreps, out_chunks, gated = [], [], []
    gates = None
    offset = 0
    for index, (mul, ir) in enumerate(entries):
        block = x.array[:, offset : offset + mul * ir.dim]
        offset += mul * ir.dim
        if index == gate_entry:
            # An even activation of odd gates (abs) makes them even.
            parity = 1 if ir.p == 1 or odd_gate == "abs" else -1
            gates = (parity, gate_act[ir.p](block))
        elif ir.l == 0:
            out_irreps.append((mul, ir))
            out_chunks.append(act[ir.p](block)[:, :, None])
        else:
            gated.append((mul, ir, block.reshape(n_node, mul, ir.dim)))
    g0 = 0
    for mul, ir, values in gated:
        gate_parity, gate_values = gates
        out_irreps.append((mul, e3nn.Irrep(ir.l, ir.p * gate_parity)))
        out_chunks.append(values * gate_values[:, g0 : g0 + mul, None])
        g0 += mul
    return e3nn.from_chunks(out_irreps, out_chunks, (n_node,), x.dtype).regroup()


class InteractionBlock(nn.Module):
    """One NequIP interaction block (Batzner et al. 2022, Fig. 1; nequip ``ConvNetLayer``).

    ``x → SC(x, species) + Linear₂(Conv(Linear₁(x)) / sqrt(avg_num_neighbors))`` → gate
    (→ ``+ x`` with ``residual`` when the irreps agree).

    Attributes:
        layer: the block's irreps (see :func:`nequip_jax.model._irreps.layer_irreps`).
        lmax_sh: largest l of the edge spherical harmonics.
        num_species: number of species.
        radial_mlp_depth, radial_mlp_width: radial MLP shape.
        avg_num_neighbors: normalisation of the neighbour sum.
        residual: add the input to the output when the irreps agree.
        edge_chunk_size: edges per chunk of the convolution (speed only); ``None``: automatic
            (see :func:`auto_chunk_size`).
        nonlinearity: the gate's and radial MLP's activation family (``"silu"`` or ``"ssp"``,
            see :data:`GATE_ACTIVATIONS`).
    """

    layer: LayerIrreps
    lmax_sh: int
    num_species: int
    radial_mlp_depth: int
    radial_mlp_width: int
    avg_num_neighbors: float
    residual: bool = False
    edge_chunk_size: int | None = None
    nonlinearity: str = "silu"

    @nn.compact
    def __call__(
        self,
        x: e3nn.IrrepsArray,
        sh: jnp.ndarray,
        embedding: jnp.ndarray,
        senders: jnp.ndarray,
        receivers: jnp.ndarray,
        species_onehot: jnp.ndarray,
        avg_num_neighbors: jnp.ndarray | None = None,
    ) -> e3nn.IrrepsArray:
        """Update node features.

        Args:
            x: [n_node, layer.inputs] node features.
            sh: [n_edge, (lmax_sh + 1)^2] edge spherical harmonics.
            embedding: [n_edge, num_basis] radial embedding (zero on padding edges).
            senders, receivers: [n_edge] node indices (message sender → receiver).
            species_onehot: [n_node, num_species].
            avg_num_neighbors: a traced scalar replacing the attribute (a per-member value of a
                vmapped group, see :class:`nequip_jax.model.RadialSettings`); ``None`` uses the
                attribute.

        Returns:
            [n_node, layer.outputs] new node features.
        """
        plan = convolution_plan(self.layer.inputs, self.layer.conv_out, self.lmax_sh)
        dtype = x.dtype
        self_connection = SpeciesLinear(self.layer.conv_out, self.num_species, name="sc")(
            x, species_onehot
        )
        # Self-interaction (linear_1), written straight into the channels-last layout.
        h = []
        for (mul, ir), chunk in zip(x.irreps, x.chunks, strict=True):
            w = self.param(f"linear_1_{ir}", nn.initializers.normal(1.0), (mul, mul), dtype)
            h.append(jnp.einsum("nud,uv->ndv", chunk, w / math.sqrt(mul)))
        widths = (
            [embedding.shape[-1]]
            + [self.radial_mlp_width] * self.radial_mlp_depth
            + [plan.num_weights]
        )
        mlp_weights = [
            self.param(f"radial_w{k}", nn.initializers.normal(1.0), (n_in, n_out), dtype)
            for k, (n_in, n_out) in enumerate(zip(widths[:-1], widths[1:], strict=True))
        ]
        aggregated = convolution(
            h,
            sh,
            embedding,
            mlp_weights,
            senders,
            receivers,
            plan,
            chunk_size=self.edge_chunk_size or auto_chunk_size(plan, sh.shape[0]),
            activation=GATE_ACTIVATIONS[self.nonlinearity][2],
        )
        # linear_2: each conv_out entry mixes all message channels of its irrep; the neighbour
        # normalisation 1/sqrt(avg_num_neighbors) is folded into the same scale.
        by_irrep = {
            (ell, p): (m, a) for (m, ell, p), a in zip(plan.outputs, aggregated, strict=True)
        }
        chunks = []
        for index, (mul_out, ir) in enumerate(e3nn.Irreps(self.layer.conv_out)):
            m, messages = by_irrep[(ir.l, ir.p)]
            w = self.param(
                f"linear_2_{index}_{ir}", nn.initializers.normal(1.0), (m, mul_out), dtype
            )
            if avg_num_neighbors is None:
                norm = 1.0 / math.sqrt(m * self.avg_num_neighbors)
            else:
                norm = 1.0 / jnp.sqrt(m * jnp.asarray(avg_num_neighbors, dtype))
            chunks.append(jnp.einsum("ndm,mv->nvd", messages, w * norm))
        conv = e3nn.from_chunks(self.layer.conv_out, chunks, (x.shape[0],), dtype)
        out = gate(conv + self_connection, self.layer, self.nonlinearity)
        if self.residual and out.irreps == x.irreps:
            out = out + x
        return out
