"""The run configuration refuses what it does not know, naming the section and the key, before
any data is read; every key the presets use is accepted; the typed model section writes back
what was set and resolves the rest from the model's defaults and the training statistics."""

import dataclasses

import numpy as np
import pytest
import yaml

from nequip_jax.data import GraphDataset, compute_statistics
from nequip_jax.model import NequIPConfig
from nequip_jax.training import ModelConfig, RunConfig, load_config, prepare
from nequip_jax.training.config import PRESETS_DIR


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
    assert set(config.model.given()) == set(model) | {"species"}


def test_model_section_has_every_model_field_but_the_species_count():
    """The typed section mirrors NequIPConfig (so a new model field cannot be forgotten)."""
    section = [f.name for f in dataclasses.fields(ModelConfig)]
    model = [f.name for f in dataclasses.fields(NequIPConfig)]
    assert section == ["species"] + [n for n in model if n != "num_species"]


@pytest.mark.parametrize("preset", ["cpu", "paper"])
def test_model_section_writes_back_what_the_file_sets(preset):
    """``to_dict`` gives the preset file's model section, key for key (unset fields are not
    written, so ``avg_num_neighbors: null`` stays distinct from an absent key)."""
    raw = yaml.safe_load((PRESETS_DIR / f"{preset}.yaml").read_text())
    assert load_config(preset).to_dict()["model"] == raw["model"]
    assert ("avg_num_neighbors" in raw["model"]) == (preset == "paper")


def test_model_section_resolves_unset_fields_from_defaults_and_statistics():
    """Unset: NequIPConfig's default or the training statistics; ``avg_num_neighbors=None``:
    no normalisation (1.0); a value that is set wins over both."""
    stats = {"avg_num_neighbors": 17.5, "energy_shift": (-1.0, -2.0), "energy_scale": 0.3}
    resolved = ModelConfig(num_layers=2).resolve(num_species=2, **stats)
    assert resolved == NequIPConfig(
        num_species=2, num_layers=2, avg_num_neighbors=17.5, energy_shift=(-1.0, -2.0),
        energy_scale=0.3,
    )  # fmt: skip
    assert (
        ModelConfig(avg_num_neighbors=None).resolve(num_species=2, **stats).avg_num_neighbors == 1.0
    )
    assert (
        ModelConfig(avg_num_neighbors=4.0).resolve(num_species=2, **stats).avg_num_neighbors == 4.0
    )
    assert ModelConfig().value("r_max") == NequIPConfig.r_max
    assert ModelConfig(r_max=5).value("r_max") == 5
    with pytest.raises(ValueError, match="avg_num_neighbors.*training data"):
        ModelConfig().value("avg_num_neighbors")


def test_prepare_resolves_the_section_with_the_training_statistics(frames_300K):
    """The model a run trains: unset statistics fields from the training set
    (``compute_statistics``), the species from the data when not given."""
    train, val = frames_300K[:6], frames_300K[6:8]
    config = RunConfig.from_dict({"model": {"num_features": 4, "r_max": 3.5}})
    prep = prepare(config, train, val)
    stats = compute_statistics(GraphDataset(train, 3.5, (1, 6, 7, 8)))
    assert prep.species == (1, 6, 7, 8)
    assert prep.model_config.avg_num_neighbors == pytest.approx(stats.avg_num_neighbors)
    assert prep.model_config.energy_scale == pytest.approx(stats.force_rms)
    np.testing.assert_allclose(prep.model_config.energy_shift, stats.energy_shift)
    paper_like = RunConfig.from_dict({"model": {"num_features": 4, "avg_num_neighbors": None}})
    assert prepare(paper_like, train, val).model_config.avg_num_neighbors == 1.0


@pytest.mark.parametrize("preset", ["cpu", "paper"])
def test_presets_round_trip(preset):
    config = load_config(preset)
    assert RunConfig.from_dict(config.to_dict()) == config
