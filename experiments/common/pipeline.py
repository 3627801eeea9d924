"""Shared training and evaluation of the uncertainty methods: the three of Zhu et al. (2023)
and every other method of :mod:`nequip_jax.uncertainty.registry`.

The methods (Sec. II of the paper):

- ``gmm``: one NequIP model with a Gaussian mixture on its final scalar features; the per-atom
  uncertainty is the negative log-likelihood, Eq. (8).
- every other informative single-model method of the registry (e.g. ``llpr``): the same single
  model with that method's head fitted on its training features.
- ``traditional``: an ensemble of J models differing only in initial weights and batch order;
  per-atom uncertainty σ, Eq. (4); force = member mean, Eq. (1).
- ``diverse``: the first ``n_diverse_traditional`` traditional members plus one model per
  hyperparameter variant (the paper: 3 + 7). Variants that keep the parameter shapes (other
  ``r_max``, ``cutoff_p``, learning rate or loss weights) are trained together as one vmapped
  piece (:func:`nequip_jax.uncertainty.ensemble.group_members`).

The single model of the GMM (and of every other head) is traditional member 0 (same seed, same
training), so the methods share their networks the way the paper describes the diverse
ensemble ("three networks from the traditional ensemble"). Every trained piece (the traditional
group, each variant, each head) is saved under a folder named after a hash of its configuration
and training data; a later run — or another experiment — with the same inputs loads it instead
of training again.

Randomness: the data split and the member weights/batch orders come from the run seed through
:func:`nequip_jax.train.loop.member_keys`; the GMM and random selections use
``fold_in(key(seed), tag)`` with the constants of :data:`KEY_TAGS`.
"""

from __future__ import annotations

import argparse
import dataclasses
import hashlib
import json
import time
from collections.abc import Callable, Mapping, Sequence
from pathlib import Path
from typing import Any, NamedTuple

import ase
import jax
import numpy as np

from nequip_jax._cache import enable_compilation_cache
from nequip_jax._io import atomic_write_json
from nequip_jax.data import SPLITS, DataError, search_folders
from nequip_jax.model import Potential
from nequip_jax.train import RunConfig, load_config
from nequip_jax.train.loop import train_group
from nequip_jax.uncertainty.ensemble import Ensemble, EnsembleGroup, group_members
from nequip_jax.uncertainty.metrics import force_error_per_atom
from nequip_jax.uncertainty.protocol import ModelOutputs
from nequip_jax.uncertainty.registry import get_method, methods_for

__all__ = [
    "METHODS",
    "PAPER_METHODS",
    "LABELS",
    "UNCERTAINTY",
    "KEY_TAGS",
    "REPO_ROOT",
    "MethodsConfig",
    "TrainedMethods",
    "Prediction",
    "data_root",
    "check_source",
    "fingerprint",
    "run_config",
    "train_methods",
    "training_summary",
    "predict_methods",
    "structure_uncertainty",
    "display_unit",
    "axis_label",
    "mean_sd",
    "format_mean_sd",
    "aggregate_seeds",
    "compare_to_spread",
    "add_common_arguments",
    "experiment_main",
    "subsample",
    "seeds_from_args",
    "hardware_note",
]

#: The three methods of the paper, in the order of its figures.
PAPER_METHODS = ("gmm", "traditional", "diverse")
_SINGLE = methods_for("potential", informative=True)
#: Every method: the single model with each informative head of the registry, then the two
#: ensembles.
METHODS = (*_SINGLE, "traditional", "diverse")
#: The registered uncertainty method of each experiment method.
UNCERTAINTY = {**{m: m for m in _SINGLE}, "traditional": "ensemble", "diverse": "ensemble"}
#: Display names.
LABELS = {
    **{m: get_method(m).label for m in _SINGLE},
    "traditional": "traditional ensemble",
    "diverse": "diverse ensemble",
}
#: Constants folded into ``jax.random.key(seed)`` for the draws made by the experiments.
KEY_TAGS = {"head": 7, "random_selection": 11}
REPO_ROOT = Path(__file__).resolve().parents[2]
#: Where ``python -m experiments.xtb_data`` writes the GFN2-xTB twin of 3BPA.
XTB_ROOT = REPO_ROOT / "data" / "3bpa_xtb"


# ---------------------------------------------------------------------------------------------
# configuration


@dataclasses.dataclass(frozen=True)
class MethodsConfig:
    """How the three methods are trained.

    Attributes:
        base: a :func:`nequip_jax.train.load_config` preset (``"cpu"`` or ``"paper"``).
        model: overrides of the model section (e.g. ``{"num_features": 16}``).
        optim: overrides of the optimisation section (e.g. ``{"plateau_patience": 10}``).
            Networks train until their stopping rule (the learning-rate floor or early
            stopping; ``max_epochs`` is a safety net whose use is recorded).
        n_traditional: J of the traditional ensemble (10 in the paper).
        n_diverse_traditional: traditional members reused in the diverse ensemble (3).
        diverse_variants: one override mapping (``{"model": {...}, "optim": {...}}``) per extra
            diverse member (7 in the paper).
        max_components: largest number of GMM components tried by BIC (49 in the authors' code).
        gmm_max_iter: EM iterations per candidate (scikit-learn's default 100).
    """

    base: str = "cpu"
    model: Mapping[str, Any] = dataclasses.field(default_factory=dict)
    optim: Mapping[str, Any] = dataclasses.field(default_factory=dict)
    n_traditional: int = 10
    n_diverse_traditional: int = 3
    diverse_variants: tuple[Mapping[str, Any], ...] = ()
    max_components: int = 49
    gmm_max_iter: int = 100

    def __post_init__(self):
        if self.n_traditional < 2:
            raise ValueError(
                f"n_traditional={self.n_traditional}: an ensemble needs at least 2 members."
            )
        if not 1 <= self.n_diverse_traditional <= self.n_traditional:
            raise ValueError(
                f"n_diverse_traditional={self.n_diverse_traditional} must lie in "
                f"1 … n_traditional={self.n_traditional}."
            )
        if self.n_diverse_traditional + len(self.diverse_variants) < 2:
            raise ValueError("the diverse ensemble needs at least 2 members; add variants.")

    def with_model(self, **model: Any) -> MethodsConfig:
        """A copy with extra model overrides (e.g. ``num_features=8``)."""
        return dataclasses.replace(self, model={**self.model, **model})

    def to_dict(self) -> dict:
        return json.loads(json.dumps(dataclasses.asdict(self)))


def _merge(base: Mapping, override: Mapping) -> dict:
    out = dict(base)
    for key, value in override.items():
        if isinstance(value, Mapping):
            out[key] = _merge(out.get(key, {}) or {}, value)
        else:
            out[key] = value
    return out


def run_config(
    mc: MethodsConfig,
    *,
    seed: int,
    variant: Mapping[str, Any] | None = None,
) -> RunConfig:
    """The :class:`RunConfig` of one training group: preset + overrides (+ a diverse variant).

    Raises:
        ValueError: the result sets a wall-clock budget (``optim.max_time_s``): networks of
            reported experiments stop by their convergence rule, never by the clock.
    """
    raw = load_config(mc.base).to_dict()
    raw = _merge(raw, {"seed": int(seed), "model": dict(mc.model), "optim": dict(mc.optim)})
    if variant:
        raw = _merge(raw, variant)
    if raw["optim"].get("max_time_s") is not None:
        raise ValueError(
            f"optim.max_time_s={raw['optim']['max_time_s']}: experiment networks stop by their "
            "convergence rule, not a wall-clock budget; remove max_time_s from the preset or "
            "the overrides."
        )
    return RunConfig.from_dict(raw)


# ---------------------------------------------------------------------------------------------
# data sources


def data_root(source: str, override: str | Path | None = None) -> Path | None:
    """Folder of a data source: ``"dft"`` (the default search order, ``None``) or ``"xtb"``
    (``data/3bpa_xtb``); ``override`` replaces either."""
    if override is not None:
        return Path(override)
    if source == "dft":
        return None
    if source == "xtb":
        return XTB_ROOT
    raise ValueError(f"data source {source!r}: choose 'dft' or 'xtb'.")


def _first_hit(file_name: str, root: Path | None) -> Path | None:
    for folder in search_folders(root):
        if (folder / file_name).is_file():
            return folder / file_name
    return None


def check_source(source: str, root: Path | None, splits: Sequence[str]) -> dict[str, str]:
    """Make sure every split is read from one level of theory; returns split -> file used.

    The 3BPA loader falls back to later folders of its search order when a file is missing, which
    would silently mix GFN2-xTB and DFT labels. For ``root`` given, every file (and, for
    ``test_1200K`` without its own file, the ``train_300K``/``train_mixedT`` pair of its stand-in)
    must lie in ``root`` or ``root/3bpa``; for ``"dft"`` no file may come from the xTB folder.

    Raises:
        DataError: a file is missing from the source (with the command that makes it).
    """
    used: dict[str, str] = {}
    allowed = None if root is None else {root.resolve(), (root / "3bpa").resolve()}
    for split in splits:
        names = [SPLITS[split]]
        hit = _first_hit(SPLITS[split], root)
        if hit is None and split == "test_1200K":
            names = [SPLITS["train_300K"], SPLITS["train_mixedT"]]
        for name in names:
            path = _first_hit(name, root)
            ok = path is not None and (
                path.parent.resolve() in allowed
                if allowed is not None
                else XTB_ROOT.resolve() not in path.resolve().parents
            )
            if not ok:
                remedy = (
                    "generate the GFN2-xTB twin with `python -m experiments.xtb_data --out "
                    "data/3bpa_xtb`"
                    if source == "xtb"
                    else "set NEQUIP_JAX_DATA to the folder holding the DFT 3BPA files"
                )
                raise DataError(
                    f"{source} data: {name} (needed for {split}) is not in "
                    f"{root if root is not None else 'the DFT folders'} (found: {path}); "
                    f"{remedy}. Reading it from elsewhere would mix levels of theory."
                )
            used[f"{split}:{name}"] = str(path)
    return used


def fingerprint(frames: Sequence[ase.Atoms]) -> str:
    """SHA-256 of species, positions and labels of ``frames`` (order matters)."""
    digest = hashlib.sha256()
    for atoms in frames:
        digest.update(np.asarray(atoms.numbers, np.int64).tobytes())
        digest.update(np.asarray(atoms.positions, np.float64).tobytes())
        if atoms.calc is not None:
            for key in ("energy", "forces"):
                if key in atoms.calc.results:
                    digest.update(np.asarray(atoms.calc.results[key], np.float64).tobytes())
    return digest.hexdigest()


# ---------------------------------------------------------------------------------------------
# training


class TrainedMethods(NamedTuple):
    """The trained methods (``None`` / absent where not requested) and what their training cost.

    ``singles`` maps each requested single-model method to the single model with that method's
    head. ``info`` holds, per piece, the wall time (s), the epochs run and the best epoch of
    every member, the per-member records ``networks`` (:func:`nequip_jax.train.loop.
    network_records`), and per head its fit time and the method's ``describe`` (e.g. the GMM's
    chosen number of components).
    """

    singles: dict[str, Potential]
    traditional: Ensemble | None
    diverse: Ensemble | None
    info: dict


def _digest(obj: Any) -> str:
    return hashlib.sha256(json.dumps(obj, sort_keys=True).encode()).hexdigest()[:16]


def _epochs_run(workdir: Path) -> int:
    path = workdir / "metrics.jsonl"
    if not path.is_file():
        return 0
    epochs = {json.loads(line)["epoch"] for line in path.read_text().splitlines() if line.strip()}
    return len(epochs)


def _train_piece(
    configs: list[RunConfig],
    members: list[int],
    folder: Path,
    data: tuple[list[ase.Atoms], list[ase.Atoms]],
    recipe: dict,
    verbose: bool,
) -> tuple[EnsembleGroup, dict]:
    """Train (or load) one vmapped group of same-shaped members (which may differ in their
    cutoff settings, see :func:`nequip_jax.train.loop.train_group`)."""
    done = folder / "piece.json"
    if done.is_file() and (folder / "ensemble").is_dir():
        info = json.loads(done.read_text())
        if info.get("recipe") == recipe:
            group = Ensemble.load(folder / "ensemble").groups[0]
            return group, {**info["info"], "cached": True}
    # An interrupted piece continues from its last epoch: the folder name hashes the recipe, so
    # a checkpoint found there belongs to these settings, and resuming is exact.
    resumed = (folder / "train" / "last.ckpt").is_file()
    start = time.perf_counter()
    result = train_group(
        configs, members, folder / "train", data=data, verbose=verbose, resume=True
    )
    # A resumed piece's wall time is that of all its epochs (metrics.jsonl), not of this call.
    seconds = max(n["wall_s"] for n in result.networks) if resumed else time.perf_counter() - start
    group = EnsembleGroup(
        result.prep.model_config,
        result.params,
        members,
        result.prep.species,
        result.prep.radial,
    )
    Ensemble(groups=[group], species=result.prep.species).save(folder / "ensemble")
    info = {
        "folder": folder.name,
        "seconds": seconds,
        "members": members,
        "epochs": _epochs_run(folder / "train"),
        "best_epoch": [int(e) for e in np.asarray(result.best_epoch)],
        "networks": result.networks,
        "n_train": len(data[0]),
        "n_val": len(data[1]),
        "resumed": resumed,
    }
    atomic_write_json(done, {"recipe": recipe, "info": info})
    return group, {**info, "cached": False}


def _slice_group(group: EnsembleGroup, n: int) -> EnsembleGroup:
    return group.take(range(min(n, len(group.members))))


def _members_needed(mc: MethodsConfig, methods: Sequence[str]) -> int:
    need = 0
    if any(m in _SINGLE for m in methods):
        need = 1
    if "diverse" in methods:
        need = max(need, mc.n_diverse_traditional)
    if "traditional" in methods:
        need = max(need, mc.n_traditional)
    return need


def train_methods(
    mc: MethodsConfig,
    *,
    seed: int,
    data: tuple[list[ase.Atoms], list[ase.Atoms]],
    models_dir: str | Path,
    methods: Sequence[str] = METHODS,
    verbose: bool = False,
) -> TrainedMethods:
    """Train (or load from ``models_dir``) the requested methods on ``data = (train, val)``.

    Pieces are stored in ``models_dir/<name>-<hash>`` where the hash covers the run
    configuration, the member numbers and the data fingerprint, so different data or settings
    never share a folder.

    Args:
        mc: the training settings.
        seed: run seed (weights and batch order of every member derive from it).
        data: training and validation frames.
        models_dir: cache folder of trained pieces.
        methods: a subset of :data:`METHODS`.
        verbose: training progress on the terminal.
    """
    unknown = set(methods) - set(METHODS)
    if unknown:
        raise ValueError(f"unknown methods {sorted(unknown)}; choose from {METHODS}.")
    models_dir = Path(models_dir)
    data_hash = fingerprint(data[0]) + fingerprint(data[1])
    info: dict = {"data_fingerprint": data_hash[:16]}

    n_trad = _members_needed(mc, methods)
    base = run_config(mc, seed=seed)
    recipe = {"config": base.to_dict(), "members": list(range(n_trad)), "data": data_hash}
    trad, info["traditional"] = _train_piece(
        [base] * n_trad,
        list(range(n_trad)),
        models_dir / f"traditional{n_trad}-{_digest(recipe)}",
        data,
        recipe,
        verbose,
    )

    traditional = diverse = None
    if "traditional" in methods:
        traditional = Ensemble([_slice_group(trad, mc.n_traditional)], trad.species)
    if "diverse" in methods:
        groups = [_slice_group(trad, mc.n_diverse_traditional)]
        info["variants"] = []
        variants = mc.diverse_variants
        alone = [run_config(mc, seed=seed, variant=v) for v in variants]
        # Variants of equal shape (e.g. other r_max or learning rate) train as one vmapped piece.
        for indices in group_members(alone):
            members = [100 + i for i in indices]  # keys distinct from every traditional member
            configs = [run_config(mc, seed=seed, variant=variants[i]) for i in indices]
            if len(indices) == 1:  # the recipe of a single variant (earlier caches stay valid)
                recipe = {"config": configs[0].to_dict(), "members": members, "data": data_hash}
            else:
                recipe = {
                    "configs": [c.to_dict() for c in configs],
                    "members": members,
                    "data": data_hash,
                }
            name = "variant" + "-".join(str(i) for i in indices)
            group, piece = _train_piece(
                configs,
                members,
                models_dir / f"{name}-{_digest(recipe)}",
                data,
                recipe,
                verbose,
            )
            groups.append(group)
            info["variants"].append({**piece, "variants": [dict(variants[i]) for i in indices]})
        diverse = Ensemble(groups, trad.species)
    singles = {}
    for m in methods:
        if m in _SINGLE:
            singles[m], info[m] = _fit_head(m, mc, seed, trad, data, models_dir, data_hash)
    return TrainedMethods(singles, traditional, diverse, info)


def training_summary(info: dict) -> dict:
    """Seconds, epochs and folders of the pieces behind a :class:`TrainedMethods` ``info``."""
    trad = info["traditional"]
    out = {
        "traditional_s": trad["seconds"],
        "traditional_epochs": trad["epochs"],
        "cached": bool(trad.get("cached")),
        "folders": {"traditional": trad["folder"]},
    }
    if "variants" in info:
        out["variants_s"] = sum(v["seconds"] for v in info["variants"])
        out["variant_epochs"] = [v["epochs"] for v in info["variants"]]
        out["folders"]["variants"] = [v["folder"] for v in info["variants"]]
    for m in _SINGLE:
        if m in info:
            out[f"{m}_s"] = info[m]["seconds"]
            out[f"{m}_head"] = info[m]["head"]
            out["folders"][m] = info[m]["folder"]
    if "gmm" in info:
        out["gmm_components"] = info["gmm"]["head"]["n_components"]
    return out


def head_options(mc: MethodsConfig, method: str) -> dict:
    """Keyword options of ``method``'s fit from the training settings (the GMM's BIC sweep:
    ``max_components`` and ``max_iter``; other methods none)."""
    if method == "gmm":
        return {"max_components": mc.max_components, "max_iter": mc.gmm_max_iter}
    return {}


def _fit_head(method: str, mc, seed, trad: EnsembleGroup, data, models_dir: Path, data_hash):
    """Fit (or load) ``method``'s head on the training features of traditional member 0."""
    member0 = trad.member(0)
    params_hash = hashlib.sha256(
        b"".join(np.asarray(x).tobytes() for x in jax.tree.leaves(member0.params))
    ).hexdigest()
    options = head_options(mc, method)
    recipe = {
        "method": method,
        "params": params_hash,
        "data": data_hash,
        "options": options,
        "seed": seed,
    }
    folder = models_dir / f"{method}-{_digest(recipe)}"
    done = folder / "piece.json"
    if done.is_file() and (folder / "model").is_dir():
        saved = json.loads(done.read_text())
        if saved.get("recipe") == recipe:
            return Potential.load(folder / "model"), {**saved["info"], "cached": True}
    uncertainty = get_method(method)
    key = jax.random.fold_in(jax.random.key(seed), KEY_TAGS["head"])
    start = time.perf_counter()
    features = np.concatenate(member0.predict(data[0])["features"])
    state = uncertainty.fit(ModelOutputs(features=features), key=key, **options)
    single = member0.with_head(method, state)
    seconds = time.perf_counter() - start
    single.save(folder / "model")
    info = {"folder": folder.name, "seconds": seconds, "head": uncertainty.describe(state)}
    atomic_write_json(done, {"recipe": recipe, "info": info})
    return single, {**info, "cached": False}


# ---------------------------------------------------------------------------------------------
# prediction


class Prediction(NamedTuple):
    """Per-atom errors and uncertainties of one method on a list of structures.

    Attributes:
        eps: [n_atoms] per-atom force RMSE ε (Eq. (2), eV/Å); NaN without reference forces.
        u: [n_atoms] uncertainty: GMM NLL (Eq. (8), nats) or ensemble σ (Eq. (4), eV/Å).
        structure: [n_atoms] index of each atom's structure.
        energy: [S] predicted energies (eV; the member mean for ensembles).
        energy_true: [S] reference energies (eV; NaN when absent).
        energy_std: [S] spread of the members' energies (eV; NaN for the single model).
    """

    eps: np.ndarray
    u: np.ndarray
    structure: np.ndarray
    energy: np.ndarray
    energy_true: np.ndarray
    energy_std: np.ndarray


def _labels(frames: Sequence[ase.Atoms]) -> tuple[np.ndarray, list[np.ndarray | None]]:
    energies, forces = [], []
    for atoms in frames:
        results = atoms.calc.results if atoms.calc is not None else {}
        energies.append(float(results["energy"]) if "energy" in results else np.nan)
        forces.append(np.asarray(results["forces"]) if "forces" in results else None)
    return np.array(energies), forces


def _prediction(pred: dict, u: list[np.ndarray], frames, energy_std) -> Prediction:
    e_true, f_true = _labels(frames)
    eps = [
        force_error_per_atom(fp, ft) if ft is not None else np.full(len(fp), np.nan)
        for fp, ft in zip(pred["forces"], f_true)
    ]
    n_atoms = [len(a) for a in frames]
    return Prediction(
        eps=np.concatenate(eps),
        u=np.concatenate(u).astype(np.float64),
        structure=np.repeat(np.arange(len(frames)), n_atoms),
        energy=np.asarray(pred["energy"], np.float64),
        energy_true=e_true,
        energy_std=np.asarray(energy_std, np.float64),
    )


def predict_methods(
    trained: TrainedMethods,
    frames: Sequence[ase.Atoms],
    *,
    cache: str | Path | None = None,
    batch_size: int = 32,
) -> dict[str, Prediction]:
    """Predictions of every trained method on ``frames``.

    With ``cache`` (a file path ending in ``.npz``) the arrays are stored there and reused when
    the file exists and the frames and models are unchanged.
    """
    tag = _digest({"frames": fingerprint(frames), "models": _model_tags(trained)})
    if cache is not None and Path(cache).is_file():
        with np.load(cache) as saved:
            if str(saved["tag"]) == tag:
                return {
                    m: Prediction(*(saved[f"{m}.{f}"] for f in Prediction._fields))
                    for m in METHODS
                    if f"{m}.eps" in saved
                }
    out: dict[str, Prediction] = {}
    for name, single in trained.singles.items():  # the head's score, in the model's program
        pred = single.predict(frames, batch_size=batch_size)
        no_spread = np.full(len(frames), np.nan)
        out[name] = _prediction(pred, pred["uncertainty"], frames, no_spread)
    for name, ensemble in (("traditional", trained.traditional), ("diverse", trained.diverse)):
        if ensemble is not None:
            pred = ensemble.predict(frames, batch_size=batch_size, method=UNCERTAINTY[name])
            out[name] = _prediction(pred, pred["uncertainty"], frames, pred["energy_std"])
    if cache is not None:
        arrays = {f"{m}.{f}": getattr(p, f) for m, p in out.items() for f in Prediction._fields}
        Path(cache).parent.mkdir(parents=True, exist_ok=True)
        tmp = Path(cache).with_suffix(".part.npz")
        np.savez(tmp, tag=np.array(tag), **arrays)
        tmp.replace(cache)
    return out


def _model_tags(trained: TrainedMethods) -> list:
    """Folder names (hashes of the recipes) and training times of the pieces behind each
    method: a retrained piece (time budgets make training non-deterministic) gets a new tag."""
    info = trained.info

    def tag(piece):
        return None if piece is None else [piece.get("folder"), piece.get("seconds")]

    return [
        tag(info.get("traditional")),
        [tag(v) for v in info.get("variants", [])],
        {m: tag(info.get(m)) for m in sorted(trained.singles)},
        trained.traditional is not None,
        trained.diverse is not None,
    ]


def display_unit(method: str) -> tuple[str, float]:
    """Unit and scale factor in which a method's per-atom uncertainty is shown (eV/Å as
    meV/Å)."""
    unit = get_method(UNCERTAINTY[method]).unit
    return ("meV/Å", 1000.0) if unit == "eV/Å" else (unit, 1.0)


def axis_label(method: str) -> str:
    """Axis label of a method's per-atom uncertainty (in its own unit, e.g. ``GMM (nats)``)."""
    m = get_method(UNCERTAINTY[method])
    return f"{m.label} ({m.unit})"


def structure_uncertainty(method: str, pred: Prediction) -> np.ndarray:
    """[S] structure-level uncertainty (text before Eq. (11)): the registered method's
    aggregation (the sum of the atomic NLLs for the GMM, the square root of the summed atomic
    variances σ² for the ensembles)."""
    n = int(pred.energy.shape[0])
    return get_method(UNCERTAINTY[method]).aggregate(pred.u, pred.structure, n)


# ---------------------------------------------------------------------------------------------
# statistics over seeds


def mean_sd(values: Sequence[float]) -> tuple[float, float, int]:
    """Mean, sample standard deviation (ddof = 1; NaN for one value) and count of the finite
    values (NaN entries are left out: e.g. ε̄_200 of a model with no atom above 200 meV/Å)."""
    x = np.asarray(values, np.float64)
    x = x[np.isfinite(x)]
    if x.size == 0:
        return float("nan"), float("nan"), 0
    sd = float(np.std(x, ddof=1)) if x.size > 1 else float("nan")
    return float(np.mean(x)), sd, int(x.size)


def format_mean_sd(values: Sequence[float], scale: float = 1.0, digits: int = 1) -> str:
    """``"m ± s"`` of ``scale * values`` (``"m"`` for one seed; ``"n/a"`` for none)."""
    m, s, n = mean_sd(values)
    if n == 0:
        return "n/a"
    if n == 1:
        return f"{scale * m:.{digits}f} (1 seed)"
    return f"{scale * m:.{digits}f} ± {scale * s:.{digits}f}"


def compare_to_spread(
    improvements: Sequence[float], baseline: Sequence[float] | None = None
) -> dict:
    """Is a per-seed improvement (positive = better) larger than the seed-to-seed spread?

    ``improvements`` are paired differences over seeds (e.g. ε̄_random − ε̄_active); ``baseline``
    the per-seed values of the reference (e.g. ε̄_random). The spread is the larger of the
    standard deviation of the improvements and of the baseline. Verdict ``"yes"`` when
    mean − spread > 0, ``"worse"`` when mean + spread < 0, else ``"within spread"``; fewer than
    two seeds give ``"n/a"``.

    Returns:
        ``mean``, ``sd``, ``spread``, ``n``, ``n_better`` (seeds with improvement > 0) and
        ``verdict``.
    """
    m, s, n = mean_sd(improvements)
    spread = s
    if baseline is not None:
        b = mean_sd(baseline)[1]
        spread = float(np.nanmax([s, b])) if np.isfinite([s, b]).any() else float("nan")
    x = np.asarray(improvements, np.float64)
    if n < 2 or not np.isfinite(spread):
        verdict = "n/a"
    elif m - spread > 0:
        verdict = "yes"
    elif m + spread < 0:
        verdict = "worse"
    else:
        verdict = "within spread"
    return {
        "mean": m,
        "sd": s,
        "spread": spread,
        "n": n,
        "n_better": int(np.sum(x[np.isfinite(x)] > 0)),
        "verdict": verdict,
    }


# ---------------------------------------------------------------------------------------------
# command line and environment


def add_common_arguments(parser: argparse.ArgumentParser, presets: Sequence[str]) -> None:
    """``--preset``, ``--seed``/``--seeds``, ``--data``, ``--data-root``, ``--workdir``,
    ``--models``, ``--verbose``."""
    parser.add_argument("--preset", choices=sorted(presets), default="cpu")
    parser.add_argument("--seed", type=int, default=None, help="run a single seed")
    parser.add_argument("--seeds", type=int, nargs="+", default=None, help="seeds to run")
    parser.add_argument("--data", choices=("dft", "xtb"), default=None)
    parser.add_argument(
        "--data-root", default=None, help="folder replacing the data source's default folder"
    )
    parser.add_argument("--workdir", default=None, help="output folder (default runs/<name>)")
    parser.add_argument(
        "--models", default=None, help="cache of trained models (default runs/models)"
    )
    parser.add_argument("--verbose", action="store_true", help="training progress")


def subsample(frames: list, n: int | None) -> list:
    """``n`` evenly spaced frames of ``frames`` (all of them when ``n`` is None or larger)."""
    if n is None or n >= len(frames):
        return list(frames)
    index = np.linspace(0, len(frames) - 1, n).round().astype(int)
    return [frames[i] for i in index]


def experiment_main(
    name: str,
    doc: str | None,
    presets: Mapping[str, Any],
    run: Callable[..., Any],
    argv: Sequence[str] | None = None,
    *,
    trains_models: bool = True,
    add_arguments: Callable[[argparse.ArgumentParser], None] | None = None,
    extra_options: Callable[[argparse.Namespace, Path, str], dict] | None = None,
) -> None:
    """Command line of one experiment (``python -m experiments.<name>``).

    Parses the common arguments (:func:`add_common_arguments`) and calls ``run(config, workdir,
    seeds=..., data=..., root=..., preset=..., [models_dir=..., verbose=...], **extra)`` with the
    outputs in ``runs/<name>/<preset>-<data>`` unless ``--workdir`` is given.

    Args:
        name: the experiment's package below ``experiments``.
        doc: the usage text (the ``__main__`` module's docstring).
        presets: preset name → config (each with a ``seeds`` and a ``data`` attribute).
        run: the experiment's ``run`` function.
        argv: arguments (``None``: ``sys.argv[1:]``).
        trains_models: pass ``models_dir`` (``--models``, default ``runs/models/<preset>``) and
            ``verbose``.
        add_arguments: adds the experiment's own arguments to the parser.
        extra_options: ``(args, runs_folder, "<preset>-<data>") -> dict`` of further keyword
            arguments of ``run``.
    """
    parser = argparse.ArgumentParser(prog=f"python -m experiments.{name}", description=doc)
    add_common_arguments(parser, presets)
    if add_arguments is not None:
        add_arguments(parser)
    args = parser.parse_args(argv)
    config = presets[args.preset]
    data = args.data or config.data
    runs = REPO_ROOT / "runs"
    enable_compilation_cache()
    tag = f"{args.preset}-{data}"
    options: dict[str, Any] = {
        "seeds": seeds_from_args(args, config.seeds),
        "data": data,
        "root": data_root(data, args.data_root),
        "preset": args.preset,
    }
    if trains_models:
        options["models_dir"] = Path(args.models or runs / "models" / args.preset)
        options["verbose"] = args.verbose
    if extra_options is not None:
        options.update(extra_options(args, runs, tag))
    run(config, Path(args.workdir or runs / name / tag), **options)


def seeds_from_args(args: argparse.Namespace, default: Sequence[int]) -> tuple[int, ...]:
    """``--seeds`` if given, else ``--seed``, else the preset's ``default`` seeds."""
    if args.seeds:
        return tuple(args.seeds)
    if args.seed is not None:
        return (args.seed,)
    return tuple(default)


def hardware_note() -> str:
    """One line: device kind, CPU count and load average at the time of the call."""
    import os

    load = os.getloadavg() if hasattr(os, "getloadavg") else (float("nan"),) * 3
    return (
        f"{jax.devices()[0].platform} ({os.cpu_count()} cores, jax {jax.__version__}), "
        f"load average {load[0]:.1f}"
    )


def aggregate_seeds(per_seed: Sequence[Mapping]) -> dict:
    """Mean ± sd over seeds of nested dictionaries with equal keys and numeric leaves.

    Args:
        per_seed: one nested mapping per seed (e.g. ``{test: {method: {metric: value}}}``).

    Returns:
        The same nesting with each leaf replaced by ``{"mean", "sd", "n", "values"}``
        (see :func:`mean_sd`); booleans count as 0/1, keys missing in some seeds are skipped
        for those seeds.
    """
    first = per_seed[0]
    if isinstance(first, Mapping):
        keys = list(dict.fromkeys(k for d in per_seed for k in d))
        return {
            k: aggregate_seeds([d[k] for d in per_seed if isinstance(d, Mapping) and k in d])
            for k in keys
        }
    values = [float(v) if v is not None else float("nan") for v in per_seed]
    m, s, n = mean_sd(values)
    return {"mean": m, "sd": s, "n": n, "values": values}
