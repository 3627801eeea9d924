"""The uncertainty-method protocol: a method is a NamedTuple of pure functions over a state.

Like ``optax.GradientTransformation``, an :class:`UncertaintyMethod` bundles functions and holds
no data; its fitted state is a pytree (a NamedTuple of arrays):

* ``fit(train_outputs, *, key, **options) -> state`` — on the host, from the model's outputs
  on its training structures (real atoms only);
* ``score(state, outputs) -> [n_atoms]`` — per-atom uncertainty, higher is more uncertain. Pure
  and array-generic: traced inside a compiled model program (the potential's forward pass, the
  on-device MD step), or evaluated on host numpy arrays (then in numpy, float64);
* ``aggregate(per_atom, structure_index, n_structures) -> [S]`` — the structure-level score
  of Zhu et al. (2023), text before Eq. (11);
* ``save(state, path)`` / ``load(path) -> state`` — one file, written atomically;
* ``recalibrate(state, outputs, errors) -> state`` (optional) — for a score that estimates a
  force-error standard deviation up to a scale fitted on held-out atoms (LLPR's α²): fit that
  scale to the errors ``[n_atoms, 3]`` (force residuals) of held-out ``outputs``.

A method declares which model it needs (``"potential"``: one network, its final scalar
features; ``"ensemble"``: the members' forces) through :class:`ModelOutputs`. Callers — the ASE
calculator, MD, the on-the-fly triggers, the experiments — look methods up by name in
:mod:`nequip_jax.uncertainty.registry` and never branch on which one it is.
"""

from __future__ import annotations

import io
from collections.abc import Callable
from pathlib import Path
from typing import Any, NamedTuple

import jax
import numpy as np

from nequip_jax._io import atomic_write_bytes

__all__ = [
    "ModelOutputs",
    "UncertaintyMethod",
    "array_module",
    "device_state",
    "save_state",
    "load_state",
]


class ModelOutputs(NamedTuple):
    """What a model hands an uncertainty method, per real atom of a set of structures.

    Attributes:
        features: ``[n_atoms, feature_dim]`` final scalar features of one network
            (``"potential"`` methods); ``None`` for an ensemble.
        member_forces: ``[J, n_atoms, 3]`` forces of each member (eV/Å, ``"ensemble"``
            methods); ``None`` for one network.
    """

    features: Any = None
    member_forces: Any = None


class UncertaintyMethod(NamedTuple):
    """An uncertainty method (see the module docstring for the signatures).

    Attributes:
        name: registry name (``"gmm"``, ``"ensemble"``, ``"llpr"``, ``"random"``).
        model: ``"potential"`` (needs ``ModelOutputs.features``) or ``"ensemble"`` (needs
            ``ModelOutputs.member_forces``).
        unit: unit of the per-atom score (e.g. ``"nats"``, ``"eV/Å"``).
        label: display name.
        fit: ``(train_outputs, *, key, **options) -> state``.
        score: ``(state, outputs) -> [n_atoms]``.
        aggregate: ``(per_atom [n], structure_index [n], n_structures) -> [S]``.
        save: ``(state, path) -> None``.
        load: ``(path) -> state``.
        describe: ``(state) -> dict``, a JSON-able summary for records (e.g. the GMM's K).
        informative: False for a score that carries no information about the error (the random
            baseline): the on-the-fly loop then spends its label budget at random steps instead
            of thresholding the score.
        recalibrate: ``(state, outputs, errors) -> state`` or ``None``: the score is then a
            force-component standard deviation (eV/Å) once recalibrated on held-out errors.
    """

    name: str
    model: str
    unit: str
    label: str
    fit: Callable[..., Any]
    score: Callable[[Any, ModelOutputs], Any]
    aggregate: Callable[..., np.ndarray]
    save: Callable[[Any, Path], None]
    load: Callable[[Path], Any]
    describe: Callable[[Any], dict]
    informative: bool = True
    recalibrate: Callable[[Any, ModelOutputs, Any], Any] | None = None


def array_module(*arrays):
    """``numpy`` when every array is a host numpy array (or scalar), else ``jax.numpy``: a score
    evaluated on host arrays runs in numpy (float64 stays float64), a traced one in JAX."""
    if all(isinstance(a, (np.ndarray, np.generic, int, float)) for a in arrays):
        return np
    return jax.numpy


def device_state(state, dtype):
    """``state`` on the device: floating leaves in the model's ``dtype``, others (integers,
    keys) as they are."""

    def leaf(x):
        x = np.asarray(x)
        floating = np.issubdtype(x.dtype, np.floating)
        return jax.numpy.asarray(x, dtype) if floating else jax.numpy.asarray(x)

    return jax.tree.map(leaf, state)


def save_state(state: NamedTuple, path: str | Path) -> None:
    """Write a NamedTuple state of arrays and scalars to one ``.npz`` file atomically."""

    buffer = io.BytesIO()
    np.savez(buffer, **{k: np.asarray(v) for k, v in state._asdict().items()})
    atomic_write_bytes(Path(path), buffer.getvalue())


def load_state(cls: type, path: str | Path) -> NamedTuple:
    """Read a state written by :func:`save_state` into the NamedTuple class ``cls``; scalar
    fields come back as Python floats/ints."""
    path = Path(path)
    with np.load(path) as saved:
        missing = set(cls._fields) - set(saved.files)
        if missing:
            raise ValueError(
                f"{path}: missing fields {sorted(missing)} of {cls.__name__}; the file was not "
                "written by this method's save."
            )
        values = {k: saved[k] for k in cls._fields}
    return cls(**{k: v.item() if v.ndim == 0 else v for k, v in values.items()})
