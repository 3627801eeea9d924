"""End to end (slow): ``python -m experiments.otf --preset tiny``, the calibration experiment on
its models and the ``nequip-jax otf`` command.

Oracles: the random baseline draws exactly as many labelling steps as the GMM run made calls;
the summaries agree with the event logs; the calibration's force errors equal an independent
prediction of the final models on the cached test sets (coverages, bounds, miscalibration areas
and curves are in their mathematical ranges: a monotone curve, an area in [0, 0.5]); a finished
run is not repeated by the command line.
"""

import json

import ase.io
import numpy as np
import pytest

from nequip_jax.model import Potential
from nequip_jax.model.ensemble import Ensemble
from nequip_jax.otf import load_otf_config, read_events

pytest.importorskip("tblite")
pytest.importorskip("matplotlib")
pytestmark = pytest.mark.slow


@pytest.fixture(scope="module")
def tiny_otf(tmp_path_factory):
    from experiments.otf.run import run

    workdir = tmp_path_factory.mktemp("otf-tiny")
    return workdir, run(load_otf_config("tiny"), workdir, preset="tiny", verbose=False)


def test_tiny_comparison(tiny_otf):
    workdir, results = tiny_otf
    runs = results["runs"]
    assert set(runs) == {"gmm", "ensemble", "llpr", "random"}  # one run per registered method
    assert runs["random"]["n_oracle_calls"] <= runs["gmm"]["n_oracle_calls"]
    for name, summary in runs.items():
        assert summary["done"]
        events = read_events(workdir / name / "events.jsonl")
        assert summary["n_oracle_calls"] == sum(e["event"] == "oracle" for e in events)
        assert summary["n_resets"] == sum(e["event"] == "reset" for e in events)
        assert set(summary["errors"]["final"]) == {"test_300K", "test_600K"}
        assert (workdir / f"trace_{name}.png").stat().st_size > 0
    # Same number of labels, unless a random step fell on a restarted frame.
    resets_at_random = {
        e["step"] for e in read_events(workdir / "random" / "events.jsonl", "reset")
    }
    drawn = json.loads((workdir / "random" / "state.json").read_text())["random_steps"]
    assert len(drawn) == runs["gmm"]["n_oracle_calls"]
    assert runs["random"]["n_oracle_calls"] == len([s for s in drawn if s not in resets_at_random])
    assert "## On-the-fly" in (workdir / "results.md").read_text()
    assert (workdir / "errors.png").stat().st_size > 0
    # The initial networks: one model for the GMM run (reused by the random run), the
    # ensemble's members; provenance names the cache files without their folder.
    nets = {}
    for n in results["networks"]:
        nets.setdefault(n["stage"], []).append(n)
    assert len(nets["gmm"]) == 1 and nets["random"][0]["piece"] == nets["gmm"][0]["piece"]
    assert nets["llpr"][0]["piece"] == nets["gmm"][0]["piece"]  # the same initial model
    assert [n["member"] for n in nets["ensemble"]] == list(range(results["config"]["n_members"]))
    assert results["provenance"]["preset"] == "tiny"
    assert str(workdir) not in json.dumps(results["provenance"])


def test_calibration_on_the_tiny_models(tiny_otf, tmp_path):
    from experiments.calibration.run import CalibrationConfig, run

    workdir, _ = tiny_otf
    report = run(CalibrationConfig(str(workdir), n_calibration=20, alpha=0.1), tmp_path)
    methods = {(r["method"], r["calibrator"]) for r in report["rows"]}
    assert {("gmm", "isotonic"), ("ensemble", "direct"), ("llpr", "isotonic")} <= methods
    # Oracle: every row evaluates its method's final model on the run's cached test sets. The
    # mean per-atom force error (Eq. (2), RMS over the three components) and the atom count
    # of each row equal an independent prediction of that model on those frames.
    models = {}
    for run_name in ("gmm", "ensemble"):
        state = json.loads((workdir / run_name / "state.json").read_text())
        folder = workdir / run_name / state["model_dir"]
        kind = Ensemble if (folder / "ensemble.json").is_file() else Potential
        models[run_name] = kind.load(folder)
    for split in ("test_300K", "test_600K"):
        (path,) = (workdir / "cache").glob(f"test_{split}_*.xyz")
        frames = ase.io.read(path, index=":")
        true = np.concatenate([a.get_forces() for a in frames])
        eps = {}
        for run_name, model in models.items():
            pred = np.concatenate(model.predict(frames)["forces"])
            eps[run_name] = np.sqrt(np.mean((pred - true) ** 2, axis=1))
        for row in report["rows"]:
            r = row["splits"][split]
            own = eps["ensemble" if row["method"] == "ensemble" else "gmm"]
            assert r["n_atoms"] == own.size
            assert r["mean_eps"] == pytest.approx(float(np.mean(own)), rel=1e-5)
            assert 0.0 <= r["coverage"] <= 1.0 and r["mean_upper"] > 0
            assert 0.0 <= r["miscalibration_area"] <= 0.5
            assert np.all(np.diff(r["curve"]["observed"]) >= 0)
    assert report["states"]["llpr"]["alpha2"] > 0 and report["states"]["gmm"]["n_components"] >= 1
    assert report["provenance"]["preset"] == "tiny" and report["provenance"]["data"]["files"]
    assert str(workdir) not in json.dumps(report["provenance"])
    assert (tmp_path / "calibration.md").read_text().count("|") > 10
    assert (tmp_path / "coverage.png").stat().st_size > 0
    seed = report["provenance"]["seeds"][0]
    with pytest.raises(ValueError, match=f"whose seed is {seed}"):
        run(CalibrationConfig(str(workdir)), tmp_path / "other", seeds=[seed + 1])


def test_cli_otf_runs_and_resumes(tmp_path, capsys):
    from nequip_jax.cli import main

    args = ["otf", "tiny", "--workdir", str(tmp_path / "run"), "--cache", str(tmp_path / "c")]
    args += ["--set", "n_steps=6", "--set", "trigger=random", "--set", "random_calls=1"]
    assert main(args) == 0
    out = capsys.readouterr().out
    assert "| random |" in out and (tmp_path / "run" / "trace.png").is_file()
    # A finished run is not repeated: the second call only reports.
    before = (tmp_path / "run" / "events.jsonl").read_text()
    assert main(args) == 0
    assert (tmp_path / "run" / "events.jsonl").read_text() == before


def test_comparison_runs_one_seed_per_workdir(tmp_path):
    from experiments.otf.run import run

    with pytest.raises(ValueError, match="one on-the-fly comparison per seed"):
        run(load_otf_config("tiny"), tmp_path, seeds=[0, 1], verbose=False)
    assert not any(tmp_path.iterdir())
