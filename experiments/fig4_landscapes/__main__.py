"""Fig. 4: ``python -m experiments.fig4_landscapes --preset cpu|paper|tiny [--seeds 0 1 2]
[--data xtb]`` (the β scans exist only in the GFN2-xTB twin, data/3bpa_xtb)."""

import argparse
from pathlib import Path

from experiments.common.pipeline import (
    REPO_ROOT,
    add_common_arguments,
    data_root,
    enable_compilation_cache,
    seeds_from_args,
)
from experiments.fig4_landscapes.run import PRESETS, run


def main(argv=None) -> None:
    parser = argparse.ArgumentParser(
        prog="python -m experiments.fig4_landscapes", description=__doc__
    )
    add_common_arguments(parser, PRESETS)
    args = parser.parse_args(argv)
    config = PRESETS[args.preset]
    data = args.data or config.data
    runs = REPO_ROOT / "runs"
    enable_compilation_cache(runs / ".xla_cache")
    run(
        config,
        Path(args.workdir or runs / "fig4_landscapes" / f"{args.preset}-{data}"),
        seeds=seeds_from_args(args, config.seeds),
        data=data,
        root=data_root(data, args.data_root),
        models_dir=Path(args.models or runs / "models" / args.preset),
        verbose=args.verbose,
    )


if __name__ == "__main__":
    main()
