"""Pure analysis functions of the figure experiments, against brute-force or closed-form
oracles."""

from __future__ import annotations

import dataclasses
import json

import jax
import numpy as np
import pytest
from hypothesis import assume, given, settings
from hypothesis import strategies as st
from scipy import stats

from experiments.common.plots import _grid
from experiments.common.prediction import Prediction
from experiments.cost.analysis import claims as cost_claims
from experiments.cost.analysis import convergence_epochs, epoch_times, ratio, split_compile
from experiments.fig2_uncertainty.analysis import (
    method_metrics,
    monotone_increasing,
    ordering_holds,
)
from experiments.fig3_tpr_ppv.analysis import map_distance, map_summary, rate_map
from experiments.fig4_landscapes.analysis import (
    compare_landscapes,
    landscape_values,
    pearson,
    top_overlap,
)
from experiments.fig5_active_learning.analysis import (
    improvement,
    improvement_table,
    paired_difference,
    select_active,
    select_random,
    table_metrics,
)


def _prediction(rng, n_structures=6, n_atoms=5, with_std=True):
    structure = np.repeat(np.arange(n_structures), n_atoms)
    eps = rng.uniform(0.01, 0.5, structure.size)
    u = rng.uniform(0.01, 2.0, structure.size)
    energy = rng.normal(size=n_structures)
    std = rng.uniform(0.1, 1.0, n_structures) if with_std else np.full(n_structures, np.nan)
    return Prediction(eps, u, structure, energy, energy + rng.normal(size=n_structures), std)


# ------------------------------------------------------------------------------------ Fig. 2


def test_method_metrics_against_direct_formulas():
    rng = np.random.default_rng(1)
    p = _prediction(rng)
    m = method_metrics(p)
    assert m["eps_bar"] == pytest.approx(np.sqrt(np.mean(p.eps**2)))  # Eq. (3)
    assert m["u_median"] == pytest.approx(np.median(p.u))
    de = (p.energy - p.energy_true) / 5
    assert m["energy_rmse_per_atom"] == pytest.approx(np.sqrt(np.mean(de**2)))
    assert m["spearman"] == pytest.approx(stats.spearmanr(p.u, p.eps).statistic)


@pytest.mark.parametrize(
    "eps_bar, expected",
    [
        ({"traditional": 1.0, "diverse": 2.0, "gmm": 3.0}, True),
        ({"traditional": 1.0, "diverse": 3.0, "gmm": 2.0}, False),  # single not the highest
        ({"traditional": 2.0, "diverse": 1.0, "gmm": 3.0}, False),  # traditional not the lowest
    ],
)
def test_ordering_holds(eps_bar, expected):
    assert ordering_holds(eps_bar) is expected


@pytest.mark.parametrize(
    "values, expected", [([1, 2, 3], True), ([1, 1, 2], False), ([3, 2], False), ([1], False)]
)
def test_monotone_increasing(values, expected):
    assert monotone_increasing(values) is expected


# ------------------------------------------------------------------------------------ Fig. 3


def _brute_rates(u, eps, u_cut, e_cut):
    flagged, positive = u > u_cut, eps > e_cut
    tp = np.sum(flagged & positive)
    tpr = tp / positive.sum() if positive.any() else np.nan
    ppv = tp / flagged.sum() if flagged.any() else np.nan
    return tpr, ppv


def test_rate_map_matches_brute_force_counts():
    rng = np.random.default_rng(2)
    eps = rng.uniform(0, 1, 300)
    u = eps + rng.normal(scale=0.3, size=300)
    m = rate_map(u, eps, n=7)
    u_cuts = np.percentile(u, m.percentiles)
    for k in (0, 3, 6):
        for j in (0, 2, 6):
            tpr, ppv = _brute_rates(u, eps, u_cuts[k], m.eps_cutoffs[j])
            assert m.tpr[k, j] == pytest.approx(tpr)
            assert m.ppv[k, j] == pytest.approx(ppv)


def test_map_summary_perfect_and_random_rankers():
    rng = np.random.default_rng(3)
    eps = rng.uniform(0, 1, 4000)
    perfect = map_summary(rate_map(eps.copy(), eps))
    assert perfect["max_percentile_both"] == pytest.approx(99.0)
    noise = map_summary(rate_map(rng.uniform(size=eps.size), eps))
    # random U: TPR ≈ 1 − p, so TPR ≥ 0.9 needs p ≲ 10
    assert noise["max_percentile_both"] <= 13.0
    assert noise["both_area"] < perfect["both_area"]


def test_map_distance_zero_for_same_and_symmetric():
    rng = np.random.default_rng(4)
    eps = rng.uniform(size=200)
    a, b = rate_map(eps + rng.normal(size=200), eps), rate_map(rng.normal(size=200), eps)
    assert map_distance(a, a) == {"tpr": 0.0, "ppv": 0.0}
    assert map_distance(a, b) == map_distance(b, a)
    with pytest.raises(ValueError):
        map_distance(a, rate_map(eps, eps, n=5))


# ------------------------------------------------------------------------------------ Fig. 4


@settings(max_examples=25, deadline=None)
@given(st.lists(st.floats(-100, 100, allow_nan=False), min_size=3, max_size=30))
def test_pearson_matches_numpy(values):
    a = np.array(values)
    b = a**2 + np.arange(a.size)
    assume(np.ptp(a) >= 1e-6 and np.ptp(b) >= 1e-6)
    assert pearson(a, b) == pytest.approx(np.corrcoef(a, b)[0, 1], abs=1e-9)


def test_top_overlap_limits():
    a = np.arange(50.0)
    assert top_overlap(a, a) == 1.0
    assert top_overlap(a, -a) == 0.0
    assert top_overlap(a, a * 3 + 1) == 1.0  # only the ranking matters


def test_landscape_values_and_comparison():
    rng = np.random.default_rng(5)
    preds = {
        "gmm": _prediction(rng, with_std=False),
        "traditional": _prediction(rng),
        "diverse": _prediction(rng),
    }
    ref = preds["gmm"].energy_true
    preds = {k: p._replace(energy_true=ref) for k, p in preds.items()}
    values = landscape_values(preds)
    for m in preds:
        u = values[f"U:{m}"]
        assert u.min() == 0.0 and u.max() == pytest.approx(1.0)  # Eq. (11)
        assert values[f"E:{m}"].min() == 0.0
    assert "Estd:gmm" not in values and "Estd:traditional" in values
    # sum of NLL for the GMM: normalised version of the per-structure sum
    s = np.bincount(preds["gmm"].structure, weights=preds["gmm"].u)
    assert np.allclose(values["U:gmm"], (s - s.min()) / (s.max() - s.min()))
    out = compare_landscapes(values)
    pair = out["U:gmm vs E:reference"]
    assert pair["spearman"] == pytest.approx(stats.spearmanr(values["U:gmm"], ref).statistic)
    assert "Estd:gmm vs E:reference" not in out


# ------------------------------------------------------------------------------------ Fig. 5


def test_select_active_takes_structures_with_largest_atom_uncertainty():
    rng = np.random.default_rng(6)
    p = _prediction(rng, n_structures=20, n_atoms=4)
    chosen = select_active(p, 5)
    best_atom = [p.u[p.structure == s].max() for s in range(20)]  # Eq. (12)
    assert list(chosen) == list(np.argsort(best_atom)[::-1][:5])


def test_select_random_is_a_seeded_subset():
    key = jax.random.key(3)
    a = select_random(40, 10, key=key)
    assert len(set(a.tolist())) == 10 and a.min() >= 0 and a.max() < 40
    assert np.array_equal(a, select_random(40, 10, key=key))
    assert not np.array_equal(a, select_random(40, 10, key=jax.random.key(4)))
    with pytest.raises(ValueError):
        select_random(5, 6, key=key)


def test_table_metrics_and_improvements():
    eps = np.array([0.1, 0.3, 0.5, 0.05])
    t = table_metrics(eps)
    assert t["eps_bar"] == pytest.approx(np.sqrt(np.mean(eps**2)))
    assert t["eps_bar_200"] == pytest.approx(0.4) and t["n_above_200"] == 2
    assert t["eps_max"] == 0.5
    random = {"eps_bar": 0.2, "eps_bar_200": 0.4, "eps_max": 0.5}
    active = {"eps_bar": 0.15, "eps_bar_200": 0.5, "eps_max": 0.25}
    imp = improvement(random, active)
    assert imp["eps_bar"]["abs"] == pytest.approx(0.05)
    assert imp["eps_bar"]["pct"] == pytest.approx(25.0)
    assert imp["eps_bar_200"]["abs"] == pytest.approx(-0.1)  # active worse
    assert imp["eps_max"]["pct"] == pytest.approx(50.0)
    table = improvement_table([random, random, random], [active, active, active])
    assert table["eps_bar"]["abs"] == pytest.approx([0.05] * 3)
    assert table["eps_bar"]["n_better"] == 3 and table["eps_bar_200"]["n_better"] == 0
    paired = table["eps_bar"]["paired"]
    assert paired["diff"] == pytest.approx([-0.05] * 3)
    assert paired["mean"] == pytest.approx(-0.05) and paired["sd"] == pytest.approx(0.0)
    assert np.isnan(paired["p_value"])  # no spread: the t-test is undefined


# Worked by hand: d = active − random = (−0.02, −0.03, 0.00, −0.03); mean −0.02;
# sd = sqrt((0 + 1e-4 + 4e-4 + 1e-4) / 3) = sqrt(2e-4); t = mean / (sd / sqrt(4)) = −2√2; df 3.
PAIRED_CASE = {
    "active": [0.10, 0.12, 0.11, 0.13],
    "random": [0.12, 0.15, 0.11, 0.16],
    "diff": [-0.02, -0.03, 0.0, -0.03],
    "mean": -0.02,
    "sd": np.sqrt(2e-4),
    "t": -2 * np.sqrt(2),
    "df": 3,
}


def test_paired_difference_against_a_hand_worked_case():
    case = PAIRED_CASE
    got = paired_difference(case["active"], case["random"])
    assert got["diff"] == pytest.approx(case["diff"])
    assert got["mean"] == pytest.approx(case["mean"])
    assert got["sd"] == pytest.approx(case["sd"])
    assert got["n"] == 4
    assert got["t"] == pytest.approx(case["t"])
    assert got["p_value"] == pytest.approx(2 * stats.t.sf(abs(case["t"]), case["df"]))
    assert got["p_value"] == pytest.approx(0.0663, abs=1e-4)  # 2 P(T_3 > 2√2), rounded


def test_paired_difference_leaves_out_missing_seeds():
    got = paired_difference([0.10, np.nan, 0.12, 0.13], [0.12, 0.2, 0.15, 0.14])
    assert got["n"] == 3 and np.isnan(got["diff"][1])
    d = np.array([-0.02, -0.03, -0.01])
    t = d.mean() / (d.std(ddof=1) / np.sqrt(3))
    assert got["t"] == pytest.approx(t)
    assert got["p_value"] == pytest.approx(2 * stats.t.sf(abs(t), 2))
    one = paired_difference([0.1], [0.2])
    assert one["mean"] == pytest.approx(-0.1) and np.isnan(one["sd"]) and np.isnan(one["p_value"])
    with pytest.raises(ValueError, match="equal"):
        paired_difference([0.1, 0.2], [0.1])


# ------------------------------------------------------------------------------------ cost


def test_cost_claims_per_seed():
    def seed(gmm_ms, ens_ms, fit_s, epoch_s):
        return {
            "inference": {"single_gmm_ms": gmm_ms, "ensemble_ms": ens_ms},
            "gmm_fit_s": fit_s,
            "train_single": {"epoch_s": epoch_s},
        }

    results = {
        "config": {"n_infer_members": 10, "methods": {"n_traditional": 4, "max_components": 20}},
        "per_seed": {"0": seed(2.0, 24.0, 3.0, 1.0), "1": seed(3.0, 21.0, 5.0, 1.2)},
        # Seed 0 meets both criteria (12 ≥ 8; 3.6 / 4 = 0.9 ≥ 0.5), seed 1 neither (7; 0.4).
        "summary": {
            "inference_ensemble_vs_gmm": [12.0, 7.0],
            "inference_gmm_overhead": [1.0, 1.1],
            "train_epoch_ratio": [3.6, 1.6],
        },
    }
    inference, training = cost_claims(results)
    assert (inference["seeds_supporting"], inference["n_seeds"]) == (1, 2)
    assert (training["seeds_supporting"], training["n_seeds"]) == (1, 2)
    assert "= 9.5 ± 3.5 (2.50 ± 0.71 vs 22.5 ± 2.1 ms/structure" in inference["measured"]
    assert "(0.65 ± 0.35 per member)" in training["measured"]
    assert "4.0 ± 1.4 s vs 1.1 ± 0.1 s per single-model epoch" in training["measured"]
    # With converged networks, the training cost to convergence per seed (3.0 ≥ 2; 1.5 < 2).
    results["convergence"] = {"ratio": [3.0, 1.5], "source": "fig2/results.json"}
    *_, converged = cost_claims(results)
    assert (converged["seeds_supporting"], converged["n_seeds"]) == (1, 2)
    assert converged["measured"].startswith("2.25 ± 1.06 single-model trainings")


def _net(seed, piece, member, epochs, reason="min_learning_rate", stage="300K_n100_f16"):
    return {
        "name": f"{stage}: {piece} member {member}",
        "seed": seed,
        "piece": piece,
        "member": member,
        "epochs": epochs,
        "stop_reason": reason,
        "stage": stage,
    }


def test_convergence_epochs_single_is_member_zero_ensemble_its_last_member():
    nets = [
        _net(1, "traditional4-b", 0, 500),
        _net(1, "traditional4-b", 1, 650, "max_epochs"),
        _net(1, "traditional4-b", 2, 420),
        _net(1, "traditional4-b", 3, 600),
        _net(0, "traditional4-a", 3, 782),
        _net(0, "traditional4-a", 0, 644),
        _net(0, "traditional4-a", 1, 564),
        _net(0, "traditional4-a", 2, 636),
        _net(0, "variant0-c", 100, 900),  # a diverse variant: not a traditional member
    ]
    rows = convergence_epochs(nets, 4)
    assert rows == [
        {"seed": 0, "single_epochs": 644, "ensemble_epochs": 782,
         "stop_reasons": ["min_learning_rate"]},
        {"seed": 1, "single_epochs": 500, "ensemble_epochs": 650,
         "stop_reasons": ["max_epochs", "min_learning_rate"]},
    ]  # fmt: skip
    # Only the first J members count for a J-member ensemble.
    assert [r["ensemble_epochs"] for r in convergence_epochs(nets, 3)] == [644, 650]
    with pytest.raises(ValueError, match="fewer than the 5"):
        convergence_epochs(nets, 5)
    with pytest.raises(ValueError, match="no traditional ensemble"):
        convergence_epochs(nets[-1:], 1)


def test_converged_cost_reads_the_networks_of_the_timed_size(tmp_path):
    from experiments.cost.run import PRESETS, converged_cost

    source = {
        "config": {"combos": [{"setting": "300K", "n_train": 100, "num_features": 16}]},
        "networks": [_net(0, "traditional4-a", m, e) for m, e in enumerate([600, 700, 650, 640])]
        + [_net(0, "traditional4-z", m, 5000, stage="300K_n50_f16") for m in range(4)],
        "provenance": {"commit": {"sha": "abc", "dirty": False}},
    }
    path = tmp_path / "results.json"
    path.write_text(json.dumps(source))
    config = dataclasses.replace(PRESETS["cpu"], converged=str(path), n_train=100, num_features=16)
    got = converged_cost(config, single_epoch_s=1.5, ensemble_epoch_s=4.0)
    assert got["rows"] == [
        {"seed": 0, "single_epochs": 600, "ensemble_epochs": 700,
         "stop_reasons": ["min_learning_rate"]}
    ]  # fmt: skip
    assert got["single_s"] == [900.0] and got["ensemble_s"] == [2800.0]
    assert got["ratio"] == [pytest.approx(2800 / 900)]
    assert got["stage"] == "300K_n100_f16" and got["source_commit"]["sha"] == "abc"
    assert [(n["member"], n["epochs"]) for n in got["networks"]] == [
        (0, 600), (1, 700), (2, 650), (3, 640)
    ]  # fmt: skip
    with pytest.raises(ValueError, match="n_train = 50 and f = 16"):
        converged_cost(dataclasses.replace(config, n_train=50), 1.0, 1.0)
    with pytest.raises(FileNotFoundError, match="set converged to null"):
        converged_cost(dataclasses.replace(config, converged=str(tmp_path / "no.json")), 1, 1)


def test_epoch_times_counts_each_epoch_once(tmp_path):
    lines = [
        {"epoch": 0, "member": 0, "time_s": 9.0},
        {"epoch": 0, "member": 1, "time_s": 9.0},
        {"epoch": 1, "member": 0, "time_s": 2.0},
        {"epoch": 1, "member": 1, "time_s": 2.0},
        {"epoch": 2, "member": 0, "time_s": 4.0},
    ]
    path = tmp_path / "metrics.jsonl"
    path.write_text("".join(json.dumps(x) + "\n" for x in lines))
    assert epoch_times(path).tolist() == [9.0, 2.0, 4.0]
    assert split_compile([9.0, 2.0, 4.0]) == (9.0, 3.0)
    assert ratio([4.0, 9.0], [2.0, 3.0]) == [2.0, 3.0]


# ------------------------------------------------------------------------------------ plots


def test_grid_places_points_and_leaves_gaps():
    alpha = np.array([0.0, 15.0, 30.0, 0.0, 15.0])  # (30, 15) missing
    gamma = np.array([0.0, 0.0, 0.0, 15.0, 15.0])
    values = np.arange(5.0)
    a_axis, g_axis, grid = _grid(alpha, gamma, values)
    assert a_axis.tolist() == [0.0, 15.0, 30.0] and g_axis.tolist() == [0.0, 15.0]
    assert grid[0].tolist() == [0.0, 1.0, 2.0]
    assert grid[1, :2].tolist() == [3.0, 4.0] and np.isnan(grid[1, 2])
    scattered = np.random.default_rng(0).uniform(0, 360, (2, 30))
    assert _grid(scattered[0], scattered[1], np.zeros(30)) is None
