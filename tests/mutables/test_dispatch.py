"""Tests of ``jaxmutate.mutables.switch``: parity with ``lax.switch`` under every transformation."""

import re

import chex
import flax.linen as nn
import jax
import jax.numpy as jnp
import numpy as np
import pytest
from absl.testing import parameterized

import jaxmutate as jm
from jaxmutate.mutables import switch

DIMENSION_NUMBERS = ("NHWC", "HWIO", "NHWC")


def conv(x, kernel):
  return jax.lax.conv_general_dilated(x, kernel, (1, 1), "SAME", dimension_numbers=DIMENSION_NUMBERS)


def conv_branches():
  """Branches of different costs and residuals: two convs (kernel 1 and 3), a skip, a scale."""
  return [
    lambda params, x: jax.nn.relu(conv(x, params["k1"])),
    lambda params, x: jnp.tanh(conv(x, params["k3"])) * params["scale"],
    lambda params, x: x,
    lambda params, x: x * params["scale"],
  ]


def make_operands(key, batch=2):
  keys = jax.random.split(key, 4)
  params = {
    "k1": jax.random.normal(keys[0], (1, 1, 3, 3)),
    "k3": jax.random.normal(keys[1], (3, 3, 3, 3)) * 0.3,
    "scale": jax.random.normal(keys[2], (1, 1, 1, 3)),
  }
  return params, jax.random.normal(keys[3], (batch, 4, 4, 3))


def loss_with(switch_fn):
  return lambda params, x, index: jnp.sum(switch_fn(index, conv_branches(), params, x) ** 2)


class SwitchVariantsTest(parameterized.TestCase):
  @chex.variants(with_jit=True, without_jit=True)
  @parameterized.parameters(0, 1, 2, 3)
  def test_matches_lax_switch(self, index):
    params, x = make_operands(jax.random.key(0))
    expected = jax.lax.switch(index, conv_branches(), params, x)
    out = self.variant(lambda i, p, x: switch(i, conv_branches(), p, x))(jnp.int32(index), params, x)
    np.testing.assert_allclose(out, expected, rtol=1e-6, atol=1e-6)

  @chex.variants(with_jit=True, without_jit=True)
  @parameterized.parameters(0, 1, 2, 3)
  def test_grad_matches_lax_switch(self, index):
    params, x = make_operands(jax.random.key(1))
    expected = jax.grad(loss_with(jax.lax.switch), argnums=(0, 1))(params, x, jnp.int32(index))
    grads = self.variant(jax.grad(loss_with(switch), argnums=(0, 1)))(params, x, jnp.int32(index))
    chex.assert_trees_all_close(grads, expected, rtol=1e-5, atol=1e-5)


def test_out_of_range_traced_index_is_clamped():
  params, x = make_operands(jax.random.key(2))
  run = jax.jit(lambda i: switch(i, conv_branches(), params, x))
  np.testing.assert_allclose(run(jnp.int32(7)), x * params["scale"], rtol=1e-5, atol=1e-6)
  np.testing.assert_allclose(run(jnp.int32(-3)), jax.nn.relu(conv(x, params["k1"])), rtol=1e-5, atol=1e-6)


def test_single_branch_and_empty_branches():
  assert switch(jnp.int32(0), [jnp.sin], jnp.float32(0.5)) == jnp.sin(jnp.float32(0.5))
  with pytest.raises(ValueError, match="at least one branch"):
    switch(jnp.int32(0), [], jnp.float32(0.5))


@pytest.mark.parametrize("batch_operands", [False, True])
def test_vmap_matches_loop(batch_operands):
  params, x = make_operands(jax.random.key(3))
  indices = jnp.array([2, 0, 1, 3, 1], jnp.int32)
  xs = jnp.stack([x + i for i in range(len(indices))]) if batch_operands else x
  in_axes = (0, None, 0 if batch_operands else None)
  out = jax.jit(jax.vmap(lambda i, p, x: switch(i, conv_branches(), p, x), in_axes=in_axes))(indices, params, xs)
  for member, index in enumerate(indices):
    member_x = xs[member] if batch_operands else x
    np.testing.assert_array_equal(
      out[member], jax.jit(lambda i, x: switch(i, conv_branches(), params, x))(index, member_x)
    )


def test_vmap_with_unbatched_index_matches_lax_switch():
  params, x = make_operands(jax.random.key(4))
  xs = jnp.stack([x, 2 * x, -x])
  out = jax.vmap(lambda x: switch(jnp.int32(1), conv_branches(), params, x))(xs)
  expected = jax.vmap(lambda x: jax.lax.switch(1, conv_branches(), params, x))(xs)
  np.testing.assert_allclose(out, expected, rtol=1e-5, atol=1e-5)


def test_vmap_runs_only_the_chosen_branch():
  """Under vmap with a batched index, a branch's side effect fires once per member that chose it."""
  calls = []

  def branch(tag):
    def run(x):
      jax.debug.callback(lambda: calls.append(tag))
      return x + tag

    return run

  jax.block_until_ready(jax.vmap(lambda i: switch(i, [branch(0), branch(1)], jnp.float32(0)))(jnp.array([1, 1, 0])))
  jax.effects_barrier()
  assert sorted(calls) == [0, 1, 1]


def test_vmap_of_grad_and_grad_of_vmap_match_loop():
  params, x = make_operands(jax.random.key(5))
  indices = jnp.array([1, 3, 0, 2], jnp.int32)
  loss = loss_with(switch)
  per_member = [jax.grad(loss)(params, x, i) for i in indices]
  vmapped = jax.jit(jax.vmap(jax.grad(loss), in_axes=(None, None, 0)))(params, x, indices)
  chex.assert_trees_all_close(vmapped, jax.tree.map(lambda *g: jnp.stack(g), *per_member), rtol=1e-5, atol=1e-5)

  population_loss = lambda p, x: jnp.sum(jax.vmap(loss, in_axes=(None, None, 0))(p, x, indices))
  expected = jax.tree.map(lambda *g: sum(g), *per_member)
  chex.assert_trees_all_close(jax.jit(jax.grad(population_loss))(params, x), expected, rtol=1e-5, atol=1e-5)


def test_nested_vmap_matches_loop():
  params, x = make_operands(jax.random.key(6))
  indices = jnp.array([[0, 2, 1], [3, 1, 1]], jnp.int32)
  run = lambda i: switch(i, conv_branches(), params, x)
  out = jax.jit(jax.vmap(jax.vmap(run)))(indices)
  for a in range(2):
    for b in range(3):
      np.testing.assert_allclose(out[a, b], jax.jit(run)(indices[a, b]), rtol=1e-5, atol=1e-6)


def test_scan_over_subnets_matches_loop_and_differentiates():
  params, x = make_operands(jax.random.key(7))
  indices = jnp.array([1, 0, 2, 3, 1], jnp.int32)
  loss = loss_with(switch)

  def scanned(params):
    return jax.lax.scan(lambda total, i: (total + loss(params, x, i), None), jnp.float32(0), indices)[0]

  expected_value = sum(float(loss(params, x, i)) for i in indices)
  np.testing.assert_allclose(jax.jit(scanned)(params), expected_value, rtol=1e-5)
  expected_grad = jax.tree.map(lambda *g: sum(g), *[jax.grad(loss)(params, x, i) for i in indices])
  chex.assert_trees_all_close(jax.jit(jax.grad(scanned))(params), expected_grad, rtol=1e-5, atol=1e-5)


def test_prng_key_operands_under_grad_and_vmap():
  """Keys ride along as non-differentiable operands (dropout-style branches)."""

  def dropout(key, x):
    keep = jax.random.bernoulli(key, 0.5, x.shape)
    return jnp.where(keep, x * 2.0, 0.0)

  branches = [lambda key, x: dropout(key, x), lambda key, x: jnp.sin(x)]
  x = jnp.linspace(-1.0, 1.0, 6)
  key = jax.random.key(8)
  for index in (0, 1):
    np.testing.assert_allclose(
      switch(jnp.int32(index), branches, key, x), jax.lax.switch(index, branches, key, x), rtol=1e-6
    )
    grad = jax.grad(lambda x: jnp.sum(switch(jnp.int32(index), branches, key, x) ** 2))(x)
    expected = jax.grad(lambda x: jnp.sum(jax.lax.switch(index, branches, key, x) ** 2))(x)
    np.testing.assert_allclose(grad, expected, rtol=1e-6)
  keys = jax.random.split(key, 3)
  indices = jnp.array([0, 1, 0], jnp.int32)
  out = jax.vmap(lambda i, k: switch(i, branches, k, x))(indices, keys)
  for member in range(3):
    np.testing.assert_allclose(out[member], jax.lax.switch(int(indices[member]), branches, keys[member], x), rtol=1e-6)


def test_changing_the_choice_never_retraces():
  params, x = make_operands(jax.random.key(9))

  @jax.jit
  @chex.assert_max_traces(n=1)
  def run(index, params, x):
    return jax.grad(loss_with(switch))(params, x, index)

  for index in (0, 1, 2, 3, 1):
    run(jnp.int32(index), params, x)


def test_backward_convolutions_use_the_canonical_layout():
  """XLA:CPU runs non-canonical convolutions inside a conditional as naive loops (10-100x slower)."""
  params, x = make_operands(jax.random.key(10))
  text = jax.jit(jax.grad(loss_with(switch))).lower(params, x, jnp.int32(1)).as_text()
  conv_layouts = re.findall(r"dim_numbers = (\[[^\]]*\]x\[[^\]]*\]->\[[^\]]*\])", text)
  assert len(conv_layouts) >= 4  # forward and both gradients of two convolutions
  assert set(conv_layouts) == {"[b, 0, 1, f]x[0, 1, i, o]->[b, 0, 1, f]"}


class ConvBN(nn.Module):
  kernel_size: int

  @nn.compact
  def __call__(self, x, train=False):
    x = nn.Conv(3, (self.kernel_size, self.kernel_size), use_bias=False)(x)
    return nn.relu(nn.BatchNorm(use_running_average=not train, momentum=0.5)(x))


class TinySupernet(nn.Module):
  @nn.compact
  def __call__(self, x, choices, train=False):
    for i in range(2):
      candidates = {"k1": ConvBN(1), "k3": ConvBN(3), "skip": lambda x, train=False: x}
      x = jm.OneShotMutableOP(candidates, name=f"layer{i}")(x, choices, train=train)
    return x


def test_one_shot_op_under_vmap_updates_batch_stats_like_the_loop():
  net = TinySupernet()
  x = jax.random.normal(jax.random.key(11), (2, 4, 4, 3))
  variables = net.init(jax.random.key(12), x, None)
  population = {"layer0": jnp.array([0, 1, 2], jnp.int32), "layer1": jnp.array([1, 2, 0], jnp.int32)}

  def train_forward(choices):
    return net.apply(variables, x, choices, train=True, mutable=["batch_stats"])

  out, state = jax.jit(jax.vmap(train_forward))(population)
  for member in range(3):
    choices = {name: c[member] for name, c in population.items()}
    member_out, member_state = jax.jit(train_forward)(choices)
    np.testing.assert_allclose(out[member], member_out, rtol=1e-5, atol=1e-6)
    chex.assert_trees_all_close(jax.tree.map(lambda a, m=member: a[m], state), member_state, rtol=1e-5, atol=1e-6)
  # Member 0 chose k1 in layer0: only that candidate's statistics moved.
  moved = lambda new, old: bool(jnp.any(new != old))
  assert moved(
    state["batch_stats"]["layer0"]["k1"]["BatchNorm_0"]["mean"][0],
    variables["batch_stats"]["layer0"]["k1"]["BatchNorm_0"]["mean"],
  )
  assert not moved(
    state["batch_stats"]["layer0"]["k3"]["BatchNorm_0"]["mean"][0],
    variables["batch_stats"]["layer0"]["k3"]["BatchNorm_0"]["mean"],
  )


def test_one_shot_op_train_step_matches_hand_written_gradient():
  net = TinySupernet()
  x = jax.random.normal(jax.random.key(13), (2, 4, 4, 3))
  variables = net.init(jax.random.key(14), x, None)
  choices = {"layer0": jnp.int32(1), "layer1": jnp.int32(0)}

  def supernet_loss(params):
    y, _ = net.apply({**variables, "params": params}, x, choices, train=True, mutable=["batch_stats"])
    return jnp.sum(y**2)

  def hand_loss(k3, k1):
    y, _ = ConvBN(3).apply(
      {"params": k3, "batch_stats": variables["batch_stats"]["layer0"]["k3"]}, x, train=True, mutable=["batch_stats"]
    )
    y, _ = ConvBN(1).apply(
      {"params": k1, "batch_stats": variables["batch_stats"]["layer1"]["k1"]}, y, train=True, mutable=["batch_stats"]
    )
    return jnp.sum(y**2)

  grads = jax.jit(jax.grad(supernet_loss))(variables["params"])
  hand = jax.grad(hand_loss, argnums=(0, 1))(variables["params"]["layer0"]["k3"], variables["params"]["layer1"]["k1"])
  chex.assert_trees_all_close((grads["layer0"]["k3"], grads["layer1"]["k1"]), hand, rtol=1e-5, atol=1e-5)
  assert all(float(jnp.max(jnp.abs(g))) == 0.0 for g in jax.tree.leaves(grads["layer0"]["k1"]))


def test_switch_nested_in_a_branch_under_grad_and_vmap():
  """A branch that itself switches (a nested mutable) keeps parity with nested ``lax.switch``."""
  params, x = make_operands(jax.random.key(15))

  def outer(switch_fn):
    def run(indices, params, x):
      inner = lambda params, x, i: switch_fn(i, conv_branches(), params, x)
      branches = [lambda params, x, i: inner(params, x, i) * 2.0, lambda params, x, i: jnp.cos(x)]
      return jnp.sum(switch_fn(indices[0], branches, params, x, indices[1]) ** 2)

    return run

  population = jnp.array([[0, 1], [1, 0], [0, 2]], jnp.int32)
  value = jax.jit(outer(switch))
  grad = jax.jit(jax.grad(outer(switch), argnums=1))
  expected_value = jax.jit(outer(jax.lax.switch))
  expected_grad = jax.jit(jax.grad(outer(jax.lax.switch), argnums=1))
  for indices in population:
    np.testing.assert_allclose(value(indices, params, x), expected_value(indices, params, x), rtol=1e-5)
    chex.assert_trees_all_close(grad(indices, params, x), expected_grad(indices, params, x), rtol=1e-5, atol=1e-5)
  grads = jax.jit(jax.vmap(jax.grad(outer(switch), argnums=1), in_axes=(0, None, None)))(population, params, x)
  for member, indices in enumerate(population):
    chex.assert_trees_all_close(
      jax.tree.map(lambda g, m=member: g[m], grads), expected_grad(indices, params, x), rtol=1e-5, atol=1e-5
    )


def test_grouped_strided_and_dilated_convolution_gradients_match_lax_switch():
  """The layout rewrite keeps the values of every kind of convolution the backward pass emits."""
  x = jax.random.normal(jax.random.key(16), (2, 9, 9, 4))
  kernels = (jax.random.normal(jax.random.key(17), (3, 3, 1, 4)), jax.random.normal(jax.random.key(18), (3, 3, 4, 6)))
  branches = [
    lambda w, x: jnp.sum(
      jax.lax.conv_general_dilated(x, w[0], (1, 1), "SAME", dimension_numbers=DIMENSION_NUMBERS, feature_group_count=4)
      ** 2
    ),
    lambda w, x: jnp.sum(
      jax.lax.conv_general_dilated(x, w[1], (2, 2), "VALID", rhs_dilation=(2, 1), dimension_numbers=DIMENSION_NUMBERS)
      ** 2
    ),
  ]
  for index in range(2):
    grads = jax.jit(jax.grad(lambda w, x: switch(index, branches, w, x), argnums=(0, 1)))(kernels, x)
    expected = jax.jit(jax.grad(lambda w, x: jax.lax.switch(index, branches, w, x), argnums=(0, 1)))(kernels, x)
    chex.assert_trees_all_close(grads, expected, rtol=1e-4, atol=1e-4)


TRACED_KERNELS: list[int] = []  # appended to each time a CountingBlock's Python runs


class CountingBlock(nn.Module):
  """A conv block that records how often its Python runs (that is, how often it is traced)."""

  features: int
  kernel: int

  @nn.compact
  def __call__(self, x, train=False):
    TRACED_KERNELS.append(self.kernel)
    return nn.relu(nn.Conv(self.features, (self.kernel, self.kernel))(x))


class RepeatedLayers(nn.Module):
  layers: int = 4

  @nn.compact
  def __call__(self, x, choices, train=False):
    for i in range(self.layers):
      ops = {"k1": CountingBlock(3, 1), "k3": CountingBlock(3, 3)}
      x = jm.OneShotMutableOP(ops, name=f"layer{i}")(x, choices, train=train)
    return x.mean()


def test_repeated_layers_are_traced_once_and_stay_exact():
  net = RepeatedLayers()
  x = jax.random.normal(jax.random.key(0), (2, 5, 5, 3))
  variables = net.init(jax.random.key(1), x, None)
  mutator = jm.OneShotModuleMutator().prepare_from_supernet(variables)

  def loss(params, group_choices):
    return net.apply({"params": params}, x, mutator.set_choices(group_choices))

  population = jax.vmap(mutator.sample_choices)(jax.random.split(jax.random.key(2), 3))
  TRACED_KERNELS.clear()
  grad_fn = jax.jit(jax.grad(loss))
  grads = [grad_fn(variables["params"], {g: v[m] for g, v in population.items()}) for m in range(2)]
  # The jitted gradient traced each candidate's Python once for all four layers, not once per layer or pass.
  assert sorted(TRACED_KERNELS) == [1, 3]
  for member in range(2):
    # Equal to the same subnet with concrete choices (no switch, no cache).
    concrete = {g: int(v[member]) for g, v in population.items()}
    chex.assert_trees_all_close(grads[member], jax.grad(loss)(variables["params"], concrete), rtol=1e-5, atol=1e-6)
