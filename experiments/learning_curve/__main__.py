"""Learning curve: ``python -m experiments.learning_curve --preset cpu|tiny [--seeds 0 1]
[--variants N=50 N=100]``
(DFT train_300K draws of N = 50, 100, 250, 450 structures; converged single networks; test
errors at 300/600/1200 K next to the published 500-structure NequIP numbers)."""

from experiments.common.single_runs import study_main
from experiments.learning_curve.run import PRESETS, run


def main(argv=None) -> None:
    study_main("learning_curve", __doc__, PRESETS, run, argv)


if __name__ == "__main__":
    main()
