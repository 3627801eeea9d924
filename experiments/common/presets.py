"""The training presets the experiments share: the CPU and tiny method settings, the training
setting of a figure (:class:`Combo`) and the β-scan split names.

An experiment's own configuration dataclass and its ``PRESETS`` (``paper``, ``cpu``, ``tiny``)
live in its ``run.py`` and are built from these.
"""

from __future__ import annotations

import dataclasses

from experiments.common.config import MethodsConfig

__all__ = ["Combo", "CPU_VARIANTS", "CPU_METHODS", "TINY_METHODS", "scan_split"]


@dataclasses.dataclass(frozen=True)
class Combo:
    """One training setting of the paper: data setting, training-draw size, feature width f."""

    setting: str = "300K"
    n_train: int = 100
    num_features: int = 32

    @property
    def name(self) -> str:
        return f"{self.setting}_n{self.n_train}_f{self.num_features}"


#: Cheap diverse variants for the CPU presets (the paper's are in its SI Table 1, unavailable):
#: fewer layers and a shorter cutoff — "simpler models on average", as the paper's.
CPU_VARIANTS = (
    {"model": {"num_layers": 2}},
    {"model": {"r_max": 3.5}},
)

#: CPU training: the ``cpu`` preset's schedule (every network trains until ReduceLROnPlateau
#: takes its learning rate below the floor; how each stopped is recorded).
CPU_METHODS = MethodsConfig(
    base="cpu",
    model={"feature_dim": None},
    n_traditional=4,
    n_diverse_traditional=2,
    diverse_variants=CPU_VARIANTS,
    max_components=20,
)

#: Seconds per network: the end-to-end tests' configuration (also used by Figs. 3–5 and the cost
#: table).
TINY_METHODS = MethodsConfig(
    base="cpu",
    model={
        "feature_dim": None,
        "num_layers": 2,
        "num_basis": 4,
        "radial_mlp_depth": 1,
        "radial_mlp_width": 8,
    },
    optim={"max_epochs": 2, "batch_size": 2, "eval_batch_size": 8},
    n_traditional=2,
    n_diverse_traditional=1,
    diverse_variants=({"model": {"num_layers": 1}},),
    max_components=3,
    gmm_max_iter=20,
)


def scan_split(beta: int) -> str:
    """Registry name of the dihedral scan at ``beta`` degrees (``"dih_beta120"``)."""
    return f"dih_beta{beta}"
