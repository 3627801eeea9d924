"""Per-member cutoff settings: values that override the static config inside the model.

The cutoff radius ``r_max``, the envelope exponent ``cutoff_p`` and ``avg_num_neighbors`` (the
mean neighbour count at that cutoff) change no parameter shape. Members of a diverse ensemble
(Zhu et al. 2023) that differ only in them therefore train and predict as one ``vmap``-ped group:
the group's graphs are built with the largest ``r_max`` of its members, and each member's values
enter the model as traced arrays with a leading member axis, next to (not inside) its parameters,
so the optimiser never changes them. An edge longer than a member's own ``r_max`` gets a zero
envelope and contributes exactly nothing to that member (see
:func:`nequip_jax.model._radial.polynomial_cutoff`).
"""

from __future__ import annotations

import dataclasses
from collections.abc import Mapping, Sequence
from typing import Any, NamedTuple

import numpy as np

from nequip_jax.model._config import NequIPConfig

__all__ = ["RADIAL_FIELDS", "RadialSettings", "group_radial", "program_config"]

#: The :class:`NequIPConfig` fields that may differ between the members of one vmapped group.
RADIAL_FIELDS = ("r_max", "cutoff_p", "avg_num_neighbors")


class RadialSettings(NamedTuple):
    """Cutoff settings that replace the config's values inside the model.

    Each field is a scalar for one model, or ``[n_members]`` for a group (``jax.vmap`` over the
    leading axis gives each member its scalar).

    Attributes:
        r_max: cutoff radius (Å), float.
        cutoff_p: exponent p of the polynomial envelope, int32; ``None``: the config's (a Python
            int inside the program, for members that share it).
        avg_num_neighbors: the convolution sum is divided by its square root, float.
    """

    r_max: Any
    cutoff_p: Any
    avg_num_neighbors: Any

    @classmethod
    def of(cls, config: NequIPConfig, n_members: int | None = None) -> RadialSettings:
        """The values of one ``config`` as host arrays in the model's dtype, ``cutoff_p``
        ``None`` (the config's): scalars, or ``[n_members]`` copies for a group whose members
        share them. Passed to a program keyed on :func:`program_config`, they let every
        model of the same shapes share one compiled program."""
        dtype = np.float64 if config.dtype == "float64" else np.float32
        shape = () if n_members is None else (n_members,)
        return cls(
            r_max=np.full(shape, config.r_max, dtype),
            cutoff_p=None,
            avg_num_neighbors=np.full(shape, config.avg_num_neighbors, dtype),
        )

    @classmethod
    def stack(cls, configs: Sequence[NequIPConfig]) -> RadialSettings:
        """[n_members] host arrays (float64, int32, float64) of the configs' values."""
        return cls(
            r_max=np.array([c.r_max for c in configs], np.float64),
            cutoff_p=np.array([c.cutoff_p for c in configs], np.int32),
            avg_num_neighbors=np.array([c.avg_num_neighbors for c in configs], np.float64),
        )

    def cast(self, dtype) -> RadialSettings:
        """Host copies with ``r_max`` and ``avg_num_neighbors`` in ``dtype`` (the model's)."""
        return RadialSettings(
            r_max=np.asarray(self.r_max, dtype),
            cutoff_p=None if self.cutoff_p is None else np.asarray(self.cutoff_p, np.int32),
            avg_num_neighbors=np.asarray(self.avg_num_neighbors, dtype),
        )

    def member_config(self, config: NequIPConfig, j: int) -> NequIPConfig:
        """``config`` with member ``j``'s values: the configuration of that model alone."""
        return dataclasses.replace(
            config,
            r_max=float(self.r_max[j]),
            cutoff_p=config.cutoff_p if self.cutoff_p is None else int(self.cutoff_p[j]),
            avg_num_neighbors=float(self.avg_num_neighbors[j]),
        )

    def take(self, indices: Sequence[int]) -> RadialSettings:
        """The settings of the members ``indices`` (in that order)."""
        idx = np.asarray(indices, np.int64)
        return RadialSettings(*(None if v is None else np.asarray(v)[idx] for v in self))

    def to_dict(self) -> dict[str, list]:
        """JSON-serialisable lists (floats and ints round-trip exactly)."""
        return {
            "r_max": [float(v) for v in np.asarray(self.r_max)],
            "cutoff_p": [int(v) for v in np.asarray(self.cutoff_p)],
            "avg_num_neighbors": [float(v) for v in np.asarray(self.avg_num_neighbors)],
        }

    @classmethod
    def from_dict(cls, values: Mapping[str, Sequence]) -> RadialSettings:
        """Inverse of :meth:`to_dict`."""
        missing = sorted(set(RADIAL_FIELDS) - set(values))
        if missing:
            raise ValueError(
                f"per-member radial settings lack {missing}; a saved group needs "
                f"{list(RADIAL_FIELDS)} (or no 'radial' entry at all for identical members)."
            )
        return cls(
            r_max=np.asarray(values["r_max"], np.float64),
            cutoff_p=np.asarray(values["cutoff_p"], np.int32),
            avg_num_neighbors=np.asarray(values["avg_num_neighbors"], np.float64),
        )


def program_config(config: NequIPConfig) -> NequIPConfig:
    """The configuration a compiled program is keyed on: ``config`` with the values that enter
    the program as arguments replaced by fixed placeholders — ``r_max`` and
    ``avg_num_neighbors`` (passed as :class:`RadialSettings`) and, when they are trainable, the
    energy scales and shifts (parameters; the config only initialises them). Two models that
    differ only in these (e.g. trained on different data) therefore share their programs."""
    fixed = {"r_max": 1.0, "avg_num_neighbors": 1.0}
    if config.trainable_scale_shift:
        fixed.update(energy_shift=(), energy_scale=1.0)
    return dataclasses.replace(config, **fixed)


def group_radial(configs: Sequence[NequIPConfig]) -> RadialSettings | None:
    """Per-member settings of a group, or ``None`` when its members share them (then the static
    config describes every member and the model runs exactly as for one model).

    Raises:
        ValueError: the configs differ in a field other than :data:`RADIAL_FIELDS` (such
            members change parameter shapes and need groups of their own).
    """
    if not configs:
        raise ValueError("group_radial needs at least one member configuration.")

    def rest(c: NequIPConfig) -> NequIPConfig:
        return dataclasses.replace(c, r_max=1.0, cutoff_p=1, avg_num_neighbors=1.0)

    first = rest(configs[0])
    for index, config in enumerate(configs[1:], start=1):
        if rest(config) != first:
            diff = [
                f.name
                for f in dataclasses.fields(NequIPConfig)
                if getattr(config, f.name) != getattr(configs[0], f.name)
                and f.name not in RADIAL_FIELDS
            ]
            raise ValueError(
                f"member {index} differs from member 0 in {diff}; only {list(RADIAL_FIELDS)} "
                "may differ within one vmapped group (train the others as separate groups)."
            )
    if len({tuple(getattr(c, name) for name in RADIAL_FIELDS) for c in configs}) == 1:
        return None
    return RadialSettings.stack(configs)
