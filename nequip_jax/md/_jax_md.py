"""The model as JAX-MD functions (``pip install nequip-jax[md]``; JAX-MD itself is not needed
to build them).

JAX-MD's integrators (``jax_md.simulate.nve``, ``nvt_langevin``, …) take an ``energy_fn(R,
**kwargs)`` or a force function. :func:`jax_md_functions` gives both for a molecule of fixed
atomic numbers, plus the per-atom uncertainty, all free-space (use ``jax_md.space.free()`` for
the shift function) with the neighbours recomputed from all pairs at every call (``n²``, fine
for molecules). Units are this library's: Å, eV, and masses in amu give time in ASE units
(``dt = dt_fs * ase.units.fs``).
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from typing import NamedTuple

import jax

from nequip_jax.md._neighbours import build_neighbours
from nequip_jax.md._system import make_system

__all__ = ["JaxMDFunctions", "jax_md_functions"]


class JaxMDFunctions(NamedTuple):
    """``energy_fn(R) -> []`` (eV), ``force_fn(R) -> [n, 3]`` (eV/Å, one forward + backward
    pass), ``uncertainty_fn(R) -> [n]`` (GMM NLL or ensemble σ); each accepts and ignores the
    keyword arguments JAX-MD passes (e.g. ``neighbor``)."""

    energy_fn: Callable[..., jax.Array]
    force_fn: Callable[..., jax.Array]
    uncertainty_fn: Callable[..., jax.Array]


def jax_md_functions(model, numbers: Sequence[int]) -> JaxMDFunctions:
    """JAX-MD-style functions of ``model`` (a Potential or a one-group Ensemble) for a molecule
    of atomic numbers ``numbers`` [n]."""
    system = make_system(model, numbers, skin=0.0)
    n = len(numbers)
    capacity = max(n * (n - 1), 1)

    def full(positions):
        return build_neighbours(positions.astype(system.dtype), system.r_max, capacity)

    def energy_fn(positions, **kwargs):
        del kwargs
        return system.energy(positions, full(positions))

    def force_fn(positions, **kwargs):
        del kwargs
        return system.evaluate(positions, full(positions))[1]

    def uncertainty_fn(positions, **kwargs):
        del kwargs
        return system.evaluate(positions, full(positions))[2]

    return JaxMDFunctions(energy_fn, force_fn, uncertainty_fn)
