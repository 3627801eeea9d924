"""Last-layer prediction rigidity (LLPR) uncertainty on final per-atom features.

Bigi, Chong, Ceriotti, Grasselli, "A prediction rigidity formalism for low-cost uncertainties in
trained neural networks", Mach. Learn.: Sci. Technol. 5, 045018 (2024). For a model whose output
is linear in its last-layer weights w, y = wᵀ φ(x), the LLPR variance of a prediction is

    σ²(x*) = α² · φ*ᵀ (ΦᵀΦ + ς² I)⁻¹ φ*,                                        (LLPR)

with Φ ``[n_rows, d]`` the last-layer features of the training set (one row per training target)
and α², ς² calibrated on held-out data. It is the posterior predictive variance of the *function*
value in Bayesian linear regression on the features with noise variance α² and weight prior
N(0, (α²/ς²) I); it vanishes for features seen many times and grows along directions the
training data did not constrain.

In this project the features are the per-atom final scalar features f_i of NequIP, the same
input as the GMM head of Zhu et al. (J. Chem. Phys. 2023, text before Eq. (8)), and the
per-atom energy is wᵀ f_i. Two choices of rows:

* energy-trained readout: the total energy E = Σ_i wᵀ f_i, so its gradient with respect to w is
  φ = Σ_i f_i per structure — pass ``structure_index`` to :func:`fit_llpr`;
* per-atom proxy: one row per atom (no ``structure_index``); :func:`llpr_variance` on per-atom
  features then gives a per-atom score comparable with the per-atom NLL of Eq. (8).

The exact force rigidity would use ∂F/∂w = −Σ_i ∂f_i/∂r (feature gradients); neither variant
here does, so treat the per-atom LLPR as an uncertainty *score* to be calibrated like the NLL.

Host-side numpy. States are NamedTuples of arrays and floats (``np.savez(path,
**state._asdict())`` stores one).
"""

from __future__ import annotations

from pathlib import Path
from typing import NamedTuple

import jax.numpy as jnp
import numpy as np

from nequip_jax.uncertainty.metrics import aggregate_sigma
from nequip_jax.uncertainty.protocol import (
    ModelOutputs,
    UncertaintyMethod,
    array_module,
    load_state,
    save_state,
)

__all__ = [
    "LLPR",
    "LLPRState",
    "calibrate_llpr",
    "fit_llpr",
    "llpr_gaussian_nll",
    "llpr_variance",
    "sum_per_structure",
]


class LLPRState(NamedTuple):
    """Fitted LLPR covariance; ``d`` is the feature width."""

    gram: np.ndarray  # [d, d] ΦᵀΦ of the training rows
    inv_chol: np.ndarray  # [d, d] lower-triangular L⁻¹, where L Lᵀ = ΦᵀΦ + ς² I
    inv_cov: np.ndarray  # [d, d] (ΦᵀΦ + ς² I)⁻¹ = L⁻ᵀ L⁻¹
    reg: float  # ς²
    alpha2: float  # α² (1.0 until calibrated)
    n_rows: int  # number of training rows (atoms or structures)


def _features(x: np.ndarray, name: str) -> np.ndarray:
    arr = np.asarray(x, dtype=np.float64)
    if arr.ndim != 2:
        raise ValueError(f"{name} must be [n, d] (one feature vector per row), got {arr.shape}.")
    if not np.all(np.isfinite(arr)):
        raise ValueError(
            f"{name} contains non-finite values; mask padding atoms before computing the LLPR."
        )
    return arr


def sum_per_structure(
    features: np.ndarray, structure_index: np.ndarray, n_structures: int | None = None
) -> np.ndarray:
    """Σ_{i ∈ s} f_i for every structure s: the gradient of E = Σ_i wᵀ f_i with respect to w.

    Args:
        features: ``[n_atoms, d]``.
        structure_index: ``[n_atoms]`` int in 0 … S−1.
        n_structures: S; defaults to ``max(structure_index) + 1``.

    Returns:
        ``[S, d]``.
    """
    f = _features(features, "features")
    idx = np.asarray(structure_index)
    if idx.shape != (f.shape[0],) or not np.issubdtype(idx.dtype, np.integer):
        raise ValueError(
            f"structure_index must be an int array of shape ({f.shape[0]},), got "
            f"{idx.dtype} {idx.shape}."
        )
    if idx.size and idx.min() < 0:
        raise ValueError("structure_index must be non-negative.")
    s = (int(idx.max()) + 1 if idx.size else 0) if n_structures is None else n_structures
    if idx.size and idx.max() >= s:
        raise ValueError(f"structure_index refers to structure {idx.max()} but S = {s}.")
    out = np.zeros((s, f.shape[1]))
    np.add.at(out, idx, f)
    return out


def _inv_lower(chol: np.ndarray) -> np.ndarray:
    """Inverse of a lower-triangular matrix by forward substitution (solves L X = I)."""
    d = chol.shape[0]
    eye = np.eye(d)
    inv = np.zeros_like(chol)
    for i in range(d):
        inv[i] = (eye[i] - chol[i, :i] @ inv[:i]) / chol[i, i]
    return inv


def _factor(gram: np.ndarray, reg: float) -> tuple[np.ndarray, np.ndarray]:
    """(L⁻¹, (G + ς² I)⁻¹) from the Cholesky factor L of G + ς² I."""
    d = gram.shape[0]
    try:
        chol = np.linalg.cholesky(gram + reg * np.eye(d))
    except np.linalg.LinAlgError as err:
        raise ValueError(
            f"ΦᵀΦ + ς² I with ς² = {reg:.3g} is not positive definite (the features are "
            f"collinear or there are fewer training rows than feature dimensions); pass a larger "
            f"reg, e.g. 1e-6 × the mean diagonal of ΦᵀΦ ({np.trace(gram) / d:.3g})."
        ) from err
    inv_chol = _inv_lower(chol)
    return inv_chol, inv_chol.T @ inv_chol


def fit_llpr(
    features: np.ndarray,
    structure_index: np.ndarray | None = None,
    *,
    reg: float | None = None,
    n_structures: int | None = None,
) -> LLPRState:
    """Build the LLPR covariance (ΦᵀΦ + ς² I)⁻¹ from training-set features (Bigi et al. 2024).

    Args:
        features: final per-atom features of the training set, ``[n_atoms, d]``.
        structure_index: ``[n_atoms]`` int; if given, rows are per-structure sums (energy
            readout), otherwise one row per atom (per-atom proxy). See the module docstring.
        reg: ς² (absolute, in squared feature units). Default ``1e-6 · tr(ΦᵀΦ) / d``, a small
            jitter relative to the feature scale; :func:`calibrate_llpr` can choose it.
        n_structures: number of structures when ``structure_index`` is given.

    Returns:
        :class:`LLPRState` with α² = 1.
    """
    f = _features(features, "features")
    rows = f if structure_index is None else sum_per_structure(f, structure_index, n_structures)
    gram = rows.T @ rows
    d = gram.shape[0]
    if reg is None:
        reg = 1e-6 * float(np.trace(gram)) / d
    if not reg >= 0:
        raise ValueError(f"reg (ς²) must be >= 0, got {reg}.")
    inv_chol, inv_cov = _factor(gram, float(reg))
    return LLPRState(
        gram=gram,
        inv_chol=inv_chol,
        inv_cov=inv_cov,
        reg=float(reg),
        alpha2=1.0,
        n_rows=int(rows.shape[0]),
    )


def llpr_variance(
    state: LLPRState,
    features: np.ndarray,
    structure_index: np.ndarray | None = None,
    *,
    n_structures: int | None = None,
) -> np.ndarray:
    """LLPR variance α² φᵀ (ΦᵀΦ + ς² I)⁻¹ φ for each row (Bigi et al. 2024).

    Computed as α² ‖L⁻¹ φ‖², which is non-negative by construction.

    Args:
        state: from :func:`fit_llpr` (and optionally :func:`calibrate_llpr`).
        features: ``[n_atoms, d]`` per-atom features of the atoms to score.
        structure_index: if given, score per-structure sums ``[S]`` instead of atoms.
        n_structures: number of structures when ``structure_index`` is given.

    Returns:
        σ² per row, ``[n_atoms]`` or ``[S]``, in units of α² (the calibrated target² units).
    """
    f = _features(features, "features")
    if f.shape[1] != state.gram.shape[0]:
        raise ValueError(
            f"features have width {f.shape[1]} but the LLPR state was fitted on width "
            f"{state.gram.shape[0]}; use features from the same model layer."
        )
    rows = f if structure_index is None else sum_per_structure(f, structure_index, n_structures)
    z = rows @ state.inv_chol.T  # [rows, d]
    return state.alpha2 * np.sum(z * z, axis=-1)


def _errors(errors: np.ndarray, n_rows: int) -> np.ndarray:
    e = np.asarray(errors, dtype=np.float64)
    if e.ndim == 1:
        e = e[:, None]
    if e.ndim != 2 or e.shape[0] != n_rows:
        raise ValueError(
            f"errors must be [n] or [n, k] with n = {n_rows} rows (one per scored row), got "
            f"{np.shape(errors)}."
        )
    if not np.all(np.isfinite(e)):
        raise ValueError("errors contain non-finite values.")
    return e


def llpr_gaussian_nll(variance: np.ndarray, errors: np.ndarray) -> float:
    """Mean Gaussian negative log-likelihood of errors under N(0, variance), per component.

    ½ mean_{i,c} [log(2π v_i) + e_ic² / v_i]. Lower is better.

    Args:
        variance: ``[n]`` > 0.
        errors: ``[n]`` or ``[n, k]`` (e.g. force-component residuals ``[n, 3]``).
    """
    v = np.asarray(variance, dtype=np.float64)
    e = _errors(errors, v.shape[0])
    if v.ndim != 1 or np.any(~(v > 0)):
        raise ValueError("variance must be a 1-D array of positive values.")
    return float(0.5 * np.mean(np.log(2 * np.pi * v)[:, None] + e**2 / v[:, None]))


def calibrate_llpr(
    state: LLPRState,
    features: np.ndarray,
    errors: np.ndarray,
    *,
    structure_index: np.ndarray | None = None,
    n_structures: int | None = None,
    reg_grid: np.ndarray | None = None,
) -> LLPRState:
    """Choose α² (and optionally ς²) by maximising a Gaussian likelihood of held-out errors.

    Model: each error component e_ic ~ N(0, α² v_i(ς²)), v_i = φ_iᵀ (ΦᵀΦ + ς² I)⁻¹ φ_i. For fixed
    ς² the maximum-likelihood α² is closed-form, α̂² = mean_{i,c} e_ic² / v_i; ς² is picked from
    ``reg_grid`` by the profile likelihood, −½ k Σ_i log(2π α̂² v_i) − ½ n k (one
    eigendecomposition of ΦᵀΦ serves the whole grid). Without ``reg_grid`` ς² is kept.

    Pass force residual components ``[n, 3]`` or per-atom ε of Zhu et al. Eq. (2) as ``[n]``:
    Σ_c e_ic² = 3ε_i², so both give the same α̂² and the same choice of ς².

    Args:
        state: from :func:`fit_llpr` on the *training* features.
        features: ``[n_atoms, d]`` features of validation atoms (not training atoms).
        errors: ``[n_rows]`` or ``[n_rows, k]`` prediction errors per scored row (per atom, or per
            structure if ``structure_index`` is given).
        structure_index: score per-structure sums (energy errors) instead of atoms.
        n_structures: number of structures when ``structure_index`` is given.
        reg_grid: candidate ς² values ``[g]`` (> 0), e.g. ``np.geomspace(1e-6, 1e2, 25) * scale``.

    Returns:
        a new :class:`LLPRState` with the calibrated α² (and ς²).
    """
    f = _features(features, "features")
    rows = f if structure_index is None else sum_per_structure(f, structure_index, n_structures)
    e = _errors(errors, rows.shape[0])
    sq = np.sum(e**2, axis=1)  # [n]
    n, k = e.shape
    if reg_grid is None:
        grid = np.asarray([state.reg])
    else:
        grid = np.asarray(reg_grid, dtype=np.float64).ravel()
        if grid.size == 0 or np.any(~(grid > 0)):
            raise ValueError("reg_grid must be a non-empty array of positive ς² values.")
    lam, vecs = np.linalg.eigh(state.gram)
    lam = np.clip(lam, 0.0, None)
    proj2 = (rows @ vecs) ** 2  # [n, d]
    v = proj2 @ (1.0 / (lam[:, None] + grid[None, :]))  # [n, g]
    if np.any(~(v > 0)):
        raise ValueError(
            "some validation rows have zero LLPR variance (all-zero features?); drop them."
        )
    alpha2 = np.mean(sq[:, None] / v, axis=0) / k  # [g]
    loglik = -0.5 * k * np.sum(np.log(2 * np.pi * alpha2[None, :] * v), axis=0) - 0.5 * n * k
    best = int(np.argmax(loglik))
    reg = float(grid[best])
    if reg == state.reg:
        inv_chol, inv_cov = state.inv_chol, state.inv_cov
    else:
        inv_chol, inv_cov = _factor(state.gram, reg)
    return state._replace(inv_chol=inv_chol, inv_cov=inv_cov, reg=reg, alpha2=float(alpha2[best]))


# ---------------------------------------------------------------------------------------------
# the per-atom LLPR as an uncertainty method


def _fit(train_outputs: ModelOutputs, *, key=None, reg: float | None = None) -> LLPRState:
    del key  # deterministic
    return fit_llpr(train_outputs.features, reg=reg)


def _score(state: LLPRState, outputs: ModelOutputs):
    """Per-atom σ = sqrt(α² ‖L⁻¹ f‖²) (the per-atom proxy of the module docstring)."""
    features = outputs.features
    if array_module(features) is np:
        return np.sqrt(llpr_variance(state, features))
    z = features @ jnp.asarray(state.inv_chol, features.dtype).T
    return jnp.sqrt(state.alpha2 * jnp.sum(z * z, axis=-1))


def _recalibrate(state: LLPRState, outputs: ModelOutputs, errors) -> LLPRState:
    """α² and ς² by maximum likelihood of held-out force residuals ``errors`` [n_atoms, 3]
    (:func:`calibrate_llpr`), ς² from 28 values log-spaced over 1e-8 … 10 times the mean
    eigenvalue scale of ΦᵀΦ (its trace over d)."""
    scale = float(np.trace(state.gram)) / state.gram.shape[0]
    grid = np.geomspace(1e-8, 1e1, 28) * scale
    return calibrate_llpr(state, outputs.features, np.asarray(errors), reg_grid=grid)


#: Bigi et al. (2024), per-atom proxy: σ_i = α sqrt(f_iᵀ (ΦᵀΦ + ς² I)⁻¹ f_i) on the final scalar
#: features (one row per training atom, α² = 1 unless recalibrated on held-out force residuals,
#: :func:`calibrate_llpr`); a structure's score is the square root of the summed atomic
#: variances, like the ensemble's.
LLPR = UncertaintyMethod(
    name="llpr",
    model="potential",
    unit="α",
    label="LLPR",
    fit=_fit,
    score=_score,
    aggregate=aggregate_sigma,
    save=save_state,
    load=lambda path: load_state(LLPRState, Path(path)),
    describe=lambda state: {"reg": float(state.reg), "alpha2": float(state.alpha2)},
    recalibrate=_recalibrate,
)
