"""The generator: an interrupted + restarted run writes the same files as an uninterrupted one,
complete outputs are reused, stale chunks are dropped, and the files carry what they should."""

import json
import lzma
from pathlib import Path

import ase.io
import numpy as np
import pytest

from experiments.xtb_data import Config, run
from experiments.xtb_data.generate import scan_name
from experiments.xtb_data.main import main, parse_args
from experiments.xtb_data.reference import ReferenceError, save
from experiments.xtb_data.scan import DIHEDRALS, angle_difference
from experiments.xtb_data.store import sha256_file

DATA_FILES = ["train_300K.xyz", "test_dih_beta180.xyz", "iso_atoms.xyz", "failures.json"]


def _tiny(out: Path, **kw) -> Config:
    """3 MD frames in chunks of 2, a 3 x 3 scan at beta = 180 in chunks of 3, 5 BFGS steps."""
    base = dict(
        out=out,
        parts=("train_300K", "dih", "iso"),
        max_frames=3,
        chunk_size=2,
        grid=120.0,
        betas=(180.0,),
        scan_chunk_size=3,
        max_steps=5,
        workers=1,
        quiet=True,
    )
    base.update(kw)
    return Config(**base)


@pytest.fixture(scope="module")
def uninterrupted(tmp_path_factory):
    out = tmp_path_factory.mktemp("whole")
    summary = run(_tiny(out, workers=2))
    assert summary.complete and summary.computed_chunks == 2 + 3
    return out


def test_interrupted_run_resumes_to_identical_files(uninterrupted, tmp_path):
    first = run(_tiny(tmp_path, limit_chunks=2))
    assert not first.complete and first.computed_chunks == 2
    assert len(list((tmp_path / ".partial").rglob("chunk-*.json"))) == 2
    assert not (tmp_path / "train_300K.xyz").exists()
    second = run(_tiny(tmp_path))
    assert second.complete and second.computed_chunks == 3  # only the missing chunks
    for name in DATA_FILES:
        assert (tmp_path / name).read_bytes() == (uninterrupted / name).read_bytes(), name
    assert (tmp_path / "SHA256SUMS").read_text() == (uninterrupted / "SHA256SUMS").read_text()
    assert not (tmp_path / ".partial").exists()


def test_a_dask_cluster_writes_the_same_files(uninterrupted, dask_client, tmp_path):
    summary = run(_tiny(tmp_path), executor=dask_client.get_executor())
    assert summary.complete and summary.computed_chunks == 2 + 3
    for name in DATA_FILES:
        assert (tmp_path / name).read_bytes() == (uninterrupted / name).read_bytes(), name


def test_complete_outputs_are_reused(uninterrupted):
    before = {name: sha256_file(uninterrupted / name) for name in DATA_FILES}
    again = run(_tiny(uninterrupted))
    assert again.complete and again.computed_chunks == 0
    assert sorted(again.reused) == sorted(DATA_FILES[:3])
    assert {name: sha256_file(uninterrupted / name) for name in DATA_FILES} == before


def test_changed_settings_drop_stale_chunks(tmp_path):
    run(_tiny(tmp_path, parts=("train_300K",), limit_chunks=1))
    (old,) = (tmp_path / ".partial").iterdir()
    resumed = run(_tiny(tmp_path, parts=("train_300K",), chunk_size=3))
    assert resumed.complete and resumed.computed_chunks == 1
    assert not old.exists()


def test_md_output_keeps_geometry_and_takes_xtb_labels(uninterrupted, source_3bpa):
    from nequip_jax.oracle import XTBOracle

    source = ase.io.read(source_3bpa / "train_300K.xyz", ":3")
    made = ase.io.read(uninterrupted / "train_300K.xyz", ":")
    assert len(made) == 3
    reference = XTBOracle().label(source)
    for src, new, e in zip(source, made, reference.energies, strict=True):
        np.testing.assert_array_equal(new.numbers, src.numbers)
        np.testing.assert_allclose(new.positions, src.positions, atol=5e-9)
        np.testing.assert_array_equal(new.info["dihedrals"], src.info["dihedrals"])
        assert new.get_potential_energy() == pytest.approx(e, abs=1e-8)
        assert abs(new.get_potential_energy() - src.get_potential_energy()) > 1e4  # not DFT


def test_scan_output(uninterrupted):
    frames = ase.io.read(uninterrupted / scan_name(180.0), ":")
    failures = json.loads((uninterrupted / "failures.json").read_text())
    dropped = [f for f in failures["test_dih_beta180.xyz"] if not f["kept"]]
    assert len(frames) + len(dropped) == 9
    for atoms in frames:
        measured = np.array([atoms.get_dihedral(*idx) for idx in DIHEDRALS.values()])
        np.testing.assert_allclose(atoms.info["dihedrals"], np.round(measured, 2) % 360)
        nearest_grid = np.round(measured / 120) * 120 % 360
        targets = np.array([nearest_grid[0], 180.0, nearest_grid[2]])
        assert np.abs(angle_difference(measured, targets)).max() < 0.1
        assert atoms.info["dihedrals"][1] == 180.0
        assert 1 <= atoms.info["relax_steps"] <= 5
        assert isinstance(atoms.info["relax_converged"], bool)
    grid = {tuple(a.info["dihedrals"][[0, 2]]) for a in frames}
    assert grid <= {(a, g) for a in (0.0, 120.0, 240.0) for g in (0.0, 120.0, 240.0)}


def test_scan_forces_are_unconstrained_gradient(uninterrupted):
    """The stored forces equal a fresh, unconstrained single point (not the projected forces,
    whose components along the held dihedrals vanish)."""
    from nequip_jax.oracle import XTBOracle

    frames = ase.io.read(uninterrupted / scan_name(180.0), ":2")
    fresh = XTBOracle().label(frames)
    for atoms, forces in zip(frames, fresh.forces, strict=True):
        np.testing.assert_allclose(atoms.get_forces(), forces, atol=1e-6)


def test_iso_atoms_have_open_shells(uninterrupted):
    atoms = ase.io.read(uninterrupted / "iso_atoms.xyz", ":")
    assert {a.get_chemical_symbols()[0]: a.info["multiplicity"] for a in atoms} == {
        "H": 2,
        "C": 3,
        "N": 4,
        "O": 3,
    }


def test_provenance_and_checksums(uninterrupted, source_3bpa):
    prov = json.loads((uninterrupted / "PROVENANCE.json").read_text())
    assert prov["method"] == "GFN2-xTB"
    assert prov["versions"]["tblite"] and prov["versions"]["ase"]
    assert prov["source"]["sha256"]["train_300K.xyz"] == sha256_file(source_3bpa / "train_300K.xyz")
    assert prov["scan"]["grid_deg"] == 120.0
    for line in (uninterrupted / "SHA256SUMS").read_text().splitlines():
        digest, name = line.split("  ")
        assert sha256_file(uninterrupted / name) == digest


def test_cli_parses_and_reports_incomplete(tmp_path):
    argv = ["--out", str(tmp_path), "--splits", "train_300K", "--max-frames", "2",
            "--chunk-size", "1", "--workers", "1", "--limit-chunks", "1", "--quiet"]  # fmt: skip
    config = parse_args(argv)
    assert config.parts == ("train_300K",) and config.grid == 15.0
    assert main(argv) == 3


def test_free_amine_scan_holds_three_dihedrals_and_is_its_own_recipe(uninterrupted, tmp_path):
    # The comparison recipe: the amine dihedral turns during the relaxations (it stays at the
    # start value in the default scans), alpha/beta/gamma are held, and the provenance says so.
    free = tmp_path / "free"
    assert run(_tiny(free, parts=("dih",), free_amine=True)).complete
    held = ase.io.read(uninterrupted / scan_name(180.0), ":")
    loose = ase.io.read(free / scan_name(180.0), ":")
    start = held[0].get_dihedral(1, 4, 6, 8)
    assert all(abs(angle_difference(a.get_dihedral(1, 4, 6, 8), start)) < 0.1 for a in held)
    assert max(abs(angle_difference(a.get_dihedral(1, 4, 6, 8), start)) for a in loose) > 0.1
    for atoms in loose:
        measured = np.array([atoms.get_dihedral(*idx) for idx in DIHEDRALS.values()])
        assert abs(angle_difference(measured[1], 180.0)) < 0.1
    recipes = [
        json.loads((folder / "PROVENANCE.json").read_text())["outputs"][scan_name(180.0)]
        for folder in (uninterrupted, free)
    ]
    assert recipes[0]["recipe_sha256"] != recipes[1]["recipe_sha256"]


def test_compare_scans_properties(uninterrupted):
    from ase.calculators.singlepoint import SinglePointCalculator

    from experiments.xtb_data.compare import compare_scans, markdown

    held = ase.io.read(uninterrupted / scan_name(180.0), ":")
    same = compare_scans(held, held, grid=120.0)
    assert same["points"] == len(held) and same["only_held"] == same["only_free"] == 0
    assert same["relative_rms_meV"] == same["absolute_max_meV"] == same["forces_rms_eV_A"] == 0
    assert same["amine_turn_max_deg"] == 0 and same["relative_r"] == pytest.approx(1.0)
    # A constant energy offset moves no landscape but every absolute energy; dropping a point
    # leaves it unmatched.
    shifted = []
    for atoms in held[1:]:
        copy = atoms.copy()
        copy.calc = SinglePointCalculator(
            copy, energy=atoms.get_potential_energy() - 0.25, forces=atoms.get_forces()
        )
        shifted.append(copy)
    moved = compare_scans(held, shifted, grid=120.0)
    assert moved["points"] == len(held) - 1 and moved["only_held"] == 1
    assert moved["relative_rms_meV"] == pytest.approx(0.0, abs=1e-6)
    assert moved["absolute_mean_meV"] == pytest.approx(250.0)
    assert "| 180° |" in markdown({180.0: moved})


def test_stored_reference_scans_are_restored_instead_of_computed(uninterrupted, tmp_path):
    name = "test_dih_beta180.xyz"
    ref = tmp_path / "reference"
    assert save(uninterrupted, folder=ref) == [name]
    out = tmp_path / "out"
    summary = run(_tiny(out, parts=("dih",), reference=ref))
    assert summary.complete and summary.computed_chunks == 0 and summary.reused == [name]
    assert (out / name).read_bytes() == (uninterrupted / name).read_bytes()
    entry = json.loads((out / "PROVENANCE.json").read_text())["outputs"][name]
    assert entry["restored_from_reference"] and entry["sha256"] == sha256_file(uninterrupted / name)
    failures = json.loads((out / "failures.json").read_text())[name]
    assert failures == json.loads((uninterrupted / "failures.json").read_text())[name]
    # A file of the same recipe that differs (computed elsewhere) is replaced by the reference.
    (out / name).write_text((out / name).read_text().replace("relax_converged", "relaxed", 1))
    run(_tiny(out, parts=("dih",), reference=ref))
    assert (out / name).read_bytes() == (uninterrupted / name).read_bytes()
    # Another recipe is computed, not restored.
    other = run(_tiny(tmp_path / "other", parts=("dih",), reference=ref, max_steps=4))
    assert other.computed_chunks == 3 and other.reused == []
    # A damaged stored file is refused, naming it.
    (ref / f"{name}.xz").write_bytes(lzma.compress(b"not the scan"))
    with pytest.raises(ReferenceError, match=r"beta180\.xyz\.xz does not decompress"):
        run(_tiny(tmp_path / "third", parts=("dih",), reference=ref))
