"""Training loss and error accumulators over real (unpadded) atoms and structures."""

from __future__ import annotations

from typing import NamedTuple

import jax.numpy as jnp
import jraph
import numpy as np

__all__ = ["ENERGY_LOSSES", "ErrorSums", "error_sums", "weighted_loss", "summarize"]

#: Energy terms of the loss: the MSE of the total energy (eV², the authors' nequip configs:
#: ``loss_coeffs: {forces: 729, total_energy: 1}``) or of the energy per atom ((eV/atom)²).
ENERGY_LOSSES = ("total", "per_atom")


class ErrorSums(NamedTuple):
    """Sums over a batch (add them over batches, then :func:`summarize`).

    ``energy_*`` are per atom (total-energy error divided by the number of atoms),
    ``total_energy_sq`` is of the total energy, ``forces_*`` per Cartesian component.
    """

    energy_sq: jnp.ndarray
    energy_abs: jnp.ndarray
    n_graphs: jnp.ndarray
    forces_sq: jnp.ndarray
    forces_abs: jnp.ndarray
    n_components: jnp.ndarray
    total_energy_sq: jnp.ndarray


def error_sums(pred: dict, graph: jraph.GraphsTuple) -> ErrorSums:
    """Errors of ``pred`` (``energy`` [n_graph], ``forces`` [n_node, 3]) on the real entries."""
    graph_mask = graph.globals["mask"]
    node_mask = graph.nodes["mask"]
    energy, forces = jnp.asarray(pred["energy"]), jnp.asarray(pred["forces"])
    n_atoms = jnp.maximum(graph.n_node, 1).astype(energy.dtype)
    de_total = jnp.where(graph_mask, energy - graph.globals["energy"], 0.0)
    de = de_total / n_atoms
    df = jnp.where(node_mask[:, None], forces - graph.nodes["forces"], 0.0)
    return ErrorSums(
        energy_sq=jnp.sum(de**2),
        energy_abs=jnp.sum(jnp.abs(de)),
        n_graphs=jnp.sum(graph_mask).astype(de.dtype),
        forces_sq=jnp.sum(df**2),
        forces_abs=jnp.sum(jnp.abs(df)),
        n_components=3.0 * jnp.sum(node_mask).astype(de.dtype),
        total_energy_sq=jnp.sum(de_total**2),
    )


def _check_energy_loss(energy_loss: str) -> None:
    if energy_loss not in ENERGY_LOSSES:
        raise ValueError(f"energy_loss={energy_loss!r}: choose one of {ENERGY_LOSSES}.")


def weighted_loss(
    sums: ErrorSums, energy_weight, forces_weight, energy_loss: str = "total"
) -> jnp.ndarray:
    """``energy_weight`` · energy MSE + ``forces_weight`` · force-component MSE of a batch.

    With ``energy_loss="total"`` the energy MSE is of the total energy in eV² (nequip's
    ``total_energy`` loss term; with weights 1 : 729 this is the authors' 3BPA loss), with
    ``"per_atom"`` of the energy per atom in (eV/atom)². For a molecule of N atoms the total
    term is N² times the per-atom one. The force MSE is over the Cartesian components of the
    real atoms (eV²/Å²).
    """
    _check_energy_loss(energy_loss)
    n_graphs = jnp.maximum(sums.n_graphs, 1.0)
    energy_sq = sums.total_energy_sq if energy_loss == "total" else sums.energy_sq
    forces_mse = sums.forces_sq / jnp.maximum(sums.n_components, 1.0)
    return energy_weight * energy_sq / n_graphs + forces_weight * forces_mse


def summarize(
    sums: ErrorSums, energy_weight: float, forces_weight: float, energy_loss: str = "total"
) -> dict[str, float]:
    """RMSE/MAE of energy per atom (eV/atom), RMSE of the total energy (eV), RMSE/MAE of force
    components (eV/Å), and the loss (:func:`weighted_loss` of the whole set)."""
    _check_energy_loss(energy_loss)
    s = {k: float(np.asarray(v)) for k, v in sums._asdict().items()}
    ng, nc = max(s["n_graphs"], 1.0), max(s["n_components"], 1.0)
    energy_sq = s["total_energy_sq"] if energy_loss == "total" else s["energy_sq"]
    return {
        "energy_rmse": float(np.sqrt(s["energy_sq"] / ng)),
        "energy_mae": s["energy_abs"] / ng,
        "total_energy_rmse": float(np.sqrt(s["total_energy_sq"] / ng)),
        "forces_rmse": float(np.sqrt(s["forces_sq"] / nc)),
        "forces_mae": s["forces_abs"] / nc,
        "loss": energy_weight * energy_sq / ng + forces_weight * s["forces_sq"] / nc,
    }
