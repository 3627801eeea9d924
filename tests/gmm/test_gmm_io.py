"""Saving and loading parameters: bit-exact round trip, atomic replacement, clear errors."""

import os

import jax
import numpy as np
import pytest

import gmm


def _params(dtype, seed=0):
    rng = np.random.default_rng(seed)
    a = rng.normal(size=(3, 4, 4))
    return gmm.GMMParams(
        rng.dirichlet(np.ones(3)).astype(dtype),
        rng.normal(size=(3, 4)).astype(dtype),
        np.triu(a + 4 * np.eye(4)).astype(dtype),
    )


@pytest.mark.parametrize("dtype", [np.float64, np.float32])
def test_round_trip_is_bit_exact(x64, tmp_path, dtype):
    params = _params(dtype)
    path = gmm.save(params, tmp_path / "model.gmm")
    assert path == tmp_path / "model.gmm" and os.listdir(tmp_path) == ["model.gmm"]
    loaded = gmm.load(path)
    for a, b in zip(params, loaded, strict=True):
        assert b.dtype == dtype
        np.testing.assert_array_equal(a, b)
    x = np.random.default_rng(1).normal(size=(5, 4)).astype(dtype)
    np.testing.assert_array_equal(gmm.score_samples(loaded, x), gmm.score_samples(params, x))


def test_fitted_params_round_trip(x64, tmp_path):
    x = np.random.default_rng(2).normal(size=(60, 3))  # a shape compiled elsewhere too
    res = gmm.fit(x, 1, key=jax.random.key(0), init="random")
    loaded = gmm.load(gmm.save(res.params, tmp_path / "fit.npz"))
    np.testing.assert_array_equal(loaded.precisions_cholesky, res.params.precisions_cholesky)


def test_overwrite_is_atomic(tmp_path, monkeypatch):
    """A failing write leaves the previous file intact and no temporary file behind."""
    path = tmp_path / "model.gmm"
    gmm.save(_params(np.float64, 0), path)
    before = path.read_bytes()

    def broken_savez(*args, **kwargs):
        raise OSError("disk full")

    monkeypatch.setattr(np, "savez", broken_savez)
    with pytest.raises(OSError, match="disk full"):
        gmm.save(_params(np.float64, 1), path)
    monkeypatch.undo()
    assert path.read_bytes() == before and os.listdir(tmp_path) == ["model.gmm"]
    gmm.save(_params(np.float64, 1), path)  # a successful overwrite replaces the content
    np.testing.assert_array_equal(gmm.load(path).means, _params(np.float64, 1).means)


def test_load_rejects_foreign_or_broken_files(tmp_path):
    np.savez(tmp_path / "other.npz", weights=np.ones(1))
    with pytest.raises(ValueError, match="not a gmm parameter file"):
        gmm.load(tmp_path / "other.npz")
    p = _params(np.float64)
    np.savez(tmp_path / "future.npz", format_version=99, **p._asdict())
    with pytest.raises(ValueError, match="format version 99"):
        gmm.load(tmp_path / "future.npz")
    np.savez(
        tmp_path / "shape.npz",
        format_version=1,
        weights=np.ones(2),
        means=p.means,
        precisions_cholesky=p.precisions_cholesky,
    )
    with pytest.raises(ValueError, match="inconsistent shapes"):
        gmm.load(tmp_path / "shape.npz")
    with pytest.raises(ValueError, match="does not exist"):
        gmm.save(p, tmp_path / "missing" / "model.gmm")
