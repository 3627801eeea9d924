"""Per-output table of a generated folder: ``python -m experiments.xtb_data.summary FOLDER``.

Reads ``PROVENANCE.json`` and ``failures.json`` (written by ``python -m experiments.xtb_data``)
and prints a Markdown table: frames kept of inputs, dropped points by reason, converged
relaxations, relaxation steps, energy range, start clashes.
"""

from __future__ import annotations

import collections
import json
import sys
from collections.abc import Sequence
from pathlib import Path

__all__ = ["summary_table", "main"]


def summary_table(folder: Path) -> str:
    """The Markdown table of ``folder``'s outputs."""
    provenance = json.loads((folder / "PROVENANCE.json").read_text())
    failures_path = folder / "failures.json"
    failures = json.loads(failures_path.read_text()) if failures_path.is_file() else {}
    lines = [
        "| output | frames / inputs | dropped (reason) | converged | relax steps mean (max) "
        "| energy range (meV) | start clashes |",
        "|---|---|---|---|---|---|---|",
    ]
    for name, entry in sorted(provenance["outputs"].items()):
        events = failures.get(name, [])
        # A start clash is a note on a point (kept or not); the drop has its own reason.
        dropped = collections.Counter(
            e["reason"] for e in events if not e.get("kept", True) and e["reason"] != "start_clash"
        )
        reasons = ", ".join(f"{n} {r}" for r, n in sorted(dropped.items())) or "0"
        clashes = sum(1 for e in events if e["reason"] == "start_clash")
        scan = entry.get("kind") == "scan"
        lines.append(
            f"| `{name}` | {entry['n_frames']} / {entry['n_inputs']} | {reasons} | "
            + (f"{entry['n_converged']} | " if scan else "– | ")
            + (
                f"{entry['relax_steps_mean']:.0f} ({entry['relax_steps_max']}) | "
                if scan
                else "– | "
            )
            + f"{(entry['energy_max_eV'] - entry['energy_min_eV']) * 1e3:.0f} | "
            + (f"{clashes} |" if scan else "– |")
        )
    return "\n".join(lines) + "\n"


def main(argv: Sequence[str] | None = None) -> int:
    args = list(sys.argv[1:] if argv is None else argv)
    if len(args) != 1:
        raise SystemExit("usage: python -m experiments.xtb_data.summary FOLDER")
    print(summary_table(Path(args[0])), end="")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
