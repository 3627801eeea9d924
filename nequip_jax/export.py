"""A trained potential as a self-contained program: ``jax.export`` for use outside Python code
that imports this package (another JAX program, a serving process, a C++ or LAMMPS host through
XLA/PJRT).

:func:`export_potential` writes a folder:

- ``potential.jaxexport`` — the serialised :class:`jax.export.Exported` of
  ``fn(positions [n, 3], atomic_numbers [n]) -> (energy [], forces [n, 3], uncertainty [n])``
  with a *symbolic* number of atoms ``n``: one file for every molecule size;
- ``metadata.json`` — species, cutoff, units, dtype, the uncertainty method, the calling
  convention, the platforms the program was lowered for and the model's configuration.

Loading needs only ``jax`` (and ``flatbuffers``, jax's serialisation dependency)::

    from jax import export
    fn = export.deserialize(open("potential.jaxexport", "rb").read())
    energy, forces, uncertainty = fn.call(positions, atomic_numbers)

Inside the program the neighbour list is all ordered pairs of atoms closer than ``r_max``
(``n²`` candidate edges, masked): exact for a molecule in vacuum, without a periodic cell; its
cost grows as ``n²``, which is small next to the network for molecules of up to a few hundred
atoms. ``uncertainty`` is the per-atom score of the potential's uncertainty head, traced from
its registered method (e.g. the negative log-likelihood of the final scalar features under the
Gaussian mixture, Zhu et al. 2023, Eq. (8), nats; higher = more uncertain); the method, its
unit and its fitted summary are in ``metadata.json``. An atomic number the model was not
trained on makes every output NaN (a jitted program cannot raise).

The program is lowered from the same functions as :meth:`~nequip_jax.model.Potential.predict`;
it is compiled by whoever calls it, with that caller's XLA options (on CPU, pass
:func:`nequip_jax.model.compiler_options` to ``jax.jit`` around ``fn.call`` for this library's
speed; the options are recorded in ``metadata.json``).
"""

from __future__ import annotations

import json
import os
from collections.abc import Callable, Sequence
from pathlib import Path

import jax
import jax.numpy as jnp
import numpy as np

from nequip_jax._io import atomic_folder
from nequip_jax.model import NequIP, Potential, compiler_options
from nequip_jax.model._predict import edge_graph, energy_and_forces
from nequip_jax.uncertainty.protocol import ModelOutputs, device_state
from nequip_jax.uncertainty.registry import get_method

__all__ = [
    "EXPORT_FORMAT_VERSION",
    "PROGRAM_FILE",
    "METADATA_FILE",
    "molecule_function",
    "export_potential",
]

EXPORT_FORMAT_VERSION = 1
PROGRAM_FILE = "potential.jaxexport"
METADATA_FILE = "metadata.json"

#: Platforms a program is lowered for unless told otherwise (``jax.export`` lowers for platforms
#: that are not present on the exporting machine).
DEFAULT_PLATFORMS = ("cpu", "cuda")

_CALLING_CONVENTION = (
    "fn(positions: float[n, 3] (Å), atomic_numbers: int32[n]) -> (energy: float[] (eV), "
    "forces: float[n, 3] (eV/Å), uncertainty: float[n] (the head's unit)); n symbolic "
    "(any n >= 1); "
    "float is the model dtype; every output is NaN if an atomic number is not in species."
)


def molecule_function(potential: Potential) -> Callable:
    """The jittable ``fn(positions [n, 3], atomic_numbers [n]) -> (energy [], forces [n, 3],
    uncertainty [n])`` of one molecule that :func:`export_potential` serialises.

    The parameters and the head's state are constants of the function. Energies in eV, forces
    in eV/Å, uncertainty the head's per-atom score (e.g. the GMM NLL of Zhu et al. 2023,
    Eq. (8)).

    Raises:
        ValueError: the potential has no uncertainty head attached.
    """
    if potential.head is None:
        raise ValueError(
            "the potential has no uncertainty head, so the exported program would have no "
            "uncertainty; fit one first (`nequip-jax fit-gmm MODEL`, or "
            "potential.with_head(method, state))."
        )
    score = get_method(potential.head.method).score
    config = potential.config
    dtype = jnp.float64 if config.dtype == "float64" else jnp.float32
    model = NequIP(config)
    params = jax.tree.map(lambda x: jnp.asarray(x), potential.params)
    state = device_state(potential.head.state, dtype)
    lookup = np.full(119, -1, np.int32)
    lookup[list(potential.species)] = np.arange(len(potential.species), dtype=np.int32)
    lookup = jnp.asarray(lookup)
    r_max2 = float(config.r_max) ** 2

    def fn(positions, atomic_numbers):
        positions = positions.astype(dtype)
        n = positions.shape[0]
        species = lookup.at[atomic_numbers].get(mode="fill", fill_value=-1)
        known = jnp.all(species >= 0)
        species = jnp.maximum(species, 0)
        pair = jnp.arange(n * n)
        receivers, senders = pair // n, pair % n
        vectors = positions[senders] - positions[receivers]
        edge_mask = (senders != receivers) & (jnp.sum(vectors**2, axis=-1) < r_max2)
        node_mask = jnp.ones((n,), bool)
        shifts = jnp.zeros((n * n, 3), dtype)
        graph = edge_graph(species, senders, receivers, shifts, edge_mask, node_mask)
        energy, _, features, forces = energy_and_forces(model, params, positions, graph)
        uncertainty = score(state, ModelOutputs(features=features))
        nan = jnp.asarray(jnp.nan, dtype)
        return (
            jnp.where(known, energy, nan),
            jnp.where(known, forces, nan),
            jnp.where(known, uncertainty, nan),
        )

    return fn


def export_potential(
    potential: Potential,
    out: str | os.PathLike,
    *,
    platforms: Sequence[str] = DEFAULT_PLATFORMS,
) -> Path:
    """Write ``potential`` as a ``jax.export`` program and its ``metadata.json`` into ``out``
    (atomically: a previous folder is replaced only once the new one is complete).

    Args:
        potential: a trained potential with an uncertainty head (e.g. its Gaussian mixture).
        out: the output folder.
        platforms: platforms to lower for (``jax.export`` names: ``cpu``, ``cuda``, ``rocm``,
            ``tpu``); the program runs only on these.

    Returns:
        The output folder.
    """
    from jax import export

    platforms = tuple(platforms)
    if not platforms:
        raise ValueError("platforms is empty; give at least one of cpu, cuda, rocm, tpu.")
    fn = molecule_function(potential)
    method = get_method(potential.head.method)
    float64 = potential.config.dtype == "float64"
    dtype = jnp.float64 if float64 else jnp.float32
    (n,) = export.symbolic_shape("n")
    with jax.enable_x64(float64):
        exported = export.export(jax.jit(fn), platforms=platforms)(
            jax.ShapeDtypeStruct((n, 3), dtype), jax.ShapeDtypeStruct((n,), jnp.int32)
        )
        program = exported.serialize()
    metadata = {
        "format_version": EXPORT_FORMAT_VERSION,
        "program": PROGRAM_FILE,
        "calling_convention": _CALLING_CONVENTION,
        "species": [int(z) for z in potential.species],
        "r_max": float(potential.config.r_max),
        "dtype": potential.config.dtype,
        "requires_x64": float64,
        "units": {
            "positions": "Å",
            "energy": "eV",
            "forces": "eV/Å",
            "uncertainty": method.unit,
        },
        "uncertainty": {
            "method": method.name,
            "label": method.label,
            "description": "per-atom score of the uncertainty method on the final scalar "
            "features; higher is more uncertain",
            **method.describe(potential.head.state),
        },
        "neighbours": "all pairs closer than r_max inside the program; molecules, no cell",
        "platforms": list(platforms),
        "jax_version": jax.__version__,
        "cpu_compiler_options": compiler_options(),
        "model_config": potential.config.to_dict(),
        "metadata": potential.metadata,
    }
    out = Path(out)
    with atomic_folder(out) as tmp:
        (tmp / PROGRAM_FILE).write_bytes(program)
        (tmp / METADATA_FILE).write_text(json.dumps(metadata, indent=2, default=str) + "\n")
    return out
