"""The trained-model bundle: configuration, parameters, species, statistics, uncertainty head.

A :class:`Potential` predicts energies, forces, per-atom energies, the final scalar features and,
when an uncertainty head is attached (a fitted method of :mod:`nequip_jax.uncertainty.registry`:
the GMM negative log-likelihood of Zhu et al. 2023, Eq. (8), LLPR, ...), the per-atom
uncertainty — all from one jitted forward pass per padded batch.

On disk a potential is a folder:

- ``potential.json`` — format version, model configuration, species, statistics, metadata and
  the name of the head's method;
- ``params.msgpack`` — the parameters (``flax.serialization``);
- ``<method>.npz`` — the head's fitted state, when there is one (the method's ``save``; the
  GMM's is ``gmm.npz``, :func:`gmm.save`).

The folder is written next to its destination and renamed into place, so an interrupted save never
leaves a half-written model.
"""

from __future__ import annotations

import collections
import dataclasses
import functools
import json
import os
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any, NamedTuple

import ase
import jax
import numpy as np
from flax import serialization

from nequip_jax._io import atomic_folder
from nequip_jax.data import GraphDataset, PaddingBudget, compute_budget, shared_budget
from nequip_jax.model._config import NequIPConfig
from nequip_jax.model._per_member import RadialSettings, program_config
from nequip_jax.model._predict import make_model_fns, model_jit

__all__ = [
    "Head",
    "Potential",
    "load",
    "FORMAT_VERSION",
    "run_batched",
    "check_dataset",
    "potential_program",
    "ensemble_program",
    "trace_count",
]

FORMAT_VERSION = 1

_TRACES: collections.Counter = collections.Counter()


def trace_count() -> int:
    """Jit traces (compilations) of :func:`potential_program` and :func:`ensemble_program`
    programs in this process."""
    return sum(_TRACES.values())


#: Name of every model program (``jit(model_program)`` in JAX's logs and monitoring events).
PROGRAM_NAME = "model_program"


def _counted(fn: Callable, key: Any) -> Callable:
    def model_program(*args):
        _TRACES[key] += 1  # runs once per trace (compilation), not per call
        return fn(*args)

    return model_program


class Head(NamedTuple):
    """An uncertainty head: a registered method's name and its fitted state."""

    method: str
    state: Any


@functools.lru_cache(maxsize=64)
def potential_program(config: NequIPConfig, method: str | None = None) -> Callable:
    """Jitted ``(params, head state | None, graph) -> outputs`` of every potential with
    hyperparameters ``config``: energies, forces, per-atom energies, features and, with an
    uncertainty ``method`` (a :mod:`nequip_jax.uncertainty.registry` name), its per-atom score
    ``uncertainty`` computed from the features in the same program.

    The compiled program is keyed on :func:`~nequip_jax.model.program_config` and takes the
    config's data-dependent values as arguments, so it is shared by :class:`Potential`, the ASE
    calculator and the on-the-fly surrogate, and by every potential of the same shapes: a
    retrained, reloaded or other-data potential compiles nothing for batch shapes already seen.
    """
    program = _potential_program(program_config(config), method)
    radial = RadialSettings.of(config)
    return functools.partial(_bind_radial, program, radial)


def _bind_radial(program: Callable, radial: RadialSettings, params, state, graph):
    return program(params, state, radial, graph)


@functools.lru_cache(maxsize=32)
def _potential_program(config: NequIPConfig, method: str | None) -> Callable:
    _, predict = make_model_fns(config)
    score = None
    if method is not None:
        from nequip_jax.uncertainty.protocol import ModelOutputs
        from nequip_jax.uncertainty.registry import get_method

        score = get_method(method).score

    def run(params, state, radial, graph):
        out = predict(params, graph, radial)
        if score is not None:
            out["uncertainty"] = score(state, ModelOutputs(features=out["features"]))
        return out

    return model_jit(_counted(run, ("potential", config, method)))


@functools.lru_cache(maxsize=32)
def ensemble_program(config: NequIPConfig) -> Callable:
    """Jitted ``(stacked params, radial | None, graph) -> outputs with a leading member axis`` of
    a vmapped group of members with hyperparameters ``config`` (one compiled program per
    :func:`~nequip_jax.model.program_config` and process, like :func:`potential_program`).

    ``radial`` holds the group's per-member :class:`nequip_jax.model.RadialSettings` (``None``
    when ``config`` describes every member); the graph is built with ``config.r_max``, the
    largest member cutoff.
    """
    return functools.partial(_ensemble_call, _ensemble_program(program_config(config)), config)


def _ensemble_call(program: Callable, config: NequIPConfig, params, radial, graph):
    if radial is None:
        radial = RadialSettings.of(config, len(jax.tree.leaves(params)[0]))
    return program(params, radial, graph)


@functools.lru_cache(maxsize=32)
def _ensemble_program(config: NequIPConfig) -> Callable:
    _, predict = make_model_fns(config)

    def run(params, radial, graph):
        return jax.vmap(lambda p, r: predict(p, graph, radial=r))(params, radial)

    return model_jit(_counted(run, ("ensemble", config)))


def check_dataset(dataset: GraphDataset, species: tuple[int, ...], r_max: float) -> None:
    """Raise if ``dataset`` was built for another species list or cutoff."""
    if dataset.species != tuple(species) or dataset.r_max != float(r_max):
        raise ValueError(
            f"the graphs were built with r_max={dataset.r_max} and species {dataset.species}, the "
            f"model needs r_max={r_max} and species {tuple(species)}; build them with the "
            "model's graphs() method."
        )


def run_batched(
    fn,
    args: tuple,
    dataset: GraphDataset,
    batch_size: int,
    dtype: str,
    member_axis: bool = False,
    budget: PaddingBudget | None = None,
) -> dict:
    """Run ``fn(*args, batch)`` over a data set in padded batches and strip the padding.

    ``fn`` returns ``energy`` (per graph) and per-node arrays. Budgets are rounded up so that
    data sets of similar size share one compiled shape. With ``member_axis`` every output has a
    leading member axis, which is kept (:func:`nequip_jax.data.shared_budget`: a data set smaller
    than a batch is padded to the next power of two of structures). ``budget`` fixes the padded
    shape instead (it must fit
    any ``batch_size`` structures of the data set), e.g. to keep one compiled shape while a data
    set grows.

    Returns:
        ``energy`` [(members,) n_structures] and, for every per-node key, a list with one array
        per structure ([(members,) n_atoms, ...]).
    """
    if budget is None:
        budget = shared_budget(compute_budget(dataset, batch_size), batch_size)
    np_dtype = np.float64 if dtype == "float64" else np.float32
    axis = 1 if member_axis else 0
    chunks: dict[str, list] = {}
    with jax.enable_x64(dtype == "float64"):
        for start in range(0, len(dataset), batch_size):
            idx = np.arange(start, min(start + batch_size, len(dataset)))
            out = jax.device_get(fn(*args, dataset.batch(idx, budget, dtype=np_dtype)))
            n_real = int(dataset.n_node[idx].sum())
            for key, value in out.items():
                keep = len(idx) if key == "energy" else n_real
                chunks.setdefault(key, []).append(np.take(value, np.arange(keep), axis=axis))
    splits = np.cumsum(dataset.n_node)[:-1]
    result = {}
    for key, parts in chunks.items():
        joined = np.concatenate(parts, axis=axis).astype(np.float64)
        result[key] = joined if key == "energy" else np.split(joined, splits, axis=axis)
    return result


@dataclasses.dataclass
class Potential:
    """A trained NequIP model.

    Attributes:
        config: the model hyperparameters (including the data statistics baked in).
        params: the parameter pytree.
        species: atomic numbers, in the order of the model's species index.
        statistics: training-set statistics (for reference).
        head: the uncertainty head (:class:`Head`) or ``None``.
        metadata: free-form provenance (seed, epoch, ...).
    """

    config: NequIPConfig
    params: Any
    species: tuple[int, ...]
    statistics: dict = dataclasses.field(default_factory=dict)
    head: Head | None = None
    metadata: dict = dataclasses.field(default_factory=dict)

    def __post_init__(self):
        self.species = tuple(int(z) for z in self.species)
        if self.head is not None:
            from nequip_jax.uncertainty.registry import get_method

            if get_method(self.head.method).model != "potential":
                raise ValueError(
                    f"the uncertainty method {self.head.method!r} needs an ensemble, not one "
                    "potential; use an Ensemble for it."
                )

    @property
    def r_max(self) -> float:
        return float(self.config.r_max)

    @property
    def feature_dim(self) -> int:
        return int(self.config.resolved_feature_dim)

    def graphs(
        self, atoms_list: Sequence[ase.Atoms], *, source: str = "structures"
    ) -> GraphDataset:
        """Graphs of ``atoms_list`` with this model's cutoff and species (labels optional)."""
        return GraphDataset(
            atoms_list, self.r_max, self.species, source=source, require_labels=False
        )

    def predict_graphs(
        self, dataset: GraphDataset, batch_size: int = 32, *, budget: PaddingBudget | None = None
    ) -> dict:
        """Predictions for a :class:`GraphDataset` built by :meth:`graphs` (see :meth:`predict`).

        ``budget`` fixes the padded batch shape (it must fit any ``batch_size`` structures of
        ``dataset``), e.g. one shape for a data set that grows; default: rounded up from the
        data set (:func:`run_batched`).
        """
        check_dataset(dataset, self.species, self.r_max)
        head = self.head
        return run_batched(
            potential_program(self.config, None if head is None else head.method),
            (self.params, None if head is None else head.state),
            dataset,
            batch_size,
            self.config.dtype,
            budget=budget,
        )

    def predict(self, atoms_list: Sequence[ase.Atoms], batch_size: int = 32) -> dict:
        """Predict a list of structures.

        Returns:
            ``energy`` [n_structures] (eV); ``forces``, ``node_energy``, ``features`` (and
            ``uncertainty``, the head's per-atom score, when a head is attached): lists with one
            array per structure of shapes [n_atoms, 3], [n_atoms], [n_atoms, feature_dim] and
            [n_atoms].
        """
        return self.predict_graphs(self.graphs(atoms_list), batch_size)

    def with_head(self, method: str | None, state: Any = None) -> Potential:
        """A copy with the fitted ``state`` of uncertainty ``method`` as its head (``None``: no
        head)."""
        return dataclasses.replace(self, head=None if method is None else Head(method, state))

    # ------------------------------------------------------------------ persistence
    def save(self, path: str | os.PathLike) -> None:
        """Write the potential folder atomically (see the module docstring)."""
        with atomic_folder(path) as tmp:
            info = {
                "format_version": FORMAT_VERSION,
                "config": self.config.to_dict(),
                "species": list(self.species),
                "statistics": self.statistics,
                "metadata": self.metadata,
            }
            if self.head is not None:
                info["uncertainty"] = self.head.method
            (tmp / "potential.json").write_text(json.dumps(info, indent=2, sort_keys=True))
            params = serialization.to_state_dict(jax.device_get(self.params))
            (tmp / "params.msgpack").write_bytes(serialization.msgpack_serialize(params))
            if self.head is not None:
                method = _method(self.head.method)
                method.save(self.head.state, tmp / f"{method.name}.npz")

    @classmethod
    def load(cls, path: str | os.PathLike) -> Potential:
        """Read a potential folder written by :meth:`save`."""
        path = Path(path)
        info_path = path / "potential.json"
        if not info_path.is_file():
            raise FileNotFoundError(
                f"{path}: not a saved potential (no potential.json); pass the folder that "
                "`nequip-jax train` wrote as <workdir>/model."
            )
        info = json.loads(info_path.read_text())
        if info.get("format_version") != FORMAT_VERSION:
            raise ValueError(
                f"{path}: format version {info.get('format_version')} is not supported "
                f"(this library reads {FORMAT_VERSION})."
            )
        params = serialization.msgpack_restore((path / "params.msgpack").read_bytes())
        name = info.get("uncertainty")
        head = None if name is None else Head(name, _method(name).load(path / f"{name}.npz"))
        return cls(
            config=NequIPConfig.from_dict(info["config"]),
            params=params,
            species=tuple(info["species"]),
            statistics=info.get("statistics", {}),
            head=head,
            metadata=info.get("metadata", {}),
        )


def _method(name: str):
    from nequip_jax.uncertainty.registry import get_method

    return get_method(name)


def load(path: str | os.PathLike) -> Potential:
    """Load a saved :class:`Potential` (``nequip_jax.load``)."""
    return Potential.load(path)
