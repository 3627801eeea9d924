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
    "pad_graph",
    "species_indices",
    "compute_budget",
    "iterate_batches",
    "padding_fraction",
    "round_up",
    "shared_budget",
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
    q = math.ceil(value / multiple)
    # The quotient is rounded (and underflows for tiny values): correct it by one either way.
    if q * multiple < value:
        q += 1
    elif q > 0 and (q - 1) * multiple >= value:
        q -= 1
    return int(q * multiple)


def shared_budget(budget: PaddingBudget, batch_size: int | None = None) -> PaddingBudget:
    """``budget`` padded so that data sets of similar size share one compiled shape.

    Nodes and edges are rounded up to 16 steps per power of two (a multiple of
    ``2^(floor(log2 n) − 4)``, at least 8; at most 1/16 more than needed). A budget for fewer
    structures than ``batch_size`` (a data set smaller than one batch) first takes the next
    power of two of graphs (at most ``batch_size``) and nodes and edges in proportion, so that
    small data sets of other sizes share it too.
    """
    n_node, n_edge, n_graph = budget
    k = n_graph - 1
    if batch_size is not None and 0 < k < batch_size:
        target = min(1 << (k - 1).bit_length(), batch_size)
        n_node = math.ceil((n_node - 1) * target / k) + 1
        n_edge = math.ceil(n_edge * target / k)
        n_graph = target + 1

    def rounded(n: int) -> int:
        return round_up(n, max(8, 1 << max(n.bit_length() - 5, 0)))

    return PaddingBudget(rounded(n_node), rounded(n_edge), n_graph)


def species_indices(
    numbers: np.ndarray, species: Sequence[int], *, where: str, remedy: str
) -> np.ndarray:
    """[n] int32 index of each atomic number in the model's ``species`` list.

    Raises:
        DataError: an element not in ``species``; the message names ``where`` (file and frame,
            or the calculator's structure) and the ``remedy``.
    """
    numbers = np.asarray(numbers)
    species = tuple(int(z) for z in species)
    lookup = np.full(max(species) + 1, -1, np.int32)
    lookup[list(species)] = np.arange(len(species), dtype=np.int32)
    inside = (numbers >= 0) & (numbers < len(lookup))
    index = np.where(inside, lookup[np.where(inside, numbers, 0)], -1)
    if np.any(index < 0):
        bad = sorted({int(z) for z in numbers[index < 0]})
        raise DataError(
            f"{where}: element(s) with atomic number {bad} are not in the model's species list "
            f"{list(species)}; {remedy}."
        )
    return index.astype(np.int32)


def pad_graph(
    budget: PaddingBudget,
    *,
    positions: np.ndarray,
    species: np.ndarray,
    senders: np.ndarray,
    receivers: np.ndarray,
    shifts: np.ndarray,
    n_node: np.ndarray,
    n_edge: np.ndarray,
    forces: np.ndarray | None = None,
    energy: np.ndarray | None = None,
    dtype=np.float32,
) -> jraph.GraphsTuple:
    """The structures given by their concatenated real arrays, padded to ``budget`` in the
    batch layout of the module docstring: the one padded-graph builder of the library (data
    set batches, the ASE calculator's single structure).

    Args:
        budget: padded sizes; one node and one graph beyond the real ones are reserved.
        positions: [n, 3] (Å); species: [n] int index into the species list.
        senders / receivers: [e] int, node indices within the batch (0 … n − 1).
        shifts: [e, 3] periodic image shifts (Å).
        n_node / n_edge: [g] atoms and edges per structure.
        forces: [n, 3] targets (zeros when ``None``); energy: [g] targets (zeros when ``None``).
        dtype: float dtype of positions, shifts and targets.

    Raises:
        ValueError: the structures do not fit the budget (the message gives both sizes).
    """
    n_node, n_edge = np.asarray(n_node), np.asarray(n_edge)
    real_nodes, real_edges, n_real = int(n_node.sum()), int(n_edge.sum()), len(n_node)
    if real_nodes + 1 > budget.n_node or real_edges > budget.n_edge or n_real + 1 > budget.n_graph:
        raise ValueError(
            f"{n_real} structures with {real_nodes} atoms and {real_edges} edges do not fit "
            f"the budget {budget} (one node and one graph are reserved for padding); compute "
            "the budget with compute_budget() over this data set."
        )
    last = budget.n_node - 1
    pos = np.zeros((budget.n_node, 3), dtype)
    pos[:real_nodes] = positions
    target_forces = np.zeros((budget.n_node, 3), dtype)
    if forces is not None:
        target_forces[:real_nodes] = forces
    species_padded = np.zeros(budget.n_node, np.int32)
    species_padded[:real_nodes] = species
    graph_index = np.full(budget.n_node, budget.n_graph - 1, np.int32)
    graph_index[:real_nodes] = np.repeat(np.arange(n_real), n_node)
    senders_padded = np.full(budget.n_edge, last, np.int32)
    receivers_padded = np.full(budget.n_edge, last, np.int32)
    senders_padded[:real_edges] = senders
    receivers_padded[:real_edges] = receivers
    shifts_padded = np.zeros((budget.n_edge, 3), dtype)
    shifts_padded[:real_edges] = shifts
    target_energy = np.zeros(budget.n_graph, dtype)
    if energy is not None:
        target_energy[:n_real] = energy
    nodes_per_graph = np.zeros(budget.n_graph, np.int32)
    nodes_per_graph[:n_real] = n_node
    nodes_per_graph[-1] = budget.n_node - real_nodes
    edges_per_graph = np.zeros(budget.n_graph, np.int32)
    edges_per_graph[:n_real] = n_edge
    edges_per_graph[-1] = budget.n_edge - real_edges
    return jraph.GraphsTuple(
        nodes={
            "positions": pos,
            "species": species_padded,
            "forces": target_forces,
            "mask": np.arange(budget.n_node) < real_nodes,
            "graph_index": graph_index,
        },
        edges={"shifts": shifts_padded, "mask": np.arange(budget.n_edge) < real_edges},
        globals={"energy": target_energy, "mask": np.arange(budget.n_graph) < n_real},
        senders=senders_padded,
        receivers=receivers_padded,
        n_node=nodes_per_graph,
        n_edge=edges_per_graph,
    )


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

        positions, species_idx, forces, senders, receivers, shifts = [], [], [], [], [], []
        n_node, n_edge, energy, has_energy, has_forces = [], [], [], [], []
        for index, atoms in enumerate(structures):
            idx = species_indices(
                atoms.numbers,
                self.species,
                where=f"{source}, frame {index}",
                remedy="train a model that includes them or remove the frame",
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
        node_idx = _ranges(self.node_offset[indices], nn)
        edge_idx = _ranges(self.edge_offset[indices], ne)
        # Local edge indices → batch node indices.
        edge_shift = np.repeat(np.concatenate([[0], np.cumsum(nn)[:-1]]), ne)
        return pad_graph(
            budget,
            positions=self.positions[node_idx],
            species=self.species_index[node_idx],
            senders=self.senders[edge_idx] + edge_shift,
            receivers=self.receivers[edge_idx] + edge_shift,
            shifts=self.shifts[edge_idx],
            n_node=nn,
            n_edge=ne,
            forces=self.forces[node_idx],
            energy=self.energy[indices],
            dtype=dtype,
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
