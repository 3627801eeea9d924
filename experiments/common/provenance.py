"""Where a reported number comes from: code version, settings, data, machine and wall time.

Every experiment records, next to its results, a ``provenance`` object::

    {
      "commit":  {"sha": "<git HEAD>" | "unknown", "dirty": bool | None},
      "preset":  "cpu",
      "seeds":   [0, 1, 2],
      "data":    {"source": "xtb", "files": [{"use", "name", "sha256"}, ...]},
      "wall_s":  1234.5,
      "machine": {"platform", "device_kind", "cpu_model", "cores",
                  "load_average_start", "load_average_end", "jax_version"},
    }

Files are named by their file name and content hash only, so a results file says which data it
was computed from without naming folders of the machine that ran it. Nothing here raises when
git, ``/proc/cpuinfo`` or the load average is unavailable: the field says ``"unknown"`` or
``None`` instead.

Usage::

    start = begin_run()
    ...  # the experiment
    results["provenance"] = provenance(start, preset="cpu", seeds=[0], data_source="xtb",
                                       data_files={"train_300K": path})
"""

from __future__ import annotations

import hashlib
import os
import platform
import subprocess
import time
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import NamedTuple

import jax

__all__ = [
    "RunStart",
    "begin_run",
    "provenance",
    "git_commit",
    "file_sha256",
    "data_record",
    "machine_info",
    "load_average",
    "cpu_model",
]

_REPO = Path(__file__).resolve().parents[2]
UNKNOWN = "unknown"


class RunStart(NamedTuple):
    """What is recorded when a run starts (:func:`begin_run`).

    Attributes:
        clock: ``time.perf_counter()`` at the start.
        load: 1, 5 and 15 minute load averages at the start (``None`` where unavailable).
        commit: :func:`git_commit` at the start (the code that runs).
    """

    clock: float
    load: tuple[float, float, float] | None
    commit: dict


def git_commit(repo: str | os.PathLike = _REPO) -> dict:
    """``{"sha": HEAD, "dirty": bool}`` of the git repository at ``repo``.

    ``dirty`` is True when ``git status --porcelain`` lists anything (modified, staged or
    untracked files outside ``.gitignore``). Without git, or outside a repository, the result is
    ``{"sha": "unknown", "dirty": None}``.
    """

    def git(*args: str) -> str:
        out = subprocess.run(
            ["git", "-C", str(repo), *args],
            capture_output=True,
            text=True,
            timeout=30,
            check=True,
        )
        return out.stdout

    try:
        sha = git("rev-parse", "HEAD").strip()
        dirty = bool(git("status", "--porcelain").strip())
    except (OSError, subprocess.SubprocessError):
        return {"sha": UNKNOWN, "dirty": None}
    return {"sha": sha or UNKNOWN, "dirty": dirty if sha else None}


def load_average() -> tuple[float, float, float] | None:
    """1, 5 and 15 minute load averages (``None`` where the system has none)."""
    try:
        return tuple(float(x) for x in os.getloadavg())
    except (AttributeError, OSError):
        return None


def cpu_model(cpuinfo: str | os.PathLike = "/proc/cpuinfo") -> str:
    """The first ``model name`` of ``cpuinfo`` (Linux); else :func:`platform.processor`, else
    ``"unknown"``."""
    try:
        for line in Path(cpuinfo).read_text(errors="replace").splitlines():
            key, _, value = line.partition(":")
            if key.strip() == "model name" and value.strip():
                return value.strip()
    except OSError:
        pass
    return platform.processor() or UNKNOWN


def begin_run(repo: str | os.PathLike = _REPO) -> RunStart:
    """Start clock, load average and commit of a run (pass to :func:`provenance`)."""
    return RunStart(clock=time.perf_counter(), load=load_average(), commit=git_commit(repo))


def file_sha256(path: str | os.PathLike, chunk: int = 1 << 20) -> str:
    """Hex SHA-256 of the file's bytes (links followed)."""
    digest = hashlib.sha256()
    with open(path, "rb") as f:
        for block in iter(lambda: f.read(chunk), b""):
            digest.update(block)
    return digest.hexdigest()


def data_record(source: str, files: Mapping[str, str | os.PathLike]) -> dict:
    """``{"source", "files": [{"use", "name", "sha256"}]}`` of the data files a run read.

    Args:
        source: the data source (``"dft"``, ``"xtb"``, ...).
        files: what each file was used for -> its path (e.g. the map returned by
            :func:`experiments.common.sources.check_source`, whose keys are
            ``"<split>:<file name>"``; the part before the colon is kept as ``use``).

    Raises:
        FileNotFoundError: a listed file does not exist (with its use).
    """
    hashes: dict[Path, str] = {}
    out = []
    for use, path in sorted(files.items()):
        path = Path(path)
        if not path.is_file():
            raise FileNotFoundError(
                f"data file for {use!r} not found: {path}; the provenance record needs every "
                "file the run read (pass only files that exist)."
            )
        key = path.resolve()
        if key not in hashes:
            hashes[key] = file_sha256(path)
        out.append({"use": use.split(":")[0], "name": path.name, "sha256": hashes[key]})
    return {"source": source, "files": out}


def machine_info(
    load_start: Sequence[float] | None, load_end: Sequence[float] | None = None
) -> dict:
    """Platform and device kind of jax's first device, CPU model, core count, the load
    averages at the start and end of the run and the jax version."""
    try:
        device = jax.devices()[0]
        platform_name, kind = device.platform, getattr(device, "device_kind", UNKNOWN)
    except RuntimeError:
        platform_name, kind = UNKNOWN, UNKNOWN
    return {
        "platform": platform_name,
        "device_kind": kind,
        "cpu_model": cpu_model(),
        "cores": os.cpu_count(),
        "load_average_start": None if load_start is None else list(load_start),
        "load_average_end": None if load_end is None else list(load_end),
        "jax_version": jax.__version__,
    }


def provenance(
    start: RunStart,
    *,
    preset: str | None,
    seeds: Sequence[int],
    data_source: str | None,
    data_files: Mapping[str, str | os.PathLike],
) -> dict:
    """The provenance object of a run that began with ``start`` and ends now.

    Args:
        start: from :func:`begin_run` at the start of the run.
        preset: the preset name (``None`` when the run was configured by hand).
        seeds: the seeds run.
        data_source: the data source name.
        data_files: what each file was used for -> its path (see :func:`data_record`).
    """
    return {
        "commit": dict(start.commit),
        "preset": preset,
        "seeds": [int(s) for s in seeds],
        "data": data_record(data_source or UNKNOWN, data_files),
        "wall_s": time.perf_counter() - start.clock,
        "machine": machine_info(start.load, load_average()),
    }
