"""NequIPConfig: JSON round trip, hashability, validation messages, dtype guard, init."""

import dataclasses
import json

import jax
import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from nequip_testing import params_for, tiny_config

from nequip_jax.data import DatasetStatistics
from nequip_jax.model import NequIP, NequIPConfig
from nequip_jax.model._nequip import model_layers
from nequip_jax.model._predict import _dummy_inputs


@st.composite
def configs(draw):
    num_species = draw(st.integers(1, 5))
    per_species = st.lists(
        st.floats(-2000, 2000, allow_nan=False), min_size=num_species, max_size=num_species
    )
    return NequIPConfig(
        num_species=num_species,
        num_features=draw(st.integers(2, 64)),
        lmax=draw(st.integers(0, 3)),
        parity=draw(st.booleans()),
        num_layers=draw(st.integers(1, 6)),
        r_max=draw(st.floats(1.0, 8.0)),
        num_basis=draw(st.integers(1, 16)),
        trainable_basis=draw(st.booleans()),
        radial_mlp_depth=draw(st.integers(0, 3)),
        feature_dim=draw(st.one_of(st.none(), st.integers(1, 32))),
        residual=draw(st.booleans()),
        avg_num_neighbors=draw(st.floats(0.5, 40.0)),
        energy_shift=tuple(draw(per_species)),
        energy_scale=draw(st.one_of(st.floats(0.1, 5.0), per_species.map(tuple))),
        dtype=draw(st.sampled_from(["float32", "float64"])),
    )


@settings(max_examples=40, deadline=None)
@given(config=configs())
def test_json_round_trip_gives_an_equal_hashable_config(config):
    text = json.dumps(config.to_dict())
    again = NequIPConfig.from_dict(json.loads(text))
    assert again == config
    assert hash(again) == hash(config)
    assert len(config.shifts) == len(config.scales) == config.num_species


@pytest.mark.parametrize(
    "fields, fragment",
    [
        ({"num_features": 0}, "num_features=0"),
        ({"lmax": -1}, "lmax=-1"),
        ({"avg_num_neighbors": 0.0}, "compute_statistics"),
        ({"energy_shift": (1.0, 2.0)}, "energy_shift has 2 entries"),
        ({"energy_scale": (1.0,)}, "energy_scale has 1 entries"),
        ({"dtype": "float16"}, "dtype='float16'"),
        ({"nonlinearity": "relu"}, "nonlinearity='relu'"),
        ({"r_max": -1.0}, "r_max=-1.0"),
    ],
)
def test_invalid_configs_name_the_field(fields, fragment):
    values = dict(num_species=3, **fields)
    with pytest.raises(ValueError, match=fragment.replace("(", r"\(").replace(")", r"\)")):
        NequIPConfig(**values)


def test_unknown_field_is_reported_with_the_valid_ones():
    with pytest.raises(ValueError, match="unknown NequIPConfig field"):
        NequIPConfig.from_dict({"num_species": 2, "n_features": 8})


def test_from_statistics_uses_the_training_statistics():
    stats = DatasetStatistics(
        avg_num_neighbors=11.5,
        energy_shift=np.array([-1.0, -2.0]),
        force_rms=0.75,
        energy_residual_rms=0.01,
    )
    config = NequIPConfig.from_statistics(stats, 2, num_features=8)
    assert config.avg_num_neighbors == 11.5
    assert config.shifts == (-1.0, -2.0) and config.scales == (0.75, 0.75)
    assert config.resolved_feature_dim == 4  # num_features // 2 by default


def test_float64_without_x64_is_refused_with_a_remedy():
    with pytest.raises(ValueError, match="jax_enable_x64"):
        params_for(tiny_config(dtype="float64"), None)


@pytest.mark.parametrize(
    "fields", [{}, {"lmax": 2, "parity": False, "trainable_basis": True, "num_layers": 3}]
)
def test_init_params_match_flax_init_structure_and_config_values(fields):
    # Oracles: flax's own init (traced abstractly) for the tree, shapes and dtypes; the config
    # and the closed form n π / r_max for the deterministic tables.
    config = tiny_config(dtype="float32", **fields)
    ours = params_for(config, None)
    reference = jax.eval_shape(
        lambda: NequIP(config).init(jax.random.key(0), *_dummy_inputs(np.float32))
    )
    assert jax.tree.structure(ours) == jax.tree.structure(reference)
    for a, b in zip(jax.tree.leaves(ours), jax.tree.leaves(reference), strict=True):
        assert a.shape == b.shape and a.dtype == b.dtype
    np.testing.assert_allclose(ours["params"]["energy_scale"], config.scales, rtol=1e-6)
    np.testing.assert_allclose(ours["params"]["energy_shift"], config.shifts, rtol=1e-6)
    if config.trainable_basis:
        expected = np.arange(1, config.num_basis + 1) * np.pi / config.r_max
        np.testing.assert_allclose(ours["params"]["bessel_frequencies"], expected, rtol=1e-6)
    random = np.concatenate(
        [
            np.ravel(leaf)
            for path, leaf in jax.tree_util.tree_leaves_with_path(ours)
            if path[-1].key not in ("energy_scale", "energy_shift", "bessel_frequencies")
        ]
    )
    assert abs(random.mean()) < 0.1 and abs(random.std() - 1.0) < 0.1  # N(0, 1) like flax's


def test_fixed_scale_shift_is_the_same_function_without_those_parameters(x64, batch):
    # Oracle: the trainable model at its initial scale/shift (the config's values).
    from nequip_testing import predict_fn

    trainable = tiny_config()
    fixed = dataclasses.replace(trainable, trainable_scale_shift=False)
    params = params_for(trainable, batch)
    reduced = {
        "params": {
            k: v for k, v in params["params"].items() if k not in ("energy_scale", "energy_shift")
        }
    }
    assert jax.tree.structure(params_for(fixed, batch)) == jax.tree.structure(reduced)
    a, b = predict_fn(trainable)(params, batch), predict_fn(fixed)(reduced, batch)
    np.testing.assert_allclose(b["energy"], a["energy"], rtol=1e-12)
    np.testing.assert_allclose(b["forces"], a["forces"], rtol=1e-12, atol=1e-14)


def test_last_layer_keeps_only_even_scalars():
    layers = model_layers(tiny_config(num_layers=3))
    assert layers[-1].outputs == "4x0e"
    assert all("1o" in layer.outputs for layer in layers[:-1])
    (only,) = model_layers(tiny_config(num_layers=1))  # the first layer is also the last
    assert only.outputs == "4x0e"
