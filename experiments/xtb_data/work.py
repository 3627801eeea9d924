"""What a worker process does with one chunk: relabel MD frames, or relax dihedral-scan points."""

from __future__ import annotations

import time
from typing import Any, NamedTuple

import numpy as np
from ase import Atoms

from experiments.xtb_data import scan
from experiments.xtb_data.store import frame_to_dict
from nequip_jax.oracle import OracleError, XTBOracle


class WorkerSettings(NamedTuple):
    """Everything a worker needs besides the chunk (sent once, to the worker initializer)."""

    oracle: XTBOracle
    fmax: float = 0.05
    max_steps: int = 500
    maxstep: float = 0.2
    epsilon: float = 1e-5
    clash_ratio: float = 0.6
    dihedral_tolerance: float = 0.1
    held: tuple[str, ...] = tuple(scan.HELD_DIHEDRALS)


class Task(NamedTuple):
    """One chunk of work.

    ``kind`` "md": ``items`` = [(source_index, Atoms)]; "scan": ``items`` = [(alpha, gamma)] at
    ``beta`` (degrees), all built from ``reference``.
    """

    output: str
    chunk: int
    kind: str
    items: list
    reference: Atoms | None = None
    beta: float | None = None


class ChunkResult(NamedTuple):
    """Labelled frames (JSON dicts, in item order), failure records, and wall time in s."""

    output: str
    chunk: int
    frames: list[dict[str, Any]]
    failures: list[dict[str, Any]]
    seconds: float


_SETTINGS: WorkerSettings | None = None


def init_worker(settings: WorkerSettings) -> None:
    """Worker initializer: keep the settings (and thus the oracle) for every chunk.

    Also loads tblite now: thread caps (``single_threaded``) only reach libraries already loaded,
    and with ``workers=1`` the chunks run in the parent process under such caps.
    """
    global _SETTINGS
    _SETTINGS = settings
    import tblite.ase  # noqa: F401


def compute_chunk(task: Task) -> ChunkResult:
    """Run one chunk with the settings given to :func:`init_worker`."""
    assert _SETTINGS is not None, "init_worker was not called in this process"
    start = time.perf_counter()
    if task.kind == "md":
        frames, failures = _relabel(task, _SETTINGS)
    elif task.kind == "scan":
        frames, failures = _scan(task, _SETTINGS)
    else:
        raise ValueError(f"unknown task kind {task.kind!r}")
    return ChunkResult(task.output, task.chunk, frames, failures, time.perf_counter() - start)


def _relabel(task: Task, settings: WorkerSettings) -> tuple[list[dict], list[dict]]:
    """Replace energy and forces of MD frames; keep species, positions, cell, pbc and info."""
    frames, failures = [], []
    for source_index, atoms in task.items:
        try:
            labels = settings.oracle.label([atoms])
        except OracleError as err:
            failures.append(
                scan.failure("scf_failed", err.message, kept=False, source_index=source_index)
            )
            continue
        frames.append(frame_to_dict(atoms, labels.energies[0], labels.forces[0]))
    return frames, failures


def _scan(task: Task, settings: WorkerSettings) -> tuple[list[dict], list[dict]]:
    frames, failures = [], []
    bonds = scan.bond_graph(task.reference)
    for alpha, gamma in task.items:
        frame, notes = scan_point(task.reference, bonds, alpha, task.beta, gamma, settings)
        failures.extend(notes)
        if frame is not None:
            frames.append(frame)
    return frames, failures


def scan_point(
    reference: Atoms,
    bonds: np.ndarray,
    alpha: float,
    beta: float,
    gamma: float,
    settings: WorkerSettings,
) -> tuple[dict[str, Any] | None, list[dict[str, Any]]]:
    """Build, relax and label one grid point.

    Returns:
        (frame or None, failure records). The frame carries the unconstrained GFN2-xTB forces of
        the relaxed geometry (a fresh single point), ``dihedrals`` (measured, rounded to 0.01
        degree like the DFT files), ``relax_steps`` and ``relax_converged``.
    """
    where = {"alpha": float(alpha), "beta": float(beta), "gamma": float(gamma)}
    held = settings.held
    amine = float(scan.measure_dihedrals(reference, ("amine",))[0])
    wanted = {"alpha": alpha, "beta": beta, "gamma": gamma, "amine": amine}
    targets = np.array([wanted[k] for k in held], dtype=np.float64)
    atoms = scan.build_scan_geometry(reference, {k: wanted[k] for k in scan.DIHEDRALS})
    notes = []
    start_contact = scan.min_nonbonded_contact(atoms, bonds)
    clash = start_contact.ratio < settings.clash_ratio
    calculator = settings.oracle.make_calculator(atoms)
    result = scan.relax_fixed_dihedrals(
        atoms,
        calculator,
        fmax=settings.fmax,
        max_steps=settings.max_steps,
        maxstep=settings.maxstep,
        epsilon=settings.epsilon,
        held=held,
    )
    reason = None
    if result.error is not None:
        reason, detail = result.error
    else:
        measured = scan.measure_dihedrals(result.atoms, held)
        error = np.abs(scan.angle_difference(measured, targets))
        end_contact = scan.min_nonbonded_contact(result.atoms, bonds)
        if error.max() > settings.dihedral_tolerance:
            reason = "dihedral_off"
            detail = f"|measured - target| = {error.round(4).tolist()} deg"
        elif not np.array_equal(scan.bond_graph(result.atoms), bonds):
            reason, detail = "topology_changed", "the bond graph changed during the relaxation"
        elif end_contact.ratio < settings.clash_ratio:
            reason = "final_clash"
            detail = f"atoms {end_contact.i}-{end_contact.j} at {end_contact.distance:.3f} Å"
    frame = None
    if reason is None:
        try:
            labels = settings.oracle.label([result.atoms])
        except OracleError as err:
            reason, detail = "scf_failed", f"final single point: {err.message}"
        else:
            final = result.atoms
            final.info = {
                "dihedrals": np.round(scan.measure_dihedrals(final), 2) % 360.0,
                "relax_steps": result.steps,
                "relax_converged": result.converged,
            }
            frame = frame_to_dict(final, labels.energies[0], labels.forces[0])
    kept = frame is not None
    if clash:
        notes.append(
            scan.failure(
                "start_clash",
                f"after the rigid rotation atoms {start_contact.i}-{start_contact.j} were "
                f"{start_contact.distance:.3f} Å apart (ratio {start_contact.ratio:.2f} of the "
                "covalent-radius sum); relaxed anyway",
                kept,
                **where,
            )
        )
    if reason is not None:
        notes.append(scan.failure(reason, detail, False, steps=result.steps, **where))
    elif not result.converged:
        notes.append(
            scan.failure(
                "not_converged",
                f"fmax {settings.fmax} eV/Å not reached in {settings.max_steps} steps",
                True,
                steps=result.steps,
                **where,
            )
        )
    return frame, notes
