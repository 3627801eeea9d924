"""Parts of the on-the-fly loop, each against an independent oracle.

Thresholds (a counting property of percentiles), padded budgets (fit / never shrink), broken-frame
detection (constructed geometries), the padded GMM fit (scikit-learn on well-separated blobs),
warm-start fine-tuning (vmapped members equal members fine-tuned alone; no recompilation as the
set grows), surrogate predictions (equal to ``Potential.predict`` / ``Ensemble.predict``), test
errors (equal to ``nequip_jax.evaluate``), state and log persistence, configuration errors.
"""

import jax
import jax.numpy as jnp
import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

import gmm
from nequip_jax.data import GraphDataset, PaddingBudget
from nequip_jax.evaluate import evaluate_potential
from nequip_jax.oracle import bare_copy
from nequip_jax.otf import (
    EventLog,
    FineTuner,
    OTFConfig,
    OTFState,
    Surrogate,
    broken_reason,
    dynamics,
    evaluate_errors,
    grow_budget,
    load_otf_config,
    load_state,
    read_events,
    save_state,
    threshold_from_scores,
)
from nequip_jax.otf.data import draw
from nequip_jax.uncertainty.gmm_head import fit_feature_gmm

# --------------------------------------------------------------------------------- threshold


@settings(max_examples=40, deadline=None)
@given(
    scores=st.lists(st.floats(-50, 50, allow_nan=False), min_size=1, max_size=60),
    percentile=st.floats(0.0, 100.0),
)
def test_threshold_counts(scores, percentile):
    """At most ⌈n(1 − p/100)⌉ training structures lie strictly above the threshold, at least
    ⌊n(1 − p/100)⌋ − 1 lie at or above it; p = 100 is the maximum, p = 0 the minimum."""
    s = np.asarray(scores)
    t = threshold_from_scores(s, percentile)
    n = s.size
    above, at_or_above = int(np.sum(s > t)), int(np.sum(s >= t))
    assert above <= np.ceil(n * (1 - percentile / 100)) + 1e-9
    assert at_or_above >= np.floor(n * (1 - percentile / 100)) - 1
    assert threshold_from_scores(s, 100.0) == s.max()
    assert threshold_from_scores(s, 0.0) == s.min()


def test_threshold_rejects_nan():
    with pytest.raises(ValueError, match="finite"):
        threshold_from_scores(np.array([1.0, np.nan]), 50.0)


# --------------------------------------------------------------------------------- budgets

budgets = st.builds(PaddingBudget, st.integers(2, 3000), st.integers(1, 30000), st.integers(2, 40))


@settings(max_examples=60, deadline=None)
@given(current=st.one_of(st.none(), budgets), needed=budgets, headroom=st.floats(1.0, 2.0))
def test_grow_budget_fits_and_never_shrinks(current, needed, headroom):
    out = grow_budget(current, needed, headroom)
    assert out.n_node >= needed.n_node and out.n_edge >= needed.n_edge
    assert out.n_graph >= needed.n_graph
    fits = current is not None and all(c >= n for c, n in zip(current, needed))
    if fits:
        assert out == current
    else:
        assert out.n_node % 32 == 0 and out.n_edge % 64 == 0
        assert out.n_edge >= headroom * needed.n_edge


# --------------------------------------------------------------------------------- broken frames


def _broken_cases(frame):
    ok = frame.positions.copy()
    clash = ok.copy()
    clash[1] = clash[0] + [0.3, 0.0, 0.0]
    flown = ok.copy()
    flown[5] += [8.0, 0.0, 0.0]
    return [
        (ok, np.zeros_like(ok), None),
        (clash, np.zeros_like(ok), "apart"),
        (flown, np.zeros_like(ok), "atom 5 has no neighbour"),
        (ok, np.full_like(ok, np.nan), "non-finite"),
        (ok * np.nan, np.zeros_like(ok), "non-finite"),
    ]


@pytest.mark.parametrize("case", range(5))
def test_broken_reason(frames_300K, case):
    positions, forces, expected = _broken_cases(frames_300K[0])[case]
    reason = broken_reason(positions, forces, 0.6, 3.0)
    if expected is None:
        assert reason is None
    else:
        assert expected in reason
    # The device MD driver's test (inside its segment loop) agrees with the host's.
    device = bool(dynamics._broken(jnp.asarray(positions), jnp.asarray(forces), 0.6, 3.0))
    assert device == (reason is not None)


# --------------------------------------------------------------------------------- GMM


def test_padded_gmm_matches_sklearn_on_blobs():
    """Two well-separated blobs: BIC picks K = 2 over 1 despite 76 padding rows, the means are
    the blob centres, and the mean NLL equals scikit-learn's on the same data."""
    from sklearn.mixture import GaussianMixture

    rng = np.random.default_rng(0)
    centres = np.array([[0.0, 0.0], [6.0, 1.0]])
    x = np.concatenate([c + rng.normal(scale=0.5, size=(90, 2)) for c in centres])
    params, _ = fit_feature_gmm(x, key=jax.random.key(0), max_components=2, bucket=256)
    k = int(params.weights.shape[0])
    assert k == 2
    found = np.asarray(params.means)
    for c in centres:
        assert np.min(np.linalg.norm(found - c, axis=1)) < 0.15
    reference = GaussianMixture(2, covariance_type="full", random_state=0).fit(x)
    with jax.enable_x64(True):
        ours = float(np.mean(np.asarray(gmm.nll(params, x))))
    assert ours == pytest.approx(-reference.score(x), abs=1e-3)


# --------------------------------------------------------------------------------- fine-tuning


def test_vmapped_fine_tuning_equals_members_alone(tiny_ensemble, frames_300K):
    """Member j of an ensemble fine-tune equals a single model fine-tuned from the same
    parameters and key as member j (the trainer's per-member key rule); without ``members`` a
    single model is member 0."""
    group = tiny_ensemble.groups[0]
    dataset = GraphDataset(frames_300K[:5], 4.0, tiny_ensemble.species)
    key = jax.random.key(3)
    joint = FineTuner(group.config, n_members=3, batch_size=2).run(
        group.params, dataset, epochs=2, key=key
    )
    alone = FineTuner(group.config, batch_size=2)
    for j in range(3):
        params_j = jax.tree.map(lambda x, j=j: x[j], group.params)
        single = alone.run(params_j, dataset, epochs=2, key=key, members=None if j == 0 else (j,))
        for a, b in zip(jax.tree.leaves(single.params), jax.tree.leaves(joint.params)):
            np.testing.assert_allclose(np.asarray(a), np.asarray(b)[j], rtol=2e-4, atol=2e-6)
        np.testing.assert_allclose(
            [h["forces_rmse"][0] for h in single.history],
            [h["forces_rmse"][j] for h in joint.history],
            rtol=1e-4,
        )


def test_fine_tuning_refuses_wrong_member_numbers(tiny_potential, frames_300K):
    """One member number per member of the params, else an error that names the argument."""
    dataset = GraphDataset(frames_300K[:3], 4.0, tiny_potential.species)
    tuner = FineTuner(tiny_potential.config, batch_size=2)
    with pytest.raises(ValueError, match="members=.*expected 1"):
        tuner.run(tiny_potential.params, dataset, epochs=1, key=jax.random.key(0), members=(0, 1))


def test_fine_tuning_learns_without_recompiling(tiny_potential, frames_300K, lowerings):
    """Growing the set by one structure keeps the padded shape: the training step is not
    lowered again (counted by JAX); at most the epoch shuffle of the new set size is (a
    permutation of 7 instead of 6 indices). More epochs lower the training error of a fixed
    set."""
    tuner = FineTuner(tiny_potential.config, batch_size=2)  # the shape of the test above
    species = tiny_potential.species
    small = GraphDataset(frames_300K[:6], 4.0, species)
    first = tuner.run(tiny_potential.params, small, epochs=8, key=jax.random.key(0))
    grown = GraphDataset(frames_300K[:7], 4.0, species)
    with lowerings() as counted:
        tuner.run(first.params, grown, epochs=1, key=jax.random.key(1))
    # (The shuffle of 7 indices may already be compiled by another test of the process.)
    assert set(counted.names) <= {"jit(_shuffle)", "jit(iota)"}, counted.names
    errors = [h["forces_rmse"][0] for h in first.history]
    assert errors[-1] < errors[0]


# --------------------------------------------------------------------------------- surrogate


def _mixture(dim, seed):
    rng = np.random.default_rng(seed)
    chol = np.triu(rng.normal(scale=0.3, size=(2, dim, dim)), 1)
    chol += np.eye(dim) * rng.uniform(0.5, 2.0, size=(2, 1, dim))
    return gmm.GMMParams(np.array([0.4, 0.6]), rng.normal(size=(2, dim)), chol)


def test_surrogate_predictions_equal_the_library(tiny_potential, tiny_ensemble, frames_300K):
    frames = [bare_copy(a) for a in frames_300K[20:25]]
    potential = tiny_potential.with_head("gmm", _mixture(tiny_potential.feature_dim, 0))
    single, reference = Surrogate(potential).predict(frames), potential.predict(frames)
    np.testing.assert_allclose(single["energy"], reference["energy"], rtol=1e-5, atol=1e-5)
    for i in range(len(frames)):
        np.testing.assert_allclose(single["forces"][i], reference["forces"][i], atol=1e-5)
        np.testing.assert_allclose(single["uncertainty"][i], reference["uncertainty"][i], atol=1e-3)
    scores = Surrogate(potential).structure_scores(frames)
    np.testing.assert_allclose(scores, [u.max() for u in reference["uncertainty"]], atol=1e-3)

    ens, reference = (
        Surrogate(tiny_ensemble).predict(frames),
        tiny_ensemble.predict(frames),
    )
    np.testing.assert_allclose(ens["energy"], reference["energy"], rtol=1e-5, atol=1e-5)
    for i in range(len(frames)):
        np.testing.assert_allclose(ens["forces"][i], reference["forces"][i], atol=1e-5)
        np.testing.assert_allclose(ens["uncertainty"][i], reference["uncertainty"][i], atol=1e-5)


def test_test_errors_equal_evaluate_potential(tiny_potential, frames_300K):
    frames = frames_300K[30:35]  # as many as above: the compiled shape is reused
    ours = evaluate_errors(Surrogate(tiny_potential), frames)
    reference = evaluate_potential(tiny_potential, frames)["summary"]
    assert ours["forces_rmse"] == pytest.approx(reference["forces_rmse"], rel=1e-4)
    assert ours["mean_eps"] == pytest.approx(reference["mean_eps"], rel=1e-4)
    assert ours["energy_rmse_per_atom"] == pytest.approx(
        reference["energy_rmse_per_atom"], rel=1e-3, abs=1e-6
    )


def test_surrogate_save_load_round_trip(tiny_potential, tiny_ensemble, tmp_path):
    single = tiny_potential.with_head("gmm", _mixture(2, 1))
    for name, model in (("single", single), ("ens", tiny_ensemble)):
        Surrogate(model).save(tmp_path / name)
        loaded = Surrogate.load(tmp_path / name)
        assert loaded.is_ensemble == (name == "ens")
        for a, b in zip(jax.tree.leaves(Surrogate(model).params), jax.tree.leaves(loaded.params)):
            np.testing.assert_array_equal(np.asarray(a), np.asarray(b))


# --------------------------------------------------------------------------------- persistence


def _state(**changes):
    rng = np.random.Generator(np.random.PCG64(123))
    rng.standard_normal(7)
    values = dict(
        step=12,
        n_oracle_calls=2,
        n_diagnostic_calls=1,
        n_resets=0,
        last_call_step=9,
        threshold=0.1 + 1e-17,
        random_steps=[3, 9],
        rng_state=rng.bit_generator.state,
        positions=(np.random.default_rng(1).normal(size=(3, 3)) / 3).tolist(),
        momenta=[[0.1, 0.2, 0.3]] * 3,
        numbers=[1, 6, 8],
        start_positions=[[0.0, 0.0, 0.0]] * 3,
        model_dir="model_0002",
        train_file="train_0002.xyz",
        log_lines=5,
        timers={"md": 1.5},
    )
    values.update(changes)
    return OTFState(**values), rng


def test_state_round_trip_is_exact(tmp_path):
    state, rng = _state()
    save_state(tmp_path / "state.json", state)
    loaded = load_state(tmp_path / "state.json")
    assert loaded == state
    # The restored generator continues the same stream.
    again = np.random.Generator(np.random.PCG64())
    again.bit_generator.state = loaded.rng_state
    np.testing.assert_array_equal(again.standard_normal(5), rng.standard_normal(5))


def test_event_log_truncates_to_the_checkpoint(tmp_path):
    path = tmp_path / "events.jsonl"
    with EventLog(path) as log:
        for i in range(5):
            log.write("trace", step=i)
    with EventLog(path, keep=3) as log:
        assert log.n_lines == 3
        log.write("resume", step=2)
    events = read_events(path)
    assert [e["step"] for e in events] == [0, 1, 2, 2]
    assert [e["event"] for e in read_events(path, "resume")] == ["resume"]


# --------------------------------------------------------------------------------- config/data


def test_draw_is_a_seeded_subset():
    a = draw(100, 10, jax.random.key(0))
    assert len(set(a.tolist())) == 10 and a.min() >= 0 and a.max() < 100
    np.testing.assert_array_equal(a, draw(100, 10, jax.random.key(0)))
    assert sorted(draw(7, None, jax.random.key(1)).tolist()) == list(range(7))


def test_presets_and_overrides():
    cfg = load_otf_config("cpu", ["trigger=ensemble", "n_steps=50"])
    assert cfg.trigger == "ensemble" and cfg.n_steps == 50 and cfg.n_initial <= 20
    assert cfg.temperature_K == 600.0
    assert load_otf_config("tiny").model.num_features == 4


@pytest.mark.parametrize(
    ("changes", "message"),
    [
        ({"trigger": "dropout"}, "trigger"),
        ({"labels": "files"}, "data_root"),
        ({"threshold_percentile": 120.0}, "threshold_percentile"),
        ({"trigger": "ensemble", "n_members": 1}, "n_members"),
        ({"oracle": {"methd": "GFN1-xTB"}}, r"oracle has unknown keys \['methd'\]"),
        ({"oracle": {"accuracy": -1.0}}, "oracle: accuracy must be positive"),
        ({"head_options": {"gmn": {"max_components": 4}}}, "'gmn', which is not a registered"),
        ({"head_options": {"gmm": 4}}, r"head_options\['gmm'\]=4 must be a mapping"),
    ],
)
def test_invalid_config_names_the_problem(changes, message):
    with pytest.raises(ValueError, match=message):
        OTFConfig(**changes)
    with pytest.raises(FileNotFoundError, match="presets"):
        load_otf_config("no-such-preset")


def test_a_work_folder_resumes_only_the_configuration_it_was_started_with(tmp_path):
    from nequip_jax.otf import load_otf_config
    from nequip_jax.otf.state import CONFIG_FILE, check_run_config

    config = load_otf_config("tiny", ["trigger=gmm"])
    check_run_config(tmp_path, config, resuming=False)
    assert (tmp_path / CONFIG_FILE).is_file()
    # The same settings (and a moved data folder or another wall-time limit) resume.
    check_run_config(tmp_path, config, resuming=True)
    check_run_config(
        tmp_path, config.replace(data_root="/elsewhere", max_wall_s=60.0), resuming=True
    )
    other = config.replace(n_steps=config.n_steps + 1, trigger="llpr")
    with pytest.raises(ValueError, match=r"differs in \['n_steps', 'trigger'\]"):
        check_run_config(tmp_path, other, resuming=True)
    changed_optim = load_otf_config("tiny", ["trigger=gmm", "optim.plateau_threshold=0.5"])
    with pytest.raises(ValueError, match=r"differs in \['optim'\]"):
        check_run_config(tmp_path, changed_optim, resuming=True)
    with pytest.raises(ValueError, match="without config.json"):
        check_run_config(tmp_path / "empty", config, resuming=True)
