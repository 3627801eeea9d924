"""The model an on-the-fly run drives MD with: one potential (+ GMM) or a small ensemble.

A :class:`Surrogate` bundles the model with what the loop needs from it: an ASE calculator,
batch predictions with a fixed padded shape (the training set grows by one structure per oracle
call; a fixed shape keeps that from recompiling), the training-set uncertainty that sets the
trigger threshold, warm-start refits and persistence.

Uncertainty (per atom): the GMM negative log-likelihood of Zhu et al. (2023), Eq. (8), of the
final scalar features, or the ensemble force uncertainty σ of Eq. (4). Structure score: the
maximum over atoms (Eq. (12)).
"""

from __future__ import annotations

import dataclasses
import time
from collections.abc import Sequence
from pathlib import Path

import ase
import jax
import numpy as np

import gmm as gmm_lib
from nequip_jax.calculator import NequIPCalculator
from nequip_jax.data import GraphDataset, PaddingBudget, compute_budget, round_up
from nequip_jax.model import Potential
from nequip_jax.model.potential import ensemble_program, potential_program, run_batched
from nequip_jax.otf.finetune import FineTuner, grow_budget
from nequip_jax.uncertainty.ensemble import Ensemble
from nequip_jax.uncertainty.gmm_head import fit_feature_gmm
from nequip_jax.uncertainty.metrics import ensemble_mean_forces, ensemble_sigma

__all__ = ["Surrogate", "fit_gmm_padded", "threshold_from_scores"]

_EVAL_BATCH = 16
_GMM_BUCKET = 1024


def threshold_from_scores(scores: np.ndarray, percentile: float) -> float:
    """Trigger threshold: the ``percentile`` (0–100, linear interpolation) of the training-set
    structure scores (max per-atom uncertainty, Zhu et al. 2023 Eq. (12)).

    Args:
        scores: [n_train_structures].
        percentile: 100 means the largest training score: a frame must be less certain than
            every training structure to trigger.
    """
    scores = np.asarray(scores, dtype=np.float64)
    if scores.ndim != 1 or scores.size == 0 or not np.all(np.isfinite(scores)):
        raise ValueError(
            f"scores must be a non-empty finite 1-D array (one per training structure), got "
            f"shape {scores.shape}; check the model for NaN features."
        )
    return float(np.percentile(scores, percentile))


def fit_gmm_padded(
    features: np.ndarray, *, key: jax.Array, max_components: int, bucket: int = _GMM_BUCKET
) -> tuple[gmm_lib.GMMParams, int]:
    """The GMM head's fit (:func:`nequip_jax.uncertainty.gmm_head.fit_feature_gmm`, BIC over
    K = 1 … ``max_components``) on features padded to a multiple of ``bucket`` rows, so that a
    training set that grows by one structure at a time reuses the compiled sweep.

    Returns:
        ``(params, K)``; the parameters are float64 numpy arrays.
    """
    params, _ = fit_feature_gmm(features, key=key, max_components=max_components, bucket=bucket)
    return params, int(params.weights.shape[0])


def _gmm_nll(params: gmm_lib.GMMParams, features: np.ndarray, bucket: int = _GMM_BUCKET):
    x = np.asarray(features, dtype=np.float64)
    padded = np.zeros((round_up(len(x), bucket), x.shape[1]))
    padded[: len(x)] = x
    with jax.enable_x64(True):
        return np.asarray(gmm_lib.nll(params, padded))[: len(x)]


@dataclasses.dataclass
class Surrogate:
    """A potential (``model`` a :class:`Potential`; its ``gmm`` gives the uncertainty when
    ``use_gmm``) or a one-group :class:`Ensemble` (σ of Eq. (4)).
    """

    model: Potential | Ensemble
    use_gmm: bool = True

    def __post_init__(self):
        self._budget: PaddingBudget | None = None
        if isinstance(self.model, Ensemble) and len(self.model.groups) != 1:
            raise ValueError(
                f"an on-the-fly ensemble must be one group of same-shaped members, got "
                f"{len(self.model.groups)} groups; train it with train_ensemble(n_members=J) and "
                "no variants."
            )
        if isinstance(self.model, Ensemble) and self.model.groups[0].radial is not None:
            raise ValueError(
                "an on-the-fly ensemble must be members of one configuration, but this group's "
                "members have their own cutoff settings (r_max, cutoff_p or avg_num_neighbors), "
                "which fine-tuning does not handle; train it with train_ensemble(n_members=J) "
                "and no variants."
            )

    # ------------------------------------------------------------------ properties
    @property
    def is_ensemble(self) -> bool:
        return isinstance(self.model, Ensemble)

    @property
    def config(self):
        return self.model.groups[0].config if self.is_ensemble else self.model.config

    @property
    def species(self) -> tuple[int, ...]:
        return tuple(self.model.species)

    @property
    def has_uncertainty(self) -> bool:
        return self.is_ensemble or (self.use_gmm and self.model.gmm is not None)

    @property
    def params(self):
        return self.model.groups[0].params if self.is_ensemble else self.model.params

    def with_params(self, params) -> Surrogate:
        """A copy with new parameters (same configuration; the GMM is dropped: refit it)."""
        if self.is_ensemble:
            group = self.model.groups[0]
            new = dataclasses.replace(group, params=params)
            model = dataclasses.replace(self.model, groups=[new])
        else:
            model = dataclasses.replace(self.model, params=params, gmm=None)
        out = Surrogate(model, self.use_gmm)
        out._budget = self._budget
        return out

    # ------------------------------------------------------------------ evaluation
    def calculator(self, skin: float = 0.5) -> NequIPCalculator:
        """An ASE calculator (``results["uncertainty"]`` when :attr:`has_uncertainty`)."""
        model = self.model
        if not self.is_ensemble and not self.use_gmm:
            model = dataclasses.replace(model, gmm=None)
        return NequIPCalculator(model, skin=skin)

    def graphs(self, atoms_list: Sequence[ase.Atoms]) -> GraphDataset:
        return GraphDataset(atoms_list, self.config.r_max, self.species, require_labels=False)

    def predict(self, atoms_list: Sequence[ase.Atoms]) -> dict:
        """Energies [n] (eV), forces (list of [n_atoms, 3], eV/Å), features (single model:
        list of [n_atoms, feature_dim]) and, when available, ``uncertainty`` (list of [n_atoms]).
        """
        dataset = self.graphs(atoms_list)
        self._budget = grow_budget(self._budget, compute_budget(dataset, _EVAL_BATCH))
        dtype = self.config.dtype
        if self.is_ensemble:
            group = self.model.groups[0]
            out = run_batched(
                ensemble_program(group.config),
                (group.params, group.radial),
                dataset,
                _EVAL_BATCH,
                dtype,
                member_axis=True,
                budget=self._budget,
            )
            return {
                "energy": out["energy"].mean(axis=0),
                "forces": [ensemble_mean_forces(f) for f in out["forces"]],
                "uncertainty": [ensemble_sigma(f) for f in out["forces"]],
                "member_forces": out["forces"],
            }
        out = run_batched(
            potential_program(self.config),
            (self.model.params, None),
            dataset,
            _EVAL_BATCH,
            dtype,
            budget=self._budget,
        )
        result = {"energy": out["energy"], "forces": out["forces"], "features": out["features"]}
        if self.has_uncertainty:
            nll = _gmm_nll(self.model.gmm, np.concatenate(out["features"]))
            result["uncertainty"] = np.split(nll, np.cumsum([len(a) for a in atoms_list])[:-1])
        return result

    def structure_scores(self, atoms_list: Sequence[ase.Atoms]) -> np.ndarray:
        """[n] max per-atom uncertainty of each structure (Zhu et al. 2023, Eq. (12))."""
        if not self.has_uncertainty:
            raise ValueError("this surrogate has no uncertainty (a potential without a GMM).")
        return np.array([u.max() for u in self.predict(atoms_list)["uncertainty"]])

    # ------------------------------------------------------------------ refitting
    def refit(
        self,
        train_atoms: Sequence[ase.Atoms],
        tuner: FineTuner,
        *,
        epochs: int,
        key: jax.Array,
        gmm_key: jax.Array,
        gmm_max_components: int = 8,
    ) -> tuple[Surrogate, dict]:
        """Warm-start fine-tuning on ``train_atoms``, then a new GMM (single model with
        ``use_gmm``) on the new training features.

        Args:
            train_atoms: the labelled training structures.
            tuner: the :class:`FineTuner` of this model configuration.
            epochs: fine-tuning epochs.
            key: batch-order key; gmm_key: k-means++ key of the GMM.
            gmm_max_components: K = 1 … this, lowest BIC wins.

        Returns:
            ``(new_surrogate, info)``; ``info`` has the fine-tuning ``history``, ``train_s`` and,
            with a GMM, ``gmm_components`` and ``gmm_s`` (wall seconds).
        """
        t0 = time.perf_counter()
        dataset = GraphDataset(train_atoms, self.config.r_max, self.species, source="OTF set")
        result = tuner.run(self.params, dataset, epochs=epochs, key=key)
        new = self.with_params(result.params)
        info = {"history": result.history, "train_s": time.perf_counter() - t0}
        if not new.is_ensemble and new.use_gmm:
            t0 = time.perf_counter()
            new, info["gmm_components"] = new.fit_gmm(
                train_atoms, key=gmm_key, max_components=gmm_max_components
            )
            info["gmm_s"] = time.perf_counter() - t0
        return new, info

    def fit_gmm(
        self, train_atoms: Sequence[ase.Atoms], *, key: jax.Array, max_components: int
    ) -> tuple[Surrogate, int]:
        """A copy with a GMM fitted on the final features of ``train_atoms`` (BIC over K)."""
        features = np.concatenate(self.predict(train_atoms)["features"])
        params, k = fit_gmm_padded(features, key=key, max_components=max_components)
        out = Surrogate(self.model.with_gmm(params), self.use_gmm)
        out._budget = self._budget
        return out, k

    # ------------------------------------------------------------------ persistence
    def save(self, path: str | Path) -> None:
        """Write the model folder atomically (``Potential.save`` / ``Ensemble.save``)."""
        self.model.save(path)

    @classmethod
    def load(cls, path: str | Path, *, use_gmm: bool = True) -> Surrogate:
        path = Path(path)
        if (path / "ensemble.json").is_file():
            return cls(Ensemble.load(path), use_gmm=False)
        return cls(Potential.load(path), use_gmm=use_gmm)
