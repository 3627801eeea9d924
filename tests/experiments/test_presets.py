"""The experiments' presets file: read into each experiment's dataclass by its annotations, the
stored results' configurations are the presets', and bad entries are refused by name."""

import dataclasses
import importlib
import json
from pathlib import Path

import pytest

from experiments.common.config import MethodsConfig, config_dict
from experiments.common.presets import Combo, from_mapping, load_presets
from experiments.common.single_runs import Study
from nequip_jax.training import ModelConfig
from nequip_jax.training.ensemble import DIVERSE_VARIANTS

ROOT = Path(__file__).resolve().parents[2]
EXPERIMENTS = [
    "fig2_uncertainty",
    "fig4_landscapes",
    "fig5_active_learning",
    "cost",
    "demo",
    "cpu_defaults",
    "learning_curve",
]


@pytest.mark.parametrize("name", EXPERIMENTS)
def test_every_experiment_has_a_cpu_and_a_tiny_preset(name):
    presets = importlib.import_module(f"experiments.{name}.run").PRESETS
    assert {"cpu", "tiny"} <= set(presets)


@pytest.mark.parametrize(
    "name", ["fig2_uncertainty", "fig3_tpr_ppv", "fig4_landscapes", "fig5_active_learning", "cost"]
)
def test_stored_results_were_computed_with_the_presets(name):
    """The configuration each committed results file records is its preset's JSON form (the
    identity that lets stored pieces be reused)."""
    results = json.loads((ROOT / "experiments" / name / "results" / "results.json").read_text())
    presets = importlib.import_module(f"experiments.{name}.run").PRESETS
    assert results["config"] == config_dict(presets[results["provenance"]["preset"]])


def test_values_are_converted_by_the_annotations():
    @dataclasses.dataclass(frozen=True)
    class Example:
        methods: MethodsConfig
        combos: tuple[Combo, ...]
        limit: int | None = None

    raw = {
        "methods": {"model": {"num_features": 8}, "diverse_variants": "shipped"},
        "combos": [{"setting": "mixed", "n_train": 50}],
        "limit": None,
    }
    got = from_mapping(Example, raw, where="example")
    assert got.methods.model == ModelConfig(num_features=8)
    assert got.methods.diverse_variants == DIVERSE_VARIANTS
    assert got.combos == (Combo("mixed", 50, 32),)
    assert got.limit is None


def test_lists_of_strings_splice_nested_lists():
    study = from_mapping(
        Study, {"name": "x", "base": "cpu", "variants": {"a": [["k=1", "l=2"], "m=3"]}}, where="x"
    )
    assert study.variants == {"a": ("k=1", "l=2", "m=3")}


@pytest.mark.parametrize(
    "raw, named",
    [
        ({"methods": {"n_traditinal": 3}, "combos": []}, "methods.*n_traditinal"),
        ({"methods": {}, "combos": [], "seed": 1}, "seed"),
        ({"methods": {}, "combos": "300K"}, "combos: expected a list"),
    ],
)
def test_bad_entries_are_refused_by_name(raw, named):
    from experiments.fig2_uncertainty.run import UQConfig

    with pytest.raises(ValueError, match=named):
        from_mapping(UQConfig, raw, where="presets.yaml: fig2_uncertainty.cpu")


def test_an_unknown_experiment_is_a_key_error():
    with pytest.raises(KeyError, match="fig9"):
        load_presets("fig9", dict)
