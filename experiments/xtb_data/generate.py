"""The GFN2-xTB twin of 3BPA: relabel the MD sets, run the dihedral scans, write provenance.

``run(config)`` is the whole program; ``main.py`` only parses arguments. Work is cut into chunks;
each finished chunk is one JSON file written atomically under ``<out>/.partial/``, so a killed run
restarts where it stopped. A chunk folder is named after the hash of its output's *recipe* (input
file hashes + every setting that changes the numbers), so stale chunks are never mixed in, and an
output already listed in ``PROVENANCE.json`` with the same recipe and checksum is reused as is.
"""

from __future__ import annotations

import concurrent.futures
import dataclasses
import datetime
import importlib.metadata
import json
import os
import platform
import shutil
import sys
import time
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import ase.io
import numpy as np

from experiments.xtb_data import scan
from experiments.xtb_data.progress import Progress
from experiments.xtb_data.reference import restore as restore_reference
from experiments.xtb_data.reference import stored_names
from experiments.xtb_data.store import (
    atomic_write_json,
    frame_from_dict,
    sha256_file,
    sha256_json,
    write_extxyz_atomic,
    write_sha256sums,
)
from experiments.xtb_data.work import ChunkResult, Task, WorkerSettings, compute_chunk, init_worker
from nequip_jax.oracle import XTBOracle, map_single_threaded, single_threaded

MD_SPLITS = ("train_300K", "train_mixedT", "test_300K", "test_600K")
ALL_PARTS = (*MD_SPLITS, "dih", "iso")
FORMAT_VERSION = 1
#: Relative cost of one constrained relaxation vs one single point (for the ETA only).
RELAX_COST = 50.0


@dataclasses.dataclass(frozen=True)
class Config:
    """Settings of a generation run (defaults: the full data set).

    Attributes:
        out: output folder (drop-in ``root`` for the 3BPA loader).
        source: folder with the DFT 3BPA files; None resolves ``$NEQUIP_JAX_DATA`` (its
            ``3bpa`` subfolder, or itself).
        parts: which outputs: MD split names, "dih" (the three scans), "iso" (isolated atoms);
            None = every MD split present in ``source`` + "dih" + "iso".
        workers: worker processes, one single-threaded worker per core.
        grid: α/γ grid step in degrees for the scans (360 / grid must be an integer).
        betas: β values of the scans, degrees.
        max_frames: relabel only the first ``max_frames`` frames of each MD split (quick runs).
        start_frame: train_300K frame the scans start from; None = the lowest DFT energy frame.
        chunk_size / scan_chunk_size: MD frames / scan points per chunk (the restart granularity).
        limit_chunks: stop after computing this many chunks (simulates an interrupted run).
        fmax, max_steps, maxstep, epsilon: relaxation settings (see scan.relax_fixed_dihedrals).
        free_amine: hold only α, β, γ during the scans' relaxations, not the amine dihedral
            (1, 4, 6, 8) — the recipe of earlier xTB scans, kept to measure what holding it
            changes; the original DFT scans held it.
        clash_ratio: a non-bonded contact below this fraction of the covalent-radius sum is a clash.
        dihedral_tolerance: largest accepted |measured - target| after relaxation, degrees.
        method, accuracy, electronic_temperature, max_iterations: the XTBOracle.
        quiet: no progress lines.
        reference: a folder of stored scan outputs (:mod:`experiments.xtb_data.reference`): a
            scan stored there for the same recipe is restored from it instead of computed;
            None computes every output.
    """

    out: Path
    source: Path | None = None
    parts: tuple[str, ...] | None = None
    workers: int = 2
    grid: float = 15.0
    betas: tuple[float, ...] = (120.0, 150.0, 180.0)
    max_frames: int | None = None
    start_frame: int | None = None
    chunk_size: int = 100
    scan_chunk_size: int = 8
    limit_chunks: int | None = None
    fmax: float = 0.05
    max_steps: int = 500
    maxstep: float = 0.2
    epsilon: float = 1e-5
    free_amine: bool = False
    clash_ratio: float = 0.6
    dihedral_tolerance: float = 0.1
    method: str = "GFN2-xTB"
    accuracy: float = 1.0
    electronic_temperature: float = 300.0
    max_iterations: int = 250
    quiet: bool = False
    reference: Path | None = None


def held_dihedrals(config: Config) -> tuple[str, ...]:
    """Names of the dihedrals held in the scans' relaxations (keys of scan.HELD_DIHEDRALS)."""
    return tuple(scan.DIHEDRALS) if config.free_amine else tuple(scan.HELD_DIHEDRALS)


@dataclasses.dataclass
class Summary:
    """What a run did. ``complete`` is False when it stopped early (``limit_chunks``)."""

    complete: bool
    out: Path
    computed_chunks: int = 0
    reused: list[str] = dataclasses.field(default_factory=list)
    written: list[str] = dataclasses.field(default_factory=list)
    counts: dict[str, Any] = dataclasses.field(default_factory=dict)
    seconds: float = 0.0


def repo_root() -> Path:
    return Path(__file__).resolve().parents[2]


def resolve_source(source: Path | None) -> Path:
    """The DFT 3BPA folder (see ``Config.source``); raises naming the remedy if absent."""
    candidates: list[Path] = []
    if source is not None:
        candidates = [Path(source)]
    elif os.environ.get("NEQUIP_JAX_DATA"):
        root = Path(os.environ["NEQUIP_JAX_DATA"])
        candidates = [root / "3bpa", root]
    for folder in candidates:
        if (folder / "train_300K.xyz").is_file():
            return folder
    if not candidates:
        raise FileNotFoundError(
            "no 3BPA source folder: pass --source DIR (the folder holding the DFT xyz files) or "
            "set NEQUIP_JAX_DATA to it or to its parent"
        )
    raise FileNotFoundError(
        f"no 3BPA source folder with train_300K.xyz among {[str(c) for c in candidates]}; pass "
        "--source DIR or set NEQUIP_JAX_DATA to the folder holding the DFT xyz files"
    )


def grid_values(step: float) -> np.ndarray:
    """α/γ grid: 0, step, ..., 360 - step degrees."""
    n = 360.0 / step
    if step <= 0 or abs(n - round(n)) > 1e-9:
        raise ValueError(f"grid step {step} does not divide 360 degrees; use e.g. 15, 30, 60, 120")
    return np.arange(int(round(n)), dtype=np.float64) * step


def scan_name(beta: float) -> str:
    return f"test_dih_beta{beta:g}.xyz"


def _oracle(config: Config) -> XTBOracle:
    return XTBOracle(
        method=config.method,
        accuracy=config.accuracy,
        electronic_temperature=config.electronic_temperature,
        max_iterations=config.max_iterations,
    )


def _versions() -> dict[str, str]:
    names = ("tblite", "ase", "numpy", "scipy")
    out = {name: importlib.metadata.version(name) for name in names}
    out["python"] = platform.python_version()
    return out


def _chunks(items: Sequence, size: int) -> list[list]:
    if size < 1:
        raise ValueError(f"chunk sizes must be >= 1, got {size}")
    return [list(items[i : i + size]) for i in range(0, len(items), size)]


class _Plan:
    """Outputs to produce: recipe, chunk tasks and final assembly, per output file name."""

    def __init__(self, config: Config, source: Path):
        self.config = config
        self.source = source
        self.oracle = _oracle(config)
        self.versions = _versions()
        self.source_sha = {
            p.name: sha256_file(p) for p in sorted(source.glob("*.xyz")) if p.is_file()
        }
        parts = config.parts
        if parts is None:
            parts = (*(s for s in MD_SPLITS if f"{s}.xyz" in self.source_sha), "dih", "iso")
        unknown = sorted(set(parts) - set(ALL_PARTS))
        if unknown:
            raise ValueError(f"unknown parts {unknown}; choose from {list(ALL_PARTS)}")
        missing = [p for p in parts if p in MD_SPLITS and f"{p}.xyz" not in self.source_sha]
        if missing:
            raise FileNotFoundError(
                f"{[f'{m}.xyz' for m in missing]} not in {source}; drop them from --splits or "
                "point --source at a folder that has them"
            )
        self.parts = tuple(parts)
        self.recipes: dict[str, dict[str, Any]] = {}
        self.tasks: dict[str, list[Task]] = {}
        self.n_items: dict[str, int] = {}
        self.kind: dict[str, str] = {}
        common = {
            "format_version": FORMAT_VERSION,
            "oracle": self.oracle.provenance(),
            "versions": self.versions,
        }
        for part in self.parts:
            if part in MD_SPLITS:
                self._plan_md(part, common)
        if "dih" in self.parts:
            self._plan_scans(common)
        if "iso" in self.parts:
            name = "iso_atoms.xyz"
            self.recipes[name] = {
                **common,
                "kind": "iso",
                "source_sha256": self.source_sha.get(name),
            }
            self.tasks[name], self.n_items[name], self.kind[name] = [], 4, "iso"

    def _plan_md(self, split: str, common: dict[str, Any]) -> None:
        name = f"{split}.xyz"
        frames = ase.io.read(self.source / name, ":")
        if self.config.max_frames is not None:
            frames = frames[: self.config.max_frames]
        self.recipes[name] = {
            **common,
            "kind": "md",
            "source_file": name,
            "source_sha256": self.source_sha[name],
            "max_frames": self.config.max_frames,
            "chunk_size": self.config.chunk_size,
        }
        indexed = list(enumerate(frames))
        self.tasks[name] = [
            Task(name, k, "md", items)
            for k, items in enumerate(_chunks(indexed, self.config.chunk_size))
        ]
        self.n_items[name], self.kind[name] = len(frames), "md"

    def _plan_scans(self, common: dict[str, Any]) -> None:
        config = self.config
        train = ase.io.read(self.source / "train_300K.xyz", ":")
        if config.start_frame is None:
            energies = np.array([a.get_potential_energy() for a in train])
            self.start_frame, self.start_rule = int(np.argmin(energies)), "lowest DFT energy"
        else:
            self.start_frame, self.start_rule = int(config.start_frame), "given"
        reference = train[self.start_frame].copy()
        reference.info = {}
        reference.calc = None
        values = grid_values(config.grid)
        points = [(float(a), float(g)) for a in values for g in values]
        held = held_dihedrals(config)
        for beta in config.betas:
            name = scan_name(beta)
            self.recipes[name] = {
                **common,
                "kind": "scan",
                "beta": float(beta),
                "grid_deg": float(config.grid),
                "alpha_gamma_values": values.tolist(),
                "start": {
                    "file": "train_300K.xyz",
                    "sha256": self.source_sha["train_300K.xyz"],
                    "frame": self.start_frame,
                    "rule": self.start_rule,
                },
                "relax": {
                    "optimizer": "BFGS",
                    "fmax_eV_per_A": config.fmax,
                    "max_steps": config.max_steps,
                    "maxstep_A": config.maxstep,
                    "constraint": f"FixInternals({', '.join(held)})",
                    "held_dihedrals_0based": {k: scan.HELD_DIHEDRALS[k] for k in held},
                    "fixinternals_epsilon_deg": config.epsilon,
                },
                "clash_ratio": config.clash_ratio,
                "dihedral_tolerance_deg": config.dihedral_tolerance,
                "scan_chunk_size": config.scan_chunk_size,
            }
            self.tasks[name] = [
                Task(name, k, "scan", items, reference=reference, beta=float(beta))
                for k, items in enumerate(_chunks(points, config.scan_chunk_size))
            ]
            self.n_items[name], self.kind[name] = len(points), "scan"

    def recipe_sha(self, name: str) -> str:
        return sha256_json(self.recipes[name])

    def chunk_dir(self, out: Path, name: str) -> Path:
        return out / ".partial" / f"{Path(name).stem}-{self.recipe_sha(name)[:16]}"


def _load_json(path: Path) -> dict[str, Any]:
    if not path.is_file():
        return {}
    return json.loads(path.read_text())


def _reusable(out: Path, name: str, recipe_sha: str, previous: dict[str, Any]) -> bool:
    entry = previous.get("outputs", {}).get(name)
    path = out / name
    return (
        entry is not None
        and entry.get("recipe_sha256") == recipe_sha
        and path.is_file()
        and sha256_file(path) == entry.get("sha256")
    )


def _clean_partial(out: Path, plan: _Plan, todo: Sequence[str], log) -> None:
    """Delete torn temp files and chunk folders whose recipe no longer matches."""
    partial = out / ".partial"
    if not partial.is_dir():
        return
    for tmp in partial.rglob("*.tmp"):
        tmp.unlink()
    keep = {plan.chunk_dir(out, name).name for name in todo}
    stems = {Path(name).stem for name in todo}
    for folder in partial.iterdir():
        stem = folder.name.rsplit("-", 1)[0]
        if folder.is_dir() and stem in stems and folder.name not in keep:
            log(f"removing stale chunks {folder.name} (inputs or settings changed)")
            shutil.rmtree(folder)


def _chunk_path(folder: Path, chunk: int) -> Path:
    return folder / f"chunk-{chunk:05d}.json"


def _iso_frames(plan: _Plan) -> tuple[list, list]:
    """GFN2-xTB free-atom energies of H, C, N, O (Hund's-rule multiplicities)."""
    from ase import Atoms

    from experiments.xtb_data.store import frame_to_dict
    from nequip_jax.oracle import spin_multiplicity

    source = plan.source / "iso_atoms.xyz"
    if source.is_file():
        template = ase.io.read(source, ":")
    else:
        template = [Atoms(s, cell=[0, 0, 0], pbc=False) for s in "CHNO"]
    frames = []
    for atoms in template:
        atoms = atoms.copy()
        atoms.calc = None
        atoms.info = {"multiplicity": spin_multiplicity(atoms)}
        labels = plan.oracle.label([atoms])
        frames.append(frame_to_dict(atoms, labels.energies[0], labels.forces[0]))
    return frames, []


def _summarise(name: str, kind: str, frames: list, failures: list, n_items: int) -> dict[str, Any]:
    info: dict[str, Any] = {"kind": kind, "n_inputs": n_items, "n_frames": len(frames)}
    info["n_dropped"] = sum(1 for f in failures if not f["kept"])
    if frames:
        energies = np.array([f["energy"] for f in frames])
        info["energy_min_eV"] = float(energies.min())
        info["energy_max_eV"] = float(energies.max())
    if kind == "scan" and frames:
        steps = np.array([f["info"]["relax_steps"] for f in frames])
        info["n_converged"] = int(sum(bool(f["info"]["relax_converged"]) for f in frames))
        info["relax_steps_mean"] = float(steps.mean())
        info["relax_steps_max"] = int(steps.max())
        info["n_start_clash"] = sum(1 for f in failures if f["reason"] == "start_clash")
    return info


def run(config: Config, *, executor: concurrent.futures.Executor | None = None) -> Summary:
    """Generate (or resume, or reuse) the GFN2-xTB 3BPA data set in ``config.out``.

    Args:
        config: the settings.
        executor: where the chunks are computed (any ``concurrent.futures.Executor``, e.g. a
            Dask ``Client.get_executor()``); None: a local pool of ``config.workers``
            single-threaded processes. The results do not depend on it.
    """
    t0 = time.perf_counter()
    out = Path(config.out)
    out.mkdir(parents=True, exist_ok=True)

    def log(message: str) -> None:
        if not config.quiet:
            print(f"[xtb_data] {message}", file=sys.stderr, flush=True)

    source = resolve_source(config.source)
    plan = _Plan(config, source)
    previous = _load_json(out / "PROVENANCE.json")
    summary = Summary(complete=False, out=out)
    todo = []
    # A scan stored in the reference for this recipe is the one the committed results used: it
    # is restored (over a file computed here, which may differ in its last digits).
    restored: dict[str, tuple[dict[str, Any], list]] = {}
    for name in plan.recipes:
        if config.reference is not None and plan.kind[name] == "scan":
            stored = restore_reference(config.reference, name, plan.recipe_sha(name), out)
            if stored is not None:
                restored[name] = stored
                summary.reused.append(name)
                log(f"{name}: restored from the reference {config.reference} (same recipe)")
                continue
            if name in stored_names(config.reference):
                log(
                    f"warning: the reference {config.reference} holds {name} for another recipe "
                    "(settings, source or package versions differ); computing it, and results on "
                    "it cannot be paired with results on the stored one"
                )
        if _reusable(out, name, plan.recipe_sha(name), previous):
            summary.reused.append(name)
        else:
            todo.append(name)
    if summary.reused:
        log(f"reusing complete outputs (same inputs and settings): {', '.join(summary.reused)}")
    _clean_partial(out, plan, todo, log)

    pending: list[Task] = []
    for name in todo:
        folder = plan.chunk_dir(out, name)
        pending += [t for t in plan.tasks[name] if not _chunk_path(folder, t.chunk).is_file()]
    # Scans first: they are the slow part, so both workers stay busy until the end.
    pending.sort(key=lambda t: (t.kind != "scan", t.output, t.chunk))
    n_total = sum(len(t.items) for t in pending)
    progress = Progress(
        total_cost=sum(len(t.items) * (RELAX_COST if t.kind == "scan" else 1.0) for t in pending),
        total_frames=n_total,
        log=log,
    )
    if pending:
        n_done_before = sum(len(plan.tasks[n]) for n in todo) - len(pending)
        log(
            f"{len(pending)} chunks to compute ({n_total} structures), {n_done_before} chunks "
            f"already done; "
            + (
                f"{config.workers} single-threaded worker(s)"
                if executor is None
                else "on the executor"
            )
            + f"; source {source}"
        )
    settings = WorkerSettings(
        oracle=plan.oracle,
        fmax=config.fmax,
        max_steps=config.max_steps,
        maxstep=config.maxstep,
        epsilon=config.epsilon,
        clash_ratio=config.clash_ratio,
        dihedral_tolerance=config.dihedral_tolerance,
        held=held_dihedrals(config),
    )
    stopped = False
    if pending:
        results = map_single_threaded(
            compute_chunk,
            pending,
            n_workers=max(1, min(config.workers, len(pending))),
            initializer=init_worker,
            initargs=(settings,),
            ordered=False,
            executor=executor,
        )
        try:
            for result in results:
                _write_chunk(plan, out, result)
                summary.computed_chunks += 1
                kind = plan.kind[result.output]
                n = len(plan.tasks[result.output][result.chunk].items)
                progress.update(n, n * (RELAX_COST if kind == "scan" else 1.0), result)
                if (
                    config.limit_chunks is not None
                    and summary.computed_chunks >= config.limit_chunks
                ):
                    stopped = True
                    break
        finally:
            results.close()
    if stopped:
        log(
            f"stopped after {summary.computed_chunks} chunks (--limit-chunks); run the same "
            "command again to continue"
        )
        summary.seconds = time.perf_counter() - t0
        return summary

    failures_all = _load_json(out / "failures.json") if (out / "failures.json").is_file() else {}
    entries = dict(previous.get("outputs", {}))
    for name, (entry, failures) in restored.items():
        entries[name] = {**entry, "restored_from_reference": True}
        failures_all[name] = failures
    for name in todo:
        if plan.kind[name] == "iso":
            with single_threaded():
                frames, failures = _iso_frames(plan)
        else:
            folder = plan.chunk_dir(out, name)
            frames, failures = [], []
            for task in plan.tasks[name]:
                data = json.loads(_chunk_path(folder, task.chunk).read_text())
                frames += data["frames"]
                failures += data["failures"]
        write_extxyz_atomic(out / name, [frame_from_dict(f) for f in frames])
        failures_all[name] = failures
        entries[name] = {
            "recipe": plan.recipes[name],
            "recipe_sha256": plan.recipe_sha(name),
            "sha256": sha256_file(out / name),
            **_summarise(name, plan.kind[name], frames, failures, plan.n_items[name]),
        }
        summary.written.append(name)
        log(f"wrote {name}: {entries[name]['n_frames']} frames")
    # Keep entries of outputs from earlier runs only while their files are intact.
    entries = {
        n: e
        for n, e in entries.items()
        if (out / n).is_file() and sha256_file(out / n) == e.get("sha256")
    }
    failures_all = {n: f for n, f in failures_all.items() if n in entries}
    atomic_write_json(out / "failures.json", failures_all)
    provenance = {
        "generator": "python -m experiments.xtb_data",
        "created_utc": datetime.datetime.now(datetime.UTC).isoformat(timespec="seconds"),
        "method": config.method,
        "oracle": plan.oracle.provenance(),
        "versions": plan.versions,
        "source": {"folder": str(source), "sha256": plan.source_sha},
        "settings": {
            k: (str(v) if isinstance(v, Path) else v) for k, v in dataclasses.asdict(config).items()
        },
        "scan": {
            "dihedral_indices_0based": scan.DIHEDRALS,
            "betas_deg": list(config.betas),
            "grid_deg": config.grid,
            "start_frame": getattr(plan, "start_frame", None),
            "start_rule": getattr(plan, "start_rule", None),
            "forces": "unconstrained GFN2-xTB forces (true gradient) at the relaxed geometry",
        },
        "outputs": entries,
        "wall_time_s_this_run": round(time.perf_counter() - t0, 2),
    }
    atomic_write_json(out / "PROVENANCE.json", provenance)
    write_sha256sums(out, [*sorted(entries), "failures.json"])
    for name in todo:
        shutil.rmtree(plan.chunk_dir(out, name), ignore_errors=True)
    partial = out / ".partial"
    if partial.is_dir() and not any(partial.iterdir()):
        partial.rmdir()
    summary.complete = True
    summary.counts = {n: {k: v for k, v in e.items() if k != "recipe"} for n, e in entries.items()}
    summary.seconds = time.perf_counter() - t0
    log(f"done in {summary.seconds:.1f} s; outputs in {out}")
    return summary


def _write_chunk(plan: _Plan, out: Path, result: ChunkResult) -> None:
    atomic_write_json(
        _chunk_path(plan.chunk_dir(out, result.output), result.chunk),
        {
            "output": result.output,
            "chunk": result.chunk,
            "recipe_sha256": plan.recipe_sha(result.output),
            "frames": result.frames,
            "failures": result.failures,
        },
    )
