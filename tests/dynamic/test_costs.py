"""Costs of the kept widths (MACs, parameters): exact for concrete widths, the same traced, vmapped and cheap."""

from __future__ import annotations

import itertools

import chex
import flax.linen as nn
import jax
import jax.numpy as jnp
import numpy as np
import pytest

import jaxmutate as jm
from jaxmutate import dynamic
from jaxmutate.channels import OneShotMutableChannelUnit
from jaxmutate.dynamic import COSTS_COLLECTION, Width, dynamic_costs, sum_costs
from jaxmutate.export import export_subnet

X = jax.random.normal(jax.random.key(1), (2, 8, 8, 3))
K1, K2 = (2, 4, 8), (6, 12)


class CostNet(nn.Module):
  @nn.compact
  def __call__(self, x, choices):
    u1 = OneShotMutableChannelUnit(8, (0.25, 0.5, 1.0), name="u1")(choices)
    u2 = OneShotMutableChannelUnit(12, (0.5, 1.0), name="u2")(choices)
    h = dynamic.DynamicConv(8, 3, name="conv1")(x, out_width=u1)
    h = dynamic.DynamicBatchNorm(use_running_average=True, name="bn1")(h, u1)
    h = dynamic.DynamicDepthwiseConv(3, use_bias=True, name="dw")(h, u1)
    h = dynamic.DynamicConv(12, 3, strides=2, use_bias=False, name="conv2")(h, out_width=u2, in_width=u1)
    h = dynamic.DynamicLayerNorm(name="ln")(h, u2)
    return dynamic.DynamicDense(10, name="fc")(h.mean((1, 2)), in_width=u2)


def analytic(k1, k2):
  macs = 64 * 9 * 3 * k1 + 2 * 64 * k1 + 64 * 9 * k1 + 16 * 9 * k1 * k2 + 4 * 16 * k2 + k2 * 10
  params = (9 * 3 * k1 + k1) + 2 * k1 + (9 * k1 + k1) + 9 * k1 * k2 + 2 * k2 + (k2 * 10 + 10)
  return macs, params


@pytest.fixture(scope="module")
def setup():
  net = CostNet()
  return net, jax.jit(net.init)(jax.random.key(0), X, None)


def as_ints(costs):
  return {name: int(value) for name, value in costs.items()}


def test_concrete_widths_give_the_analytic_costs(setup):
  net, variables = setup
  assert COSTS_COLLECTION not in variables  # nothing is sown at init
  for (i, k1), (j, k2) in itertools.product(enumerate(K1), enumerate(K2)):
    costs = dynamic_costs(net, variables, X, {"u1": i, "u2": j})
    assert costs["macs"].dtype == jnp.float32 and costs["macs"].shape == ()
    macs, params = analytic(k1, k2)
    assert as_ints(costs) == {"macs": macs, "params": params}, (k1, k2)


def test_traced_and_vmapped_widths_give_the_same_costs(setup, compile_log):
  net, variables = setup
  grid = np.array(list(itertools.product(range(3), range(2))), np.int32)
  costs = jax.jit(lambda c: dynamic_costs(net, variables, X, c))
  with compile_log() as log:
    one = [as_ints(costs({"u1": jnp.int32(i), "u2": jnp.int32(j)})) for i, j in grid]
  assert log.names.count("<lambda>") == 1  # one compile for every width
  population = jax.jit(jax.vmap(lambda c: dynamic_costs(net, variables, X, c)))(
    {"u1": jnp.asarray(grid[:, 0]), "u2": jnp.asarray(grid[:, 1])}
  )
  for n, (i, j) in enumerate(grid):
    macs, params = analytic(K1[i], K2[j])
    assert one[n] == {"macs": macs, "params": params}
    assert int(population["macs"][n]) == macs and int(population["params"][n]) == params


def test_costs_alone_compile_without_the_network(setup):
  net, variables = setup
  choices = {"u1": jnp.int32(1), "u2": jnp.int32(0)}
  costs = jax.jit(lambda c: dynamic_costs(net, variables, X, c))
  assert "convolution" not in costs.lower(choices).compile().as_text()
  population = jax.jit(jax.vmap(lambda c: dynamic_costs(net, variables, X, c)))
  batch = {"u1": jnp.array([0, 2]), "u2": jnp.array([1, 0])}
  assert "convolution" not in population.lower(batch).compile().as_text()
  logits = jax.jit(lambda c: net.apply(variables, X, c))
  assert "convolution" in logits.lower(choices).compile().as_text()  # the check can see them


def test_exported_subnet_has_the_counted_parameters(setup):
  net, variables = setup
  static, static_variables = export_subnet(net, variables, {"u1": 1, "u2": 0}, X)
  _, params = analytic(4, 6)
  assert sum(np.size(p) for p in jax.tree.leaves(static_variables["params"])) == params
  assert as_ints(dynamic_costs(static, static_variables, X)) == as_ints(
    dynamic_costs(net, variables, X, {"u1": 1, "u2": 0})
  )


def flops(f, *args):
  cost = jax.jit(f).lower(*args).cost_analysis()
  return float((cost[0] if isinstance(cost, (list, tuple)) else cost)["flops"])


def test_conventions_agree_with_xla_cost_analysis():
  x = jax.random.normal(jax.random.key(0), (1, 6, 6, 4))
  conv = dynamic.DynamicConv(8, 3, padding="VALID", use_bias=False)
  v = conv.init(jax.random.key(0), x)
  costs = dynamic_costs(conv, v, x, 5, 3)
  static = nn.Conv(5, (3, 3), padding="VALID", use_bias=False)
  sv = {"params": {"kernel": v["params"]["kernel"][..., :3, :5]}}
  assert int(costs["macs"]) == 16 * 9 * 3 * 5 == flops(lambda v, x: static.apply(v, x[..., :3]), sv, x) / 2
  dense = dynamic.DynamicDense(6, use_bias=False)
  xd = jnp.ones((3, 5, 4))  # (batch, tokens, features)
  vd = dense.init(jax.random.key(0), xd)
  assert int(dynamic_costs(dense, vd, xd, 2, 3)["macs"]) == 5 * 3 * 2
  assert flops(lambda x: x[:1, :, :3] @ vd["params"]["kernel"][:3, :2], xd) / 2 == 5 * 3 * 2
  for norm, factor in ((nn.BatchNorm(use_running_average=True), 2), (nn.LayerNorm(), 4)):
    xla = flops(lambda v, x: norm.apply(v, x), norm.init(jax.random.key(0), x[..., :3]), x[..., :3]) / 2
    assert 0.5 <= factor * 36 * 3 / xla <= 1.5


def test_grouped_conv_dense_positions_and_switchable_batch_norm():
  x = jnp.ones((1, 4, 4, 8))
  grouped = dynamic.DynamicConv(8, 3, feature_group_count=2, use_bias=False)
  v = grouped.init(jax.random.key(0), x)
  assert as_ints(dynamic_costs(grouped, v, x, 4)) == {"macs": 16 * 9 * 4 * 4, "params": 9 * 4 * 4}
  sbn = dynamic.SwitchableBatchNorm((2, 6), use_running_average=True)
  vs = sbn.init(jax.random.key(0), x[..., :6], 0)
  expected = [{"macs": 2 * 16 * w, "params": 2 * w} for w in (2, 6)]
  assert [as_ints(dynamic_costs(sbn, vs, x[..., :6], i)) for i in (0, 1)] == expected
  traced = jax.jit(jax.vmap(lambda i: dynamic_costs(sbn, vs, x[..., :6], i)))(jnp.arange(2))
  assert traced["params"].tolist() == [4.0, 12.0]
  width = Width(jnp.int32(4), 8, candidates=(2, 4, 8))
  depthwise = dynamic.DynamicDepthwiseConv(3)
  vw = depthwise.init(jax.random.key(0), x)
  assert as_ints(jax.jit(lambda w: dynamic_costs(depthwise, vw, x, w))(width)) == {"macs": 16 * 9 * 4, "params": 36}


def test_one_shot_ops_pass_on_the_chosen_candidates_costs():
  class Net(nn.Module):
    @nn.compact
    def __call__(self, x, choices):
      big = nn.Sequential([dynamic.DynamicDense(16), dynamic.DynamicDense(4)])
      ops = {"small": dynamic.DynamicDense(4), "big": big, "skip": lambda x: x[..., :4]}
      x = jm.OneShotMutableOP(ops, name="op")(x, choices)
      return dynamic.DynamicDense(2, name="fc")(x[..., :4])

  net, x = Net(), jnp.ones((2, 6))
  variables = net.init(jax.random.key(0), x, None)
  fc = {"macs": 8, "params": 10}
  expected = [{"macs": 24 + 8, "params": 28 + 10}, {"macs": 96 + 64 + 8, "params": 112 + 68 + 10}, fc]
  assert [as_ints(dynamic_costs(net, variables, x, {"op": i})) for i in range(3)] == expected
  traced = jax.jit(lambda i: dynamic_costs(net, variables, x, {"op": i}))
  assert [as_ints(traced(jnp.int32(i))) for i in range(3)] == expected
  population = jax.jit(jax.vmap(lambda i: dynamic_costs(net, variables, x, {"op": i})))(jnp.arange(3))
  assert population["macs"].tolist() == [e["macs"] for e in expected]
  # The switch still runs the network: the output of a costed call equals a plain one.
  out, state = jax.jit(lambda i: net.apply(variables, x, {"op": i}, mutable=[COSTS_COLLECTION]))(jnp.int32(1))
  chex.assert_trees_all_close(out, net.apply(variables, x, {"op": 1}))
  assert int(sum_costs(state[COSTS_COLLECTION])["macs"]) == 168


def test_static_mode_costs_equal_the_dynamic_ones():
  conv = dynamic.DynamicConv(8, 3, strides=2)
  v = conv.init(jax.random.key(0), X)
  with dynamic.static_mode():
    sv = conv.init(jax.random.key(0), X[..., :2], 5, 2)
    static = as_ints(dynamic_costs(conv, sv, X[..., :2], 5, 2))
  assert static == as_ints(dynamic_costs(conv, v, X, 5, 2)) == {"macs": 16 * 9 * 2 * 5, "params": 9 * 2 * 5 + 5}
