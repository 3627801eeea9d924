"""experiments/common/networks.py: the ``networks`` list of a results file, from the training
loop's summaries and from a TrainedMethods info."""

from __future__ import annotations

import json

import pytest

from experiments.common.networks import (
    MissingNetworksError,
    networks_from_info,
    networks_from_runs,
    read_summaries,
)


def test_networks_from_runs_reads_the_training_summary(tmp_path, frames_300K, tiny_run_config):
    from nequip_jax.training.loop import train_group

    # A floor above the initial learning rate stops both members after their first epoch.
    config = tiny_run_config(max_epochs=3, min_learning_rate=1.0)
    result = train_group(
        [config] * 2, [0, 1], tmp_path, data=(frames_300K[:4], frames_300K[4:6]), verbose=False
    )
    got = networks_from_runs("group", [tmp_path], [1, 0], seed=3)
    assert [g["name"] for g in got] == ["group member 1", "group member 0"]
    assert [g["stop_reason"] for g in got] == ["min_learning_rate"] * 2
    assert [g["epochs"] for g in got] == [1, 1]
    assert [g["best_epoch"] for g in got] == [int(result.best_epoch[1]), int(result.best_epoch[0])]
    records = [json.loads(x) for x in (tmp_path / "metrics.jsonl").read_text().splitlines()]
    by_member = {r["member"]: r["val_forces_rmse"] for r in records}
    assert [g["best_val_forces_rmse"] for g in got] == [by_member[1], by_member[0]]
    with pytest.raises(ValueError, match=r"members \[7\]"):
        networks_from_runs("group", [tmp_path], [7], seed=3)
    with pytest.raises(FileNotFoundError, match="train again"):
        read_summaries([tmp_path / "absent"])


def _net(member, reason="min_learning_rate"):
    return {
        "member": member,
        "epochs": 10,
        "stop_reason": reason,
        "best_epoch": 7,
        "best_val_forces_rmse": 0.05,
        "wall_s": 3.0,
    }


INFO = {
    "traditional": {"folder": "traditional2-aa", "members": [0, 1], "networks": [_net(1), _net(0)]},
    "variants": [
        {
            "folder": "variant0-1-bb",
            "members": [100, 101],
            "variants": [{"model": {"r_max": 3.5}}, {"optim": {"learning_rate": 0.005}}],
            "networks": [_net(100, "max_epochs"), _net(101)],
            "cached": True,
        }
    ],
    "gmm": {"folder": "gmm-cc", "seconds": 1.0, "n_components": 3},
}


def test_networks_from_info_names_every_network():
    got = networks_from_info(INFO, seed=4)
    assert [g["name"] for g in got] == [
        "traditional member 0",
        "traditional member 1",
        'diverse variant {"model": {"r_max": 3.5}}',
        'diverse variant {"optim": {"learning_rate": 0.005}}',
    ]
    assert [g["member"] for g in got] == [0, 1, 100, 101]
    assert [g["stop_reason"] for g in got][2] == "max_epochs"
    assert {g["seed"] for g in got} == {4}
    assert [g["piece"] for g in got] == ["traditional2-aa"] * 2 + ["variant0-1-bb"] * 2
    assert [g["cached"] for g in got] == [False, False, True, True]
    staged = networks_from_info(INFO, seed=4, stage="active gmm")
    assert staged[0]["name"] == "active gmm: traditional member 0"
    assert staged[0]["stage"] == "active gmm"


def test_networks_from_info_refuses_old_caches(tmp_path):
    old = {"traditional": {"folder": "traditional4-dd", "members": [0, 1, 2, 3]}}
    with pytest.raises(MissingNetworksError, match="delete the folder") as err:
        networks_from_info(old, seed=0, models_dir=tmp_path)
    assert str(tmp_path / "traditional4-dd") in str(err.value)


@pytest.mark.parametrize(
    "piece",
    [
        {"folder": "t-1", "members": [0, 1], "networks": [_net(0)]},  # a member missing
        {"folder": "t-1", "members": [0], "networks": [_net(0, "tired")]},  # unknown reason
        {"folder": "t-1", "members": [0], "networks": [{"member": 0, "epochs": 1}]},
    ],
)
def test_networks_from_info_refuses_records_that_do_not_fit(piece):
    with pytest.raises(MissingNetworksError, match="t-1"):
        networks_from_info({"traditional": piece}, seed=0)
