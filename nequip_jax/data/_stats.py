"""Data-set statistics the model needs: neighbour count, energy shifts, force scale."""

from __future__ import annotations

from collections.abc import Mapping
from typing import NamedTuple

import numpy as np

from nequip_jax.data._graphs import GraphDataset

__all__ = ["DatasetStatistics", "compute_statistics", "species_counts"]


class DatasetStatistics(NamedTuple):
    """Statistics of a training set.

    Attributes:
        avg_num_neighbors: mean number of edges per atom (the convolution normalisation of
            Batzner et al. 2022 divides by its square root).
        energy_shift: [n_species] per-species energy shift (eV): isolated-atom energies, or the
            least-squares fit of total energies on species counts.
        force_rms: root mean square of the force components (eV/Å), the per-species energy scale.
        energy_residual_rms: RMS per-atom energy after removing the shifts (eV/atom).
    """

    avg_num_neighbors: float
    energy_shift: np.ndarray
    force_rms: float
    energy_residual_rms: float


def species_counts(dataset: GraphDataset) -> np.ndarray:
    """[n_structures, n_species] number of atoms of each species per structure."""
    counts = np.zeros((len(dataset), len(dataset.species)))
    np.add.at(counts, (dataset.graph_of_node(), dataset.species_index), 1.0)
    return counts


def compute_statistics(
    dataset: GraphDataset, isolated_atom_energies: Mapping[int, float] | None = None
) -> DatasetStatistics:
    """Statistics of ``dataset`` (use the training set only).

    Args:
        dataset: the training graphs (with energy and force labels).
        isolated_atom_energies: E0 by atomic number; when given the shift of each species is its E0,
            otherwise a least-squares fit (minimum-norm when species counts are collinear, as for
            a single molecule).
    """
    if not dataset.has_energy.all() or not dataset.has_forces.all():
        raise ValueError(
            f"{dataset.source}: statistics need energy and force labels on every structure."
        )
    counts = species_counts(dataset)
    if isolated_atom_energies is not None:
        missing = [z for z in dataset.species if z not in isolated_atom_energies]
        if missing:
            raise ValueError(
                f"no isolated-atom energy for atomic numbers {missing}; add them to the "
                "isolated-atom file or fit the shifts by least squares (pass None)."
            )
        shift = np.array([isolated_atom_energies[z] for z in dataset.species])
    else:
        shift = np.linalg.lstsq(counts, dataset.energy, rcond=None)[0]
    residual = (dataset.energy - counts @ shift) / dataset.n_node
    return DatasetStatistics(
        avg_num_neighbors=float(dataset.n_edge.sum() / dataset.n_node.sum()),
        energy_shift=shift,
        force_rms=float(np.sqrt(np.mean(dataset.forces**2))),
        energy_residual_rms=float(np.sqrt(np.mean(residual**2))),
    )
