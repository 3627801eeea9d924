"""Data: extended-XYZ reading and validation, the 3BPA registry and splits, graphs and batches."""

from nequip_jax.data._graphs import (
    GraphDataset,
    PaddingBudget,
    compute_budget,
    iterate_batches,
    pad_graph,
    padding_fraction,
    round_up,
    shared_budget,
    species_indices,
)
from nequip_jax.data._neighbors import neighbour_list
from nequip_jax.data._registry import (
    ARCHIVE_URL,
    DIHEDRAL_INDICES,
    SPLITS,
    StandInWarning,
    load_3bpa,
    load_isolated_atom_energies,
    search_folders,
    stand_in_1200K_indices,
)
from nequip_jax.data._splits import PaperSplit, SplitIndices, paper_split, split_indices
from nequip_jax.data._stats import DatasetStatistics, compute_statistics, species_counts
from nequip_jax.data._xyz import DataError, read_structures, validate_structures

__all__ = [
    "ARCHIVE_URL",
    "DIHEDRAL_INDICES",
    "SPLITS",
    "DataError",
    "DatasetStatistics",
    "GraphDataset",
    "PaddingBudget",
    "PaperSplit",
    "SplitIndices",
    "StandInWarning",
    "compute_budget",
    "compute_statistics",
    "iterate_batches",
    "load_3bpa",
    "load_isolated_atom_energies",
    "neighbour_list",
    "pad_graph",
    "padding_fraction",
    "paper_split",
    "read_structures",
    "round_up",
    "shared_budget",
    "species_indices",
    "search_folders",
    "species_counts",
    "split_indices",
    "stand_in_1200K_indices",
    "validate_structures",
]
