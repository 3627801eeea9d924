"""The pieces of an on-the-fly run around its MD loop: keys, folders, initial data and model,
the initial state, test evaluation, MD set-up and restarts, broken-frame detection.

:func:`nequip_jax.otf.loop.run_otf` drives them; they are separate so that the loop itself reads
as the algorithm.
"""

from __future__ import annotations

import dataclasses
import hashlib
import json
import shutil
import time
from pathlib import Path

import ase
import jax
import numpy as np
from ase import units
from ase.constraints import FixCom
from ase.md.langevin import Langevin
from ase.md.velocitydistribution import Stationary, ZeroRotation, thermalize_momenta

from nequip_jax.evaluate import prediction_errors
from nequip_jax.oracle import XTBOracle, bare_copy
from nequip_jax.otf.config import OTFConfig
from nequip_jax.otf.data import initial_set, label_tag, test_sets, write_xyz
from nequip_jax.otf.state import EventLog, OTFState, save_state
from nequip_jax.otf.surrogate import Surrogate, threshold_from_scores
from nequip_jax.training import RunConfig, train
from nequip_jax.training.ensemble import train_ensemble

__all__ = [
    "Session",
    "broken_reason",
    "evaluate_errors",
    "evaluate_session",
    "initial_model_folder",
    "langevin",
    "md_atoms",
    "new_state",
    "restart_md",
    "run_keys",
]

_KEYS = ("initial", "test", "md", "tune", "head", "random")


def run_keys(seed: int) -> dict[str, jax.Array]:
    """The run's keys, split from ``jax.random.key(seed)``: one per source of randomness."""
    return dict(zip(_KEYS, jax.random.split(jax.random.key(seed), len(_KEYS)), strict=True))


def _numpy_seed(key: jax.Array) -> int:
    bits = np.asarray(jax.random.bits(key, (2,), dtype=np.uint32), dtype=np.uint64)
    return int(bits[0] << np.uint64(32) | bits[1])


def _tag(values: dict) -> str:
    return hashlib.sha1(json.dumps(values, sort_keys=True).encode()).hexdigest()[:10]


def initial_model_folder(config: OTFConfig, cache_dir: str | Path) -> Path:
    """Where the initial model (or, for the ensemble trigger, ensemble) of a run is trained:
    ``cache_dir/initial_<single|ensemble>_<tag>``, the tag a hash of the labels, the initial
    data, the model, the optimiser and the member count (runs that agree share it)."""
    c = config
    ensemble = c.ensemble
    tag = _tag(
        {
            "data": label_tag(c.seed, c.data_root, c.labels, c.oracle),
            "n": c.n_initial,
            "split": c.initial_split,
            "model": c.model.to_dict(),
            "optim": dataclasses.asdict(c.optim),
            "members": c.n_members if ensemble else None,
        }
    )
    return Path(cache_dir) / f"initial_{'ensemble' if ensemble else 'single'}_{tag}"


def broken_reason(
    positions: np.ndarray, forces: np.ndarray, min_distance: float, max_neighbour: float
) -> str | None:
    """Why a frame is unphysical (``None`` if it is not): non-finite forces, two atoms closer
    than ``min_distance`` (Å), or an atom whose nearest neighbour is farther than
    ``max_neighbour`` (Å; a fragment flew off).

    Args:
        positions: [n_atoms, 3]; forces: [n_atoms, 3].
    """
    if not np.all(np.isfinite(forces)) or not np.all(np.isfinite(positions)):
        return "non-finite positions or forces"
    diff = positions[:, None, :] - positions[None, :, :]
    dist = np.sqrt(np.sum(diff**2, axis=-1))
    np.fill_diagonal(dist, np.inf)
    i, j = np.unravel_index(np.argmin(dist), dist.shape)
    if dist[i, j] < min_distance:
        return f"atoms {i} and {j} are {dist[i, j]:.2f} Å apart (< {min_distance} Å)"
    nearest = dist.min(axis=1)
    k = int(np.argmax(nearest))
    if nearest[k] > max_neighbour:
        return f"atom {k} has no neighbour within {max_neighbour} Å (nearest {nearest[k]:.2f} Å)"
    return None


def evaluate_errors(surrogate: Surrogate, frames: list[ase.Atoms]) -> dict:
    """Errors of ``surrogate`` on labelled ``frames``: energy RMSE per atom (eV/atom), force
    RMSE over components (eV/Å; = sqrt(mean ε²), Zhu et al. 2023 Eq. (3)), mean and max of the
    per-atom ε of Eq. (2)."""
    summary = prediction_errors(surrogate.predict(frames), frames)["summary"]
    keys = ("n_structures", "energy_rmse_per_atom", "forces_rmse", "mean_eps", "max_eps")
    return {k: summary[k] for k in keys}


class Session:
    """One on-the-fly run: its configuration, folders, oracle, log and live objects."""

    def __init__(self, config, workdir, oracle, cache_dir, verbose):
        self.config = config
        self.workdir = Path(workdir)
        self.workdir.mkdir(parents=True, exist_ok=True)
        self.cache_dir = Path(cache_dir) if cache_dir is not None else self.workdir / "cache"
        self.cache_dir.mkdir(parents=True, exist_ok=True)
        self.oracle = oracle if oracle is not None else XTBOracle(**config.oracle)
        self.verbose = verbose
        self.keys = run_keys(config.seed)
        self.use_files = config.labels == "files"
        self.t_start = time.perf_counter()
        self.total_at_start = 0.0

    def say(self, text: str) -> None:
        if self.verbose:
            print(f"[otf {self.config.trigger}] {text}", flush=True)

    # ------------------------------------------------------------------ data and models
    def data_tag(self) -> str:
        c = self.config
        return label_tag(c.seed, c.data_root, c.labels, c.oracle)

    def initial_frames(self) -> list[ase.Atoms]:
        """The labelled initial training structures (cached)."""
        c = self.config
        path = self.cache_dir / f"initial_{c.initial_split}_{c.n_initial}_{self.data_tag()}.xyz"
        return initial_set(
            split=c.initial_split,
            n=c.n_initial,
            key=self.keys["initial"],
            root=c.data_root,
            oracle=self.oracle,
            use_file_labels=self.use_files,
            cache=path,
        )

    def tests(self) -> tuple[dict[str, list[ase.Atoms]], dict[str, str]]:
        """The labelled test sets (cached) and stand-in notes."""
        c = self.config
        return test_sets(
            c.test_splits,
            n=c.n_test,
            key=self.keys["test"],
            root=c.data_root,
            oracle=self.oracle,
            use_file_labels=self.use_files,
            cache_dir=self.cache_dir,
            tag=f"_{self.data_tag()}",
        )

    def initial_surrogate(self, frames) -> Surrogate:
        """The model trained from scratch on the initial structures (cached per setting)."""
        c = self.config
        ensemble = c.ensemble
        folder = initial_model_folder(c, self.cache_dir)
        saved = folder / ("ensemble" if ensemble else "model")
        if not saved.is_dir():
            run = RunConfig(seed=c.seed, model=c.model, optim=c.optim)
            self.say(f"training the initial {'ensemble' if ensemble else 'model'} ({folder})")
            if ensemble:
                train_ensemble(
                    run, folder, n_members=c.n_members, data=(frames, []), verbose=self.verbose
                )
            else:
                train(run, folder, data=(frames, []), verbose=self.verbose)
        return Surrogate.load(saved, method=c.trigger)

    # ------------------------------------------------------------------ checkpoints
    def elapsed(self) -> float:
        return self.total_at_start + time.perf_counter() - self.t_start

    def checkpoint(self, state: OTFState, atoms: ase.Atoms, log: EventLog, rng) -> None:
        """Commit the state (MD, generator, log length, timers); drop older model/data files."""
        state.rng_state = rng.bit_generator.state
        state.positions = atoms.positions.tolist()
        state.momenta = atoms.get_momenta().tolist()
        state.log_lines = log.n_lines
        state.timers["total"] = self.elapsed()
        save_state(self.workdir / "state.json", state)
        keep = {state.model_dir, state.train_file}
        for path in self.workdir.glob("model_*"):
            if path.name not in keep:
                shutil.rmtree(path, ignore_errors=True)
        for path in self.workdir.glob("train_*.xyz"):
            if path.name not in keep:
                path.unlink(missing_ok=True)


def new_state(
    run: Session, frames: list[ase.Atoms], surrogate: Surrogate, log: EventLog
) -> tuple[OTFState, Surrogate]:
    """The state at step 0: the head fitted (a potential's informative trigger), threshold from
    the training set, start structure with Maxwell–Boltzmann velocities at the run's
    temperature, the random baseline's steps drawn; model 0 and training set 0 written.
    Returns the state and the surrogate."""
    c = run.config
    scores_fn = surrogate.structure_scores if surrogate.has_uncertainty else None
    threshold = None
    head = None
    if not surrogate.is_ensemble and surrogate.informative:
        t0 = time.perf_counter()
        surrogate, described = surrogate.fit_head(
            frames, key=jax.random.fold_in(run.keys["head"], 0), **c.fit_options()
        )
        head = {"step": 0, "method": c.trigger, **described, "head_s": time.perf_counter() - t0}
        scores_fn = surrogate.structure_scores
    if scores_fn is not None:
        threshold = threshold_from_scores(scores_fn(frames), c.threshold_percentile)
    rng = np.random.Generator(np.random.PCG64(_numpy_seed(run.keys["md"])))
    start = bare_copy(frames[0])
    thermalize_momenta(start, temperature_K=c.temperature_K, rng=rng)
    Stationary(start)
    ZeroRotation(start)
    random_steps: list[int] = []
    if not c.informative:
        pick = np.random.default_rng(_numpy_seed(run.keys["random"]))
        n = min(c.random_calls, c.n_steps)
        random_steps = sorted(int(s) for s in pick.choice(c.n_steps, n, replace=False) + 1)
    write_xyz(run.workdir / "train_0000.xyz", frames)
    surrogate.save(run.workdir / "model_0000")
    state = OTFState(
        step=0,
        n_oracle_calls=0,
        n_diagnostic_calls=0,
        n_resets=0,
        last_call_step=-(10**9),
        threshold=threshold,
        random_steps=random_steps,
        rng_state=rng.bit_generator.state,
        positions=start.positions.tolist(),
        momenta=start.get_momenta().tolist(),
        numbers=start.numbers.tolist(),
        start_positions=start.positions.tolist(),
        model_dir="model_0000",
        train_file="train_0000.xyz",
        log_lines=0,
        timers={k: 0.0 for k in ("md", "oracle", "diagnostic", "train", "head", "eval", "total")},
    )
    log.write(
        "start",
        config=c.to_dict(),
        n_train=len(frames),
        threshold=threshold,
        oracle=run.oracle.provenance(),
        random_steps=random_steps,
    )
    if head is not None:
        state.timers["head"] += head["head_s"]
        log.write("head", **head)
    return state, surrogate


def evaluate_session(
    run: Session, surrogate: Surrogate, state: OTFState, log: EventLog, stage: str
) -> dict:
    """Errors of ``surrogate`` on the run's test sets, logged as an ``evaluation`` event."""
    t0 = time.perf_counter()
    tests, notes = run.tests()
    errors = {split: evaluate_errors(surrogate, frames) for split, frames in tests.items()}
    state.timers["eval"] += time.perf_counter() - t0
    log.write(
        "evaluation",
        stage=stage,
        step=state.step,
        n_oracle_calls=state.n_oracle_calls,
        errors=errors,
        stand_ins=notes,
    )
    for split, e in errors.items():
        run.say(
            f"{stage} {split}: F RMSE {1000 * e['forces_rmse']:.1f} meV/Å, "
            f"E RMSE {1000 * e['energy_rmse_per_atom']:.2f} meV/atom"
        )
    return errors


def md_atoms(state: OTFState, config: OTFConfig) -> ase.Atoms:
    """The MD structure of ``state`` (positions, momenta) with its centre of mass fixed."""
    atoms = ase.Atoms(numbers=state.numbers, positions=np.array(state.positions))
    atoms.set_momenta(np.array(state.momenta))
    atoms.set_constraint(FixCom())
    return atoms


def restart_md(atoms: ase.Atoms, state: OTFState, config: OTFConfig, rng) -> None:
    """Back to the start structure with fresh Maxwell–Boltzmann velocities."""
    state.n_resets += 1
    atoms.positions = np.array(state.start_positions)
    thermalize_momenta(atoms, temperature_K=config.temperature_K, rng=rng)
    Stationary(atoms)
    ZeroRotation(atoms)


def langevin(atoms: ase.Atoms, config: OTFConfig, rng: np.random.Generator) -> Langevin:
    """ASE Langevin dynamics at the run's temperature, time step and friction, drawing its noise
    from ``rng`` (checkpointed). ``fixcm=False``: the centre of mass is held by ``FixCom``."""
    return Langevin(
        atoms,
        timestep=config.timestep_fs * units.fs,
        temperature_K=config.temperature_K,
        friction=config.friction_per_fs / units.fs,
        fixcm=False,
        rng=rng,
    )
