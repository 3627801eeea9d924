"""``python -m experiments.otf --preset cpu|tiny [--workdir runs/otf-cpu] [--set KEY=VALUE]``."""

import argparse

from experiments.otf.run import RUNS, run
from nequip_jax import enable_compilation_cache
from nequip_jax.otf import load_otf_config


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(prog="python -m experiments.otf", description=__doc__)
    parser.add_argument("--preset", choices=["cpu", "tiny"], default="cpu")
    parser.add_argument("--workdir", default=None, help="default runs/otf-<preset>")
    parser.add_argument("--set", action="append", default=[], metavar="KEY=VALUE")
    parser.add_argument("--seed", type=int, default=None, help="replaces the preset's seed")
    parser.add_argument(
        "--runs", nargs="+", choices=RUNS, default=list(RUNS), help="which triggers to run"
    )
    parser.add_argument("--quiet", action="store_true")
    args = parser.parse_args(argv)
    enable_compilation_cache()
    run(
        load_otf_config(args.preset, list(args.set)),
        args.workdir or f"runs/otf-{args.preset}",
        seeds=None if args.seed is None else (args.seed,),
        preset=args.preset,
        runs=args.runs,
        verbose=not args.quiet,
    )


if __name__ == "__main__":
    main()
