"""One record per trained network: how long it trained, why it stopped, how good it got.

The training loop records, per member, ``{"member", "epochs", "stop_reason", "best_epoch",
"best_val_forces_rmse", "wall_s", ...}`` (:func:`nequip_jax.training.loop.network_records`, in
``summary.json`` and in a trained piece's info). This module turns those records into the
``networks`` list of a results file, one entry per network with a readable name:
:func:`networks_from_info` for the pieces of :class:`~experiments.common.training.TrainedMethods`
("traditional member 0", "diverse variant {...}"), :func:`networks_from_runs` for training
folders. Stop reasons are :data:`STOP_REASONS`; the scheduler's ``min_learning_rate`` and
``early_stopping`` count as converged (:data:`CONVERGED`).
"""

from __future__ import annotations

import json
import os
from collections.abc import Iterable, Mapping, Sequence
from pathlib import Path

from nequip_jax.training.schedule import RECORDED_STOP_REASONS

__all__ = [
    "STOP_REASONS",
    "CONVERGED",
    "NETWORK_FIELDS",
    "MissingNetworksError",
    "read_summaries",
    "networks_from_info",
    "networks_from_runs",
]

#: Why a network stopped training (the scheduler's reasons and the loop's limits).
STOP_REASONS = RECORDED_STOP_REASONS
#: Stop reasons that mean the schedule ran its course (not a budget or a failure).
CONVERGED = ("min_learning_rate", "early_stopping")
#: Keys of a piece's per-member record (``info["networks"][i]``).
NETWORK_FIELDS = ("member", "epochs", "stop_reason", "best_epoch", "best_val_forces_rmse", "wall_s")


class MissingNetworksError(ValueError):
    """A trained piece's info has no (valid) per-network records."""


def read_summaries(folders: Iterable[str | os.PathLike]) -> list[dict]:
    """The per-member records of one or more training folders (their ``summary.json``, written by
    :func:`nequip_jax.training.loop.train_group`), in folder order.

    Raises:
        FileNotFoundError: a folder has no ``summary.json`` (with the remedy).
    """
    records = []
    for folder in folders:
        path = Path(folder) / "summary.json"
        if not path.is_file():
            raise FileNotFoundError(
                f"{path} not found: the networks of a run are read from the summary the "
                "training loop writes; train again into that folder."
            )
        records += json.loads(path.read_text())["networks"]
    return records


def _checked(piece: Mapping, models_dir: str | os.PathLike | None) -> list[dict]:
    folder = piece.get("folder", "?")
    where = Path(models_dir) / folder if models_dir is not None else folder
    remedy = f"delete the folder {where} (in the models cache) to retrain it"
    if "networks" not in piece:
        raise MissingNetworksError(
            f"trained piece {where} has no per-network records ('networks') in its piece.json; "
            f"{remedy}."
        )
    networks = list(piece["networks"])
    members = [int(m) for m in piece.get("members", [n.get("member") for n in networks])]
    for n in networks:
        missing = [k for k in NETWORK_FIELDS if k != "wall_s" and k not in n]
        if missing or n["stop_reason"] not in STOP_REASONS:
            raise MissingNetworksError(
                f"trained piece {where}: network record {n} lacks {missing} or has a stop "
                f"reason outside {STOP_REASONS}; {remedy}."
            )
    if sorted(int(n["member"]) for n in networks) != sorted(members):
        raise MissingNetworksError(
            f"trained piece {where}: network records of members "
            f"{[n['member'] for n in networks]} but the piece has members {members}; {remedy}."
        )
    return networks


def _entry(name: str, seed: int, record: Mapping, stage: str | None, piece: Mapping) -> dict:
    entry = {
        "name": f"{stage}: {name}" if stage else name,
        "seed": int(seed),
        **{k: record.get(k) for k in NETWORK_FIELDS},
        "piece": piece.get("folder"),
        "cached": bool(piece.get("cached", False)),
    }
    if stage:
        entry["stage"] = stage
    return entry


def networks_from_info(
    info: Mapping,
    *,
    seed: int,
    stage: str | None = None,
    models_dir: str | os.PathLike | None = None,
) -> list[dict]:
    """The ``networks`` entries of one :class:`TrainedMethods` ``info`` (traditional piece and
    diverse-variant pieces; the GMM adds no network: it sits on traditional member 0).

    Each entry: ``name``, ``seed``, ``member``, ``epochs``, ``stop_reason``, ``best_epoch``,
    ``best_val_forces_rmse``, ``wall_s``, ``piece`` (folder name), ``cached``, and ``stage`` when
    given (then also the prefix of ``name``, e.g. ``"active gmm: traditional member 0"``).

    Args:
        info: ``TrainedMethods.info``.
        seed: the run seed of these networks.
        stage: what this training was (e.g. a combo or an active-learning round), or ``None``.
        models_dir: the models cache the pieces are in (only to name them in errors).

    Raises:
        MissingNetworksError: a piece has no ``networks`` records (the message names the folder
            to delete) or records that do not match its members.
    """
    out = []
    trad = info["traditional"]
    for n in sorted(_checked(trad, models_dir), key=lambda n: n["member"]):
        out.append(_entry(f"traditional member {n['member']}", seed, n, stage, trad))
    for piece in info.get("variants", []):
        variant_of = dict(zip([int(m) for m in piece["members"]], piece["variants"]))
        for n in sorted(_checked(piece, models_dir), key=lambda n: n["member"]):
            variant = json.dumps(variant_of[int(n["member"])], sort_keys=True)
            out.append(_entry(f"diverse variant {variant}", seed, n, stage, piece))
    return out


def networks_from_runs(
    name: str,
    folders: Sequence[str | os.PathLike],
    members: Sequence[int],
    *,
    seed: int,
    stage: str | None = None,
    piece: str | None = None,
) -> list[dict]:
    """``networks`` entries of networks trained outside the cached pieces (training folders with
    their ``summary.json``): one per member, named ``"{name} member {m}"``; ``piece`` names the
    training folder when other runs may share it.

    Raises:
        ValueError: a member has no record in the folders (they belong to another run).
    """
    by_member = {int(r["member"]): r for r in read_summaries(folders)}
    missing = [m for m in members if m not in by_member]
    if missing:
        raise ValueError(
            f"the training summaries of {[str(f) for f in folders]} have no record of members "
            f"{missing} (members there: {sorted(by_member)}); pass the folders of this run."
        )
    piece = {"folder": piece, "cached": False}
    return [_entry(f"{name} member {m}", seed, by_member[m], stage, piece) for m in members]
