"""Molecular dynamics on the device: a jittable potential with an on-device neighbour list and
per-atom uncertainty, NVE (velocity Verlet) and Langevin (BAOAB) integrators in
``lax.while_loop``, an uncertainty stop, and replicas vmapped in one program.

``run_md(model, atoms, n_steps=..., ...)`` is the host entry point; the pieces
(:func:`make_system`, :func:`make_loop`, the integrators) compose inside a user's own jit.
"""

from nequip_jax.md._integrators import (
    MDState,
    baoab,
    init_state,
    kinetic_energy,
    remove_com,
    velocity_verlet,
)
from nequip_jax.md._jax_md import JaxMDFunctions, jax_md_functions
from nequip_jax.md._loop import ChunkResult, Records, make_loop
from nequip_jax.md._neighbours import (
    Neighbours,
    build_neighbours,
    capacity_for,
    needs_rebuild,
)
from nequip_jax.md._run import ENSEMBLES, MDResult, run_md
from nequip_jax.md._system import MDSystem, make_system

__all__ = [
    "ENSEMBLES",
    "ChunkResult",
    "JaxMDFunctions",
    "MDResult",
    "MDState",
    "MDSystem",
    "Neighbours",
    "Records",
    "baoab",
    "build_neighbours",
    "capacity_for",
    "init_state",
    "jax_md_functions",
    "kinetic_energy",
    "make_loop",
    "make_system",
    "needs_rebuild",
    "remove_com",
    "run_md",
    "velocity_verlet",
]
