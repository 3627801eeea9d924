"""Rows of the results table, built from an experiment's ``results.json`` (pure functions).

Every row is one claim of the paper with the cells of :data:`COLUMNS`. The claim and number
come from the file: the ``claims`` lists of Figs. 2–4, Table I of Fig. 5 (one row per method and
metric: the paired difference active − random over seeds and its t-test, recomputed from the
per-seed values with :func:`experiments.fig5_active_learning.analysis.paired_difference`), and
the cost claims recomputed from the cost file (:func:`experiments.cost.analysis.claims`). The
other cells describe the run: preset, data, networks (from ``networks``), commit and wall time
(from ``provenance``; a file without one says so in the commit cell).
"""

from __future__ import annotations

import math
import re
from collections import Counter
from collections.abc import Mapping, Sequence
from typing import NamedTuple

from experiments.common.methods import LABELS, METHODS
from experiments.common.networks import CONVERGED
from experiments.common.stats import format_mean_sd
from experiments.cost.analysis import claims as cost_claims
from experiments.fig5_active_learning.analysis import (
    TABLE_METRICS,
    format_p,
    paired_difference,
)

__all__ = [
    "COLUMNS",
    "NO_PROVENANCE",
    "Row",
    "RunCells",
    "run_cells",
    "networks_cell",
    "commit_cell",
    "wall_cell",
    "data_cell",
    "preset_cell",
    "machine_note",
    "claim_rows",
    "table_i_rows",
    "cost_rows",
]

#: Column headers, in order.
COLUMNS = (
    "experiment",
    "claim",
    "our number",
    "seeds supporting",
    "preset",
    "data",
    "networks",
    "commit",
    "wall time",
)
#: What the commit cell says for a results file without a ``provenance`` object.
NO_PROVENANCE = "no provenance"

_DATA_NAMES = {"dft": "DFT", "xtb": "xTB"}


class Row(NamedTuple):
    """One line of the table (cells as text, in the order of :data:`COLUMNS`)."""

    experiment: str
    claim: str
    number: str
    seeds: str
    preset: str
    data: str
    networks: str
    commit: str
    wall: str


class RunCells(NamedTuple):
    """The cells shared by every row of one results file."""

    preset: str
    data: str
    networks: str
    commit: str
    wall: str


def networks_cell(networks: Sequence[Mapping] | None) -> str:
    """``"12/12 converged (min_learning_rate)"``; budget or failure stops are listed after a
    semicolon (``"0/9 converged; max_epochs 9"``); ``"not recorded"`` without a list."""
    if networks is None:
        return "not recorded"
    if not networks:
        return "none trained"
    reasons = Counter(n["stop_reason"] for n in networks)
    converged = {r: c for r, c in reasons.items() if r in CONVERGED}
    other = {r: c for r, c in reasons.items() if r not in CONVERGED}

    def listing(counts: Mapping[str, int], always_count: bool) -> str:
        items = sorted(counts.items(), key=lambda rc: (-rc[1], rc[0]))
        if len(items) == 1 and not always_count:
            return items[0][0]
        return ", ".join(f"{r} {c}" for r, c in items)

    text = f"{sum(converged.values())}/{len(networks)} converged"
    if converged:
        text += f" ({listing(converged, always_count=False)})"
    if other:
        text += f"; {listing(other, always_count=True)}"
    return text


def _short_commit(commit: Mapping | None) -> str:
    commit = commit or {}
    sha = str(commit.get("sha", "unknown"))
    if sha == "unknown":
        return "unknown"
    return sha[:10] + (" + uncommitted changes" if commit.get("dirty") else "")


def commit_cell(provenance: Mapping | None) -> str:
    """The first 10 hex digits of the commit (``"+ uncommitted changes"`` when dirty),
    ``"unknown"`` without git, :data:`NO_PROVENANCE` without a provenance object. An aggregate
    of per-seed pieces names the commit of each piece's job: ``"abc (seed 0), def (seeds 1, 2)"``
    (one commit without seeds when all pieces share it)."""
    if provenance is None:
        return NO_PROVENANCE
    pieces = provenance.get("pieces")
    if not pieces:
        return _short_commit(provenance.get("commit"))
    seeds_of: dict[str, list[int]] = {}
    for piece in pieces:
        seeds_of.setdefault(_short_commit(piece.get("commit")), []).append(int(piece["seed"]))
    if len(seeds_of) == 1:
        return next(iter(seeds_of))
    return ", ".join(
        f"{c} (seed{'s' if len(s) > 1 else ''} {', '.join(map(str, s))})"
        for c, s in seeds_of.items()
    )


def wall_cell(seconds: float | None) -> str:
    """``"5.6 s"`` below two minutes, ``"70.3 min"`` below two hours, else ``"2.5 h"``."""
    if seconds is None:
        return "not recorded"
    seconds = float(seconds)
    if seconds < 120:
        return f"{seconds:.1f} s"
    if seconds < 7200:
        return f"{seconds / 60:.1f} min"
    return f"{seconds / 3600:.1f} h"


def data_cell(source: str | None) -> str:
    """Display name of a data source (``"xtb"`` → ``"xTB"``)."""
    if not source:
        return "not recorded"
    return _DATA_NAMES.get(source, source)


def preset_cell(results: Mapping, presets: Mapping[str, Mapping]) -> str:
    """The preset of the provenance; without one, the preset whose configuration equals the
    file's ``config`` (``presets``: name → configuration as a JSON-like dict)."""
    provenance = results.get("provenance")
    if provenance is not None:
        return provenance.get("preset") or "not recorded"
    matches = [name for name, config in presets.items() if config == results.get("config")]
    return matches[0] if len(matches) == 1 else "not recorded"


def run_cells(results: Mapping, presets: Mapping[str, Mapping]) -> RunCells:
    """Preset, data, networks, commit and wall-time cells of one results file."""
    provenance = results.get("provenance")
    if provenance is not None:
        source = (provenance.get("data") or {}).get("source")
        wall = provenance.get("wall_s")
    else:
        source, wall = results.get("data"), results.get("wall_time_s")
    return RunCells(
        preset=preset_cell(results, presets),
        data=data_cell(source),
        networks=networks_cell(results.get("networks")),
        commit=commit_cell(provenance),
        wall=wall_cell(wall),
    )


def machine_note(results: Mapping) -> str:
    """One line on the machine: from the provenance (platform, device, CPU, cores, jax, load
    average at start → end), else the file's ``hardware`` line marked as without provenance."""
    provenance = results.get("provenance")
    if provenance is None:
        hardware = results.get("hardware", "not recorded")
        return f"{hardware} ({NO_PROVENANCE})"
    m = provenance.get("machine") or {}

    def describe(m: Mapping) -> str:
        return (
            f"{m.get('platform', '?')} ({m.get('device_kind', '?')}), {m.get('cpu_model', '?')}, "
            f"{m.get('cores', '?')} cores, jax {m.get('jax_version', '?')}, 1-min load average "
            f"{load(m, 'load_average_start')} at the start, "
            f"{load(m, 'load_average_end')} at the end"
        )

    def load(m, key):
        value = m.get(key)
        return "?" if not value else f"{float(value[0]):.1f}"

    pieces = provenance.get("pieces")
    if not pieces:
        return describe(m)
    return "; ".join(
        f"seed {p['seed']} ({wall_cell(p.get('wall_s'))}): {describe(p.get('machine') or {})}"
        for p in pieces
    )


def _row(experiment: str, claim: str, number: str, seeds: str, cells: RunCells) -> Row:
    return Row(experiment, claim, number, seeds, *cells)


def claim_rows(
    experiment: str, results: Mapping, cells: RunCells, *, prefix_key: str | None = None
) -> list[Row]:
    """Rows of a ``claims`` entry: a list, or a mapping (e.g. training setting → list; the key
    prefixes the claim when there is more than one). ``prefix_key``: a field of each claim that
    prefixes its text (Fig. 4: ``"scan"``)."""
    claims = results["claims"]
    groups = claims.items() if isinstance(claims, Mapping) else [(None, claims)]
    groups = list(groups)
    rows = []
    for group, items in groups:
        for c in items:
            text = c["claim"]
            if prefix_key is not None and c.get(prefix_key):
                text = f"{c[prefix_key]}: {text}"
            if group is not None and len(groups) > 1:
                text = f"{group}: {text}"
            seeds = f"{c['seeds_supporting']}/{c['n_seeds']}"
            rows.append(_row(experiment, text, c["measured"], seeds, cells))
    return rows


def _scan_label(scan: str) -> str:
    match = re.fullmatch(r"dih_beta(\d+)", scan)
    return f"{match.group(1)}°" if match else scan


def table_i_rows(
    experiment: str,
    results: Mapping,
    cells: RunCells,
    paper: Mapping[str, Mapping[str, Mapping[str, Sequence[float]]]] | None = None,
) -> list[Row]:
    """One row per method and Table I metric: per scan, the mean ± sd over seeds of the
    paired difference active − random (meV/Å; negative: active learning better) and its
    two-sided paired t-test p; seeds supporting = seeds with active below random, per scan.

    Args:
        paper: the paper's Table I (scan → metric → method → (random − active in meV/Å, %)),
            quoted in the claim where present.
    """
    table = results["table_I"]
    scans = list(table)
    rows = []
    for method in (m for m in METHODS if m in table[scans[0]]):
        for key, label in TABLE_METRICS:
            numbers, seeds, published = [], [], []
            for scan in scans:
                entry = table[scan][method][key]
                pair = paired_difference(entry["active"], entry["random"])
                beta = _scan_label(scan)
                diffs = [d for d in pair["diff"] if math.isfinite(d)]
                numbers.append(
                    f"{beta}: {format_mean_sd(diffs, 1000)} meV/Å, {format_p(pair['p_value'])}"
                    if diffs
                    else f"{beta}: no seed with both values"
                )
                seeds.append(f"{sum(d < 0 for d in diffs)}/{pair['n']}")
                value = (paper or {}).get(scan, {}).get(key, {}).get(method)
                if value is not None:
                    published.append(f"{value[0]:.1f}")
            claim = (
                f"active learning with the {LABELS[method]}'s selection (Eq. 12) lowers {label} "
                f"on the β scans {' / '.join(_scan_label(s) for s in scans)} vs random selection "
                "(paired difference active − random < 0)"
            )
            if len(published) == len(scans):
                claim += f"; paper, single run: random − active = {' / '.join(published)} meV/Å"
            rows.append(_row(experiment, claim, "; ".join(numbers), ", ".join(seeds), cells))
    return rows


def cost_rows(experiment: str, results: Mapping, cells: RunCells) -> list[Row]:
    """Rows of the cost claims, recomputed from the file's per-seed timings and summary. The
    training-to-convergence claim's networks are the converged ones its epochs come from."""
    rows = []
    convergence = results.get("convergence")
    for c in cost_claims(results):
        own = cells
        if c.get("from_converged_networks") and convergence is not None:
            own = cells._replace(networks=networks_cell(convergence.get("networks")))
        seeds = f"{c['seeds_supporting']}/{c['n_seeds']}"
        rows.append(_row(experiment, c["claim"], c["measured"], seeds, own))
    return rows
