"""Fixtures of the oracle and xtb_data tests.

``experiments`` is not an installed package: put the repository root on ``sys.path`` so the
generator's logic modules can be imported (``pytest`` started from the venv script does not).
"""

import sys
from pathlib import Path

import ase.io
import pytest

REPO = Path(__file__).resolve().parents[2]
if str(REPO) not in sys.path:
    sys.path.insert(0, str(REPO))


@pytest.fixture(scope="session")
def source_3bpa() -> Path:
    """The DFT 3BPA folder the generator would use by default."""
    from experiments.xtb_data.generate import resolve_source

    return resolve_source(None)


@pytest.fixture(scope="session")
def dft_frames(source_3bpa):
    """The first 12 frames of train_300K with their DFT labels."""
    return ase.io.read(source_3bpa / "train_300K.xyz", ":12")
