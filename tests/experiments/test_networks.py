"""experiments/common/networks.py: stop reasons and best epochs from training logs, and the
``networks`` list of a results file built from a TrainedMethods info."""

from __future__ import annotations

import json
import math

import pytest

from experiments.common.networks import (
    MissingNetworksError,
    member_networks,
    networks_from_info,
    read_metrics,
)
from nequip_jax.train.config import OptimConfig


def _record(epoch, member, loss, lr=0.01, rmse=None, time_s=1.0):
    return {
        "epoch": epoch,
        "member": member,
        "learning_rate": lr,
        "time_s": time_s,
        "val_loss": loss,
        "val_forces_rmse": loss / 10 if rmse is None else rmse,
    }


OPTIM = OptimConfig(
    max_epochs=5,
    min_learning_rate=1e-3,
    early_stopping_patience=3,
    plateau_threshold=0.1,
)

# Member 0 runs all 5 epochs; member 1 stops by the learning-rate floor at epoch 2; member 2 by
# early stopping (best at epoch 0, no 10 % improvement for 3 epochs); member 3 diverges at 1;
# member 4 ends at epoch 2 with nothing stopping it (the group's time budget).
RECORDS = (
    [_record(e, 0, loss) for e, loss in enumerate([5.0, 4.0, 3.9, 3.0, 2.0])]
    + [_record(0, 1, 5.0), _record(1, 1, 4.0), _record(2, 1, 4.0, lr=5e-4)]
    + [_record(e, 2, loss) for e, loss in enumerate([1.0, 0.95, 0.92, 0.91])]
    + [_record(0, 3, 2.0), _record(1, 3, float("nan"))]
    + [_record(e, 4, loss) for e, loss in enumerate([3.0, 2.0, 1.0])]
)

# The hand-worked answers: (epochs, stop reason, best epoch, best val force RMSE, wall).
EXPECTED = {
    0: (5, "max_epochs", 4, 0.2, 5.0),  # 3.9 is not 10 % below 4.0
    1: (3, "min_learning_rate", 1, 0.4, 3.0),
    2: (4, "early_stopping", 0, 0.1, 4.0),
    3: (2, "non_finite", 0, 0.2, 2.0),
    4: (3, "time_budget", 2, 0.1, 3.0),
}


def test_member_networks_against_hand_worked_logs():
    got = member_networks(RECORDS, [0, 1, 2, 3, 4], OPTIM)
    assert [g["member"] for g in got] == [0, 1, 2, 3, 4]
    for g in got:
        epochs, reason, best, rmse, wall = EXPECTED[g["member"]]
        assert (g["epochs"], g["stop_reason"], g["best_epoch"]) == (epochs, reason, best)
        assert g["best_val_forces_rmse"] == pytest.approx(rmse)
        assert g["wall_s"] == pytest.approx(wall)


def test_member_networks_refuses_a_log_without_the_member():
    with pytest.raises(ValueError, match="member 7"):
        member_networks(RECORDS, [7], OPTIM)


def test_read_metrics_reads_jsonl_and_names_a_missing_log(tmp_path):
    path = tmp_path / "metrics.jsonl"
    path.write_text("".join(json.dumps(r) + "\n" for r in RECORDS[:3]) + "\n")
    assert read_metrics([path]) == RECORDS[:3]
    with pytest.raises(FileNotFoundError, match="absent"):
        read_metrics([tmp_path / "absent" / "metrics.jsonl"])


def test_member_networks_on_a_real_training_log(tmp_path, frames_300K, tiny_run_config):
    from nequip_jax.train.loop import train_group

    # A floor above the initial learning rate stops both members after their first epoch.
    config = tiny_run_config(max_epochs=3, min_learning_rate=1.0)
    result = train_group(
        [config] * 2, [0, 1], tmp_path, data=(frames_300K[:4], frames_300K[4:6]), verbose=False
    )
    got = member_networks(read_metrics([tmp_path / "metrics.jsonl"]), [0, 1], config.optim)
    assert [g["stop_reason"] for g in got] == ["min_learning_rate"] * 2
    assert [g["epochs"] for g in got] == [1, 1]
    assert [g["best_epoch"] for g in got] == [int(e) for e in result.best_epoch]
    assert all(math.isfinite(g["best_val_forces_rmse"]) for g in got)


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
