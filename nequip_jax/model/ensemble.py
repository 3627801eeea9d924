"""An ensemble of NequIP models: vmapped groups of same-shaped members, saved and predicted
together.

Members whose hyperparameters keep the parameter shapes are one :class:`EnsembleGroup`: stacked
parameters with a leading member axis, evaluated by one vmapped program on graphs built with
the group's largest ``r_max`` (each member's cutoff settings,
:class:`nequip_jax.model.RadialSettings`, travel next to its parameters). Ensemble predictions:
mean forces (Zhu et al. 2023, Eq. (1)), the per-atom score of a registered ensemble uncertainty
method (σ of Eq. (4) by default) and the standard deviation of the total energy; members are
combined in one place, :func:`combine_members`.
"""

from __future__ import annotations

import dataclasses
import json
import os
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import ase
import jax
import numpy as np
from flax import serialization

from nequip_jax._io import atomic_folder
from nequip_jax.data import GraphDataset, PaddingBudget
from nequip_jax.model import (
    NequIPConfig,
    RadialSettings,
)
from nequip_jax.model.potential import Potential, check_dataset, ensemble_program, run_batched
from nequip_jax.uncertainty.ensemble_sigma import member_mean
from nequip_jax.uncertainty.metrics import ensemble_mean_forces
from nequip_jax.uncertainty.protocol import ModelOutputs
from nequip_jax.uncertainty.registry import get_method

__all__ = [
    "combine_members",
    "EnsembleGroup",
    "Ensemble",
]


def combine_members(
    per_group: Sequence[tuple[Sequence[int], dict]], *, method: str = "ensemble"
) -> dict:
    """The ensemble's prediction from its groups' member outputs — the one place members are
    combined (used by :meth:`Ensemble.predict`, the ASE calculator and the on-the-fly surrogate).

    Args:
        per_group: ``(member numbers, outputs)`` per vmapped group, where ``outputs`` holds
            ``energy`` [J_g, S] and ``forces`` (a list of S arrays [J_g, n_atoms, 3]), and
            optionally ``node_energy`` (a list of S arrays [J_g, n_atoms]).
        method: the registered ensemble uncertainty method of ``uncertainty``.

    Returns:
        ``energy`` [S] (the member mean), ``energy_std`` [S], ``member_energy`` [J, S], per
        structure lists of ``forces`` [n_atoms, 3] (Eq. (1)), ``member_forces`` [J, n_atoms, 3]
        and ``uncertainty`` [n_atoms] (the method's score; σ of Eq. (4) by default), and, when
        given, ``node_energy`` [n_atoms] (member mean); members in the order of their numbers.
    """
    uncertainty = get_method(method)
    if uncertainty.model != "ensemble":
        raise ValueError(f"method={method!r} is not an ensemble uncertainty method.")
    columns = [(m, out, j) for members, out in per_group for j, m in enumerate(members)]
    columns.sort(key=lambda c: c[0])
    member_energy = np.stack([np.asarray(out["energy"][j], np.float64) for _, out, j in columns])
    n_structures = member_energy.shape[1]

    def stack(key, i):
        return np.stack([np.asarray(out[key][i][j], np.float64) for _, out, j in columns])

    member_forces = [stack("forces", i) for i in range(n_structures)]
    state = uncertainty.fit()
    result = {
        "energy": member_mean(member_energy),
        "energy_std": member_energy.std(0),
        "member_energy": member_energy,
        "forces": [ensemble_mean_forces(f) for f in member_forces],
        "member_forces": member_forces,
        "uncertainty": [
            uncertainty.score(state, ModelOutputs(member_forces=f)) for f in member_forces
        ],
    }
    if all("node_energy" in out for _, out, _ in columns):
        result["node_energy"] = [member_mean(stack("node_energy", i)) for i in range(n_structures)]
    return result


@dataclasses.dataclass
class EnsembleGroup:
    """Members sharing one model shape; ``params`` has a leading member axis.

    Attributes:
        config: the group's model configuration; its ``r_max`` is the cutoff of the group's
            graphs (the largest of the members').
        params: parameters with a leading member axis.
        members: the member numbers.
        species: atomic numbers of the model's species index.
        radial: per-member cutoff settings ``[n_members]`` when the members differ in
            ``r_max``, ``cutoff_p`` or ``avg_num_neighbors``; ``None`` when ``config`` describes
            every member.
    """

    config: NequIPConfig
    params: Any
    members: list[int]
    species: tuple[int, ...]
    radial: RadialSettings | None = None

    def __post_init__(self):
        if self.radial is not None:
            sizes = {int(np.shape(v)[0]) if np.ndim(v) else -1 for v in self.radial}
            if sizes != {len(self.members)}:
                raise ValueError(
                    f"radial settings of shapes {[np.shape(v) for v in self.radial]} for "
                    f"{len(self.members)} members; give one value per member (or radial=None)."
                )
            if float(np.max(self.radial.r_max)) > self.config.r_max:
                raise ValueError(
                    f"a member's r_max {float(np.max(self.radial.r_max))} exceeds the group's "
                    f"graph cutoff config.r_max={self.config.r_max}; set config.r_max to the "
                    "largest member r_max."
                )

    def predict_fn(self):
        """Jitted ``(stacked params, radial, graph) -> outputs with a leading member axis``
        (:func:`~nequip_jax.model.potential.ensemble_program` of the group's configuration)."""
        return ensemble_program(self.config)

    def member_config(self, j: int) -> NequIPConfig:
        """The model configuration of member ``j`` alone (its own ``r_max`` etc.)."""
        return self.config if self.radial is None else self.radial.member_config(self.config, j)

    def member(self, j: int) -> Potential:
        """Member ``j`` of the group as a standalone :class:`Potential`."""
        return Potential(
            config=self.member_config(j),
            params=jax.tree.map(lambda x: x[j], self.params),
            species=self.species,
            metadata={"member": self.members[j]},
        )

    def take(self, indices: Sequence[int]) -> EnsembleGroup:
        """A group of the members at positions ``indices`` (in that order)."""
        idx = np.asarray(indices, np.int64)
        return EnsembleGroup(
            self.config,
            jax.tree.map(lambda x: np.asarray(x)[idx], self.params),
            [self.members[i] for i in idx],
            self.species,
            None if self.radial is None else self.radial.take(idx),
        )


@dataclasses.dataclass
class Ensemble:
    """An ensemble of NequIP models (one or more vmapped groups)."""

    groups: list[EnsembleGroup]
    species: tuple[int, ...]
    metadata: dict = dataclasses.field(default_factory=dict)

    @property
    def n_members(self) -> int:
        return sum(len(g.members) for g in self.groups)

    def members(self) -> list[Potential]:
        """Every member as a :class:`Potential`, in member order."""
        found = {}
        for group in self.groups:
            for j, m in enumerate(group.members):
                found[m] = group.member(j)
        return [found[m] for m in sorted(found)]

    def graphs(self, atoms_list: Sequence[ase.Atoms]) -> list[GraphDataset]:
        """One :class:`GraphDataset` of ``atoms_list`` per group (its cutoff; labels optional)."""
        return [
            GraphDataset(atoms_list, g.config.r_max, self.species, require_labels=False)
            for g in self.groups
        ]

    def predict(
        self, atoms_list: Sequence[ase.Atoms], batch_size: int = 32, *, method: str = "ensemble"
    ) -> dict:
        """Ensemble prediction for a list of structures.

        Args:
            atoms_list: the structures.
            batch_size: structures per padded batch.
            method: the registered ensemble uncertainty method of ``uncertainty`` (default
                ``"ensemble"``, σ of Eq. (4)).

        Returns:
            ``energy`` [n_structures] (member mean), ``energy_std`` [n_structures],
            ``member_energy`` [J, n_structures]; per structure lists of ``forces`` [n_atoms, 3]
            (Eq. (1)), ``uncertainty`` [n_atoms] (the method's score; σ of Eq. (4) by default),
            ``member_forces`` [J, n_atoms, 3] and ``features`` [J, n_atoms, feature_dim] of the
            first group.
        """
        return self.predict_graphs(self.graphs(atoms_list), batch_size, method=method)

    def predict_graphs(
        self,
        datasets: Sequence[GraphDataset],
        batch_size: int = 32,
        *,
        method: str = "ensemble",
        budget: PaddingBudget | None = None,
    ) -> dict:
        """:meth:`predict` for graphs built by :meth:`graphs` (one data set per group).

        ``budget`` fixes the padded batch shape of every group (it must fit any
        ``batch_size`` structures of each data set), e.g. one shape for a data set that grows.
        """
        if len(datasets) != len(self.groups):
            raise ValueError(
                f"{len(datasets)} data sets for {len(self.groups)} groups; build them with "
                "graphs()."
            )
        per_group, features = [], None
        for group, dataset in zip(self.groups, datasets, strict=True):
            check_dataset(dataset, self.species, group.config.r_max)
            out = run_batched(
                group.predict_fn(),
                (group.params, group.radial),
                dataset,
                batch_size,
                group.config.dtype,
                member_axis=True,
                budget=budget,
            )
            per_group.append((group.members, out))
            if features is None:
                features = out["features"]
        return {**combine_members(per_group, method=method), "features": features}

    def save(self, path: str | os.PathLike) -> None:
        """Write the ensemble folder atomically: ``ensemble.json`` and one params file a group."""
        with atomic_folder(path) as tmp:
            info = {
                "format_version": 1,
                "kind": "ensemble",
                "species": list(self.species),
                "metadata": self.metadata,
                "groups": [_group_info(g) for g in self.groups],
            }
            (tmp / "ensemble.json").write_text(json.dumps(info, indent=2, sort_keys=True))
            for i, group in enumerate(self.groups):
                state = serialization.to_state_dict(jax.device_get(group.params))
                (tmp / f"group{i}.msgpack").write_bytes(serialization.msgpack_serialize(state))

    @classmethod
    def load(cls, path: str | os.PathLike) -> Ensemble:
        path = Path(path)
        info_path = path / "ensemble.json"
        if not info_path.is_file():
            raise FileNotFoundError(f"{path}: not a saved ensemble (no ensemble.json).")
        info = json.loads(info_path.read_text())
        species = tuple(info["species"])
        groups = []
        for i, g in enumerate(info["groups"]):
            params = serialization.msgpack_restore((path / f"group{i}.msgpack").read_bytes())
            radial = RadialSettings.from_dict(g["radial"]) if g.get("radial") else None
            groups.append(
                EnsembleGroup(
                    NequIPConfig.from_dict(g["config"]), params, g["members"], species, radial
                )
            )
        return cls(groups=groups, species=species, metadata=info.get("metadata", {}))


def _group_info(group: EnsembleGroup) -> dict:
    info = {"config": group.config.to_dict(), "members": list(group.members)}
    if group.radial is not None:
        info["radial"] = group.radial.to_dict()
    return info
