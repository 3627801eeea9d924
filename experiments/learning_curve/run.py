"""Learning curve of the ``cpu`` model: converged single networks trained on N structures of
train_300K (DFT; N includes the 10 % validation share), test energy and force RMSE at
300/600/1200 K, next to the published NequIP trained on 500 structures (Batzner et al. 2022,
3BPA: 5 layers, l ≤ 3 — a much larger model)."""

from __future__ import annotations

from experiments.common.presets import load_presets
from experiments.common.single_runs import Study, study_runner

__all__ = ["PRESETS", "PUBLISHED", "run"]

#: NequIP on 3BPA trained on 500 structures at 300 K (Batzner et al. 2022): energy RMSE
#: (meV per molecule) and force RMSE (meV/Å) per test set.
PUBLISHED = {
    "test_300K": (3.3, 10.8),
    "test_600K": (11.2, 26.4),
    "test_1200K": (38.5, 76.2),
}

PRESETS: dict[str, Study] = load_presets("learning_curve", Study)

TITLE = "Learning curve of the cpu model (DFT train_300K, converged single networks)"


def _reference() -> str:
    lines = [
        "Published NequIP trained on 500 structures (5 layers, l ≤ 3; energy per molecule "
        "÷ 27 atoms):",
        "",
        "| test set | E RMSE (meV/atom) | F RMSE (meV/Å) |",
        "|---|---|---|",
    ]
    for split, (energy, forces) in PUBLISHED.items():
        lines.append(f"| {split} | {energy / 27:.2f} | {forces:.1f} |")
    return "\n".join(lines) + "\n"


run = study_runner(TITLE, reference=_reference())
