"""Figures of the calibration experiment."""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path

import numpy as np

from experiments.common.plots import save_figure

__all__ = ["calibration_figure", "coverage_figure"]


def _label(row: dict) -> str:
    return f"{row['method']} ({row['calibrator']})"


def calibration_figure(rows: Sequence[dict], splits: Sequence[str], path: str | Path) -> Path:
    """Observed vs expected coverage of the Gaussian error model, one panel per test set."""
    import matplotlib.pyplot as plt

    fig, axes = plt.subplots(1, len(splits), figsize=(4 * len(splits), 4), squeeze=False)
    for ax, split in zip(axes[0], splits):
        ax.plot([0, 1], [0, 1], color="k", lw=0.8, ls="--")
        for row in rows:
            if row["calibrator"] not in ("isotonic", "direct", "constant"):
                continue
            curve = row["splits"][split]["curve"]
            area = row["splits"][split]["miscalibration_area"]
            ax.plot(
                curve["expected"], curve["observed"], lw=1.2, label=f"{_label(row)}: {area:.3f}"
            )
        ax.set_title(split)
        ax.set_xlabel("expected coverage")
        ax.set_ylabel("observed coverage")
        ax.legend(fontsize=7, title="miscalibration area", title_fontsize=7)
    return save_figure(fig, path)


def coverage_figure(
    rows: Sequence[dict], splits: Sequence[str], alpha: float, path: str | Path
) -> Path:
    """Coverage of the conformal bounds per method/calibrator and test set."""
    import matplotlib.pyplot as plt

    fig, ax = plt.subplots(figsize=(max(6, 1.2 * len(rows)), 4))
    width = 0.8 / len(splits)
    x = np.arange(len(rows))
    for i, split in enumerate(splits):
        values = [100 * row["splits"][split]["coverage"] for row in rows]
        ax.bar(x + (i - (len(splits) - 1) / 2) * width, values, width, label=split)
    ax.axhline(100 * (1 - alpha), color="k", ls="--", lw=0.8, label=f"target {1 - alpha:.0%}")
    ax.set_xticks(x, [_label(r) for r in rows], rotation=45, ha="right", fontsize=8)
    ax.set_ylabel("coverage (%)")
    ax.set_ylim(0, 105)
    ax.legend(fontsize=8)
    return save_figure(fig, path)
