"""Fig. 2: ``python -m experiments.fig2_uncertainty --preset cpu|paper|tiny [--seeds 0 1 2]
[--data dft|xtb]``."""

from experiments.common.cli import experiment_main
from experiments.fig2_uncertainty.run import PRESETS, run


def main(argv=None) -> None:
    experiment_main("fig2_uncertainty", __doc__, PRESETS, run, argv)


if __name__ == "__main__":
    main()
