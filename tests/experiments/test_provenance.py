"""experiments/common/provenance.py: commit, data hashes, machine record; no absolute paths."""

from __future__ import annotations

import hashlib
import json
import os
import shutil
import subprocess
from pathlib import Path

import jax
import pytest

from experiments.common import provenance as prov

REPO = Path(__file__).resolve().parents[2]


def _git(*args: str) -> str:
    return subprocess.run(
        ["git", "-C", str(REPO), *args], capture_output=True, text=True, check=True
    ).stdout


def _strings(obj):
    if isinstance(obj, dict):
        for k, v in obj.items():
            yield str(k)
            yield from _strings(v)
    elif isinstance(obj, list | tuple):
        for v in obj:
            yield from _strings(v)
    elif isinstance(obj, str):
        yield obj


needs_git = pytest.mark.skipif(
    shutil.which("git") is None or not (REPO / ".git").exists(), reason="needs a git checkout"
)


@needs_git
def test_commit_is_git_head_and_dirty_flag_matches_status():
    commit = prov.git_commit(REPO)
    assert commit["sha"] == _git("rev-parse", "HEAD").strip()
    assert commit["dirty"] is bool(_git("status", "--porcelain").strip())


def test_commit_unknown_outside_a_repository(tmp_path):
    assert prov.git_commit(tmp_path) == {"sha": "unknown", "dirty": None}


def test_commit_unknown_without_git(monkeypatch):
    monkeypatch.setenv("PATH", "")
    assert prov.git_commit(REPO) == {"sha": "unknown", "dirty": None}


def test_file_sha256_matches_hashlib(tmp_path):
    data = os.urandom(3 * 1024 + 7)
    path = tmp_path / "frames.xyz"
    path.write_bytes(data)
    assert prov.file_sha256(path, chunk=1000) == hashlib.sha256(data).hexdigest()


def test_data_record_names_and_hashes_without_folders(tmp_path):
    (tmp_path / "a.xyz").write_bytes(b"first")
    (tmp_path / "b.xyz").write_bytes(b"second")
    record = prov.data_record(
        "xtb",
        {
            "train_300K:a.xyz": tmp_path / "a.xyz",
            "test_1200K:a.xyz": tmp_path / "a.xyz",
            "test_300K:b.xyz": str(tmp_path / "b.xyz"),
        },
    )
    assert record == {
        "source": "xtb",
        "files": [
            {"use": "test_1200K", "name": "a.xyz", "sha256": hashlib.sha256(b"first").hexdigest()},
            {"use": "test_300K", "name": "b.xyz", "sha256": hashlib.sha256(b"second").hexdigest()},
            {"use": "train_300K", "name": "a.xyz", "sha256": hashlib.sha256(b"first").hexdigest()},
        ],
    }


def test_data_record_names_a_missing_file(tmp_path):
    with pytest.raises(FileNotFoundError, match="train_300K"):
        prov.data_record("dft", {"train_300K": tmp_path / "nothing.xyz"})


def test_cpu_model_reads_model_name(tmp_path):
    info = tmp_path / "cpuinfo"
    info.write_text("processor\t: 0\nvendor_id\t: X\nmodel name\t: Test CPU @ 1.00GHz\n")
    assert prov.cpu_model(info) == "Test CPU @ 1.00GHz"
    assert isinstance(prov.cpu_model(tmp_path / "absent"), str)


def test_provenance_object(tmp_path):
    (tmp_path / "train_300K.xyz").write_bytes(b"frames")
    start = prov.begin_run(REPO)
    record = prov.provenance(
        start,
        preset="cpu",
        seeds=(0, 2),
        data_source="dft",
        data_files={"train_300K:train_300K.xyz": tmp_path / "train_300K.xyz"},
    )
    assert set(record) == {"commit", "preset", "seeds", "data", "wall_s", "machine"}
    assert record["commit"] == start.commit
    assert record["preset"] == "cpu" and record["seeds"] == [0, 2]
    assert record["data"]["files"][0]["sha256"] == hashlib.sha256(b"frames").hexdigest()
    assert record["wall_s"] >= 0
    machine = record["machine"]
    assert machine["cores"] == os.cpu_count()
    assert machine["jax_version"] == jax.__version__
    assert machine["platform"] == jax.devices()[0].platform
    for key in ("load_average_start", "load_average_end"):
        assert machine[key] is None or len(machine[key]) == 3
    # JSON-serialisable, and no absolute path of this machine anywhere in it.
    text = json.dumps(record)
    for folder in (str(tmp_path), str(REPO), str(Path.home())):
        assert folder not in text
    assert not any(s.startswith("/") for s in _strings(record))
