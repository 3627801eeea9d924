"""Training (or loading) the uncertainty methods: the three of Zhu et al. (2023)
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
  piece (:func:`nequip_jax.training.ensemble.group_members`).

The single model of the GMM (and of every other head) is traditional member 0 (same seed, same
training), so the methods share their networks the way the paper describes the diverse
ensemble ("three networks from the traditional ensemble"). Every trained piece (the traditional
group, each variant, each head) is saved under a folder named after a hash of its configuration
and training data; a later run — or another experiment — with the same inputs loads it instead
of training again.

Randomness: the data split and the member weights/batch orders come from the run seed through
:func:`nequip_jax.training.loop.member_keys`; the GMM and random selections use
``fold_in(key(seed), tag)`` with the constants of :data:`KEY_TAGS`.
"""

from __future__ import annotations

import hashlib
import json
import time
from collections.abc import Sequence
from pathlib import Path
from typing import NamedTuple

import ase
import jax
import numpy as np

from experiments.common.config import MethodsConfig, head_options, run_config
from experiments.common.methods import KEY_TAGS, METHODS, SINGLE_METHODS
from experiments.common.sources import digest, fingerprint
from nequip_jax._io import atomic_write_json
from nequip_jax.model import Potential
from nequip_jax.model.ensemble import Ensemble, EnsembleGroup
from nequip_jax.training import RunConfig
from nequip_jax.training.ensemble import group_members
from nequip_jax.training.loop import train_group
from nequip_jax.uncertainty.protocol import ModelOutputs
from nequip_jax.uncertainty.registry import get_method

__all__ = [
    "TrainedMethods",
    "train_methods",
    "training_summary",
]


class TrainedMethods(NamedTuple):
    """The trained methods (``None`` / absent where not requested) and what their training cost.

    ``singles`` maps each requested single-model method to the single model with that method's
    head. ``info`` holds, per piece, the wall time (s), the epochs run and the best epoch of
    every member, the per-member records ``networks`` (:func:`nequip_jax.training.loop.
    network_records`), and per head its fit time and the method's ``describe`` (e.g. the GMM's
    chosen number of components).
    """

    singles: dict[str, Potential]
    traditional: Ensemble | None
    diverse: Ensemble | None
    info: dict


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
    cutoff settings, see :func:`nequip_jax.training.loop.train_group`)."""
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
    if any(m in SINGLE_METHODS for m in methods):
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
        models_dir / f"traditional{n_trad}-{digest(recipe)}",
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
                models_dir / f"{name}-{digest(recipe)}",
                data,
                recipe,
                verbose,
            )
            groups.append(group)
            info["variants"].append({**piece, "variants": [dict(variants[i]) for i in indices]})
        diverse = Ensemble(groups, trad.species)
    singles = {}
    for m in methods:
        if m in SINGLE_METHODS:
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
    for m in SINGLE_METHODS:
        if m in info:
            out[f"{m}_s"] = info[m]["seconds"]
            out[f"{m}_head"] = info[m]["head"]
            out["folders"][m] = info[m]["folder"]
    if "gmm" in info:
        out["gmm_components"] = info["gmm"]["head"]["n_components"]
    return out


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
    folder = models_dir / f"{method}-{digest(recipe)}"
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
