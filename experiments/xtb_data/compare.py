"""How much two scan recipes move the dihedral landscapes: ``python -m experiments.xtb_data.compare
HELD FREE [--out FILE.md]``.

HELD and FREE are output folders of ``python -m experiments.xtb_data`` (e.g. the default recipe,
amine dihedral held, and ``--free-amine``). For every β scan present in both, grid points are
matched by their (α, γ) targets and compared: the landscape relative to each scan's own minimum
(what Fig. 4 plots), the absolute energy difference (holding one more dihedral can only raise a
relaxed energy), forces, and how far the amine dihedral (1, 4, 6, 8) turned where it was free.
The table goes to stdout and, with ``--out``, to a Markdown file with the inputs' checksums.
"""

from __future__ import annotations

import argparse
import json
from collections.abc import Sequence
from pathlib import Path

import ase
import ase.io
import numpy as np

from experiments.xtb_data.generate import scan_name
from experiments.xtb_data.scan import HELD_DIHEDRALS, angle_difference
from nequip_jax._io import atomic_write_text

__all__ = ["compare_scans", "markdown", "main"]

_AMINE = HELD_DIHEDRALS["amine"]


def _grid_key(atoms: ase.Atoms, grid: float) -> tuple[float, float]:
    alpha, _, gamma = np.asarray(atoms.info["dihedrals"], float)
    return (round(alpha / grid) * grid % 360.0, round(gamma / grid) * grid % 360.0)


def compare_scans(
    held: Sequence[ase.Atoms], free: Sequence[ase.Atoms], *, grid: float = 15.0
) -> dict:
    """Differences between two relaxed scans of one β.

    Args:
        held, free: the scan frames of the two recipes (``energy``, ``forces``, ``dihedrals``
            [α, β, γ] in ``info``).
        grid: the α/γ step used to match points (degrees).

    Returns:
        ``points`` (matched), ``only_held``/``only_free`` (unmatched counts), ``range_held_meV``
        / ``range_free_meV`` (energy range of the matched points), ``relative_rms_meV`` /
        ``relative_max_meV`` (RMS and largest |ΔE| after subtracting each scan's own minimum),
        ``relative_r`` (Pearson r of the relative energies), ``absolute_mean_meV`` /
        ``absolute_max_meV`` (mean and largest E_held − E_free), ``forces_rms_eV_A`` (RMS of the
        force difference over atoms and components), ``amine_turn_median_deg`` /
        ``amine_turn_max_deg`` (|amine dihedral of FREE − that of HELD| at each point).
    """
    a = {_grid_key(x, grid): x for x in held}
    b = {_grid_key(x, grid): x for x in free}
    keys = sorted(set(a) & set(b))
    if not keys:
        raise ValueError("the two scans share no (alpha, gamma) grid point; compare like with like")
    e_held = np.array([a[k].get_potential_energy() for k in keys])
    e_free = np.array([b[k].get_potential_energy() for k in keys])
    rel = (e_held - e_held.min()) - (e_free - e_free.min())
    f_diff = np.concatenate([a[k].get_forces() - b[k].get_forces() for k in keys])
    turn = np.abs(
        angle_difference(
            np.array([b[k].get_dihedral(*_AMINE) for k in keys]),
            np.array([a[k].get_dihedral(*_AMINE) for k in keys]),
        )
    )
    return {
        "points": len(keys),
        "only_held": len(set(a) - set(b)),
        "only_free": len(set(b) - set(a)),
        "range_held_meV": float(np.ptp(e_held) * 1e3),
        "range_free_meV": float(np.ptp(e_free) * 1e3),
        "relative_rms_meV": float(np.sqrt(np.mean(rel**2)) * 1e3),
        "relative_max_meV": float(np.max(np.abs(rel)) * 1e3),
        "relative_r": float(np.corrcoef(e_held, e_free)[0, 1]) if len(keys) > 1 else float("nan"),
        "absolute_mean_meV": float(np.mean(e_held - e_free) * 1e3),
        "absolute_max_meV": float(np.max(e_held - e_free) * 1e3),
        "forces_rms_eV_A": float(np.sqrt(np.mean(f_diff**2))),
        "amine_turn_median_deg": float(np.median(turn)),
        "amine_turn_max_deg": float(np.max(turn)),
    }


_COLUMNS = (
    ("β", None),
    ("points", "points"),
    ("range held / free (meV)", None),
    ("relative ΔE RMS (meV)", "relative_rms_meV"),
    ("relative ΔE max (meV)", "relative_max_meV"),
    ("r", "relative_r"),
    ("E_held − E_free mean / max (meV)", None),
    ("ΔF RMS (eV/Å)", "forces_rms_eV_A"),
    ("amine turn median / max (°)", None),
)


def markdown(rows: dict[float, dict]) -> str:
    """A Markdown table of :func:`compare_scans` results per β (degrees)."""
    lines = [
        "| " + " | ".join(c for c, _ in _COLUMNS) + " |",
        "|" + "---|" * len(_COLUMNS),
    ]
    for beta, r in rows.items():
        cells = [
            f"{beta:g}°",
            str(r["points"]),
            f"{r['range_held_meV']:.0f} / {r['range_free_meV']:.0f}",
            f"{r['relative_rms_meV']:.1f}",
            f"{r['relative_max_meV']:.1f}",
            f"{r['relative_r']:.3f}",
            f"{r['absolute_mean_meV']:.1f} / {r['absolute_max_meV']:.1f}",
            f"{r['forces_rms_eV_A']:.3f}",
            f"{r['amine_turn_median_deg']:.1f} / {r['amine_turn_max_deg']:.1f}",
        ]
        lines.append("| " + " | ".join(cells) + " |")
    return "\n".join(lines) + "\n"


def main(argv: Sequence[str] | None = None) -> int:
    p = argparse.ArgumentParser(prog="python -m experiments.xtb_data.compare", description=__doc__)
    p.add_argument("held", type=Path, help="output folder of the default recipe (amine held)")
    p.add_argument("free", type=Path, help="output folder of the --free-amine recipe")
    p.add_argument("--betas", type=float, nargs="+", default=[120.0, 150.0, 180.0])
    p.add_argument("--grid", type=float, default=15.0)
    p.add_argument("--out", type=Path, default=None, help="Markdown file for the table")
    args = p.parse_args(argv)
    rows = {}
    for beta in args.betas:
        files = [folder / scan_name(beta) for folder in (args.held, args.free)]
        missing = [str(f) for f in files if not f.is_file()]
        if missing:
            raise SystemExit(f"missing scan files {missing}; generate them first (--splits dih).")
        rows[beta] = compare_scans(*(ase.io.read(f, ":") for f in files), grid=args.grid)
    table = markdown(rows)
    print(table, end="")
    if args.out is not None:
        provenance = {}
        for name, folder in (("held", args.held), ("free", args.free)):
            prov = json.loads((folder / "PROVENANCE.json").read_text())
            provenance[name] = {
                scan_name(b): prov["outputs"][scan_name(b)]["recipe_sha256"][:16]
                for b in args.betas
            }
        text = (
            "# Scan recipes compared: amine dihedral held (default) vs free\n\n"
            "Generated by `python -m experiments.xtb_data.compare HELD FREE --out ...`; "
            f"recipe hashes {json.dumps(provenance)}.\n\n"
            + table
            + "\n```json\n"
            + json.dumps({f"{b:g}": r for b, r in rows.items()}, indent=1)
            + "\n```\n"
        )
        atomic_write_text(args.out, text)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
