"""Eager input checks run once at the boundary of the jitted code.

Every error names the cause and the remedy. Nothing here is traced: these functions pull small
reductions to the host and raise ``ValueError``.
"""

from __future__ import annotations

import numbers
from typing import Any

import jax
import jax.numpy as jnp
import numpy as np

from gmm._types import Array, GMMParams

INIT_METHODS = ("kmeans", "random")

ILL_DEFINED_COVARIANCE = (
    "Fitting the mixture failed: the covariance of some component is not positive definite "
    "after adding reg_covar={reg_covar:g} to its diagonal, or the likelihood is not finite "
    "(typical causes: duplicated points or a component collapsed on too few samples, a "
    "constant feature, features of very different scales). To fix it: decrease the number of "
    "components, increase reg_covar, or scale the features."
)
FLOAT32_HINT = " Passing float64 features (with jax_enable_x64) also improves the accuracy."


def ill_defined_message(reg_covar: float, dtype: Any) -> str:
    """The documented error text for a failed Cholesky factorisation."""
    msg = ILL_DEFINED_COVARIANCE.format(reg_covar=reg_covar)
    if jnp.dtype(dtype) == jnp.float32:
        msg += FLOAT32_HINT
    return msg


def as_features(x: Any, name: str = "x") -> Array:
    """``x`` as a floating ``[N, D]`` JAX array in its own float dtype (ints become floats).

    Raises:
        ValueError: wrong rank, empty, or a non-real dtype.
    """
    arr = jnp.asarray(x)
    if arr.ndim != 2:
        raise ValueError(
            f"{name} must be a 2-D array [n_samples, n_features], got shape {arr.shape}; "
            "reshape it, e.g. x.reshape(-1, n_features) (or x[:, None] for one feature)."
        )
    if arr.shape[0] < 1 or arr.shape[1] < 1:
        raise ValueError(
            f"{name} has shape {arr.shape}: it needs at least one sample and one feature."
        )
    if jnp.issubdtype(arr.dtype, jnp.complexfloating) or arr.dtype == jnp.bool_:
        raise ValueError(f"{name} has dtype {arr.dtype}; pass real float32 or float64 features.")
    if not jnp.issubdtype(arr.dtype, jnp.floating):
        arr = arr.astype(jnp.result_type(float))
    elif arr.dtype not in (jnp.float32, jnp.float64):
        arr = arr.astype(jnp.float32)
    return arr


def as_mask(mask: Any, n_samples: int) -> Array:
    """``mask`` as a bool ``[N]`` array; ``None`` means all samples are real.

    Raises:
        ValueError: wrong shape or a non-boolean dtype.
    """
    if mask is None:
        return jnp.ones((n_samples,), dtype=bool)
    arr = jnp.asarray(mask)
    if arr.shape != (n_samples,):
        raise ValueError(
            f"mask must have shape [n_samples] = ({n_samples},), got {arr.shape}; pass one "
            "boolean per row of x (True for real samples, False for padding)."
        )
    if arr.dtype != jnp.bool_:
        raise ValueError(
            f"mask must be boolean, got dtype {arr.dtype}; pass e.g. `mask.astype(bool)`."
        )
    return arr


def check_finite_features(x: Array, mask: Array, name: str = "x") -> None:
    """Raise if an unmasked sample has a NaN or infinite feature."""
    bad = jnp.any(~jnp.isfinite(x), axis=1) & mask
    n_bad = int(jnp.sum(bad))
    if n_bad:
        first = int(jnp.argmax(bad))
        raise ValueError(
            f"{name} has NaN or infinite features in {n_bad} unmasked sample(s) (first: row "
            f"{first}); remove or impute them, or set mask[row] = False to ignore them."
        )


def n_valid_samples(mask: Array) -> int:
    """Number of unmasked samples (host int)."""
    return int(jnp.sum(mask))


def check_n_samples(n_valid: int, n_components: int) -> None:
    """Raise if there are fewer (unmasked) samples than components."""
    if n_valid < n_components:
        raise ValueError(
            f"Fewer samples than components: {n_valid} unmasked sample(s) for n_components="
            f"{n_components}; decrease n_components to at most {n_valid} or provide more samples."
        )


def check_positive_int(value: Any, name: str, minimum: int) -> int:
    """``value`` as an int ``>= minimum`` (bools rejected)."""
    if isinstance(value, bool) or not isinstance(value, numbers.Integral):
        raise ValueError(f"{name} must be an integer, got {value!r} ({type(value).__name__}).")
    if value < minimum:
        raise ValueError(f"{name} must be >= {minimum}, got {value}.")
    return int(value)


def check_float(value: Any, name: str, *, minimum: float | None = None) -> float:
    """``value`` as a non-NaN Python float, optionally ``>= minimum``."""
    try:
        out = float(value)
    except (TypeError, ValueError):
        raise ValueError(f"{name} must be a real number, got {value!r}.") from None
    if np.isnan(out):
        raise ValueError(f"{name} must not be NaN.")
    if minimum is not None and out < minimum:
        raise ValueError(f"{name} must be >= {minimum}, got {out}.")
    return out


def check_init(init: Any) -> str:
    """The initialisation method name."""
    if init not in INIT_METHODS:
        raise ValueError(f"init must be one of {INIT_METHODS}, got {init!r}.")
    return init


def check_weights_init(weights: Any, n_components: int, dtype: Any) -> Array:
    """``[K]`` non-negative weights summing to one (to 1e-6, like scikit-learn)."""
    w = np.asarray(weights, dtype=np.float64)
    if w.shape != (n_components,):
        raise ValueError(
            f"weights_init must have shape [n_components] = ({n_components},), got {w.shape}."
        )
    if not np.all(np.isfinite(w)) or np.any(w < 0) or np.any(w > 1):
        raise ValueError("weights_init must be finite and in [0, 1]; pass mixing proportions.")
    if not np.allclose(np.sum(w), 1.0, rtol=0.0, atol=1e-6):
        raise ValueError(
            f"weights_init must sum to 1, got {np.sum(w):.8f}; normalise them (w / w.sum())."
        )
    return jnp.asarray(weights, dtype=dtype)


def check_means_init(means: Any, n_components: int, n_features: int, dtype: Any) -> Array:
    """``[K, D]`` finite initial means."""
    m = np.asarray(means)
    if m.shape != (n_components, n_features):
        raise ValueError(
            f"means_init must have shape [n_components, n_features] = ({n_components}, "
            f"{n_features}), got {m.shape}."
        )
    if not np.all(np.isfinite(m)):
        raise ValueError("means_init has NaN or infinite entries; pass finite means.")
    return jnp.asarray(means, dtype=dtype)


def check_precisions_init(precisions: Any, n_components: int, n_features: int, dtype: Any) -> Array:
    """``[K, D, D]`` symmetric positive-definite initial precision matrices."""
    p = np.asarray(precisions, dtype=np.float64)
    shape = (n_components, n_features, n_features)
    if p.shape != shape:
        raise ValueError(
            f"precisions_init must have shape [n_components, n_features, n_features] = {shape}, "
            f"got {p.shape}."
        )
    if not np.all(np.isfinite(p)):
        raise ValueError("precisions_init has NaN or infinite entries.")
    if not np.allclose(p, np.swapaxes(p, -1, -2), rtol=1e-8, atol=1e-12 * np.abs(p).max()):
        raise ValueError(
            "precisions_init must be symmetric; symmetrise it, e.g. (p + p.swapaxes(-1, -2)) / 2."
        )
    for k in range(n_components):
        if np.linalg.eigvalsh(p[k]).min() <= 0:
            raise ValueError(
                f"precisions_init[{k}] is not positive definite; pass inverse covariance "
                "matrices (e.g. np.linalg.inv(cov + reg_covar * I))."
            )
    return jnp.asarray(precisions, dtype=dtype)


def check_params(params: GMMParams, n_features: int | None = None) -> GMMParams:
    """Shape-check a :class:`GMMParams` (and its feature dimension against ``x``)."""
    if not isinstance(params, GMMParams):
        raise ValueError(
            f"params must be a gmm.GMMParams, got {type(params).__name__}; use gmm.fit or "
            "gmm.load to obtain one."
        )
    w, m, p = (tuple(np.shape(a)) for a in params)
    if len(m) != 2 or w != m[:1] or p != (*m, m[1]):
        raise ValueError(
            "params have inconsistent shapes: expected weights [K], means [K, D] and "
            f"precisions_cholesky [K, D, D], got {w}, {m}, {p}."
        )
    d = m[1]
    if n_features is not None and d != n_features:
        raise ValueError(
            f"x has {n_features} features but the mixture was fitted on {d}; pass features of "
            "the same dimension as at fit time."
        )
    return params


def check_key(key: Any) -> Array:
    """A JAX PRNG key (new-style typed or legacy ``uint32[2]``)."""
    if key is None:
        raise ValueError(
            "key is required (library code never makes its own): pass e.g. "
            "key=jax.random.key(seed)."
        )
    arr = jnp.asarray(key) if not isinstance(key, jax.Array) else key
    is_typed = jnp.issubdtype(arr.dtype, jax.dtypes.prng_key)
    if not (is_typed and arr.shape == ()) and not (arr.dtype == jnp.uint32 and arr.shape == (2,)):
        raise ValueError(
            f"key must be a single PRNG key (jax.random.key(seed)), got dtype {arr.dtype} "
            f"and shape {arr.shape}."
        )
    return arr
