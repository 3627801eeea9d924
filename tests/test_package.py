"""The top-level package: every exported name resolves to its home, and the oracles load without
JAX (labelling workers import only what they use)."""

import importlib
import subprocess
import sys

import pytest

import nequip_jax


@pytest.mark.parametrize("name", nequip_jax.__all__)
def test_exported_names_are_the_library_objects(name):
    home = importlib.import_module(nequip_jax._HOMES[name])
    assert getattr(nequip_jax, name) is getattr(home, name)
    assert name in dir(nequip_jax)


def test_unknown_attribute_is_an_attribute_error():
    with pytest.raises(AttributeError, match="no attribute 'Potentail'"):
        nequip_jax.Potentail  # noqa: B018


def test_oracles_import_without_jax():
    code = (
        "import sys, nequip_jax.oracle; "
        "print(sorted(m for m in ('jax', 'flax') if m in sys.modules))"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert out.stdout.strip() == "[]"
