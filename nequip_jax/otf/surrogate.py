"""The model an on-the-fly run drives MD with: one potential (+ GMM) or a small ensemble.

A :class:`Surrogate` bundles the model with what the loop needs from it: an ASE calculator,
batch predictions with a fixed padded shape (the training set grows by one structure per oracle
call; a fixed shape keeps that from recompiling), the training-set uncertainty that sets the
trigger threshold, warm-start refits and persistence.

Uncertainty (per atom): the trigger's registered method (:mod:`nequip_jax.uncertainty.registry`)
— a head of the potential fitted on its training features (the GMM negative log-likelihood of Zhu
et al. (2023), Eq. (8), LLPR, ...) or an ensemble method (the force uncertainty σ of Eq. (4)). A
method that carries no information (the random baseline) gives no uncertainty. Structure score:
the maximum over atoms (Eq. (12)).
"""

from __future__ import annotations

import dataclasses
import time
from collections.abc import Sequence
from pathlib import Path

import ase
import jax
import numpy as np

from nequip_jax.calculator import NequIPCalculator
from nequip_jax.data import GraphDataset, PaddingBudget, compute_budget, round_up
from nequip_jax.model import Potential
from nequip_jax.model.ensemble import Ensemble
from nequip_jax.otf.finetune import FineTuner, grow_budget
from nequip_jax.uncertainty.protocol import ModelOutputs
from nequip_jax.uncertainty.registry import get_method

__all__ = ["Surrogate", "threshold_from_scores"]

_EVAL_BATCH = 16
_SCORE_BUCKET = 1024


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


def _host_score(method, state, features: np.ndarray, bucket: int = _SCORE_BUCKET) -> np.ndarray:
    """``method.score`` on float64 features padded to a multiple of ``bucket`` rows (one
    compiled shape while the training set grows), real rows returned."""
    x = np.asarray(features, dtype=np.float64)
    padded = np.zeros((round_up(len(x), bucket), x.shape[1]))
    padded[: len(x)] = x
    with jax.enable_x64(True):
        return np.asarray(method.score(state, ModelOutputs(features=padded)))[: len(x)]


@dataclasses.dataclass
class Surrogate:
    """A potential (``model`` a :class:`Potential`, whose head is fitted for ``method``) or a
    one-group :class:`Ensemble` scored by the ensemble method ``method``.

    Attributes:
        model: the potential or ensemble.
        method: the registered uncertainty method of the trigger (default: ``"ensemble"`` for
            an ensemble; the potential's head, else ``"gmm"``).
    """

    model: Potential | Ensemble
    method: str | None = None

    def __post_init__(self):
        self._budget: PaddingBudget | None = None
        if self.method is None:  # an ensemble's σ; a potential's own head, else the GMM
            head = None if isinstance(self.model, Ensemble) else self.model.head
            self.method = "ensemble" if isinstance(self.model, Ensemble) else "gmm"
            self.method = head.method if head is not None else self.method
        kind = get_method(self.method).model
        if kind != ("ensemble" if isinstance(self.model, Ensemble) else "potential"):
            raise ValueError(
                f"the uncertainty method {self.method!r} needs a {kind} model, got a "
                f"{type(self.model).__name__}."
            )
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
    def informative(self) -> bool:
        """Whether the method's score carries information (not the random baseline)."""
        return get_method(self.method).informative

    @property
    def has_uncertainty(self) -> bool:
        return self.informative and (self.is_ensemble or self.model.head is not None)

    def scoring_model(self) -> Potential | Ensemble:
        """The model as the calculator and MD see it: a potential keeps its head only when
        it gives the trigger's uncertainty."""
        if not self.is_ensemble and not self.has_uncertainty:
            return self.model.with_head(None)
        return self.model

    @property
    def params(self):
        return self.model.groups[0].params if self.is_ensemble else self.model.params

    def with_params(self, params) -> Surrogate:
        """A copy with new parameters (same configuration; a head is dropped: refit it)."""
        if self.is_ensemble:
            group = self.model.groups[0]
            new = dataclasses.replace(group, params=params)
            model = dataclasses.replace(self.model, groups=[new])
        else:
            model = dataclasses.replace(self.model, params=params, head=None)
        out = Surrogate(model, self.method)
        out._budget = self._budget
        return out

    # ------------------------------------------------------------------ evaluation
    def calculator(self, skin: float = 0.5) -> NequIPCalculator:
        """An ASE calculator (``results["uncertainty"]`` when :attr:`has_uncertainty`)."""
        model = self.scoring_model()
        if self.is_ensemble:
            return NequIPCalculator(model, uncertainty=self.method, skin=skin)
        return NequIPCalculator(model, skin=skin)

    def graphs(self, atoms_list: Sequence[ase.Atoms]) -> GraphDataset:
        return GraphDataset(atoms_list, self.config.r_max, self.species, require_labels=False)

    def predict(self, atoms_list: Sequence[ase.Atoms]) -> dict:
        """Energies [n] (eV), forces (list of [n_atoms, 3], eV/Å), features (single model:
        list of [n_atoms, feature_dim]) and, when available, ``uncertainty`` (list of [n_atoms]).
        """
        dataset = self.graphs(atoms_list)
        self._budget = grow_budget(self._budget, compute_budget(dataset, _EVAL_BATCH))
        if self.is_ensemble:
            out = self.model.predict_graphs(
                [dataset], _EVAL_BATCH, method=self.method, budget=self._budget
            )
            return {k: out[k] for k in ("energy", "forces", "uncertainty", "member_forces")}
        # The head is scored on the host: its state's shape (e.g. the GMM's K) changes at every
        # refit, and inside the model's program that would recompile the model each time.
        out = self.model.with_head(None).predict_graphs(dataset, _EVAL_BATCH, budget=self._budget)
        result = {"energy": out["energy"], "forces": out["forces"], "features": out["features"]}
        if self.has_uncertainty:
            head = self.model.head
            u = _host_score(get_method(head.method), head.state, np.concatenate(out["features"]))
            result["uncertainty"] = np.split(u, np.cumsum([len(a) for a in atoms_list])[:-1])
        return result

    def structure_scores(self, atoms_list: Sequence[ase.Atoms]) -> np.ndarray:
        """[n] max per-atom uncertainty of each structure (Zhu et al. 2023, Eq. (12))."""
        if not self.has_uncertainty:
            raise ValueError(
                f"this surrogate has no uncertainty (method {self.method!r}, a potential without "
                "a fitted head or an uninformative method)."
            )
        return np.array([u.max() for u in self.predict(atoms_list)["uncertainty"]])

    # ------------------------------------------------------------------ refitting
    def refit(
        self,
        train_atoms: Sequence[ase.Atoms],
        tuner: FineTuner,
        *,
        epochs: int,
        key: jax.Array,
        head_key: jax.Array,
        head_options: dict | None = None,
    ) -> tuple[Surrogate, dict]:
        """Warm-start fine-tuning on ``train_atoms``, then (a potential with an informative
        method) a new head fitted on the new training features.

        Args:
            train_atoms: the labelled training structures.
            tuner: the :class:`FineTuner` of this model configuration.
            epochs: fine-tuning epochs.
            key: batch-order key; head_key: the key of the head's fit.
            head_options: keyword options of the method's ``fit`` (e.g. the GMM's
                ``max_components``).

        Returns:
            ``(new_surrogate, info)``; ``info`` has the fine-tuning ``history``, ``train_s`` and,
            with a head, ``head`` (the method's ``describe``) and ``head_s`` (wall seconds).
        """
        t0 = time.perf_counter()
        dataset = GraphDataset(train_atoms, self.config.r_max, self.species, source="OTF set")
        result = tuner.run(self.params, dataset, epochs=epochs, key=key)
        new = self.with_params(result.params)
        info = {"history": result.history, "train_s": time.perf_counter() - t0}
        if not new.is_ensemble and new.informative:
            t0 = time.perf_counter()
            new, info["head"] = new.fit_head(train_atoms, key=head_key, **(head_options or {}))
            info["head_s"] = time.perf_counter() - t0
        return new, info

    def fit_head(
        self, train_atoms: Sequence[ase.Atoms], *, key: jax.Array, **options
    ) -> tuple[Surrogate, dict]:
        """A copy whose potential carries the method's head fitted on the final features of
        ``train_atoms``; returns it and the method's ``describe`` of the fitted state."""
        method = get_method(self.method)
        features = np.concatenate(self.predict(train_atoms)["features"])
        state = method.fit(ModelOutputs(features=features), key=key, **options)
        out = Surrogate(self.model.with_head(method.name, state), self.method)
        out._budget = self._budget
        return out, method.describe(state)

    # ------------------------------------------------------------------ persistence
    def save(self, path: str | Path) -> None:
        """Write the model folder atomically (``Potential.save`` / ``Ensemble.save``)."""
        self.model.save(path)

    @classmethod
    def load(cls, path: str | Path, *, method: str | None = None) -> Surrogate:
        """The surrogate of a saved potential or ensemble folder for the trigger ``method``
        (default: ``"ensemble"`` for an ensemble, the saved head's method or ``"gmm"`` for a
        potential)."""
        path = Path(path)
        if (path / "ensemble.json").is_file():
            return cls(Ensemble.load(path), method)
        return cls(Potential.load(path), method)
