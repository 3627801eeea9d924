"""Time to accuracy: this library's ``cpu`` model against the authors' nequip 0.19.1, one budget.

Both sides train the same model on the same data for the same wall-clock budget of training
(default 15 minutes), from the command line a user would type, one after the other in fresh
processes on an otherwise idle machine, and are then scored on the same test set:

- **data**: DFT 3BPA, the ``cpu`` preset's draw of D_train,100^300 (90 training + 10
  validation structures of train_300K for ``--seed``), written to extended-XYZ files that both
  sides read; test_300K (all frames unless ``--test-frames``) for the score.
- **model**: the ``cpu`` preset's hyperparameters: f = 16, l ≤ 1, with parity, 4 layers,
  r_max = 4 Å, 8 Bessel functions, polynomial cutoff p = 6, radial MLP 2 × 64, float32; the
  same per-species energy shifts (least-squares fit of the training energies on species
  counts), energy scale (force RMS of the training set) and neighbour normalisation (mean
  neighbour count of the training set): :func:`nequip_jax.data.compute_statistics`, which the
  JAX side's training calls itself and whose values the reference gets in its config.
- **optimisation**: AMSGrad, learning rate 0.01, batch size 5, loss 1 × MSE(total energy, eV²)
  + 729 × MSE(force components) (the authors' 3BPA weights), ReduceLROnPlateau on the
  validation loss (factor 0.5, patience 25, relative threshold 1e-4, minimum 1e-5), no EMA; the
  model scored is the one with the best validation loss.
- **this library**: ``nequip-jax train cpu`` with ``data.setting=files`` and
  ``optim.max_time_s`` (checked between epochs), then ``nequip-jax evaluate``; the persistent
  compilation cache is off (a cold first run; with it on, a second run compiles nothing).
- **reference**: ``nequip-train`` (Hydra + PyTorch Lightning, ``NequIPGNNModel`` in eager mode,
  the ``NequIPLightningModule`` without EMA) with ``trainer.max_time`` and a ``test`` run on the
  best checkpoint (nequip normalises the loss coefficients to sum to 1, a constant factor
  that Adam and the relative plateau threshold do not see); data loaders in the main process
  (``num_workers: 0``), 2 threads (``OMP_NUM_THREADS``). It runs from ``--torch-python``'s
  environment (a venv with ``torch==2.13.0 nequip==0.19.1``; the project venv has neither).

Remaining model differences are those listed in ``model_throughput.py`` (nequip 0.19 embeds
species into the self-connection and reads the energy out of the last layer's scalars; this
implementation adds the ``feature_dim`` projection of Zhu et al. 2023).

Usage::

    python experiments/bench/time_to_accuracy.py --torch-python TORCH_VENV/bin/python
        [--budget-min 15] [--seed 0] [--test-frames N] [--keep DIR] [--json OUT]
    python experiments/bench/time_to_accuracy.py --collect DIR [--json OUT]  # re-read DIR
    python experiments/bench/time_to_accuracy.py --table OUT   # the README's markdown table

Prints a markdown table with, per side: epochs reached and why training stopped, test_300K
force and energy RMSE, the best validation force RMSE, the training wall time and the whole
command's wall time, with the load average; then the ratios of the test force RMSE (reference
/ this library), of the epochs and of the time per epoch, and the training time each side took
to reach the validation force RMSE both reach (the larger of their two best values; Lightning
logs no times: the reference's epochs are spread evenly over its budget).
"""

from __future__ import annotations

import argparse
import csv
import json
import os
import subprocess
import sys
import tempfile
import time
import warnings
from pathlib import Path

import numpy as np

TYPE_NAMES = ("H", "C", "N", "O")
SPECIES = (1, 6, 7, 8)


def _split(seed: int, workdir: Path, test_frames: int | None) -> dict:
    """Write train/val/test extended-XYZ files; return the shared statistics."""
    import ase.io
    import jax

    from nequip_jax.data import GraphDataset, StandInWarning, compute_statistics, load_3bpa
    from nequip_jax.training import load_config
    from nequip_jax.training.loop import load_training_data, member_keys

    jax.config.update("jax_platforms", "cpu")
    config = load_config("cpu", [f"seed={seed}"])
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", StandInWarning)  # the split also reads the test sets
        train, val = load_training_data(config, member_keys(seed, 0)[0])
    test = load_3bpa("test_300K")
    if test_frames is not None and test_frames < len(test):  # evenly spaced
        test = [test[i] for i in np.linspace(0, len(test) - 1, test_frames).round().astype(int)]
    for name, frames in (("train", train), ("val", val), ("test", test)):
        ase.io.write(workdir / f"{name}.xyz", frames, format="extxyz")
    stats = compute_statistics(GraphDataset(train, config.model.value("r_max"), SPECIES))
    return {
        "config": config,
        "n_train": len(train),
        "n_val": len(val),
        "n_test": len(test),
        "avg_num_neighbors": stats.avg_num_neighbors,
        "energy_shift": dict(zip(TYPE_NAMES, map(float, stats.energy_shift), strict=True)),
        "force_rms": stats.force_rms,
    }


def _run(cmd: list[str], *, env: dict, cwd: Path, log: Path) -> float:
    """Run ``cmd``; its output goes to ``log``. Returns the wall time; raises on failure."""
    start = time.perf_counter()
    with open(log, "w") as out:
        proc = subprocess.run(cmd, env=env, cwd=cwd, stdout=out, stderr=subprocess.STDOUT)
    if proc.returncode != 0:
        tail = log.read_text()[-3000:]
        raise RuntimeError(f"{' '.join(cmd)} failed (exit {proc.returncode}); log {log}:\n{tail}")
    return time.perf_counter() - start


# ----------------------------------------------------------------------------- this library
def _run_jax(work: Path, budget_s: float, seed: int) -> float:
    """``nequip-jax train`` then ``nequip-jax evaluate``; returns the training command's wall."""
    out = work / "jax"
    env = {**os.environ, "NEQUIP_JAX_CACHE_DIR": "off"}
    sets = [
        f"seed={seed}",
        "data.setting=files",
        f"data.train_file={work / 'train.xyz'}",
        f"data.val_file={work / 'val.xyz'}",
        f"optim.max_time_s={budget_s}",
    ]
    cli = [sys.executable, "-m", "nequip_jax.cli"]
    train_cmd = [*cli, "train", "cpu", "--workdir", str(out)]
    for item in sets:
        train_cmd += ["--set", item]
    wall = _run(train_cmd, env=env, cwd=work, log=work / "jax_train.log")
    _run(
        [
            *cli,
            "evaluate",
            str(out / "model"),
            str(work / "test.xyz"),
            "--out",
            str(out / "test.json"),
        ],
        env=env,
        cwd=work,
        log=work / "jax_evaluate.log",
    )
    return wall


def _collect_jax(work: Path) -> dict:
    """The JAX side's numbers, read from its run folder."""
    out = work / "jax"
    summary = json.loads((out / "test.json").read_text())["summary"]
    (network,) = json.loads((out / "summary.json").read_text())["networks"]
    lines = [json.loads(line) for line in (out / "metrics.jsonl").read_text().splitlines()]
    elapsed = np.cumsum([r["time_s"] for r in lines])
    return {
        "epochs": network["epochs"],
        "stop_reason": network["stop_reason"],
        "train_s": float(elapsed[-1]),
        "best_val_forces_rmse": network["best_val_forces_rmse"],
        "test_forces_rmse": summary["forces_rmse"],
        "test_energy_rmse_per_atom": summary["energy_rmse_per_atom"],
        "final_learning_rate": network["final_learning_rate"],
        # (seconds since the start of training, validation force RMSE) after every epoch
        "val_curve": [
            [float(t), r["val_forces_rmse"]] for t, r in zip(elapsed, lines, strict=True)
        ],
    }


# ----------------------------------------------------------------------------- nequip 0.19.1
def _torch_config(work: Path, info: dict, budget_s: float, seed: int) -> dict:
    """The nequip-train configuration of the comparison (a Hydra/OmegaConf dictionary)."""
    model = info["config"].model
    loss = {
        "_target_": "nequip.train.EnergyForceLoss",
        "per_atom_energy": False,
        "coeffs": {"total_energy": 1.0, "forces": 729.0},
    }
    metrics = {
        "_target_": "nequip.train.EnergyForceMetrics",
        "coeffs": {"forces_rmse": 1.0, "per_atom_energy_rmse": 1.0, "total_energy_rmse": None},
    }
    loader = {"_target_": "torch.utils.data.DataLoader", "batch_size": 5, "num_workers": 0}
    monitored = "val0_epoch/weighted_sum"
    hours, rest = divmod(int(budget_s), 3600)
    return {
        "run": ["train", "test"],
        "data": {
            "_target_": "nequip.data.datamodule.ASEDataModule",
            "seed": seed,
            "train_file_path": str(work / "train.xyz"),
            "val_file_path": str(work / "val.xyz"),
            "test_file_path": str(work / "test.xyz"),
            "transforms": [
                {
                    "_target_": "nequip.data.transforms.ChemicalSpeciesToAtomTypeMapper",
                    "model_type_names": list(TYPE_NAMES),
                    "chemical_species_to_atom_type_map": {t: t for t in TYPE_NAMES},
                },
                {
                    "_target_": "nequip.data.transforms.NeighborListTransform",
                    "r_max": model["r_max"],
                },
            ],
            "train_dataloader": {**loader, "shuffle": True},
            "val_dataloader": {**loader, "batch_size": 32},
            "test_dataloader": {**loader, "batch_size": 32},
        },
        "trainer": {
            "_target_": "lightning.Trainer",
            "accelerator": "cpu",
            "devices": 1,
            "max_epochs": 3000,
            "max_time": f"00:{hours:02d}:{rest // 60:02d}:{rest % 60:02d}",
            "check_val_every_n_epoch": 1,
            "log_every_n_steps": 100,
            "enable_progress_bar": False,
            "logger": {
                "_target_": "lightning.pytorch.loggers.CSVLogger",
                "save_dir": str(work / "torch"),
                "name": "csv",
                "version": 0,
            },
            "callbacks": [
                {
                    "_target_": "lightning.pytorch.callbacks.ModelCheckpoint",
                    "monitor": monitored,
                    "dirpath": str(work / "torch"),
                    "filename": "best",
                    "save_last": True,
                }
            ],
        },
        "training_module": {
            "_target_": "nequip.train.NequIPLightningModule",
            "loss": loss,
            "val_metrics": loss,
            "train_metrics": metrics,
            "test_metrics": metrics,
            "optimizer": {"_target_": "torch.optim.Adam", "lr": 0.01, "amsgrad": True},
            "lr_scheduler": {
                "scheduler": {
                    "_target_": "torch.optim.lr_scheduler.ReduceLROnPlateau",
                    "factor": 0.5,
                    "patience": 25,
                    "threshold": 1e-4,
                    "min_lr": 1e-5,
                },
                "monitor": monitored,
                "interval": "epoch",
                "frequency": 1,
            },
            "model": {
                "_target_": "nequip.model.NequIPGNNModel",
                "seed": seed,
                "model_dtype": "float32",
                "type_names": list(TYPE_NAMES),
                "r_max": model["r_max"],
                "num_bessels": model["num_basis"],
                "bessel_trainable": False,
                "polynomial_cutoff_p": model["cutoff_p"],
                "num_layers": model["num_layers"],
                "l_max": model["lmax"],
                "parity": model["parity"],
                "num_features": model["num_features"],
                "radial_mlp_depth": model["radial_mlp_depth"],
                "radial_mlp_width": model["radial_mlp_width"],
                "avg_num_neighbors": info["avg_num_neighbors"],
                "per_type_energy_scales": info["force_rms"],
                "per_type_energy_shifts": info["energy_shift"],
                "per_type_energy_scales_trainable": False,
                "per_type_energy_shifts_trainable": False,
            },
        },
        "global_options": {"allow_tf32": False},
    }


def _csv_rows(path: Path) -> list[dict]:
    with open(path, newline="") as handle:
        return list(csv.DictReader(handle))


def _last_value(rows: list[dict], key: str) -> float:
    values = [float(r[key]) for r in rows if r.get(key) not in (None, "")]
    if not values:
        raise RuntimeError(f"nequip-train logged no {key!r} (columns: {sorted(rows[0])}).")
    return values[-1]


def _run_torch(work: Path, info: dict, budget_s: float, seed: int, python: str) -> float:
    """``nequip-train`` (train, then test on the best checkpoint); returns its wall time."""
    import yaml

    folder = work / "torch"
    folder.mkdir()
    config = _torch_config(work, info, budget_s, seed)
    (folder / "config.yaml").write_text(yaml.safe_dump(config, sort_keys=False))
    train_cli = Path(python).with_name("nequip-train")
    env = {**os.environ, "OMP_NUM_THREADS": "2", "MKL_NUM_THREADS": "2"}
    cmd = [
        str(train_cli),
        "-cp",
        str(folder),
        "-cn",
        "config.yaml",
        f"hydra.run.dir={folder / 'hydra'}",
    ]
    return _run(cmd, env=env, cwd=folder, log=work / "torch_train.log")


def _collect_torch(work: Path, budget_s: float) -> dict:
    """The reference's numbers, read from its CSV log. Lightning logs no times: the epochs of
    the validation curve are placed uniformly over the budget (``trainer.max_time``)."""
    rows = _csv_rows(work / "torch" / "csv" / "version_0" / "metrics.csv")
    epochs = int(max(float(r["epoch"]) for r in rows if r.get("epoch"))) + 1
    val = [
        (int(float(r["epoch"])), float(r["val0_epoch/forces_mse"]) ** 0.5)
        for r in rows
        if r.get("val0_epoch/forces_mse")
    ]
    per_epoch = budget_s / epochs
    return {
        "epochs": epochs,
        "stop_reason": "time_budget" if epochs < 3000 else "max_epochs",
        "train_s": None,  # Lightning logs no duration of the fit; its budget is max_time
        "best_val_forces_rmse": min(v for _, v in val) if val else float("nan"),
        "test_forces_rmse": _last_value(rows, "test0_epoch/forces_rmse"),
        "test_energy_rmse_per_atom": _last_value(rows, "test0_epoch/per_atom_energy_rmse"),
        "final_learning_rate": None,
        "val_curve": [[(e + 1) * per_epoch, v] for e, v in val],
    }


def time_to_reach(curve: list, target: float) -> float | None:
    """Seconds of training until the validation force RMSE of ``curve`` (``[[t, rmse], ...]``)
    first reaches ``target`` (``None``: never)."""
    for t, value in curve:
        if value <= target:
            return float(t)
    return None


# ----------------------------------------------------------------------------- driver
def markdown_table(results: dict) -> str:
    """The stored results of a run as a markdown table (one row per side, then the ratios)."""
    names = {"jax": "nequip-jax (this library)", "torch": "nequip 0.19.1 (nequip-train)"}
    lines = [
        "| code | epochs (stopped by) | test_300K F RMSE (meV/Å) | test_300K E RMSE (meV/atom) "
        "| best val F RMSE (meV/Å) | training (s) | command wall (s) | load average start → end |",
        "|---|---|---|---|---|---|---|---|",
    ]
    for side in ("jax", "torch"):
        if side not in results:
            continue
        r = results[side]
        train = (
            f"{results['budget_s']:.0f} (max_time)"
            if r["train_s"] is None
            else f"{r['train_s']:.0f}"
        )
        lines.append(
            f"| {names[side]} | {r['epochs']} ({r['stop_reason']}) "
            f"| {1e3 * r['test_forces_rmse']:.1f} | {1e3 * r['test_energy_rmse_per_atom']:.2f} "
            f"| {1e3 * r['best_val_forces_rmse']:.1f} | {train} | {r['command_s']:.0f} "
            f"| {r['load_start'][0]:.2f} → {r['load_end'][0]:.2f} |"
        )
    if "ratios" in results:
        r = results["ratios"]
        reach = (
            "does not reach it"
            if r["time_to_target_jax_s"] is None
            else f"reaches it after {r['time_to_target_jax_s']:.0f} s, nequip after "
            f"{r['time_to_target_torch_s']:.0f} s ({r['time_to_target_torch_over_jax']:.1f}×)"
        )
        lines += [
            "",
            f"Budget {results['budget_s'] / 60:g} min of training per side, seed "
            f"{results['seed']}, {results['n_test']} test_300K frames. Test force RMSE nequip / "
            f"ours {r['forces_rmse_torch_over_jax']:.2f}×; epochs ours / nequip "
            f"{r['epochs_jax_over_torch']:.2f}×; time per epoch nequip / ours "
            f"{r['epoch_time_torch_over_jax']:.2f}×. Training time to the validation force RMSE "
            f"both reach ({1e3 * r['target_val_forces_rmse']:.1f} meV/Å, the larger of the two "
            f"best values): this library {reach}.",
        ]
    return "\n".join(lines) + "\n"


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--torch-python", default=None, help="interpreter with nequip 0.19.1")
    parser.add_argument("--budget-min", type=float, default=15.0, help="training budget, min")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--test-frames", type=int, default=None, help="subsample test_300K")
    parser.add_argument("--sides", default="jax,torch", help="which sides to run, in order")
    parser.add_argument("--json", default=None, help="also write the results here")
    parser.add_argument("--keep", default=None, help="keep the run folders here")
    parser.add_argument("--table", default=None, help="print the table of a stored run; exit")
    parser.add_argument(
        "--collect", default=None, help="recompute the results from a --keep folder; no training"
    )
    args = parser.parse_args(argv)
    if args.table:
        print(markdown_table(json.loads(Path(args.table).read_text())), end="")
        return 0
    if args.collect:
        results = collect(Path(args.collect))
    else:
        sides = args.sides.split(",")
        unknown = sorted(set(sides) - {"jax", "torch"})
        if unknown:
            parser.error(f"--sides: unknown sides {unknown} (jax, torch).")
        if "torch" in sides and not (args.torch_python and Path(args.torch_python).is_file()):
            parser.error(f"--torch-python {args.torch_python}: no such interpreter (torch side).")
        with tempfile.TemporaryDirectory() as tmp:
            work = Path(args.keep or tmp)
            work.mkdir(parents=True, exist_ok=True)
            run(work, sides, 60.0 * args.budget_min, args.seed, args.test_frames, args.torch_python)
            results = collect(work)
    _report(results)
    if args.json:
        from nequip_jax._io import atomic_write_json

        atomic_write_json(args.json, results)
    return 0


def run(work: Path, sides, budget_s: float, seed: int, test_frames, torch_python) -> None:
    """Train both sides one after the other in ``work``; each side's command wall time and load
    averages go to ``work/run_<side>.json``, the shared settings to ``work/run.json``."""
    from nequip_jax._io import atomic_write_json

    sys.path.insert(0, str(Path(__file__).resolve().parents[2]))  # the checkout's experiments
    from experiments.common.provenance import git_commit, machine_info

    info = _split(seed, work, test_frames)
    atomic_write_json(
        work / "run.json",
        {
            "commit": git_commit(),
            "machine": machine_info(os.getloadavg()),
            "reference": _reference_versions(torch_python) if "torch" in sides else None,
            "budget_s": budget_s,
            "seed": seed,
            "n_train": info["n_train"],
            "n_val": info["n_val"],
            "n_test": info["n_test"],
            "sides": list(sides),
            "cpus": os.cpu_count(),
        },
    )
    print(
        f"# DFT 3BPA D_train,100^300 seed {seed}: {info['n_train']} train + {info['n_val']} "
        f"val, test_300K {info['n_test']} frames; budget {budget_s / 60:g} min of training per "
        f"side; {os.cpu_count()} CPUs",
        flush=True,
    )
    for side in sides:
        load = os.getloadavg()
        if side == "jax":
            wall = _run_jax(work, budget_s, seed)
        else:
            wall = _run_torch(work, info, budget_s, seed, torch_python)
        atomic_write_json(
            work / f"run_{side}.json",
            {"command_s": wall, "load_start": load, "load_end": os.getloadavg()},
        )


def _reference_versions(python: str) -> dict:
    code = "import json, torch, nequip; print(json.dumps([torch.__version__, nequip.__version__]))"
    out = subprocess.run([python, "-c", code], check=True, capture_output=True, text=True)
    torch_version, nequip_version = json.loads(out.stdout.strip().splitlines()[-1])
    return {"torch": torch_version, "nequip": nequip_version}


def collect(work: Path) -> dict:
    """The results of a run folder: per side its numbers and, with both sides, the ratios."""
    settings = json.loads((work / "run.json").read_text())
    results: dict = dict(settings)
    for side in settings["sides"]:
        entry = _collect_jax(work) if side == "jax" else _collect_torch(work, settings["budget_s"])
        entry.update(json.loads((work / f"run_{side}.json").read_text()))
        results[side] = entry
    if "jax" in results and "torch" in results:
        j, t = results["jax"], results["torch"]
        # The accuracy both sides reach: the larger of their best validation force RMSEs.
        target = max(t["best_val_forces_rmse"], j["best_val_forces_rmse"])
        t_torch = time_to_reach(t["val_curve"], target)
        t_jax = time_to_reach(j["val_curve"], target)
        results["ratios"] = {
            "forces_rmse_torch_over_jax": t["test_forces_rmse"] / j["test_forces_rmse"],
            "epochs_jax_over_torch": j["epochs"] / t["epochs"],
            # seconds per epoch (the reference's from its budget, compilation in ours)
            "epoch_time_torch_over_jax": (settings["budget_s"] / t["epochs"])
            / (j["train_s"] / j["epochs"]),
            "target_val_forces_rmse": target,
            "time_to_target_torch_s": t_torch,
            "time_to_target_jax_s": t_jax,
            "time_to_target_torch_over_jax": None if t_jax is None else t_torch / t_jax,
        }
    return results


def _report(results: dict) -> None:
    print(markdown_table(results), end="", flush=True)


if __name__ == "__main__":
    np.seterr(all="ignore")
    raise SystemExit(main())
