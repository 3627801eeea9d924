"""Fig. 4: ``python -m experiments.fig4_landscapes --preset cpu|paper|tiny [--seeds 0 1 2]
[--data xtb]`` (the β scans exist only in the GFN2-xTB twin, data/3bpa_xtb)."""

from experiments.common.cli import experiment_main
from experiments.fig4_landscapes.run import PRESETS, run


def main(argv=None) -> None:
    experiment_main("fig4_landscapes", __doc__, PRESETS, run, argv)


if __name__ == "__main__":
    main()
