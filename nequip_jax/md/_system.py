"""A trained model as a jittable potential of positions for one fixed system (species fixed,
a molecule or a fixed periodic cell), with the on-device neighbour list and a per-atom
uncertainty.

``uncertainty``: the per-atom score of a registered uncertainty method
(:mod:`nequip_jax.uncertainty.registry`), traced into the MD program — the head of a
:class:`~nequip_jax.model.Potential` (e.g. the GMM negative log-likelihood of the final scalar
features, Zhu et al. 2023, Eq. (8)), an ensemble method of an
:class:`~nequip_jax.model.ensemble.Ensemble` (default the force uncertainty σ, Eq. (4)),
and zeros for a potential without a head. Energies and forces of an ensemble are the member
means (Eq. (1)).
"""

from __future__ import annotations

import dataclasses
import functools
from collections.abc import Sequence

import jax
import jax.numpy as jnp
import numpy as np

from nequip_jax.data import species_indices
from nequip_jax.md._neighbours import Neighbours, build_neighbours, needs_rebuild
from nequip_jax.model import NequIP, Potential
from nequip_jax.model._predict import edge_graph, energy_and_forces, node_energy_and_features
from nequip_jax.uncertainty.ensemble_sigma import member_mean
from nequip_jax.uncertainty.protocol import ModelOutputs, device_state
from nequip_jax.uncertainty.registry import get_method

__all__ = ["MDSystem", "make_system"]


@dataclasses.dataclass(frozen=True)
class MDSystem:
    """A model bound to one system's species, ready for a jitted MD loop.

    Attributes:
        evaluate: ``(positions [n, 3], neighbours) -> (energy [], forces [n, 3],
            uncertainty [n], neighbours)``; rebuilds the list when an atom moved more than
            ``skin / 2`` since its build.
        energy: ``(positions [n, 3], neighbours) -> energy []``, differentiable (the member
            mean for an ensemble); the list is used as given.
        evaluate_with: ``evaluate`` with the model's parameters as a first argument
            (``evaluate = partial(evaluate_with, params)``), for programs compiled once per
            configuration and reused for new weights.
        params: ``(params, uncertainty state | None, radial | None)`` of the model.
        key: hashable identity of ``evaluate_with`` (configuration, method, species, skin,
            periodic).
        r_max: the model cutoff (Å); the list is built with ``r_max + skin``.
        skin: Verlet skin (Å).
        dtype: the model's float dtype.
        uncertainty: the registered method's name, or ``"none"``.
        n_atoms: atoms of the system.
        periodic: the neighbour list is built with the minimum image of the list's ``cell``.
    """

    evaluate: object
    energy: object
    evaluate_with: object
    params: object
    key: tuple
    r_max: float
    skin: float
    dtype: object
    uncertainty: str
    n_atoms: int
    periodic: bool = False

    @property
    def cutoff(self) -> float:
        return self.r_max + self.skin

    def neighbours(self, positions, capacity: int, cell=None) -> Neighbours:
        """A first list at ``positions`` with ``capacity`` edge slots (``cell`` [3, 3]: the
        periodic cell, required for a periodic system)."""
        if self.periodic == (cell is None):
            raise ValueError(
                f"this system is {'periodic' if self.periodic else 'a molecule'}: pass "
                f"{'its cell' if self.periodic else 'no cell'}."
            )
        cell = None if cell is None else jnp.asarray(cell, self.dtype)
        return build_neighbours(jnp.asarray(positions, self.dtype), self.cutoff, capacity, 0, cell)


def make_system(
    model,
    numbers: Sequence[int],
    *,
    skin: float = 0.5,
    periodic: bool = False,
    ensemble_method: str = "ensemble",
) -> MDSystem:
    """Bind ``model`` (a :class:`Potential` or a one-group :class:`Ensemble`) to a system of
    atomic numbers ``numbers`` [n]; ``periodic``: a cell periodic in all three directions (the
    cell itself travels with the neighbour list, see :meth:`MDSystem.neighbours`). A potential
    scores with its head; an ensemble with the registered ensemble method ``ensemble_method``.

    Raises:
        ValueError: an element the model does not know, a negative skin, or an ensemble of
            several groups (members of different shapes; not supported on the device yet).
    """
    if not skin >= 0.0:
        raise ValueError(f"skin={skin}: the Verlet skin must be >= 0 Å.")
    numbers = np.asarray(numbers)
    if isinstance(model, Potential):
        configs, params_list, ensemble = [model.config], [model.params], False
        head = model.head
        method = "none" if head is None else head.method
        species, state, radial = model.species, None if head is None else head.state, None
    elif hasattr(model, "groups"):
        if len(model.groups) != 1:
            raise ValueError(
                f"the ensemble has {len(model.groups)} groups of different shapes; on-device MD "
                "takes a potential or a one-group ensemble (use the ASE calculator for this one)."
            )
        group = model.groups[0]
        configs, params_list, ensemble = [group.config], [group.params], True
        method = ensemble_method
        if get_method(method).model != "ensemble":
            raise ValueError(f"{method!r} is not an ensemble uncertainty method.")
        species, state, radial = model.species, get_method(method).fit(), group.radial
    else:
        raise TypeError(f"expected a Potential or an Ensemble, got {type(model).__name__}.")
    config = configs[0]
    dtype = jnp.float64 if config.dtype == "float64" else jnp.float32
    index = species_indices(
        numbers, species, where="MD system", remedy="this model cannot simulate them"
    )
    species_idx = tuple(int(i) for i in index)
    model_params = (
        jax.tree.map(jnp.asarray, params_list[0]),
        None if state is None else device_state(state, dtype),
        radial,
    )
    key = (config, ensemble, method, species_idx, float(skin), bool(periodic))
    evaluate_with, energy_with = system_functions(*key)
    return MDSystem(
        evaluate=functools.partial(evaluate_with, model_params),
        energy=functools.partial(energy_with, model_params),
        evaluate_with=evaluate_with,
        params=model_params,
        key=key,
        r_max=float(config.r_max),
        skin=float(skin),
        dtype=dtype,
        uncertainty=method,
        n_atoms=len(species_idx),
        periodic=bool(periodic),
    )


@functools.lru_cache(maxsize=32)
def system_functions(
    config,
    ensemble: bool,
    method: str,
    species_idx: tuple[int, ...],
    skin: float,
    periodic: bool = False,
):
    """``(evaluate_with, energy_with)`` of a model configuration and system, taking the model's
    parameters ``(params, uncertainty state | None, radial | None)`` as their first argument:
    one pair (and so one compiled MD program) per configuration, model kind, uncertainty method,
    system, skin and periodicity, whatever the weights (and, for a periodic system, the cell).
    """
    score = None if method == "none" else get_method(method).score
    dtype = jnp.float64 if config.dtype == "float64" else jnp.float32
    species_idx = np.asarray(species_idx, np.int32)
    n = len(species_idx)
    module = NequIP(config)
    cutoff = float(config.r_max) + float(skin)

    def graph(nbrs: Neighbours):
        species = jnp.asarray(species_idx)
        node_mask = jnp.ones((n,), bool)
        return edge_graph(species, nbrs.senders, nbrs.receivers, nbrs.shifts, nbrs.mask, node_mask)

    def total(p, pos, nbrs, r=None):
        node_energy, _ = node_energy_and_features(module, p, pos, graph(nbrs), r)
        return jnp.sum(node_energy)

    def member(p, positions, nbrs, r=None):
        energy, _, features, forces = energy_and_forces(module, p, positions, graph(nbrs), r)
        return energy, forces, features

    def energy_with(model_params, positions, nbrs: Neighbours):
        params, _, radial = model_params
        positions = positions.astype(dtype)
        if ensemble:
            energies = jax.vmap(total, in_axes=(0, None, None, 0))(params, positions, nbrs, radial)
            return member_mean(energies)
        return total(params, positions, nbrs)

    def evaluate_with(model_params, positions, nbrs: Neighbours):
        params, state, radial = model_params
        positions = positions.astype(dtype)
        nbrs = jax.lax.cond(
            needs_rebuild(positions, nbrs, skin),
            lambda: build_neighbours(
                positions,
                cutoff,
                nbrs.senders.shape[0],
                nbrs.builds,
                nbrs.cell if periodic else None,
            ),
            lambda: nbrs,
        )
        if ensemble:
            energies, forces, _ = jax.vmap(member, in_axes=(0, None, None, 0))(
                params, positions, nbrs, radial
            )
            u = score(state, ModelOutputs(member_forces=forces))
            return member_mean(energies), member_mean(forces), u, nbrs
        energy, forces, features = member(params, positions, nbrs)
        if score is None:
            return energy, forces, jnp.zeros((n,), dtype), nbrs
        return energy, forces, score(state, ModelOutputs(features=features)), nbrs

    return evaluate_with, energy_with
