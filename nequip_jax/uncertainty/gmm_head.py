"""The GMM uncertainty of Zhu et al. (2023): a Gaussian mixture on the final scalar features.

Fit: per-atom final projected scalar features of the trained model over its training frames
(real atoms only, no validation frames, as in the authors' code), a full-covariance mixture with
the number of components chosen by BIC (candidates 1 … min(49, N − 1)). The mixture is attached
to the :class:`~nequip_jax.model.Potential`, whose ``predict`` then returns the per-atom negative
log-likelihood (Eq. (8)) from the same jitted forward pass as energies and forces.
"""

from __future__ import annotations

from collections.abc import Sequence

import ase
import jax
import numpy as np

import gmm as gmm_lib
from nequip_jax.data import round_up
from nequip_jax.model.potential import Potential
from nequip_jax.uncertainty.metrics import aggregate_nll
from nequip_jax.uncertainty.protocol import ModelOutputs, UncertaintyMethod, array_module

__all__ = [
    "GMM",
    "training_features",
    "fit_feature_gmm",
    "fit_gmm_uncertainty",
    "format_selection_table",
]


def training_features(
    potential: Potential, atoms_list: Sequence[ase.Atoms], batch_size: int = 32
) -> np.ndarray:
    """[n_atoms_total, feature_dim] final scalar features of every real atom of ``atoms_list``."""
    features = potential.predict(atoms_list, batch_size=batch_size)["features"]
    return np.concatenate(features)


def fit_feature_gmm(
    features: np.ndarray,
    *,
    key: jax.Array,
    max_components: int = 49,
    candidates: Sequence[int] | None = None,
    criterion: str = "bic",
    bucket: int | None = None,
    **fit_kwargs,
) -> tuple[gmm_lib.GMMParams, list]:
    """The GMM head's fit: a full-covariance mixture on per-atom features (float64), the number
    of components chosen by ``criterion`` among ``candidates``.

    Args:
        features: ``[n_atoms, feature_dim]``, real atoms only.
        key: ``jax.random`` key for the k-means++ initialisations.
        max_components: largest K tried (the authors' code: 49).
        candidates: explicit K values (default ``1 … min(max_components, n_atoms − 1)``).
        criterion: ``"bic"`` (lower is better) or ``"aic"``.
        bucket: pad the rows to a multiple of this with a mask (the fit is the same), so that
            feature sets that grow a little at a time (the on-the-fly loop) reuse one compiled
            sweep; ``None``: no padding.
        **fit_kwargs: passed to :func:`gmm.select_n_components` (``max_iter``, ``tol``,
            ``reg_covar``, ``n_init``, ``init``).

    Returns:
        ``(params, table)``: float64 numpy parameters and one ``gmm.SelectionRow`` per K.
    """
    x = np.asarray(features, dtype=np.float64)
    n = x.shape[0]
    if x.ndim != 2 or n < 2:
        raise ValueError(f"features of shape {x.shape}: a GMM needs [n_atoms >= 2, feature_dim].")
    if candidates is None:
        candidates = range(1, min(max_components, n - 1) + 1)
    mask = None
    if bucket is not None:
        padded = np.zeros((round_up(n, bucket), x.shape[1]))
        padded[:n] = x
        x, mask = padded, np.arange(len(padded)) < n
    with jax.enable_x64(True):
        result, table = gmm_lib.select_n_components(
            x, list(candidates), key=key, criterion=criterion, mask=mask, **fit_kwargs
        )
        params = gmm_lib.GMMParams(*(np.asarray(p) for p in result.params))
    return params, table


def fit_gmm_uncertainty(
    potential: Potential,
    train_atoms: Sequence[ase.Atoms],
    *,
    key: jax.Array,
    max_components: int = 49,
    candidates: Sequence[int] | None = None,
    criterion: str = "bic",
    batch_size: int = 32,
    **fit_kwargs,
) -> tuple[Potential, list]:
    """Fit the GMM on the training features and attach it to a copy of ``potential``.

    Args:
        potential: the trained model.
        train_atoms: its training frames.
        key: ``jax.random`` key for the k-means++ initialisations.
        max_components: largest K tried (the authors' code: 49).
        candidates: explicit K values (default ``1 … min(max_components, N − 1)``).
        criterion: ``"bic"`` (lower is better) or ``"aic"``.
        batch_size: structures per forward pass for the features.
        **fit_kwargs: passed to :func:`gmm.select_n_components` (``max_iter``, ``tol``,
            ``reg_covar``, ``n_init``, ``init``).

    Returns:
        ``(potential_with_gmm, table)``; ``table`` lists one row per K (``gmm.SelectionRow``).
    """
    params, table = fit_feature_gmm(
        training_features(potential, train_atoms, batch_size),
        key=key,
        max_components=max_components,
        candidates=candidates,
        criterion=criterion,
        **fit_kwargs,
    )
    return potential.with_head("gmm", params), table


def format_selection_table(table, chosen: int | None = None) -> str:
    """Markdown table of a model-selection sweep (K, criterion, lower bound, converged)."""
    lines = ["| K | criterion | mean log-likelihood | converged |", "|---|---|---|---|"]
    for row in table:
        mark = " ←" if chosen is not None and int(row.n_components) == chosen else ""
        lines.append(
            f"| {int(row.n_components)}{mark} | {float(row.criterion):.2f} | "
            f"{float(row.lower_bound):.4f} | {bool(row.converged)} |"
        )
    return "\n".join(lines)


# ---------------------------------------------------------------------------------------------
# the GMM as an uncertainty method


def _fit(train_outputs: ModelOutputs, *, key: jax.Array, **options) -> gmm_lib.GMMParams:
    params, _ = fit_feature_gmm(train_outputs.features, key=key, **options)
    return params


def _score(state: gmm_lib.GMMParams, outputs: ModelOutputs):
    """Per-atom NLL of the features (Eq. (8)); float64 numpy on the host, traced in a program."""
    if array_module(outputs.features) is np:
        with jax.enable_x64(True):
            return np.asarray(gmm_lib.nll(state, np.asarray(outputs.features, np.float64)))
    return gmm_lib.nll(state, outputs.features)


#: Zhu et al. (2023): the per-atom negative log-likelihood (Eq. (8), nats) of a Gaussian
#: mixture fitted on the training set's final scalar features (:func:`fit_feature_gmm`,
#: options ``max_components``, ``candidates``, ``criterion``, ``bucket``, ``max_iter``, …);
#: a structure's score is the sum over its atoms.
GMM = UncertaintyMethod(
    name="gmm",
    model="potential",
    unit="nats",
    label="GMM",
    fit=_fit,
    score=_score,
    aggregate=aggregate_nll,
    save=lambda state, path: gmm_lib.save(state, path),
    load=gmm_lib.load,
    describe=lambda state: {"n_components": int(np.shape(state.weights)[0])},
)
