"""The uncertainty methods by name: the one place a new method is added.

Everything that computes an uncertainty (the ASE calculator, MD, the on-the-fly triggers, the
experiments, the demo) takes a method name and looks it up here.
"""

from __future__ import annotations

from nequip_jax.uncertainty.ensemble_sigma import ENSEMBLE
from nequip_jax.uncertainty.gmm_head import GMM
from nequip_jax.uncertainty.llpr import LLPR
from nequip_jax.uncertainty.protocol import UncertaintyMethod
from nequip_jax.uncertainty.random_score import RANDOM

__all__ = ["METHODS", "get_method", "methods_for"]

#: Registered methods, in display order.
METHODS: dict[str, UncertaintyMethod] = {m.name: m for m in (GMM, ENSEMBLE, LLPR, RANDOM)}


def get_method(name: str) -> UncertaintyMethod:
    """The registered method ``name``; a clear error lists the names otherwise."""
    try:
        return METHODS[name]
    except KeyError:
        raise ValueError(
            f"unknown uncertainty method {name!r}; registered: {sorted(METHODS)}."
        ) from None


def methods_for(model: str, *, informative: bool | None = None) -> tuple[str, ...]:
    """Names of the methods for ``model`` (``"potential"`` or ``"ensemble"``), optionally only
    the (non-)informative ones."""
    return tuple(
        m.name
        for m in METHODS.values()
        if m.model == model and (informative is None or m.informative == informative)
    )
