"""XLA compiler options of the jitted EM programs, applied when they are first called.

On CPU, XLA 0.10 routes small elementwise and reduction ops through YNNPACK library fusions by
default; for the EM pass (a few small matrix products per chunk, then elementwise work) that
made an iteration about 2x slower than plain XLA loop fusions with YNNPACK for the matrix
products only (measured with experiments/bench/gmm_fit.py). On other backends, or with a
jaxlib that does not know the option, XLA's defaults are used.
"""

from __future__ import annotations

import functools
from collections.abc import Callable
from typing import Any

import jax

_CPU_OPTIONS = {"xla_cpu_experimental_ynn_fusion_type": "LIBRARY_FUSION_TYPE_INDIVIDUAL_DOT"}


@functools.cache
def compiler_options() -> dict[str, str] | None:
    """The options for ``jax.jit(..., compiler_options=...)`` on the default backend."""
    if jax.default_backend() != "cpu":
        return None
    try:
        jax.jit(lambda v: v + 1.0, compiler_options=_CPU_OPTIONS).lower(1.0).compile()
    except Exception:  # an unknown or renamed option: XLA's defaults
        return None
    return dict(_CPU_OPTIONS)


def jit(fn: Callable, **jit_kwargs: Any) -> Callable:
    """``jax.jit(fn, compiler_options=compiler_options(), **jit_kwargs)``, built on first call.

    Built lazily so that importing :mod:`gmm` does not initialise a JAX backend. The wrapper
    keeps ``fn``'s name (trace logs name ``fn``) and offers ``lower`` like a jitted function.
    """

    @functools.cache
    def jitted() -> Callable:
        return jax.jit(fn, compiler_options=compiler_options(), **jit_kwargs)

    @functools.wraps(fn)
    def call(*args: Any, **kwargs: Any) -> Any:
        return jitted()(*args, **kwargs)

    call.lower = lambda *args, **kwargs: jitted().lower(*args, **kwargs)
    return call
