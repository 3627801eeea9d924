"""Cost table: ``python -m experiments.cost --preset cpu|paper|tiny [--seeds 0 1 2]
[--data dft|xtb]``."""

from experiments.common.cli import experiment_main
from experiments.cost.run import PRESETS, run


def main(argv=None) -> None:
    experiment_main("cost", __doc__, PRESETS, run, argv, trains_models=False)


if __name__ == "__main__":
    main()
