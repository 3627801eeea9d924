"""Training loss and error accumulators over real (unpadded) atoms and structures."""

from __future__ import annotations

from typing import NamedTuple

import jax.numpy as jnp
import jraph
import numpy as np

__all__ = ["ErrorSums", "error_sums", "weighted_loss", "summarize"]


class ErrorSums(NamedTuple):
    """Sums over a batch (add them over batches, then :func:`summarize`).

    Energies are per atom (total-energy error divided by the number of atoms), forces per
    Cartesian component.
    """

    energy_sq: jnp.ndarray
    energy_abs: jnp.ndarray
    n_graphs: jnp.ndarray
    forces_sq: jnp.ndarray
    forces_abs: jnp.ndarray
    n_components: jnp.ndarray


def error_sums(pred: dict, graph: jraph.GraphsTuple) -> ErrorSums:
    """Errors of ``pred`` (``energy`` [n_graph], ``forces`` [n_node, 3]) on the real entries."""
    graph_mask = graph.globals["mask"]
    node_mask = graph.nodes["mask"]
    energy, forces = jnp.asarray(pred["energy"]), jnp.asarray(pred["forces"])
    n_atoms = jnp.maximum(graph.n_node, 1).astype(energy.dtype)
    de = jnp.where(graph_mask, (energy - graph.globals["energy"]) / n_atoms, 0.0)
    df = jnp.where(node_mask[:, None], forces - graph.nodes["forces"], 0.0)
    return ErrorSums(
        energy_sq=jnp.sum(de**2),
        energy_abs=jnp.sum(jnp.abs(de)),
        n_graphs=jnp.sum(graph_mask).astype(de.dtype),
        forces_sq=jnp.sum(df**2),
        forces_abs=jnp.sum(jnp.abs(df)),
        n_components=3.0 * jnp.sum(node_mask).astype(de.dtype),
    )


def weighted_loss(sums: ErrorSums, energy_weight: float, forces_weight: float) -> jnp.ndarray:
    """``energy_weight`` · per-atom energy MSE + ``forces_weight`` · force-component MSE."""
    energy_mse = sums.energy_sq / jnp.maximum(sums.n_graphs, 1.0)
    forces_mse = sums.forces_sq / jnp.maximum(sums.n_components, 1.0)
    return energy_weight * energy_mse + forces_weight * forces_mse


def summarize(sums: ErrorSums, energy_weight: float, forces_weight: float) -> dict[str, float]:
    """RMSE/MAE of energy per atom (eV/atom) and force components (eV/Å), and the loss."""
    s = {k: float(np.asarray(v)) for k, v in sums._asdict().items()}
    ng, nc = max(s["n_graphs"], 1.0), max(s["n_components"], 1.0)
    return {
        "energy_rmse": float(np.sqrt(s["energy_sq"] / ng)),
        "energy_mae": s["energy_abs"] / ng,
        "forces_rmse": float(np.sqrt(s["forces_sq"] / nc)),
        "forces_mae": s["forces_abs"] / nc,
        "loss": energy_weight * s["energy_sq"] / ng + forces_weight * s["forces_sq"] / nc,
    }
