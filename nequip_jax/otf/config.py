"""Configuration of an on-the-fly active-learning run, with shipped presets.

One seed drives everything (initial structures, weights, batch order, Langevin noise, random
baseline steps, GMM initialisation), split from one ``jax.random`` key by the loop.
"""

from __future__ import annotations

import dataclasses
import os
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import yaml

from nequip_jax.training.config import ModelConfig, OptimConfig, apply_overrides
from nequip_jax.uncertainty.registry import METHODS, get_method

__all__ = ["OTFConfig", "PRESETS", "load_otf_config", "TRIGGERS", "MD_BACKENDS"]

#: The triggers: every registered uncertainty method.
TRIGGERS = tuple(METHODS)
MD_BACKENDS = ("device", "ase")


@dataclasses.dataclass(frozen=True)
class OTFConfig:
    """Everything an on-the-fly run needs.

    Attributes:
        seed: the one seed of the run.
        trigger: a registered uncertainty method (:mod:`nequip_jax.uncertainty.registry`):
            fire on its max per-atom score — ``"gmm"`` (GMM NLL, Zhu et al. 2023 Eq. (8), of one
            model), ``"llpr"`` (LLPR σ of one model), ``"ensemble"`` (σ of Eq. (4) over
            ``n_members`` models); an uninformative method (``"random"``, the baseline) labels
            ``random_calls`` frames at uniformly drawn steps instead.
        n_initial: training structures to start from (drawn from ``initial_split``).
        initial_split: 3BPA split the initial structures and the MD start come from.
        data_root: folder searched first for the 3BPA files (e.g. ``data/3bpa_xtb``).
        labels: ``"oracle"`` — label the initial and test structures with the oracle (cached in
            the cache folder); ``"files"`` — use the labels in the files (only with a
            ``data_root`` of 3BPA@xTB: never mix DFT and xTB labels).
        oracle: keyword arguments of :class:`nequip_jax.oracle.XTBOracle`.
        md: where the MD runs (:mod:`nequip_jax.otf.dynamics`): ``"device"`` (BAOAB Langevin
            in segments on the device, stopping only where the loop has work) or ``"ase"``
            (ASE's Langevin through the calculator, one host round trip per step).
        temperature_K: Langevin temperature (K).
        timestep_fs: MD time step (fs).
        friction_per_fs: Langevin friction (1/fs); 0 gives NVE (velocity Verlet).
        n_steps: MD steps of the run.
        skin: Verlet skin of the calculator's neighbour lists (Å).
        threshold_percentile: the trigger fires when the max per-atom uncertainty of a frame
            exceeds this percentile of the max per-atom uncertainty over the training structures
            (recomputed after every refit).
        min_steps_between_calls: no new oracle call within this many steps of the last one.
        max_oracle_calls: budget of training labels (uncertainty triggers).
        random_calls: oracle calls of the random baseline (usually the count of a GMM run).
        n_members: ensemble size (a trigger whose method needs an ensemble).
        model: NequIP hyperparameters (:class:`nequip_jax.training.ModelConfig`; a mapping of its
            fields is converted).
        optim: optimisation of the initial training (:class:`nequip_jax.training.OptimConfig`; a
            mapping of its fields is converted, the others keep their defaults); its loss
            weights and energy loss are also those of the fine-tuning.
        retrain_epochs: warm-start epochs over the grown training set after every oracle call.
        retrain_learning_rate: learning rate of the warm start (Adam, fresh moments).
        retrain_batch_size: structures per warm-start batch.
        head_options: per method, keyword options of its ``fit`` when the head is refitted
            (default: the GMM tries K = 1 … 8, lowest BIC wins, on features padded to multiples
            of 1024 rows so the growing training set reuses one compiled sweep).
        error_every: every this many steps, label the current frame for a true-error sample
            (diagnostic only, never trained on; 0 turns it off).
        trace_every: log the uncertainty every this many steps.
        checkpoint_every: write a resumable checkpoint every this many steps (and after every
            retrain).
        broken_min_distance / broken_max_neighbour_distance: a frame with two atoms closer than
            the first (Å), or an atom whose nearest neighbour is farther than the second (a
            fragment flew off), restarts the MD from the start structure with fresh velocities.
        test_splits: 3BPA@xTB test sets of the final evaluation.
        n_test: structures per test split (a seeded draw; ``None``: all).
        max_wall_s: stop (resumably) after this wall time; ``None``: no limit.
    """

    seed: int = 0
    trigger: str = "gmm"
    n_initial: int = 20
    initial_split: str = "train_300K"
    data_root: str | None = None
    labels: str = "oracle"
    oracle: dict = dataclasses.field(default_factory=dict)
    md: str = "device"
    temperature_K: float = 600.0
    timestep_fs: float = 1.0
    friction_per_fs: float = 0.02
    n_steps: int = 2000
    skin: float = 0.5
    threshold_percentile: float = 100.0
    min_steps_between_calls: int = 20
    max_oracle_calls: int = 30
    random_calls: int = 10
    n_members: int = 4
    model: ModelConfig = dataclasses.field(default_factory=ModelConfig)
    optim: OptimConfig = dataclasses.field(default_factory=OptimConfig)
    retrain_epochs: int = 10
    retrain_learning_rate: float = 0.002
    retrain_batch_size: int = 5
    head_options: dict = dataclasses.field(
        default_factory=lambda: {"gmm": {"max_components": 8, "bucket": 1024}}
    )
    error_every: int = 100
    trace_every: int = 1
    checkpoint_every: int = 250
    broken_min_distance: float = 0.6
    broken_max_neighbour_distance: float = 3.0
    test_splits: tuple[str, ...] = ("test_300K", "test_600K", "test_1200K")
    n_test: int | None = 100
    max_wall_s: float | None = None

    def __post_init__(self):
        object.__setattr__(self, "test_splits", tuple(self.test_splits))
        if isinstance(self.model, Mapping):
            object.__setattr__(self, "model", ModelConfig.from_dict(self.model))
        if isinstance(self.optim, Mapping):
            optim = dict(self.optim)
            names = {f.name for f in dataclasses.fields(OptimConfig)}
            unknown = sorted(set(optim) - names)
            if unknown:
                raise ValueError(
                    f"unknown keys {unknown} in OTF section 'optim'; expected {sorted(names)}."
                )
            object.__setattr__(self, "optim", OptimConfig(**optim))
        problems = []
        if self.trigger not in TRIGGERS:
            problems.append(f"trigger={self.trigger!r} must be one of {TRIGGERS}")
        if self.md not in MD_BACKENDS:
            problems.append(f"md={self.md!r} must be one of {MD_BACKENDS}")
        if self.labels not in ("oracle", "files"):
            problems.append(f"labels={self.labels!r} must be 'oracle' or 'files'")
        if self.labels == "files" and self.data_root is None:
            problems.append("labels='files' needs data_root (a 3BPA@xTB folder)")
        if not 0.0 <= self.threshold_percentile <= 100.0:
            problems.append(f"threshold_percentile={self.threshold_percentile} not in [0, 100]")
        for name in ("n_initial", "n_steps", "retrain_batch_size"):
            if int(getattr(self, name)) < 1:
                problems.append(f"{name}={getattr(self, name)} must be at least 1")
        if self.trigger in TRIGGERS and self.ensemble and self.n_members < 2:
            problems.append(f"n_members={self.n_members}: an ensemble needs at least 2")
        if self.timestep_fs <= 0 or self.temperature_K < 0 or self.friction_per_fs < 0:
            problems.append("timestep_fs must be > 0, temperature_K and friction_per_fs >= 0")
        problems += _option_problems(self.oracle, self.head_options)
        if problems:
            raise ValueError("invalid OTFConfig: " + "; ".join(problems) + ".")

    @property
    def ensemble(self) -> bool:
        """Whether the trigger's method needs an ensemble."""
        return get_method(self.trigger).model == "ensemble"

    @property
    def informative(self) -> bool:
        """Whether the trigger thresholds a score (False: the random baseline's schedule)."""
        return get_method(self.trigger).informative

    def fit_options(self) -> dict:
        """Keyword options of the trigger method's ``fit``."""
        return dict(self.head_options.get(self.trigger, {}))

    def to_dict(self) -> dict[str, Any]:
        out = dataclasses.asdict(self)
        out["model"] = self.model.to_dict()
        out["test_splits"] = list(self.test_splits)
        return out

    @classmethod
    def from_dict(cls, raw: dict) -> OTFConfig:
        names = {f.name for f in dataclasses.fields(cls)}
        unknown = sorted(set(raw) - names)
        if unknown:
            raise ValueError(f"unknown OTF config keys {unknown}; valid keys: {sorted(names)}.")
        return cls(**raw)

    def replace(self, **changes: Any) -> OTFConfig:
        return dataclasses.replace(self, **changes)


def _option_problems(oracle: Any, head_options: Any) -> list[str]:
    """What is wrong with the option mappings ``oracle`` (the fields of
    :class:`nequip_jax.oracle.XTBOracle`) and ``head_options`` (registered method → mapping of
    its fit options): checked when the config is made, not when the run first uses them."""
    from nequip_jax.oracle.xtb import XTBOracle  # no tblite import: that happens on first use

    problems = []
    if not isinstance(oracle, Mapping):
        problems.append(f"oracle={oracle!r} must be a mapping of XTBOracle fields")
    else:
        fields = {f.name for f in dataclasses.fields(XTBOracle)}
        unknown = sorted(set(oracle) - fields)
        if unknown:
            problems.append(f"oracle has unknown keys {unknown}; XTBOracle takes {sorted(fields)}")
        else:
            try:
                XTBOracle(**oracle)
            except (TypeError, ValueError) as err:
                problems.append(f"oracle: {err}")
    if not isinstance(head_options, Mapping):
        problems.append(f"head_options={head_options!r} must map method names to option mappings")
    else:
        for name, options in head_options.items():
            if name not in TRIGGERS:
                problems.append(
                    f"head_options names {name!r}, which is not a registered method {TRIGGERS}"
                )
            elif not isinstance(options, Mapping):
                problems.append(f"head_options[{name!r}]={options!r} must be a mapping")
    return problems


#: Folder of the shipped presets (``<name>.yaml``).
PRESETS_DIR = Path(__file__).resolve().parents[1] / "configs" / "otf"
#: The shipped presets by name, as read from their YAML files.
PRESETS: dict[str, dict] = {
    path.stem: yaml.safe_load(path.read_text()) or {} for path in sorted(PRESETS_DIR.glob("*.yaml"))
}


def load_otf_config(path_or_preset: str | os.PathLike, overrides: list[str] = ()) -> OTFConfig:
    """Read an OTF config: a YAML file, or a preset name (``cpu``, ``tiny``:
    ``nequip_jax/configs/otf/<name>.yaml``) with optional ``key=value`` overrides (values
    parsed as YAML, e.g. ``trigger=ensemble``).

    Raises:
        FileNotFoundError: neither a file nor a preset of that name (lists the presets).
        ValueError: unknown keys or invalid values.
    """
    path = Path(path_or_preset)
    if path.is_file():
        raw = yaml.safe_load(path.read_text()) or {}
        if "preset" in raw:
            base = dict(PRESETS[raw.pop("preset")])
            base.update(raw)
            raw = base
    elif str(path_or_preset) in PRESETS:
        raw = dict(PRESETS[str(path_or_preset)])
    else:
        raise FileNotFoundError(
            f"{path_or_preset}: no such OTF config file or preset; presets: {sorted(PRESETS)}."
        )
    return OTFConfig.from_dict(apply_overrides(raw, list(overrides)))
