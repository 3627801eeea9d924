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

A piece that takes longer than one job is split into *stages* (:class:`Stages`): each stage
(e.g. one training round of Fig. 5) stores its JSON results and arrays in
``<piece folder>/stages/`` as soon as it finishes, and a later job that computes the same seed
reuses every stored stage, so at most one stage's work is lost to an interruption. The stages
folder is removed once the piece is written; the piece records every stage's wall time and
commit, and its ``provenance.wall_s`` includes the stages computed by earlier jobs.
"""

from __future__ import annotations

import hashlib
import io
import json
import os
import re
import shutil
import time
from collections.abc import Callable, Mapping, Sequence
from pathlib import Path

import numpy as np

from experiments.common.provenance import (
    RunStart,
    begin_run,
    data_record,
    load_average,
    provenance,
)
from nequip_jax._io import atomic_write_bytes, atomic_write_json

__all__ = [
    "FORMAT",
    "PieceMismatchError",
    "piece_dir",
    "identity",
    "load_pieces",
    "run_seeds",
    "Stages",
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
        record = provenance(
            begun,
            preset=preset,
            seeds=[seed],
            data_source=expected["data"]["source"],
            data_files=data_files,
        )
        # Stages stored by earlier jobs are part of this piece's cost.
        record["wall_s"] += sum(s["wall_s"] for s in body.get("stages", []) if s["reused"])
        piece = {"seed": int(seed), "identity": dict(expected), **body, "provenance": record}
        atomic_write_json(folder / "piece.json", piece)
        shutil.rmtree(folder / Stages.FOLDER, ignore_errors=True)
        # What a later run reads back (sorted keys included), so the aggregate is the same
        # whether a piece was computed now or stored.
        pieces[int(seed)] = json.loads((folder / "piece.json").read_text())
    others = sorted(set(pieces) - set(seeds))
    if others:
        log(f"seeds {others}: stored pieces of earlier runs aggregated too")
    return dict(sorted(pieces.items()))


class Stages:
    """The resumable stages of one piece (see the module docstring).

    ``stages.run(name, inputs, compute)`` returns ``compute()``'s ``(body, arrays)`` — a
    JSON-compatible dict and a dict of numpy arrays — and stores both in
    ``<piece folder>/stages/<name>.json`` and ``.npz``; when that stage is already stored for the
    same piece identity, seed and ``inputs`` (a JSON-compatible description of what the stage
    depends on beyond the identity, e.g. fingerprints of its training data), the stored results
    are returned without calling ``compute``. ``records`` lists, per stage run, its name, wall
    time, commit and whether it was reused; return it as the piece body's ``"stages"``.

    Raises:
        PieceMismatchError: a stored stage belongs to another identity, seed or inputs, or its
            arrays do not match their recorded checksum (names the folder and the remedy).
    """

    FOLDER = "stages"

    def __init__(self, piece: str | os.PathLike, expected: Mapping, seed: int):
        self.folder = Path(piece) / self.FOLDER
        self._identity = json.loads(json.dumps(dict(expected)))
        self._seed = int(seed)
        self.records: list[dict] = []

    def run(
        self,
        name: str,
        inputs: Mapping,
        compute: Callable[[], tuple[Mapping, Mapping[str, np.ndarray]]],
    ) -> tuple[dict, dict[str, np.ndarray]]:
        if not re.fullmatch(r"[A-Za-z0-9_.-]+", name):
            raise ValueError(f"stage name {name!r}: use letters, digits, '_', '.' or '-'.")
        key = {
            "identity": self._identity,
            "seed": self._seed,
            "stage": name,
            "inputs": json.loads(json.dumps(dict(inputs))),
        }
        meta, arrays_path = self.folder / f"{name}.json", self.folder / f"{name}.npz"
        remedy = f"delete {self.folder} to recompute the stages of seed {self._seed}"
        if meta.is_file():
            stored = json.loads(meta.read_text())
            if stored.get("key") != key:
                raise PieceMismatchError(
                    f"{meta} was computed for other settings, data or inputs than this run; "
                    f"{remedy}."
                )
            raw = arrays_path.read_bytes() if arrays_path.is_file() else b""
            if hashlib.sha256(raw).hexdigest() != stored["arrays_sha256"]:
                raise PieceMismatchError(
                    f"{arrays_path} is missing or does not match the checksum in {meta}; {remedy}."
                )
            with np.load(io.BytesIO(raw)) as saved:
                arrays = {k: saved[k] for k in saved.files}
            self.records.append({**stored["record"], "reused": True})
            return stored["body"], arrays
        begun = begin_run()
        body, arrays = compute()
        body = json.loads(json.dumps(dict(body)))
        arrays = {k: np.asarray(v) for k, v in arrays.items()}
        buffer = io.BytesIO()
        np.savez(buffer, **arrays)
        raw = buffer.getvalue()
        record = {
            "stage": name,
            "wall_s": time.perf_counter() - begun.clock,
            "commit": dict(begun.commit),
            "load_average_start": begun.load,
            "load_average_end": load_average(),
        }
        # The arrays first, the JSON (with their checksum) last: a stage counts as stored only
        # once both are complete.
        atomic_write_bytes(arrays_path, raw)
        atomic_write_json(
            meta,
            {
                "key": key,
                "body": body,
                "record": record,
                "arrays_sha256": hashlib.sha256(raw).hexdigest(),
            },
        )
        self.records.append({**record, "reused": False})
        return body, arrays


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
