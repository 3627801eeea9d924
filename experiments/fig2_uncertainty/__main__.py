"""Fig. 2: ``python -m experiments.fig2_uncertainty --preset cpu|paper|tiny [--seeds 0 1 2]
[--data dft|xtb]``."""

import argparse
from pathlib import Path

from experiments.common.pipeline import (
    REPO_ROOT,
    add_common_arguments,
    data_root,
    enable_compilation_cache,
    seeds_from_args,
)
from experiments.fig2_uncertainty.run import PRESETS, run


def main(argv=None) -> None:
    parser = argparse.ArgumentParser(
        prog="python -m experiments.fig2_uncertainty", description=__doc__
    )
    add_common_arguments(parser, PRESETS)
    args = parser.parse_args(argv)
    config = PRESETS[args.preset]
    data = args.data or config.data
    runs = REPO_ROOT / "runs"
    enable_compilation_cache(runs / ".xla_cache")
    run(
        config,
        Path(args.workdir or runs / "fig2_uncertainty" / f"{args.preset}-{data}"),
        seeds=seeds_from_args(args, config.seeds),
        data=data,
        root=data_root(data, args.data_root),
        models_dir=Path(args.models or runs / "models" / args.preset),
        verbose=args.verbose,
    )


if __name__ == "__main__":
    main()
