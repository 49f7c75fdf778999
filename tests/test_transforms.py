"""Choices are pytrees: jit, vmap, grad, lax.scan and lax.map over subnets, with no recompiles."""

from __future__ import annotations

import chex
import flax.linen as nn
import jax
import jax.numpy as jnp
import numpy as np
import pytest

import jaxmutate as jm

X = jnp.linspace(-1.0, 1.0, 12, dtype=jnp.float32).reshape(4, 3)  # tiny (length, channels) input
POP = 6


class Block(nn.Module):
  kernel: int

  @nn.compact
  def __call__(self, x, train: bool = False):
    return nn.relu(nn.Conv(3, (self.kernel,), padding="SAME")(x))


class Supernet(nn.Module):
  """Three one-shot layers (two share an alias) and a width value."""

  @nn.compact
  def __call__(self, x, choices, train: bool = False):
    x = x[None]
    for i, alias in enumerate(("pair", None, "pair")):
      candidates = {"k1": Block(1), "k3": Block(3), "skip": lambda y, train=False: y}
      x = jm.OneShotMutableOP(candidates, alias=alias, name=f"block{i}")(x, choices, train=train)
    scale = jm.OneShotMutableValue([0.5, 1.0, 2.0], name="scale")(choices)
    return nn.Dense(2, name="head")(x.mean(1) * scale)[0]


@pytest.fixture(scope="module")
def setup():
  variables = Supernet().init(jax.random.key(0), X, None)
  mutator = jm.OneShotModuleMutator().prepare_from_supernet(variables)
  return variables, mutator


@jax.jit
def _apply_one(variables, choices):
  """One subnet at a time (the loop the batched transforms are compared with)."""
  return Supernet().apply(variables, X, choices)


@jax.jit
def _sample_population(mutator, keys):
  return jax.vmap(lambda k: mutator.set_choices(mutator.sample_choices(k)))(keys)


def _population(mutator, n=POP, seed=1):
  return _sample_population(mutator, jax.random.split(jax.random.key(seed), n))


def _loop(variables, population, n=POP):
  return jnp.stack([_apply_one(variables, _member(population, i)) for i in range(n)])


def _member(population, i):
  return jax.tree.map(lambda a: a[i], population)


def test_population_of_choices_is_sampled_by_jit_of_vmap(setup):
  variables, mutator = setup
  assert mutator.search_groups == {0: ("block0", "block2"), 1: ("block1",), 2: ("scale",)}
  population = _population(mutator, n=POP * 8)
  chex.assert_shape(list(population.values()), (POP * 8,))
  chex.assert_trees_all_equal(population["block0"], population["block2"])
  for name in ("block0", "block1", "scale"):
    assert set(np.asarray(population[name]).tolist()) == {0, 1, 2}


def test_vmap_over_a_population_equals_a_loop(setup):
  variables, mutator = setup
  population = _population(mutator)
  batched = jax.jit(jax.vmap(lambda c: Supernet().apply(variables, X, c)))(population)
  looped = _loop(variables, population)
  chex.assert_shape(batched, (POP, 2))
  concrete = Supernet().apply(variables, X, _member(population, 0))
  chex.assert_trees_all_close(batched[0], concrete, rtol=1e-5, atol=1e-6)
  chex.assert_trees_all_close(batched, looped, rtol=1e-5, atol=1e-6)


def test_vmap_over_inputs_and_choices_together(setup):
  variables, mutator = setup
  population = _population(mutator)
  xs = jnp.stack([X * (i + 1) for i in range(POP)])
  batched = jax.vmap(lambda x, c: Supernet().apply(variables, x, c))(xs, population)
  looped = jnp.stack([jax.jit(Supernet().apply)(variables, xs[i], _member(population, i)) for i in range(POP)])
  chex.assert_trees_all_close(batched, looped, rtol=1e-5, atol=1e-6)


def test_lax_scan_over_a_stacked_population(setup):
  variables, mutator = setup
  population = _population(mutator)

  def body(total, choices):
    out = Supernet().apply(variables, X, choices)
    return total + out.sum(), out

  total, outs = jax.jit(lambda p: jax.lax.scan(body, jnp.float32(0.0), p))(population)
  looped = _loop(variables, population)
  chex.assert_trees_all_close(outs, looped, rtol=1e-5, atol=1e-6)
  np.testing.assert_allclose(total, looped.sum(), rtol=1e-5)


def test_lax_map_over_a_stacked_population(setup):
  variables, mutator = setup
  population = _population(mutator)
  outs = jax.lax.map(lambda c: Supernet().apply(variables, X, c), population)
  looped = _loop(variables, population)
  chex.assert_trees_all_close(outs, looped, rtol=1e-5, atol=1e-6)


def test_grad_through_a_traced_choice_matches_the_concrete_choice(setup):
  variables, mutator = setup
  choices = mutator.set_choices({0: 1, 1: 0, 2: 2})

  def loss(params, choices):
    return jnp.sum(Supernet().apply({**variables, "params": params}, X, choices) ** 2)

  traced = jax.jit(jax.grad(loss))(variables["params"], choices)
  concrete = jax.grad(loss)(variables["params"], choices)
  chex.assert_trees_all_close(traced, concrete, rtol=1e-5, atol=1e-7)
  chex.assert_tree_all_finite(traced)
  # Only the chosen candidates get gradient: k3 in blocks 0 and 2, k1 in block 1.
  for block, chosen, other in (("block0", "k3", "k1"), ("block1", "k1", "k3"), ("block2", "k3", "k1")):
    assert float(jnp.abs(traced[block][chosen]["Conv_0"]["kernel"]).sum()) > 0
    chex.assert_trees_all_equal(traced[block][other], jax.tree.map(jnp.zeros_like, traced[block][other]))


def test_grad_under_vmap_over_a_population(setup):
  variables, mutator = setup
  population = _population(mutator)

  def loss(params, choices):
    return jnp.sum(Supernet().apply({**variables, "params": params}, X, choices) ** 2)

  batched = jax.jit(jax.vmap(jax.grad(loss), in_axes=(None, 0)))(variables["params"], population)
  single_grad = jax.jit(jax.grad(loss))
  for i in (0, POP - 1):
    single = single_grad(variables["params"], _member(population, i))
    chex.assert_trees_all_close(_member(batched, i), single, rtol=1e-4, atol=1e-6)


def test_switching_subnets_does_not_recompile(setup):
  variables, mutator = setup

  @jax.jit
  @chex.assert_max_traces(n=1)
  def apply(variables, group_choices):
    return Supernet().apply(variables, X, mutator.set_choices(group_choices))

  outs = []
  for seed in range(5):
    outs.append(apply(variables, mutator.sample_choices(jax.random.key(seed))))
  outs.append(apply(variables, {0: jnp.int32(2), 1: jnp.int32(2), 2: jnp.int32(0)}))
  assert len({tuple(np.asarray(o).round(6).tolist()) for o in outs}) > 1


def test_train_step_over_changing_subnets_compiles_once(setup):
  variables, mutator = setup

  @jax.jit
  @chex.assert_max_traces(n=1)
  def step(params, key):
    choices = mutator.set_choices(mutator.sample_choices(key))
    loss, grads = jax.value_and_grad(lambda p: jnp.sum(Supernet().apply({**variables, "params": p}, X, choices) ** 2))(
      params
    )
    return jax.tree.map(lambda p, g: p - 0.1 * g, params, grads), loss

  params = variables["params"]
  for seed in range(4):
    params, loss = step(params, jax.random.key(seed))
    assert np.isfinite(float(loss))


def test_changing_choices_does_not_log_a_compile(setup, compile_log):
  variables, mutator = setup

  def apply_supernet(v, c):
    return Supernet().apply(v, X, c)

  apply = jax.jit(apply_supernet)
  with compile_log() as first:
    apply(variables, mutator.set_choices({0: 0, 1: 0, 2: 0})).block_until_ready()
  with compile_log() as later:
    for group_choices in ({0: 1, 1: 2, 2: 1}, {0: 2, 1: 1, 2: 2}):
      apply(variables, mutator.set_choices(group_choices)).block_until_ready()
  assert first.names.count("apply_supernet") == 1
  assert "apply_supernet" not in later.names
