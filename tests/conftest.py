"""Shared fixtures.

float64 is requested per test through the ``x64`` fixture and never enabled globally, so the
default float32 behaviour is what the rest of the suite sees.
"""

import warnings

import jax
import pytest

from nequip_jax.data import StandInWarning, load_3bpa


@pytest.fixture(scope="session", autouse=True)
def compilation_cache(tmp_path_factory):
    """A persistent XLA compilation cache for the session: the many small training runs of the
    suite compile the same programs again and again (fresh closures retrace, the cache skips the
    compilation)."""
    previous = (
        jax.config.jax_compilation_cache_dir,
        jax.config.jax_persistent_cache_min_compile_time_secs,
    )
    folder = str(tmp_path_factory.mktemp("xla_cache"))
    jax.config.update("jax_compilation_cache_dir", folder)
    jax.config.update("jax_persistent_cache_min_compile_time_secs", 0.0)
    # Command-line runs in subprocesses use the same folder, never the user's cache.
    environ = pytest.MonkeyPatch()
    environ.setenv("NEQUIP_JAX_CACHE_DIR", folder)
    yield
    environ.undo()
    jax.config.update("jax_compilation_cache_dir", previous[0])
    jax.config.update("jax_persistent_cache_min_compile_time_secs", previous[1])


TINY_MODEL = {
    "num_features": 4,
    "lmax": 1,
    "num_layers": 2,
    "r_max": 4.0,
    "num_basis": 4,
    "radial_mlp_depth": 1,
    "radial_mlp_width": 8,
}


@pytest.fixture
def tiny_model():
    """Hyperparameters of a tiny NequIP (fast on a CPU), as a dictionary."""
    return dict(TINY_MODEL)


@pytest.fixture
def x64():
    """Run the test body with ``jax_enable_x64`` on; restored afterwards."""
    with jax.enable_x64(True):
        yield


@pytest.fixture(scope="session")
def frames_300K():
    """The first 40 frames of train_300K (read once per session)."""
    return load_3bpa("train_300K", allow_download=False)[:40]


@pytest.fixture(scope="session")
def frames_1200K():
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", StandInWarning)
        return load_3bpa("test_1200K", allow_download=False)[:10]


@pytest.fixture
def tiny_run_config():
    """A run configuration of a tiny model (fast on a CPU) on explicit frames."""
    from nequip_jax.train import RunConfig

    def make(**optim):
        base = {
            "optimizer": "adam",
            "learning_rate": 0.01,
            "batch_size": 2,
            "eval_batch_size": 4,
            "max_epochs": 3,
            "plateau_patience": 50,
        }
        base.update(optim)
        return RunConfig.from_dict({"seed": 3, "model": dict(TINY_MODEL), "optim": base})

    return make
