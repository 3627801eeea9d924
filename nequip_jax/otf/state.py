"""Resumable state of an on-the-fly run and its JSONL event log.

The state file (``state.json``) is the commit point of a checkpoint: the model folder and the
training-set file it names are written first (under new, versioned names), then the state file
is replaced atomically, then older versions are deleted. A crash at any moment leaves a state
file whose model and training set exist and belong to it.

The event log (``events.jsonl``) gets one JSON object per line: oracle calls, retrains, the
uncertainty trace, true-error samples, MD restarts, evaluations. The state records how many
lines belonged to the run at the checkpoint; resuming truncates the log to that many lines, so
events after the checkpoint (which will happen again) are not duplicated.
"""

from __future__ import annotations

import dataclasses
import json
from pathlib import Path
from typing import Any

from nequip_jax._io import atomic_write_json, atomic_write_text

__all__ = [
    "OTFState",
    "save_state",
    "load_state",
    "EventLog",
    "read_events",
    "STATE_VERSION",
    "CONFIG_FILE",
    "check_run_config",
]

STATE_VERSION = 1


@dataclasses.dataclass
class OTFState:
    """Everything needed to continue an on-the-fly run exactly where it stopped.

    Attributes:
        step: MD steps done.
        n_oracle_calls: training labels requested so far.
        n_diagnostic_calls: oracle calls for true-error samples (never trained on).
        n_resets: MD restarts after a broken frame or a failed label.
        last_call_step: step of the last training label (−∞ as a large negative number).
        threshold: current trigger threshold (``None`` for the random trigger).
        random_steps: steps at which the random baseline labels (sorted).
        rng_state: ``numpy.random.PCG64`` state of the Langevin noise.
        positions / momenta: [n_atoms, 3] MD state (Å, ASE momentum units).
        numbers: [n_atoms] atomic numbers.
        start_positions: [n_atoms, 3] the start structure (used by restarts).
        model_dir / train_file: names (inside the work folder) of the current model folder and
            training set.
        log_lines: lines of ``events.jsonl`` belonging to the run at this checkpoint.
        timers: accumulated wall seconds per activity (``md``, ``oracle``, ``train``, ``head``,
            ``diagnostic``, ``total``).
        done: the run reached ``n_steps`` and was evaluated.
    """

    step: int
    n_oracle_calls: int
    n_diagnostic_calls: int
    n_resets: int
    last_call_step: int
    threshold: float | None
    random_steps: list[int]
    rng_state: dict[str, Any]
    positions: list
    momenta: list
    numbers: list
    start_positions: list
    model_dir: str
    train_file: str
    log_lines: int
    timers: dict[str, float]
    done: bool = False


#: The configuration a work folder's run was started with (its ``to_dict``, as JSON).
CONFIG_FILE = "config.json"

#: Settings that may change between the calls of one run: where the data lie and how long one
#: call may take.
_RESUMABLE_CHANGES = ("data_root", "max_wall_s")


def check_run_config(workdir: str | Path, config: Any, *, resuming: bool) -> None:
    """Record the configuration of a new run in ``workdir`` (``resuming=False``), or check that a
    run resumed there (or reported, when finished) was started with the same one.

    ``config`` is an :class:`nequip_jax.otf.OTFConfig`; ``data_root`` and ``max_wall_s`` may
    change between calls.

    Raises:
        ValueError: the folder holds a run of another configuration (naming the settings that
            differ), or a run state without its configuration file; the remedy is another
            folder for the new run, or the run's own configuration to resume it.
    """
    workdir = Path(workdir)
    current = {k: v for k, v in config.to_dict().items() if k not in _RESUMABLE_CHANGES}
    current = json.loads(json.dumps(current))
    path = workdir / CONFIG_FILE
    if not resuming:
        atomic_write_json(path, current)
        return
    if not path.is_file():
        raise ValueError(
            f"{workdir}: holds a run state without {CONFIG_FILE}, so the configuration it was "
            "started with is unknown; start the run in an empty folder."
        )
    stored = json.loads(path.read_text())
    if stored != current:
        differ = sorted(k for k in set(stored) | set(current) if stored.get(k) != current.get(k))
        raise ValueError(
            f"{workdir}: holds a run started with another configuration (it differs in "
            f"{differ}; the run's own is {path}); start the new run in an empty folder, or "
            "resume this one with its configuration."
        )


def save_state(path: str | Path, state: OTFState) -> None:
    """Write ``state`` as JSON atomically (floats keep full precision)."""
    atomic_write_json(path, {"version": STATE_VERSION, **dataclasses.asdict(state)})


def load_state(path: str | Path) -> OTFState:
    """Read a state written by :func:`save_state`."""
    raw = json.loads(Path(path).read_text())
    version = raw.pop("version", None)
    if version != STATE_VERSION:
        raise ValueError(
            f"{path}: state version {version} is not supported (this library writes "
            f"{STATE_VERSION}); start a new run in an empty folder."
        )
    return OTFState(**raw)


class EventLog:
    """Append-only JSONL log; ``keep`` truncates an existing file to its first ``keep`` lines.

    Every record gets ``"event"`` (its kind) and the caller's fields; lines are flushed at once
    so that a crash loses nothing written before it.
    """

    def __init__(self, path: str | Path, keep: int | None = 0):
        self.path = Path(path)
        lines = self.path.read_text().splitlines() if self.path.is_file() else []
        if keep is not None:
            lines = lines[:keep]
            atomic_write_text(self.path, "".join(line + "\n" for line in lines))
        self.n_lines = len(lines)
        self._handle = open(self.path, "a", encoding="utf-8")  # noqa: SIM115

    def write(self, event: str, **fields: Any) -> None:
        self._handle.write(json.dumps({"event": event, **fields}, sort_keys=True) + "\n")
        self._handle.flush()
        self.n_lines += 1

    def close(self) -> None:
        self._handle.close()

    def __enter__(self) -> EventLog:
        return self

    def __exit__(self, *exc) -> None:
        self.close()


def read_events(path: str | Path, event: str | None = None) -> list[dict]:
    """Records of a log (all, or those of one kind)."""
    out = []
    for line in Path(path).read_text().splitlines():
        if line.strip():
            record = json.loads(line)
            if event is None or record["event"] == event:
                out.append(record)
    return out
