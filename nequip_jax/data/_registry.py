"""The 3BPA data set: where its files live, checksums, and the documented stand-ins.

Search order for a split's file (first hit wins):

1. the ``root`` argument;
2. the ``NEQUIP_JAX_DATA`` environment variable;
3. ``./data`` in the repository (e.g. the GFN2-xTB twin's default output folder);
4. the user cache (``$XDG_CACHE_HOME/nequip_jax``, default ``~/.cache/nequip_jax``), into which the
   public archive is downloaded on first use when ``allow_download`` is true.

In each folder the files may sit directly (``<folder>/train_300K.xyz``) or in a ``3bpa``
subfolder (``<folder>/3bpa/train_300K.xyz``). A folder made by ``python -m experiments.xtb_data``
(the GFN2-xTB twin) has the same file names and works as a ``root`` too.
"""

from __future__ import annotations

import functools
import hashlib
import io
import os
import tarfile
import tempfile
import urllib.request
import warnings
from pathlib import Path

import ase
import numpy as np

from nequip_jax.data._xyz import DataError, read_structures

__all__ = [
    "SPLITS",
    "ARCHIVE_URL",
    "StandInWarning",
    "load_3bpa",
    "load_isolated_atom_energies",
    "search_folders",
    "stand_in_1200K_indices",
    "DIHEDRAL_INDICES",
]

ARCHIVE_URL = "https://github.com/davkovacs/BOTNet-datasets/raw/refs/heads/main/dataset_3BPA.tar.gz"

#: split name -> file name in the data folder.
SPLITS: dict[str, str] = {
    "train_300K": "train_300K.xyz",
    "train_mixedT": "train_mixedT.xyz",
    "test_300K": "test_300K.xyz",
    "test_600K": "test_600K.xyz",
    "test_1200K": "test_1200K.xyz",
    "dih_beta120": "test_dih_beta120.xyz",
    "dih_beta150": "test_dih_beta150.xyz",
    "dih_beta180": "test_dih_beta180.xyz",
}

#: 0-based atom indices of the dihedrals [alpha, beta, gamma] (Kovács et al. 2021).
DIHEDRAL_INDICES = ((13, 5, 1, 4), (1, 5, 13, 14), (5, 13, 14, 18))

#: Energy threshold (eV above the lowest ``train_300K`` energy) of the 1200 K stand-in.
STAND_IN_THRESHOLD_EV = 2.0

_REPO_ROOT = Path(__file__).resolve().parents[2]
_WARNED: set[str] = set()


class StandInWarning(UserWarning):
    """A documented stand-in replaces a split that is not available."""


def _cache_folder() -> Path:
    base = os.environ.get("XDG_CACHE_HOME") or os.path.join(os.path.expanduser("~"), ".cache")
    return Path(base) / "nequip_jax"


def search_folders(root: str | os.PathLike | None = None) -> list[Path]:
    """The folders searched for 3BPA files, in order (see the module docstring)."""
    bases: list[Path] = []
    if root is not None:
        bases.append(Path(root))
    if os.environ.get("NEQUIP_JAX_DATA"):
        bases.append(Path(os.environ["NEQUIP_JAX_DATA"]))
    bases += [_REPO_ROOT / "data", _cache_folder()]
    folders: list[Path] = []
    for base in bases:
        for folder in (base, base / "3bpa"):
            if folder not in folders:
                folders.append(folder)
    return folders


def _find(file_name: str, root) -> Path | None:
    for folder in search_folders(root):
        candidate = folder / file_name
        if candidate.is_file():
            return candidate
    return None


def _sha256(path: Path) -> str:
    digest = hashlib.sha256()
    with open(path, "rb") as handle:
        for chunk in iter(lambda: handle.read(1 << 20), b""):
            digest.update(chunk)
    return digest.hexdigest()


def _listed_checksums(folder: Path) -> dict[str, str]:
    sums = folder / "SHA256SUMS"
    if not sums.is_file():
        return {}
    listed = {}
    for line in sums.read_text().splitlines():
        parts = line.split()
        if len(parts) == 2:
            listed[parts[1].lstrip("*")] = parts[0].lower()
    return listed


@functools.lru_cache(maxsize=64)
def _verify(path: Path, size: int, mtime: float) -> None:
    """Compare ``path`` with the SHA256SUMS beside it (cached per file version)."""
    expected = _listed_checksums(path.parent).get(path.name)
    if expected is None:
        return
    actual = _sha256(path)
    if actual != expected:
        raise DataError(
            f"{path}: SHA-256 {actual} does not match {expected} listed in "
            f"{path.parent / 'SHA256SUMS'}; the file is corrupt or was modified — restore it."
        )


@functools.lru_cache(maxsize=32)
def _read_cached(path: Path, size: int, mtime: float, require_forces: bool) -> tuple:
    _verify(path, size, mtime)
    return tuple(read_structures(path, require_forces=require_forces))


def _read(path: Path, require_forces: bool = True) -> list[ase.Atoms]:
    stat = path.stat()
    frames = _read_cached(path, stat.st_size, stat.st_mtime, require_forces)
    return [_copy(atoms) for atoms in frames]


def _copy(atoms: ase.Atoms) -> ase.Atoms:
    """A copy that keeps the SinglePointCalculator labels (``Atoms.copy`` drops them)."""
    from ase.calculators.singlepoint import SinglePointCalculator

    new = atoms.copy()
    if atoms.calc is not None:
        new.calc = SinglePointCalculator(
            new, **{k: np.copy(v) for k, v in atoms.calc.results.items()}
        )
    return new


def _download_archive(timeout: float = 60.0) -> Path:
    """Download and unpack the public archive into the cache folder; returns the folder."""
    target = _cache_folder() / "3bpa"
    target.mkdir(parents=True, exist_ok=True)
    try:
        with urllib.request.urlopen(ARCHIVE_URL, timeout=timeout) as response:
            payload = response.read()
    except OSError as err:
        raise DataError(f"download of {ARCHIVE_URL} failed ({err}).") from err
    with tarfile.open(fileobj=io.BytesIO(payload), mode="r:gz") as archive:
        for member in archive.getmembers():
            name = Path(member.name).name
            if not member.isfile() or not name.endswith(".xyz"):
                continue
            data = archive.extractfile(member).read()
            fd, tmp = tempfile.mkstemp(dir=target, suffix=".part")
            with os.fdopen(fd, "wb") as handle:
                handle.write(data)
            os.replace(tmp, target / name)
    return target


def _missing(split: str, file_name: str, root) -> DataError:
    folders = "\n  ".join(str(f) for f in search_folders(root))
    return DataError(
        f"3BPA split {split!r}: file {file_name!r} not found in:\n  {folders}\n"
        f"Provide it by placing {file_name} in one of these folders (or pass root=..., or set "
        f"NEQUIP_JAX_DATA), e.g. from {ARCHIVE_URL}; for the dihedral scans a GFN2-xTB "
        "twin can be generated with `python -m experiments.xtb_data`."
    )


def stand_in_1200K_indices(
    train_300K: list[ase.Atoms], train_mixedT: list[ase.Atoms]
) -> np.ndarray:
    """Indices of the ``train_mixedT`` frames used as the 1200 K test set stand-in.

    The rule: frames of ``train_mixedT`` more than 2.0 eV above the lowest ``train_300K`` energy
    (the highest-energy structures of the mixed-temperature set, closest to a 1200 K sample).
    """
    e_min = min(a.get_potential_energy() for a in train_300K)
    energies = np.array([a.get_potential_energy() for a in train_mixedT])
    return np.flatnonzero(energies - e_min > STAND_IN_THRESHOLD_EV)


def _dihedral_scan_from_combined(split: str, root) -> list[ase.Atoms] | None:
    """The scans in one ``test_dih.xyz`` (the BOTNet layout) filtered by beta."""
    path = _find("test_dih.xyz", root) or _find("test_dih_beta.xyz", root)
    if path is None:
        return None
    beta = float(split.removeprefix("dih_beta"))
    frames = _read(path, require_forces=False)
    return [a for a in frames if round(float(a.info["dihedrals"][1])) == beta]


def load_3bpa(
    split: str,
    root: str | os.PathLike | None = None,
    *,
    allow_download: bool = True,
) -> list[ase.Atoms]:
    """Load one split of 3BPA (Kovács et al. 2021) as validated ``ase.Atoms``.

    Each frame carries its energy (eV) and forces (eV/Å) through ``get_potential_energy()`` /
    ``get_forces()``, and ``info["dihedrals"]`` = [alpha, beta, gamma] in degrees.

    When ``test_1200K`` is absent, the documented stand-in is returned (the ``train_mixedT`` frames
    more than 2.0 eV above the lowest ``train_300K`` energy) and a :class:`StandInWarning` is
    issued once per process.

    Args:
        split: one of :data:`SPLITS`.
        root: a folder searched first (see the module docstring for the full order).
        allow_download: fetch the public archive into the user cache when no folder has the file.

    Raises:
        KeyError: unknown split name.
        DataError: the split cannot be found (message lists the folders and the remedy), or a file
            fails its checksum or validation.
    """
    if split not in SPLITS:
        raise KeyError(f"unknown 3BPA split {split!r}; choose one of {sorted(SPLITS)}.")
    file_name = SPLITS[split]
    path = _find(file_name, root)
    if path is not None:
        return _read(path, require_forces=not split.startswith("dih_"))
    if split.startswith("dih_"):
        scan = _dihedral_scan_from_combined(split, root)
        if scan:
            return scan
    if split == "test_1200K":
        base_300 = _find(SPLITS["train_300K"], root)
        base_mixed = _find(SPLITS["train_mixedT"], root)
        if base_300 is not None and base_mixed is not None:
            train_300 = _read(base_300)
            mixed = _read(base_mixed)
            keep = stand_in_1200K_indices(train_300, mixed)
            if str(base_mixed) not in _WARNED:
                _WARNED.add(str(base_mixed))
                warnings.warn(
                    f"test_1200K.xyz not found; using the documented stand-in: the {len(keep)} "
                    f"frames of {base_mixed.name} (in {base_mixed.parent.name}/) more than "
                    f"{STAND_IN_THRESHOLD_EV} eV above the lowest train_300K energy "
                    "(nequip_jax.data.stand_in_1200K_indices).",
                    StandInWarning,
                    stacklevel=2,
                )
            return [mixed[i] for i in keep]
    if allow_download:
        try:
            _download_archive()
        except DataError as err:
            raise DataError(f"{_missing(split, file_name, root)}\n({err})") from err
        return load_3bpa(split, root, allow_download=False)
    raise _missing(split, file_name, root)


def load_isolated_atom_energies(
    root: str | os.PathLike | None = None, file_name: str = "iso_atoms.xyz"
) -> dict[int, float]:
    """Isolated-atom energies E0 (eV) by atomic number, from ``iso_atoms.xyz``."""
    path = _find(file_name, root)
    if path is None:
        raise _missing("iso_atoms", file_name, root)
    _verify(path, path.stat().st_size, path.stat().st_mtime)
    frames = read_structures(path, require_forces=False)
    energies = {}
    for index, atoms in enumerate(frames):
        if len(atoms) != 1:
            raise DataError(f"{path}, frame {index}: an isolated-atom frame must hold one atom.")
        energies[int(atoms.numbers[0])] = float(atoms.get_potential_energy())
    return energies
