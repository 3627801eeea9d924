"""An ASE calculator for a NequIP :class:`~nequip_jax.model.Potential` or an ensemble.

``NequIPCalculator(model)`` gives ASE's molecular-dynamics integrators and optimisers the total
energy, the forces and the per-atom energies, and stores a per-atom uncertainty in
``calc.results["uncertainty"]``: the score of the potential's uncertainty head (a registered
method of :mod:`nequip_jax.uncertainty.registry`, e.g. the GMM negative log-likelihood of Zhu et
al. (2023), Eq. (8), or LLPR), or of an ensemble method (the force uncertainty σ of Eq. (4)).

Two things make it cheap to call at every MD step:

* **One compiled shape per system size.** A structure of N atoms is evaluated as one padded graph
  with N + 1 nodes, two graphs (one real, one padding) and an edge budget with head-room
  (``edge_headroom`` × the edge count, rounded up to a multiple of 64). The budget is kept per N
  and enlarged only when a neighbour list no longer fits, so a trajectory compiles once.
* **Verlet neighbour lists.** Edges are built with the cutoff ``r_max + skin`` and rebuilt only
  when an atom has moved more than ``skin / 2`` since the last build (or the species, cell or
  periodicity changed). No pair can come closer than ``r_max`` without one of its atoms moving
  ``skin / 2``, so no edge is missed; the extra edges between ``r_max`` and ``r_max + skin``
  contribute exactly zero because the polynomial cutoff envelope is zero beyond ``r_max``
  (Batzner et al. 2022).

Units: energies eV, forces eV/Å, positions Å.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from typing import Any, NamedTuple

import ase
import jax
import jraph
import numpy as np
from ase.calculators.calculator import Calculator, all_changes

from nequip_jax._cache import enable_compilation_cache
from nequip_jax.data import PaddingBudget, neighbour_list, pad_graph, round_up, species_indices
from nequip_jax.model import Potential
from nequip_jax.model.ensemble import combine_members
from nequip_jax.model.potential import ensemble_program, potential_program, trace_count
from nequip_jax.uncertainty.registry import get_method

__all__ = [
    "NequIPCalculator",
    "NeighbourList",
    "build_neighbours",
    "needs_rebuild",
    "edge_budget",
    "single_graph",
]

_EDGE_MULTIPLE = 64


# ---------------------------------------------------------------------------------------------
# neighbour lists with a Verlet skin


class NeighbourList(NamedTuple):
    """Edges of one structure within ``cutoff`` and the geometry they were built for.

    Attributes:
        senders: [n_edge] int32 (j); receivers: [n_edge] int32 (i); shifts: [n_edge, 3] (Å),
            following :func:`nequip_jax.data.neighbour_list`.
        positions: [n_atoms, 3] positions at the build (Å).
        numbers: [n_atoms] atomic numbers at the build.
        cell: [3, 3] cell at the build; pbc: [3] periodicity at the build.
        cutoff: the build cutoff, ``r_max + skin`` (Å).
    """

    senders: np.ndarray
    receivers: np.ndarray
    shifts: np.ndarray
    positions: np.ndarray
    numbers: np.ndarray
    cell: np.ndarray
    pbc: np.ndarray
    cutoff: float


def build_neighbours(atoms: ase.Atoms, cutoff: float) -> NeighbourList:
    """All pairs of ``atoms`` closer than ``cutoff`` (Å), with the geometry of the build."""
    cell = np.array(atoms.cell, dtype=np.float64)
    pbc = np.array(atoms.pbc, dtype=bool)
    senders, receivers, shifts = neighbour_list(atoms.positions, cutoff, cell=cell, pbc=pbc)
    return NeighbourList(
        senders=senders,
        receivers=receivers,
        shifts=shifts,
        positions=np.array(atoms.positions, dtype=np.float64),
        numbers=np.array(atoms.numbers),
        cell=cell,
        pbc=pbc,
        cutoff=float(cutoff),
    )


def needs_rebuild(nl: NeighbourList | None, atoms: ase.Atoms, skin: float) -> bool:
    """Whether ``nl`` may miss a pair of ``atoms`` within ``nl.cutoff − skin``.

    True when there is no list, the number of atoms, species, cell or periodicity changed, or
    some atom moved more than ``skin / 2`` since the build (Verlet's criterion: two atoms that
    each moved at most ``skin / 2`` changed their distance by at most ``skin``). With
    ``skin == 0`` any displacement triggers a rebuild.
    """
    if nl is None or len(atoms) != len(nl.numbers):
        return True
    if not np.array_equal(atoms.numbers, nl.numbers):
        return True
    if not np.array_equal(np.asarray(atoms.pbc, bool), nl.pbc) or not np.array_equal(
        np.asarray(atoms.cell, np.float64), nl.cell
    ):
        return True
    displacement2 = np.sum((atoms.positions - nl.positions) ** 2, axis=1)
    if skin == 0.0:
        return bool(np.any(displacement2 > 0.0))
    return bool(np.max(displacement2, initial=0.0) > (0.5 * skin) ** 2)


def edge_budget(n_edges: int, headroom: float) -> int:
    """Padded edge count for ``n_edges`` real edges: ``⌈headroom · n_edges⌉`` rounded up to a
    multiple of 64 (at least 64)."""
    return max(_EDGE_MULTIPLE, round_up(headroom * n_edges, _EDGE_MULTIPLE))


def single_graph(
    positions: np.ndarray,
    species_index: np.ndarray,
    nl: NeighbourList,
    budget: PaddingBudget,
    dtype: Any = np.float32,
) -> jraph.GraphsTuple:
    """One structure as a padded ``jraph.GraphsTuple`` in the layout of
    :meth:`nequip_jax.data.GraphDataset.batch` (one real graph, then one padding graph).

    Args:
        positions: [n_atoms, 3] current positions (Å); the edge shifts of ``nl`` are reused.
        species_index: [n_atoms] int, index into the model's species list.
        nl: the neighbour list (edges within ``r_max + skin``).
        budget: ``n_node >= n_atoms + 1``, ``n_edge >= len(nl.senders)``, ``n_graph == 2``.
        dtype: float dtype of positions and shifts.
    """
    n_atoms, n_edges = len(positions), len(nl.senders)
    if n_atoms + 1 > budget.n_node or n_edges > budget.n_edge or budget.n_graph != 2:
        raise ValueError(
            f"{n_atoms} atoms and {n_edges} edges do not fit the budget {budget}; enlarge it "
            "with edge_budget()."
        )
    return pad_graph(
        budget,
        positions=positions,
        species=species_index,
        senders=nl.senders,
        receivers=nl.receivers,
        shifts=nl.shifts,
        n_node=[n_atoms],
        n_edge=[n_edges],
        dtype=dtype,
    )


# ---------------------------------------------------------------------------------------------
# model back-ends: one padded graph in, per-structure results out


class _Evaluation(NamedTuple):
    energy: float
    forces: np.ndarray  # [n_atoms, 3]
    energies: np.ndarray  # [n_atoms]
    uncertainty: np.ndarray | None  # [n_atoms]
    extra: dict


class _Backend:
    """Species list, cutoff and dtype of a model, and its evaluation on one padded graph."""

    species: tuple[int, ...]
    r_max: float
    float64: bool

    def evaluate(self, graph: jraph.GraphsTuple, n_atoms: int) -> _Evaluation:
        raise NotImplementedError


class _PotentialBackend(_Backend):
    def __init__(self, potential: Potential):
        self.potential = potential
        self.species = potential.species
        self.r_max = potential.r_max
        self.float64 = potential.config.dtype == "float64"
        head = potential.head
        self._state = None if head is None else head.state
        self._fn = potential_program(potential.config, None if head is None else head.method)

    def evaluate(self, graph, n_atoms):
        out = jax.device_get(self._fn(self.potential.params, self._state, graph))
        u = out.get("uncertainty")
        return _Evaluation(
            energy=float(out["energy"][0]),
            forces=np.asarray(out["forces"][:n_atoms], np.float64),
            energies=np.asarray(out["node_energy"][:n_atoms], np.float64),
            uncertainty=None if u is None else np.asarray(u[:n_atoms], np.float64),
            extra={"features": np.asarray(out["features"][:n_atoms], np.float64)},
        )


class _EnsembleBackend(_Backend):
    def __init__(self, ensemble, method: str):
        self.ensemble = ensemble
        self.method = get_method(method)
        if self.method.model != "ensemble":
            raise ValueError(
                f"uncertainty={method!r} is a method of one potential, not of an ensemble; "
                "attach it to a Potential with potential.with_head(...)."
            )
        self.species = tuple(ensemble.species)
        self.r_max = max(float(g.config.r_max) for g in ensemble.groups)
        self.float64 = any(g.config.dtype == "float64" for g in ensemble.groups)
        self._fns = [ensemble_program(g.config) for g in ensemble.groups]

    def evaluate(self, graph, n_atoms):
        per_group = []
        for group, fn in zip(self.ensemble.groups, self._fns, strict=True):
            out = jax.device_get(fn(group.params, group.radial, graph))
            structure = {
                "energy": out["energy"][:, :1],
                "forces": [out["forces"][:, :n_atoms]],
                "node_energy": [out["node_energy"][:, :n_atoms]],
            }
            per_group.append((group.members, structure))
        combined = combine_members(per_group, method=self.method.name)
        return _Evaluation(
            energy=float(combined["energy"][0]),
            forces=combined["forces"][0],  # Eq. (1)
            energies=combined["node_energy"][0],
            uncertainty=combined["uncertainty"][0],
            extra={
                "energy_std": float(combined["energy_std"][0]),
                "member_energy": combined["member_energy"][:, 0],
                "member_forces": combined["member_forces"][0],
            },
        )


def _backend(model, uncertainty: str | None) -> _Backend:
    if isinstance(model, Potential):
        if uncertainty is not None:
            raise ValueError(
                f"uncertainty={uncertainty!r}: a Potential scores with its head "
                f"({None if model.head is None else model.head.method!r}); attach the method "
                "with potential.with_head(method, state) instead."
            )
        return _PotentialBackend(model)
    if hasattr(model, "groups") and hasattr(model, "species"):
        return _EnsembleBackend(model, "ensemble" if uncertainty is None else uncertainty)
    raise TypeError(
        f"NequIPCalculator needs a nequip_jax Potential or Ensemble, got {type(model).__name__}; "
        "load one with nequip_jax.load(path) or Ensemble.load(path)."
    )


# ---------------------------------------------------------------------------------------------
# the calculator


class NequIPCalculator(Calculator):
    """ASE calculator for a :class:`~nequip_jax.model.Potential` (with or without a GMM) or an
    :class:`~nequip_jax.model.ensemble.Ensemble`.

    Results: ``energy`` (= ``free_energy``, eV), ``forces`` [n_atoms, 3] (eV/Å), ``energies``
    [n_atoms] (per-atom energies, eV) and ``uncertainty`` [n_atoms]: the per-atom score of the
    potential's head (``potential.head``; e.g. the GMM NLL of Zhu et al. 2023, Eq. (8), nats, or
    the LLPR σ), computed in the model's program, or of the ensemble method ``uncertainty``
    (default the σ of Eq. (4), eV/Å). A potential without a head stores no ``uncertainty``. An
    ensemble also stores ``energy_std`` (eV), ``member_energy`` [J] and ``member_forces``
    [J, n_atoms, 3]; a potential stores ``features`` [n_atoms, feature_dim].

    Args:
        model: the potential or ensemble.
        uncertainty: for an ensemble, the registered ensemble method that scores the members'
            forces (default ``"ensemble"``, σ of Eq. (4); it must fit without training
            outputs). A potential scores with its head; passing ``uncertainty`` with one is an
            error.
        skin: Verlet skin (Å); edges are built within ``r_max + skin``. 0 rebuilds the list at
            every new geometry.
        edge_headroom: edge budget = this factor × the edge count at the first build for a
            system size (rounded up to 64); enlarged only when exceeded.
        **kwargs: passed to :class:`ase.calculators.calculator.Calculator`.

    Creating a calculator turns on JAX's persistent compilation cache
    (:func:`nequip_jax.enable_compilation_cache`; ``NEQUIP_JAX_CACHE_DIR=off`` disables it), so
    the first step of a later process reads the compiled model from disk.

    Attributes:
        n_neighbour_builds: neighbour lists built so far.
        n_traces: jit traces (compilations) caused by this calculator's calls: one per system
            size in steady state, none for a shape already compiled for a model with the same
            hyperparameters (compiled functions are shared, e.g. across retrained potentials).
    """

    implemented_properties = ["energy", "free_energy", "forces", "energies"]

    def __init__(
        self,
        model,
        *,
        uncertainty: str | None = None,
        skin: float = 0.5,
        edge_headroom: float = 1.5,
        **kwargs,
    ):
        if not skin >= 0.0 or not math.isfinite(skin):
            raise ValueError(f"skin={skin}: the Verlet skin must be a finite length >= 0 Å.")
        if not edge_headroom >= 1.0:
            raise ValueError(f"edge_headroom={edge_headroom}: must be >= 1 (a factor).")
        super().__init__(**kwargs)
        enable_compilation_cache()
        self.model = model
        self.skin = float(skin)
        self.edge_headroom = float(edge_headroom)
        self._backend = _backend(model, uncertainty)
        self._nl: NeighbourList | None = None
        self._budgets: dict[int, PaddingBudget] = {}
        self.n_neighbour_builds = 0
        self.n_traces = 0

    @property
    def cutoff(self) -> float:
        """The neighbour-list cutoff ``r_max + skin`` (Å)."""
        return self._backend.r_max + self.skin

    def budget_for(self, n_atoms: int) -> PaddingBudget | None:
        """The padded budget currently used for structures of ``n_atoms`` atoms (or ``None``)."""
        return self._budgets.get(n_atoms)

    def calculate(
        self,
        atoms: ase.Atoms | None = None,
        properties: Sequence[str] = ("energy",),
        system_changes: Sequence[str] = tuple(all_changes),
    ) -> None:
        super().calculate(atoms, list(properties), list(system_changes))
        atoms = self.atoms
        species_index = species_indices(
            atoms.numbers,
            self._backend.species,
            where="NequIPCalculator",
            remedy="use a model trained on these elements or remove those atoms",
        )
        if needs_rebuild(self._nl, atoms, self.skin):
            self._nl = build_neighbours(atoms, self.cutoff)
            self.n_neighbour_builds += 1
        n_atoms, n_edges = len(atoms), len(self._nl.senders)
        budget = self._budgets.get(n_atoms)
        if budget is None or n_edges > budget.n_edge:
            budget = PaddingBudget(n_atoms + 1, edge_budget(n_edges, self.edge_headroom), 2)
            self._budgets[n_atoms] = budget
        dtype = np.float64 if self._backend.float64 else np.float32
        before = trace_count()
        with jax.enable_x64(self._backend.float64):
            graph = single_graph(atoms.positions, species_index, self._nl, budget, dtype)
            result = self._backend.evaluate(graph, n_atoms)
        self.n_traces += trace_count() - before
        self.results = {
            "energy": result.energy,
            "free_energy": result.energy,
            "forces": result.forces,
            "energies": result.energies,
            **result.extra,
        }
        if result.uncertainty is not None:
            self.results["uncertainty"] = result.uncertainty
