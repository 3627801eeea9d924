"""Energies, forces and features of a padded batch as one pure function of ``(params, graph)``.

Forces are ``F = −∂E/∂r`` (Batzner et al. 2022) by reverse-mode autodiff of the sum of the real
graphs' energies, in the same pass that produces the per-atom energies and features.
"""

from __future__ import annotations

import functools
from collections.abc import Callable
from typing import Any

import jax
import jax.numpy as jnp
import jraph

from nequip_jax.model._config import NequIPConfig
from nequip_jax.model._nequip import NequIP, check_dtype
from nequip_jax.model._per_member import RadialSettings
from nequip_jax.model._radial import bessel_frequencies

__all__ = [
    "compiler_options",
    "edge_vectors",
    "edge_graph",
    "energy_and_forces",
    "energy_forces_features",
    "init_params",
    "make_model_fns",
    "make_predict_fn",
    "model_jit",
    "node_energy_and_features",
]

_CPU_OPTIONS = {"xla_cpu_experimental_ynn_fusion_type": "LIBRARY_FUSION_TYPE_INDIVIDUAL_DOT"}


@functools.cache
def compiler_options() -> dict[str, str] | None:
    """XLA options to pass as ``jax.jit(..., compiler_options=compiler_options())``.

    A small optimisation, not a requirement: on CPU it keeps jaxlib's YNNPACK library for
    individual matmuls only (XLA's own loops for the rest). On the project's 2-core machine a
    plain ``jax.jit`` of forward+forces takes 0.9–1.3× the time of this build at f = 16–32,
    lmax = 1–2 (experiments/bench/model_throughput.py). ``None`` on other backends, or when
    this jaxlib does not know the option (then the defaults are used).
    """
    if jax.default_backend() != "cpu":
        return None
    try:
        jax.jit(lambda x: x + 1.0, compiler_options=_CPU_OPTIONS).lower(1.0).compile()
    except Exception:  # an unknown or renamed option: fall back to XLA's defaults
        return None
    return dict(_CPU_OPTIONS)


def model_jit(fn: Callable, **jit_kwargs: Any) -> Callable:
    """``jax.jit(fn, **jit_kwargs)`` with the model's :func:`compiler_options`.

    Every jitted function of this library that runs the model goes through this; a plain
    ``jax.jit`` (a user's own) compiles the same model within 1.3× of it.
    """
    return jax.jit(fn, compiler_options=compiler_options(), **jit_kwargs)


def edge_vectors(positions: jnp.ndarray, graph: jraph.GraphsTuple) -> jnp.ndarray:
    """[n_edge, 3] ``r_ij = positions[senders] − positions[receivers] + shifts``."""
    return positions[graph.senders] - positions[graph.receivers] + graph.edges["shifts"]


def edge_graph(
    species: jnp.ndarray,
    senders: jnp.ndarray,
    receivers: jnp.ndarray,
    shifts: jnp.ndarray,
    edge_mask: jnp.ndarray,
    node_mask: jnp.ndarray,
) -> jraph.GraphsTuple:
    """The graph :func:`energy_and_forces` reads, from one system's edges (e.g. an on-device
    neighbour list): ``species`` [n] (indices into the model's species), ``senders`` /
    ``receivers`` [n_edge], ``shifts`` [n_edge, 3] (periodic image offsets, Å), masks."""
    return jraph.GraphsTuple(
        nodes={"species": species, "mask": node_mask},
        edges={"shifts": shifts, "mask": edge_mask},
        senders=senders,
        receivers=receivers,
        n_node=None,
        n_edge=None,
        globals=None,
    )


def _apply(
    model: NequIP,
    params: Any,
    positions: jnp.ndarray,
    graph: jraph.GraphsTuple,
    radial: RadialSettings | None,
):
    return model.apply(
        params,
        edge_vectors(positions, graph),
        graph.nodes["species"],
        graph.senders,
        graph.receivers,
        graph.edges["mask"],
        graph.nodes["mask"],
        radial,
    )


def _dummy_inputs(dtype) -> tuple:
    """Two atoms and two edges: parameter shapes do not depend on the graph size."""
    return (
        jnp.array([[1.0, 0.0, 0.0], [-1.0, 0.0, 0.0]], dtype),
        jnp.array([0, 0], jnp.int32),
        jnp.array([1, 0], jnp.int32),
        jnp.array([0, 1], jnp.int32),
        jnp.array([True, True]),
        jnp.array([True, True]),
    )


def init_params(config: NequIPConfig, *, key: jax.Array) -> Any:
    """Initial parameters of ``NequIP(config)``.

    Same distribution as ``NequIP(config).init`` — every weight N(0, 1) (e3nn/nequip "forward"
    initialisation: the layers divide by sqrt(fan_in) in the forward pass); energy scales,
    shifts and Bessel frequencies from the config — but drawn as one normal vector split over
    the leaves, which avoids compiling (or dispatching op by op) the whole forward pass just to
    initialise.

    Args:
        config: the hyperparameters.
        key: a ``jax.random`` key.
    """
    dtype = check_dtype(config)
    model = NequIP(config)
    inputs = _dummy_inputs(dtype)
    reference = jax.eval_shape(lambda: model.init(jax.random.key(0), *inputs))
    leaves, treedef = jax.tree_util.tree_flatten_with_path(reference)
    fixed = {
        "energy_scale": jnp.asarray(config.scales, dtype),
        "energy_shift": jnp.asarray(config.shifts, dtype),
        "bessel_frequencies": jnp.asarray(
            bessel_frequencies(config.num_basis, config.r_max), dtype
        ),
    }
    names = [_leaf_name(path) for path, _ in leaves]
    sizes = [
        int(leaf.size) for (_, leaf), name in zip(leaves, names, strict=True) if name not in fixed
    ]
    draws = jax.random.normal(key, (sum(sizes),), dtype)
    values, offset = [], 0
    for (_, leaf), name in zip(leaves, names, strict=True):
        if name in fixed:
            values.append(fixed[name].reshape(leaf.shape))
        else:
            values.append(draws[offset : offset + leaf.size].reshape(leaf.shape).astype(leaf.dtype))
            offset += leaf.size
    return jax.tree_util.tree_unflatten(treedef, values)


def _leaf_name(path) -> str:
    last = path[-1]
    return str(getattr(last, "key", last))


def energy_and_forces(
    model: NequIP,
    params: Any,
    positions: jnp.ndarray,
    graph: jraph.GraphsTuple,
    radial: RadialSettings | None = None,
) -> tuple[jnp.ndarray, jnp.ndarray, jnp.ndarray, jnp.ndarray]:
    """The network's energy and forces at ``positions`` on ``graph``'s edges: one forward and one
    backward pass, ``F = −∂E/∂r`` with ``E`` the sum of the per-atom energies.

    The one place the network is evaluated with forces: padded batches
    (:func:`energy_forces_features`), the on-device MD potential (:mod:`nequip_jax.md`) and the
    exported program (:mod:`nequip_jax.export`) all call it.

    Args:
        model: the module; params: its parameters.
        positions: ``[n_node, 3]`` (Å).
        graph: edges ``senders``/``receivers`` [n_edge] with ``edges["shifts"]`` [n_edge, 3]
            (Å; zero without periodic images) and ``edges["mask"]``, and ``nodes["species"]``
            (indices into the model's species) and ``nodes["mask"]`` [n_node].
        radial: per-member cutoff settings replacing the config's (``None``: the config).

    Returns:
        ``energy`` [] (the sum over all atoms, eV; padding atoms give 0), ``node_energy``
        [n_node] (eV), ``features`` [n_node, feature_dim] and ``forces`` [n_node, 3] (eV/Å).
    """

    def total_energy(pos):
        node_energy, features = _apply(model, params, pos, graph, radial)
        return jnp.sum(node_energy), (node_energy, features)

    (energy, (node_energy, features)), gradient = jax.value_and_grad(total_energy, has_aux=True)(
        positions
    )
    return energy, node_energy, features, -gradient


def node_energy_and_features(
    model: NequIP,
    params: Any,
    positions: jnp.ndarray,
    graph: jraph.GraphsTuple,
    radial: RadialSettings | None = None,
) -> tuple[jnp.ndarray, jnp.ndarray]:
    """``node_energy`` [n_node] and ``features`` [n_node, feature_dim] without forces (the
    forward pass of :func:`energy_and_forces`)."""
    return _apply(model, params, positions, graph, radial)


def energy_forces_features(
    model: NequIP,
    params: Any,
    graph: jraph.GraphsTuple,
    radial: RadialSettings | None = None,
) -> dict[str, jnp.ndarray]:
    """Total energies, forces, per-atom energies and final scalar features of a padded batch.

    Args:
        model: the module (its config fixes the dtype).
        params: its parameters.
        graph: a padded batch from :meth:`nequip_jax.data.GraphDataset.batch`.
        radial: scalar per-member ``r_max``, ``cutoff_p`` and ``avg_num_neighbors`` replacing
            the config's (see :class:`nequip_jax.model.RadialSettings`); the graph must have
            been built with a cutoff at least this ``r_max``. ``None`` uses the config.

    Returns:
        ``energy`` [n_graph] (eV), ``forces`` [n_node, 3] (eV/Å), ``node_energy`` [n_node] (eV),
        ``features`` [n_node, feature_dim]; all zero on padding graphs/atoms. Jittable; the
        model is evaluated once (value and gradient from one forward + one backward pass).
    """
    dtype = check_dtype(model.config)
    positions = jnp.asarray(graph.nodes["positions"]).astype(dtype)
    node_mask = graph.nodes["mask"]
    graph_mask = graph.globals["mask"]
    n_graph = graph.n_node.shape[0]
    _, node_energy, features, forces = energy_and_forces(model, params, positions, graph, radial)
    energy = jax.ops.segment_sum(node_energy, graph.nodes["graph_index"], num_segments=n_graph)
    return {
        "energy": jnp.where(graph_mask, energy, 0.0),
        "forces": jnp.where(node_mask[:, None], forces, 0.0),
        "node_energy": node_energy,
        "features": features,
    }


def make_predict_fn(
    config: NequIPConfig,
) -> Callable[..., dict[str, jnp.ndarray]]:
    """Jitted ``predict(params, graph, radial=None) -> energy_forces_features(NequIP(config),
    params, graph, radial)``.

    Compiles once per padded batch shape (use one :class:`nequip_jax.data.PaddingBudget`), with
    :func:`compiler_options`.
    """
    model = NequIP(config)

    def predict(
        params: Any, graph: jraph.GraphsTuple, radial: RadialSettings | None = None
    ) -> dict[str, jnp.ndarray]:
        return energy_forces_features(model, params, graph, radial)

    return model_jit(predict)


def make_model_fns(
    config: NequIPConfig,
) -> tuple[
    Callable[..., Any],
    Callable[..., dict[str, jnp.ndarray]],
]:
    """Pure (unjitted) ``init(key, graph) -> params`` and
    ``predict(params, graph, radial=None) -> energy_forces_features(...)`` of ``NequIP(config)``.

    ``radial`` (a :class:`nequip_jax.model.RadialSettings` of scalars) replaces the config's
    ``r_max``, ``cutoff_p`` and ``avg_num_neighbors``: ``jax.vmap(predict, in_axes=(0, None, 0))``
    evaluates a group whose members differ in them on one graph built with the largest cutoff.
    Jit them (or a function that calls them) with :func:`model_jit`.
    """
    model = NequIP(config)

    def init(key: jax.Array, graph: jraph.GraphsTuple) -> Any:
        del graph  # the parameter shapes do not depend on the batch
        return init_params(config, key=key)

    def predict(
        params: Any, graph: jraph.GraphsTuple, radial: RadialSettings | None = None
    ) -> dict[str, jnp.ndarray]:
        return energy_forces_features(model, params, graph, radial)

    return init, predict
