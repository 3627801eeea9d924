"""Figs. 2–5 end to end on their ``tiny`` presets (about two minutes on an idle 2-core CPU, in
one test worker: Figs. 3 and 4 reuse the Fig. 2 models; the cost table's end-to-end test is in
``test_cost_end_to_end.py``).

Each test runs the experiment's command-line entry point and checks its written results against
an independent recomputation: from the saved models, the cached predictions or the raw data,
with plain numpy/scipy instead of the experiment's own analysis code.
"""

from __future__ import annotations

import json
import warnings

import numpy as np
import pytest
from scipy import stats

from nequip_jax.data import StandInWarning, load_3bpa, paper_split
from nequip_jax.model import Potential
from nequip_jax.training.loop import member_keys
from tests.experiments.records import check_records


@pytest.fixture(scope="session")
def models_dir(tmp_path_factory):
    """One model cache for all end-to-end tests (Fig. 3 and 4 reuse the Fig. 2 models)."""
    return tmp_path_factory.mktemp("models")


def _args(preset_root, workdir, models_dir, seeds=("0",)):
    return [
        "--preset",
        "tiny",
        "--data",
        "dft",
        "--data-root",
        str(preset_root),
        "--workdir",
        str(workdir),
        "--models",
        str(models_dir),
        "--seeds",
        *seeds,
    ]


def _rms(x):
    return float(np.sqrt(np.mean(np.square(x))))


def _run_fig2(scan_root, tmp_path_factory, models_dir):
    from experiments.fig2_uncertainty.__main__ import main

    workdir = tmp_path_factory.mktemp("fig2")
    main(_args(scan_root, workdir, models_dir, ("0", "1")))
    return workdir


@pytest.fixture(scope="session")
def fig2_workdir(scan_root, tmp_path_factory, models_dir):
    return _run_fig2(scan_root, tmp_path_factory, models_dir)


def test_fig2_end_to_end(fig2_workdir, scan_root, models_dir):
    from experiments.common.cli import subsample
    from experiments.fig2_uncertainty.run import PRESETS

    results = json.loads((fig2_workdir / "results.json").read_text())
    combo = "300K_n12_f4"
    train = results["training"][combo]["0"]
    assert train["gmm_components"] <= PRESETS["tiny"].methods.max_components
    # Independent recomputation of the single model's ε̄ on the 1200 K set from the saved model.
    folder = models_dir / "dft" / combo / train["folders"]["gmm"] / "model"
    potential = Potential.load(folder)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", StandInWarning)
        split = paper_split("300K", 12, key=member_keys(0, 0)[0], root=scan_root)
    frames = subsample(split.test["test_1200K"], PRESETS["tiny"].max_test_frames)
    forces = potential.predict(frames)["forces"]
    eps = np.concatenate(
        [np.sqrt(np.mean((f - a.get_forces()) ** 2, axis=1)) for f, a in zip(forces, frames)]
    )
    got = results["per_seed"][combo]["0"]["test_1200K"]["gmm"]["eps_bar"]
    assert got == pytest.approx(_rms(eps), rel=1e-4)
    agg = results["aggregate"][combo]["test_1200K"]["gmm"]["eps_bar"]
    both = [results["per_seed"][combo][s]["test_1200K"]["gmm"]["eps_bar"] for s in ("0", "1")]
    assert agg["mean"] == pytest.approx(np.mean(both))
    assert agg["sd"] == pytest.approx(np.std(both, ddof=1))
    section = (fig2_workdir / "section.md").read_text()
    assert all(t in section for t in ("test_300K", "test_600K", "test_1200K"))
    # Two traditional members and one diverse variant per seed, trained for max_epochs.
    check_records(results, scan_root, ("0", "1"), fig2_workdir, models_dir)
    nets = results["networks"]
    assert [(n["seed"], n["member"]) for n in nets] == [(s, m) for s in (0, 1) for m in (0, 1, 100)]
    assert {n["epochs"] for n in nets} == {PRESETS["tiny"].methods.optim["max_epochs"]}
    assert (fig2_workdir / "seeds" / "seed0" / f"fig2_{combo}_test_1200K.png").stat().st_size > 1000
    assert f"](seeds/seed0/fig2_{combo}_test_1200K.png)" in section
    # The per-test claims in temperature order; the others on the hottest set (the stored
    # pieces' JSON keys are sorted, the claims must not depend on that order).
    heads = [c["claim"].split(":")[0] for c in results["claims"][combo]]
    assert heads[:3] == ["test_300K", "test_600K", "test_1200K"]
    assert heads[3] == heads[-1] == "test_1200K"
    # LLPR is one of the methods (through the registry): its median σ on the 1200 K set equals
    # sqrt(fᵀ (ΦᵀΦ + ς² I)⁻¹ f) of the single model's features, by a direct linear solve.
    llpr_model = Potential.load(models_dir / "dft" / combo / train["folders"]["llpr"] / "model")
    phi = np.concatenate(potential.predict(split.train)["features"])
    gram = phi.T @ phi + llpr_model.head.state.reg * np.eye(phi.shape[1])
    f = np.concatenate(potential.predict(frames)["features"])
    sigma = np.sqrt(np.einsum("id,id->i", f, np.linalg.solve(gram, f.T).T))
    got = results["per_seed"][combo]["0"]["test_1200K"]["llpr"]["u_median"]
    assert got == pytest.approx(np.median(sigma), rel=1e-4)
    assert any(c["claim"].startswith("LLPR: uncertainty shifts") for c in results["claims"][combo])


def test_fig2_seeds_run_as_separate_jobs(fig2_workdir, scan_root, models_dir, tmp_path_factory):
    """Seeds run one by one into one workdir aggregate to the results of one run of both; a
    rerun reuses the stored pieces; a piece of another configuration is refused."""
    from experiments.common.pieces import PieceMismatchError
    from experiments.fig2_uncertainty.__main__ import main

    workdir = tmp_path_factory.mktemp("fig2_jobs")
    main(_args(scan_root, workdir, models_dir, ("1",)))
    main(_args(scan_root, workdir, models_dir, ("0",)))
    joint = json.loads((fig2_workdir / "results.json").read_text())
    jobs = json.loads((workdir / "results.json").read_text())
    for key in ("per_seed", "aggregate", "claims"):
        assert jobs[key] == joint[key], key

    def uncached(nets):  # the second workdir loaded the networks the first one trained
        return [{k: v for k, v in n.items() if k != "cached"} for n in nets]

    assert uncached(jobs["networks"]) == uncached(joint["networks"])
    assert [p["seed"] for p in jobs["provenance"]["pieces"]] == [0, 1]
    assert jobs["provenance"]["seeds"] == [0, 1]
    for prov in (joint["provenance"], jobs["provenance"]):  # each piece's time counted once
        pieces_s = sum(p["wall_s"] for p in prov["pieces"])
        assert pieces_s <= prov["wall_s"] < pieces_s + 10.0
    piece = workdir / "seeds" / "seed1" / "piece.json"
    before = piece.stat().st_mtime_ns
    main(_args(scan_root, workdir, models_dir, ("0", "1")))
    assert piece.stat().st_mtime_ns == before
    stored = json.loads(piece.read_text())
    stored["identity"]["config"]["max_test_frames"] += 1
    piece.write_text(json.dumps(stored))
    with pytest.raises(PieceMismatchError, match="seed1.*config"):
        main(_args(scan_root, workdir, models_dir, ("0",)))


def test_fig3_end_to_end(fig2_workdir, scan_root, models_dir, tmp_path_factory):
    from experiments.fig3_tpr_ppv.__main__ import main

    workdir = tmp_path_factory.mktemp("fig3")
    main(
        _args(scan_root, workdir, models_dir, ("0", "1"))
        + ["--predictions", str(fig2_workdir / "predictions")]
    )
    results = json.loads((workdir / "results.json").read_text())
    # Brute-force TPR area of the traditional ensemble on the 1200 K set, seed 1.
    with np.load(fig2_workdir / "predictions" / "300K_n12_f4" / "seed1" / "test_1200K.npz") as p:
        u, eps = p["traditional.u"], p["traditional.eps"]
    u_cuts = np.percentile(u, np.linspace(1, 99, 50))
    e_cuts = np.linspace(0, np.percentile(eps, 99), 50)
    hits = 0
    for uc in u_cuts:
        for ec in e_cuts:
            positive = eps > ec
            if positive.any() and np.sum((u > uc) & positive) / positive.sum() >= 0.9:
                hits += 1
    got = results["per_seed"]["300K_n12_f4"]["1"]["test_1200K"]["traditional"]["tpr_area"]
    assert got == pytest.approx(hits / 2500)
    assert set(results["per_seed"]["300K_n12_f4"]["1"]["test_1200K"]) >= {"gmm", "llpr"}
    assert len(results["claims"]["300K_n12_f4"]) == 4
    assert all(c["claim"].startswith("test_1200K:") for c in results["claims"]["300K_n12_f4"])


def test_fig4_end_to_end(scan_root, models_dir, tmp_path_factory):
    from experiments.fig4_landscapes.__main__ import main

    workdir = tmp_path_factory.mktemp("fig4")
    main(_args(scan_root, workdir, models_dir, ("0", "1")))
    results = json.loads((workdir / "results.json").read_text())
    with np.load(workdir / "predictions" / "seed1" / "dih_beta150.npz") as p:
        nll_sum = np.bincount(p["gmm.structure"], weights=p["gmm.u"])
        e_ref = p["gmm.energy_true"]
    reference = load_3bpa("dih_beta150", scan_root)
    assert np.allclose(e_ref, [a.get_potential_energy() for a in reference])
    pair = results["per_seed"]["1"]["dih_beta150"]["U:gmm vs E:reference"]
    assert pair["spearman"] == pytest.approx(stats.spearmanr(nll_sum, e_ref).statistic)
    assert pair["pearson"] == pytest.approx(stats.pearsonr(nll_sum, e_ref).statistic)
    assert (workdir / "seeds" / "seed0" / "fig4_dih_beta120.png").is_file()


def test_fig5_end_to_end(scan_root, models_dir, tmp_path_factory):
    from experiments.fig5_active_learning.__main__ import main
    from experiments.fig5_active_learning.run import PRESETS

    config = PRESETS["tiny"]
    workdir = tmp_path_factory.mktemp("fig5")
    main(_args(scan_root, workdir, models_dir, ("0",)))
    results = json.loads((workdir / "results.json").read_text())
    chosen = results["per_seed"]["0"]["selection"]["indices"]
    # Eq. (12) by brute force on the cached pool predictions.
    with np.load(workdir / "predictions" / "seed0" / "pool.npz") as p:
        for method in ("gmm", "traditional", "diverse"):
            u, s = p[f"{method}.u"], p[f"{method}.structure"]
            score = np.array([u[s == k].max() for k in range(s.max() + 1)])
            assert sorted(chosen[method]) == sorted(np.argsort(-score)[: config.n_add].tolist())
    assert len(set(chosen["random"])) == config.n_add
    # Table I: improvement = random - active, recomputed from the cached scan predictions.
    pred = workdir / "predictions" / "seed0"
    with (
        np.load(pred / "random_dih_beta180.npz") as r,
        np.load(pred / "active_gmm_dih_beta180.npz") as a,
    ):
        expected = _rms(r["gmm.eps"]) - _rms(a["gmm.eps"])
        expected_max = r["gmm.eps"].max() - a["gmm.eps"].max()
    row = results["table_I"]["dih_beta180"]["gmm"]
    assert row["eps_bar"]["abs"][0] == pytest.approx(expected)
    assert row["eps_max"]["abs"][0] == pytest.approx(expected_max)
    assert row["eps_bar"]["verdict"] == "n/a"  # one seed: no spread to compare with
    paired = row["eps_bar"]["paired"]
    assert paired["diff"][0] == pytest.approx(-expected) and np.isnan(paired["p_value"])
    # Every network of the round: initial (2 traditional + 1 variant), the retrainings on
    # each active set (GMM: member 0; traditional: 2; diverse: 1 + 1 variant) and on the
    # random set (2 + 1).
    check_records(results, scan_root, ("0",), workdir, models_dir)
    stages = [n["stage"] for n in results["networks"]]
    assert {s: stages.count(s) for s in stages} == {
        "initial": 3,
        "active gmm": 1,
        "active traditional": 2,
        "active diverse": 2,
        "random": 3,
    }
    # The seed's training rounds were its stages; their folder goes once the piece is stored.
    stored = json.loads((workdir / "seeds" / "seed0" / "piece.json").read_text())
    assert [(s["stage"], s["reused"]) for s in stored["stages"]] == [
        (name, False)
        for name in ("initial", "retrain_gmm", "retrain_traditional", "retrain_diverse")
        + ("retrain_random",)
    ]
    assert not (workdir / "seeds" / "seed0" / "stages").exists()
    section = (workdir / "section.md").read_text()
    assert "](seeds/seed0/fig5_dih_beta180.png)" in section
    assert (workdir / "seeds" / "seed0" / "fig5_dih_beta180.png").stat().st_size > 1000
    # A second job adds seed 1; Table I pairs both seeds, seed 0's piece is reused as stored.
    piece = workdir / "seeds" / "seed0" / "piece.json"
    before = piece.stat().st_mtime_ns
    main(_args(scan_root, workdir, models_dir, ("1",)))
    both = json.loads((workdir / "results.json").read_text())
    assert piece.stat().st_mtime_ns == before
    assert both["seeds"] == [0, 1] and both["per_seed"]["0"] == results["per_seed"]["0"]
    diffs = [
        both["per_seed"][s]["errors"]["random"]["dih_beta180"]["gmm"]["eps_bar"]
        - both["per_seed"][s]["errors"]["active"]["dih_beta180"]["gmm"]["eps_bar"]
        for s in ("0", "1")
    ]
    assert both["table_I"]["dih_beta180"]["gmm"]["eps_bar"]["abs"] == pytest.approx(diffs)
    assert [p["seed"] for p in both["provenance"]["pieces"]] == [0, 1]
    # A third job trains the single model + GMM alone for seed 2: Table I pairs three seeds for
    # the GMM and two for the ensembles.
    main([*_args(scan_root, workdir, models_dir, ("2",)), "--methods", "gmm"])
    three = json.loads((workdir / "results.json").read_text())
    third = three["per_seed"]["2"]
    assert third["methods"] == ["gmm"] and set(third["selection"]["indices"]) == {"gmm", "random"}
    assert set(third["errors"]["active"]["dih_beta180"]) == {"gmm"}
    assert three["seeds_per_method"] == {"gmm": [0, 1, 2], "traditional": [0, 1], "diverse": [0, 1]}
    row = three["table_I"]["dih_beta180"]
    assert row["gmm"]["eps_bar"]["seeds"] == [0, 1, 2] and row["gmm"]["eps_bar"]["paired"]["n"] == 3
    assert (
        row["traditional"]["eps_bar"]["abs"]
        == both["table_I"]["dih_beta180"]["traditional"]["eps_bar"]["abs"]
    )
    stages = [n["stage"] for n in three["networks"] if n["seed"] == 2]
    assert stages == ["initial", "active gmm", "random"]  # member 0 alone, three times
    assert "| dih_beta180 | ε̄ | " in (workdir / "section.md").read_text()
