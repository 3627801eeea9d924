"""Numbers behind Fig. 3 of Zhu et al. (2023): summaries of TPR/PPV maps (Eqs. (9)–(10)).

A map is computed on the paper's ranges — U_cutoff from the 1st to the 99th percentile of U,
ε_cutoff from 0 to the 99th percentile of ε — with U cut-offs at evenly spaced *percentiles*, so
that rows of different methods (different units: NLL or σ) mean the same fraction of flagged
atoms and maps can be compared cell by cell.
"""

from __future__ import annotations

from typing import NamedTuple

import numpy as np

from nequip_jax.uncertainty.metrics import paper_grid, tpr_ppv

__all__ = ["RateMap", "rate_map", "map_summary", "map_distance"]


class RateMap(NamedTuple):
    """TPR and PPV on a percentile grid.

    Attributes:
        percentiles: [n_u] U_cutoff percentiles (1 … 99).
        eps_cutoffs: [n_eps] ε cut-offs (0 … 99th percentile of ε), units of ε.
        tpr, ppv: [n_u, n_eps]; NaN where undefined (no positive / no flagged atom).
    """

    percentiles: np.ndarray
    eps_cutoffs: np.ndarray
    tpr: np.ndarray
    ppv: np.ndarray


def rate_map(u: np.ndarray, eps: np.ndarray, n: int = 50) -> RateMap:
    """TPR/PPV of uncertainty ``u`` [n_atoms] against errors ``eps`` [n_atoms] on an n × n grid."""
    u_cut, e_cut = paper_grid(u, eps, n, u_spacing="percentile")
    rates = tpr_ppv(u, eps, u_cut, e_cut)
    return RateMap(np.linspace(1.0, 99.0, n), e_cut, rates.tpr, rates.ppv)


def map_summary(m: RateMap, level: float = 0.9) -> dict:
    """Where a map is "≈ 1" (≥ ``level``).

    Returns:
        ``tpr_area`` / ``ppv_area`` / ``both_area``: fractions of grid cells with TPR, PPV, both
        ≥ level (undefined cells count as not reaching it); ``max_percentile_both``: the largest
        U_cutoff percentile at which some ε_cutoff gives TPR and PPV ≥ level (the paper: "around
        the 30th percentile"; NaN if none). A perfect ranking of ε by U reaches 99, a random one
        about 10 (TPR ≥ 0.9 needs 90 % of the atoms flagged).
    """
    tpr = np.nan_to_num(m.tpr, nan=-1.0)
    ppv = np.nan_to_num(m.ppv, nan=-1.0)
    both = (tpr >= level) & (ppv >= level)
    rows = np.flatnonzero(both.any(axis=1))
    return {
        "tpr_area": float(np.mean(tpr >= level)),
        "ppv_area": float(np.mean(ppv >= level)),
        "both_area": float(np.mean(both)),
        "max_percentile_both": float(m.percentiles[rows].max()) if rows.size else float("nan"),
    }


def map_distance(a: RateMap, b: RateMap) -> dict:
    """Mean absolute cell-wise difference of TPR and of PPV between two maps of the same grid
    size (cells undefined in either map are left out); 0 means identical profiles."""
    if a.tpr.shape != b.tpr.shape:
        raise ValueError(
            f"maps of shapes {a.tpr.shape} and {b.tpr.shape} cannot be compared; build both "
            "with the same n."
        )
    return {
        "tpr": float(np.nanmean(np.abs(a.tpr - b.tpr))),
        "ppv": float(np.nanmean(np.abs(a.ppv - b.ppv))),
    }
