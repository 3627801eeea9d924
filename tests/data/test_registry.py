"""The 3BPA registry: split contents, the 1200 K stand-in, checksums and missing files."""

import hashlib
import shutil
from pathlib import Path

import ase.io
import numpy as np
import pytest

from nequip_jax.data import (
    DIHEDRAL_INDICES,
    DataError,
    StandInWarning,
    _registry,
    load_3bpa,
    load_isolated_atom_energies,
)
from nequip_jax.data._registry import search_folders


def _dft_folder() -> Path:
    """The folder the registry reads the DFT files from (the raw files are the oracle)."""
    for folder in search_folders():
        if (folder / "train_300K.xyz").is_file() and (folder / "train_mixedT.xyz").is_file():
            return folder
    raise RuntimeError(
        "the DFT 3BPA files were not found; set NEQUIP_JAX_DATA (make test does) to their folder"
    )


SHARED = _dft_folder()

# Sizes from the data set's own README (an independent record of the files).
SIZES = {"train_300K": 500, "train_mixedT": 500, "test_300K": 1669, "test_600K": 2138}


@pytest.mark.parametrize("split", sorted(SIZES))
def test_split_sizes_and_labels(split):
    frames = load_3bpa(split, allow_download=False)
    assert len(frames) == SIZES[split]
    for atoms in frames[:: max(1, len(frames) // 25)]:
        assert len(atoms) == 27
        assert atoms.get_chemical_formula() == "C12H12N2O"
        assert atoms.get_forces().shape == (27, 3)
        assert np.isfinite(atoms.get_potential_energy())
        # The stored dihedrals are the documented atom quadruples (README: exact for train_300K).
        computed = [atoms.get_dihedral(*quad) for quad in DIHEDRAL_INDICES]
        np.testing.assert_allclose(atoms.info["dihedrals"], computed, atol=0.01)


def test_first_test_300K_energy_matches_published_value():
    # README: the first test_300K energy is -17660.06855946407 eV.
    assert load_3bpa("test_300K", allow_download=False)[0].get_potential_energy() == pytest.approx(
        -17660.06855946407, abs=1e-9
    )


def test_stand_in_1200K_follows_the_readme_rule(monkeypatch):
    monkeypatch.setattr(_registry, "_WARNED", set())
    with pytest.warns(StandInWarning, match="stand-in"):
        got = load_3bpa("test_1200K", allow_download=False)
    # Oracle: the rule applied to the raw files read by ase alone.
    train = ase.io.read(SHARED / "train_300K.xyz", ":")
    mixed = ase.io.read(SHARED / "train_mixedT.xyz", ":")
    e_min = min(a.get_potential_energy() for a in train)
    expected = [a for a in mixed if a.get_potential_energy() - e_min > 2.0]
    assert len(got) == len(expected) == 163
    for a, b in zip(got, expected):
        np.testing.assert_array_equal(a.positions, b.positions)
        assert a.get_potential_energy() == b.get_potential_energy()


def test_stand_in_warns_once(monkeypatch, recwarn):
    monkeypatch.setattr(_registry, "_WARNED", set())
    load_3bpa("test_1200K", allow_download=False)
    load_3bpa("test_1200K", allow_download=False)
    assert sum(issubclass(w.category, StandInWarning) for w in recwarn.list) == 1


@pytest.mark.parametrize("split", ["dih_beta120", "dih_beta150", "dih_beta180"])
def test_missing_split_names_file_folders_and_remedy(tmp_path, split, monkeypatch):
    monkeypatch.setattr(_registry, "_REPO_ROOT", tmp_path / "repo")
    monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path / "cache"))
    with pytest.raises(DataError) as info:
        load_3bpa(split, root=SHARED, allow_download=False)
    message = str(info.value)
    assert f"test_{split.replace('dih_', 'dih_')}.xyz" in message
    assert str(SHARED) in message and "NEQUIP_JAX_DATA" in message


def test_unknown_split():
    with pytest.raises(KeyError, match="train_300K"):
        load_3bpa("train_900K")


def test_root_and_checksum(tmp_path):
    shutil.copy(SHARED / "train_300K.xyz", tmp_path / "train_300K.xyz")
    good = hashlib.sha256((tmp_path / "train_300K.xyz").read_bytes()).hexdigest()
    (tmp_path / "SHA256SUMS").write_text(f"{good}  train_300K.xyz\n")
    assert len(load_3bpa("train_300K", root=tmp_path, allow_download=False)) == 500
    # Corrupt one byte of a number: the checksum catches it and names the file.
    text = (tmp_path / "train_300K.xyz").read_text()
    (tmp_path / "train_300K.xyz").write_text(
        text.replace("-17660.461737861464", "-17660.461737861465", 1)
    )
    with pytest.raises(DataError, match="SHA-256"):
        load_3bpa("train_300K", root=tmp_path, allow_download=False)


def test_combined_dihedral_file_is_split_by_beta(tmp_path):
    frames = load_3bpa("train_300K", allow_download=False)[:6]
    for atoms, beta in zip(frames, [120.0, 150.0, 180.0, 120.0, 150.0, 180.0]):
        atoms.info["dihedrals"] = np.array([10.0, beta, 20.0])
    ase.io.write(tmp_path / "test_dih.xyz", frames, format="extxyz")
    got = load_3bpa("dih_beta150", root=tmp_path, allow_download=False)
    assert [round(a.info["dihedrals"][1]) for a in got] == [150, 150]


def test_isolated_atom_energies_match_reference():
    # The isolated-atom energies distributed with the 3BPA data set (eV), as published.
    assert load_isolated_atom_energies() == {
        1: -13.587222780835477,
        6: -1029.4889999855063,
        7: -1484.9814568572233,
        8: -2041.9816003861047,
    }
