"""Single-network studies (A/B of the cpu defaults, learning curve) on a tiny preset: results
against an independent prediction, resuming without retraining, refusing a foreign folder."""

import json
import shutil

import numpy as np
import pytest

from experiments.common.cli import subsample
from experiments.common.single_runs import (
    PIECE_FILES,
    finished_piece,
    train_to_convergence,
    variant_config,
)
from experiments.cpu_defaults.__main__ import main
from experiments.cpu_defaults.run import PRESETS
from nequip_jax import load
from nequip_jax.data import load_3bpa


@pytest.fixture(scope="module")
def study(tmp_path_factory):
    # Through the command line, as a user runs it (experiment_main passes the preset's name).
    workdir = tmp_path_factory.mktemp("ab")
    main(["--preset", "tiny", "--workdir", str(workdir)])
    return workdir, json.loads((workdir / "results.json").read_text())


def test_results_match_an_independent_prediction(study):
    workdir, out = study
    rows = {r["variant"]: r for r in out["rows"]}
    assert set(rows) == {"silu", "paper_era"}
    frames = subsample(load_3bpa("test_300K"), 4)
    for name, row in rows.items():
        model = load(workdir / name / "seed0" / "model")
        pred = model.predict(frames)
        df = np.concatenate(pred["forces"]) - np.concatenate([a.get_forces() for a in frames])
        de = (pred["energy"] - [a.get_potential_energy() for a in frames]) / 27
        got = row["test"]["test_300K"]
        assert got["forces_rmse"]["values"] == pytest.approx([1000 * np.sqrt(np.mean(df**2))])
        assert got["energy_rmse"]["values"] == pytest.approx([1000 * np.sqrt(np.mean(de**2))])
    assert load(workdir / "paper_era" / "seed0" / "model").config.nonlinearity == "ssp"
    assert out["conclusion"]["preferred"] in rows
    saved = json.loads((workdir / "results.json").read_text())
    assert saved["provenance"]["seeds"] == [0] and saved["provenance"]["preset"] == "tiny"
    assert [(n["name"], n["stop_reason"], n["epochs"]) for n in saved["networks"]] == [
        ("silu", "max_epochs", 2),
        ("paper_era", "max_epochs", 2),
    ]


def test_a_finished_network_is_loaded_not_retrained(study):
    workdir, _ = study
    folder = workdir / "silu" / "seed0"
    before = (folder / "metrics.jsonl").read_text()
    config = variant_config("cpu", PRESETS["tiny"].variants["silu"], seed=0)
    potential, record = train_to_convergence(config, folder)
    assert (folder / "metrics.jsonl").read_text() == before
    assert record["stop_reason"] == "max_epochs" and potential.metadata["epoch"] >= 0


def test_a_folder_of_another_configuration_is_refused(study):
    workdir, _ = study
    config = variant_config("cpu", PRESETS["tiny"].variants["silu"], seed=1)
    with pytest.raises(ValueError, match="another configuration"):
        train_to_convergence(config, workdir / "silu" / "seed0")


def test_a_subset_of_variants_reports_those_and_reuses_their_networks(study, tmp_path):
    workdir, full = study
    before = (workdir / "silu" / "seed0" / "metrics.jsonl").read_text()
    out = tmp_path / "subset"
    # Same network folders: copy the finished silu run, then ask for silu alone.
    shutil.copytree(workdir / "silu", out / "silu")
    main(["--preset", "tiny", "--workdir", str(out), "--variants", "silu"])
    subset = json.loads((out / "results.json").read_text())
    assert [r["variant"] for r in subset["rows"]] == ["silu"]
    assert subset["variants"] == {"silu": full["variants"]["silu"]}
    assert (
        subset["rows"][0]["test"] == next(r for r in full["rows"] if r["variant"] == "silu")["test"]
    )
    assert (out / "silu" / "seed0" / "metrics.jsonl").read_text() == before
    assert not (out / "paper_era").exists()
    with pytest.raises(ValueError, match="choose from"):
        main(["--preset", "tiny", "--workdir", str(out), "--variants", "gelu"])


def test_a_study_reports_finished_networks_from_their_piece_files_alone(study, tmp_path):
    workdir, full = study
    out = tmp_path / "pieces"
    for folder in sorted(workdir.glob("*/seed*")):
        target = out / folder.relative_to(workdir)
        target.mkdir(parents=True)
        for pattern in PIECE_FILES:
            for path in folder.glob(pattern):
                shutil.copy2(path, target / path.name)
    assert not list(out.rglob("*.ckpt")) and not list(out.rglob("model"))
    main(["--preset", "tiny", "--workdir", str(out)])
    again = json.loads((out / "results.json").read_text())
    assert again["rows"] == full["rows"] and again["networks"] == full["networks"]
    # Nothing was trained or evaluated again.
    assert not list(out.rglob("*.ckpt")) and not list(out.rglob("model"))
    assert not list(out.rglob("metrics.jsonl"))
    # A piece without a split's errors is not reported from its files: it would need its
    # model, which is not there.
    tiny = PRESETS["tiny"]
    config = variant_config("cpu", tiny.variants["silu"], seed=0)
    folder = out / "silu" / "seed0"
    stored = json.loads((folder / "test_summary.json").read_text())
    (name,) = [k for k in stored if k.startswith("eval_test_300K")]
    del stored[name]
    (folder / "test_summary.json").write_text(json.dumps(stored))
    assert finished_piece(config, folder, tiny.splits, tiny.max_test_frames) is None
    # Nor is a piece without its configuration (its record could be any network's).
    config = variant_config("cpu", tiny.variants["paper_era"], seed=0)
    folder = out / "paper_era" / "seed0"
    assert finished_piece(config, folder, tiny.splits, tiny.max_test_frames) is not None
    (folder / "config.yaml").unlink()
    assert finished_piece(config, folder, tiny.splits, tiny.max_test_frames) is None
