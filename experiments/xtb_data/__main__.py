"""``python -m experiments.xtb_data``: see main.py."""

from experiments.xtb_data.main import main

if __name__ == "__main__":
    raise SystemExit(main())
