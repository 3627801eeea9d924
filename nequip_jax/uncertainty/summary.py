"""Threshold-free and thresholded summaries of how well an uncertainty ranks per-atom errors."""

from __future__ import annotations

import numpy as np

from nequip_jax.uncertainty.metrics import (
    average_precision,
    error_summary,
    paper_grid,
    roc_auc,
    spearman,
    tpr_ppv,
)

__all__ = ["summarize_uncertainty"]


def summarize_uncertainty(eps: np.ndarray, u: np.ndarray, *, flag_quantile: float = 0.9) -> dict:
    """Summary metrics of uncertainty ``u`` against per-atom error ``eps`` (both [n_atoms]).

    Returns a dictionary with ``eps_bar`` (Eq. (3), eV/Å), ``eps_mean``, ``eps_max``,
    ``spearman`` (rank correlation of U with ε; higher is better), ``roc_auc`` and
    ``average_precision`` for flagging the atoms whose ε exceeds its ``flag_quantile`` quantile
    (``eps_cutoff``; 0.5 and the positive fraction are the no-skill values), and the mean of
    TPR×PPV over the paper's 40×40 grid (Eqs. (9)–(10); its maximum is uninformative, since the
    corner ε_cutoff = 0, U_cutoff = 1st percentile always gives about 0.99; it is returned as
    ``max_tpr_x_ppv`` for completeness).
    """
    eps = np.asarray(eps, np.float64)
    u = np.asarray(u, np.float64)
    cutoff = float(np.quantile(eps, flag_quantile))
    u_cut, e_cut = paper_grid(u, eps, 40)
    rates = tpr_ppv(u, eps, u_cut, e_cut)
    errors = error_summary(eps)
    return {
        "eps_bar": errors.eps_bar,
        "eps_mean": errors.eps_mean,
        "eps_max": errors.eps_max,
        "spearman": spearman(u, eps),
        "eps_cutoff": cutoff,
        "roc_auc": roc_auc(u, eps, cutoff),
        "average_precision": average_precision(u, eps, cutoff),
        "positive_fraction": float(np.mean(eps > cutoff)),
        "mean_tpr_x_ppv": float(np.nanmean(rates.tpr_x_ppv)),
        "max_tpr_x_ppv": float(np.nanmax(rates.tpr_x_ppv)),
    }
