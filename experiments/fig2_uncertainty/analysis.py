"""Numbers behind Fig. 2 of Zhu et al. (2023): per-atom uncertainty against per-atom error.

Pure functions of :class:`~experiments.common.prediction.Prediction` arrays and of per-seed result
dictionaries; no training, no files.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence

import numpy as np

from experiments.common.prediction import Prediction
from nequip_jax.uncertainty.summary import summarize_uncertainty

__all__ = ["method_metrics", "ordering_holds", "monotone_increasing", "TEMPERATURE_TESTS"]

#: Test sets of the 300 K setting in order of temperature.
TEMPERATURE_TESTS = ("test_300K", "test_600K", "test_1200K")


def method_metrics(pred: Prediction) -> dict:
    """Error and uncertainty-quality numbers of one method on one test set.

    Returns (units: eV/Å, eV/atom; U in its own units):
        ``eps_bar`` (Eq. (3)), ``eps_mean``, ``eps_max``, ``energy_rmse_per_atom``,
        ``spearman`` (ρ of U and ε; higher is better), ``roc_auc`` and ``average_precision`` for
        flagging the 10 % largest ε, ``max_tpr_x_ppv`` (Eqs. (9)–(10) on the paper's grid),
        ``u_median`` and ``u_q90`` (location of the U distribution).
    """
    summary = summarize_uncertainty(pred.eps, pred.u)
    n_atoms = np.bincount(pred.structure, minlength=pred.energy.shape[0])
    de = (pred.energy - pred.energy_true) / n_atoms
    return {
        "eps_bar": summary["eps_bar"],
        "eps_mean": summary["eps_mean"],
        "eps_max": summary["eps_max"],
        "energy_rmse_per_atom": float(np.sqrt(np.mean(de**2))),
        "spearman": summary["spearman"],
        "roc_auc": summary["roc_auc"],
        "average_precision": summary["average_precision"],
        "max_tpr_x_ppv": summary["max_tpr_x_ppv"],
        "u_median": float(np.median(pred.u)),
        "u_q90": float(np.quantile(pred.u, 0.9)),
    }


def ordering_holds(eps_bar: Mapping[str, float]) -> bool:
    """Fig. 2 text: "the traditional ensemble achieves the lowest ε̄ while the single model used
    for fitting the GMM has the highest ε̄". ``eps_bar`` maps gmm/traditional/diverse to ε̄."""
    trad, single, div = eps_bar["traditional"], eps_bar["gmm"], eps_bar["diverse"]
    return bool(trad <= min(single, div) and single >= max(trad, div))


def monotone_increasing(values: Sequence[float]) -> bool:
    """True when ``values`` strictly increase (e.g. median U over 300 → 600 → 1200 K)."""
    v = np.asarray(values, np.float64)
    return bool(v.size >= 2 and np.all(np.diff(v) > 0))
