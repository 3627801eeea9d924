"""Training deep ensembles of NequIP models together with ``jax.vmap``.

Traditional ensemble (Zhu et al. 2023): J members that differ only in their initial weights and
mini-batch order. Diverse ensemble: three traditional members plus variants with other
hyperparameters. Members whose hyperparameters keep the parameter shapes (seed, learning rate,
loss weights, cutoff radius ``r_max`` and envelope exponent ``cutoff_p``) train as one vmapped
group (:func:`group_members`); every distinct model shape (features, layers, lmax, number of
radial basis functions, ...) is a group of its own. The result is an
:class:`nequip_jax.model.ensemble.Ensemble`.
"""

from __future__ import annotations

import json
import os
from collections.abc import Sequence
from pathlib import Path

import ase
import yaml

from nequip_jax.model.ensemble import Ensemble, EnsembleGroup
from nequip_jax.training.config import PRESETS_DIR, RunConfig, apply_overrides, group_settings
from nequip_jax.training.distributed import is_writer
from nequip_jax.training.loop import load_training_data, member_keys, train_group

__all__ = [
    "DIVERSE_VARIANTS",
    "load_variants",
    "member_configs",
    "group_members",
    "train_ensemble",
]


def load_variants(path: str | os.PathLike) -> list[dict]:
    """Read a YAML list of override dictionaries (``{model: {...}, optim: {...}}``)."""
    raw = yaml.safe_load(Path(path).read_text())
    if isinstance(raw, dict) and "variants" in raw:
        raw = raw["variants"]
    if not isinstance(raw, list) or not all(isinstance(v, dict) for v in raw):
        raise ValueError(f"{path}: expected a YAML list of override mappings (or variants: [...]).")
    return raw


#: The diverse-ensemble variants shipped in ``configs/ensemble/diverse_variants.yaml`` (one
#: override mapping per extra member; see that file).
DIVERSE_VARIANTS: tuple[dict, ...] = tuple(
    load_variants(PRESETS_DIR / "ensemble" / "diverse_variants.yaml")
)


def _merge(base: dict, override: dict) -> dict:
    out = dict(base)
    for key, value in override.items():
        out[key] = _merge(out.get(key, {}), value) if isinstance(value, dict) else value
    return out


def member_configs(
    config: RunConfig, n_members: int, variants: Sequence[dict] | None = None
) -> list[RunConfig]:
    """Configurations of the members: ``n_members`` copies of ``config`` then one per variant."""
    configs = [config] * n_members
    for variant in variants or ():
        raw = _merge(config.to_dict(), variant)
        configs.append(RunConfig.from_dict(apply_overrides(raw, [])))
    return configs


def _group_key(config: RunConfig) -> str:
    return json.dumps(group_settings(config), sort_keys=True)


def group_members(configs: Sequence[RunConfig]) -> list[list[int]]:
    """Member numbers grouped by identical shapes and static settings, in first-seen order.

    Members with equal :func:`nequip_jax.training.config.group_settings` share a group: they
    differ at most in the seed-derived keys, the
    :data:`~nequip_jax.training.config.MEMBER_OPTIM_FIELDS` (learning rate, loss weights) and the
    model's :data:`~nequip_jax.model.RADIAL_FIELDS` (``r_max``, ``cutoff_p``,
    ``avg_num_neighbors``).
    """
    groups: dict[str, list[int]] = {}
    for index, config in enumerate(configs):
        groups.setdefault(_group_key(config), []).append(index)
    return list(groups.values())


def train_ensemble(
    config: RunConfig,
    workdir: str | os.PathLike,
    *,
    n_members: int = 10,
    variants: Sequence[dict] | None = None,
    resume: bool = False,
    data: tuple[list[ase.Atoms], list[ase.Atoms]] | None = None,
    mesh=None,
    verbose: bool = True,
) -> Ensemble:
    """Train an ensemble; each group of same-shaped members is one vmapped training run
    (:func:`group_members`; members differing only in their cutoff settings share a group).

    Args:
        config: the base run configuration (member 0 equals a single model trained with it).
        workdir: output folder; group ``i`` trains in ``workdir/group{i}`` and the ensemble is
            saved to ``workdir/ensemble``.
        n_members: traditional members (differing in initial weights and batch order).
        variants: override mappings, one extra member each (a diverse ensemble is e.g.
            ``n_members=3, variants=DIVERSE_VARIANTS``).
        resume: continue every group from its last checkpoint.
        data: ``(train, val)`` frames instead of ``config.data``.
        mesh: optional ``jax.sharding.Mesh`` with a ``"member"`` axis, possibly over the
            devices of several processes (:mod:`nequip_jax.training.distributed`); every process
            returns the whole ensemble, process 0 alone writes files.
        verbose: progress on the terminal.
    """
    workdir = Path(workdir)
    if data is None:
        data = load_training_data(config, member_keys(config.seed, 0)[0])
    configs = member_configs(config, n_members, variants)
    groups = []
    species = None
    for i, members in enumerate(group_members(configs)):
        if verbose and is_writer():
            print(f"group {i}: members {members} ({configs[members[0]].model})")
        result = train_group(
            [configs[m] for m in members],
            members,
            workdir / f"group{i}",
            data=data,
            resume=resume,
            verbose=verbose,
            mesh=mesh,
        )
        species = result.prep.species
        groups.append(
            EnsembleGroup(
                result.prep.model_config, result.params, members, species, result.prep.radial
            )
        )
    ensemble = Ensemble(
        groups=groups,
        species=species,
        metadata={"seed": config.seed, "n_members": len(configs), "variants": list(variants or [])},
    )
    if is_writer():
        ensemble.save(workdir / "ensemble")
    return ensemble
