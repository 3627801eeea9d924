"""End-to-end demo: one model + GMM against a vmapped ensemble on 3BPA, with a markdown report.

Steps: draw ``D_train,100^300`` (seeded); train a single NequIP and a J-member ensemble (one
vmapped group) on it; fit the GMM on the single model's training features (BIC), and the head of
every other informative single-model method of :mod:`nequip_jax.uncertainty.registry` (e.g.
LLPR); evaluate all on
``test_300K``, ``test_600K`` and ``test_1200K``; write ``report.md`` with the accuracy table,
Fig. 2-style histograms, Fig. 3-style TPR/PPV maps, summary metrics and a cost table, and
``results.json`` with the numbers, the trained ``networks`` and the run's ``provenance``.
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

from experiments.common.cli import subsample
from experiments.common.networks import networks_from_runs
from experiments.common.plots import tpr_ppv_maps, uncertainty_vs_error
from experiments.common.presets import load_presets
from experiments.common.provenance import begin_run, provenance
from experiments.common.sources import check_source
from nequip_jax._io import atomic_write_json, atomic_write_text
from nequip_jax.data import StandInWarning, load_3bpa, paper_split
from nequip_jax.training import load_config, train
from nequip_jax.training.ensemble import train_ensemble
from nequip_jax.training.loop import member_keys
from nequip_jax.uncertainty.gmm_head import fit_gmm_uncertainty, format_selection_table
from nequip_jax.uncertainty.metrics import force_error_per_atom
from nequip_jax.uncertainty.protocol import ModelOutputs
from nequip_jax.uncertainty.registry import get_method, methods_for
from nequip_jax.uncertainty.summary import summarize_uncertainty

__all__ = ["DemoConfig", "PRESETS", "run"]


@dataclasses.dataclass(frozen=True)
class DemoConfig:
    """Settings of the demo.

    Every network trains until ReduceLROnPlateau takes its learning rate below
    ``min_learning_rate`` (a shorter schedule than the ``cpu`` preset's: patience
    ``plateau_patience``, floor ``min_learning_rate``); ``max_epochs`` is a safety net whose use
    the report states.
    """

    base: str = "cpu"  # training preset (nequip_jax/configs)
    n_train: int = 100
    plateau_patience: int = 10
    min_learning_rate: float = 1e-4
    max_epochs: int = 1000
    ensemble_members: int = 4
    max_components: int = 20
    test_splits: tuple[str, ...] = ("test_300K", "test_600K", "test_1200K")
    max_test_frames: int | None = None
    timing_frames: int = 64
    seeds: tuple[int, ...] = (0,)  # the report is one seed's
    data: str = "dft"  # the test sets are DFT's
    # Further overrides of the training preset (``key=value``, as ``nequip-jax train``'s),
    # applied after the fields above, e.g. a smaller model for the tests.
    overrides: tuple[str, ...] = ()


PRESETS: dict[str, DemoConfig] = load_presets("demo", DemoConfig)


def _log(message: str) -> None:
    print(f"[demo {time.strftime('%H:%M:%S')}] {message}", flush=True)


def _time_predict(fn, frames, repeats: int = 2) -> float:
    """Seconds per structure of ``fn(frames)`` after a warm-up call (compilation excluded)."""
    fn(frames)
    start = time.perf_counter()
    for _ in range(repeats):
        fn(frames)
    return (time.perf_counter() - start) / (repeats * len(frames))


def run(
    demo: DemoConfig,
    workdir: str | Path,
    *,
    seeds: Sequence[int] = (0,),
    data: str = "dft",
    root: Path | None = None,
    preset: str | None = None,
) -> Path:
    """Run the demo for one seed (``seeds`` holds exactly one) on the data source ``data``
    (``root``: its folder, ``None`` for the default search); returns the path of ``report.md``.

    Raises:
        ValueError: not exactly one seed, or a data source without the test sets.
    """
    if len(seeds) != 1:
        raise ValueError(
            f"seeds={list(seeds)}: the demo reports one seed; run it once per seed, each with "
            "its own --workdir."
        )
    (seed,) = seeds
    begun = begin_run()
    start = time.perf_counter()
    workdir = Path(workdir)
    workdir.mkdir(parents=True, exist_ok=True)
    overrides = [
        f"seed={seed}",
        f"data.n_train={demo.n_train}",
        f"optim.plateau_patience={demo.plateau_patience}",
        f"optim.min_learning_rate={demo.min_learning_rate}",
        f"optim.max_epochs={demo.max_epochs}",
    ]
    if root is not None:
        overrides.append(f"data.root={root}")
    own = dict(o.split("=", 1) for o in overrides)
    for extra in demo.overrides:
        name, _, value = extra.partition("=")
        if name in own and value != own[name]:
            raise ValueError(
                f"demo override {extra!r} contradicts the demo's own setting {name}={own[name]} "
                "(set by its field or argument); change that field instead."
            )
    config = load_config(demo.base, [*overrides, *demo.overrides])
    sources = check_source(data, root, ["train_300K", *demo.test_splits])
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", StandInWarning)  # the split also reads the test sets
        split = paper_split("300K", demo.n_train, key=member_keys(seed, 0)[0], root=root)
    frames = (split.train, split.val)
    _log(f"D_train,{demo.n_train}^300: {len(split.train)} train + {len(split.val)} validation")

    t0 = time.perf_counter()
    _log("training the single model (until the learning-rate floor)")
    potential = train(config, workdir / "single", data=frames)
    t_single = time.perf_counter() - t0

    t0 = time.perf_counter()
    _log(f"training a {demo.ensemble_members}-member vmapped ensemble")
    ensemble = train_ensemble(
        config, workdir / "ensemble", n_members=demo.ensemble_members, data=frames
    )
    t_ensemble = time.perf_counter() - t0

    t0 = time.perf_counter()
    _log(f"fitting the GMM (BIC over K = 1 … {demo.max_components})")
    potential, table = fit_gmm_uncertainty(
        potential,
        split.train,
        key=jax.random.fold_in(jax.random.key(seed), 7),
        max_components=demo.max_components,
    )
    t_gmm = time.perf_counter() - t0
    n_components = int(potential.head.state.weights.shape[0])
    potential.save(workdir / "single" / "model")
    _log(f"chose K = {n_components} in {t_gmm:.1f} s")
    heads, fit_s = {"gmm": potential}, {"gmm": t_gmm}
    features = None
    for name in methods_for("potential", informative=True):
        if name in heads:
            continue
        t0 = time.perf_counter()
        if features is None:
            features = np.concatenate(potential.predict(split.train)["features"])
        method = get_method(name)
        key = jax.random.fold_in(jax.random.key(seed), 7)
        state = method.fit(ModelOutputs(features=features), key=key)
        heads[name] = potential.with_head(name, state)
        fit_s[name] = time.perf_counter() - t0
        _log(f"fitted the {method.label} head in {fit_s[name]:.1f} s")

    results: dict = {"tests": {}, "cost": {}, "gmm": {"n_components": n_components}}
    figures: list[tuple[str, str]] = []
    tests, sizes = {}, {}
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", StandInWarning)
        for name in demo.test_splits:
            frames = load_3bpa(name, root)
            tests[name] = subsample(frames, demo.max_test_frames)
            sizes[name] = len(frames)
    for name, frames in tests.items():
        _log(f"evaluating on {name} ({len(frames)} of {sizes[name]} structures, evenly spaced)")
        f_true = [a.get_forces() for a in frames]
        e_true = np.array([a.get_potential_energy() for a in frames])
        n_atoms = np.array([len(a) for a in frames])
        compared = []
        for m, single in heads.items():  # the head's score, in the model's program
            pred = single.predict(frames)
            compared.append((f"single + {get_method(m).label}", pred, get_method(m), pred))
        pred = ensemble.predict(frames)
        compared.append((f"ensemble ({ensemble.n_members})", pred, get_method("ensemble"), pred))
        row = {}
        panels = {}
        for method, pred, uncertainty, scored in compared:
            label = f"{uncertainty.label} ({uncertainty.unit})"
            eps = np.concatenate(
                [force_error_per_atom(p, t) for p, t in zip(pred["forces"], f_true)]
            )
            u = np.concatenate(scored["uncertainty"])
            de = (pred["energy"] - e_true) / n_atoms
            row[method] = {
                "energy_rmse_per_atom": float(np.sqrt(np.mean(de**2))),
                **summarize_uncertainty(eps, u),
            }
            panels[method] = (eps, u, label)
        results["tests"][name] = row
        fig2 = uncertainty_vs_error(panels, workdir / f"fig2_{name}.png", title=name)
        fig3 = tpr_ppv_maps(panels, workdir / f"fig3_{name}.png", title=name)
        figures += [(f"Fig. 2-style, {name}", fig2.name), (f"Fig. 3-style, {name}", fig3.name)]

    timing = next(iter(tests.values()))[: demo.timing_frames]
    plain = potential.with_head(None)
    results["cost"] = {
        "train_single_s": t_single,
        "train_ensemble_s": t_ensemble,
        **{f"fit_{m}_s": fit_s[m] for m in heads},
        "infer_single_ms": 1000 * _time_predict(plain.predict, timing),
        **{
            f"infer_single_{m}_ms": 1000 * _time_predict(p.predict, timing)
            for m, p in heads.items()
        },
        "infer_ensemble_ms": 1000 * _time_predict(ensemble.predict, timing),
        "ensemble_members": ensemble.n_members,
    }
    results["networks"] = networks_from_runs(
        "single model", [workdir / "single"], [0], seed=seed
    ) + networks_from_runs(
        f"{ensemble.n_members}-member ensemble",
        sorted(p.parent for p in (workdir / "ensemble").glob("group*/summary.json")),
        list(range(ensemble.n_members)),
        seed=seed,
    )
    results["wall_time_s"] = time.perf_counter() - start
    results["provenance"] = provenance(
        begun, preset=preset, seeds=[seed], data_source=data, data_files=sources
    )
    atomic_write_json(workdir / "results.json", results)
    report = _report(demo, seed, results, figures, table, n_components, len(split.train), heads)
    atomic_write_text(workdir / "report.md", report)
    _log(f"wrote {workdir / 'report.md'}")
    return workdir / "report.md"


def _report(demo, seed, results, figures, table, n_components, n_train, heads) -> str:
    cost = results["cost"]
    lines = [
        "# nequip-jax demo: GMM uncertainty vs a vmapped deep ensemble on 3BPA",
        "",
        f"Preset: `{demo}`; seed {seed}; trained on {n_train} structures of D_train,"
        f"{demo.n_train}^300 (rest of the draw = validation). Hardware: "
        f"{jax.devices()[0].platform} ({len(jax.devices())} device(s)).",
        "",
        "## Training",
        "",
        "Every network trains until ReduceLROnPlateau takes its learning rate below "
        f"{demo.min_learning_rate:g} (stop reason `min_learning_rate`); `max_epochs` "
        f"({demo.max_epochs}) is a safety net.",
        "",
        "| network | epochs | stopped by | best epoch | best validation F RMSE (meV/Å) |",
        "|---|---|---|---|---|",
    ]
    for n in results["networks"]:
        lines.append(
            f"| {n['name']} | {n['epochs']} | {n['stop_reason']} | {n['best_epoch']} | "
            f"{1000 * n['best_val_forces_rmse']:.1f} |"
        )
    lines += [
        "",
        "## Accuracy",
        "",
        "| test set | method | E RMSE (meV/atom) | ε̄ Eq. (3) (meV/Å) | mean ε (meV/Å) |",
        "|---|---|---|---|---|",
    ]
    for name, row in results["tests"].items():
        for method, m in row.items():
            lines.append(
                f"| {name} | {method} | {1000 * m['energy_rmse_per_atom']:.2f} | "
                f"{1000 * m['eps_bar']:.1f} | {1000 * m['eps_mean']:.1f} |"
            )
    lines += [
        "",
        "## Uncertainty quality",
        "",
        "Spearman ρ(U, ε); ROC-AUC and average precision (AP) for flagging the 10 % of atoms "
        "with the largest ε (no skill: AUC 0.5, AP 0.1); mean TPR×PPV over the paper's grid "
        "(Fig. 3 area).",
        "",
        "| test set | method | Spearman | ROC-AUC | AP | mean TPR×PPV |",
        "|---|---|---|---|---|---|",
    ]
    for name, row in results["tests"].items():
        for method, m in row.items():
            lines.append(
                f"| {name} | {method} | {m['spearman']:.3f} | {m['roc_auc']:.3f} | "
                f"{m['average_precision']:.3f} | {m['mean_tpr_x_ppv']:.3f} |"
            )
    lines += [
        "",
        "## Cost",
        "",
        "| quantity | single model | ensemble |",
        "|---|---|---|",
        f"| training (s) | {cost['train_single_s']:.0f} | "
        f"{cost['train_ensemble_s']:.0f} ({cost['ensemble_members']} members, vmapped) |",
        *(
            f"| fit of the {get_method(m).label} head (s) | {cost[f'fit_{m}_s']:.1f} | – |"
            for m in heads
        ),
        f"| inference, forces only (ms/structure) | {cost['infer_single_ms']:.2f} | – |",
        *(
            f"| inference with {get_method(m).label} (ms/structure) | "
            f"{cost[f'infer_single_{m}_ms']:.2f} | – |"
            for m in heads
        ),
        f"| inference with ensemble σ (ms/structure) | – | {cost['infer_ensemble_ms']:.2f} |",
        "",
        "Inference times include host-side graph building and padding, measured after compilation.",
        "",
        f"## GMM model selection (chosen K = {n_components})",
        "",
        format_selection_table(table, n_components),
        "",
        "## Figures",
        "",
    ]
    for caption, file in figures:
        lines += [f"### {caption}", "", f"![{caption}]({file})", ""]
    return "\n".join(lines) + "\n" + "<!-- raw: " + json.dumps(results["cost"]) + " -->\n"
