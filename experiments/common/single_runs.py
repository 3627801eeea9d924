"""Single networks trained to their stopping rule, evaluated on test splits: one folder each.

Used by experiments that compare training settings rather than uncertainty methods (the A/B of
the ``cpu`` model's defaults, the learning curve). Every network lives in
``<workdir>/<variant>/seed<seed>/`` as written by :func:`nequip_jax.training.train` (so the same
folder can be produced by ``nequip-jax train CONFIG --workdir ... --evaluate --resume``) and is
trained in resumable pieces: an interrupted run continues from ``last.ckpt`` and reaches the same
parameters. Test-set errors are cached next to the model as ``eval_<split>.json``.

A finished network is a *piece* of the study by its small files alone (:data:`PIECE_FILES`):
``config.yaml``, ``summary.json`` (its training record) and ``test_summary.json`` (the summary
errors of every evaluated test split; the per-atom errors stay in the ``eval_*.json``). With
those present the network is reported without loading or retraining it, so a study run over
several jobs (or machines) may keep these few kilobytes in its results folder and drop the
checkpoints, the model and the per-atom files.
"""

from __future__ import annotations

import dataclasses
import json
import warnings
from collections.abc import Mapping, Sequence
from pathlib import Path

import yaml

from nequip_jax._io import atomic_write_json, atomic_write_text
from nequip_jax.data import StandInWarning, load_3bpa
from nequip_jax.evaluate import evaluate_potential
from nequip_jax.model import Potential
from nequip_jax.training import RunConfig, load_config, train
from nequip_jax.training.config import apply_overrides

__all__ = [
    "PIECE_FILES",
    "Study",
    "finished_piece",
    "variant_config",
    "train_to_convergence",
    "evaluate_splits",
    "run_variants",
    "variant_rows",
    "markdown_table",
    "run_study",
    "study_runner",
    "add_variant_argument",
    "variant_option",
    "study_main",
]

#: Stop reasons of a finished network (anything else is resumed).
FINISHED = ("min_learning_rate", "early_stopping", "non_finite", "max_epochs")

#: The files of a network folder that make it a finished piece of a study.
PIECE_FILES = ("config.yaml", "summary.json", "test_summary.json")


def variant_config(base: str, overrides: Sequence[str], *, seed: int) -> RunConfig:
    """The preset ``base`` with ``key=value`` overrides and ``seed``."""
    config = load_config(base, list(overrides))
    return RunConfig.from_dict(apply_overrides(config.to_dict(), [f"seed={seed}"]))


def _check_folder(config: RunConfig, folder: Path) -> None:
    saved = folder / "config.yaml"
    if saved.is_file() and yaml.safe_load(saved.read_text()) != config.to_dict():
        raise ValueError(
            f"{folder} holds a run of another configuration ({saved} differs from the requested "
            "one); delete the folder to retrain it, or choose another workdir."
        )


def train_to_convergence(
    config: RunConfig, folder: str | Path, *, verbose: bool = False
) -> tuple[Potential, dict]:
    """Train ``config`` in ``folder`` until its stopping rule, or load it when it has finished.

    Returns:
        The best :class:`Potential` and its training record (see
        :func:`nequip_jax.training.loop.network_records`).

    Raises:
        ValueError: ``folder`` holds a run of another configuration.
    """
    folder = Path(folder)
    _check_folder(config, folder)
    summary = folder / "summary.json"
    if summary.is_file() and (folder / "model").is_dir():
        (record,) = json.loads(summary.read_text())["networks"]
        if record["stop_reason"] in FINISHED:
            return Potential.load(folder / "model"), record
    for stale in [*folder.glob("eval_*.json"), folder / "test_summary.json"]:
        stale.unlink(missing_ok=True)  # errors of an unfinished model
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", StandInWarning)  # the split also reads the test sets
        potential = train(config, folder, resume=True, verbose=verbose)
    return potential, potential.metadata["training"]


def _eval_path(folder: Path, split: str, max_test_frames: int | None) -> Path:
    suffix = "" if max_test_frames is None else f"_{max_test_frames}"
    return folder / f"eval_{split}{suffix}.json"


def finished_piece(
    config: RunConfig,
    folder: str | Path,
    splits: Sequence[str],
    max_test_frames: int | None = None,
) -> tuple[dict, dict[str, dict]] | None:
    """The training record and test summaries of a finished network of ``config`` in
    ``folder`` from its piece files alone (no model needed), or ``None`` when the network has
    not finished or a split's errors are missing.

    Raises:
        ValueError: ``folder`` holds a run of another configuration.
    """
    folder = Path(folder)
    _check_folder(config, folder)
    summary = folder / "summary.json"
    if not summary.is_file() or not (folder / "config.yaml").is_file():
        return None  # without its configuration a record cannot be matched to the request
    (record,) = json.loads(summary.read_text())["networks"]
    tests_file = folder / "test_summary.json"
    if record["stop_reason"] not in FINISHED or not tests_file.is_file():
        return None
    stored = json.loads(tests_file.read_text())
    names = {split: _eval_path(folder, split, max_test_frames).stem for split in splits}
    if not all(name in stored for name in names.values()):
        return None
    return record, {split: stored[name] for split, name in names.items()}


def evaluate_splits(
    potential: Potential,
    folder: str | Path,
    splits: Sequence[str],
    root: Path | None,
    max_test_frames: int | None = None,
) -> dict[str, dict]:
    """Summary errors of ``potential`` on each split (cached in ``folder/eval_<split>.json``;
    with ``max_test_frames``, on that many evenly spaced frames, cached as
    ``eval_<split>_<n>.json``); the summaries are also collected in
    ``folder/test_summary.json``, keyed by those file names."""
    from experiments.common.cli import subsample

    out, names = {}, {}
    for split in splits:
        path = _eval_path(Path(folder), split, max_test_frames)
        if not path.is_file():
            with warnings.catch_warnings():
                warnings.simplefilter("ignore", StandInWarning)  # the documented test_1200K
                frames = subsample(load_3bpa(split, root), max_test_frames)
            atomic_write_json(path, evaluate_potential(potential, frames))
        out[split] = json.loads(path.read_text())["summary"]
        names[split] = path.stem
    tests_file = Path(folder) / "test_summary.json"
    stored = json.loads(tests_file.read_text()) if tests_file.is_file() else {}
    merged = {**stored, **{names[split]: out[split] for split in splits}}
    if merged != stored:
        atomic_write_json(tests_file, dict(sorted(merged.items())))
    return out


def run_variants(
    base: str,
    variants: Mapping[str, Sequence[str]],
    seeds: Sequence[int],
    workdir: str | Path,
    *,
    splits: Sequence[str],
    root: Path | None,
    max_test_frames: int | None = None,
    log=print,
    verbose: bool = False,
) -> dict[str, dict[int, dict]]:
    """Train and evaluate every variant (``name -> overrides`` of the preset ``base``) and seed.

    Returns:
        ``{variant: {seed: {"network": record, "test": {split: summary}}}}``.
    """
    out: dict[str, dict[int, dict]] = {}
    for name, overrides in variants.items():
        out[name] = {}
        for seed in seeds:
            folder = Path(workdir) / name / f"seed{seed}"
            config = variant_config(base, overrides, seed=seed)
            if root is not None:
                config = RunConfig.from_dict(
                    apply_overrides(config.to_dict(), [f"data.root={root}"])
                )
            log(f"{name} seed {seed}: {folder}")
            stored = finished_piece(config, folder, splits, max_test_frames)
            if stored is None:
                potential, record = train_to_convergence(config, folder, verbose=verbose)
                tests = evaluate_splits(potential, folder, splits, root, max_test_frames)
            else:
                record, tests = stored
            log(
                f"{name} seed {seed}: {record['epochs']} epochs, {record['stop_reason']}, "
                f"best val F-RMSE {1000 * record['best_val_forces_rmse']:.1f} meV/Å"
                + (" (stored)" if stored is not None else "")
            )
            out[name][seed] = {"network": {"name": name, "seed": seed, **record}, "test": tests}
    return out


def variant_rows(results: Mapping[str, Mapping[int, dict]], splits: Sequence[str]) -> list[dict]:
    """Mean ± sd over seeds of every variant's test errors (meV/atom, meV/Å) and training.

    Returns:
        One row per variant: ``variant``, ``seeds``, per split ``{split: {"energy_rmse": stats,
        "forces_rmse": stats}}`` (stats from :func:`experiments.common.stats.mean_sd` as
        ``{"mean", "sd", "n", "values"}``, in meV), ``epochs`` (per seed) and ``stop_reasons``.
    """
    from experiments.common.stats import mean_sd

    def stats(values):
        m, s, n = mean_sd(values)
        return {"mean": m, "sd": s, "n": n, "values": list(values)}

    rows = []
    for name, per_seed in results.items():
        seeds = sorted(per_seed)
        row = {"variant": name, "seeds": seeds, "test": {}}
        for split in splits:
            row["test"][split] = {
                "energy_rmse": stats(
                    [1000 * per_seed[s]["test"][split]["energy_rmse_per_atom"] for s in seeds]
                ),
                "forces_rmse": stats(
                    [1000 * per_seed[s]["test"][split]["forces_rmse"] for s in seeds]
                ),
            }
        row["epochs"] = [per_seed[s]["network"]["epochs"] for s in seeds]
        row["stop_reasons"] = [per_seed[s]["network"]["stop_reason"] for s in seeds]
        rows.append(row)
    return rows


def markdown_table(rows: Sequence[dict], splits: Sequence[str], label: str = "variant") -> str:
    """The rows of :func:`variant_rows` as a markdown table (E RMSE meV/atom, F RMSE meV/Å)."""
    from experiments.common.stats import format_mean_sd

    head = [label, "seeds"]
    for split in splits:
        head += [f"{split} E RMSE (meV/atom)", f"{split} F RMSE (meV/Å)"]
    head += ["epochs", "stopped by"]
    lines = ["| " + " | ".join(head) + " |", "|" + "---|" * len(head)]
    for row in rows:
        cells = [str(row["variant"]), ", ".join(str(s) for s in row["seeds"])]
        for split in splits:
            t = row["test"][split]
            cells += [
                format_mean_sd(t["energy_rmse"]["values"], digits=2),
                format_mean_sd(t["forces_rmse"]["values"]),
            ]
        cells += [
            ", ".join(str(e) for e in row["epochs"]),
            ", ".join(sorted(set(row["stop_reasons"]))),
        ]
        lines.append("| " + " | ".join(cells) + " |")
    return "\n".join(lines) + "\n"


@dataclasses.dataclass(frozen=True)
class Study:
    """A comparison of training settings on single networks trained to convergence.

    Attributes:
        name: the preset name (recorded in the provenance).
        base: the training preset (``nequip_jax/configs``) every variant starts from.
        variants: variant name → ``key=value`` overrides of ``base``.
        seeds: default seeds.
        splits: test splits evaluated.
        max_test_frames: evenly spaced subsample of each test split (``None``: all frames).
        data: data source (``"dft"``).
    """

    name: str
    base: str
    variants: Mapping[str, tuple[str, ...]]
    seeds: tuple[int, ...] = (0, 1)
    splits: tuple[str, ...] = ("test_300K", "test_600K", "test_1200K")
    max_test_frames: int | None = None
    data: str = "dft"


def run_study(
    study: Study,
    workdir: str | Path,
    *,
    seeds: Sequence[int],
    data: str,
    root: Path | None,
    title: str,
    conclude=None,
    reference: str = "",
    log=print,
) -> dict:
    """Train and evaluate every variant and seed of ``study``; write ``results.json`` (with
    ``provenance``, ``networks`` and ``rows``) and ``section.md`` into ``workdir``.

    Args:
        conclude: ``rows -> dict`` with at least ``"text"`` (a sentence for the section),
            stored as ``conclusion``.
        reference: markdown printed after the table (e.g. published numbers).
    """
    from experiments.common.provenance import begin_run, provenance
    from experiments.common.sources import check_source

    start = begin_run()
    workdir = Path(workdir)
    files = check_source(data, root, ("train_300K", *study.splits))
    results = run_variants(
        study.base,
        study.variants,
        seeds,
        workdir,
        splits=study.splits,
        root=root,
        max_test_frames=study.max_test_frames,
        log=log,
    )
    rows = variant_rows(results, study.splits)
    networks = [per_seed[s]["network"] for per_seed in results.values() for s in sorted(per_seed)]
    out = {
        "title": title,
        "base": study.base,
        "variants": {k: list(v) for k, v in study.variants.items()},
        "splits": list(study.splits),
        "max_test_frames": study.max_test_frames,
        "rows": rows,
        "networks": networks,
        "provenance": provenance(
            start,
            preset=study.name,
            seeds=seeds,
            data_source=data,
            data_files={k: v for k, v in files.items()},
        ),
    }
    text = f"## {title}\n\n" + markdown_table(rows, study.splits)
    if reference:
        text += "\n" + reference
    if conclude is not None:
        out["conclusion"] = conclude(rows)
        text += "\n" + out["conclusion"]["text"] + "\n"
    atomic_write_json(workdir / "results.json", out)
    atomic_write_text(workdir / "section.md", text)
    return out


def add_variant_argument(parser) -> None:
    """``--variants NAME ...``: train and report a subset of a study's variants."""
    parser.add_argument(
        "--variants", nargs="+", default=None, help="only these variants (default: all)"
    )


def variant_option(args, runs_folder, tag) -> dict:
    """The ``variants`` keyword of a study's ``run`` from :func:`add_variant_argument`."""
    del runs_folder, tag
    return {"variants": args.variants}


def study_main(name: str, doc: str | None, presets, run, argv=None) -> None:
    """The command line of a single-network study (:func:`experiments.common.cli.experiment_main`
    with ``--variants``)."""
    from experiments.common.cli import experiment_main

    experiment_main(
        name,
        doc,
        presets,
        run,
        argv,
        trains_models=False,
        add_arguments=add_variant_argument,
        extra_options=variant_option,
    )


def study_runner(title: str, *, conclude=None, reference: str = ""):
    """The ``run(config, workdir, *, seeds, data, root)`` of an experiment made of one
    :class:`Study` (see :func:`run_study` for ``title``, ``conclude`` and ``reference``)."""

    def run(
        config: Study,
        workdir: str | Path,
        *,
        seeds: Sequence[int],
        data: str,
        root,
        preset: str | None = None,
        variants: Sequence[str] | None = None,
    ):
        """Train, evaluate and write ``results.json`` / ``section.md`` into ``workdir``
        (``preset``: the preset's name for the provenance, default ``config.name``;
        ``variants``: train and report only these, in the preset's order — the results then
        cover those alone, and a later run with all of them reuses their finished networks).

        Raises:
            ValueError: a variant the preset does not have.
        """
        if preset is not None and preset != config.name:
            config = dataclasses.replace(config, name=preset)
        if variants is not None:
            unknown = sorted(set(variants) - set(config.variants))
            if unknown or not variants:
                raise ValueError(
                    f"variants {unknown or list(variants)}: choose from {list(config.variants)}."
                )
            chosen = {k: v for k, v in config.variants.items() if k in set(variants)}
            config = dataclasses.replace(config, variants=chosen)
        return run_study(
            config,
            workdir,
            seeds=seeds,
            data=data,
            root=root,
            title=title,
            conclude=conclude,
            reference=reference,
        )

    return run
