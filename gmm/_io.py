"""Saving and loading mixture parameters as ``.npz`` (no pickle), written atomically.

The file holds ``weights`` ``[K]``, ``means`` ``[K, D]``, ``precisions_cholesky`` ``[K, D, D]``
in their own dtype and a ``format_version`` scalar. A save writes a temporary file in the
destination folder and renames it over the target (``os.replace``), so a reader never sees a
half-written file.
"""

from __future__ import annotations

import os
import tempfile
from pathlib import Path

import numpy as np

from gmm import _validation as val
from gmm._types import GMMParams

FORMAT_VERSION = 1
_FIELDS = GMMParams._fields


def save(params: GMMParams, path: str | os.PathLike) -> Path:
    """Write ``params`` to ``path`` atomically (bit-exact, dtype preserved).

    Args:
        params: the parameters to store.
        path: destination file; its folder must exist. No suffix is appended.

    Returns:
        The path written.
    """
    val.check_params(params)
    path = Path(path)
    folder = path.parent if str(path.parent) else Path(".")
    if not folder.is_dir():
        raise ValueError(f"Cannot save to {path}: folder {folder} does not exist; create it.")
    arrays = {name: np.asarray(getattr(params, name)) for name in _FIELDS}
    fd, tmp = tempfile.mkstemp(dir=folder, prefix=f".{path.name}.", suffix=".tmp")
    try:
        with os.fdopen(fd, "wb") as f:
            np.savez(f, format_version=np.int64(FORMAT_VERSION), **arrays)
            f.flush()
            os.fsync(f.fileno())
        os.replace(tmp, path)
    except BaseException:
        if os.path.exists(tmp):
            os.remove(tmp)
        raise
    return path


def load(path: str | os.PathLike) -> GMMParams:
    """Read parameters written by :func:`save`.

    Args:
        path: file written by :func:`save`.

    Returns:
        :class:`GMMParams` holding numpy arrays in the stored dtype (bit-exact round trip).

    Raises:
        ValueError: missing fields, unknown format version, inconsistent shapes or
            non-finite values.
    """
    with np.load(Path(path), allow_pickle=False) as data:
        missing = [name for name in (*_FIELDS, "format_version") if name not in data.files]
        if missing:
            raise ValueError(
                f"{path} is not a gmm parameter file (missing {missing}); write it with gmm.save."
            )
        version = int(data["format_version"])
        if version != FORMAT_VERSION:
            raise ValueError(
                f"{path} has format version {version}, this gmm reads {FORMAT_VERSION}; "
                "re-save it with a matching gmm version."
            )
        params = GMMParams(*(np.array(data[name]) for name in _FIELDS))
    val.check_params(params)
    if not all(np.all(np.isfinite(a)) for a in params):
        raise ValueError(f"{path} holds NaN or infinite parameters; refit and save again.")
    return params
