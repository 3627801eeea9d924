"""``python -m experiments.calibration --otf runs/otf-cpu [--out runs/calibration-cpu]``."""

import argparse

from experiments.calibration.run import CalibrationConfig, run


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(prog="python -m experiments.calibration", description=__doc__)
    parser.add_argument("--otf", required=True, help="finished `python -m experiments.otf` folder")
    parser.add_argument("--out", default=None, help="default <otf>/calibration")
    parser.add_argument("--n-calibration", type=int, default=200, help="test_300K structures")
    parser.add_argument("--alpha", type=float, default=0.1, help="miscoverage (0.1: 90 %%)")
    args = parser.parse_args(argv)
    config = CalibrationConfig(
        otf_workdir=args.otf, n_calibration=args.n_calibration, alpha=args.alpha
    )
    run(config, args.out or f"{args.otf}/calibration")


if __name__ == "__main__":
    main()
