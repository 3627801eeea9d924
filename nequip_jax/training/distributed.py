"""Training ensemble members across processes and hosts (multi-controller JAX).

Every process runs the same program on the same data: it builds the same batches, and the
member axis of the training state is laid over the devices of all processes (a ``("member",)``
mesh over ``jax.devices()``). Members are independent, so a step needs no communication; the
per-epoch error sums and, for checkpoints, the state are gathered to every process
(:func:`fetch`), so all processes take the same scheduler decisions, and process 0 alone writes
files (:func:`is_writer`).

Start one process per host (or per device group) with :func:`initialize`, which reads the
coordinator address, the number of processes and this process's index from its arguments, from
``JAX_COORDINATOR_ADDRESS`` / ``JAX_NUM_PROCESSES`` / ``JAX_PROCESS_ID``, or from SLURM's
environment (JAX's own detection). The run folder must be on a file system every process sees
(``resume`` reads ``last.ckpt`` on every process).
"""

from __future__ import annotations

import os

import jax
import numpy as np

__all__ = ["fetch", "initialize", "is_writer", "member_mesh"]

ENV_VARS = ("JAX_COORDINATOR_ADDRESS", "JAX_NUM_PROCESSES", "JAX_PROCESS_ID")
_JOINED: list[tuple] = []  # the settings this process joined with (at most one entry)


def initialize(
    coordinator_address: str | None = None,
    num_processes: int | None = None,
    process_id: int | None = None,
    *,
    timeout_s: int = 300,
) -> tuple[int, int]:
    """Join a multi-process JAX run (call before anything else uses JAX).

    Arguments left ``None`` are read from ``JAX_COORDINATOR_ADDRESS``, ``JAX_NUM_PROCESSES``
    and ``JAX_PROCESS_ID``; when none of the three is given anywhere and the process runs under
    SLURM (``SLURM_JOB_ID`` set), JAX detects all three from SLURM's variables.

    Args:
        coordinator_address: ``host:port`` of process 0's coordinator service.
        num_processes: total number of processes.
        process_id: this process's index, ``0 <= process_id < num_processes``.
        timeout_s: how long to wait for all processes to join.

    A second call with the same settings (e.g. training twice from one program) returns at once.

    Returns:
        ``(process_index, process_count)``.

    Raises:
        ValueError: the settings are incomplete or inconsistent (the message names what is
            missing and where it is read from).
    """
    settings = (coordinator_address, num_processes, process_id)
    if _JOINED:
        if _JOINED[0] != settings:
            raise ValueError(
                f"this process already joined a distributed run with {_JOINED[0]}; a process "
                f"can join only one (asked for {settings})"
            )
        return jax.process_index(), jax.process_count()
    values = {
        "JAX_COORDINATOR_ADDRESS": coordinator_address,
        "JAX_NUM_PROCESSES": num_processes,
        "JAX_PROCESS_ID": process_id,
    }
    for name in ENV_VARS:
        if values[name] is None and os.environ.get(name):
            values[name] = os.environ[name]
    given = [name for name in ENV_VARS if values[name] is not None]
    if not given:
        if not os.environ.get("SLURM_JOB_ID"):
            raise ValueError(
                "distributed training needs the coordinator address, the number of processes "
                "and this process's id: pass --coordinator/--num-processes/--process-id, set "
                f"{', '.join(ENV_VARS)}, or launch under SLURM (srun)"
            )
        jax.distributed.initialize(initialization_timeout=timeout_s)
        _JOINED.append(settings)
        return jax.process_index(), jax.process_count()
    missing = [name for name in ENV_VARS if values[name] is None]
    if missing:
        raise ValueError(
            f"incomplete distributed settings: {', '.join(missing)} not given (set the "
            "environment variable or pass the matching flag)"
        )
    try:
        count, index = int(values["JAX_NUM_PROCESSES"]), int(values["JAX_PROCESS_ID"])
    except ValueError as err:
        raise ValueError(f"JAX_NUM_PROCESSES and JAX_PROCESS_ID must be integers ({err})") from None
    if count < 1 or not 0 <= index < count:
        raise ValueError(
            f"process id {index} is not in 0 .. {count - 1} (JAX_PROCESS_ID / JAX_NUM_PROCESSES)"
        )
    jax.distributed.initialize(
        coordinator_address=str(values["JAX_COORDINATOR_ADDRESS"]),
        num_processes=count,
        process_id=index,
        initialization_timeout=timeout_s,
    )
    _JOINED.append(settings)
    return jax.process_index(), jax.process_count()


def member_mesh():
    """A ``("member",)`` mesh over every device of every process (``jax.devices()``)."""
    from jax.sharding import Mesh

    return Mesh(np.array(jax.devices()), ("member",))


def fetch(tree):
    """Host copies (numpy) of a pytree of arrays, gathering shards held by other processes."""

    def one(x):
        if isinstance(x, jax.Array) and not x.is_fully_addressable:
            from jax.experimental import multihost_utils

            return np.asarray(multihost_utils.process_allgather(x, tiled=True))
        return np.asarray(jax.device_get(x))

    return jax.tree.map(one, tree)


def is_writer() -> bool:
    """True on the process that writes files (process 0; the only process when not distributed)."""
    return jax.process_index() == 0
