"""Files of the generator: atomic writes, checksums, frames as JSON (chunks) and as extxyz."""

from __future__ import annotations

import hashlib
import json
import os
import tempfile
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import ase.io
import numpy as np
from ase import Atoms
from ase.calculators.singlepoint import SinglePointCalculator


def _umask() -> int:
    mask = os.umask(0)
    os.umask(mask)
    return mask


def _temp_beside(path: Path) -> str:
    """A new empty temp file next to ``path``, with the permissions a plain open() would give."""
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".tmp", dir=path.parent)
    os.close(fd)
    os.chmod(tmp, 0o666 & ~_umask())
    return tmp


def atomic_write_bytes(path: Path, data: bytes) -> None:
    """Write ``data`` to ``path`` all at once: a temp file in the same folder, then os.replace.

    A reader (or a restarted run) sees either the old file or the complete new one, never a torn
    write, even if this process is killed midway.
    """
    path = Path(path)
    tmp = _temp_beside(path)
    try:
        with open(tmp, "wb") as handle:
            handle.write(data)
            handle.flush()
            os.fsync(handle.fileno())
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise


def atomic_write_json(path: Path, obj: Any) -> None:
    """``obj`` as indented, key-sorted JSON (floats round-trip exactly), written atomically."""
    text = json.dumps(obj, indent=1, sort_keys=True, allow_nan=False) + "\n"
    atomic_write_bytes(path, text.encode())


def sha256_file(path: Path) -> str:
    h = hashlib.sha256()
    with open(path, "rb") as handle:
        for block in iter(lambda: handle.read(1 << 20), b""):
            h.update(block)
    return h.hexdigest()


def sha256_json(obj: Any) -> str:
    """Hash of a JSON-serialisable object, independent of key order."""
    return hashlib.sha256(json.dumps(obj, sort_keys=True).encode()).hexdigest()


def _jsonable(value: Any) -> Any:
    if isinstance(value, np.ndarray):
        return value.tolist()
    if isinstance(value, np.bool_ | bool):
        return bool(value)
    if isinstance(value, np.integer):
        return int(value)
    if isinstance(value, np.floating):
        return float(value)
    return value


def frame_to_dict(atoms: Atoms, energy: float, forces: np.ndarray) -> dict[str, Any]:
    """A labelled structure as plain JSON data (exact float round trip)."""
    return {
        "numbers": atoms.numbers.tolist(),
        "positions": np.asarray(atoms.positions, dtype=np.float64).tolist(),
        "cell": np.asarray(atoms.cell[:], dtype=np.float64).tolist(),
        "pbc": [bool(p) for p in atoms.pbc],
        "energy": float(energy),
        "forces": np.asarray(forces, dtype=np.float64).tolist(),
        "info": {k: _jsonable(v) for k, v in atoms.info.items()},
    }


def frame_from_dict(data: dict[str, Any]) -> Atoms:
    """Inverse of :func:`frame_to_dict`: Atoms with a SinglePointCalculator holding the labels."""
    atoms = Atoms(
        numbers=data["numbers"],
        positions=np.array(data["positions"], dtype=np.float64),
        cell=np.array(data["cell"], dtype=np.float64),
        pbc=data["pbc"],
    )
    for key, value in data["info"].items():
        atoms.info[key] = np.array(value) if isinstance(value, list) else value
    atoms.calc = SinglePointCalculator(
        atoms, energy=data["energy"], forces=np.array(data["forces"], dtype=np.float64)
    )
    return atoms


def write_extxyz_atomic(path: Path, frames: Sequence[Atoms]) -> None:
    """Write labelled frames as extended XYZ (the 3BPA files' layout), atomically."""
    path = Path(path)
    tmp = _temp_beside(path)
    try:
        ase.io.write(tmp, list(frames), format="extxyz")
        with open(tmp, "rb+") as handle:
            os.fsync(handle.fileno())
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise


def write_sha256sums(folder: Path, names: Sequence[str]) -> None:
    """``SHA256SUMS`` in ``folder`` covering ``names`` (checkable with ``sha256sum -c``)."""
    lines = [f"{sha256_file(Path(folder) / name)}  {name}\n" for name in sorted(names)]
    atomic_write_bytes(Path(folder) / "SHA256SUMS", "".join(lines).encode())
