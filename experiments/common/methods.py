"""The experiment methods: the paper's three and every informative single-model method of
:mod:`nequip_jax.uncertainty.registry`, their uncertainty method, labels and display units.
"""

from __future__ import annotations

from nequip_jax.uncertainty.registry import get_method, methods_for

__all__ = [
    "SINGLE_METHODS",
    "PAPER_METHODS",
    "METHODS",
    "UNCERTAINTY",
    "LABELS",
    "KEY_TAGS",
    "display_unit",
    "axis_label",
]


#: The three methods of the paper, in the order of its figures.
PAPER_METHODS = ("gmm", "traditional", "diverse")


#: The informative single-model methods of the registry.
SINGLE_METHODS = methods_for("potential", informative=True)


#: Every method: the single model with each informative head of the registry, then the two
#: ensembles.
METHODS = (*SINGLE_METHODS, "traditional", "diverse")


#: The registered uncertainty method of each experiment method.
UNCERTAINTY = {**{m: m for m in SINGLE_METHODS}, "traditional": "ensemble", "diverse": "ensemble"}


#: Display names.
LABELS = {
    **{m: get_method(m).label for m in SINGLE_METHODS},
    "traditional": "traditional ensemble",
    "diverse": "diverse ensemble",
}


#: Constants folded into ``jax.random.key(seed)`` for the draws made by the experiments.
KEY_TAGS = {"head": 7, "random_selection": 11}


def display_unit(method: str) -> tuple[str, float]:
    """Unit and scale factor in which a method's per-atom uncertainty is shown (eV/Å as
    meV/Å)."""
    unit = get_method(UNCERTAINTY[method]).unit
    return ("meV/Å", 1000.0) if unit == "eV/Å" else (unit, 1.0)


def axis_label(method: str) -> str:
    """Axis label of a method's per-atom uncertainty (in its own unit, e.g. ``GMM (nats)``)."""
    m = get_method(UNCERTAINTY[method])
    return f"{m.label} ({m.unit})"
