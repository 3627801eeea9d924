"""Pure helpers of the cost experiment: epoch times from a training log, timing summaries."""

from __future__ import annotations

import json
from collections.abc import Sequence
from pathlib import Path

import numpy as np

__all__ = ["epoch_times", "split_compile", "ratio"]


def epoch_times(metrics_path: str | Path) -> np.ndarray:
    """[n_epochs] wall time (s) of every epoch in a ``metrics.jsonl`` training log.

    Members of a vmapped group share an epoch: each epoch is counted once.
    """
    seen: dict[int, float] = {}
    for line in Path(metrics_path).read_text().splitlines():
        if line.strip():
            record = json.loads(line)
            seen.setdefault(int(record["epoch"]), float(record["time_s"]))
    return np.array([seen[e] for e in sorted(seen)])


def split_compile(times: Sequence[float]) -> tuple[float, float]:
    """``(first, steady)``: the first epoch (which includes compilation) and the median of the
    later epochs (NaN with a single epoch)."""
    t = np.asarray(times, np.float64)
    if t.size == 0:
        raise ValueError("no epochs were timed; train for at least one epoch.")
    steady = float(np.median(t[1:])) if t.size > 1 else float("nan")
    return float(t[0]), steady


def ratio(numerator: Sequence[float], denominator: Sequence[float]) -> list[float]:
    """Per-seed ratios ``numerator[i] / denominator[i]``."""
    a, b = np.asarray(numerator, np.float64), np.asarray(denominator, np.float64)
    if a.shape != b.shape:
        raise ValueError(f"paired lists differ in length: {a.shape} vs {b.shape}.")
    return (a / b).tolist()
