"""Uncertainty-triggered on-the-fly active learning in Langevin molecular dynamics.

The loop that Zhu et al. (J. Chem. Phys. 2023, Introduction) motivate their fast uncertainty
with: run MD with the machine-learned potential; at every step compare the structure's maximum
per-atom uncertainty (Eq. (12) with the trigger's registered method: the GMM NLL of Eq. (8),
LLPR, or the ensemble σ of Eq. (4)) with a threshold set from the training set; when it is
exceeded, label the structure with the reference method (the oracle), add it to the training set,
refit the model from its current weights and refit the head, then continue the trajectory. The
random method, which carries no information, labels a fixed number of frames at random steps:
the baseline.

Work folder:

- ``config.json`` — the configuration the run was started with (a resumed or reported run must
  have the same, :func:`nequip_jax.otf.state.check_run_config`);
- ``state.json`` — the resumable state (:mod:`nequip_jax.otf.state`);
- ``model_<n>/`` — the current model after ``n`` oracle calls; ``train_<n>.xyz`` its data;
- ``events.jsonl`` — every oracle call, retrain, uncertainty trace point, true-error sample,
  MD restart and evaluation;
- ``report.json`` — the summary (:func:`nequip_jax.otf.report.summarize_run`), when finished.

Randomness: one ``jax.random.key(config.seed)`` split into the keys of the initial draw, the
test draw, the Langevin noise (a numpy PCG64 generator whose state is checkpointed), the
fine-tuning batch order, the head fit (e.g. the GMM seeding) and the random baseline's steps.

Determinism of a resumed run: at every checkpoint the calculator (and so its Verlet neighbour
list) is rebuilt, the training set is re-read from its file and the MD state is stored with full
precision, so a run resumed from a checkpoint repeats the uninterrupted run.
"""

from __future__ import annotations

import concurrent.futures
import time
from pathlib import Path

import jax
import numpy as np

from nequip_jax._io import atomic_write_json
from nequip_jax.oracle import (
    ExecutorOracle,
    Oracle,
    OracleError,
    XTBOracle,
    attach_labels,
    bare_copy,
)
from nequip_jax.otf.config import OTFConfig
from nequip_jax.otf.data import read_xyz, write_xyz
from nequip_jax.otf.dynamics import SEGMENT_STEPS, make_driver
from nequip_jax.otf.finetune import FineTuner
from nequip_jax.otf.session import (
    Session,
    broken_reason,
    evaluate_session,
    md_atoms,
    new_state,
    restart_md,
)
from nequip_jax.otf.state import EventLog, check_run_config, load_state
from nequip_jax.otf.surrogate import Surrogate, threshold_from_scores
from nequip_jax.uncertainty.metrics import force_error_per_atom, mean_force_error

__all__ = ["run_otf"]


def _learn(run, state, log, surrogate, tuner, train_atoms, frame, labels, score):
    """Add the labelled frame, fine-tune from the current weights, refit the head and the
    threshold, save the new model; returns the new training set and surrogate."""
    c = run.config
    # Grow the training set through its file, so that a resumed run sees the same numbers.
    train_file = f"train_{state.n_oracle_calls:04d}.xyz"
    write_xyz(run.workdir / train_file, [*train_atoms, *attach_labels([frame], labels)])
    train_atoms = read_xyz(run.workdir / train_file)
    t0 = time.perf_counter()
    surrogate, info = surrogate.refit(
        train_atoms,
        tuner,
        epochs=c.retrain_epochs,
        key=jax.random.fold_in(run.keys["tune"], state.n_oracle_calls),
        head_key=jax.random.fold_in(run.keys["head"], state.n_oracle_calls),
        head_options=c.fit_options(),
    )
    state.timers["train"] += info["train_s"]
    state.timers["head"] += info.get("head_s", 0.0)
    if surrogate.has_uncertainty:
        state.threshold = threshold_from_scores(
            surrogate.structure_scores(train_atoms), c.threshold_percentile
        )
    refit_s = time.perf_counter() - t0
    last = info["history"][-1] if info["history"] else {}
    log.write(
        "retrain",
        step=state.step,
        n_train=len(train_atoms),
        epochs=c.retrain_epochs,
        train_forces_rmse=last.get("forces_rmse"),
        train_s=info["train_s"],
        head_s=info.get("head_s"),
        head=info.get("head"),
        refit_s=refit_s,
        threshold=state.threshold,
        compiles=tuner.n_compiles,
    )
    run.say(
        f"step {state.step}: oracle call {state.n_oracle_calls} (score {score}), refit in "
        f"{refit_s:.1f} s, {len(train_atoms)} structures, threshold {state.threshold}"
    )
    state.model_dir = f"model_{state.n_oracle_calls:04d}"
    state.train_file = train_file
    surrogate.save(run.workdir / state.model_dir)
    return train_atoms, surrogate


def run_otf(
    config: OTFConfig,
    workdir: str | Path,
    *,
    oracle: Oracle | None = None,
    cache_dir: str | Path | None = None,
    stop_at_step: int | None = None,
    verbose: bool = True,
    executor: concurrent.futures.Executor | None = None,
) -> dict:
    """Run (or resume) an on-the-fly active-learning trajectory; see the module docstring.

    Args:
        config: the run configuration.
        workdir: the run's folder; a ``state.json`` there is resumed.
        oracle: the labeller (default ``XTBOracle(**config.oracle)``, GFN2-xTB).
        cache_dir: folder for labelled initial/test sets and initial models shared between runs
            (default ``workdir/cache``).
        stop_at_step: stop (resumably, with a checkpoint) once this many MD steps are done.
        verbose: progress lines on stdout.
        executor: where the oracle runs (any ``concurrent.futures.Executor``, e.g. a Dask
            ``Client.get_executor()``: the initial and test sets in chunks over its workers,
            each trigger's structure on one of them); None: in this process. The labels, and
            so the run, do not depend on it.

    Returns:
        the run summary (:func:`nequip_jax.otf.report.summarize_run`); ``done`` is False when the
        run stopped early.
    """
    from nequip_jax.otf.report import summarize_run

    if executor is not None:
        oracle = ExecutorOracle(oracle or XTBOracle(**config.oracle), executor)
    run = Session(config, workdir, oracle, cache_dir, verbose)
    c = config
    state_path = run.workdir / "state.json"
    state = load_state(state_path) if state_path.is_file() else None
    check_run_config(run.workdir, c, resuming=state is not None)
    if state is not None and state.done:  # finished: report only, leave the folder untouched
        return summarize_run(run.workdir)
    keep = 0 if state is None else state.log_lines  # drop events after the checkpoint
    with EventLog(run.workdir / "events.jsonl", keep=keep) as log:
        if state is not None:
            surrogate = Surrogate.load(run.workdir / state.model_dir, method=c.trigger)
            run.total_at_start = state.timers["total"]
            log.write("resume", step=state.step)
            run.say(f"resuming at step {state.step} ({state.n_oracle_calls} oracle calls)")
        else:
            frames = run.initial_frames()
            surrogate = run.initial_surrogate(frames)
            state, surrogate = new_state(run, frames, surrogate, log)
            evaluate_session(run, surrogate, state, log, "initial")
            md_rng = np.random.Generator(np.random.PCG64())
            md_rng.bit_generator.state = state.rng_state
            run.checkpoint(state, md_atoms(state, c), log, md_rng)
        _md_loop(run, state, log, surrogate, stop_at_step)
    summary = summarize_run(run.workdir)
    if state.done:
        atomic_write_json(run.workdir / "report.json", summary)
    return summary


def _next_stop(state, c: OTFConfig, random_steps: list[int], stop_at_step) -> int:
    """The first step after ``state.step`` that the loop must see whatever the dynamics do:
    a true-error sample, a checkpoint, a random-baseline call, the end or the requested stop."""
    step = state.step
    candidates = [c.n_steps]
    for every in (c.error_every, c.checkpoint_every):
        if every:
            candidates.append((step // every + 1) * every)
    if not c.informative:
        candidates += [s for s in random_steps if s > step][:1]
    if stop_at_step is not None:
        candidates.append(max(stop_at_step, step + 1))
    return min(candidates)


def _md_loop(run: Session, state, log: EventLog, surrogate: Surrogate, stop_at_step) -> None:
    """Langevin steps from ``state.step`` to ``n_steps`` (or the stop): trigger, label, refit,
    checkpoint; at the end the final evaluation. Updates ``state`` in place.

    The driver (:mod:`nequip_jax.otf.dynamics`) advances to the next step with work: every
    step for the ASE path, the next event for the device path; the step is then handled the
    same way for both."""
    c = run.config
    train_atoms = read_xyz(run.workdir / state.train_file)
    tuner = FineTuner(
        surrogate.config,
        n_members=c.n_members if surrogate.is_ensemble else None,
        learning_rate=c.retrain_learning_rate,
        batch_size=c.retrain_batch_size,
        energy_weight=c.optim.energy_weight,
        forces_weight=c.optim.forces_weight,
        energy_loss=c.optim.energy_loss,
    )
    rng = np.random.Generator(np.random.PCG64())
    rng.bit_generator.state = state.rng_state
    atoms = md_atoms(state, c)
    driver = make_driver(surrogate, atoms, c, rng=rng, key=run.keys["md"], step=state.step)
    random_steps = sorted(state.random_steps)
    budget = c.max_oracle_calls if c.informative else c.random_calls
    stopped = False

    while state.step < c.n_steps:
        if (stop_at_step is not None and state.step >= stop_at_step) or (
            c.max_wall_s is not None and run.elapsed() > c.max_wall_s
        ):
            stopped = True
            break
        may_fire = (
            c.informative
            and surrogate.has_uncertainty
            and state.n_oracle_calls < budget
            and state.threshold is not None
        )
        t0 = time.perf_counter()
        frame = driver.advance(
            state.step,
            # One device call at most, so that the wall-clock limit is checked between calls.
            until=min(_next_stop(state, c, random_steps, stop_at_step), state.step + SEGMENT_STEPS),
            threshold=float(state.threshold) if may_fire else float("inf"),
            fire_from=state.last_call_step + c.min_steps_between_calls,
        )
        state.step = step = frame.step
        state.timers["md"] += time.perf_counter() - t0
        u = frame.uncertainty
        score = float(np.max(u)) if u is not None else None
        forces = frame.forces
        if c.trace_every:
            for point in frame.trace:
                if point.step % c.trace_every == 0:
                    log.write(
                        "trace",
                        step=point.step,
                        score=point.score,
                        threshold=state.threshold,
                        energy=point.energy,
                        temperature_K=point.temperature_K,
                    )
        reason = broken_reason(
            atoms.positions, forces, c.broken_min_distance, c.broken_max_neighbour_distance
        )
        if not c.informative:
            fire = step in state.random_steps
        else:
            fire = (
                score > state.threshold
                and step - state.last_call_step >= c.min_steps_between_calls
                and state.n_oracle_calls < budget
            )
        diagnostic = bool(c.error_every) and step % c.error_every == 0
        labels = None
        if reason is None and (fire or diagnostic):
            frame_atoms = bare_copy(atoms)
            t0 = time.perf_counter()
            try:
                labels = run.oracle.label([frame_atoms])
            except OracleError as err:
                reason = f"the oracle failed: {err}"
            state.timers["oracle" if fire else "diagnostic"] += time.perf_counter() - t0
            oracle_s = time.perf_counter() - t0
        if reason is not None:
            restart_md(atoms, state, c, rng)
            log.write("reset", step=step, reason=reason)
            run.say(f"step {step}: restart from the start structure ({reason})")
        elif labels is not None:
            eps = force_error_per_atom(forces, labels.forces[0])
            sample = {
                "step": step,
                "score": score,
                "threshold": state.threshold,
                "eps_max": float(eps.max()),
                "eps_mean": float(eps.mean()),
                "eps_rms": mean_force_error(eps),
                "energy_error_per_atom": float((frame.energy - labels.energies[0]) / len(atoms)),
                "oracle_s": oracle_s,
                "eps": eps.round(5).tolist(),
                "uncertainty": None if u is None else np.asarray(u).round(5).tolist(),
            }
            if not fire:
                state.n_diagnostic_calls += 1
                log.write("error_sample", **sample)
            else:
                state.n_oracle_calls += 1
                state.last_call_step = step
                log.write("oracle", n_oracle_calls=state.n_oracle_calls, **sample)
                train_atoms, surrogate = _learn(
                    run, state, log, surrogate, tuner, train_atoms, frame_atoms, labels, score
                )
        checkpoint = (
            fire
            or reason is not None
            or (bool(c.checkpoint_every) and step % c.checkpoint_every == 0)
        )
        if checkpoint:
            # A fresh neighbour list and integrator at every checkpoint: what a run resumed
            # from this checkpoint starts with.
            run.checkpoint(state, atoms, log, rng)
            driver.restart(surrogate, step=step)

    if not stopped:
        evaluate_session(run, surrogate, state, log, "final")
        state.done = True
        log.write("done", step=state.step, wall_s=run.elapsed())
    run.checkpoint(state, atoms, log, rng)
