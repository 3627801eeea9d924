"""Summary and plot of an on-the-fly run, from its state file and event log.

:func:`summarize_run` gathers oracle calls, wall time per activity, MD restarts, the test-set
errors before and after, and the true errors sampled along the trajectory; :func:`plot_trace`
draws the uncertainty trace with its threshold and the oracle calls above the true error of the
sampled frames; :func:`markdown_table` puts several runs side by side.
"""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path

import numpy as np

from nequip_jax.otf.state import load_state, read_events
from nequip_jax.uncertainty.metrics import spearman
from nequip_jax.uncertainty.registry import get_method

__all__ = ["summarize_run", "plot_trace", "markdown_table"]


def summarize_run(workdir: str | Path) -> dict:
    """The summary of a run folder (finished or not).

    Returns:
        a JSON-serialisable dict: ``trigger``, ``done``, ``steps``, ``n_oracle_calls``,
        ``n_diagnostic_calls``, ``n_resets``, ``n_train``, ``oracle_steps``, ``timers`` (wall
        seconds per activity), ``errors`` (``{"initial"|"final": {split: {...}}}``),
        ``stand_ins``, ``trajectory_error`` (true errors of the sampled frames: mean of their
        force RMSE and of their max ε, eV/Å), ``spearman_score_vs_max_eps`` (over sampled and
        labelled frames; ``None`` without an uncertainty), ``retrain_compiles``.
    """
    workdir = Path(workdir)
    state = load_state(workdir / "state.json")
    events = read_events(workdir / "events.jsonl")
    start = next(e for e in events if e["event"] == "start")
    errors, stand_ins = {}, {}
    for e in events:
        if e["event"] == "evaluation":
            errors[e["stage"]] = e["errors"]
            stand_ins.update(e["stand_ins"])
    samples = [e for e in events if e["event"] == "error_sample"]
    calls = [e for e in events if e["event"] == "oracle"]
    retrains = [e for e in events if e["event"] == "retrain"]
    scored = [e for e in samples + calls if e["score"] is not None]
    rho = None
    if len(scored) >= 3:
        rho = spearman(
            np.array([e["score"] for e in scored]), np.array([e["eps_max"] for e in scored])
        )
    return {
        "trigger": start["config"]["trigger"],
        "done": bool(state.done),
        "steps": state.step,
        "n_steps": start["config"]["n_steps"],
        "n_oracle_calls": state.n_oracle_calls,
        "n_diagnostic_calls": state.n_diagnostic_calls,
        "n_resets": state.n_resets,
        "n_train": start["n_train"] + state.n_oracle_calls,
        "n_initial": start["n_train"],
        "oracle_steps": [e["step"] for e in calls],
        "threshold_initial": start["threshold"],
        "threshold_final": state.threshold,
        "timers": dict(state.timers),
        "errors": errors,
        "stand_ins": stand_ins,
        "trajectory_error": {
            "n_samples": len(samples),
            "mean_forces_rmse": _mean([e["eps_rms"] for e in samples]),
            "mean_max_eps": _mean([e["eps_max"] for e in samples]),
        },
        "labelled_error": {
            "mean_forces_rmse": _mean([e["eps_rms"] for e in calls]),
            "mean_max_eps": _mean([e["eps_max"] for e in calls]),
        },
        "spearman_score_vs_max_eps": rho,
        "retrain_compiles": retrains[-1]["compiles"] if retrains else 0,
        "oracle": start["oracle"],
    }


def _mean(values: Sequence[float]) -> float | None:
    return float(np.mean(values)) if len(values) else None


def plot_trace(workdir: str | Path, path: str | Path, *, title: str | None = None) -> Path:
    """Uncertainty along the trajectory (with threshold and oracle calls) above the true error
    of the sampled and labelled frames; saved to ``path`` (PNG). Needs matplotlib."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    workdir = Path(workdir)
    events = read_events(workdir / "events.jsonl")
    start = next(e for e in events if e["event"] == "start")
    dt = float(start["config"]["timestep_fs"])
    trace = [e for e in events if e["event"] == "trace"]
    samples = [e for e in events if e["event"] == "error_sample"]
    calls = [e for e in events if e["event"] == "oracle"]
    resets = [e for e in events if e["event"] == "reset"]
    fig, (top, bottom) = plt.subplots(2, 1, figsize=(8, 6), sharex=True)
    steps = np.array([e["step"] for e in trace], dtype=float)
    scores = np.array([np.nan if e["score"] is None else e["score"] for e in trace])
    if np.any(np.isfinite(scores)):
        top.plot(steps * dt, scores, lw=0.6, color="C0", label="max per-atom uncertainty")
        thresholds = [np.nan if e["threshold"] is None else e["threshold"] for e in trace]
        top.plot(steps * dt, thresholds, lw=1.0, color="k", ls="--", label="threshold")
    for i, e in enumerate(calls):
        for ax in (top, bottom):
            ax.axvline(
                e["step"] * dt,
                color="C3",
                lw=0.5,
                alpha=0.6,
                label="oracle call" if (i == 0 and ax is top) else None,
            )
    for i, e in enumerate(resets):
        top.axvline(
            e["step"] * dt, color="C7", lw=1.0, ls=":", label="MD restart" if i == 0 else None
        )
    method = get_method(start["config"]["trigger"])
    unit = f"{method.label} ({method.unit})"
    top.set_ylabel(f"uncertainty, {unit}" if np.any(np.isfinite(scores)) else "(no uncertainty)")
    top.legend(loc="upper right", fontsize=8)
    for group, marker, name in ((samples, "o", "sampled frame"), (calls, "x", "labelled frame")):
        if group:
            t = np.array([e["step"] for e in group]) * dt
            bottom.scatter(
                t,
                [1000 * e["eps_max"] for e in group],
                marker=marker,
                color="C1",
                label=f"max ε, {name}",
            )
            bottom.scatter(
                t,
                [1000 * e["eps_rms"] for e in group],
                marker=marker,
                color="C2",
                label=f"force RMSE, {name}",
            )
    bottom.set_yscale("log")
    bottom.set_ylabel("true error (meV/Å)")
    bottom.set_xlabel("time (fs)")
    if samples or calls:
        bottom.legend(loc="upper right", fontsize=8)
    fig.suptitle(title or f"on-the-fly run, trigger: {start['config']['trigger']}")
    fig.tight_layout()
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(path, dpi=120)
    plt.close(fig)
    return path


def markdown_table(summaries: dict[str, dict], splits: Sequence[str]) -> str:
    """Runs side by side: oracle calls, restarts, wall time, final force RMSE per split."""
    head = ["run", "oracle calls", "MD restarts", "wall (min)", "MD / oracle / train (s)"]
    head += [f"F RMSE {s} (meV/Å)" for s in splits]
    lines = ["| " + " | ".join(head) + " |", "|" + "---|" * len(head)]
    for name, s in summaries.items():
        t = s["timers"]
        row = [
            name,
            str(s["n_oracle_calls"]),
            str(s["n_resets"]),
            f"{t['total'] / 60:.1f}",
            f"{t['md']:.0f} / {t['oracle']:.0f} / {t['train'] + t['head']:.0f}",
        ]
        final = s["errors"].get("final", {})
        for split in splits:
            e = final.get(split)
            row.append("–" if e is None else f"{1000 * e['forces_rmse']:.1f}")
        lines.append("| " + " | ".join(row) + " |")
    return "\n".join(lines)
