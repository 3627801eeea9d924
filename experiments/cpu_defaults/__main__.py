"""A/B of the cpu model's defaults: ``python -m experiments.cpu_defaults --preset cpu|tiny
[--seeds 0 1]`` (DFT D_train,100^300; converged single networks, test errors at 300/600/1200 K)."""

from experiments.common.single_runs import study_main
from experiments.cpu_defaults.run import PRESETS, run


def main(argv=None) -> None:
    study_main("cpu_defaults", __doc__, PRESETS, run, argv)


if __name__ == "__main__":
    main()
