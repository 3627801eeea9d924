"""Fixtures of the experiment tests: a small stand-in data folder with β "scans".

The real dihedral scans exist only in the GFN2-xTB twin (data/3bpa_xtb), which the test suite
must not depend on. The stand-in folder links the DFT 3BPA files and adds three small "scan"
files cut from test_600K, each frame with its *measured* dihedrals; the labels stay DFT, so the
folder is one level of theory and exercises every code path of the scan experiments.
"""

from __future__ import annotations

import os
import sys
import warnings
from pathlib import Path

import ase.io
import pytest
from ase.calculators.singlepoint import SinglePointCalculator

from nequip_jax.data import DIHEDRAL_INDICES, StandInWarning, load_3bpa, search_folders

# ``experiments`` is not an installed package, and this folder (named like it, on sys.path as the
# parent of tests/conftest.py's folder) would otherwise shadow it as a namespace package: put the
# repository root first so the real package wins.
_ROOT = str(Path(__file__).resolve().parents[2])
if sys.path[0] != _ROOT:
    sys.path.insert(0, _ROOT)


def _rebind_namespace_gmm() -> None:
    """With a bare ``.venv/bin/pytest`` the root conftest imports nequip_jax while only ``tests/``
    is on sys.path, so ``import gmm`` inside the library bound the *test folder* tests/gmm as a
    namespace package. Replace that module object everywhere by the real package. (Project-wide
    remedy: ``pythonpath = ["."]`` in the pytest options of pyproject.toml.)"""
    stale = sys.modules.get("gmm")
    if stale is None or getattr(stale, "__file__", None) is not None:
        return
    del sys.modules["gmm"]
    import gmm as real

    for module in list(sys.modules.values()):
        for name, value in list(getattr(module, "__dict__", {}).items()):
            if value is stale:
                setattr(module, name, real)


_rebind_namespace_gmm()

MD_FILES = ("train_300K.xyz", "train_mixedT.xyz", "test_300K.xyz", "test_600K.xyz")


def _dft_file(name: str):
    for folder in search_folders(None):
        if (folder / name).is_file() and "xtb" not in str(folder):
            return folder / name
    pytest.fail(f"the DFT 3BPA file {name} is needed by the experiment tests")


def make_scan_root(root):
    """Fill ``root`` with the DFT MD files (links) and 12-frame stand-in β scans."""
    for name in MD_FILES:
        os.symlink(_dft_file(name), root / name)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", StandInWarning)
        frames = load_3bpa("test_600K", allow_download=False)
    for k, beta in enumerate((120, 150, 180)):
        scan = []
        for atoms in frames[12 * k : 12 * (k + 1)]:
            new = atoms.copy()
            new.info = {"dihedrals": [float(atoms.get_dihedral(*idx)) for idx in DIHEDRAL_INDICES]}
            new.calc = SinglePointCalculator(
                new, energy=atoms.get_potential_energy(), forces=atoms.get_forces()
            )
            scan.append(new)
        ase.io.write(root / f"test_dih_beta{beta}.xyz", scan, format="extxyz")
    return root


@pytest.fixture(scope="session")
def scan_root(tmp_path_factory):
    """A data folder with the DFT MD files (links) and 12-frame stand-in β scans."""
    return make_scan_root(tmp_path_factory.mktemp("scan_root"))
