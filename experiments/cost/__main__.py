"""Cost table: ``python -m experiments.cost --preset cpu|paper|tiny [--seeds 0 1 2]
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
from experiments.cost.run import PRESETS, run


def main(argv=None) -> None:
    parser = argparse.ArgumentParser(prog="python -m experiments.cost", description=__doc__)
    add_common_arguments(parser, PRESETS)
    args = parser.parse_args(argv)
    config = PRESETS[args.preset]
    data = args.data or config.data
    runs = REPO_ROOT / "runs"
    enable_compilation_cache(runs / ".xla_cache")
    run(
        config,
        Path(args.workdir or runs / "cost" / f"{args.preset}-{data}"),
        seeds=seeds_from_args(args, config.seeds),
        data=data,
        root=data_root(data, args.data_root),
    )


if __name__ == "__main__":
    main()
