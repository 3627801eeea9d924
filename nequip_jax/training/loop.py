"""The training loop of a single model: data, epochs, validation, scheduler, checkpoints.

Files written to ``workdir``:

- ``config.yaml`` — the resolved run configuration;
- ``metrics.jsonl`` — one JSON object per epoch (train/validation energy and force RMSE and MAE,
  loss, learning rate, wall time);
- ``last.ckpt`` — full training state with the best parameters so far (atomic writes;
  ``resume=True`` continues from it);
- ``summary.json`` — per member: epochs, why training stopped, best epoch and its validation
  errors (:func:`network_records`);
- ``model/`` — the best :class:`~nequip_jax.model.Potential` (load with ``nequip_jax.load``).

Determinism: the split, initial weights and the batch order of epoch ``e`` come from one key made
from ``config.seed`` (``fold_in(shuffle_key, e)``), so an interrupted and resumed run reaches the
same parameters as an uninterrupted one.
"""

from __future__ import annotations

import functools
import json
import os
import time
from collections.abc import Sequence
from pathlib import Path
from typing import Any, NamedTuple

import ase
import jax
import jax.numpy as jnp
import numpy as np
import yaml

from nequip_jax._io import atomic_write_json, atomic_write_text
from nequip_jax.data import (
    GraphDataset,
    PaddingBudget,
    compute_budget,
    compute_statistics,
    iterate_batches,
    paper_split,
    read_structures,
    shared_budget,
)
from nequip_jax.model import (
    RADIAL_FIELDS,
    NequIPConfig,
    Potential,
    RadialSettings,
    group_radial,
    make_model_fns,
    model_jit,
    program_config,
)
from nequip_jax.training.checkpoint import load_checkpoint, save_checkpoint
from nequip_jax.training.config import MEMBER_OPTIM_FIELDS, UNSET, RunConfig, group_settings
from nequip_jax.training.distributed import fetch, is_writer
from nequip_jax.training.loss import ErrorSums, summarize
from nequip_jax.training.progress import Progress
from nequip_jax.training.schedule import PlateauState, plateau_init, plateau_update, stop_reason
from nequip_jax.training.step import (
    init_train_state,
    make_eval_step,
    make_optimizer,
    make_train_step,
)

__all__ = [
    "train",
    "train_group",
    "GroupResult",
    "network_records",
    "member_key",
    "member_keys",
    "load_training_data",
    "PreparedData",
    "prepare",
    "evaluate_sums",
    "train_epoch",
    "group_programs",
]


def load_training_data(
    config: RunConfig, key: jax.Array
) -> tuple[list[ase.Atoms], list[ase.Atoms]]:
    """Training and validation frames of ``config.data`` (split drawn with ``key``)."""
    data = config.data
    if data.setting == "files":
        if data.train_file is None:
            raise ValueError(
                "data.setting='files' needs data.train_file (and optionally val_file)."
            )
        train = read_structures(data.train_file)
        val = read_structures(data.val_file) if data.val_file else []
        return train, val
    split = paper_split(
        data.setting, data.n_train, key=key, val_fraction=data.val_fraction, root=data.root
    )
    return split.train, split.val


class PreparedData(NamedTuple):
    """Everything the loop needs that is derived from the data and the model hyperparameters.

    ``model_config`` is the configuration of the group (that of its first member with the largest
    ``r_max``, the cutoff of the graphs); ``member_configs`` has one configuration per member,
    each with its own ``r_max``, ``cutoff_p`` and ``avg_num_neighbors``.
    """

    model_config: NequIPConfig
    species: tuple[int, ...]
    train: GraphDataset
    val: GraphDataset | None
    train_budget: PaddingBudget
    eval_budget: PaddingBudget
    statistics: dict
    member_configs: tuple[NequIPConfig, ...]

    @property
    def radial(self) -> RadialSettings | None:
        """[n_members] per-member cutoff settings, or ``None`` when the members share them."""
        return group_radial(self.member_configs)


def _model_r_max(config: RunConfig) -> float:
    return float(config.model.value("r_max"))


def prepare(config: RunConfig | Sequence[RunConfig], train_atoms, val_atoms) -> PreparedData:
    """Build graphs, statistics and the model configuration(s) for a run or a vmapped group.

    With several configurations (the members of a group; see :func:`train_group`) the graphs are
    built with the largest ``r_max`` of the members, and each member's ``avg_num_neighbors``
    (unless its config sets one) is the mean neighbour count of the training set at its own
    ``r_max`` — what a model trained alone with that configuration gets. ``avg_num_neighbors:
    null`` in the model section means no normalisation of the neighbour sum (1.0; the authors'
    3BPA configs).
    """
    configs = [config] if isinstance(config, RunConfig) else list(config)
    base = configs[0]
    species = base.model.species
    if species is UNSET or not species:
        frames = list(train_atoms) + list(val_atoms)
        species = sorted({int(z) for atoms in frames for z in atoms.numbers})
    species = tuple(int(z) for z in species)
    r_maxs = [_model_r_max(c) for c in configs]
    r_max = max(r_maxs)
    train = GraphDataset(train_atoms, r_max, species, source="training set")
    val = GraphDataset(val_atoms, r_max, species, source="validation set") if val_atoms else None
    stats = compute_statistics(train)
    neighbours = {r_max: stats.avg_num_neighbors}
    for r in r_maxs:
        if r not in neighbours:
            at_r = GraphDataset(train_atoms, r, species, source="training set")
            neighbours[r] = compute_statistics(at_r).avg_num_neighbors
    member_configs = []
    for c, r in zip(configs, r_maxs, strict=True):
        member_configs.append(
            c.model.resolve(
                num_species=len(species),
                avg_num_neighbors=neighbours[r],
                energy_shift=stats.energy_shift,
                energy_scale=stats.force_rms,
            )
        )
    bs = base.optim.batch_size
    eval_sets = [d for d in (train, val) if d is not None]
    return PreparedData(
        model_config=member_configs[int(np.argmax(r_maxs))],
        species=species,
        train=train,
        val=val,
        # Rounded up (the one rounding of the library's budgets) so that data sets of similar
        # size share the compiled steps.
        train_budget=shared_budget(compute_budget(train, bs), bs),
        eval_budget=shared_budget(
            compute_budget(eval_sets, base.optim.eval_batch_size), base.optim.eval_batch_size
        ),
        statistics={
            "avg_num_neighbors": stats.avg_num_neighbors,
            "energy_shift": [float(x) for x in stats.energy_shift],
            "force_rms": stats.force_rms,
            "energy_residual_rms": stats.energy_residual_rms,
            "n_train": len(train),
            "n_val": 0 if val is None else len(val),
        },
        member_configs=tuple(member_configs),
    )


def evaluate_sums(
    eval_step, params, dataset: GraphDataset, batch_size: int, budget, *, dtype=np.float32
) -> ErrorSums:
    """Error sums of ``params`` over a whole data set (sums stay on the device until the end)."""
    total = None
    for batch in iterate_batches(dataset, batch_size, budget, dtype=dtype):
        sums = eval_step(params, batch)
        total = sums if total is None else jax.tree.map(jnp.add, total, sums)
    return total


def train_epoch(
    step,
    state,
    dataset: GraphDataset,
    *,
    batch_size: int,
    budget,
    shuffle_keys: Sequence[jax.Array],
    epoch: int,
    step_args: tuple = (),
    dtype=np.float32,
    member_axis: bool = True,
    place=None,
    on_batch=None,
):
    """One pass over ``dataset``: ``state, sums = step(state, batch, *step_args)`` per batch.

    The one epoch loop of the library: the trainer (:func:`train_group`) and the on-the-fly
    fine-tuner (:class:`nequip_jax.otf.finetune.FineTuner`) both run their epochs through it.

    Args:
        step: the jitted training step.
        state: its state (leading member axis when ``member_axis``).
        dataset: the training graphs.
        batch_size, budget: structures per batch and the padded batch shape.
        shuffle_keys: one key per member; member ``j`` visits the structures in the order drawn
            with ``jax.random.fold_in(shuffle_keys[j], epoch)``.
        epoch: the epoch number (folded into the keys).
        step_args: further arguments of ``step`` after the batch.
        dtype: float dtype of the batches.
        member_axis: stack the members' batches along a leading axis (a ``vmap``-ped step);
            ``False``: one member, its batch as is.
        place: applied to each stacked batch (e.g. laying it over a device mesh).
        on_batch: called after every step (progress).

    Returns:
        ``(state, sums)``: the state after the epoch and the step's error sums added over its
        batches (on the device).
    """
    if not member_axis and len(shuffle_keys) != 1:
        raise ValueError(f"member_axis=False needs one shuffle key, got {len(shuffle_keys)}.")
    iters = [
        iterate_batches(
            dataset, batch_size, budget, key=jax.random.fold_in(key, epoch), dtype=dtype
        )
        for key in shuffle_keys
    ]
    total = None
    for batches in zip(*iters):
        batch = stack_members(batches) if member_axis else batches[0]
        if place is not None:
            batch = place(batch)
        state, sums = step(state, batch, *step_args)
        total = sums if total is None else jax.tree.map(jnp.add, total, sums)
        if on_batch is not None:
            on_batch()
    return state, total


def _read_metrics(path: Path, up_to_epoch: int) -> list[str]:
    if not path.is_file():
        return []
    keep = []
    for line in path.read_text().splitlines():
        if line.strip() and json.loads(line)["epoch"] <= up_to_epoch:
            keep.append(line)
    return keep


def member_key(key: jax.Array, member: int) -> jax.Array:
    """Member ``member``'s key drawn from a run-wide ``key``: ``jax.random.fold_in(key, member)``.

    The one per-member key rule of the library: the trainer's initial weights and batch orders
    (:func:`member_keys`) and the on-the-fly fine-tuner's batch orders
    (:class:`nequip_jax.otf.finetune.FineTuner`) all derive from it. A single model is member 0,
    so member ``j`` of a vmapped group is the model trained alone as member ``j``.
    """
    return jax.random.fold_in(key, member)


def member_keys(seed: int, member: int) -> tuple[jax.Array, jax.Array, jax.Array]:
    """``(split_key, init_key, shuffle_key)`` of ensemble member ``member`` (0 for one model).

    ``jax.random.key(seed)`` is split into a split, an init and a shuffle key; the split key is
    shared by all members (they train on the same data), the init and shuffle keys are the
    member's own (:func:`member_key`).
    """
    split_key, init_key, shuffle_key = jax.random.split(jax.random.key(seed), 3)
    return split_key, member_key(init_key, member), member_key(shuffle_key, member)


def stack_members(trees):
    """One pytree with a leading member axis from one pytree per member (numpy stack)."""
    return jax.tree.map(lambda *xs: np.stack(xs), *trees)


def unstack_member(tree, j: int):
    """Member ``j`` of a pytree with a leading member axis."""
    return jax.tree.map(lambda x: x[j], tree)


@functools.lru_cache(maxsize=32)
def group_programs(
    model_config: NequIPConfig,
    optimizer: str,
    grad_clip: float | None,
    ema_decay: float | None,
    energy_loss: str,
):
    """The jitted, member-``vmap``-ped training and evaluation steps of :func:`train_group`.

    One pair per (model configuration, optimiser kind, gradient clipping, EMA, energy loss) and
    process, with ``model_config`` a :func:`~nequip_jax.model.program_config` (the caller's
    :func:`train_group` passes it so): every group trained with these settings shares it, so a
    network trained again on batches of a shape already seen (another seed, another member, a
    retraining round on other data) compiles nothing. The learning rate, the loss weights and
    the members' cutoff settings (always given, ``cutoff_p`` ``None`` when the members share
    the config's) are arguments, not part of the key.

    Returns:
        ``train_step(state, batch, learning_rate, energy_weight, forces_weight, active, radial)
        -> (state, sums)`` (the state is donated) and ``eval_step(params, batch, radial) ->
        sums``, each with a leading member axis (``batch`` shared by the members in
        ``eval_step``).
    """
    _, predict = make_model_fns(model_config)
    # The learning rate lives in the optimiser state (set at every step), so the update does
    # not depend on the value given here.
    opt = make_optimizer(optimizer, 1.0, grad_clip)

    def member_step(state, batch, learning_rate, energy_weight, forces_weight, active, radial):
        step = make_train_step(
            functools.partial(predict, radial=radial),
            opt,
            ema_decay=ema_decay,
            energy_loss=energy_loss,
        )
        return step(state, batch, learning_rate, energy_weight, forces_weight, active)

    def member_eval(params, batch, radial):
        return make_eval_step(functools.partial(predict, radial=radial))(params, batch)

    return (
        model_jit(jax.vmap(member_step), donate_argnums=0),
        model_jit(jax.vmap(member_eval, in_axes=(0, None, 0))),
    )


class GroupResult(NamedTuple):
    """Outcome of training one group of same-shaped members (leading member axis); the members'
    own configurations and cutoff settings are ``prep.member_configs`` and ``prep.radial``.

    ``networks`` has one record per member (see :func:`network_records`), also written to
    ``workdir/summary.json``.
    """

    params: Any
    best_epoch: np.ndarray
    scheduler: PlateauState
    prep: PreparedData
    networks: list[dict]


def network_records(
    lines: Sequence[str],
    members: Sequence[int],
    scheduler: PlateauState,
    best_epoch: np.ndarray,
    ended: str,
) -> list[dict]:
    """How each member's training went, from its ``metrics.jsonl`` records.

    Args:
        lines: the JSON lines of ``metrics.jsonl`` (all epochs, resumed pieces included).
        members: the member numbers, in the order of the member axis.
        scheduler: the final scheduler state.
        best_epoch: [n_members] the epoch whose parameters are kept (-1: none).
        ended: why the loop ended for members that had not stopped by themselves
            (``"max_epochs"`` or ``"time_budget"``).

    Returns:
        Per member: ``member``, ``epochs`` (epochs trained), ``stop_reason`` (one of
        :data:`~nequip_jax.training.schedule.STOP_REASONS` other than ``"running"``, or
        ``ended``), ``best_epoch`` (the epoch whose parameters are kept: the last improvement
        of the validation loss by the scheduler's threshold), ``best_val_forces_rmse`` (eV/Å)
        and ``best_val_energy_rmse`` (eV/atom) at that epoch, ``wall_s`` (the member's
        epochs' wall time; members of a vmapped group share it) and ``final_learning_rate``.
    """
    records = [json.loads(line) for line in lines]
    out = []
    for j, member in enumerate(members):
        mine = [r for r in records if r["member"] == member]
        reason = stop_reason(scheduler, j) if scheduler.stopped[j] else ended
        best = next((r for r in mine if r["epoch"] == int(best_epoch[j])), None)
        out.append(
            {
                "member": int(member),
                "epochs": len(mine),
                "stop_reason": reason,
                "best_epoch": -1 if best is None else int(best["epoch"]),
                "best_val_forces_rmse": None if best is None else best["val_forces_rmse"],
                "best_val_energy_rmse": None if best is None else best["val_energy_rmse"],
                "wall_s": float(sum(r["time_s"] for r in mine)),
                "final_learning_rate": float(scheduler.learning_rate[j]),
            }
        )
    return out


def train_group(
    configs: list[RunConfig],
    members: list[int],
    workdir: str | os.PathLike,
    *,
    data: tuple[list[ase.Atoms], list[ase.Atoms]],
    resume: bool = False,
    verbose: bool = True,
    mesh=None,
    init_params=None,
) -> GroupResult:
    """Train models of identical shape together, ``vmap``-ped over a member axis.

    Members differ in initial weights and batch order (their keys come from
    :func:`member_keys` with their member number) and may differ in the learning rate, the loss
    weights and the model's cutoff settings ``r_max``, ``cutoff_p`` and ``avg_num_neighbors``
    (:data:`nequip_jax.model.RADIAL_FIELDS`). With different cutoffs the graphs are built with
    the largest ``r_max`` and each member's settings enter the model as traced values next to its
    parameters (``prep.radial``; the optimiser does not see them), so every member is the model
    it would be alone. Everything else (other model hyperparameters, batch size, optimiser kind,
    EMA, stopping rules, epochs) is taken from ``configs[0]`` and must be equal across the group.
    Each member has its own ReduceLROnPlateau schedule and early stopping; a stopped member is
    frozen while the others continue.

    Args:
        configs: one run configuration per member.
        members: the member numbers (for the keys).
        workdir: folder for ``metrics.jsonl`` and checkpoints.
        data: ``(train, val)`` frames.
        resume: continue from ``workdir/last.ckpt``.
        verbose: progress on the terminal.
        mesh: optional ``jax.sharding.Mesh`` with a ``"member"`` axis; the member axis of the
            state and batches is laid over its devices, which may belong to several processes
            (:mod:`nequip_jax.training.distributed`; then process 0 alone writes files).
        init_params: parameters to start from (warm start; a leading member axis), instead of a
            fresh initialisation. Their shapes must match the model configuration.
    """
    base = configs[0]
    for other in configs[1:]:
        _check_same_group(base, other)
    workdir = Path(workdir)
    workdir.mkdir(parents=True, exist_ok=True)
    optim = base.optim
    n = len(members)
    prep = prepare(configs, *data)
    keys = [member_keys(base.seed, m) for m in members]

    optimizer = make_optimizer(optim.optimizer, optim.learning_rate, optim.grad_clip)
    first = prep.train.batch(np.arange(min(optim.batch_size, len(prep.train))), prep.train_budget)
    if init_params is None:
        # Each member from its own configuration (trainable Bessel frequencies start at its
        # own n π / r_max); the other parameters do not depend on the cutoff.
        member_params = [
            make_model_fns(cfg)[0](k[1], first)
            for cfg, k in zip(prep.member_configs, keys, strict=True)
        ]
    else:
        member_params = [unstack_member(init_params, j) for j in range(n)]
    state = stack_members([jax.device_get(init_train_state(p, optimizer)) for p in member_params])
    scheduler = plateau_init(np.array([c.optim.learning_rate for c in configs]), (n,))
    best_params = state.ema_params
    best_epoch = np.full(n, -1)
    energy_w = np.array([c.optim.energy_weight for c in configs])
    forces_w = np.array([c.optim.forces_weight for c in configs])
    start_epoch = 0
    metrics_path = workdir / "metrics.jsonl"
    lines: list[str] = []
    template = {"state": state, "best_params": best_params, "best_epoch": best_epoch}
    if resume and (workdir / "last.ckpt").is_file():
        saved, scheduler, last_epoch, _ = load_checkpoint(
            workdir / "last.ckpt", template, PlateauState
        )
        state, best_params = saved["state"], saved["best_params"]
        best_epoch = np.asarray(saved["best_epoch"])
        start_epoch = last_epoch + 1
        lines = _read_metrics(metrics_path, last_epoch)
    writer = is_writer()
    if writer:
        atomic_write_text(metrics_path, "".join(line + "\n" for line in lines))
        atomic_write_text(
            workdir / "config.yaml",
            yaml.safe_dump(
                [c.to_dict() for c in configs] if n > 1 else base.to_dict(), sort_keys=False
            ),
        )
    verbose = verbose and writer

    if mesh is not None and n % mesh.shape["member"]:
        raise ValueError(
            f"{n} members cannot be laid evenly over the {mesh.shape['member']} devices of the "
            "mesh; train a multiple of the device count per group (or use fewer devices)"
        )
    place = _placer(mesh)
    # Sharded over a mesh, sums and states may live on other processes' devices: gather them.
    host = (lambda tree: tree) if mesh is None else fetch
    state, best_params = place(state), place(best_params)
    dtype = np.float64 if prep.model_config.dtype == "float64" else np.float32
    # The cutoff settings are arguments of the step programs, which are keyed on the config
    # without them (and without the trainable energy scale/shift): groups that differ only in
    # these (e.g. trained on other data) share the programs.
    radial = prep.radial if prep.radial is not None else RadialSettings.of(prep.model_config, n)
    radial = place(radial.cast(dtype))

    train_step, vmapped_eval = group_programs(
        program_config(prep.model_config),
        optim.optimizer,
        optim.grad_clip,
        optim.ema_decay,
        optim.energy_loss,
    )

    def eval_step(params, batch):
        return vmapped_eval(params, batch, radial)

    meta = {"configs": [c.to_dict() for c in configs], "members": members}
    t_start = time.perf_counter()
    n_batches = -(-len(prep.train) // optim.batch_size)
    ended = "max_epochs"

    for epoch in range(start_epoch, optim.max_epochs):
        if bool(np.all(scheduler.stopped)):
            break
        t0 = time.perf_counter()
        bar = Progress(n_batches, f"epoch {epoch}") if verbose else None
        lr = place(scheduler.learning_rate.astype(dtype))
        active = place(~scheduler.stopped)
        ew, fw = place(energy_w.astype(dtype)), place(forces_w.astype(dtype))
        state, total = train_epoch(
            train_step,
            state,
            prep.train,
            batch_size=optim.batch_size,
            budget=prep.train_budget,
            shuffle_keys=[k[2] for k in keys],
            epoch=epoch,
            step_args=(lr, ew, fw, active, radial),
            dtype=dtype,
            place=place,
            on_batch=bar.update if bar else None,
        )
        total = host(total)
        train_m = [
            summarize(unstack_member(total, j), energy_w[j], forces_w[j], optim.energy_loss)
            for j in range(n)
        ]
        if prep.val is not None:
            val_sums = evaluate_sums(
                eval_step,
                state.ema_params,
                prep.val,
                optim.eval_batch_size,
                prep.eval_budget,
                dtype=dtype,
            )
            val_sums = host(val_sums)
            val_m = [
                summarize(unstack_member(val_sums, j), energy_w[j], forces_w[j], optim.energy_loss)
                for j in range(n)
            ]
        else:
            val_m = train_m
        was_active = ~scheduler.stopped
        scheduler = plateau_update(
            scheduler,
            np.array([m["loss"] for m in val_m]),
            patience=optim.plateau_patience,
            factor=optim.plateau_factor,
            threshold=optim.plateau_threshold,
            min_learning_rate=optim.min_learning_rate,
            early_stopping_patience=optim.early_stopping_patience,
        )
        improved = place(scheduler.improved)
        best_params = _select(improved, state.ema_params, best_params)
        best_epoch = np.where(scheduler.improved, epoch, best_epoch)
        elapsed = time.perf_counter() - t0
        for j in range(n):
            if not was_active[j]:
                continue
            record = {
                "epoch": epoch,
                "member": members[j],
                "learning_rate": float(scheduler.learning_rate[j] if n else 0.0),
                "time_s": elapsed,
                **{f"train_{k}": v for k, v in train_m[j].items()},
                **{f"val_{k}": v for k, v in val_m[j].items()},
            }
            lines.append(json.dumps(record, sort_keys=True))
        checkpoint = host({"state": state, "best_params": best_params})
        if writer:
            atomic_write_text(metrics_path, "".join(line + "\n" for line in lines))
            save_checkpoint(
                workdir / "last.ckpt",
                {**checkpoint, "best_epoch": best_epoch},
                epoch=epoch,
                scheduler=scheduler,
                meta=meta,
            )
        if bar:
            j = int(np.argmin([m["forces_rmse"] for m in val_m]))
            bar.close(
                f"val F-RMSE {1000 * val_m[j]['forces_rmse']:.1f} meV/Å "
                f"(best member of {n}), E-RMSE {1000 * val_m[j]['energy_rmse']:.2f} meV/atom, "
                f"lr {scheduler.learning_rate[j]:.2g}, active {int(np.sum(~scheduler.stopped))}"
            )
        if optim.max_time_s is not None and time.perf_counter() - t_start > optim.max_time_s:
            ended = "time_budget"
            break
    networks = network_records(lines, members, scheduler, best_epoch, ended)
    if writer:
        atomic_write_json(workdir / "summary.json", {"members": members, "networks": networks})
    return GroupResult(fetch(best_params), best_epoch, scheduler, prep, networks)


def _select(mask, new, old):
    """Per member (leading axis): ``new`` where ``mask`` else ``old``."""
    return jax.tree.map(
        lambda n, o: jnp.where(mask.reshape((-1,) + (1,) * (n.ndim - 1)), n, o), new, old
    )


def _check_same_group(a: RunConfig, b: RunConfig) -> None:
    sa, sb = group_settings(a), group_settings(b)
    diff = [k for k in sa["optim"] if sa["optim"][k] != sb["optim"][k]]
    keys = set(sa["model"]) | set(sb["model"])
    diff += [f"model.{k}" for k in sorted(keys) if sa["model"].get(k) != sb["model"].get(k)]
    if sa["seed"] != sb["seed"]:
        diff.append("seed")
    if diff:
        raise ValueError(
            "members of one vmapped group must share the seed, the model hyperparameters other "
            f"than {list(RADIAL_FIELDS)} and the optimiser settings other than "
            f"{list(MEMBER_OPTIM_FIELDS)}; "
            f"differing: {diff}. Train them as separate groups (see "
            "nequip_jax.training.ensemble.group_members)."
        )


def _placer(mesh):
    """Put arrays with a leading member axis on ``mesh`` (or leave them to jit when None)."""
    if mesh is None:
        return lambda tree: jax.tree.map(jnp.asarray, tree)
    from jax.sharding import NamedSharding
    from jax.sharding import PartitionSpec as P

    def place(tree):
        return jax.tree.map(lambda x: jax.device_put(x, NamedSharding(mesh, P("member"))), tree)

    return place


def train(
    config: RunConfig,
    workdir: str | os.PathLike,
    *,
    resume: bool = False,
    data: tuple[list[ase.Atoms], list[ase.Atoms]] | None = None,
    verbose: bool = True,
    init_params=None,
) -> Potential:
    """Train one NequIP model; returns the best :class:`Potential` (saved to ``workdir/model``).

    The model is member 0 of :func:`train_group` (so it equals the first member of an ensemble
    with the same seed).

    Args:
        config: the run configuration.
        workdir: output folder (created).
        resume: continue from ``workdir/last.ckpt``.
        data: ``(train, val)`` frames to use instead of ``config.data``.
        verbose: progress on the terminal.
        init_params: start from these parameters (warm start, e.g. after adding data in active
            learning) instead of a fresh initialisation.
    """
    if data is None:
        data = load_training_data(config, member_keys(config.seed, 0)[0])
    stacked = (
        None if init_params is None else jax.tree.map(lambda x: np.asarray(x)[None], init_params)
    )
    result = train_group(
        [config], [0], workdir, data=data, resume=resume, verbose=verbose, init_params=stacked
    )
    potential = Potential(
        config=result.prep.member_configs[0],
        params=unstack_member(result.params, 0),
        species=result.prep.species,
        statistics=result.prep.statistics,
        metadata={
            "epoch": int(result.best_epoch[0]),
            "seed": config.seed,
            "training": result.networks[0],
        },
    )
    potential.save(Path(workdir) / "model")
    return potential
