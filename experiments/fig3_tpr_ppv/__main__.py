"""Fig. 3: ``python -m experiments.fig3_tpr_ppv --preset cpu|paper|tiny [--seeds 0 1 2]
[--data dft|xtb]`` (reuses the models and predictions of ``experiments.fig2_uncertainty``)."""

import argparse
from pathlib import Path

from experiments.common.pipeline import (
    REPO_ROOT,
    add_common_arguments,
    data_root,
    enable_compilation_cache,
    seeds_from_args,
)
from experiments.fig3_tpr_ppv.run import PRESETS, run


def main(argv=None) -> None:
    parser = argparse.ArgumentParser(prog="python -m experiments.fig3_tpr_ppv", description=__doc__)
    add_common_arguments(parser, PRESETS)
    parser.add_argument(
        "--predictions",
        default=None,
        help="prediction cache (default: that of the Fig. 2 run with the same preset and data)",
    )
    args = parser.parse_args(argv)
    config = PRESETS[args.preset]
    data = args.data or config.data
    runs = REPO_ROOT / "runs"
    enable_compilation_cache(runs / ".xla_cache")
    tag = f"{args.preset}-{data}"
    run(
        config,
        Path(args.workdir or runs / "fig3_tpr_ppv" / tag),
        seeds=seeds_from_args(args, config.seeds),
        data=data,
        root=data_root(data, args.data_root),
        models_dir=Path(args.models or runs / "models" / args.preset),
        predictions_dir=Path(args.predictions or runs / "fig2_uncertainty" / tag / "predictions"),
        verbose=args.verbose,
    )


if __name__ == "__main__":
    main()
