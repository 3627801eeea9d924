"""Structures → graphs → padded batches of fixed shape.

A :class:`GraphDataset` stores every structure of a data set as one set of concatenated numpy
arrays (neighbour lists computed once, on the host). :func:`compute_budget` picks the padded sizes
once per (data set, batch size) so that any batch of up to ``batch_size`` structures fits, and
:meth:`GraphDataset.batch` assembles a ``jraph.GraphsTuple`` of exactly that size — the same
shape for every batch of an epoch, so a jitted step compiles once.

Batch layout (``jraph.GraphsTuple`` with dictionaries):

- ``nodes``: ``positions`` [n_node, 3], ``species`` [n_node] (int32 index into the species list),
  ``forces`` [n_node, 3] (targets; zeros where unknown), ``mask`` [n_node] (bool),
  ``graph_index`` [n_node] (int32; which graph a node belongs to).
- ``edges``: ``shifts`` [n_edge, 3] (Å), ``mask`` [n_edge] (bool).
- ``globals``: ``energy`` [n_graph] (targets), ``mask`` [n_graph] (bool).
- ``senders`` / ``receivers`` [n_edge] (int32), ``n_node`` / ``n_edge`` [n_graph] (int32).

Padding follows jraph: padding nodes and edges belong to the last graph, which is always a
padding graph; padding edges are self-loops on the last node (zero length: mask them).
"""

from __future__ import annotations

import math
from collections.abc import Iterator, Sequence
from typing import NamedTuple

import ase
import jax
import jraph
import numpy as np

from nequip_jax.data._neighbors import neighbour_list
from nequip_jax.data._xyz import DataError, validate_structures

__all__ = [
    "PaddingBudget",
    "GraphDataset",
    "compute_budget",
    "iterate_batches",
    "padding_fraction",
    "round_up",
]


class PaddingBudget(NamedTuple):
    """Padded sizes of a batch: total nodes, edges and graphs (including one padding graph)."""

    n_node: int
    n_edge: int
    n_graph: int


def round_up(value: float, multiple: int) -> int:
    """The smallest multiple of ``multiple`` that is ``>= value``: how every padded size (nodes,
    edges, feature rows) of the library is rounded, so that nearby sizes share one compiled
    shape."""
    return int(math.ceil(value / multiple) * multiple)


class GraphDataset:
    """Structures converted to graphs within ``r_max``, stored as concatenated host arrays.

    Args:
        structures: the frames (energy/forces read through the ASE calculator when present).
        r_max: neighbour cutoff (Å).
        species: the model's species list (atomic numbers); node ``species`` is the index into it.
        source: name used in error messages (e.g. the file name).
        require_labels: raise if a frame lacks energy or forces (training data); otherwise
            missing labels become zeros and ``has_energy``/``has_forces`` say which frames have
            them.
    """

    def __init__(
        self,
        structures: Sequence[ase.Atoms],
        r_max: float,
        species: Sequence[int],
        *,
        source: str = "structures",
        require_labels: bool = True,
    ):
        validate_structures(
            structures, source, require_energy=require_labels, require_forces=require_labels
        )
        self.r_max = float(r_max)
        self.species = tuple(int(z) for z in species)
        lookup = np.full(
            max(self.species + tuple(int(a.numbers.max()) for a in structures)) + 1, -1
        )
        lookup[list(self.species)] = np.arange(len(self.species))

        positions, species_idx, forces, senders, receivers, shifts = [], [], [], [], [], []
        n_node, n_edge, energy, has_energy, has_forces = [], [], [], [], []
        for index, atoms in enumerate(structures):
            idx = lookup[atoms.numbers]
            if np.any(idx < 0):
                bad = sorted({int(z) for z in atoms.numbers[idx < 0]})
                raise DataError(
                    f"{source}, frame {index}: element(s) with atomic number {bad} are not in the "
                    f"model's species list {list(self.species)}; train a model that includes "
                    "them or remove the frame."
                )
            s, r, sh = neighbour_list(
                atoms.positions, self.r_max, cell=np.asarray(atoms.cell), pbc=atoms.pbc
            )
            results = atoms.calc.results if atoms.calc is not None else {}
            positions.append(atoms.positions)
            species_idx.append(idx)
            senders.append(s)
            receivers.append(r)
            shifts.append(sh)
            n_node.append(len(atoms))
            n_edge.append(len(s))
            has_energy.append("energy" in results)
            has_forces.append("forces" in results)
            energy.append(float(results.get("energy", 0.0)))
            forces.append(np.asarray(results.get("forces", np.zeros((len(atoms), 3)))))

        self.n_node = np.asarray(n_node, dtype=np.int32)
        self.n_edge = np.asarray(n_edge, dtype=np.int32)
        self.node_offset = np.concatenate([[0], np.cumsum(self.n_node)]).astype(np.int64)
        self.edge_offset = np.concatenate([[0], np.cumsum(self.n_edge)]).astype(np.int64)
        self.positions = np.concatenate(positions).astype(np.float64)
        self.species_index = np.concatenate(species_idx).astype(np.int32)
        self.forces = np.concatenate(forces).astype(np.float64)
        self.senders = np.concatenate(senders).astype(np.int32)
        self.receivers = np.concatenate(receivers).astype(np.int32)
        self.shifts = np.concatenate(shifts).astype(np.float64)
        self.energy = np.asarray(energy, dtype=np.float64)
        self.has_energy = np.asarray(has_energy)
        self.has_forces = np.asarray(has_forces)
        self.source = source

    def __len__(self) -> int:
        return len(self.n_node)

    def graph_of_node(self) -> np.ndarray:
        """[n_nodes_total] index of the structure each atom belongs to."""
        return np.repeat(np.arange(len(self)), self.n_node)

    def batch(
        self, indices: Sequence[int], budget: PaddingBudget, *, dtype=np.float32
    ) -> jraph.GraphsTuple:
        """Assemble the structures ``indices`` into one batch padded to ``budget``.

        Raises:
            ValueError: the structures do not fit the budget (the message gives both sizes).
        """
        indices = np.asarray(indices, dtype=np.int64)
        nn, ne = self.n_node[indices], self.n_edge[indices]
        real_nodes, real_edges, n_real = int(nn.sum()), int(ne.sum()), len(indices)
        if (
            real_nodes + 1 > budget.n_node
            or real_edges > budget.n_edge
            or n_real + 1 > budget.n_graph
        ):
            raise ValueError(
                f"{n_real} structures with {real_nodes} atoms and {real_edges} edges do not fit "
                f"the budget {budget} (one node and one graph are reserved for padding); compute "
                "the budget with compute_budget() over this data set."
            )
        node_idx = _ranges(self.node_offset[indices], nn)
        edge_idx = _ranges(self.edge_offset[indices], ne)
        # Local edge indices → batch node indices.
        node_start = np.concatenate([[0], np.cumsum(nn)[:-1]])
        edge_shift = np.repeat(node_start, ne)

        pad_n, pad_e = budget.n_node - real_nodes, budget.n_edge - real_edges
        last = budget.n_node - 1
        positions = np.zeros((budget.n_node, 3), dtype)
        positions[:real_nodes] = self.positions[node_idx]
        forces = np.zeros((budget.n_node, 3), dtype)
        forces[:real_nodes] = self.forces[node_idx]
        species = np.zeros(budget.n_node, np.int32)
        species[:real_nodes] = self.species_index[node_idx]
        graph_index = np.full(budget.n_node, budget.n_graph - 1, np.int32)
        graph_index[:real_nodes] = np.repeat(np.arange(n_real), nn)
        senders = np.full(budget.n_edge, last, np.int32)
        receivers = np.full(budget.n_edge, last, np.int32)
        senders[:real_edges] = self.senders[edge_idx] + edge_shift
        receivers[:real_edges] = self.receivers[edge_idx] + edge_shift
        shifts = np.zeros((budget.n_edge, 3), dtype)
        shifts[:real_edges] = self.shifts[edge_idx]
        energy = np.zeros(budget.n_graph, dtype)
        energy[:n_real] = self.energy[indices]
        n_node = np.zeros(budget.n_graph, np.int32)
        n_node[:n_real] = nn
        n_node[-1] = pad_n
        n_edge = np.zeros(budget.n_graph, np.int32)
        n_edge[:n_real] = ne
        n_edge[-1] = pad_e
        return jraph.GraphsTuple(
            nodes={
                "positions": positions,
                "species": species,
                "forces": forces,
                "mask": np.arange(budget.n_node) < real_nodes,
                "graph_index": graph_index,
            },
            edges={"shifts": shifts, "mask": np.arange(budget.n_edge) < real_edges},
            globals={"energy": energy, "mask": np.arange(budget.n_graph) < n_real},
            senders=senders,
            receivers=receivers,
            n_node=n_node,
            n_edge=n_edge,
        )


def _ranges(starts: np.ndarray, lengths: np.ndarray) -> np.ndarray:
    """Concatenation of ``arange(s, s + l)`` for each pair, vectorised."""
    total = int(lengths.sum())
    if total == 0:
        return np.zeros(0, np.int64)
    offsets = np.repeat(starts - np.concatenate([[0], np.cumsum(lengths)[:-1]]), lengths)
    return np.arange(total) + offsets


def compute_budget(
    datasets: GraphDataset | Sequence[GraphDataset], batch_size: int, *, round_to: int = 1
) -> PaddingBudget:
    """Smallest budget that fits any ``batch_size`` structures of the data set(s).

    Nodes: the sum of the ``batch_size`` largest structures plus one padding node; edges: the sum
    of the ``batch_size`` largest edge counts; graphs: ``batch_size`` plus one padding graph.
    ``round_to`` rounds nodes and edges up (e.g. 8 or 128 on accelerators) so that several data
    sets share one compiled shape.
    """
    if batch_size < 1:
        raise ValueError(f"batch_size={batch_size}: must be at least 1.")
    if isinstance(datasets, GraphDataset):
        datasets = [datasets]
    n_node = np.concatenate([d.n_node for d in datasets])
    n_edge = np.concatenate([d.n_edge for d in datasets])
    k = min(batch_size, len(n_node))
    nodes = int(np.sort(n_node)[::-1][:k].sum()) + 1
    edges = max(int(np.sort(n_edge)[::-1][:k].sum()), 1)
    return PaddingBudget(round_up(nodes, round_to), round_up(edges, round_to), k + 1)


def padding_fraction(dataset: GraphDataset, batch_size: int, budget: PaddingBudget) -> dict:
    """Fraction of padded nodes and edges over an epoch of ``batch_size`` batches (in order)."""
    n_batches = math.ceil(len(dataset) / batch_size)
    nodes = n_batches * budget.n_node
    edges = n_batches * budget.n_edge
    return {
        "nodes": 1.0 - dataset.n_node.sum() / nodes,
        "edges": 1.0 - dataset.n_edge.sum() / edges,
    }


def iterate_batches(
    dataset: GraphDataset,
    batch_size: int,
    budget: PaddingBudget | None = None,
    *,
    key: jax.Array | None = None,
    drop_last: bool = False,
    dtype=np.float32,
) -> Iterator[jraph.GraphsTuple]:
    """Batches over one epoch, all padded to ``budget`` (computed if ``None``).

    Args:
        dataset: the graphs.
        batch_size: structures per batch (the last batch may hold fewer, padded to the same shape).
        budget: padded sizes; default :func:`compute_budget` of the data set.
        key: a ``jax.random`` key to shuffle the order; ``None`` keeps the data-set order.
        drop_last: skip a final incomplete batch.
        dtype: float dtype of positions, forces and energies.
    """
    budget = budget or compute_budget(dataset, batch_size)
    n = len(dataset)
    order = np.asarray(jax.random.permutation(key, n)) if key is not None else np.arange(n)
    for start in range(0, n, batch_size):
        chunk = order[start : start + batch_size]
        if drop_last and len(chunk) < batch_size:
            return
        yield dataset.batch(chunk, budget, dtype=dtype)
