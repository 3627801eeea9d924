"""Fig. 5 and Table I: ``python -m experiments.fig5_active_learning --preset cpu|paper|tiny
[--seeds 0 1 2] [--data xtb] [--methods gmm traditional diverse]`` (the β scans exist only in
the GFN2-xTB twin, data/3bpa_xtb)."""

from experiments.common.cli import experiment_main
from experiments.common.methods import PAPER_METHODS
from experiments.fig5_active_learning.run import PRESETS, run


def _arguments(parser) -> None:
    parser.add_argument(
        "--methods",
        nargs="+",
        choices=PAPER_METHODS,
        default=list(PAPER_METHODS),
        help="methods the computed seeds train (default all; 'gmm' alone is ~10x cheaper)",
    )


def main(argv=None) -> None:
    experiment_main(
        "fig5_active_learning",
        __doc__,
        PRESETS,
        run,
        argv,
        add_arguments=_arguments,
        extra_options=lambda args, runs, tag: {"methods": tuple(args.methods)},
    )


if __name__ == "__main__":
    main()
