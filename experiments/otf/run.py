"""The on-the-fly comparison: the same 600 K Langevin run of 3BPA triggered by every registered
uncertainty method (:mod:`nequip_jax.uncertainty.registry`), for example:

1. ``gmm`` — one model, trigger on the max per-atom GMM NLL (Zhu et al. 2023, Eq. (8));
2. ``ensemble`` — ``n_members`` models, trigger on the max per-atom σ (Eq. (4));
3. ``llpr`` — one model, trigger on the max per-atom LLPR σ of the same features;
4. ``random`` (no information) — one model, labels at uniformly drawn steps, as many as the GMM
   run used.

All runs start from the same ``n_initial`` structures of train_300K (labelled with GFN2-xTB)
and share the labelled test sets (cached in ``<workdir>/cache``). Every run is resumable: run
the same command again to continue. Writes ``<workdir>/results.json``, ``results.md`` (a
markdown section), ``trace_<run>.png`` (uncertainty and true error along each trajectory) and
``errors.png`` (final test errors).

``results.json`` also holds ``networks`` — the initial network(s) of every run, trained from
scratch (the random run reuses the GMM run's initial model: same ``piece``); after that each
oracle call fine-tunes them for ``retrain_epochs`` epochs, which is not a separate network — and
the ``provenance`` of this call (its wall time; the labelled structure files of the cache).
"""

from __future__ import annotations

import os
import threading
import time
from collections.abc import Sequence
from pathlib import Path

from experiments.common.networks import networks_from_runs
from experiments.common.provenance import begin_run, provenance
from experiments.otf.plots import error_bars
from nequip_jax._io import atomic_write_json, atomic_write_text
from nequip_jax.otf import OTFConfig, markdown_table, plot_trace, run_otf
from nequip_jax.otf.session import initial_model_folder
from nequip_jax.uncertainty.registry import METHODS

__all__ = ["RUNS", "run", "LoadSampler"]

#: One run per registered method: the informative triggers first, then the baselines (which
#: take their label budget from the GMM run).
RUNS = tuple(sorted(METHODS, key=lambda m: not METHODS[m].informative))


class LoadSampler:
    """Samples the 1-minute load average every ``every`` seconds in a daemon thread (the
    machine is shared; timings mean little without it)."""

    def __init__(self, every: float = 30.0):
        self.samples: list[float] = [os.getloadavg()[0]]
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._loop, args=(every,), daemon=True)
        self._thread.start()

    def _loop(self, every: float) -> None:
        while not self._stop.wait(every):
            self.samples.append(os.getloadavg()[0])

    def stop(self) -> dict:
        self._stop.set()
        self.samples.append(os.getloadavg()[0])
        return {
            "mean_load_1min": sum(self.samples) / len(self.samples),
            "max_load_1min": max(self.samples),
            "n_samples": len(self.samples),
            "cpus": os.cpu_count(),
        }


def run(
    config: OTFConfig,
    workdir: str | Path,
    *,
    seeds: Sequence[int] | None = None,
    preset: str | None = None,
    runs: tuple[str, ...] | list[str] = RUNS,
    verbose: bool = True,
) -> dict:
    """Run (or resume) the comparison of ``config`` (its ``trigger`` is replaced by each run's);
    returns the results dictionary.

    Args:
        config: the on-the-fly settings (:func:`nequip_jax.otf.load_otf_config`).
        workdir: output folder (every run resumes from it).
        seeds: one seed replacing ``config.seed`` (``None``: the config's); the comparison is
            one trajectory per method, so one seed per workdir.
        preset: the preset's name, for the provenance.
        runs: the methods to run (the baselines need the GMM run).
        verbose: progress on the terminal.

    Raises:
        ValueError: more than one seed, or a baseline without the GMM run.
    """
    if seeds is not None:
        if len(seeds) != 1:
            raise ValueError(
                f"seeds={list(seeds)}: one on-the-fly comparison per seed; run each seed with "
                "its own workdir."
            )
        config = config.replace(seed=int(seeds[0]))
    begun = begin_run()
    workdir = Path(workdir)
    base = config
    cache = workdir / "cache"
    summaries: dict[str, dict] = {}
    loads: dict[str, dict] = {}
    used: dict[str, OTFConfig] = {}
    order = [r for r in RUNS if r in runs]
    for name in order:
        if not METHODS[name].informative:
            if "gmm" not in summaries:
                raise ValueError(f"the {name} baseline needs the GMM run (its number of calls).")
            config = base.replace(trigger=name, random_calls=summaries["gmm"]["n_oracle_calls"])
        else:
            config = base.replace(trigger=name)
        used[name] = config
        sampler = LoadSampler()
        t0 = time.perf_counter()
        summaries[name] = run_otf(config, workdir / name, cache_dir=cache, verbose=verbose)
        loads[name] = {**sampler.stop(), "wall_s_this_call": time.perf_counter() - t0}
        plot_trace(
            workdir / name,
            workdir / f"trace_{name}.png",
            title=f"3BPA at {config.temperature_K:.0f} K, trigger: {name}",
        )
    splits = list(base.test_splits)
    results = {
        "preset": preset,
        "config": base.to_dict(),
        "runs": summaries,
        "machine_load": loads,
        "networks": [n for name in order for n in initial_networks(used[name], cache, name)],
        "provenance": provenance(
            begun,
            preset=preset,
            seeds=[base.seed],
            data_source="xtb" if base.labels == "oracle" else "files",
            data_files={p.stem: p for p in sorted(cache.glob("*.xyz"))},
        ),
    }
    atomic_write_json(workdir / "results.json", results)
    error_bars(summaries, splits, workdir / "errors.png")
    atomic_write_text(workdir / "results.md", section(results, splits))
    if verbose:
        print(markdown_table(summaries, splits))
    return results


def initial_networks(config: OTFConfig, cache_dir: Path, stage: str) -> list[dict]:
    """``networks`` entries of the initial model(s) of one run, from their training summaries
    (no validation set: ``best_val_forces_rmse`` is the training force RMSE)."""
    folder = initial_model_folder(config, cache_dir)
    ensemble = config.ensemble
    runs = sorted(p.parent for p in folder.glob("group*/summary.json")) if ensemble else [folder]
    members = list(range(config.n_members)) if ensemble else [0]
    name = "initial ensemble" if ensemble else "initial model"
    return networks_from_runs(name, runs, members, seed=config.seed, stage=stage, piece=folder.name)


def section(results: dict, splits: list[str]) -> str:
    """The markdown section for ``experiments/README.md``."""
    runs = results["runs"]
    c = results["config"]
    lines = [
        "## On-the-fly active learning at 600 K",
        "",
        f"Preset `{results['preset']}`: {c['n_initial']} initial train_300K structures, Langevin "
        f"MD at {c['temperature_K']:.0f} K ({c['n_steps']} steps of {c['timestep_fs']} fs, "
        f"friction {c['friction_per_fs']}/fs), GFN2-xTB oracle (tblite), threshold = "
        f"percentile {c['threshold_percentile']} of the training-set max-atom uncertainty, "
        f"{c['retrain_epochs']} warm-start epochs per oracle call. Test errors on "
        f"3BPA@xTB frames ({c['n_test']} per split).",
        "",
        markdown_table(runs, splits),
        "",
        "| run | initial → final F RMSE per split (meV/Å) | true error along the trajectory "
        "(mean force RMSE of sampled frames, meV/Å) | Spearman(score, max ε) | mean load |",
        "|---|---|---|---|---|",
    ]
    for name, s in runs.items():
        init, final = s["errors"].get("initial", {}), s["errors"].get("final", {})
        change = ", ".join(
            f"{sp}: {1000 * init[sp]['forces_rmse']:.0f} → {1000 * final[sp]['forces_rmse']:.0f}"
            for sp in splits
            if sp in init and sp in final
        )
        traj = s["trajectory_error"]["mean_forces_rmse"]
        rho = s["spearman_score_vs_max_eps"]
        load = results["machine_load"].get(name, {}).get("mean_load_1min")
        lines.append(
            f"| {name} | {change} | {'–' if traj is None else f'{1000 * traj:.0f}'} | "
            f"{'–' if rho is None else f'{rho:.2f}'} | "
            f"{'–' if load is None else f'{load:.1f}'} |"
        )
    notes = {k: v for s in runs.values() for k, v in s.get("stand_ins", {}).items()}
    for split, note in notes.items():
        lines += ["", f"Note on {split}: {note}"]
    return "\n".join(lines) + "\n"
