"""A discrete subnet costs its chosen candidates, whatever mutable holds them; one policy for traced indices."""

from __future__ import annotations

import flax.linen as nn
import jax
import jax.numpy as jnp
import numpy as np
import pytest

import jaxmutate as jm

X = jnp.ones((2, 8))
SMALL, BIG = 3, 96  # feature counts: the "big" candidate's matmul is 32x the small one's


class OpNet(nn.Module):
  """One mutable op over candidates of very different cost, then a fixed head."""

  op_cls: type

  @nn.compact
  def __call__(self, x, choices):
    y = self.op_cls(
      {"small": nn.Sequential([nn.Dense(SMALL), nn.Dense(4)]), "big": nn.Sequential([nn.Dense(BIG), nn.Dense(4)])},
      name="op",
    )(x, choices)
    return nn.Dense(2, name="head")(y)


class RouteNet(nn.Module):
  route_cls: type

  @nn.compact
  def __call__(self, x, choices):
    edges = {f"e{i}": nn.Sequential([nn.Dense(width), nn.Dense(4)]) for i, width in enumerate((SMALL, BIG, 5))}
    return self.route_cls(edges, num_chosen=2, name="route")([x, x, x], choices)


OP_KINDS = [jm.OneShotMutableOP, jm.DiffMutableOP, jm.GumbelMutableOP, jm.OneHotMutableOP]
ROUTE_KINDS = [jm.DiffChoiceRoute, jm.GumbelChoiceRoute]
GUMBEL = {"gumbel": jax.random.key(3)}


def _dot_widths(jaxpr) -> list[int]:
  """Output feature counts of every dot_general in a jaxpr, recursing into sub-jaxprs."""
  widths = []
  for eqn in jaxpr.eqns:
    if eqn.primitive.name == "dot_general":
      widths.append(eqn.outvars[0].aval.shape[-1])
    for param in eqn.params.values():
      for sub in param if isinstance(param, (tuple, list)) else (param,):
        inner = getattr(sub, "jaxpr", sub)
        if hasattr(inner, "eqns"):
          widths.extend(_dot_widths(inner))
  return widths


def _top_level_prims(jaxpr) -> list[str]:
  return [eqn.primitive.name for eqn in jaxpr.eqns]


@pytest.mark.parametrize("op_cls", OP_KINDS, ids=lambda c: c.__name__)
def test_concrete_discrete_op_traces_to_the_chosen_candidate_only(op_cls, key):
  net = OpNet(op_cls)
  variables = net.init(key, X, None)
  mutator = jm.NasMutator().prepare_from_supernet(variables)
  for index, width in ((0, SMALL), (1, BIG)):
    choices = mutator.set_choices({0: index})
    jaxpr = jax.make_jaxpr(lambda v: net.apply(v, X, choices, rngs=GUMBEL))(variables).jaxpr
    widths = _dot_widths(jaxpr)
    assert width in widths and ({SMALL, BIG} - {width}).isdisjoint(widths), widths


@pytest.mark.parametrize("op_cls", OP_KINDS, ids=lambda c: c.__name__)
def test_traced_discrete_op_is_a_switch_and_costs_one_candidate(op_cls, key):
  net = OpNet(op_cls)
  variables = net.init(key, X, None)
  mutator = jm.NasMutator().prepare_from_supernet(variables)

  def run(v, index):
    return net.apply(v, X, mutator.set_choices({0: index}), rngs=GUMBEL)

  jaxpr = jax.make_jaxpr(run)(variables, jnp.int32(1)).jaxpr
  # No candidate runs outside the switch: only the head's matmul is at top level.
  top_widths = [e.outvars[0].aval.shape[-1] for e in jaxpr.eqns if e.primitive.name == "dot_general"]
  assert top_widths == [2]
  assert any(name in ("cond", "custom_vjp_call", "custom_vjp_call_jaxpr", "pjit") for name in _top_level_prims(jaxpr))
  compiled = jax.jit(run).lower(variables, jnp.int32(1)).compile().as_text()
  assert "conditional" in compiled
  for index in (0, 1):
    expected = net.apply(variables, X, mutator.set_choices({0: index}), rngs=GUMBEL)
    np.testing.assert_allclose(jax.jit(run)(variables, jnp.int32(index)), expected, rtol=1e-6, atol=1e-6)


@pytest.mark.parametrize("route_cls", ROUTE_KINDS, ids=lambda c: c.__name__)
def test_discrete_route_runs_and_sums_only_its_chosen_edges(route_cls, key):
  net = RouteNet(route_cls)
  variables = net.init(key, X, None)
  mutator = jm.NasMutator().prepare_from_supernet(variables)
  choices = mutator.set_choices({0: np.array([2, 0], np.int32)})
  widths = _dot_widths(jax.make_jaxpr(lambda v: net.apply(v, X, choices, rngs=GUMBEL))(variables).jaxpr)
  assert BIG not in widths and SMALL in widths and 5 in widths

  def edge(name, width):
    return nn.Sequential([nn.Dense(width), nn.Dense(4)]).apply({"params": variables["params"]["route"][name]}, X)

  expected = edge("e0", SMALL) + edge("e2", 5)
  np.testing.assert_allclose(net.apply(variables, X, choices, rngs=GUMBEL), expected, rtol=1e-5, atol=1e-6)
  traced = jax.jit(lambda c: net.apply(variables, X, mutator.set_choices({0: c}), rngs=GUMBEL))
  np.testing.assert_allclose(traced(jnp.array([2, 0], jnp.int32)), expected, rtol=1e-5, atol=1e-6)


# One policy for traced indices: clipped into range, under jit and vmap, never NaN.


@pytest.mark.parametrize("op_cls", OP_KINDS, ids=lambda c: c.__name__)
def test_traced_out_of_range_op_index_is_clipped_under_jit_and_vmap(op_cls, key):
  net = OpNet(op_cls)
  variables = net.init(key, X, None)
  mutator = jm.NasMutator().prepare_from_supernet(variables)

  def run(index):
    return net.apply(variables, X, mutator.set_choices({0: index}), rngs=GUMBEL)

  last = run(1)
  first = run(0)
  np.testing.assert_allclose(jax.jit(run)(jnp.int32(7)), last, rtol=1e-6, atol=1e-6)
  np.testing.assert_allclose(jax.jit(run)(jnp.int32(-3)), first, rtol=1e-6, atol=1e-6)
  batched = jax.jit(jax.vmap(run))(jnp.array([7, -3, 1, 0], jnp.int32))
  assert np.isfinite(np.asarray(batched)).all()
  np.testing.assert_allclose(batched, jnp.stack([last, first, last, first]), rtol=1e-6, atol=1e-6)


def test_traced_out_of_range_value_and_route_indices_are_clipped(key):
  value = jm.OneShotMutableValue([2, 4, 8])
  v_vars = value.init(key, None)
  run_value = jax.jit(jax.vmap(lambda i: value.apply(v_vars, {"": i})))
  np.testing.assert_array_equal(run_value(jnp.array([-1, 0, 2, 9], jnp.int32)), [2, 2, 8, 8])

  net = RouteNet(jm.DiffChoiceRoute)
  variables = net.init(key, X, None)
  run = jax.jit(lambda edges: net.apply(variables, X, {"route": edges}))
  np.testing.assert_allclose(
    run(jnp.array([9, -4], jnp.int32)), run(jnp.array([2, 0], jnp.int32)), rtol=1e-6, atol=1e-6
  )


def test_concrete_out_of_range_indices_raise_choice_error(key):
  net = OpNet(jm.DiffMutableOP)
  variables = net.init(key, X, None)
  with pytest.raises(jm.errors.ChoiceError, match="'op'.*out of range"):
    net.apply(variables, X, {"op": 5})
  mutator = jm.NasMutator().prepare_from_supernet(variables)
  with pytest.raises(ValueError, match="group 0.*out of range"):
    mutator.set_choices({0: 2})
