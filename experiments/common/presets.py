"""The experiments' presets: one YAML file (``experiments/presets.yaml``) read into each
experiment's configuration dataclass, the training setting of a figure (:class:`Combo`) and the
β-scan split names.

``load_presets("fig2_uncertainty", UQConfig)`` gives the ``paper``/``cpu``/``tiny`` presets of
Fig. 2 as ``UQConfig`` instances; the conversion follows the dataclass's type annotations
(nested dataclasses, tuples, mappings, ``X | None``), so a key that is not a field, or a value of
the wrong shape, is refused with the preset and the key named.
"""

from __future__ import annotations

import collections.abc
import dataclasses
import functools
import types
import typing
from pathlib import Path
from typing import Any

import yaml

from experiments.common.config import MethodsConfig
from nequip_jax.training import ModelConfig
from nequip_jax.training.ensemble import DIVERSE_VARIANTS

__all__ = [
    "NAMED_VALUES",
    "PRESETS_FILE",
    "Combo",
    "CPU_METHODS",
    "TINY_METHODS",
    "from_mapping",
    "load_presets",
    "shared",
    "scan_split",
]

#: The presets of every experiment.
PRESETS_FILE = Path(__file__).resolve().parents[1] / "presets.yaml"

#: Values that a field may name instead of spelling out: ``diverse_variants: shipped`` is the
#: library's seven variants (``nequip_jax/configs/ensemble/diverse_variants.yaml``).
NAMED_VALUES = {(MethodsConfig, "diverse_variants"): {"shipped": DIVERSE_VARIANTS}}


@dataclasses.dataclass(frozen=True)
class Combo:
    """One training setting of the paper: data setting, training-draw size, feature width f."""

    setting: str = "300K"
    n_train: int = 100
    num_features: int = 32

    @property
    def name(self) -> str:
        return f"{self.setting}_n{self.n_train}_f{self.num_features}"


def scan_split(beta: int) -> str:
    """Registry name of the dihedral scan at ``beta`` degrees (``"dih_beta120"``)."""
    return f"dih_beta{beta}"


@functools.cache
def _document() -> dict:
    return yaml.safe_load(PRESETS_FILE.read_text()) or {}


def load_presets(experiment: str, cls: type) -> dict[str, Any]:
    """The presets of ``experiment`` (its section of :data:`PRESETS_FILE`) as ``cls``
    instances, by preset name, in the file's order.

    Raises:
        KeyError: the file has no section ``experiment``.
        ValueError: a key that is not a field of its dataclass, or a value of the wrong shape.
    """
    document = _document()
    if experiment not in document:
        raise KeyError(f"{PRESETS_FILE.name} has no section {experiment!r}.")
    return {
        name: from_mapping(cls, raw or {}, where=f"{PRESETS_FILE.name}: {experiment}.{name}")
        for name, raw in document[experiment].items()
    }


def shared(name: str, cls: type) -> Any:
    """The entry ``name`` of the file's ``shared`` section as a ``cls`` instance."""
    return from_mapping(cls, _document()["shared"][name], where=f"{PRESETS_FILE.name}: {name}")


def from_mapping(cls: type, raw: collections.abc.Mapping, *, where: str) -> Any:
    """A ``cls`` dataclass instance from a mapping of its fields (missing fields: defaults),
    converted by the fields' type annotations. ``where`` names the mapping in errors."""
    if not isinstance(raw, collections.abc.Mapping):
        raise ValueError(f"{where}: expected a mapping of {cls.__name__} fields, got {raw!r}.")
    hints = typing.get_type_hints(cls)
    names = [f.name for f in dataclasses.fields(cls)]
    unknown = sorted(set(raw) - set(names))
    if unknown:
        raise ValueError(f"{where}: unknown keys {unknown}; {cls.__name__} has {names}.")
    values = {}
    for key, value in raw.items():
        named = NAMED_VALUES.get((cls, key), {})
        if isinstance(value, str) and named:
            if value not in named:
                raise ValueError(f"{where}.{key}: {value!r} is not one of {sorted(named)}.")
            values[key] = named[value]
        else:
            values[key] = _convert(hints[key], value, f"{where}.{key}")
    return cls(**values)


def _convert(hint: Any, value: Any, where: str) -> Any:
    origin, args = typing.get_origin(hint), typing.get_args(hint)
    if origin in (typing.Union, types.UnionType):
        if value is None and type(None) in args:
            return None
        return _convert(next(a for a in args if a is not type(None)), value, where)
    if hint is ModelConfig:
        return ModelConfig.from_dict(value)
    if isinstance(hint, type) and dataclasses.is_dataclass(hint):
        return from_mapping(hint, value, where=where)
    if origin is tuple:
        if not isinstance(value, list):
            raise ValueError(f"{where}: expected a list, got {value!r}.")
        element = args[0]
        if element is str:  # splice nested lists (YAML aliases of lists of strings)
            value = [s for item in value for s in (item if isinstance(item, list) else [item])]
        return tuple(_convert(element, v, where) for v in value)
    if origin in (dict, collections.abc.Mapping) and args:
        if not isinstance(value, collections.abc.Mapping):
            raise ValueError(f"{where}: expected a mapping, got {value!r}.")
        return {k: _convert(args[1], v, f"{where}.{k}") for k, v in value.items()}
    return value


#: The methods of the CPU presets (``shared.cpu_methods``) and of the tests (``tiny_methods``).
CPU_METHODS: MethodsConfig = shared("cpu_methods", MethodsConfig)
TINY_METHODS: MethodsConfig = shared("tiny_methods", MethodsConfig)
