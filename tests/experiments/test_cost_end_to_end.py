"""The cost table end to end on its ``tiny`` preset (seconds: it trains a fixed few epochs).

Its written results are checked against the training logs and against each other: the epochs
and members logged, the ratios recomputed from the timings, the network records.
"""

from __future__ import annotations

import json

import pytest

from tests.experiments.records import check_records


def test_cost_end_to_end(scan_root, tmp_path_factory):
    from experiments.cost.__main__ import main
    from experiments.cost.run import PRESETS

    config = PRESETS["tiny"]
    workdir = tmp_path_factory.mktemp("cost")
    main(["--preset", "tiny", "--data-root", str(scan_root), "--workdir", str(workdir)])
    results = json.loads((workdir / "results.json").read_text())
    seed = results["per_seed"]["0"]
    lines = (workdir / "seed0" / "ensemble" / "metrics.jsonl").read_text().splitlines()
    members = {json.loads(x)["member"] for x in lines}
    epochs = {json.loads(x)["epoch"] for x in lines}
    assert members == set(range(config.methods.n_traditional))
    assert epochs == set(range(config.epochs + 1))
    inf = seed["inference"]
    assert results["summary"]["inference_ensemble_vs_gmm"][0] == pytest.approx(
        inf["ensemble_ms"] / inf["single_gmm_ms"]
    )
    assert min(inf.values()) > 0
    check_records(results, scan_root, ("0",), workdir)
    nets = results["networks"]
    assert len(nets) == 1 + config.methods.n_traditional
    assert {(n["epochs"], n["stop_reason"]) for n in nets} == {(config.epochs + 1, "max_epochs")}
    assert [c["n_seeds"] for c in results["claims"]] == [1, 1]
