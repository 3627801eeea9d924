"""Helpers for the model tests: tiny configurations and cached jitted functions.

Compiling the model dominates the run time of these tests, so the jitted predict function of
each configuration is built once per session (jit's own cache then keeps one executable per
batch shape and x64 mode).
"""

from __future__ import annotations

import functools

import jax

from nequip_jax.model import NequIPConfig, init_params, make_predict_fn
from tests.tiny_models import R_MAX, SPECIES, TINY_MODEL

__all__ = ["R_MAX", "SPECIES", "tiny_config", "predict_fn", "params_for"]


def tiny_config(**fields) -> NequIPConfig:
    """The suite's tiny model (:data:`tests.tiny_models.TINY_MODEL`), float64 unless overridden;
    3BPA-like statistics.

    ``edge_chunk_size=64`` makes the convolution run several chunks on a 3BPA batch, so the
    chunked path is what the tests exercise.
    """
    values = dict(
        num_species=len(SPECIES),
        **TINY_MODEL,
        avg_num_neighbors=12.0,
        energy_shift=(-13.6, -1029.5, -1485.0, -2042.0),
        energy_scale=(0.9, 1.1, 1.0, 1.2),
        edge_chunk_size=64,
        dtype="float64",
    )
    values.update(fields)
    return NequIPConfig(**values)


@functools.cache
def predict_fn(config: NequIPConfig):
    """``make_predict_fn(config)``, one per config per session."""
    return make_predict_fn(config)


def params_for(config: NequIPConfig, graph, seed: int = 0):
    """Parameters of ``config``; the scale/shift tables keep their configured values, the rest
    is random (normal) so that every path contributes."""
    return init_params(config, key=jax.random.key(seed))
