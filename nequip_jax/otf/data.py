"""Structures of an on-the-fly run: the initial training set and the labelled test sets.

Labels come either from the oracle (the default: 3BPA geometries relabelled with GFN2-xTB, the
same recipe as the 3BPA@xTB twin made by ``python -m experiments.xtb_data``) or from the files of
a 3BPA@xTB folder. Labelled sets are cached as extended-XYZ files (written atomically) so that a
resumed run and the other runs of a comparison reuse them instead of labelling again.
"""

from __future__ import annotations

import hashlib
import io
import json
import warnings
from collections.abc import Sequence
from pathlib import Path

import ase
import ase.io
import jax
import numpy as np

from nequip_jax._io import atomic_write_text
from nequip_jax.data import StandInWarning, load_3bpa, read_structures
from nequip_jax.oracle import Oracle, attach_labels, bare_copy

__all__ = [
    "draw",
    "labelled",
    "label_tag",
    "load_split",
    "write_xyz",
    "read_xyz",
    "initial_set",
    "test_sets",
]


def write_xyz(path: str | Path, atoms_list: Sequence[ase.Atoms]) -> None:
    """Write labelled structures (energy, forces) as extended XYZ, atomically."""
    buffer = io.StringIO()
    ase.io.write(buffer, list(atoms_list), format="extxyz")
    atomic_write_text(path, buffer.getvalue())


def read_xyz(path: str | Path) -> list[ase.Atoms]:
    """Read a file written by :func:`write_xyz` (labels through a SinglePointCalculator)."""
    return read_structures(str(path))


def draw(n_frames: int, n: int | None, key: jax.Array) -> np.ndarray:
    """Indices of ``n`` frames out of ``n_frames`` (a seeded permutation; all if ``n`` is None)."""
    order = np.asarray(jax.random.permutation(key, n_frames))
    return order if n is None else order[: min(n, n_frames)]


def labelled(
    atoms_list: Sequence[ase.Atoms], oracle: Oracle | None, *, use_file_labels: bool
) -> list[ase.Atoms]:
    """Copies of ``atoms_list`` with oracle labels (or their own labels if ``use_file_labels``)."""
    if use_file_labels:
        return [a.copy() for a in atoms_list] if atoms_list else []
    if oracle is None:
        raise ValueError("labels='oracle' needs an oracle (e.g. nequip_jax.oracle.XTBOracle()).")
    bare = [bare_copy(a) for a in atoms_list]
    return attach_labels(bare, oracle.label(bare)) if bare else []


def load_split(split: str, root: str | None) -> tuple[list[ase.Atoms], str | None]:
    """Frames of a 3BPA split and the stand-in note (``None`` if the real split was read)."""
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always", StandInWarning)
        frames = load_3bpa(split, root, allow_download=False)
    notes = [str(w.message) for w in caught if issubclass(w.category, StandInWarning)]
    return frames, (notes[0] if notes else None)


def label_tag(seed: int, data_root: str | None, labels: str, oracle: dict) -> str:
    """Short hash naming cached labelled sets: the seed and where the labels come from."""
    values = {
        "seed": seed,
        "root": data_root,
        "labels": labels,
        "oracle": oracle if labels == "oracle" else None,
    }
    return hashlib.sha1(json.dumps(values, sort_keys=True).encode()).hexdigest()[:10]


def _cached(path: Path, make) -> list[ase.Atoms]:
    if path.is_file():
        return read_xyz(path)
    frames = make()
    write_xyz(path, frames)
    return frames


def initial_set(
    *,
    split: str,
    n: int,
    key: jax.Array,
    root: str | None,
    oracle: Oracle | None,
    use_file_labels: bool,
    cache: Path,
) -> list[ase.Atoms]:
    """``n`` labelled structures drawn from ``split`` (cached in ``cache``)."""
    frames, _ = load_split(split, root)
    idx = draw(len(frames), n, key)
    return _cached(
        cache,
        lambda: labelled([frames[i] for i in idx], oracle, use_file_labels=use_file_labels),
    )


def test_sets(
    splits: Sequence[str],
    *,
    n: int | None,
    key: jax.Array,
    root: str | None,
    oracle: Oracle | None,
    use_file_labels: bool,
    cache_dir: Path,
    tag: str = "",
) -> tuple[dict[str, list[ase.Atoms]], dict[str, str]]:
    """Labelled test structures per split (``n`` drawn per split) and stand-in notes, cached in
    ``cache_dir/test_<split>_<n><tag>.xyz`` (``tag`` should name the seed and label source).

    Returns:
        ``({split: frames}, {split: note})``; a note says a documented stand-in replaced the
        split (e.g. ``test_1200K`` without the 1200 K file).
    """
    out, notes = {}, {}
    for i, split in enumerate(splits):
        frames, note = load_split(split, root)
        if note:
            notes[split] = note
        idx = draw(len(frames), n, jax.random.fold_in(key, i))
        out[split] = _cached(
            cache_dir / f"test_{split}_{len(idx)}{tag}.xyz",
            lambda f=frames, ix=idx: labelled(
                [f[j] for j in ix], oracle, use_file_labels=use_file_labels
            ),
        )
    return out, notes
