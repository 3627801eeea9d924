"""Fixtures for the model tests: a few 3BPA frames and a padded batch of them."""

from __future__ import annotations

import numpy as np
import pytest
from nequip_testing import R_MAX, SPECIES

from nequip_jax.data import GraphDataset, compute_budget, load_3bpa


@pytest.fixture(scope="session")
def frames():
    """Four 3BPA frames (27 atoms, about 320 edges each within 4 Å)."""
    return load_3bpa("train_300K")[:4]


@pytest.fixture(scope="session")
def dataset(frames):
    return GraphDataset(frames, R_MAX, SPECIES)


@pytest.fixture(scope="session")
def budget(dataset):
    """The padded shape shared by most model tests (one compilation per configuration)."""
    return compute_budget(dataset, 3)


@pytest.fixture(scope="session")
def batch(dataset, budget):
    """The first three frames in one padded batch (float64 host arrays)."""
    return dataset.batch(np.arange(3), budget, dtype=np.float64)
