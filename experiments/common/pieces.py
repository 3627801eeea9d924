"""Per-seed pieces of a multi-seed experiment: each seed is computed once, kept, and aggregated.

A converged reproduction takes hours per seed, more than one job (or one cluster allocation)
may get. So every seed of Figs. 2–5 is a *piece*: ``<workdir>/seeds/seed<k>/piece.json`` (and
the seed's figures in the same folder) holds everything the experiment's summary needs from that
seed — its metrics, the records of its networks and its own ``provenance``. A run computes the
requested seeds that have no piece yet, then aggregates *every* piece in the folder, so seeds
run as separate jobs, on different days or machines, add up to one results file::

    python -m experiments.fig2_uncertainty --preset cpu --seeds 0 --workdir W   # job 1
    python -m experiments.fig2_uncertainty --preset cpu --seeds 1 2 --workdir W  # job 2
    # W/results.json now aggregates seeds 0, 1, 2

A piece is only reused when its *identity* — the experiment's configuration and the name and
SHA-256 of every data file it read — equals the current run's; a piece of another configuration
or other data is an error naming the folder (delete it to recompute, or use another workdir),
never silently mixed in or overwritten. Pieces are written atomically, so an interrupted job
leaves either a complete piece or none.
"""

from __future__ import annotations

import json
import os
import re
import time
from collections.abc import Callable, Mapping, Sequence
from pathlib import Path

from experiments.common.provenance import RunStart, begin_run, data_record, provenance
from nequip_jax._io import atomic_write_json

__all__ = [
    "FORMAT",
    "PieceMismatchError",
    "piece_dir",
    "identity",
    "load_pieces",
    "run_seeds",
    "combined_provenance",
]

#: Version of the piece layout; a piece of another version is not reused.
FORMAT = 1
_SEED_DIR = re.compile(r"^seed(-?\d+)$")


class PieceMismatchError(ValueError):
    """A stored piece was computed with another configuration, other data or another layout."""


def piece_dir(workdir: str | os.PathLike, seed: int) -> Path:
    """The folder of seed ``seed``'s piece: ``<workdir>/seeds/seed<seed>``."""
    return Path(workdir) / "seeds" / f"seed{int(seed)}"


def identity(experiment: str, config: Mapping, data_source: str, data_files: Mapping) -> dict:
    """What must be equal for a piece to be reused: the experiment, its configuration (a
    JSON-compatible mapping) and the data record (source, file names and SHA-256)."""
    return {
        "format": FORMAT,
        "experiment": experiment,
        "config": json.loads(json.dumps(config)),
        "data": data_record(data_source, data_files),
    }


def _difference(stored: Mapping, current: Mapping) -> str:
    keys = [k for k in dict.fromkeys([*stored, *current]) if stored.get(k) != current.get(k)]
    if "data" in keys:
        old = {(f["use"], f["name"], f["sha256"]) for f in stored.get("data", {}).get("files", [])}
        new = {(f["use"], f["name"], f["sha256"]) for f in current["data"]["files"]}
        changed = sorted({f"{u}:{n}" for u, n, _ in old ^ new})
        source = (stored.get("data") or {}).get("source"), current["data"]["source"]
        detail = f"data source {source[0]!r} vs {source[1]!r}" if source[0] != source[1] else ""
        keys[keys.index("data")] = "data (" + (detail or "files " + ", ".join(changed)) + ")"
    return ", ".join(keys)


def load_pieces(workdir: str | os.PathLike, expected: Mapping) -> dict[int, dict]:
    """Every piece under ``<workdir>/seeds``, by seed, checked against ``expected`` (from
    :func:`identity`).

    Raises:
        PieceMismatchError: a piece's identity differs (names the folder, what differs and the
            remedy) or its file is not a piece of this layout.
    """
    root = Path(workdir) / "seeds"
    pieces: dict[int, dict] = {}
    if not root.is_dir():
        return pieces
    for folder in sorted(root.iterdir()):
        match = _SEED_DIR.match(folder.name)
        if not match or not folder.is_dir():
            continue
        path = folder / "piece.json"
        if not path.is_file():
            continue
        try:
            piece = json.loads(path.read_text())
        except json.JSONDecodeError as err:
            raise PieceMismatchError(
                f"{path} is not valid JSON ({err}); delete {folder} to recompute that seed."
            ) from err
        stored = piece.get("identity")
        if not isinstance(stored, Mapping) or stored != dict(expected):
            what = _difference(stored or {}, expected)
            raise PieceMismatchError(
                f"{path} was computed with a different {what or 'layout'} than this run; delete "
                f"{folder} to recompute seed {match.group(1)}, or pass another --workdir."
            )
        if int(piece.get("seed", match.group(1))) != int(match.group(1)):
            raise PieceMismatchError(
                f"{path} holds seed {piece.get('seed')} but sits in {folder.name}; delete it."
            )
        pieces[int(match.group(1))] = piece
    return pieces


def run_seeds(
    workdir: str | os.PathLike,
    seeds: Sequence[int],
    expected: Mapping,
    compute: Callable[[int, Path], Mapping],
    *,
    preset: str | None,
    data_files: Mapping,
    log: Callable[[str], None] = print,
) -> dict[int, dict]:
    """Compute the pieces of ``seeds`` that are not stored yet and return all stored pieces.

    Args:
        workdir: the experiment's output folder.
        seeds: seeds this run must have (computed when missing).
        expected: the run's :func:`identity`.
        compute: ``(seed, piece folder) -> body``; writes the seed's figures into the folder and
            returns its JSON-compatible results (stored next to ``seed``, ``identity`` and the
            piece's ``provenance``).
        preset: preset name for the piece's provenance.
        data_files: the data files read (for the piece's provenance).
        log: progress messages.

    Returns:
        ``{seed: piece}`` for every piece in ``workdir``, sorted by seed (requested or not).
    """
    pieces = load_pieces(workdir, expected)
    reused = sorted(s for s in pieces if s in seeds)
    if reused:
        log(f"seeds {reused}: stored pieces in {Path(workdir) / 'seeds'} reused")
    for seed in seeds:
        if seed in pieces:
            continue
        begun = begin_run()
        folder = piece_dir(workdir, seed)
        folder.mkdir(parents=True, exist_ok=True)
        body = dict(compute(int(seed), folder))
        piece = {
            "seed": int(seed),
            "identity": dict(expected),
            **body,
            "provenance": provenance(
                begun,
                preset=preset,
                seeds=[seed],
                data_source=expected["data"]["source"],
                data_files=data_files,
            ),
        }
        atomic_write_json(folder / "piece.json", piece)
        # What a later run reads back (sorted keys included), so the aggregate is the same
        # whether a piece was computed now or stored.
        pieces[int(seed)] = json.loads((folder / "piece.json").read_text())
    others = sorted(set(pieces) - set(seeds))
    if others:
        log(f"seeds {others}: stored pieces of earlier runs aggregated too")
    return dict(sorted(pieces.items()))


def combined_provenance(
    begun: RunStart,
    pieces: Mapping[int, Mapping],
    *,
    preset: str | None,
    data_source: str,
    data_files: Mapping,
) -> dict:
    """The provenance of an aggregate: this run's commit, machine and data, the seeds of all
    ``pieces``, ``wall_s`` = the pieces' wall times plus the aggregation's (``begun``: taken
    once the pieces are done, so a piece computed by this run is counted once), and
    ``pieces``: per seed its commit, wall time and machine (each piece was computed by its own
    job)."""
    out = provenance(
        begun, preset=preset, seeds=sorted(pieces), data_source=data_source, data_files=data_files
    )
    per_piece = []
    for seed, piece in sorted(pieces.items()):
        p = piece["provenance"]
        per_piece.append(
            {
                "seed": int(seed),
                "commit": p["commit"],
                "wall_s": p["wall_s"],
                "machine": p["machine"],
            }
        )
    own = time.perf_counter() - begun.clock
    out["wall_s"] = own + sum(float(p["wall_s"]) for p in per_piece)
    out["pieces"] = per_piece
    return out
