"""Numbers behind Fig. 4 of Zhu et al. (2023): landscapes on a β scan and how alike they are.

A landscape is one value per structure of a scan (fixed β, α and γ on a grid): the structure-level
uncertainty of a method (sum of atomic NLLs for the GMM, sqrt of summed atomic σ² for the
ensembles) normalised by Eq. (11), or an energy relative to the scan's minimum. The paper compares
them by eye; here each pair gets a Spearman and a Pearson correlation over the structures and the
overlap of their top-decile structures.
"""

from __future__ import annotations

from collections.abc import Mapping

import numpy as np

from experiments.common.prediction import Prediction, structure_uncertainty
from nequip_jax.uncertainty.metrics import normalize_landscape, spearman

__all__ = ["landscape_values", "pearson", "top_overlap", "compare_landscapes", "PAIRS"]

#: Pairs compared, as (a, b) keys of :func:`landscape_values`.
PAIRS = (
    ("U:gmm", "E:reference"),
    ("U:traditional", "E:reference"),
    ("U:diverse", "E:reference"),
    ("U:gmm", "U:traditional"),
    ("U:gmm", "U:diverse"),
    ("U:traditional", "U:diverse"),
    ("E:gmm", "E:reference"),
    ("E:traditional", "E:reference"),
    ("E:diverse", "E:reference"),
    ("Estd:traditional", "E:reference"),
    ("Estd:diverse", "E:reference"),
    ("Estd:traditional", "U:traditional"),
)


def landscape_values(preds: Mapping[str, Prediction]) -> dict[str, np.ndarray]:
    """Every landscape of one scan, [S] each.

    Keys: ``U:<method>`` (normalised uncertainty, Eq. (11), in [0, 1]), ``E:<method>`` (model
    energy minus its minimum, eV), ``E:reference`` (reference energy minus its minimum, eV),
    ``Estd:<ensemble>`` (spread of the members' total energies, normalised by Eq. (11)).
    """
    out: dict[str, np.ndarray] = {}
    for method, pred in preds.items():
        out[f"U:{method}"] = normalize_landscape(structure_uncertainty(method, pred))
        out[f"E:{method}"] = pred.energy - np.min(pred.energy)
        if np.all(np.isfinite(pred.energy_std)):
            out[f"Estd:{method}"] = normalize_landscape(pred.energy_std)
    ref = next(iter(preds.values())).energy_true
    if np.all(np.isfinite(ref)):
        out["E:reference"] = ref - np.min(ref)
    return out


def pearson(a: np.ndarray, b: np.ndarray) -> float:
    """Pearson correlation of two [S] vectors (NaN if either is constant)."""
    a = np.asarray(a, np.float64) - np.mean(a)
    b = np.asarray(b, np.float64) - np.mean(b)
    denom = np.sqrt(np.dot(a, a) * np.dot(b, b))
    return float(np.dot(a, b) / denom) if denom > 0 else float("nan")


def top_overlap(a: np.ndarray, b: np.ndarray, fraction: float = 0.1) -> float:
    """Fraction of the ``fraction`` highest structures of ``a`` that are also among the highest
    of ``b`` (ties broken by index); about ``fraction`` for unrelated landscapes, 1 for the same
    ranking."""
    n = max(1, int(round(fraction * len(a))))
    top_a = set(np.lexsort((np.arange(len(a)), -np.asarray(a)))[:n].tolist())
    top_b = set(np.lexsort((np.arange(len(b)), -np.asarray(b)))[:n].tolist())
    return len(top_a & top_b) / n


def compare_landscapes(values: Mapping[str, np.ndarray]) -> dict[str, dict[str, float]]:
    """Spearman, Pearson and top-decile overlap for every pair of :data:`PAIRS` present."""
    out = {}
    for a, b in PAIRS:
        if a in values and b in values:
            out[f"{a} vs {b}"] = {
                "spearman": spearman(values[a], values[b]),
                "pearson": pearson(values[a], values[b]),
                "top10_overlap": top_overlap(values[a], values[b]),
            }
    return out
