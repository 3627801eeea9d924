"""Hyperparameters of the NequIP model (Batzner et al. 2022), as one frozen, hashable dataclass.

The config holds only plain Python values (ints, floats, bools, strings, tuples), so it can be a
static argument of ``jax.jit``, a field of a ``flax.linen.Module`` and a JSON/YAML document
(:meth:`NequIPConfig.to_dict` / :meth:`NequIPConfig.from_dict`).
"""

from __future__ import annotations

import dataclasses
import math
from collections.abc import Mapping, Sequence
from typing import Any

__all__ = ["NequIPConfig", "hidden_irreps"]

_DTYPES = ("float32", "float64")
_NONLINEARITIES = ("silu", "ssp")


@dataclasses.dataclass(frozen=True)
class NequIPConfig:
    """NequIP hyperparameters (defaults: nequip 0.19 / Zhu et al. 2023 CPU-sized model).

    Attributes:
        num_species: number of species; node ``species`` is an index in ``[0, num_species)``.
        num_features: multiplicity f of every hidden irrep (the paper uses 16 and 32).
        lmax: largest rotation order of the hidden features and of the edge spherical harmonics.
        parity: keep both parities of every l (``f x 0e + f x 0o + f x 1o + f x 1e + ...``);
            ``False`` keeps only ``0e + 1o + 2e + ...``.
        num_layers: number of interaction blocks.
        r_max: cutoff radius (Å); must match the graphs' neighbour cutoff.
        num_basis: number of Bessel radial basis functions.
        trainable_basis: make the Bessel frequencies ``n π / r_max`` trainable.
        cutoff_p: exponent p of the polynomial cutoff envelope.
        radial_mlp_depth: hidden layers of the radial MLP giving the tensor-product path weights.
        radial_mlp_width: width of those hidden layers.
        feature_dim: size of the final projected scalar features (the input of the uncertainty
            model, Zhu et al. 2023); ``None`` means ``num_features // 2``.
        residual: add the block input to its output when their irreps agree.
        nonlinearity: activation family of the gates and the radial MLP: ``"silu"`` (even
            scalars and gates SiLU, odd tanh) or ``"ssp"`` (nequip ≤ 0.5, the version of Zhu et
            al. 2023: even shifted softplus, odd scalars tanh, odd gates abs, radial MLP ssp).
        avg_num_neighbors: the convolution sum is divided by its square root (1.0: no
            normalisation, the authors' 3BPA configs' ``avg_num_neighbors: null``).
        energy_shift: per-species energy shift (eV), length ``num_species``; ``()`` means zeros.
        energy_scale: per-species energy scale (a float for all species, or a tuple of length
            ``num_species``); usually the force RMS of the training set (eV/Å).
        trainable_scale_shift: train the per-species energy scale and shift (``False``: fixed
            at ``energy_scale`` / ``energy_shift``, as in nequip ≤ 0.5).
        dtype: ``"float32"`` (default) or ``"float64"`` (needs ``jax_enable_x64``).
        edge_chunk_size: edges processed at once by the convolution (a speed/memory knob that
            does not change the model); ``None`` picks it per layer and batch shape (see
            :func:`nequip_jax.model._blocks.auto_chunk_size`).
    """

    num_species: int
    num_features: int = 32
    lmax: int = 1
    parity: bool = True
    num_layers: int = 4
    r_max: float = 4.0
    num_basis: int = 8
    trainable_basis: bool = False
    cutoff_p: int = 6
    radial_mlp_depth: int = 2
    radial_mlp_width: int = 64
    feature_dim: int | None = None
    residual: bool = False
    nonlinearity: str = "silu"
    avg_num_neighbors: float = 1.0
    energy_shift: tuple[float, ...] = ()
    energy_scale: float | tuple[float, ...] = 1.0
    trainable_scale_shift: bool = True
    dtype: str = "float32"
    edge_chunk_size: int | None = None

    def __post_init__(self):
        # Normalise sequences to tuples of floats so that the config stays hashable and
        # compares equal after a JSON round trip.
        object.__setattr__(self, "energy_shift", tuple(float(s) for s in self.energy_shift))
        if isinstance(self.energy_scale, Sequence) and not isinstance(self.energy_scale, str):
            object.__setattr__(self, "energy_scale", tuple(float(s) for s in self.energy_scale))
        else:
            object.__setattr__(self, "energy_scale", float(self.energy_scale))
        object.__setattr__(self, "r_max", float(self.r_max))
        object.__setattr__(self, "avg_num_neighbors", float(self.avg_num_neighbors))
        problems = []
        for name in (
            "num_species",
            "num_features",
            "num_layers",
            "num_basis",
            "cutoff_p",
        ):
            if int(getattr(self, name)) < 1:
                problems.append(f"{name}={getattr(self, name)} must be at least 1")
        if self.lmax < 0:
            problems.append(f"lmax={self.lmax} must be non-negative")
        if self.radial_mlp_depth < 0 or self.radial_mlp_width < 1:
            problems.append(
                f"radial_mlp_depth={self.radial_mlp_depth}, radial_mlp_width="
                f"{self.radial_mlp_width}: depth must be >= 0 and width >= 1"
            )
        if not self.r_max > 0 or not math.isfinite(self.r_max):
            problems.append(f"r_max={self.r_max} must be a positive number")
        if not self.avg_num_neighbors > 0:
            problems.append(
                f"avg_num_neighbors={self.avg_num_neighbors} must be positive (take it from "
                "nequip_jax.data.compute_statistics on the training set)"
            )
        if self.energy_shift and len(self.energy_shift) != self.num_species:
            problems.append(
                f"energy_shift has {len(self.energy_shift)} entries for "
                f"num_species={self.num_species}"
            )
        if isinstance(self.energy_scale, tuple) and len(self.energy_scale) != self.num_species:
            problems.append(
                f"energy_scale has {len(self.energy_scale)} entries for "
                f"num_species={self.num_species}"
            )
        if self.edge_chunk_size is not None and self.edge_chunk_size < 1:
            problems.append(f"edge_chunk_size={self.edge_chunk_size} must be at least 1 (or None)")
        if self.feature_dim is not None and self.feature_dim < 1:
            problems.append(f"feature_dim={self.feature_dim} must be at least 1 (or None)")
        if self.num_features // 2 < 1 and self.feature_dim is None:
            problems.append("num_features=1 gives feature_dim 0; set feature_dim explicitly")
        if self.nonlinearity not in _NONLINEARITIES:
            problems.append(f"nonlinearity={self.nonlinearity!r} must be one of {_NONLINEARITIES}")
        if self.dtype not in _DTYPES:
            problems.append(f"dtype={self.dtype!r} must be one of {_DTYPES}")
        if problems:
            raise ValueError("invalid NequIPConfig: " + "; ".join(problems) + ".")

    # --- derived values -------------------------------------------------------------------

    @property
    def resolved_feature_dim(self) -> int:
        """``feature_dim``, or ``num_features // 2`` when it is ``None``."""
        return self.feature_dim if self.feature_dim is not None else self.num_features // 2

    @property
    def shifts(self) -> tuple[float, ...]:
        """[num_species] energy shifts (zeros when ``energy_shift`` is empty)."""
        return self.energy_shift or (0.0,) * self.num_species

    @property
    def scales(self) -> tuple[float, ...]:
        """[num_species] energy scales."""
        if isinstance(self.energy_scale, tuple):
            return self.energy_scale
        return (self.energy_scale,) * self.num_species

    @property
    def hidden_irreps(self) -> str:
        """The hidden irreps as a string, e.g. ``"32x0e+32x0o+32x1o+32x1e"``."""
        return hidden_irreps(self.num_features, self.lmax, self.parity)

    # --- (de)serialisation ------------------------------------------------------------------

    def to_dict(self) -> dict[str, Any]:
        """Plain JSON/YAML-serialisable dictionary (tuples become lists)."""
        out = dataclasses.asdict(self)
        out["energy_shift"] = list(self.energy_shift)
        if isinstance(self.energy_scale, tuple):
            out["energy_scale"] = list(self.energy_scale)
        return out

    @classmethod
    def from_dict(cls, values: Mapping[str, Any]) -> NequIPConfig:
        """Inverse of :meth:`to_dict`; unknown keys raise with the list of valid ones."""
        names = {f.name for f in dataclasses.fields(cls)}
        unknown = sorted(set(values) - names)
        if unknown:
            raise ValueError(
                f"unknown NequIPConfig field(s) {unknown}; valid fields are {sorted(names)}."
            )
        return cls(**dict(values))

    @classmethod
    def from_statistics(cls, statistics: Any, num_species: int, **fields: Any) -> NequIPConfig:
        """Config with ``avg_num_neighbors``, ``energy_shift`` and ``energy_scale`` (= force RMS)
        taken from a :class:`nequip_jax.data.DatasetStatistics` of the training set.
        """
        return cls(
            num_species=num_species,
            avg_num_neighbors=float(statistics.avg_num_neighbors),
            energy_shift=tuple(float(s) for s in statistics.energy_shift),
            energy_scale=float(statistics.force_rms),
            **fields,
        )


def hidden_irreps(num_features: int, lmax: int, parity: bool) -> str:
    """``f x 0e + f x 0o + f x 1o + f x 1e + ...`` up to ``lmax`` (with parity), or
    ``f x 0e + f x 1o + f x 2e + ...`` (without), as in Batzner et al. (2022).
    """
    parts = []
    for ell in range(lmax + 1):
        natural = "e" if ell % 2 == 0 else "o"
        other = "o" if natural == "e" else "e"
        parts.append(f"{num_features}x{ell}{natural}")
        if parity:
            parts.append(f"{num_features}x{ell}{other}")
    return "+".join(parts)
