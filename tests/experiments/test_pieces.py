"""Per-seed pieces: computed once, reused only with the same configuration and data."""

from __future__ import annotations

import json
import time

import numpy as np
import pytest

from experiments.common import pieces
from experiments.common.provenance import begin_run


@pytest.fixture
def data_file(tmp_path):
    path = tmp_path / "train.xyz"
    path.write_text("3\n\nH 0 0 0\nH 0 0 1\nH 0 1 0\n")
    return path


def _identity(data_file, **config):
    return pieces.identity("toy", {"n": 1, **config}, "dft", {"train:train.xyz": data_file})


def _runner(calls):
    def compute(seed, folder):
        calls.append(seed)
        (folder / "figure.txt").write_text(f"seed {seed}")
        return {"value": seed * 10}

    return compute


def test_missing_seeds_are_computed_and_stored_pieces_reused(tmp_path, data_file):
    calls = []
    expected = _identity(data_file)
    files = {"train:train.xyz": data_file}
    got = pieces.run_seeds(
        tmp_path, [2], expected, _runner(calls), preset="tiny", data_files=files, log=lambda m: 0
    )
    assert calls == [2] and list(got) == [2]
    got = pieces.run_seeds(
        tmp_path, [0, 2], expected, _runner(calls), preset="tiny", data_files=files, log=lambda m: 0
    )
    # Seed 2 came from its stored piece; seed 0 was computed; both are returned, sorted.
    assert calls == [2, 0] and list(got) == [0, 2]
    assert [got[s]["value"] for s in (0, 2)] == [0, 20]
    assert (pieces.piece_dir(tmp_path, 0) / "figure.txt").read_text() == "seed 0"
    stored = json.loads((tmp_path / "seeds" / "seed2" / "piece.json").read_text())
    assert stored["seed"] == 2 and stored["identity"] == json.loads(json.dumps(expected))
    assert stored["provenance"]["seeds"] == [2] and stored["provenance"]["preset"] == "tiny"
    # A run that asks for no new seed still returns every stored piece.
    got = pieces.run_seeds(
        tmp_path, [], expected, _runner(calls), preset="tiny", data_files=files, log=lambda m: 0
    )
    assert calls == [2, 0] and list(got) == [0, 2]


def test_piece_of_other_config_or_data_is_refused(tmp_path, data_file):
    files = {"train:train.xyz": data_file}
    pieces.run_seeds(
        tmp_path, [1], _identity(data_file), _runner([]), preset=None, data_files=files
    )
    with pytest.raises(pieces.PieceMismatchError, match=r"seed1.*config.*delete"):
        pieces.load_pieces(tmp_path, _identity(data_file, n=2))
    data_file.write_text(data_file.read_text() + "\n")
    with pytest.raises(pieces.PieceMismatchError, match=r"data \(files train:train.xyz\)"):
        pieces.load_pieces(tmp_path, _identity(data_file))


def test_corrupt_piece_names_the_folder(tmp_path, data_file):
    folder = pieces.piece_dir(tmp_path, 3)
    folder.mkdir(parents=True)
    (folder / "piece.json").write_text("{not json")
    with pytest.raises(pieces.PieceMismatchError, match=r"seed3.*not valid JSON"):
        pieces.load_pieces(tmp_path, _identity(data_file))


def test_combined_provenance_sums_the_pieces(tmp_path, data_file):
    files = {"train:train.xyz": data_file}
    got = pieces.run_seeds(
        tmp_path, [0, 1], _identity(data_file), _runner([]), preset="cpu", data_files=files
    )
    for seed, wall in ((0, 100.0), (1, 250.5)):
        got[seed]["provenance"]["wall_s"] = wall
    prov = pieces.combined_provenance(
        begin_run(), got, preset="cpu", data_source="dft", data_files=files
    )
    assert prov["seeds"] == [0, 1]
    assert [p["seed"] for p in prov["pieces"]] == [0, 1]
    assert 350.5 <= prov["wall_s"] < 350.5 + 60
    assert prov["pieces"][1]["commit"] == got[1]["provenance"]["commit"]


class _Interrupt(RuntimeError):
    pass


def _staged(calls, expected, *, fail_in=None, inputs="a"):
    """A piece of two stages; the second reads the first's arrays. ``fail_in`` names a stage
    that raises (an interrupted job)."""

    def compute(seed, folder):
        stages = pieces.Stages(folder, expected, seed)

        def first():
            calls.append("first")
            time.sleep(0.05)
            return {"chosen": [3, 1]}, {"x": np.arange(4.0) * seed}

        def second():
            calls.append("second")
            if fail_in == "second":
                raise _Interrupt
            return {"total": float(x["x"].sum())}, {}

        body, x = stages.run("first", {"train": inputs}, first)
        after, _ = stages.run("second", {"chosen": body["chosen"]}, second)
        return {"chosen": body["chosen"], "total": after["total"], "stages": stages.records}

    return compute


def test_stages_of_an_interrupted_piece_are_resumed(tmp_path, data_file):
    files = {"train:train.xyz": data_file}
    expected = _identity(data_file)
    calls = []
    with pytest.raises(_Interrupt):
        pieces.run_seeds(
            tmp_path,
            [2],
            expected,
            _staged(calls, expected, fail_in="second"),
            preset="cpu",
            data_files=files,
            log=lambda m: 0,
        )
    stage_dir = pieces.piece_dir(tmp_path, 2) / "stages"
    assert sorted(p.name for p in stage_dir.iterdir()) == ["first.json", "first.npz"]
    assert pieces.load_pieces(tmp_path, expected) == {}  # no piece yet
    # The next job reuses the stored first stage (its arrays included) and computes the second.
    got = pieces.run_seeds(
        tmp_path,
        [2],
        expected,
        _staged(calls, expected),
        preset="cpu",
        data_files=files,
        log=lambda m: 0,
    )
    assert calls == ["first", "second", "second"]
    piece = got[2]
    assert piece["total"] == 12.0 and piece["chosen"] == [3, 1]
    assert [(s["stage"], s["reused"]) for s in piece["stages"]] == [
        ("first", True),
        ("second", False),
    ]
    # The piece's wall time covers the stage computed by the interrupted job.
    assert piece["provenance"]["wall_s"] >= piece["stages"][0]["wall_s"] >= 0.05
    assert piece["stages"][0]["commit"] == piece["provenance"]["commit"]
    assert not stage_dir.exists()  # removed once the piece is stored


def test_stored_stage_of_other_inputs_or_damaged_arrays_is_refused(tmp_path, data_file):
    expected = _identity(data_file)
    folder = pieces.piece_dir(tmp_path, 0)
    with pytest.raises(_Interrupt):
        _staged([], expected, fail_in="second")(0, folder)
    with pytest.raises(pieces.PieceMismatchError, match=r"first\.json.*other.*delete .*stages"):
        _staged([], expected, inputs="b")(0, folder)
    with pytest.raises(pieces.PieceMismatchError, match=r"first\.json"):
        _staged([], _identity(data_file, n=2))(0, folder)
    npz = folder / "stages" / "first.npz"
    npz.write_bytes(npz.read_bytes()[:-10])
    with pytest.raises(pieces.PieceMismatchError, match=r"first\.npz.*checksum.*delete"):
        _staged([], expected)(0, folder)
    npz.unlink()
    with pytest.raises(pieces.PieceMismatchError, match=r"first\.npz.*missing"):
        _staged([], expected)(0, folder)


def test_stage_names_are_checked(tmp_path, data_file):
    stages = pieces.Stages(tmp_path, _identity(data_file), 0)
    with pytest.raises(ValueError, match="stage name"):
        stages.run("a/b", {}, lambda: ({}, {}))
