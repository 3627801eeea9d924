"""The model inside a user's own ``jax.jit``: what XLA compiles under its default options.

On a CPU, jaxlib's default YNNPACK library fusions are 30–50× slower than XLA's loops on
reductions of arrays with an axis of extent one, and the reverse pass of a broadcast product is
such a reduction whenever an operand has a unit axis (an ``l = 0`` irrep, a one-path group).
The model is written so that no reduction of its compiled forward+forces program has one; the
test reads the optimised HLO of a user-style program (a ``lax.scan`` of velocity-Verlet steps,
compiled by a plain ``jax.jit``) and checks that, and that it is the same computation as the
``model_jit`` build (XLA's count of floating-point operations).
"""

from __future__ import annotations

import re

import jax
import jax.numpy as jnp
import pytest
from nequip_testing import params_for, tiny_config

from nequip_jax.model import make_model_fns, model_jit

# f = 8, lmax = 2 with parity: l = 0, 1, 2 inputs, one- and many-path groups, scalar outputs.
CONFIG = tiny_config(num_features=8, lmax=2, dtype="float32", edge_chunk_size=None)

_INSTRUCTION = re.compile(r"%([\w.\-]+) = \w+\[([\d,]*)\]")
_REDUCE = re.compile(r"%([\w.\-]+) = \w+\[([\d,]*)\]\S* reduce\(%([\w.\-]+)")


def _md_program(predict, n_steps: int = 3, dt: float = 1e-3):
    """``(params, graph) -> positions`` after ``n_steps`` velocity-Verlet steps (unit masses)."""

    def run(params, graph):
        def step(carry, _):
            positions, velocities, forces = carry
            velocities = velocities + 0.5 * dt * forces
            positions = positions + dt * velocities
            moved = graph._replace(nodes={**graph.nodes, "positions": positions})
            forces = predict(params, moved)["forces"]
            return (positions, velocities + 0.5 * dt * forces, forces), None

        positions = graph.nodes["positions"]
        forces = predict(params, graph)["forces"]
        carry = (positions, jnp.zeros_like(positions), forces)
        (positions, _, _), _ = jax.lax.scan(step, carry, None, length=n_steps)
        return positions

    return run


def _unit_axis_reductions(hlo: str) -> list[tuple[str, str, str]]:
    """``(name, operand shape, result shape)`` of every reduce whose operand or result has an
    axis of extent one. Instruction names are unique in an HLO module."""
    shapes = {name: shape for name, shape in _INSTRUCTION.findall(hlo)}
    found = []
    for name, result, operand in _REDUCE.findall(hlo):
        operand_shape = shapes.get(operand, "")
        if "1" in operand_shape.split(",") or "1" in result.split(","):
            found.append((name, operand_shape, result))
    return found


@pytest.fixture(scope="module")
def compiled(batch):
    graph = jax.tree.map(lambda a: a.astype("float32") if a.dtype == "float64" else a, batch)
    _, predict = make_model_fns(CONFIG)
    params = params_for(CONFIG, graph)
    program = _md_program(predict)
    return {
        "plain": jax.jit(program).lower(params, graph).compile(),
        "model_jit": model_jit(program).lower(params, graph).compile(),
    }


def test_plain_jit_program_has_no_reduction_over_a_unit_axis(compiled):
    assert _unit_axis_reductions(compiled["plain"].as_text()) == []


def test_plain_jit_program_is_the_model_jit_computation(compiled):
    flops = {name: c.cost_analysis()["flops"] for name, c in compiled.items()}
    assert flops["plain"] == pytest.approx(flops["model_jit"], rel=0.02)


def test_the_check_finds_a_reduction_over_a_unit_axis():
    # The oracle of the first test: the reverse pass of a broadcast product with a unit axis.
    def f(x, b):
        return jnp.sum(x[:, :, None, :] * b[:, :, :, None], axis=1)

    args = (jnp.ones((64, 3, 16)), jnp.ones((64, 3, 1)))
    hlo = jax.jit(jax.grad(lambda x, b: jnp.sum(f(x, b) ** 2), argnums=(0, 1))).lower(*args)
    assert _unit_axis_reductions(hlo.compile().as_text())
