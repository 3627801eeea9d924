"""The on-the-fly loop end to end on a tiny model with the GFN2-xTB oracle.

Oracles: an interrupted-and-resumed run must repeat the uninterrupted one (same oracle calls,
errors, final positions and parameters); the event log must satisfy the loop's rules (every
call above the threshold and at least ``min_steps_between_calls`` apart, the training set grows
by one structure per call, true-error samples every ``error_every`` steps, the random baseline
labels exactly at its drawn steps).
"""

import dataclasses

import jax
import numpy as np
import pytest

from nequip_jax.otf import load_otf_config, load_state, read_events, run_otf
from nequip_jax.otf.data import read_xyz
from nequip_jax.otf.surrogate import Surrogate

pytest.importorskip("tblite")
# About a minute of CPU (six short runs, each a few compilations): deselected by default.
pytestmark = pytest.mark.slow

N_STEPS = 12


def _config(trigger):
    return load_otf_config(
        "tiny",
        [
            f"trigger={trigger}",
            "n_initial=4",
            f"n_steps={N_STEPS}",
            "head_options.gmm.max_components=1",
            "threshold_percentile=0",
            "min_steps_between_calls=4",
            "max_oracle_calls=2",
            "random_calls=2",
            "retrain_epochs=1",
            "retrain_batch_size=2",
            "error_every=5",
            "checkpoint_every=3",
            "test_splits=[test_300K]",
            "n_test=2",
            "optim.max_epochs=1",
            "optim.batch_size=2",
            "optim.eval_batch_size=4",
        ],
    )


@pytest.fixture(scope="module")
def runs(tmp_path_factory, dask_client):
    root = tmp_path_factory.mktemp("otf")
    cache = root / "cache"
    out = {}
    out["whole"] = run_otf(_config("gmm"), root / "whole", cache_dir=cache, verbose=False)
    first = run_otf(
        _config("gmm"), root / "resumed", cache_dir=cache, stop_at_step=7, verbose=False
    )
    out["first_part"] = first
    out["resumed"] = run_otf(_config("gmm"), root / "resumed", cache_dir=cache, verbose=False)
    out["random"] = run_otf(_config("random"), root / "random", cache_dir=cache, verbose=False)
    out["llpr"] = run_otf(_config("llpr"), root / "llpr", cache_dir=cache, verbose=False)
    # Everything labelled on a Dask cluster (its own cache: the initial and test sets too).
    out["dask"] = run_otf(
        _config("gmm"), root / "dask", cache_dir=root / "cache_dask", verbose=False,
        executor=dask_client.get_executor(),
    )  # fmt: skip
    out["root"] = root
    return out


def _comparable(events):
    """Events without wall times and without the resume marker."""
    drop = {"oracle_s", "train_s", "head_s", "refit_s", "wall_s"}
    return [
        {k: v for k, v in e.items() if k not in drop}
        for e in events
        if e["event"] not in ("resume", "start")
    ]


def _assert_same_events(run_a, run_b, ignore=(), atol=1e-6):
    """The same events with the same values (floats to 1e-5) in two run folders."""
    events_a = _comparable(read_events(run_a / "events.jsonl"))
    events_b = _comparable(read_events(run_b / "events.jsonl"))
    assert [e["event"] for e in events_a] == [e["event"] for e in events_b]
    for a, b in zip(events_a, events_b, strict=True):
        assert a.keys() == b.keys()
        for key in a:
            if key in ignore:
                continue
            if isinstance(a[key], float | list) and key != "config":
                np.testing.assert_allclose(a[key], b[key], rtol=1e-5, atol=atol, err_msg=key)
            elif key != "errors":
                assert a[key] == b[key], key


def test_resumed_run_repeats_the_uninterrupted_run(runs):
    root = runs["root"]
    assert not runs["first_part"]["done"] and runs["first_part"]["steps"] == 7
    assert runs["resumed"]["done"] and runs["whole"]["done"]
    _assert_same_events(root / "whole", root / "resumed")
    assert len(read_events(root / "resumed" / "events.jsonl", "resume")) == 1
    sa, sb = load_state(root / "whole" / "state.json"), load_state(root / "resumed" / "state.json")
    np.testing.assert_allclose(sa.positions, sb.positions, atol=1e-6)
    pa = Surrogate.load(root / "whole" / sa.model_dir).params
    pb = Surrogate.load(root / "resumed" / sb.model_dir).params
    for a, b in zip(jax.tree.leaves(pa), jax.tree.leaves(pb)):
        np.testing.assert_allclose(np.asarray(a), np.asarray(b), rtol=1e-5, atol=1e-7)


def test_labelling_on_a_dask_cluster_repeats_the_run(runs):
    root = runs["root"]
    assert runs["dask"]["done"]
    _assert_same_events(root / "whole", root / "dask")
    here = {p.name: p for p in (root / "cache").glob("*.xyz")}
    there = {p.name: p for p in (root / "cache_dask").glob("*.xyz")}
    assert here.keys() == there.keys() and len(here) >= 2  # the initial and test sets
    for name, path in here.items():
        a, b = read_xyz(path), read_xyz(there[name])
        np.testing.assert_allclose(
            [x.get_potential_energy() for x in a], [x.get_potential_energy() for x in b], atol=1e-8
        )
        np.testing.assert_allclose(
            np.concatenate([x.get_forces() for x in a]),
            np.concatenate([x.get_forces() for x in b]),
            atol=1e-8,
        )


@pytest.mark.parametrize(("run", "trigger"), [("whole", "gmm"), ("llpr", "llpr")])
def test_log_follows_the_rules_of_the_loop(runs, run, trigger):
    root, summary = runs["root"] / run, runs[run]
    config = _config(trigger)
    events = read_events(root / "events.jsonl")
    (head,) = read_events(root / "events.jsonl", "head")
    assert head["method"] == trigger and head["step"] == 0
    calls = [e for e in events if e["event"] == "oracle"]
    retrains = [e for e in events if e["event"] == "retrain"]
    samples = [e for e in events if e["event"] == "error_sample"]
    traces = [e for e in events if e["event"] == "trace"]
    assert [e["step"] for e in traces] == list(range(1, N_STEPS + 1))
    assert 1 <= len(calls) <= config.max_oracle_calls
    assert summary["n_oracle_calls"] == len(calls) == len(retrains)
    for call in calls:
        assert call["score"] > call["threshold"]
        assert len(call["eps"]) == 27
        assert max(call["eps"]) == pytest.approx(call["eps_max"], abs=1e-5)
    steps = [c["step"] for c in calls]
    assert all(b - a >= config.min_steps_between_calls for a, b in zip(steps, steps[1:]))
    assert [r["n_train"] for r in retrains] == [
        config.n_initial + i + 1 for i in range(len(retrains))
    ]
    state = load_state(root / "state.json")
    assert len(read_xyz(root / state.train_file)) == config.n_initial + len(calls)
    resets = {e["step"] for e in events if e["event"] == "reset"}
    expected = [s for s in (5, 10) if s not in steps and s not in resets]
    assert [e["step"] for e in samples] == expected
    assert set(summary["errors"]) == {"initial", "final"}
    assert summary["errors"]["final"]["test_300K"]["n_structures"] == 2


def test_random_baseline_labels_at_its_drawn_steps(runs):
    root = runs["root"] / "random"
    state = load_state(root / "state.json")
    events = read_events(root / "events.jsonl")
    resets = {e["step"] for e in events if e["event"] == "reset"}
    calls = [e["step"] for e in events if e["event"] == "oracle"]
    assert len(state.random_steps) == 2 and len(set(state.random_steps)) == 2
    assert all(1 <= s <= N_STEPS for s in state.random_steps)
    assert calls == [s for s in state.random_steps if s not in resets]
    # No uncertainty is computed for the random baseline.
    assert all(e["score"] is None for e in events if e["event"] == "trace")


def test_device_and_ase_md_give_the_same_run_without_friction(tmp_path, runs):
    """At zero friction both MD paths are velocity Verlet under ``FixCom``: the same seed gives
    the same oracle calls, errors, trace and final evaluation (float32, to float tolerance)."""
    out = {}
    for md in ("device", "ase"):
        config = dataclasses.replace(_config("gmm"), md=md, friction_per_fs=0.0)
        out[md] = run_otf(config, tmp_path / md, cache_dir=runs["root"] / "cache", verbose=False)
    assert out["device"]["done"] and out["ase"]["done"]
    calls = [len(read_events(tmp_path / md / "events.jsonl", "oracle")) for md in out]
    assert calls[0] == calls[1] >= 1
    # float32: the per-atom NLL (|u| up to ~5) of the two paths differs by a few 1e-5; the
    # float64 trajectories agree to 1e-8 (tests/otf/test_dynamics.py).
    _assert_same_events(tmp_path / "device", tmp_path / "ase", ignore=("config",), atol=1e-4)
