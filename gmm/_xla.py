"""XLA compiler options of the jitted EM programs, applied when they are first called.

On CPU, XLA 0.10 routes small elementwise and reduction ops through YNNPACK library fusions by
default; for the EM pass (a few small matrix products per chunk, then elementwise work) that
made an iteration about 2x slower than plain XLA loop fusions with YNNPACK for the matrix
products only (measured with experiments/bench/gmm_fit.py). On other backends, or with a
jaxlib that does not know the option, XLA's defaults are used.

Small problems are compile-bound: for them (EM work per iteration, samples × components ×
features², below :data:`LIGHT_WORK`) the programs are also built without XLA's CPU fusion
emitters, which compiles the BIC sweep of the demo's features (N = 2430, D = 8, K ≤ 20) about
a third faster and runs it about 15 % slower; at the paper's size (N = 12 150, D = 16, K ≤ 49)
the emitters win (the sweep runs about 10 % faster with them).
"""

from __future__ import annotations

import functools
from collections.abc import Callable
from typing import Any

import jax

_CPU_OPTIONS = {"xla_cpu_experimental_ynn_fusion_type": "LIBRARY_FUSION_TYPE_INDIVIDUAL_DOT"}
_LIGHT_OPTIONS = {"xla_cpu_use_fusion_emitters": False}

#: Samples × components × features² per EM iteration below which a program is compiled with
#: the compile-light options (see the module docstring).
LIGHT_WORK = 2**24


@functools.cache
def compiler_options(light: bool = False) -> dict[str, Any] | None:
    """The options for ``jax.jit(..., compiler_options=...)`` on the default backend
    (``light``: also the compile-light ones, for small problems)."""
    if jax.default_backend() != "cpu":
        return None
    options = {**_CPU_OPTIONS, **(_LIGHT_OPTIONS if light else {})}
    try:
        jax.jit(lambda v: v + 1.0, compiler_options=options).lower(1.0).compile()
    except Exception:  # an unknown or renamed option: the base options, else XLA's defaults
        return compiler_options(False) if light else None
    return options


def jit(
    fn: Callable, *, light_if: Callable[..., bool] | None = None, **jit_kwargs: Any
) -> Callable:
    """``jax.jit(fn, compiler_options=compiler_options(light), **jit_kwargs)``, built on first
    call, where ``light = light_if(*args, **kwargs)`` of the call (default False).

    Built lazily so that importing :mod:`gmm` does not initialise a JAX backend. The wrapper
    keeps ``fn``'s name (trace logs name ``fn``) and offers ``lower`` like a jitted function.
    """

    @functools.cache
    def jitted(light: bool) -> Callable:
        return jax.jit(fn, compiler_options=compiler_options(light), **jit_kwargs)

    def pick(args, kwargs) -> Callable:
        return jitted(bool(light_if(*args, **kwargs)) if light_if is not None else False)

    @functools.wraps(fn)
    def call(*args: Any, **kwargs: Any) -> Any:
        return pick(args, kwargs)(*args, **kwargs)

    call.lower = lambda *args, **kwargs: pick(args, kwargs).lower(*args, **kwargs)
    return call


def small_em(x, *args, n_components: int = 1, n_slots: int | None = None, **kwargs) -> bool:
    """``light_if`` of the EM programs: ``x`` ``[N, D]`` with ``n_components`` (a fit) or
    ``n_slots`` (a sweep) components is below :data:`LIGHT_WORK`."""
    del args, kwargs
    k = n_slots if n_slots is not None else n_components
    return x.shape[0] * k * x.shape[1] ** 2 < LIGHT_WORK
