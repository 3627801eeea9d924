"""One record per trained network: how long it trained, why it stopped, how good it got.

Two layers:

- :func:`member_networks` reads a training log (``metrics.jsonl`` of
  :func:`nequip_jax.train.loop.train_group`: one record per epoch and active member) and gives,
  per member, ``{"member", "epochs", "stop_reason", "best_epoch", "best_val_forces_rmse",
  "wall_s"}`` — the ``"networks"`` entry of a trained piece's info
  (:func:`experiments.common.pipeline.train_methods`).
- :func:`networks_from_info` turns the info of :class:`~experiments.common.pipeline.TrainedMethods`
  into the ``networks`` list of a results file, one entry per network with a readable name
  ("traditional member 0", "diverse variant {...}").

Stop reasons (:data:`STOP_REASONS`) mirror the rules of the training loop
(:func:`nequip_jax.train.schedule.plateau_update`, then the epoch and time limits):
``non_finite`` (validation loss not finite), ``min_learning_rate`` (the plateau schedule went
below the floor), ``early_stopping``, ``max_epochs``, ``time_budget``. The first two scheduler
rules count as converged (:data:`CONVERGED`).
"""

from __future__ import annotations

import json
import math
import os
from collections.abc import Iterable, Mapping, Sequence
from pathlib import Path
from typing import Any

__all__ = [
    "STOP_REASONS",
    "CONVERGED",
    "NETWORK_FIELDS",
    "MissingNetworksError",
    "read_metrics",
    "member_networks",
    "networks_from_info",
    "networks_from_logs",
]

#: Why a network stopped training.
STOP_REASONS = ("min_learning_rate", "early_stopping", "non_finite", "max_epochs", "time_budget")
#: Stop reasons that mean the schedule ran its course (not a budget or a failure).
CONVERGED = ("min_learning_rate", "early_stopping")
#: Keys of a piece's per-member record (``info["networks"][i]``).
NETWORK_FIELDS = ("member", "epochs", "stop_reason", "best_epoch", "best_val_forces_rmse", "wall_s")


class MissingNetworksError(ValueError):
    """A trained piece's info has no (valid) per-network records."""


def read_metrics(paths: Iterable[str | os.PathLike]) -> list[dict]:
    """The epoch records of one or more ``metrics.jsonl`` files, in file order.

    Raises:
        FileNotFoundError: a log is missing (with the remedy).
    """
    records = []
    for path in paths:
        path = Path(path)
        if not path.is_file():
            raise FileNotFoundError(
                f"training log {path} not found: the networks of a run are summarised from it; "
                "train again into that folder."
            )
        records += [json.loads(line) for line in path.read_text().splitlines() if line.strip()]
    return records


def _stop_reason(last: Mapping, best_epoch: int, optim: Any) -> str:
    if not math.isfinite(float(last["val_loss"])):
        return "non_finite"
    if float(last["learning_rate"]) < float(optim.min_learning_rate):
        return "min_learning_rate"
    patience = optim.early_stopping_patience
    if patience is not None and int(last["epoch"]) - best_epoch >= int(patience):
        return "early_stopping"
    if int(last["epoch"]) + 1 >= int(optim.max_epochs):
        return "max_epochs"
    return "time_budget"


def member_networks(records: Sequence[Mapping], members: Sequence[int], optim: Any) -> list[dict]:
    """Per member: epochs trained, stop reason, best epoch and its validation force RMSE.

    The best epoch replays the loop's rule (validation loss below ``best · (1 −
    plateau_threshold)``), so it is the epoch whose parameters were kept; ``best_val_forces_rmse``
    (eV/Å) is that epoch's validation force RMSE (the training one when the run had no validation
    set). ``wall_s`` sums the epoch times of the epochs the member trained in (vmapped members
    share them).

    Args:
        records: epoch records (``epoch``, ``member``, ``learning_rate``, ``time_s``,
            ``val_loss``, ``val_forces_rmse``) of one training group.
        members: the member numbers, in the group's order.
        optim: the group's :class:`nequip_jax.train.config.OptimConfig` (stopping rules).

    Raises:
        ValueError: a member has no record (the log does not belong to this group).
    """
    out = []
    for member in members:
        mine = sorted((r for r in records if int(r["member"]) == member), key=lambda r: r["epoch"])
        if not mine:
            raise ValueError(
                f"the training log has no epoch of member {member} (members in the log: "
                f"{sorted({int(r['member']) for r in records})}); pass the log of this group."
            )
        best, best_epoch, best_rmse = math.inf, -1, math.nan
        for r in mine:
            loss = float(r["val_loss"])
            if loss < best * (1.0 - float(optim.plateau_threshold)):
                best, best_epoch, best_rmse = loss, int(r["epoch"]), float(r["val_forces_rmse"])
        out.append(
            {
                "member": int(member),
                "epochs": len(mine),
                "stop_reason": _stop_reason(mine[-1], best_epoch, optim),
                "best_epoch": best_epoch,
                "best_val_forces_rmse": best_rmse,
                "wall_s": float(sum(float(r["time_s"]) for r in mine)),
            }
        )
    return out


def _checked(piece: Mapping, models_dir: str | os.PathLike | None) -> list[dict]:
    folder = piece.get("folder", "?")
    where = Path(models_dir) / folder if models_dir is not None else folder
    remedy = f"delete the folder {where} (in the models cache) to retrain it"
    if "networks" not in piece:
        raise MissingNetworksError(
            f"trained piece {where} has no per-network records ('networks'): its piece.json "
            f"was written by code that did not record them; {remedy}."
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
        MissingNetworksError: a piece has no ``networks`` records (cache written by older code;
            the message names the folder to delete) or records that do not match its members.
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


def networks_from_logs(
    name: str,
    logs: Sequence[str | os.PathLike],
    members: Sequence[int],
    optim: Any,
    *,
    seed: int,
    stage: str | None = None,
    piece: str | None = None,
) -> list[dict]:
    """``networks`` entries of networks trained outside the cached pieces (a training folder
    with its ``metrics.jsonl``): one per member, named ``"{name} member {m}"``; ``piece`` names
    the training folder when other runs may share it."""
    records = member_networks(read_metrics(logs), members, optim)
    piece = {"folder": piece, "cached": False}
    return [_entry(f"{name} member {r['member']}", seed, r, stage, piece) for r in records]
