"""Experiment configuration: YAML files, presets and ``--set key=value`` overrides.

One seed drives everything: the data split, the initial weights and the batch order are all
derived from ``seed`` by splitting one ``jax.random`` key.
"""

from __future__ import annotations

import dataclasses
import os
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import yaml

from nequip_jax.training.loss import ENERGY_LOSSES

__all__ = [
    "DataConfig",
    "ModelConfig",
    "UNSET",
    "OptimConfig",
    "RunConfig",
    "load_config",
    "apply_overrides",
    "PRESETS_DIR",
    "MEMBER_OPTIM_FIELDS",
    "group_settings",
]

PRESETS_DIR = Path(__file__).resolve().parents[1] / "configs"


@dataclass(frozen=True)
class DataConfig:
    """Which structures to train on.

    Attributes:
        setting: ``"300K"`` or ``"mixed"`` (Zhu et al. 2023, Sec. III), or ``"files"``.
        n_train: size of the training draw, validation included (50 or 100 in the paper).
        val_fraction: share of the draw used for validation.
        root: data folder searched first (``None``: the default search order).
        train_file / val_file: extended-XYZ files, used when ``setting == "files"``.
        test_splits: splits evaluated after training.
    """

    setting: str = "300K"
    n_train: int = 100
    val_fraction: float = 0.1
    root: str | None = None
    train_file: str | None = None
    val_file: str | None = None
    test_splits: tuple[str, ...] = ("test_300K", "test_600K", "test_1200K")


class _Unset:
    """The value of a model field that a configuration does not set (see :class:`ModelConfig`)."""

    _instance = None

    def __new__(cls):
        if cls._instance is None:
            cls._instance = super().__new__(cls)
        return cls._instance

    def __repr__(self) -> str:
        return "UNSET"

    def __reduce__(self):
        return (_Unset, ())


#: A model field left to its default (see :class:`ModelConfig`).
UNSET: Any = _Unset()

#: Model fields whose default comes from the training set rather than from ``NequIPConfig``.
FROM_DATA = ("avg_num_neighbors", "energy_shift", "energy_scale")


@dataclass(frozen=True)
class ModelConfig:
    """The ``model`` section of a run: the :class:`nequip_jax.model.NequIPConfig` fields it sets
    (every field but ``num_species``, which is the length of ``species``) and the species.

    A field left :data:`UNSET` takes ``NequIPConfig``'s default, except the three that come from
    the training set (:func:`nequip_jax.data.compute_statistics`): ``avg_num_neighbors`` (the mean
    neighbour count at ``r_max``), ``energy_shift`` (per-species least-squares shift, eV) and
    ``energy_scale`` (the force RMS, eV/Å). ``avg_num_neighbors=None`` means no normalisation of
    the neighbour sum (1.0; the authors' 3BPA configs' ``avg_num_neighbors: null``), which is
    why "not set" needs its own value. Only the fields that are set are written by
    :meth:`to_dict` (the YAML ``model`` section), so a configuration reads back as written.

    Attributes:
        species: atomic numbers of the model's species, sorted (``UNSET``: those of the
            training and validation structures).
        num_features … edge_chunk_size: see :class:`nequip_jax.model.NequIPConfig`.
    """

    species: tuple[int, ...] = UNSET
    num_features: int = UNSET
    lmax: int = UNSET
    parity: bool = UNSET
    num_layers: int = UNSET
    r_max: float = UNSET
    num_basis: int = UNSET
    trainable_basis: bool = UNSET
    cutoff_p: int = UNSET
    radial_mlp_depth: int = UNSET
    radial_mlp_width: int = UNSET
    feature_dim: int | None = UNSET
    residual: bool = UNSET
    nonlinearity: str = UNSET
    avg_num_neighbors: float | None = UNSET
    energy_shift: tuple[float, ...] = UNSET
    energy_scale: float | tuple[float, ...] = UNSET
    trainable_scale_shift: bool = UNSET
    dtype: str = UNSET
    edge_chunk_size: int | None = UNSET

    def __post_init__(self):
        # Sequences become tuples (hashable, equal after a YAML round trip); scalars stay as
        # written so that to_dict gives back the section that was read.
        for name in ("species", "energy_shift", "energy_scale"):
            value = getattr(self, name)
            if isinstance(value, (list, tuple)):
                object.__setattr__(self, name, tuple(value))

    def given(self) -> dict[str, Any]:
        """The fields that are set, by name (sequences as tuples)."""
        return {
            f.name: getattr(self, f.name)
            for f in dataclasses.fields(self)
            if getattr(self, f.name) is not UNSET
        }

    def to_dict(self) -> dict[str, Any]:
        """The YAML/JSON ``model`` section: the fields that are set (sequences as lists)."""
        return {k: list(v) if isinstance(v, tuple) else v for k, v in self.given().items()}

    @classmethod
    def from_dict(cls, raw: Mapping[str, Any]) -> ModelConfig:
        """The section from a mapping; unknown keys raise, naming them and the valid ones."""
        names = [f.name for f in dataclasses.fields(cls)]
        unknown = sorted(set(raw) - set(names))
        if unknown:
            valid = sorted(n for n in names if n != "species")
            raise ValueError(
                f"unknown keys {unknown} in section 'model'; expected NequIPConfig fields "
                f"{valid} or 'species' (atomic numbers)."
            )
        return cls(**raw)

    def replace(self, **changes: Any) -> ModelConfig:
        """A copy with ``changes`` set (``UNSET`` unsets a field)."""
        return dataclasses.replace(self, **changes)

    def value(self, name: str) -> Any:
        """The field's value, or ``NequIPConfig``'s default when it is not set (not for the
        fields of :data:`FROM_DATA` nor ``species``, whose defaults come from the data)."""
        from nequip_jax.model import NequIPConfig

        if name in (*FROM_DATA, "species"):
            raise ValueError(f"{name!r}: its default comes from the training data, not a constant.")
        value = getattr(self, name)
        if value is UNSET:
            return next(f.default for f in dataclasses.fields(NequIPConfig) if f.name == name)
        return value

    def resolve(
        self,
        *,
        num_species: int,
        avg_num_neighbors: float,
        energy_shift: tuple[float, ...],
        energy_scale: float,
    ):
        """The :class:`nequip_jax.model.NequIPConfig` of this section, with the training set's
        statistics (at this section's ``r_max``) for the fields of :data:`FROM_DATA` it does
        not set."""
        from nequip_jax.model import NequIPConfig

        values = {k: v for k, v in self.given().items() if k != "species"}
        if "avg_num_neighbors" in values and values["avg_num_neighbors"] is None:
            values["avg_num_neighbors"] = 1.0  # null: the neighbour sum is not normalised
        values.setdefault("avg_num_neighbors", avg_num_neighbors)
        values.setdefault("energy_shift", tuple(float(x) for x in energy_shift))
        values.setdefault("energy_scale", energy_scale)
        return NequIPConfig.from_dict({**values, "num_species": num_species})


@dataclass(frozen=True)
class OptimConfig:
    """Optimisation and stopping.

    Attributes:
        optimizer: ``"adam"`` or ``"amsgrad"``.
        learning_rate: initial learning rate.
        batch_size / eval_batch_size: structures per training / evaluation batch.
        energy_loss: the energy term of the loss: ``"total"`` (MSE of the total energy, eV²;
            nequip's ``total_energy`` term, the authors' 3BPA configs) or ``"per_atom"`` (MSE of
            the energy per atom).
        energy_weight / forces_weight: loss weights of the energy MSE and the force-component
            MSE (the authors' 3BPA configs: ``forces: 729, total_energy: 1``).
        max_epochs: hard limit on epochs.
        max_time_s: wall-clock budget in seconds (``None``: none); checked between epochs.
        plateau_patience / plateau_factor: reduce the learning rate by ``factor`` after
            ``patience`` epochs without a validation-loss improvement (ReduceLROnPlateau).
        plateau_threshold: relative improvement that counts as one.
        min_learning_rate: stop when the learning rate falls below it.
        early_stopping_patience: stop after this many epochs without improvement (``None``: off).
        ema_decay: exponential moving average of the parameters (``None``: off); the EMA weights
            are validated and saved.
        grad_clip: global-norm gradient clipping (``None``: off).
    """

    optimizer: str = "amsgrad"
    learning_rate: float = 0.01
    batch_size: int = 5
    eval_batch_size: int = 32
    energy_loss: str = "total"
    energy_weight: float = 1.0
    forces_weight: float = 729.0
    max_epochs: int = 1000
    max_time_s: float | None = None
    plateau_patience: int = 100
    plateau_factor: float = 0.5
    plateau_threshold: float = 1e-4
    min_learning_rate: float = 1e-6
    early_stopping_patience: int | None = None
    ema_decay: float | None = None
    grad_clip: float | None = None

    def __post_init__(self):
        if self.energy_loss not in ENERGY_LOSSES:
            raise ValueError(
                f"optim.energy_loss={self.energy_loss!r}: choose one of {ENERGY_LOSSES}."
            )


@dataclass(frozen=True)
class RunConfig:
    """A complete training run: seed, data, model hyperparameters, optimisation."""

    seed: int = 0
    data: DataConfig = field(default_factory=DataConfig)
    model: ModelConfig = field(default_factory=ModelConfig)
    optim: OptimConfig = field(default_factory=OptimConfig)
    log_every_steps: int = 0

    def __post_init__(self):
        # A mapping is read as a model section (unknown keys are refused before any data is read).
        if isinstance(self.model, Mapping):
            object.__setattr__(self, "model", ModelConfig.from_dict(self.model))

    def to_dict(self) -> dict:
        out = {
            "seed": self.seed,
            "data": dataclasses.asdict(self.data),
            "model": self.model.to_dict(),
            "optim": dataclasses.asdict(self.optim),
            "log_every_steps": self.log_every_steps,
        }
        out["data"]["test_splits"] = list(self.data.test_splits)
        return out

    @classmethod
    def from_dict(cls, raw: dict) -> RunConfig:
        raw = dict(raw)
        unknown = set(raw) - {f.name for f in dataclasses.fields(cls)}
        if unknown:
            raise ValueError(f"unknown config keys {sorted(unknown)}; expected {_fields(cls)}.")
        data = _build(DataConfig, raw.pop("data", {}) or {}, "data")
        optim = _build(OptimConfig, raw.pop("optim", {}) or {}, "optim")
        data = dataclasses.replace(data, test_splits=tuple(data.test_splits))
        return cls(data=data, optim=optim, **raw)


def _fields(cls) -> list[str]:
    return [f.name for f in dataclasses.fields(cls)]


def _build(cls, raw: dict, section: str):
    unknown = set(raw) - set(_fields(cls))
    if unknown:
        raise ValueError(
            f"unknown keys {sorted(unknown)} in section {section!r}; expected {_fields(cls)}."
        )
    return cls(**raw)


def _parse_value(text: str) -> Any:
    return yaml.safe_load(text)


def apply_overrides(raw: dict, overrides: list[str]) -> dict:
    """Apply ``key.sub=value`` overrides (values parsed as YAML) to a raw config dictionary."""
    raw = yaml.safe_load(yaml.safe_dump(raw))  # deep copy
    for item in overrides:
        if "=" not in item:
            raise ValueError(
                f"override {item!r}: expected KEY=VALUE, e.g. optim.learning_rate=0.005"
            )
        key, value = item.split("=", 1)
        node = raw
        parts = key.strip().split(".")
        for part in parts[:-1]:
            node = node.setdefault(part, {})
            if not isinstance(node, dict):
                raise ValueError(f"override {item!r}: {part!r} is not a section.")
        node[parts[-1]] = _parse_value(value)
    return raw


def load_config(path_or_preset: str | os.PathLike, overrides: list[str] = ()) -> RunConfig:
    """Read a YAML config (a path, or the name of a shipped preset such as ``cpu``).

    Raises:
        FileNotFoundError: neither a file nor a preset of that name exists (lists the presets).
        ValueError: unknown keys or malformed overrides.
    """
    path = Path(path_or_preset)
    if not path.is_file():
        preset = PRESETS_DIR / f"{path_or_preset}.yaml"
        if not preset.is_file():
            names = sorted(p.stem for p in PRESETS_DIR.glob("*.yaml"))
            raise FileNotFoundError(
                f"{path_or_preset}: no such config file or preset; presets: {names}."
            )
        path = preset
    raw = yaml.safe_load(path.read_text()) or {}
    return RunConfig.from_dict(apply_overrides(raw, list(overrides)))


#: The optimiser settings that may differ between the members of one vmapped group (besides
#: the model's ``RADIAL_FIELDS`` and each member's seed-derived keys).
MEMBER_OPTIM_FIELDS = ("learning_rate", "energy_weight", "forces_weight")


def group_settings(config: RunConfig) -> dict:
    """What the members of one vmapped group share: the seed, the model hyperparameters other
    than :data:`nequip_jax.model.RADIAL_FIELDS` and the optimiser settings other than
    :data:`MEMBER_OPTIM_FIELDS`. Two run configurations can train as one group exactly when
    these are equal."""
    from nequip_jax.model import RADIAL_FIELDS

    optim = {
        k: v for k, v in dataclasses.asdict(config.optim).items() if k not in MEMBER_OPTIM_FIELDS
    }
    model = {k: v for k, v in config.model.to_dict().items() if k not in RADIAL_FIELDS}
    return {"seed": config.seed, "model": model, "optim": optim}
