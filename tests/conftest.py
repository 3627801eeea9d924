"""Shared fixtures.

float64 is requested per test through the ``x64`` fixture and never enabled globally, so the
default float32 behaviour is what the rest of the suite sees.
"""

import jax
import pytest


@pytest.fixture
def x64():
    """Run the test body with ``jax_enable_x64`` on; restored afterwards."""
    with jax.enable_x64(True):
        yield
