"""The experiments' shared command line and environment."""

from __future__ import annotations

import argparse
from collections.abc import Callable, Mapping, Sequence
from pathlib import Path
from typing import Any

import jax
import numpy as np

from experiments.common.sources import REPO_ROOT, data_root
from nequip_jax._cache import enable_compilation_cache

__all__ = [
    "add_common_arguments",
    "subsample",
    "experiment_main",
    "seeds_from_args",
    "hardware_note",
]


def add_common_arguments(parser: argparse.ArgumentParser, presets: Sequence[str]) -> None:
    """``--preset``, ``--seed``/``--seeds``, ``--data``, ``--data-root``, ``--workdir``,
    ``--models``, ``--verbose``."""
    parser.add_argument("--preset", choices=sorted(presets), default="cpu")
    parser.add_argument("--seed", type=int, default=None, help="run a single seed")
    parser.add_argument("--seeds", type=int, nargs="+", default=None, help="seeds to run")
    parser.add_argument("--data", choices=("dft", "xtb"), default=None)
    parser.add_argument(
        "--data-root", default=None, help="folder replacing the data source's default folder"
    )
    parser.add_argument("--workdir", default=None, help="output folder (default runs/<name>)")
    parser.add_argument(
        "--models", default=None, help="cache of trained models (default runs/models)"
    )
    parser.add_argument("--verbose", action="store_true", help="training progress")


def subsample(frames: list, n: int | None) -> list:
    """``n`` evenly spaced frames of ``frames`` (all of them when ``n`` is None or larger)."""
    if n is None or n >= len(frames):
        return list(frames)
    index = np.linspace(0, len(frames) - 1, n).round().astype(int)
    return [frames[i] for i in index]


def experiment_main(
    name: str,
    doc: str | None,
    presets: Mapping[str, Any],
    run: Callable[..., Any],
    argv: Sequence[str] | None = None,
    *,
    trains_models: bool = True,
    add_arguments: Callable[[argparse.ArgumentParser], None] | None = None,
    extra_options: Callable[[argparse.Namespace, Path, str], dict] | None = None,
) -> None:
    """Command line of one experiment (``python -m experiments.<name>``).

    Parses the common arguments (:func:`add_common_arguments`) and calls ``run(config, workdir,
    seeds=..., data=..., root=..., preset=..., [models_dir=..., verbose=...], **extra)`` with the
    outputs in ``runs/<name>/<preset>-<data>`` unless ``--workdir`` is given.

    Args:
        name: the experiment's package below ``experiments``.
        doc: the usage text (the ``__main__`` module's docstring).
        presets: preset name → config (each with a ``seeds`` and a ``data`` attribute).
        run: the experiment's ``run`` function.
        argv: arguments (``None``: ``sys.argv[1:]``).
        trains_models: pass ``models_dir`` (``--models``, default ``runs/models/<preset>``) and
            ``verbose``.
        add_arguments: adds the experiment's own arguments to the parser.
        extra_options: ``(args, runs_folder, "<preset>-<data>") -> dict`` of further keyword
            arguments of ``run``.
    """
    parser = argparse.ArgumentParser(prog=f"python -m experiments.{name}", description=doc)
    add_common_arguments(parser, presets)
    if add_arguments is not None:
        add_arguments(parser)
    args = parser.parse_args(argv)
    config = presets[args.preset]
    data = args.data or config.data
    runs = REPO_ROOT / "runs"
    enable_compilation_cache()
    tag = f"{args.preset}-{data}"
    options: dict[str, Any] = {
        "seeds": seeds_from_args(args, config.seeds),
        "data": data,
        "root": data_root(data, args.data_root),
        "preset": args.preset,
    }
    if trains_models:
        options["models_dir"] = Path(args.models or runs / "models" / args.preset)
        options["verbose"] = args.verbose
    if extra_options is not None:
        options.update(extra_options(args, runs, tag))
    run(config, Path(args.workdir or runs / name / tag), **options)


def seeds_from_args(args: argparse.Namespace, default: Sequence[int]) -> tuple[int, ...]:
    """``--seeds`` if given, else ``--seed``, else the preset's ``default`` seeds."""
    if args.seeds:
        return tuple(args.seeds)
    if args.seed is not None:
        return (args.seed,)
    return tuple(default)


def hardware_note() -> str:
    """One line: device kind, CPU count and load average at the time of the call."""
    import os

    load = os.getloadavg() if hasattr(os, "getloadavg") else (float("nan"),) * 3
    return (
        f"{jax.devices()[0].platform} ({os.cpu_count()} cores, jax {jax.__version__}), "
        f"load average {load[0]:.1f}"
    )
