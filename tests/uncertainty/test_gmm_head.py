"""The GMM head: NLL inside predict equals gmm.nll on separately extracted features."""

import jax
import numpy as np
import pytest

import gmm
from nequip_jax import load
from nequip_jax.training import train
from nequip_jax.uncertainty.gmm_head import (
    fit_feature_gmm,
    fit_gmm_uncertainty,
    training_features,
)


def test_gmm_nll_in_predict_and_round_trip(frames_300K, frames_1200K, tiny_run_config, tmp_path):
    frames = frames_300K[:5]
    potential = train(tiny_run_config(max_epochs=2), tmp_path, data=(frames, []), verbose=False)
    fitted, table = fit_gmm_uncertainty(potential, frames, key=jax.random.key(0), max_components=4)
    assert [int(r.n_components) for r in table] == [1, 2, 3, 4]
    bics = [float(r.criterion) for r in table]
    assert fitted.head.state.weights.shape[0] == int(table[int(np.argmin(bics))].n_components)

    test = frames_1200K[:3]
    pred = fitted.predict(test)
    features = training_features(potential, test)
    with jax.enable_x64(True):
        expected = np.asarray(gmm.nll(fitted.head.state, features.astype(np.float64)))
    np.testing.assert_allclose(np.concatenate(pred["uncertainty"]), expected, rtol=1e-4, atol=1e-3)
    # Features of the training set are exactly what the mixture was fitted on.
    assert training_features(potential, frames).shape == (5 * 27, potential.feature_dim)

    fitted.save(tmp_path / "with_gmm")
    loaded = load(tmp_path / "with_gmm")
    assert loaded.head.method == "gmm"
    for a, b in zip(fitted.head.state, loaded.head.state):
        np.testing.assert_array_equal(np.asarray(a), np.asarray(b))
    again = loaded.predict(test)
    for a, b in zip(pred["uncertainty"], again["uncertainty"]):
        np.testing.assert_array_equal(a, b)


def test_fit_gmm_cli_without_run_config_names_the_remedy(tmp_path, tiny_model):
    """A model folder copied away from its run folder: the error names the missing config and
    the ``--config`` option instead of a generic file-not-found."""
    from nequip_jax.cli import main
    from nequip_jax.model import NequIPConfig, Potential, init_params

    config = NequIPConfig(num_species=4, avg_num_neighbors=15.0, **tiny_model)
    potential = Potential(config, init_params(config, key=jax.random.key(0)), (1, 6, 7, 8))
    potential.save(tmp_path / "model")
    with pytest.raises(SystemExit, match=r"config\.yaml.*--config"):
        main(["fit-gmm", str(tmp_path / "model")])


def test_padded_feature_rows_change_no_fit():
    """The on-the-fly loop's padded fit (rows padded to a bucket, masked) is the plain fit."""
    rng = np.random.default_rng(1)
    x = np.concatenate([rng.normal(c, 0.4, size=(70, 3)) for c in (0.0, 3.0, -3.0)])
    plain, table = fit_feature_gmm(x, key=jax.random.key(2), max_components=4)
    padded, padded_table = fit_feature_gmm(x, key=jax.random.key(2), max_components=4, bucket=256)
    assert [int(r.n_components) for r in table] == [1, 2, 3, 4]
    np.testing.assert_allclose(
        [float(r.criterion) for r in padded_table], [float(r.criterion) for r in table], rtol=1e-8
    )
    for name in ("weights", "means", "covariances"):
        np.testing.assert_allclose(
            getattr(padded, name), getattr(plain, name), rtol=1e-7, atol=1e-9
        )
    with pytest.raises(ValueError, match="at least|n_atoms >= 2"):
        fit_feature_gmm(x[:1], key=jax.random.key(0))
