"""A/B of the ``cpu`` preset's model: this library's defaults against nequip ≤ 0.5's choices.

``silu``: SiLU/tanh gates and a SiLU radial MLP, the neighbour sum divided by the square root
of the training set's mean neighbour count, fixed Bessel frequencies, trainable per-species
scale and shift. ``paper_era``: the version of Zhu et al. (2023) — shifted softplus / tanh / abs
gates and a shifted-softplus radial MLP, no neighbour normalisation, trainable Bessel
frequencies, fixed scale and shift. Both with the authors' loss, trained on D_train,100^300
(DFT) until the learning rate reaches its floor; test energy and force RMSE at 300/600/1200 K.
The variant with the lower mean force RMSE over the three test sets is reported as preferred.
"""

from __future__ import annotations

from collections.abc import Sequence

from experiments.common.presets import load_presets
from experiments.common.single_runs import Study, study_runner

__all__ = ["PRESETS", "run", "preferred"]

PRESETS: dict[str, Study] = load_presets("cpu_defaults", Study)

TITLE = "A/B of the cpu model's defaults (DFT D_train,100^300, converged single networks)"


def preferred(rows: Sequence[dict]) -> str:
    """The variant with the lowest force RMSE averaged over the test splits (mean over seeds)."""

    def score(row):
        return sum(t["forces_rmse"]["mean"] for t in row["test"].values()) / len(row["test"])

    return min(rows, key=score)["variant"]


def _conclude(rows: Sequence[dict]) -> dict:
    choice = preferred(rows)
    return {
        "preferred": choice,
        "text": f"Lower force RMSE averaged over the test sets (mean over seeds): `{choice}`.",
    }


run = study_runner(TITLE, conclude=_conclude)
