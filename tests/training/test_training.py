"""The training loop: learning, determinism, resume, and one compilation per padded shape."""

import json

import jax
import numpy as np
import pytest

from nequip_jax import load
from nequip_jax.training import RunConfig, train
from nequip_jax.training.config import apply_overrides


def _params_equal(a, b):
    leaves_a, leaves_b = jax.tree.leaves(a), jax.tree.leaves(b)
    assert len(leaves_a) == len(leaves_b)
    for x, y in zip(leaves_a, leaves_b):
        np.testing.assert_array_equal(np.asarray(x), np.asarray(y))


def _overfit(frames, config, workdir):
    potential = train(config, workdir, data=(frames, []), verbose=False)
    first = json.loads((workdir / "metrics.jsonl").read_text().splitlines()[0])
    pred = potential.predict(frames)
    diff = np.concatenate(pred["forces"]) - np.concatenate([a.get_forces() for a in frames])
    return first["train_forces_rmse"], float(np.sqrt(np.mean(diff**2)))


def test_tiny_model_learns_five_structures(frames_300K, tiny_run_config, tmp_path):
    """Fast version: the force RMSE on the training structures falls 3x within 150 steps (the
    per-atom energy term keeps the forces the main target of this small loss)."""
    config = tiny_run_config(
        learning_rate=0.02,
        batch_size=5,
        max_epochs=150,
        forces_weight=100.0,
        energy_loss="per_atom",
    )
    first, final = _overfit(frames_300K[:5], config, tmp_path)
    assert final < first / 3, (first, final)


@pytest.mark.slow
def test_small_model_overfits_five_structures(frames_300K, tmp_path):
    """A small model learns: force RMSE falls 10x within 800 steps (a 3-layer, f = 8 model)."""
    config = RunConfig.from_dict(
        {
            "seed": 3,
            "model": {
                "num_features": 8,
                "lmax": 1,
                "num_layers": 3,
                "num_basis": 8,
                "radial_mlp_depth": 1,
                "radial_mlp_width": 16,
            },
            "optim": {
                "optimizer": "adam",
                "learning_rate": 0.005,
                "batch_size": 5,
                "max_epochs": 800,
                "plateau_patience": 1000,
                "forces_weight": 100.0,
            },
        }
    )
    first, final = _overfit(frames_300K[:5], config, tmp_path)
    assert final < first / 10, (first, final)


def test_same_seed_same_result_and_resume(frames_300K, tiny_run_config, tmp_path):
    train_frames, val_frames = frames_300K[:6], frames_300K[6:8]
    full = train(
        tiny_run_config(max_epochs=4),
        tmp_path / "a",
        data=(train_frames, val_frames),
        verbose=False,
    )
    again = train(
        tiny_run_config(max_epochs=4),
        tmp_path / "b",
        data=(train_frames, val_frames),
        verbose=False,
    )
    _params_equal(full.params, again.params)
    # Interrupted after 2 epochs, then resumed to 4: same parameters as the uninterrupted run.
    train(
        tiny_run_config(max_epochs=2),
        tmp_path / "c",
        data=(train_frames, val_frames),
        verbose=False,
    )
    resumed = train(
        tiny_run_config(max_epochs=4),
        tmp_path / "c",
        data=(train_frames, val_frames),
        resume=True,
        verbose=False,
    )
    _params_equal(full.params, resumed.params)
    last_full = (tmp_path / "a" / "metrics.jsonl").read_text().splitlines()
    last_resumed = (tmp_path / "c" / "metrics.jsonl").read_text().splitlines()
    assert len(last_full) == len(last_resumed) == 4
    # The saved model loads back to the same parameters.
    _params_equal(load(tmp_path / "a" / "model").params, full.params)


def test_an_epoch_of_uneven_batches_lowers_one_step_program(
    frames_300K, tiny_run_config, lowerings, tmp_path
):
    """7 structures in batches of 3 (two full batches and a partial one) over two epochs: the
    trainer's production step is lowered once. The model width is this test's own, so no
    other test in the process has compiled its program already."""
    config = RunConfig.from_dict(
        apply_overrides(
            tiny_run_config(batch_size=3, max_epochs=2).to_dict(), ["model.radial_mlp_width=7"]
        )
    )
    with lowerings() as counted:
        train(config, tmp_path, data=(frames_300K[:7], frames_300K[7:9]), verbose=False)
    steps = [name for name in counted.names if "member_step" in str(name)]
    assert len(steps) == 1, counted.names
    assert len(_records(tmp_path)) == 2


def _records(workdir):
    return [json.loads(x) for x in (workdir / "metrics.jsonl").read_text().splitlines()]


def _reference_best(losses, threshold=1e-4):
    """The epoch kept by the loop: the last improvement by the relative threshold."""
    best, kept = float("inf"), -1
    for epoch, loss in enumerate(losses):
        if loss < best * (1 - threshold):
            best, kept = loss, epoch
    return kept


def test_summary_records_max_epochs_and_the_kept_epoch(frames_300K, tiny_run_config, tmp_path):
    config = tiny_run_config(max_epochs=3)
    potential = train(config, tmp_path, data=(frames_300K[:4], frames_300K[4:6]), verbose=False)
    records = _records(tmp_path)
    (net,) = json.loads((tmp_path / "summary.json").read_text())["networks"]
    best = _reference_best([r["val_loss"] for r in records])
    assert net["stop_reason"] == "max_epochs" and net["epochs"] == len(records) == 3
    assert net["best_epoch"] == best == potential.metadata["epoch"]
    assert net["best_val_forces_rmse"] == records[best]["val_forces_rmse"]
    assert potential.metadata["training"] == net


def test_summary_records_the_learning_rate_floor(frames_300K, tiny_run_config, tmp_path):
    # patience 0 and a floor just below the first reduction: the first epoch without an
    # improvement halves the learning rate below the floor and ends training.
    config = tiny_run_config(
        max_epochs=60, plateau_patience=0, plateau_factor=0.5, min_learning_rate=0.006
    )
    train(config, tmp_path, data=(frames_300K[:4], frames_300K[4:6]), verbose=False)
    losses = [r["val_loss"] for r in _records(tmp_path)]
    first_bad = next(
        e for e in range(1, len(losses)) if not losses[e] < min(losses[:e]) * (1 - 1e-4)
    )
    (net,) = json.loads((tmp_path / "summary.json").read_text())["networks"]
    assert net["stop_reason"] == "min_learning_rate"
    assert net["epochs"] == len(losses) == first_bad + 1
    assert net["final_learning_rate"] == pytest.approx(0.005)


def test_null_avg_num_neighbors_means_no_normalisation(frames_300K, tiny_run_config):
    from nequip_jax.training import prepare

    config = tiny_run_config()
    default = prepare(config, frames_300K[:4], [])
    raw = config.to_dict()
    raw["model"]["avg_num_neighbors"] = None
    unnormalised = prepare(RunConfig.from_dict(raw), frames_300K[:4], [])
    assert unnormalised.model_config.avg_num_neighbors == 1.0
    assert default.model_config.avg_num_neighbors == pytest.approx(
        default.statistics["avg_num_neighbors"]
    )
    assert default.model_config.avg_num_neighbors > 5.0
