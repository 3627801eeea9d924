"""``nequip-jax`` command line: parses arguments and calls the library, nothing more."""

from __future__ import annotations

import argparse
import sys
import warnings

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


def _build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="nequip-jax", description=__doc__)
    sub = parser.add_subparsers(dest="command", required=True)

    p = sub.add_parser("splits", help="print a table of the 3BPA splits")
    p.add_argument("--root", default=None, help="data folder searched first")
    p.add_argument("--seed", type=int, default=0)
    p.set_defaults(func=_splits_table)

    p = sub.add_parser("demo", help="the project's main job (currently: the 3BPA split table)")
    p.add_argument("--root", default=None)
    p.add_argument("--seed", type=int, default=0)
    p.set_defaults(func=_splits_table)
    return parser


def main(argv: list[str] | None = None) -> int:
    args = _build_parser().parse_args(argv)
    return int(args.func(args) or 0)


if __name__ == "__main__":
    sys.exit(main())
