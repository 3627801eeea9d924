"""Benchmark: Langevin MD of 3BPA on the device (``nequip_jax.md.run_md``) against ASE's
Langevin integrator driving :class:`nequip_jax.calculator.NequIPCalculator`, same model, same
time step, temperature and friction.

Steady-state steps per second, compilation excluded: each run has ``--long`` steps and the rate
is taken over its steps ``--short`` … ``--long`` (the device side runs pieces of ``--short``
steps, one program, and the first piece compiles; the ASE side compiles in its first steps).
One replica, then ``--replicas`` replicas: vmapped in one program on the device against that
many sequential ASE runs. Printed per measurement: the rate, the run's wall time and the
1-minute load average at its start; the last line is the one-replica ratio.

Usage::

    python experiments/bench/md_throughput.py --model runs/train-cpu/model
    python experiments/bench/md_throughput.py --model M --short 50 --long 250 --replicas 4
"""

from __future__ import annotations

import argparse
import os
import sys
import time
from pathlib import Path

import ase.units
import numpy as np
from ase.md.langevin import Langevin
from ase.md.velocitydistribution import MaxwellBoltzmannDistribution, Stationary

from nequip_jax import enable_compilation_cache, load
from nequip_jax.calculator import NequIPCalculator
from nequip_jax.data import load_3bpa
from nequip_jax.md import run_md
from nequip_jax.uncertainty.registry import get_method


def _device(model, atoms, replicas, args) -> float:
    """Replica-steps per second after the first piece of ``--short`` steps (which compiles)."""
    marks = []
    run_md(
        model,
        atoms,
        n_steps=args.long,
        dt_fs=args.dt,
        ensemble="langevin",
        temperature_K=args.temperature,
        friction_per_fs=args.friction,
        replicas=replicas,
        record_every=args.short,
        chunk_steps=args.short,
        seed=0,
        progress=lambda done, total, seconds: marks.append((done, time.perf_counter())),
    )
    (s0, t0), (s1, t1) = marks[0], marks[-1]
    return (s1 - s0) * replicas / (t1 - t0)


def _ase(model, atoms, replicas, args) -> float:
    """Replica-steps per second of steps ``--short`` … ``--long`` of each sequential run."""
    steps, seconds = 0, 0.0
    for r in range(replicas):
        a = atoms.copy()
        a.calc = NequIPCalculator(model)
        rng = np.random.default_rng(r)
        MaxwellBoltzmannDistribution(a, temperature_K=args.temperature, rng=rng)
        Stationary(a)
        dyn = Langevin(
            a,
            args.dt * ase.units.fs,
            temperature_K=args.temperature,
            friction=args.friction / ase.units.fs,
            rng=np.random.default_rng(100 + r),
        )
        dyn.run(args.short)  # compilation and neighbour-budget set-up happen here
        start = time.perf_counter()
        dyn.run(args.long - args.short)
        seconds += time.perf_counter() - start
        steps += args.long - args.short
    return steps / seconds


def _rate(fn, model, atoms, replicas, args, label) -> float:
    load = os.getloadavg()[0]
    start = time.perf_counter()
    rate = fn(model, atoms, replicas, args)
    print(
        f"{label:24s} {rate:8.1f} replica-steps/s (run {time.perf_counter() - start:.1f} s, "
        f"load {load:.2f})",
        flush=True,
    )
    return rate


def main(argv=None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--model", type=Path, required=True, help="trained model folder")
    parser.add_argument("--split", default="test_300K", help="3BPA split of the start frame")
    parser.add_argument("--short", type=int, default=100)
    parser.add_argument("--long", type=int, default=600)
    parser.add_argument("--replicas", type=int, default=8)
    parser.add_argument("--dt", type=float, default=0.5, help="fs")
    parser.add_argument("--temperature", type=float, default=600.0, help="K")
    parser.add_argument("--friction", type=float, default=0.01, help="1/fs")
    args = parser.parse_args(argv)
    enable_compilation_cache()
    model = load(args.model)
    atoms = load_3bpa(args.split, allow_download=False)[0]
    atoms.calc = None
    uncertainty = "none" if model.head is None else get_method(model.head.method).label
    print(
        f"python {sys.version.split()[0]}, {os.cpu_count()} cores, {len(atoms)} atoms, "
        f"dt {args.dt} fs, {args.temperature} K, uncertainty: {uncertainty}"
    )
    ratios = {}
    for replicas in (1, args.replicas):
        device = _rate(_device, model, atoms, replicas, args, f"on-device x{replicas}")
        host = _rate(_ase, model, atoms, replicas, args, f"ASE calculator x{replicas}")
        ratios[replicas] = device / host
        print(f"replicas {replicas}: on-device / ASE = {ratios[replicas]:.2f}", flush=True)
    print(
        f"ratio on-device/ASE steps per second ({args.replicas} replicas): "
        f"{ratios[args.replicas]:.2f}"
    )
    print(f"ratio on-device/ASE steps per second: {ratios[1]:.2f}")


if __name__ == "__main__":
    main()
