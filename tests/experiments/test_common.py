"""Pure logic of the experiments' shared modules (experiments/common): statistics over seeds,
verdicts, configuration, data-source checks, structure aggregation."""

from __future__ import annotations

import argparse
import dataclasses
import statistics

import numpy as np
import pytest
from ase import Atoms
from ase.calculators.singlepoint import SinglePointCalculator
from hypothesis import given, settings
from hypothesis import strategies as st

from experiments.common import cli, sources, training
from experiments.common.cli import seeds_from_args
from experiments.common.config import MethodsConfig, run_config
from experiments.common.prediction import Prediction, structure_uncertainty
from experiments.common.sources import check_source, fingerprint
from experiments.common.stats import aggregate_seeds, compare_to_spread, format_mean_sd, mean_sd
from nequip_jax.data import DataError

finite = st.floats(-1e3, 1e3, allow_nan=False)


@settings(max_examples=30, deadline=None)
@given(st.lists(finite, min_size=2, max_size=12))
def test_mean_sd_matches_statistics(values):
    m, s, n = mean_sd(values)
    assert n == len(values)
    assert m == pytest.approx(statistics.fmean(values), abs=1e-9)
    assert s == pytest.approx(statistics.stdev(values), rel=1e-9, abs=1e-9)


def test_mean_sd_skips_nan_and_handles_one_value():
    assert mean_sd([1.0, float("nan"), 3.0])[:2] == (2.0, pytest.approx(np.sqrt(2.0)))
    m, s, n = mean_sd([5.0])
    assert (m, n) == (5.0, 1) and np.isnan(s)
    assert mean_sd([float("nan")])[2] == 0


@pytest.mark.parametrize(
    "values, scale, digits, expected",
    [
        ([1.0, 3.0], 1.0, 1, "2.0 ± 1.4"),
        ([0.010, 0.012], 1000.0, 1, "11.0 ± 1.4"),
        ([0.5], 1.0, 2, "0.50 (1 seed)"),
        ([float("nan")], 1.0, 1, "n/a"),
    ],
)
def test_format_mean_sd(values, scale, digits, expected):
    assert format_mean_sd(values, scale, digits) == expected


@pytest.mark.parametrize(
    "improvements, baseline, verdict",
    [
        ([10.0, 11.0, 12.0], None, "yes"),  # mean 11, sd 1
        ([10.0, 11.0, 12.0], [0.0, 20.0, 40.0], "within spread"),  # baseline sd 20 > 11
        ([-10.0, -11.0, -12.0], None, "worse"),
        ([1.0, -1.0, 0.5], None, "within spread"),
        ([3.0], None, "n/a"),
    ],
)
def test_compare_to_spread_verdicts(improvements, baseline, verdict):
    out = compare_to_spread(improvements, baseline)
    assert out["verdict"] == verdict
    assert out["n_better"] == sum(x > 0 for x in improvements)


def test_aggregate_seeds_nested():
    per_seed = [
        {"a": {"x": 1.0, "flag": True}, "b": 2.0},
        {"a": {"x": 3.0, "flag": False}, "b": 4.0},
    ]
    out = aggregate_seeds(per_seed)
    assert out["a"]["x"]["mean"] == 2.0
    assert out["a"]["x"]["sd"] == pytest.approx(np.sqrt(2.0))
    assert out["a"]["flag"]["mean"] == 0.5
    assert out["b"]["values"] == [2.0, 4.0]


def _atoms(shift=0.0, energy=-1.0):
    atoms = Atoms("H2O", positions=[[0, 0, 0], [0.9 + shift, 0, 0], [0, 0.9, 0]])
    atoms.calc = SinglePointCalculator(atoms, energy=energy, forces=np.zeros((3, 3)))
    return atoms


def test_fingerprint_sees_positions_labels_and_order():
    a, b = _atoms(), _atoms(shift=1e-9)
    assert fingerprint([a, _atoms()]) == fingerprint([_atoms(), a])
    assert fingerprint([a]) != fingerprint([b])
    assert fingerprint([a]) != fingerprint([_atoms(energy=-2.0)])
    assert fingerprint([a, b]) != fingerprint([b, a])


def test_run_config_applies_overrides_and_variant_and_refuses_a_clock():
    mc = MethodsConfig(
        base="cpu",
        model={"num_features": 8},
        optim={"max_epochs": 7},
        n_traditional=3,
        n_diverse_traditional=2,
    )
    cfg = run_config(mc, seed=5)
    assert (cfg.seed, cfg.model.num_features, cfg.optim.max_epochs) == (5, 8, 7)
    assert cfg.optim.max_time_s is None
    var = run_config(
        mc, seed=5, variant={"model": {"num_layers": 2}, "optim": {"learning_rate": 0.1}}
    )
    assert var.model.num_layers == 2 and var.model.num_features == 8
    assert var.optim.learning_rate == 0.1
    with pytest.raises(ValueError, match="max_time_s=60"):
        run_config(dataclasses.replace(mc, optim={"max_time_s": 60}), seed=5)


@pytest.mark.parametrize(
    "kwargs",
    [
        {"n_traditional": 1},
        {"n_traditional": 4, "n_diverse_traditional": 5},
        {"n_traditional": 4, "n_diverse_traditional": 1, "diverse_variants": ()},
    ],
)
def test_methods_config_rejects_impossible_ensembles(kwargs):
    with pytest.raises(ValueError):
        MethodsConfig(**kwargs)


def test_check_source_refuses_incomplete_folder(tmp_path):
    (tmp_path / "train_300K.xyz").write_text("")
    used = check_source("xtb", tmp_path, ["train_300K"])
    assert used == {"train_300K:train_300K.xyz": str(tmp_path / "train_300K.xyz")}
    # test_600K is absent here but present in the DFT folder: reading it would mix sources.
    with pytest.raises(DataError, match="mix levels of theory"):
        check_source("xtb", tmp_path, ["train_300K", "test_600K"])
    # the 1200 K stand-in needs train_mixedT of the same source
    with pytest.raises(DataError, match="train_mixedT"):
        check_source("xtb", tmp_path, ["test_1200K"])


def test_check_source_refuses_xtb_files_for_dft(tmp_path, monkeypatch):
    fake_xtb = tmp_path / "3bpa_xtb"
    fake_xtb.mkdir()
    (fake_xtb / "test_dih_beta120.xyz").write_text("")
    monkeypatch.setattr(sources, "XTB_ROOT", fake_xtb)
    monkeypatch.setenv("NEQUIP_JAX_DATA", str(fake_xtb))
    with pytest.raises(DataError):
        check_source("dft", None, ["dih_beta120"])


def test_structure_uncertainty_matches_loops():
    rng = np.random.default_rng(0)
    structure = np.repeat(np.arange(4), [3, 1, 2, 4])
    u = rng.uniform(0.1, 2.0, structure.size)
    pred = Prediction(u, u, structure, np.zeros(4), np.zeros(4), np.zeros(4))
    gmm = structure_uncertainty("gmm", pred)
    ens = structure_uncertainty("traditional", pred)
    for s in range(4):
        assert gmm[s] == pytest.approx(sum(u[structure == s]))
        assert ens[s] == pytest.approx(np.sqrt(sum(u[structure == s] ** 2)))


@pytest.mark.parametrize(
    "argv, expected",
    [([], (0, 1, 2)), (["--seed", "4"], (4,)), (["--seeds", "3", "5"], (3, 5))],
)
def test_seeds_from_args(argv, expected):
    parser = argparse.ArgumentParser()
    cli.add_common_arguments(parser, ["cpu"])
    assert seeds_from_args(parser.parse_args(argv), (0, 1, 2)) == expected


def test_data_root():
    assert sources.data_root("dft") is None
    assert sources.data_root("xtb") == sources.XTB_ROOT
    with pytest.raises(ValueError):
        sources.data_root("pbe")


def test_variants_of_equal_shape_train_as_one_cached_piece(frames_300K, tiny_model, tmp_path):
    # r_max and learning-rate variants keep the parameter shapes: one vmapped piece; the
    # num_layers variant is a piece of its own. A second call loads every piece from the cache.
    mc = MethodsConfig(
        model=tiny_model,
        optim={"batch_size": 2, "eval_batch_size": 4, "max_epochs": 1},
        n_traditional=2,
        n_diverse_traditional=1,
        diverse_variants=(
            {"model": {"r_max": 3.5}},
            {"model": {"num_layers": 1}},
            {"optim": {"learning_rate": 0.005}},
        ),
    )
    data = (frames_300K[:4], frames_300K[4:6])
    kwargs = dict(seed=0, data=data, models_dir=tmp_path, methods=("diverse",))
    trained = training.train_methods(mc, **kwargs)
    pieces = trained.info["variants"]
    assert [p["members"] for p in pieces] == [[100, 102], [101]]
    assert [p["variants"] for p in pieces] == [
        [{"model": {"r_max": 3.5}}, {"optim": {"learning_rate": 0.005}}],
        [{"model": {"num_layers": 1}}],
    ]
    assert [m.r_max for m in trained.diverse.members()] == [4.0, 3.5, 4.0, 4.0]
    # Per-member records: one per member, best epochs as the training loop chose them, and
    # the 1-epoch limit as the stop reason.
    for piece in [trained.info["traditional"], *pieces]:
        assert [n["member"] for n in piece["networks"]] == piece["members"]
        assert [n["best_epoch"] for n in piece["networks"]] == piece["best_epoch"]
        assert {n["stop_reason"] for n in piece["networks"]} == {"max_epochs"}
        assert {n["epochs"] for n in piece["networks"]} == {1}
    again = training.train_methods(mc, **kwargs)
    assert all(p["cached"] for p in again.info["variants"])
    assert [p["networks"] for p in again.info["variants"]] == [p["networks"] for p in pieces]
    frames = frames_300K[6:8]
    np.testing.assert_array_equal(
        trained.diverse.predict(frames)["member_energy"],
        again.diverse.predict(frames)["member_energy"],
    )


def test_interrupted_piece_resumes_to_the_uninterrupted_result(frames_300K, tiny_model, tmp_path):
    # A piece killed after 1 of 3 epochs (its folder holds last.ckpt, no piece.json) continues
    # from that checkpoint: same parameters and per-member records as training it in one go.
    mc = MethodsConfig(
        model=tiny_model,
        optim={"batch_size": 2, "eval_batch_size": 4, "max_epochs": 3},
        n_traditional=2,
        n_diverse_traditional=2,
    )
    data = (frames_300K[:4], frames_300K[4:6])
    kwargs = dict(seed=0, data=data, methods=("traditional",))
    whole = training.train_methods(mc, models_dir=tmp_path / "whole", **kwargs)
    folder = tmp_path / "resumed" / whole.info["traditional"]["folder"]
    short = run_config(dataclasses.replace(mc, optim={**mc.optim, "max_epochs": 1}), seed=0)
    training.train_group([short] * 2, [0, 1], folder / "train", data=data, verbose=False)
    assert (folder / "train" / "last.ckpt").is_file() and not (folder / "piece.json").exists()
    done = (folder / "train" / "metrics.jsonl").read_text().splitlines()
    resumed = training.train_methods(mc, models_dir=tmp_path / "resumed", **kwargs)
    info = resumed.info["traditional"]
    assert info["resumed"] and not info["cached"] and info["epochs"] == 3
    assert [n["epochs"] for n in info["networks"]] == [3, 3]
    # The epoch already trained is kept (its timing included), not trained again.
    assert (folder / "train" / "metrics.jsonl").read_text().splitlines()[:2] == done
    frames = frames_300K[6:8]
    np.testing.assert_array_equal(
        whole.traditional.predict(frames)["member_energy"],
        resumed.traditional.predict(frames)["member_energy"],
    )

    def untimed(networks):
        return [{k: v for k, v in n.items() if k != "wall_s"} for n in networks]

    assert untimed(info["networks"]) == untimed(whole.info["traditional"]["networks"])
