"""Training checkpoints: the full training state, written atomically.

A checkpoint holds the parameters, optimiser state, EMA parameters, scheduler state, the epoch
counter and the run configuration, serialised with msgpack (``flax.serialization``). Restoring
needs a template of the same structure (a freshly initialised state).
"""

from __future__ import annotations

import json
import os
from pathlib import Path

import numpy as np
from flax import serialization

from nequip_jax._io import atomic_write_bytes

__all__ = ["save_checkpoint", "load_checkpoint"]


def save_checkpoint(path: str | os.PathLike, state, *, epoch: int, scheduler, meta: dict) -> None:
    """Atomically write ``state`` (any pytree), the scheduler NamedTuple and metadata."""
    payload = {
        "state": serialization.to_state_dict(state),
        "scheduler": {k: np.asarray(v) for k, v in scheduler._asdict().items()},
        "epoch": np.asarray(epoch),
        "meta": json.dumps(meta, sort_keys=True),
    }
    atomic_write_bytes(path, serialization.msgpack_serialize(payload))


def load_checkpoint(path: str | os.PathLike, template, scheduler_cls):
    """Read a checkpoint written by :func:`save_checkpoint`.

    Returns:
        ``(state, scheduler, epoch, meta)`` with ``state`` shaped like ``template``.

    Raises:
        FileNotFoundError: no checkpoint at ``path``.
        ValueError: the file is not a checkpoint or does not match the template.
    """
    path = Path(path)
    if not path.is_file():
        raise FileNotFoundError(f"{path}: no checkpoint; start without --resume.")
    try:
        payload = serialization.msgpack_restore(path.read_bytes())
        state = serialization.from_state_dict(template, payload["state"])
    except Exception as err:
        raise ValueError(
            f"{path}: not a checkpoint of this configuration ({err}); delete it or start a new "
            "run folder."
        ) from err
    scheduler = scheduler_cls(**{k: np.asarray(v) for k, v in payload["scheduler"].items()})
    return state, scheduler, int(payload["epoch"]), json.loads(payload["meta"])
