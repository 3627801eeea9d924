"""JAX's persistent compilation cache, on by default for every entry point of the package.

Compiling the model, a training step or a GMM sweep takes seconds to minutes on a CPU; the same
program compiled by an earlier process is read back from disk in milliseconds. The command line,
the experiments, the demo and the ASE calculator call :func:`enable_compilation_cache` before
they compile anything.

Where the cache lives, in this order:

1. a cache folder the user already gave JAX (``JAX_COMPILATION_CACHE_DIR`` or
   ``jax.config.update("jax_compilation_cache_dir", ...)``) is left as it is;
2. ``NEQUIP_JAX_CACHE_DIR``: a folder, or ``off`` (also ``0``, ``false``, ``none``, empty) to
   turn the cache off;
3. the user cache folder: ``$XDG_CACHE_HOME/nequip-jax/xla`` (``~/.cache/nequip-jax/xla``),
   ``~/Library/Caches/nequip-jax/xla`` on macOS, ``%LOCALAPPDATA%\\nequip-jax\\xla`` on Windows.

Entries are keyed by JAX on the program, the compiler options, the backend and the JAX version,
so a stale entry is never used. JAX bounds the folder's size only with the optional ``filelock``
package installed (``jax_compilation_cache_max_size``); the folder can be deleted at any time.
"""

from __future__ import annotations

import os
import sys
import warnings
from pathlib import Path

import jax

__all__ = ["CACHE_ENV", "default_cache_dir", "enable_compilation_cache"]

#: Environment variable: cache folder, or ``off`` to disable the cache.
CACHE_ENV = "NEQUIP_JAX_CACHE_DIR"

_OFF = {"", "0", "off", "false", "no", "none"}


def _user_cache_root() -> Path:
    if sys.platform == "darwin":
        return Path.home() / "Library" / "Caches"
    if os.name == "nt" and os.environ.get("LOCALAPPDATA"):
        return Path(os.environ["LOCALAPPDATA"])
    xdg = os.environ.get("XDG_CACHE_HOME")
    return Path(xdg) if xdg else Path.home() / ".cache"


def default_cache_dir() -> Path | None:
    """The folder :func:`enable_compilation_cache` uses (``None``: turned off by
    ``NEQUIP_JAX_CACHE_DIR``)."""
    value = os.environ.get(CACHE_ENV)
    if value is not None:
        if value.strip().lower() in _OFF:
            return None
        return Path(value).expanduser()
    return _user_cache_root() / "nequip-jax" / "xla"


def enable_compilation_cache(folder: str | Path | None = None) -> Path | None:
    """Turn on JAX's persistent compilation cache unless the user configured one already.

    Args:
        folder: the cache folder (``None``: :func:`default_cache_dir`).

    Returns:
        The cache folder in use (the user's own if one was set), or ``None`` when the cache is off.
        Calling it again is harmless; it never changes a folder that is already set.
    """
    current = jax.config.jax_compilation_cache_dir
    if current:
        return Path(current)
    target = Path(folder).expanduser() if folder is not None else default_cache_dir()
    if target is None:
        return None
    try:
        target.mkdir(parents=True, exist_ok=True)
    except OSError as err:  # a read-only home must not stop a calculation
        warnings.warn(
            f"compilation cache folder {target} cannot be created ({err}); compiling without a "
            f"persistent cache. Set {CACHE_ENV} to a writable folder, or to 'off'.",
            RuntimeWarning,
            stacklevel=2,
        )
        return None
    jax.config.update("jax_compilation_cache_dir", str(target))
    return target
