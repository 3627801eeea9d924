"""``python -m experiments.demo --preset cpu|tiny [--seed 0] [--workdir runs/demo]
[--data-root FOLDER]``: one single model + GMM (and every other informative single-model
method) against a vmapped ensemble on DFT 3BPA, with a markdown report."""

from experiments.common.cli import experiment_main
from experiments.demo.run import PRESETS, run


def main(argv=None) -> None:
    experiment_main("demo", __doc__, PRESETS, run, argv, trains_models=False)


if __name__ == "__main__":
    main()
