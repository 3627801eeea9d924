"""``python -m experiments.demo --preset cpu --seed 0 [--workdir runs/demo]``."""

import argparse

from experiments.demo.run import PRESETS, run
from nequip_jax import enable_compilation_cache


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--preset", choices=sorted(PRESETS), default="cpu")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--workdir", default="runs/demo")
    args = parser.parse_args()
    enable_compilation_cache()
    run(PRESETS[args.preset], args.workdir, seed=args.seed, preset=args.preset)


if __name__ == "__main__":
    main()
