"""Radial basis, cutoff envelope and radial MLP: closed forms (scipy), derivatives, padding."""

import jax
import jax.numpy as jnp
import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from scipy.special import spherical_jn

from nequip_jax.model._radial import (
    bessel_basis,
    bessel_frequencies,
    polynomial_cutoff,
    radial_embedding,
    radial_mlp,
)


@pytest.mark.parametrize("r_max", [3.0, 4.0, 5.5])
def test_bessel_basis_is_scaled_spherical_bessel_j0(x64, r_max):
    # sin(x)/x = j0(x), so B_n(r) = (2 / r_max) · ω_n · j0(ω_n r) with ω_n = n π / r_max.
    r = np.linspace(0.05, r_max, 37)
    omega = bessel_frequencies(8, r_max)
    expected = (2.0 / r_max) * omega[None, :] * spherical_jn(0, r[:, None] * omega[None, :])
    got = bessel_basis(jnp.asarray(r), jnp.asarray(omega), r_max)
    np.testing.assert_allclose(np.asarray(got), expected, rtol=1e-12, atol=1e-12)


@pytest.mark.parametrize("p", [2, 5, 6, 9])
def test_polynomial_cutoff_vanishes_smoothly_at_one(x64, p):
    u = lambda x: polynomial_cutoff(x, p)  # noqa: E731
    du = jax.grad(u)
    d2u = jax.grad(du)
    assert float(u(0.0)) == pytest.approx(1.0)
    for f in (u, du, d2u):  # u(1) = u'(1) = u''(1) = 0 (Klicpera et al. 2020)
        assert abs(float(f(1.0 - 1e-12))) < 1e-8
    # Beyond the cutoff: exactly zero, with zero gradient.
    for x in (1.0, 1.3, 7.0):
        assert float(u(x)) == 0.0
        assert float(du(x)) == 0.0


@pytest.mark.parametrize("p", [3, 6])
def test_polynomial_cutoff_is_monotone_decreasing_on_unit_interval(x64, p):
    x = jnp.linspace(0.0, 1.0, 2001)
    values = np.asarray(polynomial_cutoff(x, p))
    assert np.all(np.diff(values) <= 1e-15)
    assert values.min() >= -1e-15 and values.max() <= 1.0 + 1e-15


def test_radial_embedding_is_nan_free_on_padding_edges():
    lengths = jnp.array([1.2, 0.0, 3.9, 4.5, 0.0])
    mask = jnp.array([True, False, True, True, False])
    omega = jnp.asarray(bessel_frequencies(8, 4.0), jnp.float32)

    def total(lengths):
        return jnp.sum(radial_embedding(lengths, mask, omega, 4.0, 6) ** 2)

    values = jax.jit(lambda r: radial_embedding(r, mask, omega, 4.0, 6))(lengths)
    grads = jax.jit(jax.grad(total))(lengths)
    assert np.all(np.isfinite(np.asarray(values))) and np.all(np.isfinite(np.asarray(grads)))
    # Padding edges and the edge beyond r_max carry nothing.
    np.testing.assert_array_equal(np.asarray(values)[[1, 3, 4]], 0.0)
    np.testing.assert_array_equal(np.asarray(grads)[[1, 3, 4]], 0.0)
    assert np.all(np.abs(np.asarray(values)[[0, 2]]).sum(axis=1) > 0)


@settings(max_examples=6, deadline=None)
@given(depth=st.integers(0, 3), width=st.integers(1, 9), seed=st.integers(0, 10_000))
def test_radial_mlp_maps_zero_embedding_to_zero_weights(depth, width, seed):
    # No biases and SiLU(0) = 0: padding edges (zero embedding) get exactly zero path weights,
    # while a nonzero embedding gives nonzero weights.
    rng = np.random.default_rng(seed)
    widths = [8] + [width] * depth + [5]
    weights = [
        jnp.asarray(rng.normal(size=(a, b)), jnp.float32) for a, b in zip(widths, widths[1:])
    ]
    zero = radial_mlp(weights, jnp.zeros((3, 8)))
    assert np.all(np.asarray(zero) == 0.0)
    nonzero = radial_mlp(weights, jnp.asarray(rng.normal(size=(3, 8)), jnp.float32))
    assert np.any(np.asarray(nonzero) != 0.0)


def test_radial_mlp_matches_explicit_layers(x64):
    rng = np.random.default_rng(1)
    shapes = [(8, 6), (6, 6), (6, 4)]
    weights = [rng.normal(size=s) for s in shapes]
    x = rng.normal(size=(5, 8))
    silu = lambda z: z / (1.0 + np.exp(-z))  # noqa: E731
    # normalisation constant of SiLU: RMS of silu(z) for z ~ N(0, 1), by quadrature
    z = np.linspace(-12, 12, 200_001)
    c = np.sqrt(np.trapezoid(silu(z) ** 2 * np.exp(-(z**2) / 2) / np.sqrt(2 * np.pi), z))
    h = x
    for k, w in enumerate(weights):
        h = h @ w / np.sqrt(w.shape[0])
        if k < len(weights) - 1:
            h = silu(h) / c
    got = radial_mlp([jnp.asarray(w) for w in weights], jnp.asarray(x))
    np.testing.assert_allclose(np.asarray(got), h, rtol=1e-8)


def test_traced_cutoff_settings_equal_static_ones(x64):
    # Per-member settings of a vmapped group: r_max and p as traced scalars give the values and
    # gradients of the static ones, and edges beyond each member's own r_max carry nothing.
    lengths = jnp.array([0.8, 2.4, 2.9, 3.2, 3.9, 0.0])
    mask = jnp.array([True, True, True, True, True, False])
    settings = [(2.5, 6), (3.0, 8), (4.0, 5)]

    def embed(r_max, p):
        def total(lengths):
            omega = jnp.asarray(bessel_frequencies(4, r_max))
            emb = radial_embedding(lengths, mask, omega, r_max, p)
            return jnp.sum(jnp.sin(emb)), emb

        (_, emb), grad = jax.value_and_grad(total, has_aux=True)(lengths)
        return emb, grad

    r_maxs = jnp.array([r for r, _ in settings])
    ps = jnp.array([p for _, p in settings], jnp.int32)
    traced_emb, traced_grad = jax.jit(jax.vmap(embed))(r_maxs, ps)
    for j, (r_max, p) in enumerate(settings):
        emb, grad = embed(r_max, p)
        # Rounding only (the envelope near r_max is a difference of O(1) terms).
        tol = dict(rtol=1e-10, atol=1e-14)
        np.testing.assert_allclose(np.asarray(traced_emb[j]), np.asarray(emb), **tol)
        np.testing.assert_allclose(np.asarray(traced_grad[j]), np.asarray(grad), **tol)
        beyond = np.asarray(~mask | (lengths >= r_max))
        assert np.all(np.asarray(traced_emb[j])[beyond] == 0.0)
        assert np.all(np.asarray(traced_grad[j])[beyond] == 0.0)
        assert np.all(np.isfinite(np.asarray(traced_grad[j])))
        assert np.all(np.abs(np.asarray(traced_emb[j])[~beyond]).sum(axis=1) > 0)


@pytest.mark.parametrize("name", ["silu", "tanh", "ssp", "abs"])
def test_normalized_activations_have_unit_second_moment_and_vanish_at_zero(name):
    from scipy.integrate import quad
    from scipy.special import expit

    from nequip_jax.model._radial import normalized_activation

    raw = {
        "silu": lambda z: z * expit(z),
        "tanh": np.tanh,
        "ssp": lambda z: np.logaddexp(0.0, z) - np.log(2.0),
        "abs": np.abs,
    }[name]
    z = np.linspace(-4.0, 4.0, 17)
    with jax.enable_x64(True):
        act = normalized_activation(name)
        got = np.asarray(act(jnp.asarray(z)))
        assert float(act(jnp.zeros(()))) == 0.0
    # The scale is the one that makes E[φ(z)²] = 1 for z ~ N(0, 1) (adaptive quadrature).
    moment, _ = quad(lambda t: raw(t) ** 2 * np.exp(-0.5 * t * t) / np.sqrt(2 * np.pi), -40, 40)
    np.testing.assert_allclose(got, raw(z) / np.sqrt(moment), rtol=1e-10, atol=1e-12)


def test_unknown_activation_is_refused():
    from nequip_jax.model._radial import normalized_activation

    with pytest.raises(ValueError, match="activation 'relu'"):
        normalized_activation("relu")
