"""The NequIP network (Batzner et al., Nat. Commun. 13, 2453, 2022) as a flax module.

Functional core: the module takes plain arrays (edge vectors, species, senders, receivers,
masks) and returns per-atom energies and the final projected scalar features — the per-atom
features on which Zhu et al. (2023) fit their Gaussian mixture. Energies, forces and features of
a padded batch are computed by :func:`nequip_jax.model.energy_forces_features`.
"""

from __future__ import annotations

import e3nn_jax as e3nn
import flax.linen as nn
import jax
import jax.numpy as jnp

from nequip_jax.model._blocks import GATE_ACTIVATIONS, LINEAR_NORMALISATION, InteractionBlock
from nequip_jax.model._config import NequIPConfig
from nequip_jax.model._irreps import LayerIrreps, layer_irreps
from nequip_jax.model._per_member import RadialSettings
from nequip_jax.model._radial import bessel_frequencies, radial_embedding

__all__ = ["NequIP", "model_layers", "check_dtype"]


def model_layers(config: NequIPConfig) -> tuple[LayerIrreps, ...]:
    """Irreps of every interaction block of ``config``.

    The first block reads the species embedding ``f x 0e``; the last one keeps only its ``0e``
    outputs, the only ones the readout sees (the others would be dead computation; the model is
    the same function as one that computes them).
    """
    layers = []
    inputs = f"{config.num_features}x0e"
    for index in range(config.num_layers):
        layer = layer_irreps(
            inputs,
            config.hidden_irreps,
            config.lmax,
            scalars_only=index == config.num_layers - 1,
            odd_gate_activation_is_even=GATE_ACTIVATIONS[config.nonlinearity][3] == "abs",
        )
        layers.append(layer)
        inputs = layer.outputs
    return tuple(layers)


def check_dtype(config: NequIPConfig) -> jnp.dtype:
    """The model dtype; raises when float64 is requested but ``jax_enable_x64`` is off."""
    dtype = jnp.dtype(config.dtype)
    if jax.dtypes.canonicalize_dtype(dtype) != dtype:
        raise ValueError(
            f"NequIPConfig.dtype={config.dtype!r} but jax_enable_x64 is off, so JAX would "
            "silently compute in float32; call jax.config.update('jax_enable_x64', True) (or use "
            "`with jax.enable_x64(True):`) before building the model, or use dtype='float32'."
        )
    return dtype


class NequIP(nn.Module):
    """NequIP: species embedding → interaction blocks → readout (Batzner et al. 2022).

    Readout (Zhu et al. 2023, Sec. II): a linear map of the last block's ``f x 0e`` to
    ``feature_dim`` scalars — the *final projected scalar features*, returned as a first-class
    output — then a linear map to one scalar ``e_i`` per atom, and
    ``E_i = scale[species_i] · e_i + shift[species_i]`` (scale and shift are trainable,
    initialised from the config, or fixed at the config's values with
    ``trainable_scale_shift=False``, as in nequip ≤ 0.5).

    Compiled by any ``jax.jit``: no per-edge or per-node reduction of the forward+forces pass
    runs over an array with an axis of extent one, the pattern XLA's default CPU library
    (YNNPACK) fusions handle 30–50× slower than XLA's own loops; a plain ``jax.jit`` is within
    1.3× of :func:`nequip_jax.model.model_jit` (see :mod:`nequip_jax.model._convolution`).

    Attributes:
        config: the hyperparameters.
    """

    config: NequIPConfig

    @nn.compact
    def __call__(
        self,
        edge_vectors: jnp.ndarray,
        species: jnp.ndarray,
        senders: jnp.ndarray,
        receivers: jnp.ndarray,
        edge_mask: jnp.ndarray,
        node_mask: jnp.ndarray,
        radial: RadialSettings | None = None,
    ) -> tuple[jnp.ndarray, jnp.ndarray]:
        """Per-atom energies and final scalar features.

        Args:
            edge_vectors: [n_edge, 3] ``r_ij = r_j − r_i (+ shift)`` from receiver i to sender j.
            species: [n_node] int species index in ``[0, num_species)``.
            senders, receivers: [n_edge] int node indices (message from sender to receiver).
            edge_mask: [n_edge] bool, real edges.
            node_mask: [n_node] bool, real atoms.
            radial: scalar ``r_max``, ``cutoff_p`` and ``avg_num_neighbors`` replacing the
                config's (one member of a vmapped group with per-member cutoffs, or the values
                a program keyed on :func:`nequip_jax.model.program_config` takes as
                arguments); ``None`` uses the config. Edges longer than this ``r_max``
                contribute nothing.

        Returns:
            ``node_energy`` [n_node] (eV; zero on padding atoms) and ``features``
            [n_node, feature_dim] (zero on padding atoms).
        """
        cfg = self.config
        dtype = check_dtype(cfg)
        n_node, n_edge = species.shape[0], senders.shape[0]
        if edge_vectors.shape != (n_edge, 3) or receivers.shape != (n_edge,):
            raise ValueError(
                f"edge_vectors {edge_vectors.shape}, senders {senders.shape} and receivers "
                f"{receivers.shape} must be [n_edge, 3], [n_edge], [n_edge]."
            )
        if node_mask.shape != (n_node,) or edge_mask.shape != (n_edge,):
            raise ValueError(
                f"node_mask {node_mask.shape} / edge_mask {edge_mask.shape} must be [n_node] / "
                "[n_edge]."
            )
        edge_vectors = edge_vectors.astype(dtype)
        # The config's values go through the same arithmetic as values passed in (one set of
        # numbers whether or not a program takes them as arguments).
        if radial is None:
            radial = RadialSettings.of(cfg)
        shapes = [jnp.shape(v) for v in radial if v is not None]
        if any(shape != () for shape in shapes):
            raise ValueError(
                f"radial settings must be scalars for one model, got shapes {shapes}; "
                "jax.vmap over the member axis of a group's RadialSettings."
            )
        r_max = jnp.asarray(radial.r_max, dtype)
        if radial.cutoff_p is None:
            cutoff_p = cfg.cutoff_p
        else:
            cutoff_p = jnp.asarray(radial.cutoff_p, jnp.int32)
        avg_num_neighbors = jnp.asarray(radial.avg_num_neighbors, dtype)

        # Edge attributes: spherical harmonics of the direction and the radial embedding.
        lengths2 = jnp.sum(edge_vectors**2, axis=-1)
        safe_vectors = jnp.where(edge_mask[:, None], edge_vectors, jnp.ones_like(edge_vectors))
        lengths = jnp.sqrt(jnp.where(edge_mask, lengths2, 1.0))
        sh = e3nn.spherical_harmonics(
            e3nn.Irreps.spherical_harmonics(cfg.lmax),
            safe_vectors,
            normalize=True,
            normalization="component",
        ).array
        frequencies = jnp.asarray(bessel_frequencies(cfg.num_basis, r_max), dtype)
        if cfg.trainable_basis:
            frequencies = self.param("bessel_frequencies", lambda _: frequencies)
        embedding = radial_embedding(lengths, edge_mask, frequencies, r_max, cutoff_p)

        # Species embedding (one-hot → linear, i.e. a row of a table).
        onehot = jax.nn.one_hot(species, cfg.num_species, dtype=dtype)
        table = self.param(
            "species_embedding",
            nn.initializers.normal(1.0),
            (cfg.num_species, cfg.num_features),
            dtype,
        )
        x = e3nn.IrrepsArray(f"{cfg.num_features}x0e", onehot @ table)

        for index, layer in enumerate(model_layers(cfg)):
            x = InteractionBlock(
                layer=layer,
                lmax_sh=cfg.lmax,
                num_species=cfg.num_species,
                radial_mlp_depth=cfg.radial_mlp_depth,
                radial_mlp_width=cfg.radial_mlp_width,
                avg_num_neighbors=cfg.avg_num_neighbors,
                residual=cfg.residual,
                edge_chunk_size=cfg.edge_chunk_size,
                nonlinearity=cfg.nonlinearity,
                name=f"layer_{index}",
            )(x, sh, embedding, senders, receivers, onehot, avg_num_neighbors)

        scalars = x.filter(keep="0e")
        projected = e3nn.flax.Linear(
            f"{cfg.resolved_feature_dim}x0e", name="readout_features", **LINEAR_NORMALISATION
        )(scalars)
        atomic = e3nn.flax.Linear("1x0e", name="readout_energy", **LINEAR_NORMALISATION)(
            projected
        ).array[:, 0]
        features = projected.array
        scale = jnp.asarray(cfg.scales, dtype)
        shift = jnp.asarray(cfg.shifts, dtype)
        if cfg.trainable_scale_shift:
            scale = self.param("energy_scale", lambda _: scale)
            shift = self.param("energy_shift", lambda _: shift)
        node_energy = scale[species] * atomic + shift[species]
        node_energy = jnp.where(node_mask, node_energy, 0.0)
        features = jnp.where(node_mask[:, None], features, 0.0)
        return node_energy, features
