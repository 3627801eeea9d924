"""Errors of a potential on labelled structures: per structure, per atom, and summaries."""

from __future__ import annotations

from collections.abc import Sequence

import ase
import numpy as np

from nequip_jax.uncertainty.metrics import force_error_per_atom

__all__ = ["evaluate_potential", "prediction_errors"]


def evaluate_potential(potential, atoms_list: Sequence[ase.Atoms], batch_size: int = 32) -> dict:
    """Predict labelled structures and compare with their labels.

    ``potential`` is a :class:`~nequip_jax.model.Potential` or an ensemble (anything whose
    ``predict(atoms_list, batch_size=...)`` returns ``energy`` and ``forces``). Returns
    :func:`prediction_errors` of its predictions.
    """
    return prediction_errors(potential.predict(atoms_list, batch_size=batch_size), atoms_list)


def prediction_errors(pred: dict, atoms_list: Sequence[ase.Atoms]) -> dict:
    """Errors of predictions ``pred`` (``energy`` [S] in eV, ``forces`` a list of [n_atoms, 3]
    in eV/Å, optionally ``uncertainty`` a list of [n_atoms]) against the labels of
    ``atoms_list``: the one evaluation of the library.

    Returns a dictionary with

    - ``summary``: ``energy_rmse_per_atom`` and ``energy_mae_per_atom`` (eV/atom),
      ``forces_rmse`` (RMS over all force components, eV/Å: ε̄ of Zhu et al. (2023), Eq. (3),
      the RMS of the per-atom ε of Eq. (2)), ``forces_mae`` (eV/Å), ``mean_eps`` (the
      arithmetic mean of ε over atoms, ≤ ε̄), ``max_eps``, ``n_structures``, ``n_atoms``;
    - ``per_structure``: ``energy_true``, ``energy_pred``, ``energy_error_per_atom``, ``n_atoms``;
    - ``per_atom``: ``structure``, ``atom``, ``eps`` and, when the model gives one, ``uncertainty``
      (the model's uncertainty method's score, e.g. the GMM NLL of Eq. (8) or σ of Eq. (4)).
    """
    e_true = np.array([a.get_potential_energy() for a in atoms_list])
    n_atoms = np.array([len(a) for a in atoms_list])
    f_true = [a.get_forces() for a in atoms_list]
    eps = [force_error_per_atom(fp, ft) for fp, ft in zip(pred["forces"], f_true)]
    de = (pred["energy"] - e_true) / n_atoms
    all_eps = np.concatenate(eps)
    dF = np.concatenate([fp - ft for fp, ft in zip(pred["forces"], f_true)])
    result = {
        "summary": {
            "energy_rmse_per_atom": float(np.sqrt(np.mean(de**2))),
            "energy_mae_per_atom": float(np.mean(np.abs(de))),
            "forces_rmse": float(np.sqrt(np.mean(dF**2))),
            "forces_mae": float(np.mean(np.abs(dF))),
            "mean_eps": float(np.mean(all_eps)),
            "max_eps": float(np.max(all_eps)),
            "n_structures": len(atoms_list),
            "n_atoms": int(n_atoms.sum()),
        },
        "per_structure": {
            "energy_true": e_true.tolist(),
            "energy_pred": pred["energy"].tolist(),
            "energy_error_per_atom": de.tolist(),
            "n_atoms": n_atoms.tolist(),
        },
        "per_atom": {
            "structure": np.repeat(np.arange(len(atoms_list)), n_atoms).tolist(),
            "atom": np.concatenate([np.arange(n) for n in n_atoms]).tolist(),
            "eps": all_eps.tolist(),
        },
    }
    if "uncertainty" in pred:  # GMM NLL (Eq. (8)) or ensemble σ (Eq. (4))
        result["per_atom"]["uncertainty"] = np.concatenate(pred["uncertainty"]).tolist()
    return result
