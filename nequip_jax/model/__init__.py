"""The NequIP model (Batzner et al. 2022) with its final scalar features (Zhu et al. 2023)."""

from nequip_jax.model._blocks import InteractionBlock, SpeciesLinear, auto_chunk_size, gate
from nequip_jax.model._config import NequIPConfig, hidden_irreps
from nequip_jax.model._convolution import (
    channels_last_blocks,
    convolution,
    edge_messages,
    group_columns,
)
from nequip_jax.model._irreps import (
    ConvolutionPlan,
    LayerIrreps,
    convolution_plan,
    layer_irreps,
)
from nequip_jax.model._nequip import NequIP, model_layers
from nequip_jax.model._per_member import RADIAL_FIELDS, RadialSettings, group_radial
from nequip_jax.model._predict import (
    compiler_options,
    edge_vectors,
    energy_forces_features,
    init_params,
    make_predict_fn,
    model_jit,
)
from nequip_jax.model._radial import (
    bessel_basis,
    bessel_frequencies,
    normalized_activation,
    polynomial_cutoff,
    radial_embedding,
    radial_mlp,
)

__all__ = [
    "ConvolutionPlan",
    "InteractionBlock",
    "LayerIrreps",
    "NequIP",
    "NequIPConfig",
    "RADIAL_FIELDS",
    "RadialSettings",
    "SpeciesLinear",
    "convolution",
    "auto_chunk_size",
    "bessel_basis",
    "bessel_frequencies",
    "channels_last_blocks",
    "compiler_options",
    "convolution_plan",
    "edge_messages",
    "edge_vectors",
    "energy_forces_features",
    "gate",
    "group_columns",
    "group_radial",
    "hidden_irreps",
    "init_params",
    "layer_irreps",
    "make_predict_fn",
    "model_jit",
    "model_layers",
    "normalized_activation",
    "polynomial_cutoff",
    "radial_embedding",
    "radial_mlp",
]

# The pure-function pair and the trained-model bundle (they import the modules above).
from nequip_jax.model._fns import make_model_fns  # noqa: E402
from nequip_jax.model.potential import Potential, load  # noqa: E402

__all__ += ["Potential", "load", "make_model_fns"]
