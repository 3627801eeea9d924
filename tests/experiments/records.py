"""Checks every experiment's results file must pass (shared by the end-to-end tests)."""

from __future__ import annotations

import hashlib
import json

from experiments.common.networks import STOP_REASONS


def check_records(results, root, seeds, *folders):
    """Provenance names the data files by name and hash (recomputed here) and no folder of this
    machine appears in the results; every network record has a known stop reason."""
    prov = results["provenance"]
    assert prov["preset"] == "tiny" and prov["seeds"] == [int(s) for s in seeds]
    assert prov["data"]["source"] == "dft" and prov["data"]["files"]
    for f in prov["data"]["files"]:
        assert f["sha256"] == hashlib.sha256((root / f["name"]).read_bytes()).hexdigest()
    text = json.dumps(results)
    for folder in (root, *folders):
        assert str(folder) not in text
    assert results["networks"]
    assert {n["stop_reason"] for n in results["networks"]} <= set(STOP_REASONS)
