"""Shared fixtures.

float64 is requested per test through the ``x64`` fixture and never enabled globally, so the
default float32 behaviour is what the rest of the suite sees.
"""

import contextlib
import os
import types
import warnings

# The suite checks numbers, not speed, and most of its time is XLA compiling small programs. On
# CPU it compiles without LLVM optimisation, with the classic (not the MLIR) fusion emitters and
# one code-generation thread: together they compile the tiny models' training steps about 2.5x
# faster. Set before JAX starts its backend; subprocesses of the tests inherit them. A flag
# already set by the caller wins.
os.environ["XLA_FLAGS"] = " ".join(
    [os.environ.get("XLA_FLAGS", "")]
    + [
        f"--{flag}"
        for flag in (
            "xla_backend_optimization_level=0",
            "xla_cpu_use_fusion_emitters=false",
            "xla_cpu_parallel_codegen_split_count=1",
        )
        if flag.split("=")[0] not in os.environ.get("XLA_FLAGS", "")
    ]
).strip()

import jax
import numpy as np
import pytest

import gmm
from nequip_jax.data import GraphDataset, StandInWarning, compute_budget, load_3bpa
from nequip_jax.model import NequIPConfig, Potential, make_model_fns
from nequip_jax.model.ensemble import Ensemble, EnsembleGroup
from tests.tiny_models import SPECIES, TINY_MODEL


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


@pytest.fixture
def tiny_model():
    """Hyperparameters of a tiny NequIP (fast on a CPU), as a dictionary."""
    return dict(TINY_MODEL)


#: The event JAX records once per program it lowers (a jit cache miss: a new trace to compile).
LOWERING_EVENT = "/jax/core/compile/jaxpr_to_mlir_module_duration"


@pytest.fixture
def lowerings():
    """``with lowerings() as counted: ...``; ``counted.n`` is the number of programs JAX lowered
    inside the block and ``counted.names`` their names (e.g. ``"jit(_shuffle)"``), counted by
    JAX's own monitoring events, not by the code under test."""

    @contextlib.contextmanager
    def count():
        counted = types.SimpleNamespace(n=0, names=[])

        def listener(event, duration, **kwargs):
            if event == LOWERING_EVENT:
                counted.n += 1
                counted.names.append(kwargs.get("fun_name"))

        jax.monitoring.register_event_duration_secs_listener(listener)
        try:
            yield counted
        finally:
            jax.monitoring.unregister_event_duration_listener(listener)

    return count


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
    from nequip_jax.training import RunConfig

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


# ---------------------------------------------------------------------------------------------
# Tiny float64 models (no training needed: the calculator and the on-device MD must reproduce
# any parameters). SPECIES: the 3BPA elements.


#: Force RMS (eV/Å) the untrained models are scaled to on a 3BPA frame: a smooth, realistic
#: surface for MD and relaxation whatever the initialisation of the network.
FORCE_RMS = 0.15


def _config(**fields):
    values = {**TINY_MODEL, **fields}
    return NequIPConfig(num_species=4, avg_num_neighbors=15.0, dtype="float64", **values)


def _scaled(potential: Potential, frame) -> Potential:
    """``potential`` with its per-species energy scales multiplied so that the force RMS on
    ``frame`` is :data:`FORCE_RMS` (forces are linear in the scale)."""
    rms = float(np.sqrt(np.mean(potential.predict([frame])["forces"][0] ** 2)))
    params = jax.tree.map(np.asarray, potential.params)
    params["params"]["energy_scale"] = params["params"]["energy_scale"] * (FORCE_RMS / rms)
    return Potential(potential.config, params, potential.species)


def _init(config, frames, seed):
    with jax.enable_x64(True):
        ds = GraphDataset(frames[:1], config.r_max, SPECIES)
        init, _ = make_model_fns(config)
        batch = ds.batch([0], compute_budget(ds, 1), dtype=np.float64)
        return jax.device_get(init(jax.random.key(seed), batch))


def _mixture(dim: int, seed: int) -> gmm.GMMParams:
    """A 2-component full-covariance mixture with random means and precisions (any mixture
    will do: the calculator must reproduce ``Potential.predict`` whatever the GMM)."""
    rng = np.random.default_rng(seed)
    chol = np.triu(rng.normal(scale=0.3, size=(2, dim, dim)), 1)
    chol += np.eye(dim) * rng.uniform(0.5, 2.0, size=(2, 1, dim))
    return gmm.GMMParams(np.array([0.3, 0.7]), rng.normal(size=(2, dim)), chol)


@pytest.fixture(scope="session")
def potential64(frames_300K):
    """A tiny untrained float64 potential with a 2-component GMM attached."""
    config = _config()
    potential = _scaled(Potential(config, _init(config, frames_300K, 0), SPECIES), frames_300K[0])
    return potential.with_head("gmm", _mixture(config.resolved_feature_dim, 1))


@pytest.fixture(scope="session")
def ensemble64(frames_300K):
    """Three untrained float64 one-layer members in two groups with cutoffs 4 and 3.5 Å."""
    groups = []
    for members, r_max in (([0, 1], 4.0), ([2], 3.5)):
        config = _config(r_max=r_max, num_layers=1)
        params = [_init(config, frames_300K, 10 + m) for m in members]
        stacked = jax.tree.map(lambda *x: np.stack(x), *params)
        groups.append(EnsembleGroup(config, stacked, members, SPECIES))
    return Ensemble(groups=groups, species=SPECIES)


@pytest.fixture(scope="module")
def dask_client():
    """A Dask client of a local cluster of two single-threaded worker processes (per module:
    an idle cluster costs ~10 % of a core, so it does not outlive the tests that use it)."""
    import dask
    import distributed

    # A killed worker's task comes back to the caller as lost at once (Dask would otherwise
    # re-run it itself), so that our retry policy is what re-runs it.
    with dask.config.set({"distributed.scheduler.allowed-failures": 0}):
        with (
            distributed.LocalCluster(
                n_workers=2, threads_per_worker=1, processes=True, dashboard_address=":0"
            ) as cluster,
            distributed.Client(cluster) as client,
        ):
            yield client


# ---------------------------------------------------------------------------------------------
# Order of the test files: heaviest first. With ``--dist loadfile`` each worker takes the next
# file of the queue when it is free; started last, a file of a few minutes leaves the other
# worker idle for most of them. ``tests/durations.json`` holds every file's measured seconds
# (setup + call + teardown of its tests), written by a run with ``--store-durations``; a file it
# does not list counts as the median. The Makefile passes ``--no-loadscope-reorder`` so that
# pytest-xdist keeps this order instead of sorting files by their number of tests.

DURATIONS_FILE = os.path.join(os.path.dirname(__file__), "durations.json")


def pytest_addoption(parser):
    parser.addoption(
        "--store-durations",
        action="store_true",
        help=f"write every test file's total seconds to {os.path.basename(DURATIONS_FILE)}",
    )


def _file_of(nodeid: str) -> str:
    return nodeid.split("::", 1)[0]


def _read_durations() -> dict[str, float]:
    import json

    try:
        with open(DURATIONS_FILE) as f:
            return {str(k): float(v) for k, v in json.load(f).items()}
    except FileNotFoundError:
        return {}


def pytest_collection_modifyitems(config, items):
    seconds = _read_durations()
    if not seconds:
        return
    default = float(np.median(list(seconds.values())))
    first_seen = {}
    for item in items:
        first_seen.setdefault(_file_of(item.nodeid), len(first_seen))
    # A stable sort: the tests of a file keep their order, ties keep the collection's.
    items.sort(
        key=lambda item: (
            -seconds.get(_file_of(item.nodeid), default),
            first_seen[_file_of(item.nodeid)],
        )
    )


_measured: dict[str, float] = {}


def pytest_runtest_logreport(report):
    # In the controlling process under pytest-xdist, the reports of every worker.
    _measured[_file_of(report.nodeid)] = _measured.get(_file_of(report.nodeid), 0.0) + float(
        report.duration
    )


def pytest_sessionfinish(session, exitstatus):
    config = session.config
    if not config.getoption("--store-durations") or hasattr(config, "workerinput"):
        return
    import json

    from nequip_jax._io import atomic_write_text

    merged = {**_read_durations(), **{k: round(v, 2) for k, v in _measured.items()}}
    atomic_write_text(DURATIONS_FILE, json.dumps(dict(sorted(merged.items())), indent=1) + "\n")
