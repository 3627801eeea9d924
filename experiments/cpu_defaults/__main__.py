"""A/B of the cpu model's defaults: ``python -m experiments.cpu_defaults --preset cpu|tiny
[--seeds 0 1]`` (DFT D_train,100^300; converged single networks, test errors at 300/600/1200 K)."""

from experiments.common.cli import experiment_main
from experiments.common.single_runs import add_variant_argument, variant_option
from experiments.cpu_defaults.run import PRESETS, run


def main(argv=None) -> None:
    experiment_main(
        "cpu_defaults",
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
