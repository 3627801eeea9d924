"""Every documented bad input raises an error that names the file and the frame."""

import numpy as np
import pytest
from ase import Atoms
from ase.calculators.singlepoint import SinglePointCalculator
from ase.io import write

from nequip_jax.data import DataError, GraphDataset, read_structures


def _frame(positions=None, energy=-1.0, forces="ok", numbers=(8, 1, 1)):
    positions = (
        np.array([[0.0, 0.0, 0.0], [0.96, 0.0, 0.0], [-0.24, 0.93, 0.0]])
        if positions is None
        else positions
    )
    atoms = Atoms(numbers=list(numbers), positions=positions)
    results = {}
    if energy is not None:
        results["energy"] = energy
    if isinstance(forces, str):
        results["forces"] = np.full((len(atoms), 3), 0.1)
    elif forces is not None:
        results["forces"] = forces
    atoms.calc = SinglePointCalculator(atoms, **results)
    return atoms


def _write(tmp_path, frames, name="bad.xyz"):
    path = tmp_path / name
    write(path, frames, format="extxyz")
    return path


BAD_FRAMES = {
    "no energy": (_frame(energy=None), "no energy"),
    "no forces": (_frame(forces=None), "no forces"),
    "nan energy": (_frame(energy=float("nan")), "energy is nan"),
    "inf force": (
        _frame(forces=np.array([[np.inf, 0, 0], [0, 0, 0], [0, 0, 0]])),
        "NaN or infinite",
    ),
    "nan position": (
        _frame(positions=np.array([[np.nan, 0, 0], [1, 0, 0], [0, 1, 0]])),
        "positions",
    ),
    "same position": (
        _frame(positions=np.array([[0.0, 0, 0], [1.0, 0, 0], [1.0, 0, 0]])),
        "atoms 1 and 2 are 0 Å apart",
    ),
}


@pytest.mark.parametrize("case", sorted(BAD_FRAMES))
def test_bad_frame_is_named(tmp_path, case):
    bad, message = BAD_FRAMES[case]
    path = _write(tmp_path, [_frame(), bad])
    with pytest.raises(DataError, match=message) as info:
        read_structures(path)
    assert f"{path}, frame 1" in str(info.value)


def test_missing_file(tmp_path):
    with pytest.raises(FileNotFoundError, match="nope.xyz"):
        read_structures(tmp_path / "nope.xyz")


def test_empty_file(tmp_path):
    path = tmp_path / "empty.xyz"
    path.write_text("")
    with pytest.raises(DataError, match="empty"):
        read_structures(path)


def test_garbage_file(tmp_path):
    path = tmp_path / "garbage.xyz"
    path.write_text("this is not\nan xyz file\n")
    with pytest.raises(DataError, match="garbage.xyz"):
        read_structures(path)


def test_good_file_round_trips(tmp_path):
    frames = [_frame(energy=-1.5), _frame(energy=-2.5)]
    got = read_structures(_write(tmp_path, frames, "good.xyz"))
    assert [a.get_potential_energy() for a in got] == [-1.5, -2.5]
    np.testing.assert_array_equal(got[1].get_forces(), frames[1].get_forces())


def test_unknown_element_names_frame():
    frames = [_frame(), _frame(numbers=(8, 1, 9))]
    with pytest.raises(DataError, match=r"frame 1: element\(s\) with atomic number \[9\]"):
        GraphDataset(frames, 3.0, species=[1, 8], source="mine.xyz")


def test_unlabelled_frames_allowed_for_prediction():
    frames = [_frame(energy=None, forces=None)]
    ds = GraphDataset(frames, 3.0, species=[1, 8], require_labels=False)
    assert not ds.has_energy.any() and not ds.has_forces.any()
