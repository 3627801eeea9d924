"""Fig. 5 and Table I: ``python -m experiments.fig5_active_learning --preset cpu|paper|tiny
[--seeds 0 1 2] [--data xtb]`` (the β scans exist only in the GFN2-xTB twin, data/3bpa_xtb)."""

from experiments.common.pipeline import experiment_main
from experiments.fig5_active_learning.run import PRESETS, run


def main(argv=None) -> None:
    experiment_main("fig5_active_learning", __doc__, PRESETS, run, argv)


if __name__ == "__main__":
    main()
