"""Error and uncertainty-quality metrics of Zhu, Batzner, Musaelian, Kozinsky (J. Chem. Phys. 2023).

Host-side analysis: numpy arrays in, numpy arrays (or Python floats) out. Nothing here draws random
numbers or touches a model. Units follow the inputs (the paper uses eV/Å for forces and ε).

Conventions used throughout:

* ``n`` is the number of atoms, ``J`` the number of ensemble members, ``S`` the number of
  structures.
* An uncertainty ``U`` flags an atom as "high-error" when ``U > U_cutoff`` and the atom truly is
  high-error when ``ε > ε_cutoff`` (strict inequalities, as written below Eqs. (9)–(10)).
* Undefined ratios (0/0) are NaN unless a function documents otherwise: a rate computed from no
  samples is not a score, and NaN keeps it out of plots and ``nanmean`` instead of silently
  painting it as perfect (1) or useless (0).
"""

from __future__ import annotations

from typing import Literal, NamedTuple

import numpy as np

__all__ = [
    "ErrorSummary",
    "TprPpv",
    "active_learning_score",
    "aggregate_nll",
    "aggregate_sigma",
    "average_precision",
    "ensemble_mean_forces",
    "ensemble_sigma",
    "error_summary",
    "force_error_per_atom",
    "mean_force_error",
    "normalize_landscape",
    "paper_grid",
    "rankdata_average",
    "roc_auc",
    "select_top",
    "spearman",
    "tpr_ppv",
]


# ---------------------------------------------------------------------------------------------
# input checks


def _finite(x: np.ndarray | list | float, name: str, ndim: int | None = None) -> np.ndarray:
    """Return ``x`` as a float64 array after checking finiteness and (optionally) rank."""
    arr = np.asarray(x, dtype=np.float64)
    if ndim is not None and arr.ndim != ndim:
        raise ValueError(
            f"{name} must have {ndim} dimension(s), got shape {arr.shape}; "
            f"reshape it (e.g. flatten per-atom values over all structures) before calling."
        )
    if not np.all(np.isfinite(arr)):
        n_bad = int(np.sum(~np.isfinite(arr)))
        raise ValueError(
            f"{name} contains {n_bad} non-finite value(s) (NaN or inf); remove or mask those "
            f"atoms first (a NaN usually means a failed model evaluation or a padding atom)."
        )
    return arr


def _same_length(a: np.ndarray, b: np.ndarray, name_a: str, name_b: str) -> None:
    if a.shape[0] != b.shape[0]:
        raise ValueError(
            f"{name_a} has {a.shape[0]} entries but {name_b} has {b.shape[0]}; both must be "
            f"indexed by the same atoms in the same order."
        )


def _structure_index(structure_index: np.ndarray, n: int, n_structures: int | None) -> int:
    """Validate an atom → structure map ``[n]`` and return the number of structures."""
    idx = np.asarray(structure_index)
    if idx.shape != (n,):
        raise ValueError(
            f"structure_index must have shape ({n},) (one entry per atom), got {idx.shape}."
        )
    if not np.issubdtype(idx.dtype, np.integer):
        raise ValueError(
            f"structure_index must be an integer array, got dtype {idx.dtype}; "
            f"use np.repeat(np.arange(n_structures), atoms_per_structure)."
        )
    if n and idx.min() < 0:
        raise ValueError("structure_index contains negative entries; structures are 0 … S-1.")
    needed = int(idx.max()) + 1 if n else 0
    if n_structures is None:
        return needed
    if n_structures < needed:
        raise ValueError(
            f"n_structures={n_structures} but structure_index refers to structure {needed - 1}; "
            f"pass n_structures >= {needed} or leave it as None."
        )
    return n_structures


# ---------------------------------------------------------------------------------------------
# errors and ensembles (Eqs. 1-4)


def force_error_per_atom(forces_pred: np.ndarray, forces_true: np.ndarray) -> np.ndarray:
    """Per-atom force RMSE ε_i, Zhu et al. 2023, Eq. (2).

    ε_i = sqrt( (1/3) Σ_{α∈x,y,z} (F̄_{i,α} − F_{i,α})² ).

    Args:
        forces_pred: predicted forces, ``[n, 3]`` (any leading shape ``[..., 3]`` works).
        forces_true: reference forces, same shape.

    Returns:
        ε: ``[n]`` (the leading shape of the inputs), same units as the forces. Lower is better.
    """
    pred = _finite(forces_pred, "forces_pred")
    true = _finite(forces_true, "forces_true")
    if pred.shape != true.shape or pred.ndim == 0 or pred.shape[-1] != 3:
        raise ValueError(
            f"forces_pred {pred.shape} and forces_true {true.shape} must both be [..., 3] with the "
            f"same shape (Cartesian components last)."
        )
    return np.sqrt(np.mean((pred - true) ** 2, axis=-1))


def mean_force_error(eps: np.ndarray) -> float:
    """Force RMSE ε̄ over a set of atoms, Zhu et al. 2023, Eq. (3).

    Eq. (3) is a root-mean-square over all 3N force components,
    ε̄ = sqrt( (1/3N) Σ_i Σ_α (F̄_{i,α} − F_{i,α})² ), which equals sqrt(mean_i ε_i²) — an RMS of the
    per-atom ε of Eq. (2), *not* their arithmetic mean (the arithmetic mean is
    :attr:`ErrorSummary.eps_mean`; RMS ≥ mean).

    Args:
        eps: per-atom errors ε_i, ``[n]`` with n ≥ 1.

    Returns:
        ε̄ as a Python float, units of ε. Lower is better.
    """
    e = _finite(eps, "eps", ndim=1)
    if e.size == 0:
        raise ValueError("eps is empty; ε̄ of Eq. (3) needs at least one atom.")
    return float(np.sqrt(np.mean(e**2)))


def ensemble_mean_forces(member_forces: np.ndarray) -> np.ndarray:
    """Component-wise ensemble mean force F̄, Zhu et al. 2023, Eq. (1).

    Args:
        member_forces: forces predicted by each member, ``[J, n, 3]`` (member axis first).

    Returns:
        F̄: ``[n, 3]``.
    """
    f = _finite(member_forces, "member_forces")
    if f.ndim < 2 or f.shape[0] < 1 or f.shape[-1] != 3:
        raise ValueError(
            f"member_forces must be [J, n, 3] with the member axis first, got {f.shape}."
        )
    return f.mean(axis=0)


def ensemble_sigma(member_forces: np.ndarray, *, ddof: int = 0) -> np.ndarray:
    """Ensemble force uncertainty σ, Zhu et al. 2023, Eq. (4).

    σ_i = sqrt( (1/3) Σ_α Var_j(F̂_{j,i,α}) ), the square root of the mean over x, y, z of the
    across-member variance. Eq. (4) divides by 3J, i.e. it uses the *population* variance
    (``ddof=0``, the default here); ``ddof=1`` gives the sample variance 1/(J−1).

    Args:
        member_forces: ``[J, n, 3]``, member axis first.
        ddof: delta degrees of freedom of the variance; 0 follows the paper.

    Returns:
        σ: ``[n]``. Higher means more uncertain.
    """
    f = _finite(member_forces, "member_forces")
    if f.ndim < 2 or f.shape[-1] != 3:
        raise ValueError(
            f"member_forces must be [J, n, 3] with the member axis first, got {f.shape}."
        )
    n_members = f.shape[0]
    if n_members - ddof <= 0:
        raise ValueError(
            f"ddof={ddof} needs more than {ddof} ensemble members, got J={n_members}; "
            f"use ddof=0 (the paper's Eq. (4)) or add members."
        )
    var = np.var(f, axis=0, ddof=ddof)  # [n, 3]
    return np.sqrt(var.mean(axis=-1))


# ---------------------------------------------------------------------------------------------
# TPR / PPV (Eqs. 9-10)


class TprPpv(NamedTuple):
    """Classification rates on a grid of cut-offs; every array is ``[n_u, n_eps]``.

    Row k uses ``u_cutoffs[k]``, column l uses ``eps_cutoffs[l]`` (input order is preserved).
    """

    tpr: np.ndarray  # TP / (TP + FN), Eq. (9)
    ppv: np.ndarray  # TP / (TP + FP), Eq. (10)
    tpr_x_ppv: np.ndarray  # product shown in the paper's Fig. 3
    tp: np.ndarray  # counts, int64
    fp: np.ndarray
    fn: np.ndarray


def _count_above(values: np.ndarray, cutoffs: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """For each value, how many (sorted) cut-offs lie strictly below it; plus the sort order."""
    order = np.argsort(cutoffs, kind="stable")
    # searchsorted(side="left") = #{c : c < v}; value v exceeds exactly those sorted cut-offs.
    return np.searchsorted(cutoffs[order], values, side="left"), order


def tpr_ppv(
    uncertainty: np.ndarray,
    eps: np.ndarray,
    u_cutoffs: np.ndarray,
    eps_cutoffs: np.ndarray,
    *,
    zero_division: float = np.nan,
) -> TprPpv:
    """True-positive rate and positive predictive value, Zhu et al. 2023, Eqs. (9)–(10).

    For each pair (U_cutoff, ε_cutoff): TP = #{U > U_cutoff, ε > ε_cutoff},
    FN = #{U ≤ U_cutoff, ε > ε_cutoff}, FP = #{U > U_cutoff, ε ≤ ε_cutoff};
    TPR = TP / (TP + FN), PPV = TP / (TP + FP). Higher is better for both.

    0/0 — TPR when no atom has ε > ε_cutoff, PPV when no atom has U > U_cutoff — is set to
    ``zero_division`` (NaN by default: the rate is undefined, not 0 or 1).

    Cost is O(n log m + n_u·n_eps) with m = n_u + n_eps: each atom is binned once into the grid
    of cut-offs and the counts are reverse cumulative sums of that 2-D histogram.

    Args:
        uncertainty: per-atom U, ``[n]``.
        eps: per-atom error ε, ``[n]``.
        u_cutoffs: ``[n_u]`` any order.
        eps_cutoffs: ``[n_eps]`` any order.
        zero_division: value used for undefined ratios.

    Returns:
        :class:`TprPpv` with arrays ``[n_u, n_eps]``.
    """
    u = _finite(uncertainty, "uncertainty", ndim=1)
    e = _finite(eps, "eps", ndim=1)
    _same_length(u, e, "uncertainty", "eps")
    uc = _finite(u_cutoffs, "u_cutoffs", ndim=1)
    ec = _finite(eps_cutoffs, "eps_cutoffs", ndim=1)
    n_u, n_e = uc.size, ec.size

    iu, u_order = _count_above(u, uc)  # [n] in 0 … n_u
    ie, e_order = _count_above(e, ec)  # [n] in 0 … n_e
    hist = np.bincount(iu * (n_e + 1) + ie, minlength=(n_u + 1) * (n_e + 1))
    hist = hist.reshape(n_u + 1, n_e + 1)
    # tail[a, b] = #{atoms with iu >= a and ie >= b}
    tail = hist[::-1, ::-1].cumsum(axis=0).cumsum(axis=1)[::-1, ::-1]
    tp_sorted = tail[1:, 1:]  # U above sorted u-cutoff k and ε above sorted ε-cutoff l
    pred_pos = tail[1:, :1]  # [n_u, 1]  TP + FP
    true_pos = tail[:1, 1:]  # [1, n_e]  TP + FN

    tp = np.empty((n_u, n_e), dtype=np.int64)
    tp[np.ix_(u_order, e_order)] = tp_sorted
    pp = np.empty((n_u, 1), dtype=np.int64)
    pp[u_order] = pred_pos
    ap = np.empty((1, n_e), dtype=np.int64)
    ap[:, e_order] = true_pos

    with np.errstate(invalid="ignore", divide="ignore"):
        tpr = np.where(ap > 0, tp / np.maximum(ap, 1), zero_division)
        ppv = np.where(pp > 0, tp / np.maximum(pp, 1), zero_division)
    tpr = np.broadcast_to(tpr, (n_u, n_e)).astype(np.float64)
    ppv = np.broadcast_to(ppv, (n_u, n_e)).astype(np.float64)
    return TprPpv(
        tpr=tpr,
        ppv=ppv,
        tpr_x_ppv=tpr * ppv,
        tp=tp,
        fp=(pp - tp),
        fn=(ap - tp),
    )


def paper_grid(
    uncertainty: np.ndarray,
    eps: np.ndarray,
    n: int = 50,
    *,
    n_eps: int | None = None,
    u_spacing: Literal["linear", "percentile"] = "linear",
) -> tuple[np.ndarray, np.ndarray]:
    """Cut-off grid of the paper's Fig. 3 (Zhu et al. 2023, text below Eqs. (9)–(10)).

    U_cutoff runs from the 1st to the 99th percentile of U and ε_cutoff from 0 to the 99th
    percentile of ε ("to minimize the impacts of outliers"). Percentiles use numpy's default
    (linear interpolation).

    Args:
        uncertainty: ``[n_atoms]``.
        eps: ``[n_atoms]``.
        n: number of U cut-offs (and of ε cut-offs unless ``n_eps`` is given), ≥ 2.
        n_eps: number of ε cut-offs; defaults to ``n``.
        u_spacing: ``"linear"`` — evenly spaced values between the two percentiles;
            ``"percentile"`` — the U values at evenly spaced percentiles 1 … 99 (useful because
            U distributions, NLL in particular, are skewed).

    Returns:
        ``(u_cutoffs [n], eps_cutoffs [n_eps])``, both increasing.
    """
    u = _finite(uncertainty, "uncertainty", ndim=1)
    e = _finite(eps, "eps", ndim=1)
    n_e = n if n_eps is None else n_eps
    if n < 2 or n_e < 2:
        raise ValueError(f"paper_grid needs at least 2 cut-offs per axis, got n={n}, n_eps={n_e}.")
    if u.size == 0 or e.size == 0:
        raise ValueError("paper_grid needs at least one atom.")
    if u_spacing == "linear":
        lo, hi = np.percentile(u, [1.0, 99.0])
        u_cut = np.linspace(lo, hi, n)
    elif u_spacing == "percentile":
        u_cut = np.percentile(u, np.linspace(1.0, 99.0, n))
    else:
        raise ValueError(f"u_spacing must be 'linear' or 'percentile', got {u_spacing!r}.")
    eps_cut = np.linspace(0.0, np.percentile(e, 99.0), n_e)
    return u_cut, eps_cut


# ---------------------------------------------------------------------------------------------
# threshold-free scores


def rankdata_average(x: np.ndarray) -> np.ndarray:
    """1-based ranks with ties given their average rank (scipy's ``method="average"``).

    Args:
        x: ``[n]``.

    Returns:
        ranks: ``[n]`` float64.
    """
    a = _finite(x, "x", ndim=1)
    order = np.argsort(a, kind="stable")
    s = a[order]
    new_group = np.r_[True, s[1:] != s[:-1]]  # [n] start of a run of equal values
    starts = np.flatnonzero(new_group)  # 0-based first position of each run
    ends = np.r_[starts[1:], a.size]  # exclusive end of each run
    group_rank = 0.5 * (starts + 1 + ends)  # mean of positions start+1 … end (1-based)
    ranks = np.empty(a.size, dtype=np.float64)
    ranks[order] = group_rank[np.cumsum(new_group) - 1]
    return ranks


def spearman(u: np.ndarray, eps: np.ndarray) -> float:
    """Spearman rank correlation between uncertainty and error (ties: average ranks).

    The Pearson correlation of :func:`rankdata_average` ranks, as ``scipy.stats.spearmanr``.
    Returns NaN when either input is constant (the correlation is undefined). Higher is better.

    Args:
        u: ``[n]``; eps: ``[n]``.
    """
    a = _finite(u, "u", ndim=1)
    b = _finite(eps, "eps", ndim=1)
    _same_length(a, b, "u", "eps")
    ra = rankdata_average(a)
    rb = rankdata_average(b)
    ra -= ra.mean()
    rb -= rb.mean()
    denom = np.sqrt(np.dot(ra, ra) * np.dot(rb, rb))
    if denom == 0.0:
        return float("nan")
    return float(np.dot(ra, rb) / denom)


def _binary_labels(
    u: np.ndarray, eps: np.ndarray, eps_cutoff: float
) -> tuple[np.ndarray, np.ndarray]:
    """(U as float64 ``[n]``, labels ε > ε_cutoff ``[n]`` bool), the positives of Eqs. (9)–(10)."""
    a = _finite(u, "u", ndim=1)
    b = _finite(eps, "eps", ndim=1)
    _same_length(a, b, "u", "eps")
    return a, b > float(eps_cutoff)


def roc_auc(u: np.ndarray, eps: np.ndarray, eps_cutoff: float) -> float:
    """Area under the ROC curve of U as a detector of high-error atoms (ε > ε_cutoff).

    Computed as the Mann–Whitney statistic with average ranks, which counts a tie in U between a
    positive and a negative atom as 1/2 — the same value as ``sklearn.metrics.roc_auc_score``
    (trapezoidal ROC). Threshold-free companion of Eqs. (9)–(10); 0.5 is chance, 1 is perfect.
    Returns NaN if all atoms fall in one class.

    Args:
        u: ``[n]`` uncertainties; eps: ``[n]`` errors; eps_cutoff: scalar, units of ε.
    """
    a, y = _binary_labels(u, eps, eps_cutoff)
    n_pos = int(y.sum())
    n_neg = y.size - n_pos
    if n_pos == 0 or n_neg == 0:
        return float("nan")
    ranks = rankdata_average(a)
    return float((ranks[y].sum() - n_pos * (n_pos + 1) / 2.0) / (n_pos * n_neg))


def average_precision(u: np.ndarray, eps: np.ndarray, eps_cutoff: float) -> float:
    """Average precision of U as a detector of high-error atoms (ε > ε_cutoff).

    AP = Σ_k (R_k − R_{k−1}) P_k over the distinct values of U in decreasing order, with precision
    P_k = PPV (Eq. 10) and recall R_k = TPR (Eq. 9) at ``U_cutoff`` just below the k-th value;
    tied U values enter as one threshold. This is the definition of
    ``sklearn.metrics.average_precision_score`` (no interpolation). Chance level is the fraction of
    positives; 1 is perfect. Returns NaN when there is no positive atom.

    Args:
        u: ``[n]``; eps: ``[n]``; eps_cutoff: scalar, units of ε.
    """
    a, y = _binary_labels(u, eps, eps_cutoff)
    n_pos = int(y.sum())
    if n_pos == 0:
        return float("nan")
    order = np.argsort(-a, kind="stable")
    s = a[order]
    yy = y[order]
    last_of_group = np.r_[s[1:] != s[:-1], True]  # end of each run of equal scores
    tp = np.cumsum(yy)[last_of_group]
    n_flagged = (np.flatnonzero(last_of_group) + 1).astype(np.float64)
    precision = tp / n_flagged
    recall = tp / n_pos
    return float(np.sum(np.diff(recall, prepend=0.0) * precision))


# ---------------------------------------------------------------------------------------------
# structures, landscapes and active learning (Eqs. 11-12)


def aggregate_nll(
    nll_per_atom: np.ndarray, structure_index: np.ndarray, n_structures: int | None = None
) -> np.ndarray:
    """Structure-level GMM uncertainty: the sum of the atomic NLLs (Zhu et al. 2023, text before
    Eq. (11): "we sum all 27 atomic force NLL's for each structure").

    Args:
        nll_per_atom: ``[n]``, Eq. (8) per atom.
        structure_index: ``[n]`` int, structure of each atom (0 … S−1).
        n_structures: S; defaults to ``max(structure_index) + 1``. Structures without atoms get 0.

    Returns:
        ``[S]`` summed NLL (nats). Higher is more uncertain.
    """
    x = _finite(nll_per_atom, "nll_per_atom", ndim=1)
    s = _structure_index(structure_index, x.size, n_structures)
    return np.bincount(np.asarray(structure_index), weights=x, minlength=s).astype(np.float64)


def aggregate_sigma(
    sigma_per_atom: np.ndarray, structure_index: np.ndarray, n_structures: int | None = None
) -> np.ndarray:
    """Structure-level ensemble uncertainty: sqrt of the sum of the atomic variances σ_i² (Zhu et
    al. 2023, text before Eq. (11); it treats atomic forces as independent).

    Args:
        sigma_per_atom: ``[n]``, Eq. (4) per atom, ≥ 0.
        structure_index: ``[n]`` int, structure of each atom.
        n_structures: S; defaults to ``max(structure_index) + 1``. Structures without atoms get 0.

    Returns:
        ``[S]``, units of σ.
    """
    x = _finite(sigma_per_atom, "sigma_per_atom", ndim=1)
    if np.any(x < 0):
        raise ValueError("sigma_per_atom must be non-negative (it is a standard deviation).")
    s = _structure_index(structure_index, x.size, n_structures)
    return np.sqrt(np.bincount(np.asarray(structure_index), weights=x**2, minlength=s))


def normalize_landscape(u: np.ndarray) -> np.ndarray:
    """Min–max normalisation of structure uncertainties, Zhu et al. 2023, Eq. (11).

    (U − U_low) / (U_high − U_low), with U_low and U_high the minimum and maximum over all
    configurations of the landscape, so the result lies in [0, 1]. NaN entries (missing
    configurations, e.g. the gap of the paper's Fig. 4) are ignored for the range and stay NaN.

    Args:
        u: any shape (e.g. ``[S]`` or an α×γ grid).

    Returns:
        array of the same shape.
    """
    a = np.asarray(u, dtype=np.float64)
    if np.any(np.isinf(a)):
        raise ValueError("u contains inf; Eq. (11) needs a finite range.")
    finite = a[~np.isnan(a)]
    if finite.size == 0:
        raise ValueError("u has no finite entry to normalise.")
    lo, hi = finite.min(), finite.max()
    if hi == lo:
        raise ValueError(
            f"all finite uncertainties equal {lo}; Eq. (11) divides by U_high − U_low = 0. "
            f"A flat landscape carries no ranking — check that the uncertainties were computed."
        )
    return (a - lo) / (hi - lo)


def active_learning_score(
    u_per_atom: np.ndarray, structure_index: np.ndarray, n_structures: int | None = None
) -> np.ndarray:
    """Structure score for active learning, Zhu et al. 2023, Eq. (12): U_{k*} = max_k U_k.

    Args:
        u_per_atom: ``[n]``.
        structure_index: ``[n]`` int, structure of each atom.
        n_structures: S; defaults to ``max(structure_index) + 1``. Structures without atoms get
            −inf (never selected ahead of a real structure).

    Returns:
        ``[S]``. Higher means more worth labelling.
    """
    x = _finite(u_per_atom, "u_per_atom", ndim=1)
    s = _structure_index(structure_index, x.size, n_structures)
    out = np.full(s, -np.inf)
    np.maximum.at(out, np.asarray(structure_index), x)
    return out


def select_top(scores: np.ndarray, n: int) -> np.ndarray:
    """Indices of the ``n`` highest scores, best first; ties go to the lower index.

    Deterministic: equal scores are ordered by index, so the result depends only on the scores.
    Used to pick the N_train structures with the highest U_{k*} (text after
    Eq. (12)).

    Args:
        scores: ``[S]``, finite or −inf.
        n: 0 ≤ n ≤ S.

    Returns:
        ``[n]`` int64 indices into ``scores``.
    """
    a = np.asarray(scores, dtype=np.float64)
    if a.ndim != 1:
        raise ValueError(f"scores must be 1-D, got shape {a.shape}.")
    if np.any(np.isnan(a)) or np.any(a == np.inf):
        raise ValueError("scores contain NaN or +inf; selection by rank would be arbitrary.")
    if not 0 <= n <= a.size:
        raise ValueError(f"cannot select n={n} of {a.size} structures; need 0 <= n <= {a.size}.")
    # lexsort: last key is primary → sort by −score, then by index.
    order = np.lexsort((np.arange(a.size), -a))
    return order[:n].astype(np.int64)


# ---------------------------------------------------------------------------------------------
# Table I summary


class ErrorSummary(NamedTuple):
    """Error statistics of Table I of Zhu et al. 2023 (units of ε)."""

    eps_bar: float  # Eq. (3): RMS over all force components = sqrt(mean ε²)
    eps_mean: float  # arithmetic mean of ε (the "average" of the Fig. 2 caption)
    eps_bar_above: float  # ε̄_200: mean of ε over atoms with ε > threshold; NaN if none
    eps_max: float  # max ε
    n_above: int  # number of atoms with ε > threshold
    threshold: float


def error_summary(eps: np.ndarray, threshold: float = 0.2) -> ErrorSummary:
    """ε̄, ε̄_200 and ε_max of Zhu et al. 2023, Table I (text after Eq. (12)).

    ε̄_200 is "the average force RMSE of all ε above 200 meV/Å": here the arithmetic mean of the
    per-atom ε_i over atoms with ε_i > ``threshold`` (strict). The threshold is in the units of
    ``eps``; the default 0.2 assumes eV/Å (200 meV/Å).

    Args:
        eps: per-atom ε, ``[n]`` with n ≥ 1.
        threshold: ε level above which atoms count as high-error.

    Returns:
        :class:`ErrorSummary`. Lower is better for every error field.
    """
    e = _finite(eps, "eps", ndim=1)
    if e.size == 0:
        raise ValueError("eps is empty; the summary needs at least one atom.")
    above = e > threshold
    n_above = int(above.sum())
    return ErrorSummary(
        eps_bar=mean_force_error(e),
        eps_mean=float(e.mean()),
        eps_bar_above=float(e[above].mean()) if n_above else float("nan"),
        eps_max=float(e.max()),
        n_above=n_above,
        threshold=float(threshold),
    )
