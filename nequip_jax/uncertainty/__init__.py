"""Uncertainty: the GMM head on final features, deep ensembles, the paper's metrics, calibration.

Submodules: :mod:`.metrics` (Zhu et al. 2023, Eqs. (2)–(4), (8)–(12)), :mod:`.summary`,
:mod:`.calibration`, :mod:`.llpr`, :mod:`.gmm_head`, :mod:`.ensemble`.
"""

from nequip_jax.uncertainty.metrics import (
    active_learning_score,
    aggregate_nll,
    aggregate_sigma,
    average_precision,
    ensemble_mean_forces,
    ensemble_sigma,
    error_summary,
    force_error_per_atom,
    mean_force_error,
    normalize_landscape,
    paper_grid,
    roc_auc,
    select_top,
    spearman,
    tpr_ppv,
)
from nequip_jax.uncertainty.summary import summarize_uncertainty

__all__ = [
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
    "roc_auc",
    "select_top",
    "spearman",
    "summarize_uncertainty",
    "tpr_ppv",
]
