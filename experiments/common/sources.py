"""Where the experiments' data come from: the data root of a source, the files a run needs
(checked and hashed), and a fingerprint of a frame list.
"""

from __future__ import annotations

import hashlib
import json
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import ase
import numpy as np

from nequip_jax.data import SPLITS, DataError, search_folders

__all__ = [
    "digest",
    "REPO_ROOT",
    "XTB_ROOT",
    "data_root",
    "check_source",
    "fingerprint",
]


REPO_ROOT = Path(__file__).resolve().parents[2]


#: Where ``python -m experiments.xtb_data`` writes the GFN2-xTB twin of 3BPA.
XTB_ROOT = REPO_ROOT / "data" / "3bpa_xtb"


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


def digest(obj: Any) -> str:
    """First 16 hex digits of the SHA-256 of ``obj`` as sorted JSON (a recipe's folder tag)."""
    return hashlib.sha256(json.dumps(obj, sort_keys=True).encode()).hexdigest()[:16]
