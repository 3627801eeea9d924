"""Learning curve: ``python -m experiments.learning_curve --preset cpu|tiny [--seeds 0 1]
[--variants N=50 N=100]``
(DFT train_300K draws of N = 50, 100, 250, 450 structures; converged single networks; test
errors at 300/600/1200 K next to the published 500-structure NequIP numbers)."""

from experiments.common.cli import experiment_main
from experiments.common.single_runs import add_variant_argument, variant_option
from experiments.learning_curve.run import PRESETS, run


def main(argv=None) -> None:
    experiment_main(
        "learning_curve",
        __doc__,
        PRESETS,
        run,
        argv,
        trains_models=False,
        add_arguments=add_variant_argument,
        extra_options=variant_option,
    )


if __name__ == "__main__":
    main()
