"""Two JAX processes on localhost train one sharded ensemble: equal to one process, resumable,
and only process 0 writes files."""

from __future__ import annotations

import json
import os
import socket
import subprocess
import sys
import textwrap
from pathlib import Path

import jax
import numpy as np
import pytest
import yaml
from ase.io import write

from nequip_jax.training import RunConfig
from nequip_jax.training.distributed import initialize

REPO = Path(__file__).resolve().parents[2]

# Runs the CLI twice in one process of the pair (two epochs, then resumed to the configured
# four); on process 1 an audit hook records every file this
# process opens for writing or renames inside the run folder (the oracle for "process 0 alone
# writes"), saved next to the folder when the process exits.
LAUNCH = textwrap.dedent(
    """
    import atexit, json, os, sys
    process_id, workdir, record = int(sys.argv[1]), os.path.abspath(sys.argv[2]), sys.argv[3]
    written = []
    WRITE = os.O_WRONLY | os.O_RDWR | os.O_CREAT | os.O_APPEND | os.O_TRUNC

    def hook(event, args):
        if event == "open":
            path, mode, flags = args
            wants = any(c in (mode or "") for c in "wax+") or bool((flags or 0) & WRITE)
            paths = [path] if wants else []
        elif event == "os.rename":
            paths = [args[1]]
        else:
            return
        for p in paths:
            if isinstance(p, (str, bytes, os.PathLike)):
                p = os.path.abspath(os.fsdecode(p))
                if p.startswith(workdir):
                    written.append(p)

    if process_id == 1:
        sys.addaudithook(hook)
        atexit.register(lambda: open(record, "w").write(json.dumps(written)))
    from nequip_jax.cli import main
    # Two epochs, then resume to four: the resumed run must reach the uninterrupted result.
    assert main(sys.argv[4:] + ["--set", "optim.max_epochs=2"]) == 0
    sys.exit(main(sys.argv[4:] + ["--resume"]))
    """
)


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def _run_pair(config_path, workdir, records, timeout=240):
    """Start both processes, wait for both; never leave one behind."""
    port = _free_port()
    env = dict(os.environ, OMP_NUM_THREADS="1")
    # One CPU device per process (no device-count flag of the caller); the suite's other XLA
    # flags (its compiler settings) stay.
    flags = os.environ.get("XLA_FLAGS", "").split()
    env["XLA_FLAGS"] = " ".join(f for f in flags if "device_count" not in f)
    procs = []
    try:
        for i in range(2):
            argv = [
                sys.executable, "-c", LAUNCH, str(i), str(workdir), str(records[i]),
                "train-ensemble", str(config_path), "--members", "2", "--workdir", str(workdir),
                "--distributed", "--coordinator", f"127.0.0.1:{port}", "--num-processes", "2",
                "--process-id", str(i),
            ]  # fmt: skip
            procs.append(
                subprocess.Popen(
                    argv, cwd=REPO, env=env, stdout=subprocess.PIPE, stderr=subprocess.STDOUT,
                    text=True,
                )
            )  # fmt: skip
        outputs = [p.communicate(timeout=timeout)[0] for p in procs]
    finally:
        for p in procs:
            if p.poll() is None:
                p.kill()
                p.wait()
    for i, (p, out) in enumerate(zip(procs, outputs, strict=True)):
        assert p.returncode == 0, f"process {i} failed:\n{out[-4000:]}"
    return outputs


@pytest.fixture
def files_config(tmp_path, tiny_model):
    from nequip_jax.data import load_3bpa

    frames = load_3bpa("train_300K", allow_download=False)[:6]
    write(tmp_path / "train.xyz", frames[:4], format="extxyz")
    write(tmp_path / "val.xyz", frames[4:], format="extxyz")
    raw = {
        "seed": 3,
        "model": {**tiny_model, "num_layers": 1},  # (one layer: the compiles dominate)
        "data": {
            "setting": "files",
            "train_file": str(tmp_path / "train.xyz"),
            "val_file": str(tmp_path / "val.xyz"),
        },
        "optim": {
            "optimizer": "adam",
            "learning_rate": 0.01,
            "batch_size": 2,
            "eval_batch_size": 4,
            "max_epochs": 4,
            "plateau_patience": 50,
        },
    }
    path = tmp_path / "config.yaml"
    path.write_text(yaml.safe_dump(raw))
    return path, frames


def test_two_processes_train_the_single_process_ensemble(files_config, tmp_path):
    from nequip_jax.model.ensemble import Ensemble
    from nequip_jax.training.ensemble import train_ensemble

    config_path, frames = files_config
    workdir = tmp_path / "distributed"
    records = [tmp_path / "writes0.json", tmp_path / "writes1.json"]
    outputs = _run_pair(config_path, workdir, records)
    assert outputs[1].count("process 1 of 2: 2 devices in all") == 2
    # The second call resumed at epoch 2 rather than starting again.
    assert [outputs[0].count(f"epoch {e} ") for e in range(4)] == [1, 1, 1, 1]

    config = RunConfig.from_dict(yaml.safe_load(config_path.read_text()))
    reference = train_ensemble(
        config, tmp_path / "single", n_members=2, data=(frames[:4], frames[4:]), verbose=False
    )
    distributed = Ensemble.load(workdir / "ensemble")
    got = jax.tree.leaves(distributed.groups[0].params)
    want = jax.tree.leaves(reference.groups[0].params)
    assert len(got) == len(want) > 0
    for a, b in zip(got, want, strict=True):
        np.testing.assert_allclose(np.asarray(a), np.asarray(b), rtol=1e-5, atol=1e-6)

    lines = (workdir / "group0" / "metrics.jsonl").read_text().splitlines()
    assert sorted((r["epoch"], r["member"]) for r in map(json.loads, lines)) == [
        (e, m) for e in range(4) for m in range(2)
    ]
    assert json.loads(records[1].read_text()) == []  # process 1 wrote nothing in the run folder
    assert not records[0].exists()  # (the hook ran on process 1 only)


@pytest.mark.parametrize(
    ("kwargs", "env", "message"),
    [
        ({}, {}, "pass --coordinator"),
        ({"coordinator_address": "127.0.0.1:1"}, {}, "JAX_NUM_PROCESSES, JAX_PROCESS_ID not given"),
        (
            {},
            {"JAX_COORDINATOR_ADDRESS": "h:1", "JAX_NUM_PROCESSES": "2", "JAX_PROCESS_ID": "2"},
            "process id 2 is not in 0 .. 1",
        ),
        (
            {"num_processes": 2, "process_id": 0},
            {"JAX_COORDINATOR_ADDRESS": "h:1", "JAX_NUM_PROCESSES": "x"},
            None,
        ),
    ],
)
def test_initialize_rejects_incomplete_settings(monkeypatch, kwargs, env, message):
    for name in ("JAX_COORDINATOR_ADDRESS", "JAX_NUM_PROCESSES", "JAX_PROCESS_ID", "SLURM_JOB_ID"):
        monkeypatch.delenv(name, raising=False)
    for name, value in env.items():
        monkeypatch.setenv(name, value)
    if message is None:
        # Arguments take precedence over the environment: the bad JAX_NUM_PROCESSES is unused,
        # so the check passes and initialisation would be attempted; stop it there.
        monkeypatch.setattr(jax.distributed, "initialize", _refuse)
        with pytest.raises(RuntimeError, match="reached initialize with h:1, 2, 0"):
            initialize(**kwargs)
        return
    with pytest.raises(ValueError, match=message):
        initialize(**kwargs)


def _refuse(*, coordinator_address, num_processes, process_id, initialization_timeout):
    raise RuntimeError(
        f"reached initialize with {coordinator_address}, {num_processes}, {process_id}"
    )
