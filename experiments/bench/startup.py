"""Benchmark: what the persistent compilation cache saves a user at the start of a command.

Three workloads on one trained model, each as a fresh ``python`` process (imports included, the
wall time a user waits for):

* ``evaluate``: ``nequip-jax evaluate MODEL SPLIT --out ...`` (errors on a 3BPA split);
* ``fit-gmm``: ``nequip-jax fit-gmm MODEL --max-components K`` (the BIC sweep on the training
  features; run on a copy of the model folder);
* ``calculator``: load the model, attach :class:`nequip_jax.calculator.NequIPCalculator` to a
  3BPA frame, one ``get_forces()``; the process also prints the first step's own time.

Each workload runs in three settings, interleaved per repetition: ``off``
(``NEQUIP_JAX_CACHE_DIR=off``: every process compiles), ``cold`` (an empty cache folder: compiles
and writes the cache) and ``warm`` (the folder the cold run filled). Printed per run: wall
seconds and the 1-minute load average at its start; then per workload the ratio off / warm
(above 1: the cache saves time) and cold / off (the cost of writing the cache).

Usage::

    python experiments/bench/startup.py --model runs/train-cpu/model          # ~5-10 min
    python experiments/bench/startup.py --model M --split test_300K --repeats 2

The model folder's parent must hold the run's ``config.yaml`` (as ``nequip-jax train`` writes
it), which ``fit-gmm`` reads to rebuild the training set.
"""

from __future__ import annotations

import argparse
import os
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

WORKLOADS = ("evaluate", "fit-gmm", "calculator")
SETTINGS = ("off", "cold", "warm")

_CALCULATOR = """
import sys, time
t0 = time.perf_counter()
import nequip_jax
from nequip_jax.calculator import NequIPCalculator
from nequip_jax.data import load_3bpa
atoms = load_3bpa(sys.argv[2], allow_download=False)[0]
atoms.calc = NequIPCalculator(nequip_jax.load(sys.argv[1]))
t1 = time.perf_counter()
atoms.get_forces()
t2 = time.perf_counter()
print(f"imports+load {t1 - t0:.2f} s, first step {t2 - t1:.2f} s")
"""


def _command(workload: str, model: Path, split: str, out: Path, k_max: int) -> list[str]:
    cli = [sys.executable, "-m", "nequip_jax.cli"]
    if workload == "evaluate":
        return [*cli, "evaluate", str(model), split, "--out", str(out / "eval.json")]
    if workload == "fit-gmm":
        return [*cli, "fit-gmm", str(model), "--max-components", str(k_max)]
    return [sys.executable, "-c", _CALCULATOR, str(model), split]


def _run(cmd: list[str], cache: str) -> tuple[float, float, str]:
    env = {**os.environ, "NEQUIP_JAX_CACHE_DIR": cache}
    env.pop("JAX_COMPILATION_CACHE_DIR", None)
    load = os.getloadavg()[0]
    start = time.perf_counter()
    done = subprocess.run(cmd, env=env, capture_output=True, text=True)
    seconds = time.perf_counter() - start
    if done.returncode != 0:
        raise SystemExit(f"{' '.join(cmd)} failed:\n{done.stdout}\n{done.stderr}")
    last = done.stdout.strip().splitlines()[-1] if done.stdout.strip() else ""
    return seconds, load, last


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--model", type=Path, required=True, help="trained model folder")
    parser.add_argument("--split", default="test_300K", help="3BPA split for evaluate/calculator")
    parser.add_argument("--max-components", type=int, default=20, help="K_max of fit-gmm")
    parser.add_argument("--repeats", type=int, default=1)
    parser.add_argument("--workloads", nargs="+", choices=WORKLOADS, default=list(WORKLOADS))
    args = parser.parse_args(argv)
    config = args.model.parent / "config.yaml"
    if not (args.model / "potential.json").is_file() or not config.is_file():
        raise SystemExit(
            f"{args.model} is not a trained model folder with the run's config.yaml beside it; "
            "pass --model <workdir>/model of a `nequip-jax train` run."
        )
    print(f"python {sys.version.split()[0]}, {os.cpu_count()} cores, model {args.model.name}")
    times: dict[tuple[str, str], list[float]] = {}
    with tempfile.TemporaryDirectory(prefix="nequip-jax-startup-") as tmp:
        tmp = Path(tmp)
        # fit-gmm saves into the model folder: work on a copy (run folder layout kept).
        shutil.copytree(args.model, tmp / "run" / "model")
        shutil.copy(config, tmp / "run" / "config.yaml")
        model = tmp / "run" / "model"
        for rep in range(args.repeats):
            for workload in args.workloads:
                cache = tmp / f"cache-{workload}-{rep}"
                for setting in SETTINGS:
                    folder = "off" if setting == "off" else str(cache)
                    cmd = _command(workload, model, args.split, tmp, args.max_components)
                    seconds, load, last = _run(cmd, folder)
                    times.setdefault((workload, setting), []).append(seconds)
                    note = f"  [{last}]" if workload == "calculator" else ""
                    print(
                        f"{workload:10s} {setting:4s} rep {rep}: {seconds:7.2f} s "
                        f"(load {load:.2f}){note}",
                        flush=True,
                    )
    print()
    header = ("workload", "cache off (s)", "cold cache (s)", "warm cache (s)", "off / warm")
    print("| " + " | ".join(header) + " | cold / off |")
    print("|---" * (len(header) + 1) + "|")
    for workload in args.workloads:
        off, cold, warm = (statistics.median(times[(workload, s)]) for s in SETTINGS)
        print(
            f"| {workload} | {off:.1f} | {cold:.1f} | {warm:.1f} | {off / warm:.2f}× | "
            f"{cold / off:.2f}× |"
        )


if __name__ == "__main__":
    main()
