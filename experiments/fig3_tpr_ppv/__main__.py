"""Fig. 3: ``python -m experiments.fig3_tpr_ppv --preset cpu|paper|tiny [--seeds 0 1 2]
[--data dft|xtb]`` (reuses the models and predictions of ``experiments.fig2_uncertainty``)."""

from experiments.common.cli import experiment_main
from experiments.fig3_tpr_ppv.run import PRESETS, run


def _add_arguments(parser) -> None:
    parser.add_argument(
        "--predictions",
        default=None,
        help="prediction cache (default: that of the Fig. 2 run with the same preset and data)",
    )


def _options(args, runs, tag) -> dict:
    return {"predictions_dir": args.predictions or runs / "fig2_uncertainty" / tag / "predictions"}


def main(argv=None) -> None:
    experiment_main(
        "fig3_tpr_ppv",
        __doc__,
        PRESETS,
        run,
        argv,
        add_arguments=_add_arguments,
        extra_options=_options,
    )


if __name__ == "__main__":
    main()
