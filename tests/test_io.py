"""Atomic writes: a failure mid-write leaves the previous file or folder intact."""

import pytest

from nequip_jax._io import atomic_folder, atomic_write_text


def test_failed_folder_write_keeps_the_old_folder(tmp_path):
    target = tmp_path / "model"
    with atomic_folder(target) as tmp:
        (tmp / "a.txt").write_text("old")
    with pytest.raises(RuntimeError, match="crash"):
        with atomic_folder(target) as tmp:
            (tmp / "a.txt").write_text("new, half written")
            raise RuntimeError("crash")
    assert (target / "a.txt").read_text() == "old"
    assert sorted(p.name for p in tmp_path.iterdir()) == ["model"]
    with atomic_folder(target) as tmp:
        (tmp / "b.txt").write_text("replaced")
    assert sorted(p.name for p in target.iterdir()) == ["b.txt"]


def test_text_write_replaces_whole_file(tmp_path):
    path = tmp_path / "x.json"
    atomic_write_text(path, "first")
    atomic_write_text(path, "second")
    assert path.read_text() == "second"
    assert path.stat().st_mode & 0o777 == 0o644  # readable by others, like a plain open()
    assert [p.name for p in tmp_path.iterdir()] == ["x.json"]
