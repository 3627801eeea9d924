"""Cost of the uncertainty methods: wall time of training and of inference (Zhu et al. 2023).

The paper's claim: a single model + GMM gives uncertainties "at order-of-magnitude reduced
computational cost" compared to a 10-member ensemble, in training and in inference. Measured here,
per seed, in one process:

- training: a fixed number of epochs of one model and of a J-member ensemble (one vmapped group),
  from the training log; the first epoch (with compilation) is reported separately;
- the GMM fit (BIC sweep) on the single model's training features;
- inference with uncertainty: ``Potential.predict`` without and with the GMM, and
  ``Ensemble.predict`` of a ``n_infer_members`` ensemble (built by repeating the trained members:
  the cost does not depend on the weights), ms per structure, after a warm-up call, median over
  interleaved rounds (the machine is shared, interleaving spreads the noise evenly).

Nothing is extrapolated: every number is a measurement of the stated sizes. With ``converged``
set, the training cost to convergence is added: the epochs that converged traditional ensembles
of another experiment (Fig. 2's) ran until every member stopped, times the steady-state epoch
times measured here (:func:`experiments.cost.analysis.convergence_epochs`).
"""

from __future__ import annotations

import dataclasses
import json
import time
import warnings
from collections.abc import Sequence
from pathlib import Path

import jax
import numpy as np

from experiments.common.cli import hardware_note, subsample
from experiments.common.config import MethodsConfig, config_dict, run_config
from experiments.common.methods import KEY_TAGS
from experiments.common.networks import networks_from_runs
from experiments.common.presets import load_presets
from experiments.common.provenance import begin_run, file_sha256, provenance
from experiments.common.sources import REPO_ROOT, check_source
from experiments.common.stats import format_mean_sd, mean_sd
from experiments.cost.analysis import (
    claims,
    convergence_epochs,
    epoch_times,
    ratio,
    split_compile,
)
from nequip_jax._io import atomic_write_json, atomic_write_text
from nequip_jax.data import StandInWarning, load_3bpa, paper_split
from nequip_jax.model import Potential
from nequip_jax.model.ensemble import Ensemble, EnsembleGroup
from nequip_jax.training.loop import member_keys, train_group
from nequip_jax.uncertainty.gmm_head import fit_gmm_uncertainty

__all__ = ["CostConfig", "PRESETS", "run"]


@dataclasses.dataclass(frozen=True)
class CostConfig:
    """Settings of the cost measurement.

    Attributes:
        methods: model and optimiser settings (``n_traditional`` = J trained together).
        num_features: f.
        n_train: training draw (validation included).
        epochs: timed epochs after the first (compilation) epoch.
        n_infer_members: members of the ensemble timed at inference (10 in the paper).
        infer_frames: test structures per inference call.
        rounds: interleaved timing rounds (median reported).
        seeds: default seeds (repeats of the whole measurement).
        data: default data source.
        converged: ``results.json`` of an experiment whose traditional ensembles of this model
            size, training-set size and member count were trained to convergence (relative to
            the repository root, or absolute); ``None``: no training-to-convergence rows.
    """

    methods: MethodsConfig
    num_features: int = 32
    n_train: int = 100
    epochs: int = 5
    n_infer_members: int = 10
    infer_frames: int = 64
    rounds: int = 5
    seeds: tuple[int, ...] = (0, 1, 2)
    data: str = "dft"
    converged: str | None = None


PRESETS: dict[str, CostConfig] = load_presets("cost", CostConfig)


def _log(message: str) -> None:
    print(f"[cost {time.strftime('%H:%M:%S')}] {message}", flush=True)


def _timed_training(configs, members, folder: Path, data) -> tuple[dict, object]:
    start = time.perf_counter()
    result = train_group(configs, members, folder, data=data, verbose=False)
    total = time.perf_counter() - start
    first, steady = split_compile(epoch_times(folder / "metrics.jsonl"))
    return {"total_s": total, "first_epoch_s": first, "epoch_s": steady}, result


def _interleaved(fns: dict, frames, rounds: int) -> dict[str, float]:
    """Median ms per structure of each ``fn(frames)`` (after one warm-up call each)."""
    for fn in fns.values():
        fn(frames)
    times: dict[str, list[float]] = {k: [] for k in fns}
    for _ in range(rounds):
        for name, fn in fns.items():
            start = time.perf_counter()
            fn(frames)
            times[name].append(1000 * (time.perf_counter() - start) / len(frames))
    return {k: float(np.median(v)) for k, v in times.items()}


def _timed_config(config: CostConfig, seed: int):
    """The methods settings and the run configuration of the timed trainings (a fixed number of
    epochs, no time budget)."""
    mc = config.methods.with_model(num_features=config.num_features)
    # A fixed number of epochs: this experiment measures the cost per epoch, not accuracy.
    mc = dataclasses.replace(mc, optim={**mc.optim, "max_epochs": config.epochs + 1})
    return mc, run_config(mc, seed=seed)


def converged_networks(config: CostConfig) -> dict:
    """The converged traditional ensembles of ``config.converged`` of the size timed here: the
    file's identity, the per-seed epochs (:func:`experiments.cost.analysis.convergence_epochs`)
    and the records of the networks they come from.

    Raises:
        FileNotFoundError: no such results file.
        ValueError: its networks are of another model size, training-set size or ensemble.
    """
    path = Path(config.converged)
    path = path if path.is_absolute() else REPO_ROOT / path
    if not path.is_file():
        raise FileNotFoundError(
            f"converged={config.converged!r}: no such results file; run the experiment that "
            "trains those networks first, or set converged to null."
        )
    source = json.loads(path.read_text())
    combos = source.get("config", {}).get("combos", [])
    stage = next(
        (
            f"{c['setting']}_n{c['n_train']}_f{c['num_features']}"
            for c in combos
            if (c["n_train"], c["num_features"]) == (config.n_train, config.num_features)
        ),
        None,
    )
    if stage is None:
        raise ValueError(
            f"{path.name} ({config.converged}) trains no networks with n_train = "
            f"{config.n_train} and f = {config.num_features} (its combos: {combos}); the "
            "convergence cost needs networks of the size timed here."
        )
    records = [n for n in source["networks"] if n.get("stage") == stage]
    j = config.methods.n_traditional
    return {
        "source": str(config.converged),
        "source_sha256": file_sha256(path),
        "source_commit": source.get("provenance", {}).get("commit"),
        "source_data": source.get("provenance", {}).get("data", {}).get("source"),
        "stage": stage,
        "rows": convergence_epochs(records, j),
        "networks": [
            {k: n[k] for k in ("name", "seed", "piece", "member", "epochs", "stop_reason")}
            for n in records
            if str(n.get("piece", "")).startswith("traditional") and int(n["member"]) < j
        ],
    }


def converged_cost(
    config: CostConfig,
    single_epoch_s: float,
    ensemble_epoch_s: float,
    networks: dict | None = None,
) -> dict:
    """The training cost to convergence: :func:`converged_networks` (given, or read now) with
    ``single_s`` / ``ensemble_s`` (their epochs times the measured steady-state epoch times, s)
    and their per-seed ``ratio``."""
    base = networks if networks is not None else converged_networks(config)
    single = [r["single_epochs"] * single_epoch_s for r in base["rows"]]
    ensemble = [r["ensemble_epochs"] * ensemble_epoch_s for r in base["rows"]]
    return {**base, "single_s": single, "ensemble_s": ensemble, "ratio": ratio(ensemble, single)}


def measure(config: CostConfig, seed: int, *, root, workdir: Path) -> dict:
    """One repeat of every measurement (see the module docstring)."""
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", StandInWarning)
        split = paper_split("300K", config.n_train, key=member_keys(seed, 0)[0], root=root)
        frames = subsample(load_3bpa("test_300K", root), config.infer_frames)
    mc, cfg = _timed_config(config, seed)
    data = (split.train, split.val)
    j = mc.n_traditional
    _log(f"seed {seed}: training 1 model for {config.epochs + 1} epochs")
    single_t, single_r = _timed_training([cfg], [0], workdir / f"seed{seed}" / "single", data)
    _log(f"seed {seed}: training {j} vmapped members for {config.epochs + 1} epochs")
    ens_t, ens_r = _timed_training(
        [cfg] * j, list(range(j)), workdir / f"seed{seed}" / "ensemble", data
    )
    potential = Potential(
        config=single_r.prep.model_config,
        params=jax.tree.map(lambda x: np.asarray(x)[0], single_r.params),
        species=single_r.prep.species,
    )
    start = time.perf_counter()
    with_gmm, _ = fit_gmm_uncertainty(
        potential,
        split.train,
        key=jax.random.fold_in(jax.random.key(seed), KEY_TAGS["head"]),
        max_components=mc.max_components,
        max_iter=mc.gmm_max_iter,
    )
    gmm_s = time.perf_counter() - start
    reps = [i % j for i in range(config.n_infer_members)]
    big = EnsembleGroup(
        ens_r.prep.model_config,
        jax.tree.map(lambda x: np.asarray(x)[reps], ens_r.params),
        list(range(config.n_infer_members)),
        ens_r.prep.species,
    )
    ensemble = Ensemble([big], ens_r.prep.species)
    _log(f"seed {seed}: timing inference on {len(frames)} structures")
    infer = _interleaved(
        {
            "single_ms": potential.predict,
            "single_gmm_ms": with_gmm.predict,
            "ensemble_ms": ensemble.predict,
        },
        frames,
        config.rounds,
    )
    return {
        "train_single": single_t,
        "train_ensemble": ens_t,
        "gmm_fit_s": gmm_s,
        "gmm_components": int(np.asarray(with_gmm.head.state.weights).shape[0]),
        "inference": infer,
        "n_train": len(split.train),
    }


def run(
    config: CostConfig,
    workdir: str | Path,
    *,
    seeds: Sequence[int],
    data: str,
    root: Path | None,
    models_dir: str | Path | None = None,
    preset: str | None = None,
    verbose: bool = False,
) -> dict:
    """Every measurement for every seed; writes results.json (with the timed ``networks`` and
    the run's ``provenance``) and section.md."""
    del models_dir, verbose  # timings are never cached; training is silent
    workdir = Path(workdir)
    begun = begin_run()
    start = time.perf_counter()
    sources = check_source(data, root, ["train_300K", "test_300K"])
    # Read (and check) the converged networks before the timings, not after.
    converged = converged_networks(config) if config.converged is not None else None
    per_seed = {seed: measure(config, seed, root=root, workdir=workdir) for seed in seeds}
    vals = list(per_seed.values())
    networks = []
    for seed in seeds:
        folder = workdir / f"seed{seed}"
        networks += networks_from_runs("single model", [folder / "single"], [0], seed=seed)
        networks += networks_from_runs(
            f"{config.methods.n_traditional}-member vmapped ensemble",
            [folder / "ensemble"],
            list(range(config.methods.n_traditional)),
            seed=seed,
        )
    summary = {
        "train_epoch_ratio": ratio(
            [v["train_ensemble"]["epoch_s"] for v in vals],
            [v["train_single"]["epoch_s"] for v in vals],
        ),
        "inference_gmm_overhead": ratio(
            [v["inference"]["single_gmm_ms"] for v in vals],
            [v["inference"]["single_ms"] for v in vals],
        ),
        "inference_ensemble_vs_gmm": ratio(
            [v["inference"]["ensemble_ms"] for v in vals],
            [v["inference"]["single_gmm_ms"] for v in vals],
        ),
    }
    convergence = None
    if converged is not None:
        convergence = converged_cost(
            config,
            float(np.mean([v["train_single"]["epoch_s"] for v in vals])),
            float(np.mean([v["train_ensemble"]["epoch_s"] for v in vals])),
            converged,
        )
    results = {
        "config": config_dict(config),
        "data": data,
        "convergence": convergence,
        "seeds": list(seeds),
        "per_seed": per_seed,
        "summary": summary,
        "networks": networks,
        "hardware": hardware_note(),
        "wall_time_s": time.perf_counter() - start,
        "provenance": provenance(
            begun, preset=preset, seeds=seeds, data_source=data, data_files=sources
        ),
    }
    results["claims"] = claims(results)
    atomic_write_json(workdir / "results.json", results)
    atomic_write_text(workdir / "section.md", report(results, config))
    _log(f"wrote {workdir / 'section.md'} ({results['wall_time_s'] / 60:.1f} min)")
    return results


def _convergence_rows(convergence: dict | None) -> list[str]:
    """The training-to-convergence rows of the cost table (none without ``converged``)."""
    if convergence is None:
        return []
    rows = convergence["rows"]
    seeds = [r["seed"] for r in rows]
    reasons = sorted({reason for r in rows for reason in r["stop_reasons"]})
    return [
        f"| epochs to convergence (the converged networks of `{convergence['source']}`, "
        f"{convergence['stage']}, {convergence.get('source_data') or 'unknown'} data, seeds "
        f"{seeds}; stopped by {', '.join(reasons)}; the "
        "ensemble runs until its last member stops) | "
        f"{format_mean_sd([r['single_epochs'] for r in rows], 1, 0)} | "
        f"{format_mean_sd([r['ensemble_epochs'] for r in rows], 1, 0)} | |",
        "| training to convergence: those epochs × the steady-state epoch time above (min) | "
        f"{format_mean_sd([s / 60 for s in convergence['single_s']], 1, 1)} | "
        f"{format_mean_sd([s / 60 for s in convergence['ensemble_s']], 1, 1)} | "
        f"{format_mean_sd(convergence['ratio'], 1, 2)} |",
    ]


def report(results: dict, config: CostConfig) -> str:
    vals = list(results["per_seed"].values())
    j = config.methods.n_traditional

    def col(path):
        out = []
        for v in vals:
            for key in path:
                v = v[key]
            out.append(v)
        return out

    s = results["summary"]
    n = mean_sd(col(["n_train"]))[0]
    lines = [
        f"## Cost — training and inference wall time ({results['data']} data, seeds "
        f"{results['seeds']})",
        "",
        f"Hardware: {results['hardware']}. Wall time: {results['wall_time_s'] / 60:.1f} min. "
        f"Model f = {config.num_features}; {n:.0f} training structures; mean ± sd over "
        "repeats.",
        "",
        f"| quantity | single model (+ GMM) | {j}-member ensemble (vmapped) | ratio |",
        "|---|---|---|---|",
        "| training epoch, steady state (s) | "
        f"{format_mean_sd(col(['train_single', 'epoch_s']), 1, 2)} | "
        f"{format_mean_sd(col(['train_ensemble', 'epoch_s']), 1, 2)} | "
        f"{format_mean_sd(s['train_epoch_ratio'], 1, 2)} |",
        "| first epoch incl. compilation (s; less when JAX's in-process or persistent "
        "compilation cache already holds the program) | "
        f"{format_mean_sd(col(['train_single', 'first_epoch_s']), 1, 1)} | "
        f"{format_mean_sd(col(['train_ensemble', 'first_epoch_s']), 1, 1)} | |",
        f"| GMM fit, BIC over K ≤ {config.methods.max_components} (s) | "
        f"{format_mean_sd(col(['gmm_fit_s']), 1, 1)} | – | |",
        *_convergence_rows(results.get("convergence")),
        "",
        f"| inference ({config.infer_frames} test_300K structures) | ms / structure | ratio |",
        "|---|---|---|",
        f"| single model, forces only | {format_mean_sd(col(['inference', 'single_ms']), 1, 2)} "
        "| 1 |",
        f"| single model + GMM NLL | {format_mean_sd(col(['inference', 'single_gmm_ms']), 1, 2)} "
        f"| {format_mean_sd(s['inference_gmm_overhead'], 1, 3)} vs forces only |",
        f"| {config.n_infer_members}-member ensemble σ | "
        f"{format_mean_sd(col(['inference', 'ensemble_ms']), 1, 2)} | "
        f"{format_mean_sd(s['inference_ensemble_vs_gmm'], 1, 2)} vs single + GMM |",
        "",
        "Inference times are end to end (`predict`: neighbour lists, padding, the jitted forward "
        "pass and host transfer), after a warm-up call. The ensemble's members repeat the "
        f"{j} trained ones (the cost does not depend on weights).",
        "",
    ]
    return "\n".join(lines) + "\n"
