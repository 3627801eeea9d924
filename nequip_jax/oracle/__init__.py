"""Labelling oracles: GFN2-xTB (tblite), any ASE calculator, a pre-labelled pool.

Every oracle maps structures to reference labels, ``label(atoms_list) -> Labels(energies [n] eV,
forces list of [n_atoms, 3] eV/Å)``, and records its ``provenance()``. :func:`label_parallel`
spreads an oracle over single-threaded worker processes (a local pool, or any
``concurrent.futures.Executor``: Dask, Ray, Parsl), in order, re-submitting lost chunks.
"""

from nequip_jax.oracle._base import (
    LabellingError,
    Labels,
    NotInPoolError,
    Oracle,
    OracleError,
    SCFConvergenceError,
    attach_labels,
    bare_copy,
    concatenate_labels,
)
from nequip_jax.oracle._spin import FREE_ATOM_MULTIPLICITY, spin_multiplicity, total_charge
from nequip_jax.oracle._threads import SINGLE_THREAD_ENV, single_threaded
from nequip_jax.oracle.ase_calc import ASECalculatorOracle
from nequip_jax.oracle.parallel import (
    ExecutorOracle,
    RetryPolicy,
    WorkLostError,
    label_parallel,
    local_executor,
    map_single_threaded,
)
from nequip_jax.oracle.pool import PoolOracle
from nequip_jax.oracle.xtb import XTBOracle, tblite_version

__all__ = [
    "ASECalculatorOracle",
    "ExecutorOracle",
    "FREE_ATOM_MULTIPLICITY",
    "Labels",
    "LabellingError",
    "NotInPoolError",
    "Oracle",
    "OracleError",
    "PoolOracle",
    "RetryPolicy",
    "SCFConvergenceError",
    "SINGLE_THREAD_ENV",
    "WorkLostError",
    "XTBOracle",
    "attach_labels",
    "bare_copy",
    "concatenate_labels",
    "label_parallel",
    "local_executor",
    "map_single_threaded",
    "single_threaded",
    "spin_multiplicity",
    "tblite_version",
    "total_charge",
]
