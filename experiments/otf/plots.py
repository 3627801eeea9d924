"""Figures of the on-the-fly comparison."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from pathlib import Path

import numpy as np

from experiments.common.plots import save_figure

__all__ = ["error_bars"]


def error_bars(summaries: Mapping[str, dict], splits: Sequence[str], path: str | Path) -> Path:
    """Grouped bars: force RMSE (meV/Å) per test split, initial model and each run's final."""
    import matplotlib.pyplot as plt

    rows: dict[str, list[float]] = {}
    first = next(iter(summaries.values()))
    initial = first["errors"].get("initial", {})
    rows["initial (single model)"] = [1000 * initial[s]["forces_rmse"] for s in splits]
    for name, s in summaries.items():
        final = s["errors"].get("final", {})
        if all(sp in final for sp in splits):
            calls = s["n_oracle_calls"]
            rows[f"{name} ({calls} calls)"] = [1000 * final[sp]["forces_rmse"] for sp in splits]
    fig, ax = plt.subplots(figsize=(7, 4))
    width = 0.8 / len(rows)
    x = np.arange(len(splits))
    for i, (label, values) in enumerate(rows.items()):
        ax.bar(x + (i - (len(rows) - 1) / 2) * width, values, width, label=label)
    ax.set_xticks(x, list(splits))
    ax.set_ylabel("force RMSE on 3BPA@xTB (meV/Å)")
    ax.legend(fontsize=8)
    return save_figure(fig, path)
