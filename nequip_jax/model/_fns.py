"""Alias module: ``make_model_fns`` lives in :mod:`nequip_jax.model._predict`."""

from nequip_jax.model._predict import make_model_fns

__all__ = ["make_model_fns"]
