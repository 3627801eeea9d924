"""The persistent compilation cache: where it goes, how it is turned off, and that a later
process reads back what an earlier one compiled."""

import os
import subprocess
import sys

import jax
import pytest

from nequip_jax import _cache
from nequip_jax._cache import CACHE_ENV, default_cache_dir, enable_compilation_cache


@pytest.fixture
def no_cache_set(monkeypatch):
    """No cache folder configured (the suite's own is restored afterwards)."""
    previous = jax.config.jax_compilation_cache_dir
    jax.config.update("jax_compilation_cache_dir", None)
    monkeypatch.delenv(CACHE_ENV, raising=False)
    yield
    jax.config.update("jax_compilation_cache_dir", previous)


def test_default_folder_is_the_user_cache(no_cache_set, monkeypatch, tmp_path):
    monkeypatch.setattr(_cache.sys, "platform", "linux")
    monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path / "xdg"))
    assert default_cache_dir() == tmp_path / "xdg" / "nequip-jax" / "xla"
    assert enable_compilation_cache() == tmp_path / "xdg" / "nequip-jax" / "xla"
    assert jax.config.jax_compilation_cache_dir == str(tmp_path / "xdg" / "nequip-jax" / "xla")
    assert (tmp_path / "xdg" / "nequip-jax" / "xla").is_dir()


@pytest.mark.parametrize("value", ["off", "0", "OFF", "", "none", "false"])
def test_environment_turns_it_off(no_cache_set, monkeypatch, value):
    monkeypatch.setenv(CACHE_ENV, value)
    assert default_cache_dir() is None
    assert enable_compilation_cache() is None
    assert jax.config.jax_compilation_cache_dir is None


def test_environment_moves_it_and_a_users_folder_is_kept(no_cache_set, monkeypatch, tmp_path):
    monkeypatch.setenv(CACHE_ENV, str(tmp_path / "mine"))
    assert enable_compilation_cache() == tmp_path / "mine"
    # A second call, or another folder asked for later, leaves the configured folder alone.
    assert enable_compilation_cache(tmp_path / "other") == tmp_path / "mine"
    assert jax.config.jax_compilation_cache_dir == str(tmp_path / "mine")
    assert not (tmp_path / "other").exists()


def test_unwritable_folder_warns_and_compiles_without_cache(no_cache_set, tmp_path):
    blocker = tmp_path / "file"
    blocker.write_text("not a folder")
    with pytest.warns(RuntimeWarning, match=CACHE_ENV):
        assert enable_compilation_cache(blocker / "xla") is None
    assert jax.config.jax_compilation_cache_dir is None


_PROGRAM = """
import time, jax, jax.numpy as jnp, nequip_jax
nequip_jax.enable_compilation_cache()
def f(x):
    for _ in range(30):
        x = jnp.sin(x) @ x.T
    return x
start = time.perf_counter()
jax.jit(f).lower(jnp.ones((8, 8))).compile()
print(jax.config.jax_compilation_cache_dir)
"""


def test_a_later_process_reads_the_compiled_program(tmp_path):
    env = {
        **os.environ,
        CACHE_ENV: str(tmp_path / "xla"),
        "JAX_PERSISTENT_CACHE_MIN_COMPILE_TIME_SECS": "0",
        "JAX_PLATFORMS": "cpu",
    }
    env.pop("JAX_COMPILATION_CACHE_DIR", None)

    def run(extra=None):
        out = subprocess.run(
            [sys.executable, "-c", _PROGRAM],
            env={**env, **(extra or {})},
            capture_output=True,
            text=True,
            timeout=120,
            check=True,
        )
        return out.stdout.strip()

    assert run() == str(tmp_path / "xla")
    entries = sorted(p.name for p in (tmp_path / "xla").iterdir())
    assert entries, "the first process wrote no cache entry"
    assert run() == str(tmp_path / "xla")
    # Same program, same key: the second process added nothing (it read the entry back).
    assert sorted(p.name for p in (tmp_path / "xla").iterdir()) == entries
    assert run({CACHE_ENV: "off"}) == "None"
