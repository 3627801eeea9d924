"""Radial basis and cutoff envelope of NequIP (Batzner et al. 2022, Methods).

All functions are pure and elementwise over edges; they are safe for zero-length (padding) edges
through the double-``where`` idiom, so that neither values nor gradients become NaN.
"""

from __future__ import annotations

import functools
import math
from collections.abc import Sequence

import jax
import jax.numpy as jnp
import numpy as np

__all__ = [
    "bessel_basis",
    "bessel_frequencies",
    "normalized_activation",
    "polynomial_cutoff",
    "radial_embedding",
    "radial_mlp",
    "ACTIVATIONS",
]


def bessel_frequencies(num_basis: int, r_max: float | jnp.ndarray) -> np.ndarray | jnp.ndarray:
    """[num_basis] initial Bessel frequencies ``n π / r_max`` for n = 1 … num_basis.

    ``r_max`` may be a traced scalar (a per-member cutoff, see
    :class:`nequip_jax.model.RadialSettings`); the result is then a JAX array.
    """
    return np.arange(1, num_basis + 1) * np.pi / r_max


def bessel_basis(
    r: jnp.ndarray, frequencies: jnp.ndarray, r_max: float | jnp.ndarray
) -> jnp.ndarray:
    """Bessel radial basis ``B_n(r) = (2 / r_max) · sin(ω_n r) / r`` with ``ω_n = n π / r_max``.

    Args:
        r: [n_edge] edge lengths (Å), strictly positive (replace padding lengths by a safe
            value before calling).
        frequencies: [num_basis] ω_n (see :func:`bessel_frequencies`).
        r_max: cutoff radius (Å), a float or a traced scalar.

    Returns:
        [n_edge, num_basis].
    """
    return (2.0 / r_max) * jnp.sin(r[:, None] * frequencies[None, :]) / r[:, None]


def polynomial_cutoff(x: jnp.ndarray, p: int | jnp.ndarray = 6) -> jnp.ndarray:
    """Polynomial envelope ``u(x) = 1 − (p+1)(p+2)/2 x^p + p(p+2) x^(p+1) − p(p+1)/2 x^(p+2)``
    for ``x = r / r_max < 1`` and 0 beyond (Klicpera et al. 2020; used by Batzner et al. 2022).

    u(1) = u'(1) = u''(1) = 0, so energies and forces vanish smoothly at the cutoff. The
    polynomial itself does not vanish beyond x = 1, so it is masked there: an edge longer than
    the cutoff (e.g. one kept for a member of a group with a larger cutoff) gives exactly 0,
    with a zero (finite) gradient.

    Args:
        x: [...] reduced distances ``r / r_max`` (non-negative).
        p: the exponent (NequIP: 6): a Python int, or a traced integer scalar (a per-member
            setting; the integer power gives the same values as for the Python int).

    Returns:
        [...] envelope values in [0, 1].
    """
    inside = x < 1.0
    xs = jnp.where(inside, x, 0.0)  # the polynomial is evaluated only where it is used
    if isinstance(p, (int, np.integer)):
        c = p
    else:  # traced: an integer power, and coefficients (small integers, exact) in x's dtype
        p = jnp.asarray(p, jnp.int32)
        c = p.astype(xs.dtype)
    xp = xs**p
    value = (
        1.0
        - 0.5 * (c + 1.0) * (c + 2.0) * xp
        + c * (c + 2.0) * xp * xs
        - 0.5 * c * (c + 1.0) * xp * xs * xs
    )
    return jnp.where(inside, value, 0.0)


def radial_embedding(
    lengths: jnp.ndarray,
    mask: jnp.ndarray,
    frequencies: jnp.ndarray,
    r_max: float | jnp.ndarray,
    p: int | jnp.ndarray,
) -> jnp.ndarray:
    """Bessel basis times the cutoff envelope, zero on padding edges and beyond ``r_max``.

    Args:
        lengths: [n_edge] edge lengths (Å); padding edges may have length 0.
        mask: [n_edge] bool, ``True`` for real edges.
        frequencies: [num_basis] Bessel frequencies.
        r_max: cutoff radius (Å), a float or a traced scalar.
        p: polynomial cutoff exponent, an int or a traced integer scalar.

    Returns:
        [n_edge, num_basis] the edge embedding fed to the radial MLP.
    """
    safe = jnp.where(mask, lengths, 0.5 * r_max)  # double where: no 1/0 on padding edges
    envelope = jnp.where(mask, polynomial_cutoff(safe / r_max, p), 0.0)
    return bessel_basis(safe, frequencies, r_max) * envelope[:, None]


def _silu(x):
    # x·sigmoid(x) written with tanh: XLA's CPU tanh is a vectorised rational approximation,
    # while its logistic lowers to exp and a division (measurably slower in the radial MLP).
    return 0.5 * x * (1.0 + jnp.tanh(0.5 * x))


@functools.cache
def _second_moment_scale(name: str) -> float:
    """1 / sqrt(E[φ(z)^2]) for z ~ N(0, 1), by Gauss–Hermite quadrature (double precision)."""
    nodes, weights = np.polynomial.hermite_e.hermegauss(200)
    phi = {
        "silu": lambda z: z / (1.0 + np.exp(-z)),
        "tanh": np.tanh,
        "ssp": lambda z: np.logaddexp(0.0, z) - np.log(2.0),
        "abs": np.abs,
    }[name]
    return float(1.0 / np.sqrt(np.sum(weights * phi(nodes) ** 2) / np.sqrt(2.0 * np.pi)))


#: Activations of :func:`normalized_activation`: SiLU, tanh, the shifted softplus
#: ``softplus(x) − log 2`` of nequip ≤ 0.5 (``ssp``) and ``abs``. All are zero at zero, so zero
#: embeddings (padding edges) give zero radial weights.
ACTIVATIONS = ("silu", "tanh", "ssp", "abs")


def _ssp(x):
    return jax.nn.softplus(x) - math.log(2.0)


@functools.cache
def normalized_activation(name: str):
    """An activation of :data:`ACTIVATIONS` scaled to unit second moment under a standard
    normal input (e3nn's ``normalize2mom``, as in nequip's gate and radial MLP)."""
    if name not in ACTIVATIONS:
        raise ValueError(f"activation {name!r}: choose one of {ACTIVATIONS}.")
    fn = {"silu": _silu, "tanh": jnp.tanh, "ssp": _ssp, "abs": jnp.abs}[name]
    scale = _second_moment_scale(name)
    return lambda x: fn(x) * scale


def radial_mlp(
    weights: Sequence[jnp.ndarray],
    embedding: jnp.ndarray,
    *,
    final_activation: bool = False,
    activation: str = "silu",
) -> jnp.ndarray:
    """Bias-free MLP ``[n_edge, num_basis] → [n_edge, num_out]`` giving the path weights.

    Each layer is ``h @ W / sqrt(fan_in)`` (weights drawn from N(0, 1): e3nn/nequip "forward"
    initialisation), with a normalised activation between layers (SiLU by default; ``"ssp"``
    in nequip ≤ 0.5). Without biases and with φ(0) = 0, a zero embedding (padding edges, edges
    beyond ``r_max``) gives exactly zero weights.

    Args:
        weights: matrices ``[num_basis, width], [width, width], …, [width, num_out]``.
        embedding: [n_edge, num_basis].
        final_activation: also apply the activation after the last matrix (used to evaluate
            the hidden layers only, when the last matrix is applied by the caller).
        activation: a name of :data:`ACTIVATIONS`.
    """
    act = normalized_activation(activation)
    h = embedding
    for index, w in enumerate(weights):
        h = h @ (w * (1.0 / math.sqrt(w.shape[0])))
        if final_activation or index < len(weights) - 1:
            h = act(h)
    return h
