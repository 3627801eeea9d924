"""Uncertainty: the method protocol and its registry (GMM head, ensemble σ, LLPR, random), deep
ensembles, the paper's metrics, calibration.

Submodules: :mod:`.protocol` (:class:`UncertaintyMethod`, :class:`ModelOutputs`),
:mod:`.registry` (:data:`METHODS`, :func:`get_method`), the methods :mod:`.gmm_head`,
:mod:`.ensemble_sigma`, :mod:`.llpr`, :mod:`.random_score`; :mod:`.metrics` (Zhu et al. 2023,
Eqs. (2)–(4), (8)–(12)), :mod:`.summary`, :mod:`.calibration`. Ensembles themselves are
:mod:`nequip_jax.model.ensemble` (the bundle) and :mod:`nequip_jax.training.ensemble` (training).
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
from nequip_jax.uncertainty.protocol import ModelOutputs, UncertaintyMethod
from nequip_jax.uncertainty.registry import METHODS, get_method, methods_for
from nequip_jax.uncertainty.summary import summarize_uncertainty

__all__ = [
    "METHODS",
    "ModelOutputs",
    "UncertaintyMethod",
    "get_method",
    "methods_for",
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
