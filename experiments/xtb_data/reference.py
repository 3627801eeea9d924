"""Stored scan outputs: the GFN2-xTB scans that reported results used, restorable anywhere.

A constrained relaxation amplifies last-bit differences of the linear algebra underneath it
(BLAS kernels differ between CPU models and library builds), so the same scan recipe computed on
another machine can give scans that differ in their printed digits, and a result computed on one
set of scans must not be paired with one computed on another (the experiments' pieces check the
data files' SHA-256). :func:`save` stores scan outputs of a generated folder — the xz-compressed
file, its ``PROVENANCE.json`` entry (recipe, recipe hash, file hash, counts) and its failure
records — in a reference folder; :func:`restore` writes a stored output into a folder being
generated when its recipe hash equals the stored one, so the generator reuses it instead of
recomputing it. ``python -m experiments.xtb_data --out data/3bpa_xtb --store-reference`` stores
the scans of a generated folder in the repository's reference (:data:`FOLDER`).
"""

from __future__ import annotations

import json
import lzma
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from experiments.xtb_data.store import atomic_write_bytes, atomic_write_json, sha256_file

__all__ = ["FOLDER", "INDEX", "ReferenceError", "save", "restore", "stored_names"]

#: The repository's reference folder (the scans the committed results used).
FOLDER = Path(__file__).resolve().parent / "reference"
INDEX = "reference.json"


class ReferenceError(ValueError):
    """A reference folder that does not hold what its index says."""


def _index(folder: Path) -> dict[str, Any]:
    path = Path(folder) / INDEX
    if not path.is_file():
        return {}
    return json.loads(path.read_text())


def save(data: str | Path, names: Sequence[str] | None = None, folder: str | Path = FOLDER):
    """Store the scan outputs ``names`` (default: every scan output) of the generated folder
    ``data`` in ``folder``; returns the names stored.

    Raises:
        ReferenceError: ``data`` has no ``PROVENANCE.json``, an output is not a complete scan of
            it, or its file does not match its recorded SHA-256.
    """
    data, folder = Path(data), Path(folder)
    provenance_path = data / "PROVENANCE.json"
    if not provenance_path.is_file():
        raise ReferenceError(
            f"{provenance_path} not found: store outputs of a folder written by "
            "`python -m experiments.xtb_data --out <folder>`."
        )
    outputs = json.loads(provenance_path.read_text())["outputs"]
    failures = json.loads((data / "failures.json").read_text())
    if names is None:
        names = sorted(n for n, e in outputs.items() if e.get("kind") == "scan")
    index = _index(folder)
    for name in names:
        entry = outputs.get(name)
        if entry is None or entry.get("kind") != "scan":
            raise ReferenceError(f"{name} is not a scan output of {data} (see its PROVENANCE).")
        if sha256_file(data / name) != entry["sha256"]:
            raise ReferenceError(
                f"{data / name} does not match the SHA-256 in {provenance_path}; regenerate it."
            )
        atomic_write_bytes(folder / f"{name}.xz", lzma.compress((data / name).read_bytes()))
        entry = {k: v for k, v in entry.items() if k != "restored_from_reference"}
        index[name] = {"entry": entry, "failures": failures.get(name, [])}
    atomic_write_json(folder / INDEX, index)
    return list(names)


def stored_names(folder: str | Path) -> list[str]:
    """The outputs stored in the reference ``folder`` (for any recipe)."""
    return sorted(_index(Path(folder)))


def restore(
    folder: str | Path, name: str, recipe_sha256: str, out: str | Path
) -> tuple[dict[str, Any], list] | None:
    """Write the stored ``name`` into ``out`` when ``folder`` holds it for this recipe hash;
    returns its ``(PROVENANCE entry, failures)``, or ``None`` when it is not stored for this
    recipe (then the generator computes it).

    Raises:
        ReferenceError: the stored file is missing or does not decompress to the recorded
            SHA-256 (names the file and the remedy).
    """
    folder, out = Path(folder), Path(out)
    stored = _index(folder).get(name)
    if stored is None or stored["entry"].get("recipe_sha256") != recipe_sha256:
        return None
    packed = folder / f"{name}.xz"
    remedy = f"restore {packed} from the repository or remove {name} from {folder / INDEX}"
    if not packed.is_file():
        raise ReferenceError(f"{packed} is listed in {folder / INDEX} but missing; {remedy}.")
    atomic_write_bytes(out / name, lzma.decompress(packed.read_bytes()))
    if sha256_file(out / name) != stored["entry"]["sha256"]:
        (out / name).unlink()
        raise ReferenceError(f"{packed} does not decompress to its recorded SHA-256; {remedy}.")
    return stored["entry"], stored["failures"]
