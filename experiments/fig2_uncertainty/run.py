"""Fig. 2 of Zhu et al. (2023): uncertainty (GMM NLL, ensemble σ) against per-atom force error.

For every training setting ("combo": 300 K or mixed, 50 or 100 structures, width f) and seed:
draw the split, train (or load) the single model + GMM, the traditional and the diverse ensemble
(:mod:`experiments.common.training`), predict the test sets, and summarise. Across seeds every
number is reported as mean ± sd; the claims of the paper's Fig. 2 text are checked per seed.

Fig. 3 (:mod:`experiments.fig3_tpr_ppv`) reuses :func:`train_and_predict` on the same settings, so
running it after this experiment costs no training.
"""

from __future__ import annotations

import dataclasses
import time
import warnings
from collections.abc import Sequence
from pathlib import Path

from experiments.common.cli import hardware_note, subsample
from experiments.common.config import MethodsConfig, config_dict
from experiments.common.methods import LABELS, METHODS, PAPER_METHODS, axis_label, display_unit
from experiments.common.networks import networks_from_info
from experiments.common.pieces import combined_provenance, identity, run_seeds
from experiments.common.plots import uncertainty_vs_error
from experiments.common.prediction import Prediction, predict_methods
from experiments.common.presets import Combo, load_presets
from experiments.common.provenance import begin_run
from experiments.common.sources import check_source
from experiments.common.stats import aggregate_seeds, format_mean_sd
from experiments.common.training import train_methods, training_summary
from experiments.fig2_uncertainty.analysis import (
    TEMPERATURE_TESTS,
    method_metrics,
    monotone_increasing,
    ordering_holds,
)
from nequip_jax._io import atomic_write_json, atomic_write_text
from nequip_jax.data import StandInWarning, paper_split
from nequip_jax.training.loop import member_keys

__all__ = [
    "UQConfig",
    "PRESETS",
    "train_and_predict",
    "run",
    "test_sets",
]


@dataclasses.dataclass(frozen=True)
class UQConfig:
    """Settings of the Fig. 2 / Fig. 3 experiments.

    Attributes:
        methods: how the three methods are trained (``model.num_features`` is set per combo).
        combos: training settings; the first is the paper's main figure.
        seeds: default seeds.
        max_test_frames: evenly spaced subsample of each test set (``None``: all frames).
        data: default data source (``"dft"`` or ``"xtb"``).
    """

    methods: MethodsConfig
    combos: tuple[Combo, ...]
    seeds: tuple[int, ...] = (0, 1, 2)
    max_test_frames: int | None = None
    data: str = "dft"


PRESETS: dict[str, UQConfig] = load_presets("fig2_uncertainty", UQConfig)


def _log(message: str) -> None:
    print(f"[uq {time.strftime('%H:%M:%S')}] {message}", flush=True)


def test_sets(combo: Combo) -> tuple[str, ...]:
    """Test sets of a setting: three temperatures (300 K) or ``D_test^mixed``."""
    return TEMPERATURE_TESTS if combo.setting == "300K" else ("test_mixed",)


def train_and_predict(
    config: UQConfig,
    combo: Combo,
    seed: int,
    *,
    root: Path | None,
    models_dir: Path,
    cache_dir: Path,
    verbose: bool = False,
) -> tuple[dict[str, dict[str, Prediction]], dict]:
    """Train (or load) the three methods of one combo and seed and predict its test sets.

    Returns:
        ``({test: {method: Prediction}}, training info)``.
    """
    split = paper_split(combo.setting, combo.n_train, key=member_keys(seed, 0)[0], root=root)
    methods = config.methods.with_model(num_features=combo.num_features)
    _log(f"{combo.name} seed {seed}: {len(split.train)} train + {len(split.val)} validation")
    trained = train_methods(
        methods,
        seed=seed,
        data=(split.train, split.val),
        models_dir=models_dir / combo.name,
        verbose=verbose,
    )
    out = {}
    for test in test_sets(combo):
        frames = subsample(split.test[test], config.max_test_frames)
        out[test] = predict_methods(
            trained, frames, cache=cache_dir / combo.name / f"seed{seed}" / f"{test}.npz"
        )
    return out, trained.info


def run(
    config: UQConfig,
    workdir: str | Path,
    *,
    seeds: Sequence[int],
    data: str,
    root: Path | None,
    models_dir: str | Path,
    preset: str | None = None,
    verbose: bool = False,
) -> dict:
    """Run Fig. 2 for every combo and seed; writes results.json (with the trained ``networks``
    and the run's ``provenance``), figures and section.md.

    Each seed is a piece (:mod:`experiments.common.pieces`, ``workdir/seeds/seed<k>``): seeds
    with a stored piece of the same configuration and data are not recomputed, and the summary
    aggregates every stored piece, so seeds may run as separate jobs into one workdir.
    """
    workdir, models_dir = Path(workdir), Path(models_dir) / data
    splits = ["train_300K", *TEMPERATURE_TESTS]
    if any(c.setting == "mixed" for c in config.combos):
        splits += ["train_mixedT", "test_300K", "test_600K"]
    sources = check_source(data, root, splits)
    # The methods are part of the identity: a newly registered method recomputes the seeds.
    recipe = {**config_dict(config), "methods": list(METHODS)}
    expected = identity("fig2_uncertainty", recipe, data, sources)

    def compute(seed: int, folder: Path) -> dict:
        body: dict = {"per_seed": {}, "training": {}, "networks": [], "figures": []}
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", StandInWarning)
            for combo in config.combos:
                preds, info = train_and_predict(
                    config,
                    combo,
                    seed,
                    root=root,
                    models_dir=models_dir,
                    cache_dir=workdir / "predictions",
                    verbose=verbose,
                )
                body["training"][combo.name] = training_summary(info)
                body["networks"] += networks_from_info(
                    info, seed=seed, stage=combo.name, models_dir=models_dir / combo.name
                )
                body["per_seed"][combo.name] = {
                    test: {m: method_metrics(p) for m, p in by_method.items()}
                    for test, by_method in preds.items()
                }
                body["figures"] += _figures(preds, combo, seed, folder, workdir)
        return body

    pieces = run_seeds(
        workdir, seeds, expected, compute, preset=preset, data_files=sources, log=_log
    )
    done = list(pieces)
    names = [c.name for c in config.combos]
    # Test sets in their temperature order (a stored piece's JSON keys are sorted).
    per_seed = {
        c.name: {s: {t: pieces[s]["per_seed"][c.name][t] for t in test_sets(c)} for s in done}
        for c in config.combos
    }
    # The aggregate's own clock starts after the pieces (their wall times are added).
    prov = combined_provenance(
        begin_run(), pieces, preset=preset, data_source=data, data_files=sources
    )
    results = {
        "config": config_dict(config),
        "data": data,
        "seeds": done,
        "per_seed": per_seed,
        "aggregate": {c: aggregate_seeds(list(per_seed[c].values())) for c in per_seed},
        "claims": {c.name: claims(per_seed[c.name], c) for c in config.combos},
        "training": {c: {s: pieces[s]["training"][c] for s in done} for c in names},
        "networks": [n for s in done for n in pieces[s]["networks"]],
        "hardware": hardware_note(),
        "wall_time_s": prov["wall_s"],
        "provenance": prov,
    }
    atomic_write_json(workdir / "results.json", results)
    atomic_write_text(workdir / "section.md", report(results, pieces[done[0]]["figures"]))
    _log(f"wrote {workdir / 'section.md'} (seeds {done}, {results['wall_time_s'] / 60:.1f} min)")
    return results


def _figures(preds, combo: Combo, seed: int, folder: Path, workdir: Path) -> list[list[str]]:
    """One figure per test set in ``folder``: ``[caption, path relative to workdir]``."""
    out = []
    for test, by_method in preds.items():
        panels = {LABELS[m]: (p.eps, p.u, axis_label(m)) for m, p in by_method.items()}
        path = folder / f"fig2_{combo.name}_{test}.png"
        uncertainty_vs_error(panels, path, title=f"{combo.name}, {test}, seed {seed}")
        out.append([f"{combo.name}, {test} (seed {seed})", path.relative_to(workdir).as_posix()])
    return out


def claims(per_seed: dict, combo: Combo) -> list[dict]:
    """The Fig. 2 claims, checked per seed. ``per_seed``: {seed: {test: {method: metrics}}}.

    Each row: ``claim``, ``measured`` (text), ``seeds_supporting`` of ``n_seeds``.
    """
    seeds = list(per_seed)
    rows = []
    tests = [t for t in test_sets(combo) if t in per_seed[seeds[0]]]
    main_test = tests[-1]
    methods = [m for m in METHODS if m in per_seed[seeds[0]][main_test]]

    def row(claim, measured, flags):
        rows.append(
            {
                "claim": claim,
                "measured": measured,
                "seeds_supporting": int(sum(flags)),
                "n_seeds": len(flags),
            }
        )

    for test in tests:
        eps = {m: [per_seed[s][test][m]["eps_bar"] for s in seeds] for m in PAPER_METHODS}
        flags = [
            ordering_holds({m: per_seed[s][test][m]["eps_bar"] for m in PAPER_METHODS})
            for s in seeds
        ]
        row(
            f"{test}: traditional ensemble has the lowest ε̄, the single model the highest",
            ", ".join(f"{LABELS[m]} {format_mean_sd(eps[m], 1000)} meV/Å" for m in PAPER_METHODS),
            flags,
        )
    ratio = [
        per_seed[s][main_test]["diverse"]["u_median"]
        / per_seed[s][main_test]["traditional"]["u_median"]
        for s in seeds
    ]
    row(
        f"{main_test}: σ of the diverse ensemble is shifted above the traditional one",
        f"median σ diverse / traditional = {format_mean_sd(ratio, 1, 2)}",
        [r > 1 for r in ratio],
    )
    if combo.setting == "300K":
        for m in methods:
            med = [[per_seed[s][t][m]["u_median"] for t in TEMPERATURE_TESTS] for s in seeds]
            unit, scale = display_unit(m)
            digits = 1
            row(
                f"{LABELS[m]}: uncertainty shifts to larger values with temperature",
                "median U at 300/600/1200 K: "
                + " / ".join(
                    format_mean_sd([v[i] for v in med], scale, digits)
                    for i in range(len(TEMPERATURE_TESTS))
                )
                + f" {unit}",
                [monotone_increasing(v) for v in med],
            )
        eps_t = [[per_seed[s][t]["gmm"]["eps_bar"] for t in TEMPERATURE_TESTS] for s in seeds]
        row(
            "ε shifts to higher errors with temperature (single model)",
            "ε̄ at 300/600/1200 K: "
            + " / ".join(
                format_mean_sd([v[i] for v in eps_t], 1000) for i in range(len(TEMPERATURE_TESTS))
            )
            + " meV/Å",
            [monotone_increasing(v) for v in eps_t],
        )
    rho = {m: [per_seed[s][main_test][m]["spearman"] for s in seeds] for m in methods}
    gap = [
        abs(rho["gmm"][i] - max(rho["traditional"][i], rho["diverse"][i]))
        for i in range(len(seeds))
    ]
    row(
        f"{main_test}: the GMM's U–ε correlation is similar to the ensembles' "
        "(ρ_GMM within 0.1 of the better ensemble ρ)",
        ", ".join(f"{LABELS[m]} ρ = {format_mean_sd(rho[m], 1, 2)}" for m in methods),
        [g < 0.1 for g in gap],
    )
    return rows


def report(results: dict, figures: list[tuple[str, str]]) -> str:
    """Markdown section: per-combo table of mean ± sd, the claims, training cost, figures."""
    seeds = results["seeds"]
    lines = [
        f"## Fig. 2 — uncertainty vs per-atom error ({results['data']} data, seeds {seeds})",
        "",
        f"Hardware: {results['hardware']}. Wall time: {results['wall_time_s'] / 60:.1f} min.",
        "",
    ]
    for combo, agg in results["aggregate"].items():
        lines += [
            f"### {combo}",
            "",
            "| test | method | ε̄ (meV/Å) | E RMSE (meV/atom) | Spearman ρ(U, ε) | ROC-AUC | AP "
            "| median U |",
            "|---|---|---|---|---|---|---|---|",
        ]
        for test, by_method in agg.items():
            for m, a in by_method.items():
                scale_u = display_unit(m)[1]
                lines.append(
                    f"| {test} | {LABELS[m]} | {format_mean_sd(a['eps_bar']['values'], 1000)} | "
                    f"{format_mean_sd(a['energy_rmse_per_atom']['values'], 1000, 2)} | "
                    f"{format_mean_sd(a['spearman']['values'], 1, 3)} | "
                    f"{format_mean_sd(a['roc_auc']['values'], 1, 3)} | "
                    f"{format_mean_sd(a['average_precision']['values'], 1, 3)} | "
                    f"{format_mean_sd(a['u_median']['values'], scale_u, 2)} |"
                )
        lines += ["", "| claim (paper, Fig. 2 text) | measured (mean ± sd) | seeds supporting |"]
        lines += ["|---|---|---|"]
        for c in results["claims"][combo]:
            lines.append(
                f"| {c['claim']} | {c['measured']} | {c['seeds_supporting']}/{c['n_seeds']} |"
            )
        train = results["training"][combo]
        lines += [
            "",
            "Training per seed: "
            + "; ".join(
                f"seed {s}: traditional {t['traditional_s']:.0f} s ({t['traditional_epochs']} "
                f"epochs), variants {t['variants_s']:.0f} s (epochs {t['variant_epochs']}), GMM "
                f"{t['gmm_s']:.0f} s (K = {t['gmm_components']})"
                + (" [cached]" if t["cached"] else "")
                for s, t in train.items()
            ),
            "",
            "U is the GMM NLL (nats) or the ensemble σ (meV/Å). ROC-AUC/AP: flagging the 10 % "
            "largest ε (no skill: 0.5 / 0.1).",
            "",
        ]
    for caption, name in figures:
        lines += [f"![{caption}]({name})", ""]
    return "\n".join(lines) + "\n"
