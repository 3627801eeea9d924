"""Predictions of the trained methods: per-atom errors and uncertainties, cached per frame set."""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path
from typing import NamedTuple

import ase
import numpy as np

from experiments.common.methods import METHODS, UNCERTAINTY
from experiments.common.sources import digest, fingerprint
from experiments.common.training import TrainedMethods
from nequip_jax.uncertainty.metrics import force_error_per_atom
from nequip_jax.uncertainty.registry import get_method

__all__ = [
    "Prediction",
    "predict_methods",
    "structure_uncertainty",
]


class Prediction(NamedTuple):
    """Per-atom errors and uncertainties of one method on a list of structures.

    Attributes:
        eps: [n_atoms] per-atom force RMSE ε (Eq. (2), eV/Å); NaN without reference forces.
        u: [n_atoms] uncertainty: GMM NLL (Eq. (8), nats) or ensemble σ (Eq. (4), eV/Å).
        structure: [n_atoms] index of each atom's structure.
        energy: [S] predicted energies (eV; the member mean for ensembles).
        energy_true: [S] reference energies (eV; NaN when absent).
        energy_std: [S] spread of the members' energies (eV; NaN for the single model).
    """

    eps: np.ndarray
    u: np.ndarray
    structure: np.ndarray
    energy: np.ndarray
    energy_true: np.ndarray
    energy_std: np.ndarray


def _labels(frames: Sequence[ase.Atoms]) -> tuple[np.ndarray, list[np.ndarray | None]]:
    energies, forces = [], []
    for atoms in frames:
        results = atoms.calc.results if atoms.calc is not None else {}
        energies.append(float(results["energy"]) if "energy" in results else np.nan)
        forces.append(np.asarray(results["forces"]) if "forces" in results else None)
    return np.array(energies), forces


def _prediction(pred: dict, u: list[np.ndarray], frames, energy_std) -> Prediction:
    e_true, f_true = _labels(frames)
    eps = [
        force_error_per_atom(fp, ft) if ft is not None else np.full(len(fp), np.nan)
        for fp, ft in zip(pred["forces"], f_true)
    ]
    n_atoms = [len(a) for a in frames]
    return Prediction(
        eps=np.concatenate(eps),
        u=np.concatenate(u).astype(np.float64),
        structure=np.repeat(np.arange(len(frames)), n_atoms),
        energy=np.asarray(pred["energy"], np.float64),
        energy_true=e_true,
        energy_std=np.asarray(energy_std, np.float64),
    )


def predict_methods(
    trained: TrainedMethods,
    frames: Sequence[ase.Atoms],
    *,
    cache: str | Path | None = None,
    batch_size: int = 32,
) -> dict[str, Prediction]:
    """Predictions of every trained method on ``frames``.

    With ``cache`` (a file path ending in ``.npz``) the arrays are stored there and reused when
    the file exists and the frames and models are unchanged.
    """
    tag = digest({"frames": fingerprint(frames), "models": _model_tags(trained)})
    if cache is not None and Path(cache).is_file():
        with np.load(cache) as saved:
            if str(saved["tag"]) == tag:
                return {
                    m: Prediction(*(saved[f"{m}.{f}"] for f in Prediction._fields))
                    for m in METHODS
                    if f"{m}.eps" in saved
                }
    out: dict[str, Prediction] = {}
    for name, single in trained.singles.items():  # the head's score, in the model's program
        pred = single.predict(frames, batch_size=batch_size)
        no_spread = np.full(len(frames), np.nan)
        out[name] = _prediction(pred, pred["uncertainty"], frames, no_spread)
    for name, ensemble in (("traditional", trained.traditional), ("diverse", trained.diverse)):
        if ensemble is not None:
            pred = ensemble.predict(frames, batch_size=batch_size, method=UNCERTAINTY[name])
            out[name] = _prediction(pred, pred["uncertainty"], frames, pred["energy_std"])
    if cache is not None:
        arrays = {f"{m}.{f}": getattr(p, f) for m, p in out.items() for f in Prediction._fields}
        Path(cache).parent.mkdir(parents=True, exist_ok=True)
        tmp = Path(cache).with_suffix(".part.npz")
        np.savez(tmp, tag=np.array(tag), **arrays)
        tmp.replace(cache)
    return out


def _model_tags(trained: TrainedMethods) -> list:
    """Folder names (hashes of the recipes) and training times of the pieces behind each
    method: a retrained piece (time budgets make training non-deterministic) gets a new tag."""
    info = trained.info

    def tag(piece):
        return None if piece is None else [piece.get("folder"), piece.get("seconds")]

    return [
        tag(info.get("traditional")),
        [tag(v) for v in info.get("variants", [])],
        {m: tag(info.get(m)) for m in sorted(trained.singles)},
        trained.traditional is not None,
        trained.diverse is not None,
    ]


def structure_uncertainty(method: str, pred: Prediction) -> np.ndarray:
    """[S] structure-level uncertainty (text before Eq. (11)): the registered method's
    aggregation (the sum of the atomic NLLs for the GMM, the square root of the summed atomic
    variances σ² for the ensembles)."""
    n = int(pred.energy.shape[0])
    return get_method(UNCERTAINTY[method]).aggregate(pred.u, pred.structure, n)
