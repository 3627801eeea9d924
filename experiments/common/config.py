"""How the methods are trained: :class:`MethodsConfig` and the run configuration of a member."""

from __future__ import annotations

import dataclasses
import json
from collections.abc import Mapping
from typing import Any

from nequip_jax.training import ModelConfig, RunConfig, load_config

__all__ = [
    "MethodsConfig",
    "config_dict",
    "run_config",
    "head_options",
]


def config_dict(config: Any) -> dict:
    """The JSON form of an experiment's configuration dataclass (what its results and the
    identity of its cached pieces record); a model section is written as the fields it sets."""
    return json.loads(json.dumps(_plain(config)))


def _plain(value: Any) -> Any:
    if isinstance(value, ModelConfig):
        return value.to_dict()
    if dataclasses.is_dataclass(value) and not isinstance(value, type):
        return {f.name: _plain(getattr(value, f.name)) for f in dataclasses.fields(value)}
    if isinstance(value, Mapping):
        return {k: _plain(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [_plain(v) for v in value]
    return value


@dataclasses.dataclass(frozen=True)
class MethodsConfig:
    """How the three methods are trained.

    Attributes:
        base: a :func:`nequip_jax.training.load_config` preset (``"cpu"`` or ``"paper"``).
        model: the model fields that replace the preset's (a
            :class:`nequip_jax.training.ModelConfig`; a mapping such as ``{"num_features": 16}``
            is converted).
        optim: overrides of the optimisation section (e.g. ``{"plateau_patience": 10}``).
            Networks train until their stopping rule (the learning-rate floor or early
            stopping; ``max_epochs`` is a safety net whose use is recorded).
        n_traditional: J of the traditional ensemble (10 in the paper).
        n_diverse_traditional: traditional members reused in the diverse ensemble (3).
        diverse_variants: one override mapping (``{"model": {...}, "optim": {...}}``) per extra
            diverse member (7 in the paper).
        max_components: largest number of GMM components tried by BIC (49 in the authors' code).
        gmm_max_iter: EM iterations per candidate (scikit-learn's default 100).
    """

    base: str = "cpu"
    model: ModelConfig = dataclasses.field(default_factory=ModelConfig)
    optim: Mapping[str, Any] = dataclasses.field(default_factory=dict)
    n_traditional: int = 10
    n_diverse_traditional: int = 3
    diverse_variants: tuple[Mapping[str, Any], ...] = ()
    max_components: int = 49
    gmm_max_iter: int = 100

    def __post_init__(self):
        if isinstance(self.model, Mapping):
            object.__setattr__(self, "model", ModelConfig.from_dict(self.model))
        if self.n_traditional < 2:
            raise ValueError(
                f"n_traditional={self.n_traditional}: an ensemble needs at least 2 members."
            )
        if not 1 <= self.n_diverse_traditional <= self.n_traditional:
            raise ValueError(
                f"n_diverse_traditional={self.n_diverse_traditional} must lie in "
                f"1 … n_traditional={self.n_traditional}."
            )
        if self.n_diverse_traditional + len(self.diverse_variants) < 2:
            raise ValueError("the diverse ensemble needs at least 2 members; add variants.")

    def with_model(self, **model: Any) -> MethodsConfig:
        """A copy with extra model overrides (e.g. ``num_features=8``)."""
        return dataclasses.replace(self, model=self.model.replace(**model))

    def to_dict(self) -> dict:
        return config_dict(self)


def _merge(base: Mapping, override: Mapping) -> dict:
    out = dict(base)
    for key, value in override.items():
        if isinstance(value, Mapping):
            out[key] = _merge(out.get(key, {}) or {}, value)
        else:
            out[key] = value
    return out


def run_config(
    mc: MethodsConfig,
    *,
    seed: int,
    variant: Mapping[str, Any] | None = None,
) -> RunConfig:
    """The :class:`RunConfig` of one training group: preset + overrides (+ a diverse variant).

    Raises:
        ValueError: the result sets a wall-clock budget (``optim.max_time_s``): networks of
            reported experiments stop by their convergence rule, never by the clock.
    """
    raw = load_config(mc.base).to_dict()
    raw = _merge(raw, {"seed": int(seed), "model": mc.model.to_dict(), "optim": dict(mc.optim)})
    if variant:
        raw = _merge(raw, variant)
    if raw["optim"].get("max_time_s") is not None:
        raise ValueError(
            f"optim.max_time_s={raw['optim']['max_time_s']}: experiment networks stop by their "
            "convergence rule, not a wall-clock budget; remove max_time_s from the preset or "
            "the overrides."
        )
    return RunConfig.from_dict(raw)


def head_options(mc: MethodsConfig, method: str) -> dict:
    """Keyword options of ``method``'s fit from the training settings (the GMM's BIC sweep:
    ``max_components`` and ``max_iter``; other methods none)."""
    if method == "gmm":
        return {"max_components": mc.max_components, "max_iter": mc.gmm_max_iter}
    return {}
