"""``nequip-jax`` command line: parses arguments and calls the library, nothing more."""

from __future__ import annotations

import argparse
import sys
import warnings
from pathlib import Path

import jax
import numpy as np

__all__ = ["main"]


def _splits_table(args: argparse.Namespace) -> int:
    from nequip_jax.data import SPLITS, DataError, StandInWarning, load_3bpa, paper_split

    rows = []
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always", StandInWarning)
        for split in SPLITS:
            try:
                frames = load_3bpa(split, args.root, allow_download=False)
            except DataError as err:
                rows.append((split, "-", "-", "-", str(err).splitlines()[0]))
                continue
            energies = np.array([a.get_potential_energy() for a in frames])
            forces = np.concatenate([a.get_forces() for a in frames])
            rows.append(
                (
                    split,
                    str(len(frames)),
                    f"{energies.max() - energies.min():.3f}",
                    f"{np.sqrt(np.mean(forces**2)):.3f}",
                    "stand-in" if split == "test_1200K" and caught else "",
                )
            )
    print("| split | frames | energy range (eV) | force RMS (eV/Å) | note |")
    print("|---|---|---|---|---|")
    for row in rows:
        print("| " + " | ".join(row) + " |")
    for w in caught:
        print(f"note: {w.message}")
    print()
    print(f"Paper splits (seed {args.seed}):")
    print("| setting | n_train | train | val | pool | tests |")
    print("|---|---|---|---|---|---|")
    key = jax.random.key(args.seed)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", StandInWarning)
        for setting in ("300K", "mixed"):
            for n_train in (50, 100):
                split = paper_split(setting, n_train, key=key, root=args.root)
                tests = ", ".join(f"{k}:{len(v)}" for k, v in split.test.items())
                print(
                    f"| {setting} | {n_train} | {len(split.train)} | {len(split.val)} | "
                    f"{len(split.pool)} | {tests} |"
                )
    return 0


def _train(args: argparse.Namespace) -> int:
    from nequip_jax.training import load_config, train

    config = load_config(args.config, args.set or [])
    workdir = args.workdir or f"runs/{Path(str(args.config)).stem}"
    potential = train(config, workdir, resume=args.resume)
    print(f"saved {workdir}/model (epoch {potential.metadata.get('epoch')})")
    if args.evaluate:
        from nequip_jax.data import load_3bpa
        from nequip_jax.evaluate import evaluate_potential

        rows = []
        for split in config.data.test_splits:
            with warnings.catch_warnings():
                warnings.simplefilter("ignore")
                frames = load_3bpa(split, config.data.root)
            result = evaluate_potential(potential, frames)
            _write_json(Path(workdir) / f"eval_{split}.json", result)
            rows.append((split, result["summary"]))
        _print_summary(rows)
    return 0


def _write_json(path: Path, obj) -> None:
    from nequip_jax._io import atomic_write_json

    atomic_write_json(path, obj)


def _print_summary(rows) -> None:
    print(
        "| data | structures | E RMSE (meV/atom) | F RMSE (meV/Å) | F MAE (meV/Å) "
        "| mean ε (meV/Å) |"
    )
    print("|---|---|---|---|---|---|")
    for name, s in rows:
        print(
            f"| {name} | {s['n_structures']} | {1000 * s['energy_rmse_per_atom']:.2f} | "
            f"{1000 * s['forces_rmse']:.1f} | {1000 * s['forces_mae']:.1f} | "
            f"{1000 * s['mean_eps']:.1f} |"
        )


def _load_frames(spec: str, root: str | None):
    from nequip_jax.data import SPLITS, load_3bpa, read_structures

    if spec in SPLITS:
        return load_3bpa(spec, root)
    return read_structures(spec)


def _load_model(path: str):
    """A saved Potential (``model/``) or Ensemble (``ensemble/``) folder."""
    from nequip_jax.model import load
    from nequip_jax.model.ensemble import Ensemble

    if (Path(path) / "ensemble.json").is_file():
        return Ensemble.load(path)
    return load(path)


def _training_set(args: argparse.Namespace, model_dir: Path, command: str):
    """The run's training structures and the key of a head's fit (from the run's seed)."""
    from nequip_jax.training import load_config, load_training_data
    from nequip_jax.training.loop import member_keys

    config_path = Path(args.config) if args.config else model_dir.parent / "config.yaml"
    if not args.config and not config_path.is_file():
        raise SystemExit(
            f"{command} rebuilds the training set from the run's config, and there is none at "
            f"{config_path} (the folder above {model_dir}); pass --config CONFIG.yaml."
        )
    config = load_config(config_path)
    train_atoms, _ = load_training_data(config, member_keys(config.seed, 0)[0])
    return train_atoms, jax.random.fold_in(jax.random.key(config.seed), 7)


def _fit_gmm(args: argparse.Namespace) -> int:
    from nequip_jax.uncertainty.gmm_head import fit_gmm_uncertainty, format_selection_table

    model_dir = Path(args.model)
    potential = _load_model(model_dir)
    train_atoms, key = _training_set(args, model_dir, "fit-gmm")
    fitted, table = fit_gmm_uncertainty(
        potential, train_atoms, key=key, max_components=args.max_components
    )
    chosen = fitted.head.state.weights.shape[0]
    print(format_selection_table(table, chosen))
    print(f"chosen K = {chosen} (lowest BIC) on {sum(len(a) for a in train_atoms)} atoms")
    fitted.save(model_dir)
    print(f"saved the GMM with {model_dir}")
    return 0


def _fit_uncertainty(args: argparse.Namespace) -> int:
    from nequip_jax.uncertainty.protocol import ModelOutputs
    from nequip_jax.uncertainty.registry import get_method

    method = get_method(args.method)
    if method.model != "potential":
        raise SystemExit(
            f"--method {args.method} scores an ensemble and has nothing to fit on one model; "
            "load the ensemble folder in the calculator or `nequip-jax md` instead."
        )
    model_dir = Path(args.model)
    potential = _load_model(model_dir)
    train_atoms, key = _training_set(args, model_dir, "fit-uncertainty")
    features = np.concatenate(potential.predict(train_atoms)["features"])
    state = method.fit(ModelOutputs(features=features), key=key)
    potential.with_head(method.name, state).save(model_dir)
    print(f"fitted {method.label} on {len(features)} atoms: {method.describe(state)}")
    print(f"saved it as the head of {model_dir} (replacing any previous head)")
    return 0


def _md(args: argparse.Namespace) -> int:
    import io

    import ase.io

    from nequip_jax._io import atomic_write_text
    from nequip_jax.data import read_structures
    from nequip_jax.md import run_md

    model = _load_model(args.model)
    frames = read_structures(args.structure, require_energy=False, require_forces=False)
    if not 0 <= args.frame < len(frames):
        raise SystemExit(
            f"{args.structure} has {len(frames)} frames; --frame {args.frame} is not one."
        )
    atoms = frames[args.frame]
    atoms.calc = None

    def progress(done: int, total: int, seconds: float) -> None:
        rate = done * args.replicas / seconds if seconds > 0 else float("nan")
        print(f"step {done}/{total} ({args.replicas} replicas), {rate:.1f} steps/s", flush=True)

    try:
        result = run_md(
            model,
            atoms,
            n_steps=args.steps,
            dt_fs=args.dt,
            ensemble=args.ensemble,
            temperature_K=args.temperature,
            friction_per_fs=args.friction,
            replicas=args.replicas,
            seed=args.seed,
            record_every=args.record_every,
            stop_uncertainty=args.stop_uncertainty,
            skin=args.skin,
            chunk_steps=args.chunk_steps,
            progress=progress,
        )
    except (ValueError, TypeError) as err:
        raise SystemExit(f"nequip-jax md: {err}") from None
    buffer = io.StringIO()
    for r, replica in enumerate(result.frames):
        for frame in replica:
            frame.info["replica"] = r
        ase.io.write(buffer, replica, format="extxyz")
    atomic_write_text(args.out, buffer.getvalue())
    summary_path = Path(args.summary or Path(args.out).with_suffix(".json"))
    summary = {
        "model": str(args.model),
        "structure": f"{args.structure}@{args.frame}",
        "ensemble": args.ensemble,
        "dt_fs": args.dt,
        "temperature_K": args.temperature,
        "seed": args.seed,
        "stop_uncertainty": args.stop_uncertainty,
        **result.summary(),
    }
    _write_json(summary_path, summary)
    stops = [s for s in summary["stop_step"] if s is not None]
    print(
        f"{int(result.steps.sum())} steps in {result.seconds:.1f} s "
        f"({result.steps_per_second:.1f} steps/s); "
        + (f"{len(stops)} replica(s) stopped on the uncertainty; " if stops else "")
        + f"trajectory {args.out}, summary {summary_path}"
    )
    return 0


def _export(args: argparse.Namespace) -> int:
    from nequip_jax.export import METADATA_FILE, PROGRAM_FILE, export_potential
    from nequip_jax.model import Potential

    potential = _load_model(Path(args.model))
    if not isinstance(potential, Potential):
        raise SystemExit(
            f"{args.model} is an ensemble; export takes a single potential with an uncertainty "
            "head (<workdir>/model after `nequip-jax fit-gmm` or `fit-uncertainty`)."
        )
    try:
        out = export_potential(potential, args.out, platforms=args.platforms)
    except ValueError as err:
        raise SystemExit(f"{args.model}: {err}") from None
    size = (out / PROGRAM_FILE).stat().st_size
    print(
        f"wrote {out / PROGRAM_FILE} ({size / 1e6:.2f} MB, for {', '.join(args.platforms)}) "
        f"and {out / METADATA_FILE}"
    )
    return 0


def _train_ensemble(args: argparse.Namespace) -> int:
    from nequip_jax.training import load_config
    from nequip_jax.training.distributed import initialize, is_writer, member_mesh
    from nequip_jax.training.ensemble import load_variants, train_ensemble

    if args.distributed:
        try:
            index, count = initialize(args.coordinator, args.num_processes, args.process_id)
        except ValueError as err:
            raise SystemExit(f"--distributed: {err}") from None
        print(f"process {index} of {count}: {len(jax.devices())} devices in all", flush=True)
    config = load_config(args.config, args.set or [])
    workdir = args.workdir or f"runs/{Path(str(args.config)).stem}-ensemble"
    variants = load_variants(args.diverse) if args.diverse else None
    mesh = member_mesh() if args.shard or args.distributed else None
    ensemble = train_ensemble(
        config,
        workdir,
        n_members=args.members,
        variants=variants,
        resume=args.resume,
        mesh=mesh,
    )
    if is_writer():
        print(f"saved {workdir}/ensemble ({ensemble.n_members} members)")
    return 0


def _evaluate(args: argparse.Namespace) -> int:
    from nequip_jax.evaluate import evaluate_potential

    potential = _load_model(args.model)
    frames = _load_frames(args.data, args.root)
    result = evaluate_potential(potential, frames, batch_size=args.batch_size)
    _write_json(Path(args.out), result)
    _print_summary([(args.data, result["summary"])])
    return 0


def _otf(args: argparse.Namespace) -> int:
    from nequip_jax.otf import load_otf_config, markdown_table, plot_trace, run_otf

    config = load_otf_config(args.config, args.set or [])
    workdir = Path(args.workdir or f"runs/otf-{Path(str(args.config)).stem}-{config.trigger}")
    if args.dask_scheduler is None:
        summary = run_otf(config, workdir, cache_dir=args.cache)
    else:
        from distributed import Client

        with Client(args.dask_scheduler) as client:
            summary = run_otf(config, workdir, cache_dir=args.cache, executor=client.get_executor())
    plot_trace(workdir, workdir / "trace.png")
    print(markdown_table({config.trigger: summary}, list(config.test_splits)))
    print(f"events: {workdir}/events.jsonl, plot: {workdir}/trace.png")
    return 0 if summary["done"] else 3


def _build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="nequip-jax", description=__doc__)
    sub = parser.add_subparsers(dest="command", required=True)

    p = sub.add_parser("splits", help="print a table of the 3BPA splits")
    p.add_argument("--root", default=None, help="data folder searched first")
    p.add_argument("--seed", type=int, default=0)
    p.set_defaults(func=_splits_table)

    p = sub.add_parser("train", help="train a model from a YAML config or preset")
    p.add_argument("config", help="YAML file or preset name (cpu, paper)")
    p.add_argument("--set", action="append", metavar="KEY=VALUE", help="override a config value")
    p.add_argument("--workdir", default=None, help="output folder (default runs/<config name>)")
    p.add_argument("--resume", action="store_true", help="continue from <workdir>/last.ckpt")
    p.add_argument(
        "--evaluate", action="store_true", help="evaluate on data.test_splits afterwards"
    )
    p.set_defaults(func=_train)

    p = sub.add_parser("evaluate", help="errors of a saved model on a split or an xyz file")
    p.add_argument("model", help="model folder (<workdir>/model)")
    p.add_argument("data", help="3BPA split name or extended-XYZ file")
    p.add_argument("--out", required=True, help="JSON file for per-structure/per-atom errors")
    p.add_argument("--root", default=None)
    p.add_argument("--batch-size", type=int, default=32)
    p.set_defaults(func=_evaluate)

    p = sub.add_parser("fit-gmm", help="fit the GMM uncertainty of a trained model (BIC)")
    p.add_argument("model", help="model folder (<workdir>/model); the GMM is saved into it")
    p.add_argument("--max-components", type=int, default=49)
    p.add_argument("--config", default=None, help="run config (default <model>/../config.yaml)")
    p.set_defaults(func=_fit_gmm)

    p = sub.add_parser(
        "fit-uncertainty", help="fit any registered single-model uncertainty method as the head"
    )
    p.add_argument("model", help="model folder (<workdir>/model); the head is saved into it")
    p.add_argument("--method", required=True, help="registered method, e.g. llpr or gmm")
    p.add_argument("--config", default=None, help="run config (default <model>/../config.yaml)")
    p.set_defaults(func=_fit_uncertainty)

    p = sub.add_parser("md", help="molecular dynamics on the device with per-atom uncertainty")
    p.add_argument("model", help="model folder (a potential, with a GMM for the NLL) or ensemble")
    p.add_argument("structure", help="extended-XYZ file with the start geometry (a molecule)")
    p.add_argument("--frame", type=int, default=0, help="frame of the file (default 0)")
    p.add_argument("--steps", type=int, required=True, help="steps per replica")
    p.add_argument("--dt", type=float, default=0.5, help="time step, fs (default 0.5)")
    p.add_argument("--ensemble", choices=["nve", "langevin"], default="nve")
    p.add_argument("--temperature", type=float, default=None, help="K: initial draw, bath")
    p.add_argument("--friction", type=float, default=0.01, help="Langevin friction, 1/fs")
    p.add_argument("--replicas", type=int, default=1, help="copies run vmapped in one program")
    p.add_argument("--stop-uncertainty", type=float, default=None, help="stop threshold")
    p.add_argument("--record-every", type=int, default=10, help="steps between frames")
    p.add_argument("--skin", type=float, default=0.5, help="neighbour-list skin, Å")
    p.add_argument("--chunk-steps", type=int, default=1000, help="steps per device call")
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--out", required=True, help="trajectory (extended XYZ, all replicas)")
    p.add_argument("--summary", default=None, help="JSON summary (default: <out>.json)")
    p.set_defaults(func=_md)

    p = sub.add_parser(
        "export", help="write a potential + GMM as a jax.export program (any number of atoms)"
    )
    p.add_argument("model", help="model folder with a GMM (after fit-gmm)")
    p.add_argument("out", help="output folder (potential.jaxexport, metadata.json)")
    p.add_argument(
        "--platforms",
        nargs="+",
        default=["cpu", "cuda"],
        help="platforms to lower for (cpu, cuda, rocm, tpu; default cpu cuda)",
    )
    p.set_defaults(func=_export)

    p = sub.add_parser("train-ensemble", help="train a vmapped deep ensemble")
    p.add_argument("config", help="YAML file or preset name")
    p.add_argument("--members", type=int, default=10, help="traditional members")
    p.add_argument("--diverse", default=None, help="YAML list of variants (one member each)")
    p.add_argument("--set", action="append", metavar="KEY=VALUE")
    p.add_argument("--workdir", default=None)
    p.add_argument("--resume", action="store_true")
    p.add_argument("--shard", action="store_true", help="lay members over all devices")
    p.add_argument(
        "--distributed",
        action="store_true",
        help="one of several processes (hosts): members over the devices of all of them; the "
        "settings below, or JAX_COORDINATOR_ADDRESS/JAX_NUM_PROCESSES/JAX_PROCESS_ID, or SLURM",
    )
    p.add_argument("--coordinator", default=None, metavar="HOST:PORT", help="process 0's address")
    p.add_argument("--num-processes", type=int, default=None)
    p.add_argument("--process-id", type=int, default=None)
    p.set_defaults(func=_train_ensemble)

    p = sub.add_parser("demo", help="the project's main job (currently: the 3BPA split table)")
    p.add_argument("--root", default=None)
    p.add_argument("--seed", type=int, default=0)
    p.set_defaults(func=_splits_table)

    p = sub.add_parser("otf", help="on-the-fly active learning in Langevin MD (resumable)")
    p.add_argument("config", help="YAML file or OTF preset name (cpu, tiny)")
    p.add_argument("--set", action="append", metavar="KEY=VALUE", help="e.g. trigger=ensemble")
    p.add_argument("--workdir", default=None, help="default runs/otf-<config>-<trigger>")
    p.add_argument("--cache", default=None, help="folder of labelled sets and initial models")
    p.add_argument(
        "--dask-scheduler",
        default=None,
        metavar="ADDRESS",
        help="label on a Dask cluster (e.g. tcp://head:8786) instead of in this process",
    )
    p.set_defaults(func=_otf)
    return parser


def main(argv: list[str] | None = None) -> int:
    from nequip_jax._cache import enable_compilation_cache

    args = _build_parser().parse_args(argv)
    enable_compilation_cache()  # NEQUIP_JAX_CACHE_DIR=off turns it off
    return int(args.func(args) or 0)


if __name__ == "__main__":
    sys.exit(main())
