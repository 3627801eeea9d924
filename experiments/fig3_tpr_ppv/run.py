"""Fig. 3 of Zhu et al. (2023): TPR / PPV / TPR×PPV maps on the test sets.

Uses the models and predictions of :mod:`experiments.fig2_uncertainty` (same presets, same model
cache, same prediction cache when the work folders agree), so after Fig. 2 it costs seconds.
"""

from __future__ import annotations

import itertools
import time
import warnings
from collections.abc import Sequence
from pathlib import Path

from experiments.common.cli import hardware_note
from experiments.common.config import config_dict
from experiments.common.methods import LABELS, METHODS, PAPER_METHODS, axis_label
from experiments.common.networks import networks_from_info
from experiments.common.pieces import combined_provenance, identity, run_seeds
from experiments.common.plots import tpr_ppv_maps
from experiments.common.provenance import begin_run
from experiments.common.sources import check_source
from experiments.common.stats import aggregate_seeds, format_mean_sd
from experiments.fig2_uncertainty.analysis import TEMPERATURE_TESTS
from experiments.fig2_uncertainty.run import PRESETS, UQConfig, test_sets, train_and_predict
from experiments.fig3_tpr_ppv.analysis import map_distance, map_summary, rate_map
from nequip_jax._io import atomic_write_json, atomic_write_text
from nequip_jax.data import StandInWarning

__all__ = ["PRESETS", "run", "claims"]

#: "≈ 1" threshold of the summaries.
LEVEL = 0.9


def _log(message: str) -> None:
    print(f"[fig3 {time.strftime('%H:%M:%S')}] {message}", flush=True)


def run(
    config: UQConfig,
    workdir: str | Path,
    *,
    seeds: Sequence[int],
    data: str,
    root: Path | None,
    models_dir: str | Path,
    predictions_dir: str | Path,
    preset: str | None = None,
    verbose: bool = False,
) -> dict:
    """Maps and their summaries for every combo, seed and test set; results.json also lists
    the networks behind the predictions and the run's provenance."""
    workdir, models_dir = Path(workdir), Path(models_dir) / data
    sources = check_source(data, root, ["train_300K", "train_mixedT", *TEMPERATURE_TESTS])
    recipe = {**config_dict(config), "level": LEVEL, "methods": list(METHODS)}
    expected = identity("fig3_tpr_ppv", recipe, data, sources)

    def compute(seed: int, folder: Path) -> dict:
        body: dict = {"per_seed": {}, "networks": [], "figures": []}
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", StandInWarning)
            for combo in config.combos:
                preds, info = train_and_predict(
                    config,
                    combo,
                    seed,
                    root=root,
                    models_dir=models_dir,
                    cache_dir=Path(predictions_dir),
                    verbose=verbose,
                )
                body["networks"] += networks_from_info(
                    info, seed=seed, stage=combo.name, models_dir=models_dir / combo.name
                )
                body["per_seed"][combo.name] = {}
                for test, by_method in preds.items():
                    maps = {m: rate_map(p.u, p.eps) for m, p in by_method.items()}
                    entry = {m: map_summary(maps[m], LEVEL) for m in maps}
                    entry["distance"] = {
                        f"{a}-{b}": map_distance(maps[a], maps[b])
                        for a, b in itertools.combinations(list(maps), 2)
                    }
                    body["per_seed"][combo.name][test] = entry
                    panels = {LABELS[m]: (p.eps, p.u, axis_label(m)) for m, p in by_method.items()}
                    path = folder / f"fig3_{combo.name}_{test}.png"
                    tpr_ppv_maps(panels, path, title=f"{combo.name}, {test}, seed {seed}")
                    body["figures"].append(
                        [
                            f"{combo.name}, {test} (seed {seed})",
                            path.relative_to(workdir).as_posix(),
                        ]
                    )
        return body

    pieces = run_seeds(
        workdir, seeds, expected, compute, preset=preset, data_files=sources, log=_log
    )
    done = list(pieces)
    # Test sets in their temperature order (a stored piece's JSON keys are sorted).
    per_seed = {
        c.name: {s: {t: pieces[s]["per_seed"][c.name][t] for t in test_sets(c)} for s in done}
        for c in config.combos
    }
    # The aggregate's own clock starts after the pieces (their wall times are added).
    prov = combined_provenance(
        begin_run(), pieces, preset=preset, data_source=data, data_files=sources
    )
    figures = pieces[done[0]]["figures"]
    results = {
        "config": config_dict(config),
        "data": data,
        "seeds": done,
        "level": LEVEL,
        "per_seed": per_seed,
        "aggregate": {c: aggregate_seeds(list(per_seed[c].values())) for c in per_seed},
        "claims": {c.name: claims(per_seed[c.name], test_sets(c)) for c in config.combos},
        "networks": [n for s in done for n in pieces[s]["networks"]],
        "hardware": hardware_note(),
        "wall_time_s": prov["wall_s"],
        "provenance": prov,
    }
    atomic_write_json(workdir / "results.json", results)
    atomic_write_text(workdir / "section.md", report(results, figures))
    _log(f"wrote {workdir / 'section.md'}")
    return results


def claims(per_seed: dict, tests: Sequence[str]) -> list[dict]:
    """The Fig. 3 claims, checked per seed on the last (hottest) of ``tests`` present.

    ``per_seed``: {seed: {test: {method: summary, "distance": {...}}}}.
    """
    seeds = list(per_seed)
    test = [t for t in tests if t in per_seed[seeds[0]]][-1]
    methods = [m for m in METHODS if m in per_seed[seeds[0]][test]]
    get = {m: [per_seed[s][test][m] for s in seeds] for m in methods}
    dist = [per_seed[s][test]["distance"] for s in seeds]
    rows = []

    def row(claim, measured, flags):
        rows.append(
            {
                "claim": claim,
                "measured": measured,
                "seeds_supporting": int(sum(flags)),
                "n_seeds": len(flags),
            }
        )

    def areas(key):
        return ", ".join(
            f"{LABELS[m]} {format_mean_sd([g[key] for g in get[m]], 1, 2)}" for m in methods
        )

    def close(key, i, tol=0.1):
        ens = 0.5 * (get["traditional"][i][key] + get["diverse"][i][key])
        return abs(get["gmm"][i][key] - ens) <= tol

    row(
        f"{test}: the GMM reaches TPR ≈ 1 over a comparable (slightly smaller) region "
        f"(area with TPR ≥ {LEVEL} within ±0.1 of the ensembles' mean)",
        "area TPR ≥ 0.9: " + areas("tpr_area"),
        [close("tpr_area", i) for i in range(len(seeds))],
    )
    row(
        f"{test}: all methods reach PPV ≈ 1 over similar regions (±0.1)",
        "area PPV ≥ 0.9: " + areas("ppv_area"),
        [close("ppv_area", i) for i in range(len(seeds))],
    )
    td_t = [d["traditional-diverse"]["tpr"] for d in dist]
    td_p = [d["traditional-diverse"]["ppv"] for d in dist]
    gt_t = [d["gmm-traditional"]["tpr"] for d in dist]
    gt_p = [d["gmm-traditional"]["ppv"] for d in dist]
    row(
        f"{test}: traditional and diverse ensembles have similar TPR/PPV profiles "
        "(mean abs. difference < 0.1)",
        f"mean abs. ΔTPR {format_mean_sd(td_t, 1, 3)}, ΔPPV {format_mean_sd(td_p, 1, 3)} "
        f"(GMM vs traditional: {format_mean_sd(gt_t, 1, 3)}, {format_mean_sd(gt_p, 1, 3)})",
        [t < 0.1 and p < 0.1 for t, p in zip(td_t, td_p)],
    )
    p_star = {m: [g["max_percentile_both"] for g in get[m]] for m in methods}
    row(
        f"{test}: TPR ≈ 1 and PPV ≈ 1 together only for U_cutoff up to about the 30th "
        "percentile (largest such percentile ≤ 40; the paper's three methods)",
        ", ".join(f"{LABELS[m]} {format_mean_sd(p_star[m], 1, 0)}" for m in methods),
        [all(p_star[m][i] <= 40 for m in PAPER_METHODS) for i in range(len(seeds))],
    )
    return rows


def report(results: dict, figures) -> str:
    lines = [
        f"## Fig. 3 — TPR / PPV maps ({results['data']} data, seeds {results['seeds']})",
        "",
        f"Hardware: {results['hardware']}. Wall time: {results['wall_time_s'] / 60:.1f} min "
        "(models and predictions from the Fig. 2 run when cached).",
        "",
        "U cut-offs at the 1st … 99th percentile of each method's U, ε cut-offs from 0 to the "
        f"99th percentile of ε (50 × 50 grid). Areas: fraction of the grid with the rate ≥ "
        f"{results['level']}; p*: largest U-cutoff percentile with TPR and PPV ≥ "
        f"{results['level']} together.",
        "",
    ]
    for combo, agg in results["aggregate"].items():
        lines += [
            f"### {combo}",
            "",
            "| test | method | area TPR ≥ 0.9 | area PPV ≥ 0.9 | area both | p* |",
            "|---|---|---|---|---|---|",
        ]
        for test, entry in agg.items():
            for m in (m for m in METHODS if m in entry):
                a = entry[m]
                lines.append(
                    f"| {test} | {LABELS[m]} | {format_mean_sd(a['tpr_area']['values'], 1, 2)} | "
                    f"{format_mean_sd(a['ppv_area']['values'], 1, 2)} | "
                    f"{format_mean_sd(a['both_area']['values'], 1, 2)} | "
                    f"{format_mean_sd(a['max_percentile_both']['values'], 1, 0)} |"
                )
        lines += ["", "| claim (paper, Fig. 3 text) | measured (mean ± sd) | seeds supporting |"]
        lines += ["|---|---|---|"]
        for c in results["claims"][combo]:
            lines.append(
                f"| {c['claim']} | {c['measured']} | {c['seeds_supporting']}/{c['n_seeds']} |"
            )
        lines.append("")
    for caption, name in figures:
        lines += [f"![{caption}]({name})", ""]
    return "\n".join(lines) + "\n"
