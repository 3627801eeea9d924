"""The NequIP model (Batzner et al. 2022) with its final scalar features (Zhu et al. 2023).

Public names: the configuration (:class:`NequIPConfig`), the Flax module (:class:`NequIP`), the
pure-function pair (:func:`make_model_fns`, :func:`init_params`, :func:`make_predict_fn`,
:func:`energy_forces_features`), the compiled entry point (:func:`model_jit`,
:func:`compiler_options`), the radial settings that may differ between the members of one
vmapped group (:class:`RadialSettings`, :data:`RADIAL_FIELDS`, :func:`group_radial`), the key of
the compiled programs (:func:`program_config`) and the trained-model bundle (:class:`Potential`,
:class:`Head`, :func:`load`). The building blocks live in the private modules (``_radial``,
``_convolution``, ``_blocks``, ``_irreps``).
"""

from nequip_jax.model._config import NequIPConfig
from nequip_jax.model._nequip import NequIP
from nequip_jax.model._per_member import (
    RADIAL_FIELDS,
    RadialSettings,
    group_radial,
    program_config,
)
from nequip_jax.model._predict import (
    compiler_options,
    energy_forces_features,
    init_params,
    make_model_fns,
    make_predict_fn,
    model_jit,
)
from nequip_jax.model.potential import Head, Potential, load

__all__ = [
    "Head",
    "NequIP",
    "NequIPConfig",
    "Potential",
    "RADIAL_FIELDS",
    "RadialSettings",
    "compiler_options",
    "energy_forces_features",
    "group_radial",
    "init_params",
    "load",
    "make_model_fns",
    "make_predict_fn",
    "model_jit",
    "program_config",
]
