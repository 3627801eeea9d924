"""Pure helpers of the cost experiment: epoch times from a training log, timing summaries and
the paper's cost claim checked per seed."""

from __future__ import annotations

import json
from collections.abc import Mapping, Sequence
from pathlib import Path

import numpy as np

from experiments.common.stats import format_mean_sd

__all__ = ["epoch_times", "split_compile", "ratio", "claims", "convergence_epochs"]


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


def convergence_epochs(networks: Sequence[Mapping], n_members: int) -> list[dict]:
    """Epochs to convergence of a single model and of a vmapped ensemble, per seed, from the
    network records of converged traditional ensembles (``networks`` of an experiment's
    ``results.json``: ``seed``, ``piece``, ``member``, ``epochs``, ``stop_reason``).

    Member 0 of a vmapped traditional group trains exactly as one model alone would (its own
    batch order, schedule and stopping), so its epochs are the single model's. The group runs
    until its last member stops, so the ensemble's epochs are the largest of its first
    ``n_members`` members'.

    Returns:
        one row per (seed, traditional piece), sorted by seed: ``seed``, ``single_epochs``,
        ``ensemble_epochs``, ``stop_reasons`` (the distinct ones of those members).

    Raises:
        ValueError: no traditional piece, or a piece with fewer than ``n_members`` members.
    """
    pieces: dict[tuple[int, str], dict[int, Mapping]] = {}
    for record in networks:
        if str(record.get("piece", "")).startswith("traditional"):
            pieces.setdefault((int(record["seed"]), record["piece"]), {})[int(record["member"])] = (
                record
            )
    if not pieces:
        raise ValueError(
            "the network records hold no traditional ensemble (no record whose piece starts "
            "with 'traditional'); point the cost at the results of an experiment that trains "
            "one, e.g. Fig. 2."
        )
    rows = []
    for (seed, piece), members in sorted(pieces.items()):
        if not set(range(n_members)) <= set(members):
            raise ValueError(
                f"piece {piece} of seed {seed} has members {sorted(members)}, fewer than the "
                f"{n_members} the cost's ensemble has; use results of an ensemble of that size."
            )
        chosen = [members[m] for m in range(n_members)]
        rows.append(
            {
                "seed": seed,
                "single_epochs": int(members[0]["epochs"]),
                "ensemble_epochs": max(int(r["epochs"]) for r in chosen),
                "stop_reasons": sorted({str(r["stop_reason"]) for r in chosen}),
            }
        )
    return rows


def claims(results: Mapping) -> list[dict]:
    """The paper's cost claim ("order-of-magnitude reduced computational cost" of a single model
    + GMM against a 10-member ensemble), checked per seed on a cost ``results.json``.

    - inference: the ``n_infer_members``-member ensemble σ costs at least 0.8 × its member count
      times the single model + GMM NLL (≥ 8 for 10 members: "about a tenth");
    - training: one vmapped J-member epoch costs at least J / 2 single-model epochs (an
      ensemble's training cost grows with its members; vmap does not make it free).

    Returns:
        rows with ``claim``, ``measured`` (text, mean ± sd over seeds), ``seeds_supporting`` and
        ``n_seeds``.
    """
    config, summary = results["config"], results["summary"]
    per_seed = list(results["per_seed"].values())
    n_inf = int(config["n_infer_members"])
    j = int(config["methods"]["n_traditional"])
    k_max = config["methods"]["max_components"]
    inference = [float(x) for x in summary["inference_ensemble_vs_gmm"]]
    overhead = summary["inference_gmm_overhead"]
    epoch_ratio = [float(x) for x in summary["train_epoch_ratio"]]

    def col(*path):
        out = []
        for v in per_seed:
            for key in path:
                v = v[key]
            out.append(v)
        return out

    def row(claim, measured, flags):
        return {
            "claim": claim,
            "measured": measured,
            "seeds_supporting": int(sum(flags)),
            "n_seeds": len(flags),
        }

    need = 0.8 * n_inf
    return [
        row(
            f"a single model + GMM costs about a tenth of a {n_inf}-member ensemble: inference "
            f"(ensemble / single + GMM ≥ {need:g} per seed)",
            f"{n_inf}-member ensemble σ / (single + GMM NLL) = {format_mean_sd(inference, 1, 1)} "
            f"({format_mean_sd(col('inference', 'single_gmm_ms'), 1, 2)} vs "
            f"{format_mean_sd(col('inference', 'ensemble_ms'), 1, 1)} ms/structure end to end); "
            f"single + GMM NLL / forces only = {format_mean_sd(overhead, 1, 2)}",
            [r >= need for r in inference],
        ),
        row(
            f"… training: an ensemble's training cost grows with its members (one vmapped "
            f"{j}-member epoch ≥ {j / 2:g} single-model epochs per seed)",
            f"one vmapped {j}-member epoch = {format_mean_sd(epoch_ratio, 1, 2)} single-model "
            f"epochs ({format_mean_sd([r / j for r in epoch_ratio], 1, 2)} per member); GMM fit "
            f"(BIC over K ≤ {k_max}) {format_mean_sd(col('gmm_fit_s'), 1, 1)} s vs "
            f"{format_mean_sd(col('train_single', 'epoch_s'), 1, 1)} s per single-model epoch",
            [r / j >= 0.5 for r in epoch_ratio],
        ),
        *_convergence_claim(results.get("convergence"), j),
    ]


def _convergence_claim(convergence: Mapping | None, j: int) -> list[dict]:
    """The training claim to convergence (ensemble ≥ J / 2 single-model trainings per seed of
    the converged networks); none without converged networks."""
    if convergence is None:
        return []
    ratios = [float(r) for r in convergence["ratio"]]
    return [
        {
            "claim": f"… training to convergence: a vmapped {j}-member ensemble costs ≥ {j / 2:g} "
            "single-model trainings per seed",
            "measured": f"{format_mean_sd(ratios, 1, 2)} single-model trainings (epochs of the "
            f"converged networks of {convergence['source']}, "
            f"{convergence.get('source_data') or 'unknown'} data, × the epoch times measured "
            "here)",
            "seeds_supporting": int(sum(r >= j / 2 for r in ratios)),
            "n_seeds": len(ratios),
            "from_converged_networks": True,
        }
    ]
