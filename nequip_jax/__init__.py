"""nequip-jax: NequIP interatomic potentials in JAX with fast Gaussian-mixture uncertainty.

Zhu, Batzner, Musaelian, Kozinsky, J. Chem. Phys. 158, 164111 (2023).

The names below are loaded on first use, so that ``import nequip_jax.oracle`` (in a labelling
worker, say) does not import JAX and the model: the trained-model bundles (``Potential``,
``Ensemble``, ``load``), the uncertainty methods (``GMM``, ``ENSEMBLE``, ``LLPR``, ``RANDOM``,
all in ``METHODS``, looked up by ``get_method``), training (``train`` for one model,
``train_ensemble`` for vmapped ensembles; the rest of :mod:`nequip_jax.training`), evaluation,
the ASE calculator and on-device MD.
"""

import importlib

_HOMES = {
    "ENSEMBLE": "nequip_jax.uncertainty.ensemble_sigma",
    "Ensemble": "nequip_jax.model.ensemble",
    "GMM": "nequip_jax.uncertainty.gmm_head",
    "LLPR": "nequip_jax.uncertainty.llpr",
    "METHODS": "nequip_jax.uncertainty.registry",
    "RANDOM": "nequip_jax.uncertainty.random_score",
    "Head": "nequip_jax.model.potential",
    "ModelOutputs": "nequip_jax.uncertainty.protocol",
    "NequIP": "nequip_jax.model",
    "NequIPCalculator": "nequip_jax.calculator",
    "NequIPConfig": "nequip_jax.model",
    "Potential": "nequip_jax.model",
    "UncertaintyMethod": "nequip_jax.uncertainty.protocol",
    "enable_compilation_cache": "nequip_jax._cache",
    "evaluate_potential": "nequip_jax.evaluate",
    "get_method": "nequip_jax.uncertainty.registry",
    "load": "nequip_jax.model",
    "load_3bpa": "nequip_jax.data",
    "run_md": "nequip_jax.md",
    "train": "nequip_jax.training.loop",
    "train_ensemble": "nequip_jax.training.ensemble",
}
__all__ = sorted(_HOMES)
__version__ = "0.1.0"


def __getattr__(name: str):
    if name in _HOMES:
        value = getattr(importlib.import_module(_HOMES[name]), name)
        globals()[name] = value
        return value
    raise AttributeError(f"module 'nequip_jax' has no attribute {name!r}")


def __dir__() -> list[str]:
    return sorted({*globals(), *__all__})
