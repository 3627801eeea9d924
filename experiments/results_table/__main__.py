"""``python -m experiments.results_table [--check]``: regenerate the results table of
experiments/README.md from experiments/<name>/results/results.json, and copy the markdown
sections it includes (``<!-- include: <path> -->``) from their files.

With ``--check`` nothing is written: the command prints the difference and exits with status 1
when the README's table differs from the generated one (0 when it is up to date).
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

from experiments.results_table.table import diff, generate
from nequip_jax._io import atomic_write_text

_REPO = Path(__file__).resolve().parents[2]


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        prog="python -m experiments.results_table", description=__doc__
    )
    parser.add_argument("--check", action="store_true", help="compare only; write nothing")
    parser.add_argument(
        "--root",
        default=str(_REPO),
        help="repository root holding experiments/ (default: this one)",
    )
    parser.add_argument(
        "--readme", default=None, help="README to update (default: <root>/experiments/README.md)"
    )
    args = parser.parse_args(argv)
    readme = Path(args.readme) if args.readme else Path(args.root) / "experiments" / "README.md"
    if not readme.is_file():
        parser.error(f"{readme} not found; pass --readme or --root.")
    old = readme.read_text()
    new = generate(args.root, old, name=readme.name)
    if args.check:
        if new != old:
            print(diff(old, new, readme.name), end="")
            print(
                f"{readme.name}: the results table is out of date; run "
                "`python -m experiments.results_table` and commit the result.",
                file=sys.stderr,
            )
            return 1
        print(f"{readme.name}: the results table is up to date.")
        return 0
    if new != old:
        atomic_write_text(readme, new)
        print(f"{readme.name}: results table regenerated.")
    else:
        print(f"{readme.name}: the results table is already up to date.")
    return 0


if __name__ == "__main__":
    sys.exit(main())
