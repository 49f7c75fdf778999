"""Cost tables for every mutable kind (ops, values, widths), expected costs and their gradients, FLOPs penalties."""

import flax.linen as nn
import jax
import jax.flatten_util
import jax.numpy as jnp
import numpy as np
import optax
import pytest

import jaxmutate as jm
from jaxmutate import dynamic
from jaxmutate.algorithms import (
  CostPenaltyState,
  add_cost_penalty,
  arch_weights,
  cost_penalty,
  derive_group_choices,
  expected_cost,
  init_darts_state,
  make_darts_steps,
)
from jaxmutate.channels import OneShotMutableChannelUnit, Value
from jaxmutate.resources import build_resource_table, dynamic_cost_fn, fit_resource_table


class WidthNet(nn.Module):
  """Two channel units, an expand-ratio value (``hidden = u2 × expand``) and an op choice."""

  @nn.compact
  def __call__(self, x, choices, train=False):
    u1 = OneShotMutableChannelUnit(8, (0.25, 0.5, 1.0), name="u1")(choices)
    u2 = OneShotMutableChannelUnit(8, (0.5, 0.75, 1.0), name="u2")(choices)
    expand = Value.of(jm.OneShotMutableValue([1, 2], name="expand"), choices)
    x = dynamic.DynamicConv(8, 3, use_bias=False, name="conv1")(x, out_width=u1)
    x = nn.relu(dynamic.DynamicBatchNorm(use_running_average=not train, name="bn1")(x, u1))
    x = dynamic.DynamicConv(8, 3, name="conv2")(x, in_width=u1, out_width=u2)
    x = jm.OneShotMutableOP({"relu": nn.relu, "tanh": nn.tanh}, name="act")(x, choices)
    x = dynamic.DynamicConv(16, 1, name="conv3")(x, in_width=u2, out_width=u2 * expand)
    return dynamic.DynamicDense(10, name="fc")(x.mean((1, 2)), in_width=u2 * expand)


@pytest.fixture(scope="module")
def width_space():
  net, x = WidthNet(), jnp.ones((1, 8, 8, 1))
  variables = jm.init_supernet(net, jax.random.key(0), x)
  mutator = jm.NasMutator().prepare_from_supernet(variables)
  table = build_resource_table(net, variables, mutator, x)  # "auto": values and widths interact
  return net, x, variables, mutator, table


def test_pairwise_table_prices_widths_values_and_ops_exactly(width_space):
  net, x, variables, mutator, table = width_space
  kinds = sorted(type(mutator.group_space(g)).__name__ for g in mutator.search_groups)
  assert kinds == ["ChannelSpace", "ChannelSpace", "IndexSpace", "ValueSpace"]
  u1, u2, expand = (next(g for g, names in mutator.search_groups.items() if n in names) for n in ("u1", "u2", "expand"))
  assert {tuple(sorted(p)) for p in table.pairs["flops"]} == {tuple(sorted((u1, u2))), tuple(sorted((u2, expand)))}

  # Against XLA's exact count of sampled subnets, and as a hard constraint inside jit over the population.
  population = jax.vmap(mutator.sample_choices)(jax.random.split(jax.random.key(2), 5))
  exact = [
    jm.estimate_resources(net, variables, mutator, {g: v[i] for g, v in population.items()}, x) for i in range(5)
  ]
  for name in ("flops", "params"):
    np.testing.assert_allclose(table(population)[name], [e[name] for e in exact], rtol=1e-4)
  ok = jax.jit(lambda p: table(p)["flops"] <= 0.03)(population)
  np.testing.assert_array_equal(np.asarray(ok), [e["flops"] <= 0.03 for e in exact])
  additive = jm.ResourceTable(table.names, table.base, table.deltas)  # the same table without its pairs
  worst = max(abs(float(additive(population)["flops"][i]) / e["flops"] - 1) for i, e in enumerate(exact))
  assert worst > 0.05, worst
  # The exact jittable alternative: dynamic layers' parameters agree with the counted tree.
  dyn = jax.jit(jax.vmap(dynamic_cost_fn(net, variables, mutator, x)))(population)
  np.testing.assert_allclose(dyn["params"], [e["params"] for e in exact], rtol=1e-6)


def test_fit_resource_table_needs_pairs_only_where_costs_interact():
  widths = (1.0, 2.0, 4.0)

  def measure(c):
    a, b, k = (widths[int(c[g])] for g in range(3))
    return {"macs": a * b + 3 * k}

  table = fit_resource_table(measure, {0: 3, 1: 3, 2: 3})
  assert list(table.pairs["macs"]) == [(0, 1)]
  grid = jnp.stack(jnp.meshgrid(*[jnp.arange(3)] * 3, indexing="ij"), -1).reshape(-1, 3)
  got = table({g: grid[:, g] for g in range(3)})["macs"]
  want = [measure({g: int(r[g]) for g in range(3)})["macs"] for r in np.asarray(grid)]
  np.testing.assert_allclose(got, want)
  with pytest.raises(ValueError, match="interactions"):
    fit_resource_table(measure, {0: 3}, interactions="triple")
  with pytest.raises(KeyError, match="group 1"):
    table({0: 1, 2: 0})


def test_expected_cost_is_exact_and_its_gradient_matches_finite_differences(width_space):
  _, _, _, mutator, table = width_space
  logits = {g: jax.random.normal(jax.random.key(g), (mutator.group_spec(g).num_choices,)) for g in table.groups}
  # Exact: the expectation over the whole (small) space, enumerated in one call.
  probs = jax.jit(arch_weights)(logits)
  grid = np.stack(np.meshgrid(*[np.arange(mutator.group_spec(g).num_choices) for g in table.groups], indexing="ij"), -1)
  grid = grid.reshape(-1, len(table.groups))
  enumerated = {g: jnp.asarray(grid[:, i]) for i, g in enumerate(table.groups)}
  mass = np.prod([np.asarray(probs[g])[grid[:, i]] for i, g in enumerate(table.groups)], axis=0)
  total = float(np.sum(mass * np.asarray(jax.jit(lambda c: table(c)["flops"])(enumerated))))
  f = jax.jit(lambda a: expected_cost(table, a)["flops"])
  assert float(f(logits)) == pytest.approx(total, rel=1e-5)

  # The gradient against central finite differences of every logit, in one vmapped call.
  grad = jax.jit(jax.grad(f))(logits)
  eps = 1e-2
  flat, unravel = jax.flatten_util.ravel_pytree(logits)
  bumps = jnp.eye(flat.shape[0]) * eps
  fd = jax.jit(jax.vmap(lambda d: (f(unravel(flat + d)) - f(unravel(flat - d))) / (2 * eps)))(bumps)
  np.testing.assert_allclose(jax.flatten_util.ravel_pytree(grad)[0], fd, rtol=2e-2, atol=1e-6)
  # Gumbel weights: a differentiable sample, equal in expectation to softmax.
  gumbel = jax.jit(jax.vmap(lambda k: expected_cost(table, logits, "gumbel", k, tau=1.0)["flops"]))(
    jax.random.split(jax.random.key(3), 4)
  )
  assert gumbel.shape == (4,) and bool(jnp.all(jnp.isfinite(gumbel)))
  with pytest.raises(ValueError, match="key"):
    expected_cost(table, logits, "gumbel")
  with pytest.raises(ValueError, match="choices"):
    table.expected({**probs, table.groups[0]: jnp.ones(7) / 7})


def test_penalty_bad_input_names_what_was_expected(width_space):
  table = width_space[-1]
  with pytest.raises(ValueError, match="resource 'latency'"):
    cost_penalty(table, resource="latency")
  with pytest.raises(ValueError, match="target must be >= 0"):
    cost_penalty(table, target=-2.0)
  with pytest.raises(ValueError, match="weight must be >= 0"):
    add_cost_penalty(cost_penalty(table), weight=-1.0)
  with pytest.raises(ValueError, match="route"):
    route = jm.DiffChoiceRoute({"a": lambda x: x, "b": lambda x: x}, num_chosen=1)
    route_vars = route.init(jax.random.key(0), [jnp.ones((1, 2))] * 2, None)
    build_resource_table(route, route_vars, jm.NasMutator().prepare_from_supernet(route_vars), None)


class TinyDartsNet(nn.Module):
  """Three DARTS-style edges choosing a 5x5 conv, a 3x3 conv or a skip."""

  @nn.compact
  def __call__(self, x, choices, train=False):
    x = nn.Conv(4, (3, 3), name="stem")(x)
    for i in range(3):
      ops = {"conv5": nn.Conv(4, (5, 5)), "conv3": nn.Conv(4, (3, 3)), "skip": lambda h: h}
      x = nn.relu(jm.DiffMutableOP(ops, name=f"edge{i}")(x, choices))
    return nn.Dense(3, name="head")(x.mean((1, 2)))


@pytest.mark.slow
def test_flops_penalty_lowers_the_derived_architectures_flops():
  net = TinyDartsNet()
  key = jax.random.key(0)
  images = jax.random.normal(key, (8, 6, 6, 1))
  labels = jnp.arange(8) % 3
  fast = {"xla_backend_optimization_level": 0}
  initial, mutator, variables = init_darts_state(
    net, jm.DiffModuleMutator(), optax.sgd(0.05), optax.adam(0.1), key, images, fast
  )
  table = build_resource_table(net, variables, mutator, images[:1])
  arch_optimizer = optax.chain(add_cost_penalty(cost_penalty(table)), optax.adam(0.1))
  steps = make_darts_steps(net, mutator, optax.sgd(0.05), arch_optimizer, compiler_options=fast)  # one compile
  derived_flops = []
  for weight in (0.0, 0.3, 3.0):
    penalty_state, adam_state = arch_optimizer.init(initial.arch_params)
    state = initial._replace(arch_opt_state=(CostPenaltyState(jnp.float32(weight)), adam_state))
    for step in range(10):
      state, _ = steps.search_step(state, (images, labels), (images, labels), jax.random.fold_in(key, step))
    derived_flops.append(float(table(derive_group_choices(mutator, state.arch_params))["flops"]))
  assert derived_flops[0] >= derived_flops[1] >= derived_flops[2], derived_flops
  cheapest = float(table.base["flops"]) + sum(float(d.min()) for d in table.deltas["flops"].values())
  assert derived_flops[2] == pytest.approx(cheapest) and derived_flops[2] < derived_flops[0], derived_flops


def test_darts_runner_checks_its_flops_penalty():
  from jaxmutate.runners.darts import DARTS

  arch = dict(type="DartsBackbone", num_classes=10)
  assert DARTS(arch, flops_penalty=dict(weight=2, target=0.1)).flops_penalty == {
    "weight": 2.0,
    "target": 0.1,
    "resource": "flops",
  }
  with pytest.raises(KeyError, match="'wieght' \\(did you mean 'weight'"):
    DARTS(arch, flops_penalty=dict(wieght=1.0))
  with pytest.raises(ValueError, match="needs a weight"):
    DARTS(arch, flops_penalty=dict(target=1.0))
  with pytest.raises(ValueError, match="target must be a number >= 0"):
    DARTS(arch, flops_penalty=dict(weight=1.0, target=-1))
  with pytest.raises(ValueError, match="resource must be 'flops' or 'params'"):
    DARTS(arch, flops_penalty=dict(weight=1.0, resource="latency"))
