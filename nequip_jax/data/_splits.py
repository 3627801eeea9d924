"""The data splits of Zhu et al. (2023), drawn deterministically from a seed.

300 K setting: ``D_train,N^300`` (N = 50 or 100) is drawn from ``train_300K``; a validation
subset is carved from that draw (default 10 %); ``D_pool^300`` is the rest of ``train_300K``; the
test sets
are ``test_300K``, ``test_600K``, ``test_1200K`` (and the beta scans where available).

Mixed setting: "we combine all data from the three temperatures and similarly split the combined
data into training sets ..., a pool ..., and a test set" (Sec. III). Here "all data" is the union of
the distinct available 3BPA MD frames — ``train_300K``, ``train_mixedT``, ``test_300K``,
``test_600K`` and, when the real file exists, ``test_1200K`` (the stand-in is a subset of
``train_mixedT`` and is not counted twice; neither are the 31 ``train_mixedT`` frames that repeat
``train_300K`` frames).

Permutations use ``jax.random`` (threefry), which gives the same indices on every platform.
"""

from __future__ import annotations

import os
from typing import NamedTuple

import ase
import jax
import numpy as np

from nequip_jax.data._registry import _find, load_3bpa

__all__ = ["SplitIndices", "PaperSplit", "split_indices", "paper_split", "MIXED_SOURCES"]

MIXED_SOURCES = ("train_300K", "train_mixedT", "test_300K", "test_600K", "test_1200K")


class SplitIndices(NamedTuple):
    """Disjoint index sets into one list of frames."""

    train: np.ndarray
    val: np.ndarray
    pool: np.ndarray
    test: np.ndarray


class PaperSplit(NamedTuple):
    """Frames of one setting of the paper; ``test`` maps a test-set name to its frames."""

    train: list[ase.Atoms]
    val: list[ase.Atoms]
    pool: list[ase.Atoms]
    test: dict[str, list[ase.Atoms]]
    indices: SplitIndices


def split_indices(
    n_total: int,
    n_train: int,
    *,
    key: jax.Array,
    val_fraction: float = 0.1,
    n_pool: int | None = None,
    n_test: int = 0,
) -> SplitIndices:
    """Draw disjoint train/validation/pool/test indices from ``range(n_total)``.

    The first ``n_train`` entries of a random permutation form the training draw, of which the
    last ``round(val_fraction * n_train)`` are the validation subset; the next ``n_test`` are the
    test set; the pool is the next ``n_pool`` (default: all the rest).

    Args:
        n_total: number of frames to draw from.
        n_train: size of the training draw, validation included (the paper's 50 or 100).
        key: a ``jax.random`` key.
        val_fraction: fraction of the training draw kept for validation (0 ≤ f < 1).
        n_pool: pool size; ``None`` means every frame not drawn otherwise.
        n_test: test-set size.
    """
    if not 0.0 <= val_fraction < 1.0:
        raise ValueError(f"val_fraction={val_fraction}: must be in [0, 1).")
    n_pool_eff = n_total - n_train - n_test if n_pool is None else n_pool
    if n_train < 1 or n_test < 0 or n_pool_eff < 0 or n_train + n_test + n_pool_eff > n_total:
        raise ValueError(
            f"cannot draw n_train={n_train}, n_test={n_test}, n_pool={n_pool} from {n_total} "
            "frames; reduce the sizes."
        )
    perm = np.asarray(jax.random.permutation(key, n_total))
    n_val = int(round(val_fraction * n_train))
    if n_val >= n_train:
        raise ValueError(f"val_fraction={val_fraction} leaves no training frame of {n_train}.")
    draw = perm[:n_train]
    test = perm[n_train : n_train + n_test]
    pool = perm[n_train + n_test : n_train + n_test + n_pool_eff]
    return SplitIndices(
        train=np.sort(draw[: n_train - n_val]),
        val=np.sort(draw[n_train - n_val :]),
        pool=np.sort(pool),
        test=np.sort(test),
    )


def _mixed_frames(root) -> list[ase.Atoms]:
    """The distinct frames of :data:`MIXED_SOURCES`, in file order.

    31 frames of ``train_mixedT`` are exact copies of ``train_300K`` frames; a frame whose
    positions equal an earlier one bit for bit is kept once, so no geometry can land in two splits.
    """
    frames: list[ase.Atoms] = []
    seen: set[bytes] = set()
    for name in MIXED_SOURCES:
        if name == "test_1200K" and _find("test_1200K.xyz", root) is None:
            continue  # the stand-in is already part of train_mixedT
        for atoms in load_3bpa(name, root, allow_download=False):
            fingerprint = atoms.positions.tobytes()
            if fingerprint not in seen:
                seen.add(fingerprint)
                frames.append(atoms)
    return frames


def paper_split(
    setting: str,
    n_train: int,
    *,
    key: jax.Array,
    val_fraction: float = 0.1,
    n_pool: int | None = None,
    n_test_mixed: int = 1000,
    root: str | os.PathLike | None = None,
) -> PaperSplit:
    """The frames of one setting of the paper (``setting`` = ``"300K"`` or ``"mixed"``).

    Args:
        setting: ``"300K"`` (train/pool from ``train_300K``; tests at 300/600/1200 K) or
            ``"mixed"`` (everything from the union of temperatures, see the module docstring).
        n_train: the training draw (validation included), 50 or 100 in the paper.
        key: a ``jax.random`` key; the same key gives the same split on every machine.
        val_fraction: validation share of the training draw.
        n_pool: pool size (default: the rest of the source in the 300 K setting; in the mixed
            setting, the rest after the test set).
        n_test_mixed: size of ``D_test^mixed``.
        root: data folder searched first.
    """
    if setting == "300K":
        source = load_3bpa("train_300K", root)
        idx = split_indices(len(source), n_train, key=key, val_fraction=val_fraction, n_pool=n_pool)
        tests = {name: load_3bpa(name, root) for name in ("test_300K", "test_600K", "test_1200K")}
    elif setting == "mixed":
        source = _mixed_frames(root)
        idx = split_indices(
            len(source),
            n_train,
            key=key,
            val_fraction=val_fraction,
            n_pool=n_pool,
            n_test=n_test_mixed,
        )
        tests = {"test_mixed": [source[i] for i in idx.test]}
    else:
        raise ValueError(f"setting={setting!r}: choose '300K' or 'mixed'.")
    return PaperSplit(
        train=[source[i] for i in idx.train],
        val=[source[i] for i in idx.val],
        pool=[source[i] for i in idx.pool],
        test=tests,
        indices=idx,
    )
