"""The demo end to end on its ``tiny`` preset, through its command line.

Its results are checked against an independent recomputation from the saved models and the raw
test frames with plain numpy/scipy: the energy RMSE and the Spearman correlation of every
method on every test set, and the ensemble's mean forces against its members'.
"""

from __future__ import annotations

import json
import warnings

import numpy as np
import pytest
from scipy import stats

from experiments.demo.run import PRESETS
from nequip_jax.data import StandInWarning, load_3bpa
from nequip_jax.model import Potential
from nequip_jax.model.ensemble import Ensemble
from tests.experiments.records import check_records


def _evenly(frames, n):
    index = np.linspace(0, len(frames) - 1, n).round().astype(int)
    return [frames[i] for i in index]


@pytest.fixture(scope="module")
def demo_run(scan_root, tmp_path_factory):
    from experiments.demo.__main__ import main

    workdir = tmp_path_factory.mktemp("demo")
    main(["--preset", "tiny", "--data-root", str(scan_root), "--workdir", str(workdir)])
    return workdir


def test_demo_results_match_the_saved_models(demo_run, scan_root):
    config = PRESETS["tiny"]
    results = json.loads((demo_run / "results.json").read_text())
    check_records(results, scan_root, ["0"], demo_run)
    assert (demo_run / "report.md").is_file()
    single = Potential.load(demo_run / "single" / "model")
    ensemble = Ensemble.load(demo_run / "ensemble" / "ensemble")
    assert single.head is not None and single.head.method == "gmm"
    assert ensemble.n_members == config.ensemble_members
    assert results["gmm"]["n_components"] == len(single.head.state.weights)
    for split in config.test_splits:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", StandInWarning)
            frames = _evenly(load_3bpa(split, scan_root), config.max_test_frames)
        e_true = np.array([a.get_potential_energy() for a in frames])
        n_atoms = np.array([len(a) for a in frames])
        f_true = np.concatenate([a.get_forces() for a in frames])
        rows = results["tests"][split]
        for label, model in (
            ("single + GMM", single),
            (f"ensemble ({config.ensemble_members})", ensemble),
        ):
            pred = model.predict(frames)
            # Zhu et al. 2023, Eq. (2): the RMS over the three components of each atom.
            eps = np.sqrt(np.mean((np.concatenate(pred["forces"]) - f_true) ** 2, axis=1))
            u = np.concatenate(pred["uncertainty"])
            row = rows[label]
            rmse = np.sqrt(np.mean(((pred["energy"] - e_true) / n_atoms) ** 2))
            np.testing.assert_allclose(row["energy_rmse_per_atom"], rmse, rtol=1e-5)
            np.testing.assert_allclose(row["eps_bar"], np.sqrt(np.mean(eps**2)), rtol=1e-5)
            rho = stats.spearmanr(u, eps).statistic
            np.testing.assert_allclose(row["spearman"], rho, rtol=1e-4, atol=1e-6)
        members = ensemble.predict(frames)["member_forces"]
        mean = np.concatenate([m.mean(axis=0) for m in members])
        np.testing.assert_allclose(
            np.concatenate(ensemble.predict(frames)["forces"]), mean, rtol=1e-5, atol=1e-7
        )
    cost = results["cost"]
    assert cost["ensemble_members"] == config.ensemble_members
    assert all(cost[k] > 0 for k in ("train_single_s", "train_ensemble_s", "infer_single_ms"))


def test_demo_refuses_several_seeds(scan_root, tmp_path):
    from experiments.demo.__main__ import main

    with pytest.raises(ValueError, match="one seed"):
        main(
            ["--preset", "tiny", "--data-root", str(scan_root), "--workdir", str(tmp_path)]
            + ["--seeds", "0", "1"]
        )


def test_demo_refuses_an_override_that_contradicts_its_fields(scan_root, tmp_path):
    import dataclasses

    from experiments.demo.run import run

    demo = dataclasses.replace(PRESETS["tiny"], overrides=("data.n_train=50",))
    with pytest.raises(ValueError, match=r"data.n_train=50.*data.n_train=12"):
        run(demo, tmp_path, root=scan_root)
    assert not (tmp_path / "single").exists()
