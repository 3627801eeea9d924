"""Fig. 4 of Zhu et al. (2023): uncertainty and potential-energy landscapes on the β scans.

For every seed: train (or load) the three methods on ``D_train,N^300`` of the chosen data source
(3BPA@xTB by default: the real dihedral scans are not available offline), predict the scans
D_β=120°, 150°, 180°, and compare the landscapes (:mod:`.analysis`). The comparison numbers are
mean ± sd over seeds.
"""

from __future__ import annotations

import dataclasses
import time
import warnings
from collections.abc import Sequence
from pathlib import Path

import numpy as np

from experiments.common.cli import hardware_note, subsample
from experiments.common.config import MethodsConfig, config_dict
from experiments.common.methods import LABELS, PAPER_METHODS
from experiments.common.networks import networks_from_info
from experiments.common.pieces import combined_provenance, identity, run_seeds
from experiments.common.plots import landscapes
from experiments.common.prediction import predict_methods
from experiments.common.presets import Combo, load_presets, scan_split
from experiments.common.provenance import begin_run
from experiments.common.sources import check_source
from experiments.common.stats import aggregate_seeds, format_mean_sd
from experiments.common.training import train_methods, training_summary
from experiments.fig4_landscapes.analysis import compare_landscapes, landscape_values
from nequip_jax._io import atomic_write_json, atomic_write_text
from nequip_jax.data import StandInWarning, load_3bpa, paper_split
from nequip_jax.training.loop import member_keys
from nequip_jax.uncertainty.metrics import mean_force_error

__all__ = ["LandscapeConfig", "PRESETS", "run", "claims", "scan_split"]


@dataclasses.dataclass(frozen=True)
class LandscapeConfig:
    """Settings of the landscape experiment.

    Attributes:
        methods: how the three methods are trained.
        combo: the training setting (the paper's Fig. 4: 300 K, 100 structures, f = 32).
        betas: the scans, degrees.
        seeds: default seeds.
        max_scan_frames: evenly spaced subsample of each scan (``None``: all).
        data: default data source.
        resemble: Spearman ρ at or above which two landscapes count as resembling each other.
    """

    methods: MethodsConfig
    combo: Combo
    betas: tuple[int, ...] = (120, 150, 180)
    seeds: tuple[int, ...] = (0, 1, 2)
    max_scan_frames: int | None = None
    data: str = "xtb"
    resemble: float = 0.5


PRESETS: dict[str, LandscapeConfig] = load_presets("fig4_landscapes", LandscapeConfig)


def _log(message: str) -> None:
    print(f"[fig4 {time.strftime('%H:%M:%S')}] {message}", flush=True)


def run(
    config: LandscapeConfig,
    workdir: str | Path,
    *,
    seeds: Sequence[int],
    data: str,
    root: Path | None,
    models_dir: str | Path,
    preset: str | None = None,
    verbose: bool = False,
) -> dict:
    """Landscapes and their correlations for every seed and scan; results.json also lists the
    trained networks and the run's provenance."""
    workdir, models_dir = Path(workdir), Path(models_dir) / data
    combo = config.combo
    scans = [scan_split(b) for b in config.betas]
    sources = check_source(data, root, ["train_300K", *scans])
    frames = {s: subsample(load_3bpa(s, root), config.max_scan_frames) for s in scans}
    missing = [s for s, fr in frames.items() if any("forces" not in a.calc.results for a in fr)]
    if missing:
        raise ValueError(f"{missing}: scans need reference energies and forces (xTB twin).")
    recipe = config_dict(config)
    expected = identity("fig4_landscapes", recipe, data, sources)

    def compute(seed: int, folder: Path) -> dict:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", StandInWarning)
            split = paper_split(
                combo.setting, combo.n_train, key=member_keys(seed, 0)[0], root=root
            )
        _log(f"seed {seed}: training on {len(split.train)} + {len(split.val)} structures")
        trained = train_methods(
            config.methods.with_model(num_features=combo.num_features),
            seed=seed,
            data=(split.train, split.val),
            models_dir=models_dir / combo.name,
            verbose=verbose,
        )
        body: dict = {
            "per_seed": {},
            "training": training_summary(trained.info),
            "networks": networks_from_info(
                trained.info, seed=seed, models_dir=models_dir / combo.name
            ),
            "figures": [],
        }
        for scan, scan_frames in frames.items():
            preds = predict_methods(
                trained,
                scan_frames,
                cache=workdir / "predictions" / f"seed{seed}" / f"{scan}.npz",
            )
            values = landscape_values(preds)
            entry = compare_landscapes(values)
            entry["eps_bar"] = {m: mean_force_error(p.eps) for m, p in preds.items()}
            body["per_seed"][scan] = entry
            body["figures"].append(_figure(values, scan_frames, scan, seed, folder, workdir))
        return body

    pieces = run_seeds(
        workdir, seeds, expected, compute, preset=preset, data_files=sources, log=_log
    )
    done = list(pieces)
    per_seed = {s: pieces[s]["per_seed"] for s in done}
    # The aggregate's own clock starts after the pieces (their wall times are added).
    prov = combined_provenance(
        begin_run(), pieces, preset=preset, data_source=data, data_files=sources
    )
    figures = pieces[done[0]]["figures"]
    results = {
        "config": recipe,
        "data": data,
        "seeds": done,
        "n_structures": {s: len(fr) for s, fr in frames.items()},
        "per_seed": per_seed,
        "aggregate": aggregate_seeds(list(per_seed.values())),
        "claims": claims(per_seed, config.resemble),
        "training": {s: pieces[s]["training"] for s in done},
        "networks": [n for s in done for n in pieces[s]["networks"]],
        "hardware": hardware_note(),
        "wall_time_s": prov["wall_s"],
        "provenance": prov,
    }
    atomic_write_json(workdir / "results.json", results)
    atomic_write_text(workdir / "section.md", report(results, figures, config))
    _log(f"wrote {workdir / 'section.md'} ({results['wall_time_s'] / 60:.1f} min)")
    return results


def _figure(values, frames, scan: str, seed: int, folder: Path, workdir: Path) -> list[str]:
    dihedrals = np.array([a.info["dihedrals"] for a in frames], np.float64)
    top = {f"U {LABELS[m]}": values[f"U:{m}"] for m in PAPER_METHODS}
    top["energy std (traditional)"] = values["Estd:traditional"]
    bottom = {f"E {LABELS[m]}": 1000 * values[f"E:{m}"] for m in PAPER_METHODS}
    bottom["E reference"] = 1000 * values["E:reference"]
    path = folder / f"fig4_{scan}.png"
    landscapes(
        [("normalised uncertainty (Eq. 11)", top), ("E − E_min (meV)", bottom)],
        dihedrals[:, 0],
        dihedrals[:, 2],
        path,
        title=f"{scan}, seed {seed}",
    )
    return [f"{scan} (seed {seed})", path.relative_to(workdir).as_posix()]


def _claim_row(per_seed: dict, scan: str, claim: str, pairs: list[str], resemble: float) -> dict:
    seeds = list(per_seed)
    rho = {p: [per_seed[s][scan][p]["spearman"] for s in seeds] for p in pairs}
    overlap = {p: [per_seed[s][scan][p]["top10_overlap"] for s in seeds] for p in pairs}
    flags = [all(rho[p][i] >= resemble for p in pairs) for i in range(len(seeds))]
    measured = "; ".join(
        f"{p}: ρ = {format_mean_sd(rho[p], 1, 2)}, top-10 % overlap "
        f"{format_mean_sd(overlap[p], 1, 2)}"
        for p in pairs
    )
    return {
        "scan": scan,
        "claim": claim,
        "measured": measured,
        "seeds_supporting": int(sum(flags)),
        "n_seeds": len(seeds),
    }


#: The claims of the Fig. 4 text and the landscape pairs that test them.
CLAIMS = (
    (
        "the GMM and ensemble uncertainty landscapes are very similar",
        ["U:gmm vs U:traditional", "U:gmm vs U:diverse"],
    ),
    (
        "uncertainty landscapes resemble the reference energy landscape",
        [f"U:{m} vs E:reference" for m in PAPER_METHODS],
    ),
    (
        "model PES landscapes resemble the reference",
        [f"E:{m} vs E:reference" for m in PAPER_METHODS],
    ),
    (
        "(SI) the ensembles' energy-spread landscape resembles the PES",
        ["Estd:traditional vs E:reference", "Estd:diverse vs E:reference"],
    ),
)


def claims(per_seed: dict, resemble: float) -> list[dict]:
    """The Fig. 4 claims per scan; "resemble" means Spearman ρ ≥ ``resemble`` in a seed.

    ``per_seed``: {seed: {scan: {pair: {"spearman", "pearson", "top10_overlap"}}}}.
    """
    first = per_seed[next(iter(per_seed))]
    return [
        _claim_row(per_seed, scan, claim, pairs, resemble)
        for scan in first
        for claim, pairs in CLAIMS
    ]


def report(results: dict, figures, config: LandscapeConfig) -> str:
    agg = results["aggregate"]
    lines = [
        f"## Fig. 4 — uncertainty and energy landscapes on the β scans ({results['data']} "
        f"data, seeds {results['seeds']})",
        "",
        f"Hardware: {results['hardware']}. Wall time: {results['wall_time_s'] / 60:.1f} min. "
        f"Structures per scan: {results['n_structures']}.",
        "",
        "Spearman ρ over the structures of a scan (mean ± sd over seeds). U: structure "
        "uncertainty (sum of NLL / sqrt of summed σ²), E: energy relative to the minimum, Estd: "
        "spread of the members' total energies.",
        "",
    ]
    scans = list(agg)
    pairs = [p for p in agg[scans[0]] if p != "eps_bar"]
    lines += ["| pair | " + " | ".join(scans) + " |", "|---" * (len(scans) + 1) + "|"]
    for pair in pairs:
        cells = [format_mean_sd(agg[s][pair]["spearman"]["values"], 1, 2) for s in scans]
        lines.append(f"| {pair} | " + " | ".join(cells) + " |")
    lines += ["", "Force error ε̄ on the scans (meV/Å):", ""]
    lines += ["| method | " + " | ".join(scans) + " |", "|---" * (len(scans) + 1) + "|"]
    for m in PAPER_METHODS:
        cells = [format_mean_sd(agg[s]["eps_bar"][m]["values"], 1000) for s in scans]
        lines.append(f"| {LABELS[m]} | " + " | ".join(cells) + " |")
    lines += [
        "",
        f"| scan | claim (paper, Fig. 4 text; resemble = ρ ≥ {config.resemble}) | measured | "
        "seeds supporting |",
        "|---|---|---|---|",
    ]
    for c in results["claims"]:
        lines.append(
            f"| {c['scan']} | {c['claim']} | {c['measured']} | "
            f"{c['seeds_supporting']}/{c['n_seeds']} |"
        )
    lines.append("")
    for caption, name in figures:
        lines += [f"![{caption}]({name})", ""]
    return "\n".join(lines) + "\n"
