"""Fig. 5 and Table I of Zhu et al. (2023): one round of active learning against random selection.

For every seed: draw ``D_train,N^300`` and ``D_pool^300`` (3BPA@xTB by default); train the three
methods; score every pool structure by its most uncertain atom (Eq. (12)) and add the N highest
to the training set — one new set per method — or N random pool structures (one set shared by
the methods); retrain every method from scratch on its active set and on the random set; compare
ε̄, ε̄_200 and ε_max on the β scans. Improvements are paired per seed and reported as mean ± sd
with a verdict on whether they exceed the seed-to-seed spread, and as the paired difference
active − random with a two-sided paired t-test. ``results.json`` lists every network trained
(initial, and retrained per selection) and the run's provenance.
"""

from __future__ import annotations

import dataclasses
import time
import warnings
from collections.abc import Sequence
from pathlib import Path

import jax
import numpy as np

from experiments.common.cli import hardware_note, subsample
from experiments.common.config import MethodsConfig, config_dict
from experiments.common.methods import KEY_TAGS, LABELS, PAPER_METHODS
from experiments.common.networks import networks_from_info
from experiments.common.pieces import Stages, combined_provenance, identity, run_seeds
from experiments.common.plots import error_distributions
from experiments.common.prediction import predict_methods
from experiments.common.presets import load_presets, scan_split
from experiments.common.provenance import begin_run
from experiments.common.sources import check_source, fingerprint
from experiments.common.stats import format_mean_sd
from experiments.common.training import train_methods
from experiments.fig5_active_learning.analysis import (
    TABLE_METRICS,
    format_p,
    improvement_table,
    select_active,
    select_random,
    table_metrics,
)
from nequip_jax._io import atomic_write_json, atomic_write_text
from nequip_jax.data import StandInWarning, load_3bpa, paper_split
from nequip_jax.training.loop import member_keys

__all__ = ["ALConfig", "PRESETS", "PAPER_TABLE_I", "run"]


@dataclasses.dataclass(frozen=True)
class ALConfig:
    """Settings of the active-learning experiment.

    Attributes:
        methods: how the three methods are trained (and retrained).
        num_features: f (the paper's Table I: 16).
        n_train: the initial training draw, validation included (50).
        n_add: structures added in the round (``None``: ``n_train``, as in the paper).
        max_pool: evenly spaced subsample of the pool (``None``: all of ``D_pool^300``).
        betas: the scans evaluated.
        max_scan_frames: evenly spaced subsample of each scan (``None``: all).
        seeds: default seeds.
        data: default data source.
    """

    methods: MethodsConfig
    num_features: int = 16
    n_train: int = 50
    n_add: int | None = None
    max_pool: int | None = None
    betas: tuple[int, ...] = (120, 150, 180)
    max_scan_frames: int | None = None
    seeds: tuple[int, ...] = (0, 1, 2)
    data: str = "xtb"


#: Table I of the paper (meV/Å and %), for the report: scan -> metric -> method -> (abs, pct).
PAPER_TABLE_I = {
    "dih_beta120": {
        "eps_bar": {"gmm": (9.2, 17.0), "traditional": (10.2, 22.1), "diverse": (9.3, 20.0)},
        "eps_bar_200": {"gmm": (21.9, 7.5), "traditional": (-13.4, -5.1), "diverse": (16.1, 5.9)},
        "eps_max": {"gmm": (148.2, 19.0), "traditional": (184.9, 23.9), "diverse": (172.8, 24.3)},
    },
    "dih_beta150": {
        "eps_bar": {"gmm": (15.6, 26.0), "traditional": (9.5, 25.5), "diverse": (7.8, 17.9)},
        "eps_bar_200": {"gmm": (118.8, 28.6), "traditional": (41.6, 14.0), "diverse": (90.0, 26.0)},
        "eps_max": {"gmm": (290.8, 40.9), "traditional": (114.1, 41.9), "diverse": (232.1, 41.9)},
    },
    "dih_beta180": {
        "eps_bar": {"gmm": (29.6, 39.9), "traditional": (15.2, 32.1), "diverse": (23.4, 39.0)},
        "eps_bar_200": {
            "gmm": (140.4, 27.5),
            "traditional": (70.3, 18.5),
            "diverse": (134.6, 30.2),
        },
        "eps_max": {"gmm": (451.9, 44.3), "traditional": (169.0, 27.3), "diverse": (537.4, 54.9)},
    },
}

PRESETS: dict[str, ALConfig] = load_presets("fig5_active_learning", ALConfig)


def _log(message: str) -> None:
    print(f"[fig5 {time.strftime('%H:%M:%S')}] {message}", flush=True)


def _overlap(a: np.ndarray, b: np.ndarray) -> float:
    return len(set(a.tolist()) & set(b.tolist())) / max(1, len(a))


def run(
    config: ALConfig,
    workdir: str | Path,
    *,
    seeds: Sequence[int],
    data: str,
    root: Path | None,
    models_dir: str | Path,
    preset: str | None = None,
    verbose: bool = False,
    methods: Sequence[str] = PAPER_METHODS,
) -> dict:
    """One active-learning round per seed, Table I over seeds; writes results, figures, report.

    ``methods``: the methods the seeds computed by this run train (the single model + GMM
    alone costs a tenth of the three); Table I pairs, per method, the seeds that have it.

    Each seed is a piece (:mod:`experiments.common.pieces`, ``workdir/seeds/seed<k>``, with that
    seed's figures): seeds with a stored piece of the same configuration and data are not
    recomputed, and Table I aggregates every stored piece, so seeds may run as separate jobs
    into one workdir. Within a seed each training round (initial; retraining per active set and
    on the random set) is a stage (:class:`experiments.common.pieces.Stages`), so an
    interrupted seed resumes after its last finished round.
    """
    workdir, models_dir = Path(workdir), Path(models_dir) / data
    unknown = sorted(set(methods) - set(PAPER_METHODS))
    if unknown or not methods:
        raise ValueError(f"methods={list(methods)}: choose one or more of {PAPER_METHODS}.")
    methods = tuple(m for m in PAPER_METHODS if m in methods)
    scans = [scan_split(b) for b in config.betas]
    sources = check_source(data, root, ["train_300K", *scans])
    expected = identity("fig5_active_learning", config_dict(config), data, sources)
    scan_frames = {s: subsample(load_3bpa(s, root), config.max_scan_frames) for s in scans}
    mc = config.methods.with_model(num_features=config.num_features)
    n_add = config.n_add or config.n_train
    folder = models_dir / f"300K_n{config.n_train}_f{config.num_features}"  # shared with Fig. 2/4

    def scan_eps(trained, cache: Path, name: str) -> dict[str, np.ndarray]:
        """Per-atom ε of every method of ``trained`` on every scan, as ``"<scan>|<method>"``."""
        return {
            f"{scan}|{m}": p.eps
            for scan, frames in scan_frames.items()
            for m, p in predict_methods(trained, frames, cache=cache / f"{name}_{scan}.npz").items()
        }

    def compute(seed: int, piece: Path) -> dict:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", StandInWarning)
            split = paper_split("300K", config.n_train, key=member_keys(seed, 0)[0], root=root)
        pool = subsample(split.pool, config.max_pool)
        # Each training round is a stage of the seed's piece: a run interrupted after a round
        # resumes from the stored round (its networks, selection and scan errors).
        stages = Stages(piece, expected, seed)
        val = fingerprint(split.val)
        cache = workdir / "predictions" / f"seed{seed}"

        def initial_stage():
            _log(f"seed {seed}: initial training on {len(split.train)} + {len(split.val)}")
            initial = train_methods(
                mc,
                seed=seed,
                data=(split.train, split.val),
                models_dir=folder,
                methods=methods,
                verbose=verbose,
            )
            pool_pred = predict_methods(initial, pool, cache=cache / "pool.npz")
            body = {
                "networks": networks_from_info(
                    initial.info, seed=seed, stage="initial", models_dir=folder
                ),
                "training_s": _seconds(initial.info),
                "chosen": {m: select_active(pool_pred[m], n_add).tolist() for m in methods},
            }
            return body, scan_eps(initial, cache, "initial")

        inputs = {
            "train": fingerprint(split.train),
            "val": val,
            "pool": fingerprint(pool),
            "methods": list(methods),
        }
        first, eps = stages.run("initial", inputs, initial_stage)
        networks = list(first["networks"])
        training_s = {"initial": first["training_s"]}
        chosen = {m: np.asarray(first["chosen"][m], np.int64) for m in methods}
        key = jax.random.fold_in(jax.random.key(seed), KEY_TAGS["random_selection"])
        chosen["random"] = select_random(len(pool), n_add, key=key)
        pool_energy = np.array([a.get_potential_energy() for a in pool])
        retrained_eps = {}
        for scheme, idx in chosen.items():
            retrained = methods if scheme == "random" else (scheme,)
            stage = "random" if scheme == "random" else f"active {scheme}"
            train = split.train + [pool[i] for i in idx]

            def retrain_stage(retrained=retrained, stage=stage, train=train, scheme=scheme):
                _log(f"seed {seed}: retraining {retrained} on the {stage} set")
                trained = train_methods(
                    mc,
                    seed=seed,
                    data=(train, split.val),
                    models_dir=folder,
                    methods=retrained,
                    verbose=verbose,
                )
                body = {
                    "networks": networks_from_info(
                        trained.info, seed=seed, stage=stage, models_dir=folder
                    ),
                    "training_s": _seconds(trained.info),
                }
                tag = "random" if scheme == "random" else f"active_{scheme}"
                return body, scan_eps(trained, cache, tag)

            name = f"retrain_{scheme}"
            inputs = {"train": fingerprint(train), "val": val, "methods": list(retrained)}
            body, retrained_eps[scheme] = stages.run(name, inputs, retrain_stage)
            networks += body["networks"]
            training_s[scheme] = body["training_s"]

        def scheme_eps(scheme: str, scan: str, m: str) -> np.ndarray:
            if scheme == "initial":
                return eps[f"{scan}|{m}"]
            source = "random" if scheme == "random" else m
            return retrained_eps[source][f"{scan}|{m}"]

        errors: dict = {"initial": {}, "active": {}, "random": {}}
        figures = []
        for scan in scan_frames:
            for scheme in errors:
                errors[scheme][scan] = {
                    m: table_metrics(scheme_eps(scheme, scan, m)) for m in methods
                }
            path = piece / f"fig5_{scan}.png"
            error_distributions(
                {
                    LABELS[m]: {s: scheme_eps(s, scan, m) for s in ("active", "random")}
                    for m in methods
                },
                path,
                title=f"{scan}, seed {seed}: after one round (active vs random)",
            )
            figures.append([f"{scan} (seed {seed})", path.relative_to(workdir).as_posix()])
        return {
            "n_pool": len(pool),
            "errors": errors,
            "selection": {
                "indices": {k: v.tolist() for k, v in chosen.items()},
                "overlap": {
                    f"{a}-{b}": _overlap(chosen[a], chosen[b])
                    for a in (*methods, "random")
                    for b in (*methods, "random")
                    if a < b
                },
                "mean_energy_above_pool_eV": {
                    k: float(pool_energy[v].mean() - pool_energy.mean()) for k, v in chosen.items()
                },
            },
            "methods": list(methods),
            "training_s": training_s,
            "networks": networks,
            "figures": figures,
            "stages": stages.records,
        }

    pieces = run_seeds(
        workdir, seeds, expected, compute, preset=preset, data_files=sources, log=_log
    )
    done = list(pieces)
    per_seed = {
        s: {
            "methods": pieces[s].get("methods", list(PAPER_METHODS)),
            "errors": pieces[s]["errors"],
            "selection": pieces[s]["selection"],
            "training_s": pieces[s]["training_s"],
            "wall_time_s": pieces[s]["provenance"]["wall_s"],
        }
        for s in done
    }
    # Per method, the seeds that trained it (a seed may have the single model + GMM alone).
    seeds_of = {m: [s for s in done if m in per_seed[s]["methods"]] for m in PAPER_METHODS}
    table = {
        scan: {
            m: {
                key: {**row, "seeds": seeds_of[m]}
                for key, row in improvement_table(
                    [per_seed[s]["errors"]["random"][scan][m] for s in seeds_of[m]],
                    [per_seed[s]["errors"]["active"][scan][m] for s in seeds_of[m]],
                ).items()
            }
            for m in PAPER_METHODS
            if seeds_of[m]
        }
        for scan in scans
    }
    _add_paper_numbers(table)
    # The aggregate's own clock starts after the pieces (their wall times are added).
    prov = combined_provenance(
        begin_run(), pieces, preset=preset, data_source=data, data_files=sources
    )
    n_pool = sorted({pieces[s]["n_pool"] for s in done})
    results = {
        "config": config_dict(config),
        "data": data,
        "seeds": done,
        "seeds_per_method": {m: seeds_of[m] for m in PAPER_METHODS if seeds_of[m]},
        "n_pool": n_pool[0] if len(n_pool) == 1 else n_pool,
        "n_add": n_add,
        "n_scan_structures": {s: len(f) for s, f in scan_frames.items()},
        "per_seed": per_seed,
        "table_I": table,
        "networks": [n for s in done for n in pieces[s]["networks"]],
        "hardware": hardware_note(),
        "wall_time_s": prov["wall_s"],
        "provenance": prov,
    }
    atomic_write_json(workdir / "results.json", results)
    atomic_write_text(workdir / "section.md", report(results, pieces[done[0]]["figures"]))
    _log(f"wrote {workdir / 'section.md'} (seeds {done}, {results['wall_time_s'] / 60:.1f} min)")
    return results


def _add_paper_numbers(table: dict) -> None:
    """Put the paper's Table I entry (:data:`PAPER_TABLE_I`: improvement random − active, meV/Å
    and %) next to ours, as ``table[scan][method][metric]["paper"]``, where the paper has one."""
    for scan, by_method in table.items():
        for method, by_metric in by_method.items():
            for key, row in by_metric.items():
                paper = PAPER_TABLE_I.get(scan, {}).get(key, {}).get(method)
                if paper is not None:
                    row["paper"] = {"improvement_meV_per_A": paper[0], "improvement_pct": paper[1]}


def _seconds(info: dict) -> float:
    total = info["traditional"]["seconds"] + sum(v["seconds"] for v in info.get("variants", []))
    return total + (info["gmm"]["seconds"] if "gmm" in info else 0.0)


def report(results: dict, figures) -> str:
    seeds = results["seeds"]
    lines = [
        f"## Fig. 5 / Table I — one round of active learning ({results['data']} data, seeds "
        f"{seeds})",
        "",
        f"Hardware: {results['hardware']}. Wall time: {results['wall_time_s'] / 60:.1f} min. "
        f"Pool: {results['n_pool']} structures, {results['n_add']} added per set; scan "
        f"structures: {results['n_scan_structures']}.",
        "",
        "Improvement = random − active (positive: active learning better), mean ± sd over seeds; "
        "verdict 'yes' when the mean improvement exceeds the larger of the sd of the "
        "improvements and the sd of the random baseline (n_better = seeds with a positive "
        "improvement); p: two-sided paired t-test of active vs random over seeds. Paper: single "
        "runs, f = 16.",
        "",
        "| scan | metric | method | random (meV/Å) | active (meV/Å) | improvement (meV/Å) | "
        "improvement (%) | beyond spread? (n_better) | p | paper (meV/Å, %) |",
        "|---|---|---|---|---|---|---|---|---|---|",
    ]
    for scan, by_method in results["table_I"].items():
        for key, label in TABLE_METRICS:
            for m in by_method:
                row = by_method[m][key]
                paper = PAPER_TABLE_I.get(scan, {}).get(key, {}).get(m)
                paper_txt = f"{paper[0]}, {paper[1]}" if paper else "–"
                lines.append(
                    f"| {scan} | {label} | {LABELS[m]} | {format_mean_sd(row['random'], 1000)} | "
                    f"{format_mean_sd(row['active'], 1000)} | {format_mean_sd(row['abs'], 1000)} "
                    f"| {format_mean_sd(row['pct'], 1, 1)} | {row['verdict']} "
                    f"({row['n_better']}/{row['n']}) | {format_p(row['paired']['p_value'])} | "
                    f"{paper_txt} |"
                )
    lines += ["", "Before the round (initial models), ε̄ on the scans (meV/Å):", ""]
    scans = list(results["table_I"])
    lines += ["| method | " + " | ".join(scans) + " |", "|---" * (len(scans) + 1) + "|"]
    per_seed = results["per_seed"]
    with_method = results["seeds_per_method"]
    for m, having in with_method.items():
        cells = [
            format_mean_sd(
                [per_seed[s]["errors"]["initial"][scan][m]["eps_bar"] for s in having], 1000
            )
            for scan in scans
        ]
        lines.append(f"| {LABELS[m]} (seeds {having}) | " + " | ".join(cells) + " |")
    sel = {s: per_seed[s]["selection"] for s in seeds}
    both = [s for s in seeds if "gmm-traditional" in sel[s]["overlap"]]
    lines += [
        "",
        "Selected structures: mean reference energy above the pool mean (eV): "
        + ", ".join(
            f"{k} "
            + format_mean_sd(
                [sel[s]["mean_energy_above_pool_eV"][k] for s in with_method.get(k, seeds)], 1, 2
            )
            for k in (*with_method, "random")
        )
        + "; overlap of the GMM and traditional selections "
        + format_mean_sd([sel[s]["overlap"]["gmm-traditional"] for s in both], 1, 2)
        + ".",
        "",
        "Training time per seed (s): "
        + "; ".join(
            f"seed {s}: "
            + ", ".join(f"{k} {v:.0f}" for k, v in results["per_seed"][s]["training_s"].items())
            for s in seeds
        ),
        "",
    ]
    for caption, name in figures:
        lines += [f"![{caption}]({name})", ""]
    return "\n".join(lines) + "\n"
