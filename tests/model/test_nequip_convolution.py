"""The convolution, self-connection, gate and irreps bookkeeping against reference implementations
(e3nn-jax's generic tensor product and gate, brute-force loops) and literal tables."""

import e3nn_jax as e3nn
import jax
import jax.numpy as jnp
import numpy as np
import pytest

from nequip_jax.model._blocks import SpeciesLinear, auto_chunk_size, cache_bytes, gate
from nequip_jax.model._config import hidden_irreps
from nequip_jax.model._convolution import (
    channels_last_blocks,
    convolution,
    edge_messages,
    group_columns,
)
from nequip_jax.model._irreps import convolution_plan, layer_irreps
from nequip_jax.model._radial import radial_mlp

CASES = [
    ("3x0e", "3x0e+3x0o+3x1o+3x1e", 1),
    ("3x0e+3x0o+3x1o+3x1e", "3x0e+3x0o+3x1o+3x1e", 1),
    ("2x0e+2x1o+2x2e", "2x0e+2x1o+2x2e", 2),
    ("2x0e+2x0o+2x1o+2x1e+2x2e+2x2o", "2x0e+2x0o+2x1o+2x1e+2x2e+2x2o", 2),
]


def _reference_messages(x, sh, weights, plan):
    """Messages path by path with e3nn_jax.tensor_product (full CG contraction, one path at a
    time): for each output irrep of the plan, [E, M, 2 l3 + 1] with the channels ordered input
    irrep, path, channel."""
    n_edge = x.shape[0]
    parts, w0 = {}, 0
    for (mul, l1, p1), groups, chunk in zip(plan.inputs, plan.groups, x.chunks, strict=True):
        xa = e3nn.IrrepsArray(e3nn.Irreps([(mul, (l1, p1))]), chunk.reshape(n_edge, -1))
        for l3, p3, l2s in groups:
            w = weights[:, w0 : w0 + len(l2s) * mul].reshape(n_edge, len(l2s), mul)
            w0 += len(l2s) * mul
            for g, l2 in enumerate(l2s):
                y = sh.filter(keep=[e3nn.Irrep(l2, (-1) ** l2)])
                t = e3nn.tensor_product(xa, y, filter_ir_out=[e3nn.Irrep(l3, p3)])
                parts.setdefault((l3, p3), []).append(t.chunks[0] * w[:, g, :, None])
    return [jnp.concatenate(parts[(l3, p3)], axis=1) for _, l3, p3 in plan.outputs]


def _random_inputs(layer, lmax, n_edge, seed):
    rng = np.random.default_rng(seed)
    x = e3nn.IrrepsArray(
        layer.inputs, jnp.asarray(rng.normal(size=(n_edge, e3nn.Irreps(layer.inputs).dim)))
    )
    sh = e3nn.spherical_harmonics(
        e3nn.Irreps.spherical_harmonics(lmax),
        jnp.asarray(rng.normal(size=(n_edge, 3))),
        normalize=True,
        normalization="component",
    )
    return rng, x, sh


@pytest.mark.parametrize("inputs,hidden,lmax", CASES)
def test_edge_messages_match_e3nn_tensor_product(x64, inputs, hidden, lmax):
    layer = layer_irreps(inputs, hidden, lmax)
    plan = convolution_plan(layer.inputs, layer.conv_out, lmax)
    rng, x, sh = _random_inputs(layer, lmax, 7, seed=0)
    weights = jnp.asarray(rng.normal(size=(7, plan.num_weights)))
    got = jax.jit(
        lambda x, y, w: edge_messages(
            channels_last_blocks(x), y, [w[:, a:b] for a, b in group_columns(plan)], plan
        )
    )(x, sh.array, weights)
    ref = jax.jit(lambda x, y, w: _reference_messages(x, y, w, plan))(x, sh, weights)
    assert len(got) == len(ref) == len(plan.outputs)
    for (m, l3, _), a, b in zip(plan.outputs, got, ref, strict=True):
        assert a.shape == (7, 2 * l3 + 1, m)
        np.testing.assert_allclose(np.swapaxes(a, 1, 2), b, rtol=1e-12, atol=1e-12)


@pytest.mark.parametrize("chunk_size", [5, 16, 1000])
def test_chunked_convolution_equals_brute_force_sum(x64, chunk_size):
    inputs, hidden, lmax = CASES[1]
    layer = layer_irreps(inputs, hidden, lmax)
    plan = convolution_plan(layer.inputs, layer.conv_out, lmax)
    n_node, n_edge = 6, 23
    rng, x, sh = _random_inputs(layer, lmax, n_node, seed=1)
    sh = e3nn.spherical_harmonics(
        e3nn.Irreps.spherical_harmonics(lmax),
        jnp.asarray(rng.normal(size=(n_edge, 3))),
        True,
        "component",
    )
    senders = rng.integers(0, n_node, n_edge)
    receivers = rng.integers(0, n_node, n_edge)
    embedding = jnp.asarray(rng.normal(size=(n_edge, 8)))
    mlp = [jnp.asarray(rng.normal(size=s)) for s in [(8, 5), (5, plan.num_weights)]]

    got = jax.jit(
        lambda x, y, emb, mlp: convolution(
            channels_last_blocks(x), y, emb, mlp, senders, receivers, plan, chunk_size=chunk_size
        )
    )(x, sh.array, embedding, mlp)
    per_edge = jax.jit(
        lambda x, y, emb, mlp: _reference_messages(
            e3nn.IrrepsArray(x.irreps, x.array[senders]), y, radial_mlp(mlp, emb), plan
        )
    )(x, sh, embedding, mlp)
    for a, edge_values in zip(got, per_edge, strict=True):
        expected = np.zeros((n_node,) + edge_values.shape[1:])
        np.add.at(expected, receivers, np.asarray(edge_values))  # brute-force neighbour sum
        np.testing.assert_allclose(np.swapaxes(a, 1, 2), expected, rtol=1e-11, atol=1e-11)


def test_layer_irreps_known_table():
    # f = 2, lmax = 1, parity: literal table worked out by hand from 0e ⊗ (0e + 1o) etc.
    hidden = hidden_irreps(2, 1, True)
    assert hidden == "2x0e+2x0o+2x1o+2x1e"
    first = layer_irreps("2x0e", hidden, 1)
    assert first.conv_out == "2x0e+2x0e+2x1o"  # scalars, 2 gates, gated 1o
    assert first.outputs == "2x0e+2x1o" and first.num_gates == 2
    second = layer_irreps(
        first.outputs, hidden, 1
    )  # 0o is not reachable yet (needs 1o ⊗ 1o → 0e only)
    assert second.conv_out == "2x0e+4x0e+2x1o+2x1e"
    third = layer_irreps(second.outputs, hidden, 1)
    assert third.conv_out == "2x0e+2x0o+4x0e+2x1o+2x1e"
    assert third.outputs == "2x0e+2x0o+2x1o+2x1e"
    last = layer_irreps(third.outputs, hidden, 1, scalars_only=True)
    assert (last.conv_out, last.outputs, last.num_gates) == ("2x0e", "2x0e", 0)
    assert hidden_irreps(3, 2, False) == "3x0e+3x1o+3x2e"
    # Paths from 1o with lmax 1 into 0e+0o+1o+1e: 1o⊗0e → 1o; 1o⊗1o → 0e, 1e (2e dropped).
    plan = convolution_plan("2x1o", "2x0e+2x0o+2x1o+2x1e", 1)
    assert plan.groups == (((0, 1, (1,)), (1, -1, (0,)), (1, 1, (1,))),)
    assert plan.num_weights == 2 * 3
    assert plan.outputs == ((2, 0, 1), (2, 1, -1), (2, 1, 1))
    # With lmax 2, 1o ⊗ (0e, 1o, 2e) reaches 1o through both l2 = 0 and l2 = 2: one group.
    plan = convolution_plan("2x1o", "2x1o", 2)
    assert plan.groups == (((1, -1, (0, 2)),),) and plan.outputs == ((4, 1, -1),)


def test_species_linear_is_one_matrix_per_species(x64):
    irreps_in, irreps_out = "3x0e+2x1o", "4x0e+2x1o+1x1e"
    n_node, n_species = 9, 3
    rng = np.random.default_rng(2)
    x = e3nn.IrrepsArray(irreps_in, jnp.asarray(rng.normal(size=(n_node, 9))))
    species = rng.integers(0, n_species, n_node)
    onehot = jax.nn.one_hot(species, n_species, dtype=jnp.float64)
    module = SpeciesLinear(irreps_out, n_species)
    params = jax.jit(module.init)(jax.random.key(0), x, onehot)
    out = jax.jit(module.apply)(params, x, onehot)
    w_scalar = np.asarray(params["params"]["w0_0e"]).reshape(n_species, 3, 4)
    w_vector = np.asarray(params["params"]["w1_1o"]).reshape(n_species, 2, 2)
    for n in range(n_node):  # brute force: each atom uses its own species' matrices
        s = species[n]
        np.testing.assert_allclose(
            np.asarray(out.chunks[0][n, :, 0]),
            np.asarray(x.chunks[0][n, :, 0]) @ w_scalar[s] / np.sqrt(3),
            rtol=1e-12,
        )
        np.testing.assert_allclose(
            np.asarray(out.chunks[1][n]),
            w_vector[s].T @ np.asarray(x.chunks[1][n]) / np.sqrt(2),
            rtol=1e-12,
        )
    np.testing.assert_array_equal(np.asarray(out.array[:, -3:]), 0.0)  # no 1e input: zero output


def _ssp(x):
    return jax.nn.softplus(x) - jnp.log(2.0)


# (even scalars, odd scalars, even gates, odd gates) for e3nn's gate, per nonlinearity family.
E3NN_ACTIVATIONS = {
    "silu": (jax.nn.silu, jnp.tanh, jax.nn.silu, jnp.tanh),
    "ssp": (_ssp, jnp.tanh, _ssp, jnp.abs),
}


@pytest.mark.parametrize("nonlinearity", sorted(E3NN_ACTIVATIONS))
# "2x0o": only odd scalars and 1e are reachable, so the gates are odd.
@pytest.mark.parametrize("inputs", ["2x0e", "2x0e+2x1o+2x1e", "2x0o"])
def test_gate_matches_e3nn_gate(x64, inputs, nonlinearity):
    even_act, odd_act, even_gate_act, odd_gate_act = E3NN_ACTIVATIONS[nonlinearity]
    layer = layer_irreps(
        inputs,
        "2x0e+2x0o+2x1o+2x1e",
        1,
        odd_gate_activation_is_even=odd_gate_act is jnp.abs,
    )
    rng = np.random.default_rng(3)
    dim = e3nn.Irreps(layer.conv_out).dim
    x = e3nn.IrrepsArray(layer.conv_out, jnp.asarray(rng.normal(size=(5, dim))))
    got = jax.jit(lambda x: gate(x, layer, nonlinearity))(x)
    ref = e3nn.gate(  # eager on purpose: e3nn normalises its activations outside of jit
        x,
        even_act=even_act,
        odd_act=odd_act,
        even_gate_act=even_gate_act,
        odd_gate_act=odd_gate_act,
    ).regroup()
    assert got.irreps == ref.irreps == e3nn.Irreps(layer.outputs)
    # e3nn estimates the activations' normalisation constants in float32 (~3e-5 relative); ours
    # come from double-precision quadrature.
    np.testing.assert_allclose(np.asarray(got.array), np.asarray(ref.array), rtol=1e-4, atol=1e-6)


@pytest.mark.parametrize(
    "n_edge, chunk_bytes, expected",
    [
        (1000, 1 << 20, 1000),  # few edges: one chunk
        (10_000, 1 << 20, 512),  # 1 MiB / 1408 bytes per edge = 744 edges
        (10_000, 2 << 20, 1024),  # 1489
        (10_000, 4 << 20, 2048),  # 2978
        (10_000, 1 << 10, 128),  # at least 128 edges
        (100_000, 1 << 30, 4096),  # at most 4096
    ],
)
def test_auto_chunk_size_fills_the_cache_with_messages(n_edge, chunk_bytes, expected):
    """The widest power of two whose float32 messages fit ``chunk_bytes``, in [128, 4096]; one
    chunk below 4096 edges. The f = 16, lmax = 1 plan has 352 message channels per edge."""
    plan = convolution_plan("16x0e+16x0o+16x1o+16x1e", "16x0e+16x0o+16x1o+16x1e", 1)
    assert sum(m * (2 * ell + 1) for m, ell, _ in plan.outputs) == 352
    assert auto_chunk_size(plan, n_edge, chunk_bytes=chunk_bytes) == expected


def test_cache_bytes_is_a_positive_power_of_two_multiple_of_a_kibibyte():
    size = cache_bytes()
    assert size >= 1 << 10 and size % (1 << 10) == 0
