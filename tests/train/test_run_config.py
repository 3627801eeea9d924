"""The run configuration refuses what it does not know, naming the section and the key, before
any data is read; every key the presets use is accepted."""

import dataclasses

import pytest

from nequip_jax.model import NequIPConfig
from nequip_jax.train import RunConfig, load_config


@pytest.mark.parametrize(
    "raw, named",
    [
        ({"model": {"num_featurs": 8}}, "num_featurs"),
        ({"model": {"num_species": 4}}, "num_species"),  # comes from `species` or the data
        ({"optim": {"lr": 0.01}}, "lr"),
        ({"data": {"n_trian": 5}}, "n_trian"),
        ({"sed": 1}, "sed"),
    ],
)
def test_unknown_keys_are_refused_with_their_name(raw, named):
    with pytest.raises(ValueError, match=named):
        RunConfig.from_dict(raw)


def test_every_model_field_and_the_species_are_accepted():
    model = {
        f.name: f.default
        for f in dataclasses.fields(NequIPConfig)
        if f.name != "num_species" and f.default is not dataclasses.MISSING
    }
    config = RunConfig.from_dict({"model": {**model, "species": [1, 6, 7, 8]}})
    assert set(config.model) == set(model) | {"species"}


@pytest.mark.parametrize("preset", ["cpu", "paper"])
def test_presets_round_trip(preset):
    config = load_config(preset)
    assert RunConfig.from_dict(config.to_dict()) == config
