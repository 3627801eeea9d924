"""What may differ inside one vmapped group: grouping and the trainer's check agree.

Oracle: the rule written out field by field — the seed, every optimiser setting except the
learning rate and the loss weights, and every model hyperparameter except the cutoff settings
(r_max, cutoff_p, avg_num_neighbors) must be equal.
"""

import pytest

from nequip_jax.training import RunConfig
from nequip_jax.training.ensemble import group_members
from nequip_jax.training.loop import train_group
from tests.tiny_models import TINY_MODEL

BASE = {
    "seed": 3,
    "model": dict(TINY_MODEL),
    "optim": {"learning_rate": 0.01, "batch_size": 2, "max_epochs": 3},
}

#: (override of the base, may it share the base's group?)
CASES = [
    ({"optim": {"learning_rate": 0.003}}, True),
    ({"optim": {"energy_weight": 5.0, "forces_weight": 10.0}}, True),
    ({"model": {"r_max": 3.5, "cutoff_p": 8, "avg_num_neighbors": 9.0}}, True),
    ({"optim": {"batch_size": 3}}, False),
    ({"optim": {"max_epochs": 4}}, False),
    ({"model": {"num_features": TINY_MODEL["num_features"] * 2}}, False),
    ({"model": {"num_layers": TINY_MODEL["num_layers"] + 1}}, False),
    ({"seed": 4}, False),
]


def _config(override: dict) -> RunConfig:
    raw = {
        "seed": override.get("seed", BASE["seed"]),
        "model": {**BASE["model"], **override.get("model", {})},
        "optim": {**BASE["optim"], **override.get("optim", {})},
    }
    return RunConfig.from_dict(raw)


@pytest.mark.parametrize("override, shared", CASES)
def test_members_share_a_group_exactly_when_the_rule_allows(override, shared):
    configs = [_config({}), _config(override)]
    assert group_members(configs) == ([[0, 1]] if shared else [[0], [1]])


@pytest.mark.parametrize("override", [o for o, shared in CASES if not shared])
def test_the_trainer_refuses_a_group_the_rule_splits_and_names_the_fields(override, tmp_path):
    configs = [_config({}), _config(override)]
    changed = {f"model.{k}" for k in override.get("model", {})} | set(override.get("optim", {}))
    changed |= {"seed"} & set(override)
    with pytest.raises(ValueError, match="differing") as error:
        train_group(configs, [0, 1], tmp_path, data=([], []), verbose=False)
    for name in changed:
        assert name in str(error.value)
