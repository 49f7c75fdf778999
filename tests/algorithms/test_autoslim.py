"""AutoSlim/BigNAS sandwich steps, slimmable steps, per-width BatchNorm calibration and scoring."""

from __future__ import annotations

import dataclasses
from typing import Any

import chex
import flax.linen as nn
import jax
import jax.numpy as jnp
import numpy as np
import optax
import pytest

import jaxmutate as jm
from jaxmutate import dynamic
from jaxmutate.algorithms import (
  apply_in_train_mode,
  calibrate_batch_stats,
  classification_loss,
  init_train_state,
  kl_divergence,
  make_calibrated_scorer,
  make_sandwich_train_step,
  make_slimmable_train_step,
  sample_sandwich_choices,
  stack_group_choices,
)
from jaxmutate.channels import OneShotMutableChannelUnit, SlimmableChannelUnit, slimmable_subnets
from jaxmutate.errors import ConfigError, ConfigKeyError

CANDIDATES = (0.25, 0.5, 1.0)


class WidthNet(nn.Module):
  """conv -> BN -> relu -> dense, one one-shot unit of 8 channels; ``max_buckets`` of the traced conv/dense."""

  max_buckets: int = dynamic.DEFAULT_MAX_BUCKETS

  @nn.compact
  def __call__(self, x, choices, train=False):
    w = OneShotMutableChannelUnit(8, CANDIDATES, name="unit")(choices)
    x = dynamic.DynamicConv(8, 3, use_bias=False, max_buckets=self.max_buckets)(x, out_width=w)
    x = nn.relu(dynamic.DynamicBatchNorm(use_running_average=not train)(x, w))
    return dynamic.DynamicDense(3, max_buckets=self.max_buckets)(x.mean((1, 2)), in_width=w)


class SlimNet(nn.Module):
  """A slimmable conv net: one unit of 8 channels with widths (2, 4, 8) and switchable BatchNorm."""

  @nn.compact
  def __call__(self, x, choices, train=False):
    w = SlimmableChannelUnit(8, (2, 4, 8), name="unit")(choices)
    x = dynamic.DynamicConv(8, 3, use_bias=False, max_buckets=1)(x, out_width=w)
    x = nn.relu(dynamic.SwitchableBatchNorm((2, 4, 8), use_running_average=not train)(x, w))
    return dynamic.DynamicDense(2, max_buckets=1)(x.mean((1, 2)), in_width=w)


def _data(n: int = 8, classes: int = 3) -> tuple[jax.Array, jax.Array]:
  x = jax.random.normal(jax.random.key(0), (n, 8, 8, 1))
  return x, jnp.arange(n, dtype=jnp.int32) % classes


def _setup(net: nn.Module, optimizer: optax.GradientTransformation, n: int = 8, classes: int = 3):
  x, y = _data(n, classes)
  state, variables = init_train_state(net, optimizer, jax.random.key(1), x)
  mutator = jm.NasMutator().prepare_from_supernet(variables)
  return x, y, state, mutator


@pytest.fixture(scope="module")
def sandwich():
  """One compiled sandwich step (plain SGD, lr 1: the update is minus the gradient sum), shared by tests."""
  net = WidthNet()
  x, y, state, mutator = _setup(net, optax.sgd(1.0))
  traced_loss = chex.assert_max_traces(classification_loss, n=3)  # max, min and the scan body: one trace each
  step = make_sandwich_train_step(net, mutator, optax.sgd(1.0), loss_fn=traced_loss)
  return net, x, y, state, mutator, step


def _reference_gradients(net, mutator, state, x, y, key, num_random, hard_weight=1.0):
  """Per-subnet gradients computed one by one and summed, and the BN statistics of running them in turn.

  Returns ``(grads, grads_with_attached_teacher, batch_stats)``: the second lets KD gradients flow into
  the teacher (what the step must not do).
  """
  largest, smallest, random = sample_sandwich_choices(mutator, key, num_random)
  configs = [smallest] + [{g: np.int32(v[i]) for g, v in random.items()} for i in range(num_random)]

  def forward(params, stats, group_choices):
    return apply_in_train_mode(net, params, stats, x, mutator.set_choices(group_choices))

  def teacher_loss(params):
    logits, _ = forward(params, state.batch_stats, largest)
    return classification_loss(logits, y)

  def student_loss(params, group_choices, detach):
    teacher, _ = forward(params, state.batch_stats, largest)
    logits, _ = forward(params, state.batch_stats, group_choices)
    return hard_weight * classification_loss(logits, y) + kl_divergence(logits, teacher, teacher_detach=detach)

  # Jitted per subnet with its choices baked in: each traces to its sliced network.
  @jax.jit
  def teacher_step(params, stats):
    return jax.grad(teacher_loss)(params), forward(params, stats, largest)[1]

  total, stats = teacher_step(state.params, state.batch_stats)
  attached = total
  for config in configs:

    @jax.jit
    def student_step(params, stats, config=config):
      detached = jax.grad(student_loss)(params, config, True)
      return detached, jax.grad(student_loss)(params, config, False), forward(params, stats, config)[1]

    detached, flowing, stats = student_step(state.params, stats)
    total = jax.tree.map(jnp.add, total, detached)
    attached = jax.tree.map(jnp.add, attached, flowing)
  return total, attached, stats


@pytest.fixture(scope="module")
def reference(sandwich):
  """The step's update for key 5, and the reference gradients."""
  net, x, y, state, mutator, step = sandwich
  key = jax.random.key(5)
  new_state, _ = step(state, x, y, key)
  return new_state, _reference_gradients(net, mutator, state, x, y, key, 2)


def test_sandwich_step_runs_with_finite_metrics_and_moves_weights(sandwich):
  net, x, y, state, mutator, step = sandwich
  new_state, metrics = step(state, x, y, jax.random.key(3))
  assert int(new_state.step) == 1
  assert sorted(metrics) == [
    "accuracy",
    "distill_loss",
    "loss",
    "max_loss",
    "min_accuracy",
    "min_loss",
    "random_loss",
  ]
  for name, value in metrics.items():
    chex.assert_shape(value, ())
    assert np.isfinite(float(value)), name
  chex.assert_trees_all_equal_shapes(new_state.params, state.params)
  assert not np.allclose(new_state.params["DynamicConv_0"]["kernel"], state.params["DynamicConv_0"]["kernel"])
  # The distillation term is >= 0 and the total is the sum of the parts.
  assert float(metrics["distill_loss"]) >= 0
  total = float(metrics["max_loss"]) + float(metrics["min_loss"]) + 2 * float(metrics["random_loss"])
  np.testing.assert_allclose(float(metrics["loss"]), total, rtol=1e-5)


def test_sandwich_step_compiles_once_across_keys(sandwich):
  net, x, y, state, mutator, step = sandwich
  # traced_loss (assert_max_traces, n=3) fails if the step is traced again for another key.
  for i in range(4):
    state, _ = step(state, x, y, jax.random.key(10 + i))
  assert int(state.step) == 4


def test_sandwich_update_is_the_sum_of_per_subnet_gradients(sandwich, reference):
  state = sandwich[3]
  new_state, (grads, _, stats) = reference
  expected = jax.tree.map(lambda p, g: p - g, state.params, grads)
  chex.assert_trees_all_close(new_state.params, expected, atol=1e-5, rtol=1e-5)
  # BatchNorm statistics moved subnet after subnet: max, min, random 0, random 1.
  chex.assert_trees_all_close(new_state.batch_stats, stats, atol=1e-5, rtol=1e-5)


def test_sandwich_teacher_is_stop_gradient(sandwich, reference):
  state = sandwich[3]
  new_state, (_, attached_grads, _) = reference
  # Without detaching the teacher, gradients flow into the max subnet through every KD term: another update.
  attached = jax.tree.map(lambda p, g: p - g, state.params, attached_grads)
  leaves = zip(jax.tree.leaves(attached), jax.tree.leaves(new_state.params))
  assert max(float(jnp.abs(a - b).max()) for a, b in leaves) > 1e-4
  teacher = jnp.array([[1.0, -2.0, 0.5]])
  assert not jnp.any(jax.grad(lambda t: kl_divergence(jnp.zeros((1, 3)), t))(teacher))
  assert jnp.any(jax.grad(lambda t: kl_divergence(jnp.zeros((1, 3)), t, teacher_detach=False))(teacher))


def test_sandwich_step_is_a_function_of_the_key(sandwich):
  net, x, y, state, mutator, step = sandwich
  first = step(state, x, y, jax.random.key(8))
  again = step(state, x, y, jax.random.key(8))
  chex.assert_trees_all_equal(first, again)
  # Over a few keys the random subnets differ, so the updates do.
  others = [step(state, x, y, jax.random.key(k))[0].params for k in range(20, 24)]
  assert any(
    not np.allclose(a, b) for p in others for a, b in zip(jax.tree.leaves(p), jax.tree.leaves(first[0].params))
  )


def test_sandwich_mean_reduction_and_distillation_only():
  # BigNAS-style students (KD only), no random subnets, gradients averaged (MMRazor's accumulation scaling).
  net = WidthNet(max_buckets=1)
  x, y, state, mutator = _setup(net, optax.sgd(1.0))
  step = make_sandwich_train_step(
    net, mutator, optax.sgd(1.0), num_random_samples=0, hard_loss_weight=0.0, grad_reduction="mean"
  )
  new_state, metrics = step(state, x, y, jax.random.key(0))
  assert "random_loss" not in metrics
  grads, _, _ = _reference_gradients(net, mutator, state, x, y, jax.random.key(0), 0, hard_weight=0.0)
  expected = jax.tree.map(lambda p, g: p - g / 2, state.params, grads)
  chex.assert_trees_all_close(new_state.params, expected, atol=1e-5, rtol=1e-5)
  np.testing.assert_allclose(float(metrics["min_loss"]), float(metrics["distill_loss"]), rtol=1e-6)


def test_sample_sandwich_choices_gives_concrete_max_and_min():
  variables = OneShotMutableChannelUnit(8, CANDIDATES, name="unit").init(jax.random.key(0), None)
  mutator = jm.NasMutator().prepare_from_supernet(variables)

  @jax.jit
  def sample(key):
    largest, smallest, random = sample_sandwich_choices(mutator, key, 16)
    # Concrete even under jit: the max and min subnets trace to their sliced networks.
    assert isinstance(largest[0], np.int32) and isinstance(smallest[0], np.int32)
    return random

  random = sample(jax.random.key(0))
  chex.assert_shape(random[0], (16,))
  assert set(np.asarray(random[0]).tolist()) <= {0, 1, 2} and len(set(np.asarray(random[0]).tolist())) > 1


@pytest.mark.parametrize(
  "kwargs, match",
  [
    (dict(num_random_samples=-1), "num_random_samples"),
    (dict(num_random_samples=True), "num_random_samples"),
    (dict(num_random_samples=1.5), "num_random_samples"),
    (dict(hard_loss_weight=-1.0), "hard_loss_weight"),
    (dict(grad_reduction="max"), "grad_reduction"),
  ],
)
def test_sandwich_step_rejects_bad_settings(kwargs, match):
  variables = OneShotMutableChannelUnit(8, CANDIDATES, name="unit").init(jax.random.key(0), None)
  mutator = jm.NasMutator().prepare_from_supernet(variables)
  with pytest.raises(ConfigError, match=match):
    make_sandwich_train_step(WidthNet(), mutator, optax.sgd(0.1), **kwargs)


def test_kl_divergence_matches_mmrazor_and_rejects_bad_input():
  student = jnp.array([[0.5, -1.0, 2.0], [0.0, 0.0, 0.0]])
  teacher = jnp.array([[1.0, 0.0, -1.0], [3.0, 1.0, 0.0]])
  tau = 2.0
  p = jax.nn.softmax(teacher / tau, -1)
  expected = tau**2 * jnp.sum(p * (jnp.log(p) - jax.nn.log_softmax(student / tau, -1))) / 2  # batchmean
  np.testing.assert_allclose(
    float(kl_divergence(student, teacher, tau=tau, loss_weight=0.5)), 0.5 * float(expected), rtol=1e-6
  )
  with pytest.raises(ConfigError, match="tau"):
    kl_divergence(student, teacher, tau=0.0)
  with pytest.raises(ConfigError, match="same shape"):
    kl_divergence(student, teacher[:1])


# Slimmable -------------------------------------------------------------------


@dataclasses.dataclass(frozen=True)
class WithSubnets:
  """A mutator carrying ``subnets``, as ``SlimmableChannelMutator`` does."""

  mutator: Any
  subnets: tuple

  def set_choices(self, group_choices):
    return self.mutator.set_choices(group_choices)


@pytest.fixture(scope="module")
def slim():
  net = SlimNet()
  x = jax.random.normal(jax.random.key(0), (8, 8, 8, 1))
  y = (x.mean((1, 2, 3)) > 0).astype(jnp.int32)  # brighter than average
  optimizer = optax.adam(0.05)
  state, variables = init_train_state(net, optimizer, jax.random.key(1), x)
  mutator = jm.NasMutator().prepare_from_supernet(variables)
  subnets = slimmable_subnets({g: mutator.group_space(g) for g in mutator.search_groups})
  return net, x, y, optimizer, state, mutator, subnets


def _subnet_losses(net, mutator, state, x, y, subnets):
  return [
    float(
      classification_loss(apply_in_train_mode(net, state.params, state.batch_stats, x, mutator.set_choices(s))[0], y)
    )
    for s in subnets
  ]


def test_slimmable_training_improves_every_subnet_with_one_compile(slim):
  net, x, y, optimizer, state, mutator, subnets = slim
  traced_loss = chex.assert_max_traces(classification_loss, n=len(subnets))  # each subnet traced once
  step = make_slimmable_train_step(net, WithSubnets(mutator, subnets), optimizer, loss_fn=traced_loss)
  before = _subnet_losses(net, mutator, state, x, y, subnets)
  for _ in range(30):
    state, metrics = step(state, x, y)
  after = _subnet_losses(net, mutator, state, x, y, subnets)
  chex.assert_shape(metrics["losses"], (3,))
  assert all(a < 0.5 * b for a, b in zip(after, before)), (before, after)
  # Each subnet moved its own switchable BatchNorm statistics.
  for w in (2, 4, 8):
    assert not np.allclose(state.batch_stats["SwitchableBatchNorm_0"][f"candidate_bn_{w}"]["mean"], 0.0)


def test_slimmable_update_is_the_sum_of_subnet_gradients_and_distills_from_the_widest(slim):
  net, x, y, _, state, mutator, subnets = slim
  state = state._replace(opt_state=optax.sgd(1.0).init(state.params))
  step = make_slimmable_train_step(net, mutator, optax.sgd(1.0), subnets, distill=True, hard_loss_weight=0.5)
  new_state, metrics = step(state, x, y)

  def logits_of(params, s):
    return apply_in_train_mode(net, params, state.batch_stats, x, mutator.set_choices(s))[0]

  def teacher_loss(params):
    return classification_loss(logits_of(params, subnets[-1]), y)

  def student_loss(params, s):
    logits = logits_of(params, s)
    return 0.5 * classification_loss(logits, y) + kl_divergence(logits, logits_of(params, subnets[-1]))

  @jax.jit
  def summed(params):
    grads = jax.grad(teacher_loss)(params)
    for s in subnets[:-1]:
      grads = jax.tree.map(jnp.add, grads, jax.grad(student_loss)(params, s))
    return grads

  grads = summed(state.params)
  expected = jax.tree.map(lambda p, g: p - g, state.params, grads)
  chex.assert_trees_all_close(new_state.params, expected, atol=1e-5, rtol=1e-5)
  chex.assert_shape(metrics["losses"], (3,))
  np.testing.assert_allclose(float(metrics["losses"][-1]), teacher_loss(state.params), rtol=1e-5)


def test_slimmable_step_rejects_bad_subnets(slim):
  net, _, _, optimizer, _, mutator, subnets = slim
  with pytest.raises(ConfigError, match="no `subnets`"):
    make_slimmable_train_step(net, mutator, optimizer)
  with pytest.raises(ConfigError, match="at least one"):
    make_slimmable_train_step(net, mutator, optimizer, [])
  with pytest.raises(ConfigKeyError, match="same groups"):
    make_slimmable_train_step(net, mutator, optimizer, [{0: 0}, {1: 0}])
  with pytest.raises(ConfigError, match="two subnets"):
    make_slimmable_train_step(net, mutator, optimizer, subnets[:1], distill=True)
  with pytest.raises(ConfigError, match="grad_reduction"):
    make_slimmable_train_step(net, mutator, optimizer, subnets, grad_reduction="none")


def test_stack_group_choices():
  stacked = stack_group_choices([{0: 1, 1: 2}, {1: 0, 0: 2}])
  assert stacked[0].tolist() == [1, 2] and stacked[1].tolist() == [2, 0]
  with pytest.raises(jm.errors.ConfigTypeError, match="configuration 1"):
    stack_group_choices([{0: 1}, [1]])


# BatchNorm calibration and scoring -----------------------------------------------


class InputNorm(nn.Module):
  """A BatchNorm on the input features; its kept width is ``choices["w"]``."""

  @nn.compact
  def __call__(self, x, choices, train=False):
    return dynamic.DynamicBatchNorm(use_running_average=not train, momentum=0.9, name="bn")(x, choices["w"])


def test_calibration_is_the_exact_average_of_batch_statistics():
  net = InputNorm()
  batches = jax.random.normal(jax.random.key(0), (3, 5, 4)) * jnp.array([[[1.0, 2.0, 3.0, 4.0]]]) + 1.0
  variables = net.init(jax.random.key(1), batches[0], {"w": 4})
  old = {"bn": {"mean": jnp.full(4, 7.0), "var": jnp.full(4, 9.0)}}
  stats = jax.jit(lambda w: calibrate_batch_stats(net, variables["params"], old, {"w": w}, batches))(jnp.int32(3))
  # MMRazor's CalibrateBNMixin: the mean over batches of each batch's mean and variance.
  mean = batches.mean(axis=1).mean(axis=0)
  var = batches.var(axis=1).mean(axis=0)
  np.testing.assert_allclose(stats["bn"]["mean"][:3], mean[:3], rtol=1e-4, atol=1e-5)
  np.testing.assert_allclose(stats["bn"]["var"][:3], var[:3], rtol=1e-4, atol=1e-5)
  assert float(stats["bn"]["mean"][3]) == 7.0 and float(stats["bn"]["var"][3]) == 9.0  # a dropped channel
  # vmap over width configurations equals one at a time; a list of batches equals the stacked array.
  widths = jnp.array([1, 2, 4], jnp.int32)
  stacked = jax.vmap(lambda w: calibrate_batch_stats(net, variables["params"], old, {"w": w}, list(batches)))(widths)
  for i, w in enumerate([1, 2, 4]):
    single = calibrate_batch_stats(net, variables["params"], old, {"w": jnp.int32(w)}, batches)
    chex.assert_trees_all_close(jax.tree.map(lambda s: s[i], stacked), single, rtol=1e-5)


def test_calibration_rejects_bad_batches():
  net = InputNorm()
  x = jnp.ones((2, 4))
  variables = net.init(jax.random.key(1), x, {"w": 4})
  args = (net, variables["params"], variables["batch_stats"], {"w": 4})
  with pytest.raises(ConfigError, match="at least one"):
    calibrate_batch_stats(*args, [])
  with pytest.raises(ConfigError, match="one shape"):
    calibrate_batch_stats(*args, [x, jnp.ones((3, 4))])
  with pytest.raises(ConfigError, match="num_batches"):
    calibrate_batch_stats(*args, jnp.ones(4))


def test_calibrated_scorer_rates_a_population_in_one_compile(compile_log):
  net = WidthNet(max_buckets=1)
  x, y, state, mutator = _setup(net, optax.sgd(0.1))
  score = make_calibrated_scorer(net, mutator, x.reshape(2, 4, 8, 8, 1), x, y)
  population = {0: jnp.array([0, 1, 2], jnp.int32)}
  with compile_log() as log:
    first = score(state, population)
    second = score(state, {0: jnp.array([2, 2, 0], jnp.int32)})
  assert log.names.count("score") == 1
  chex.assert_shape(first, (3,))
  assert bool(((first >= 0) & (first <= 1)).all())
  np.testing.assert_allclose(second[2], first[0])  # the same subnet, the same score
  # Stacked validation batches average the per-batch metric; negated loss is <= 0.
  batched = make_calibrated_scorer(net, mutator, None, x.reshape(2, 4, 8, 8, 1), y.reshape(2, 4), metric="loss")
  assert bool((batched(state, population) <= 0).all())
  with pytest.raises(ConfigError, match="metric"):
    make_calibrated_scorer(net, mutator, None, x, y, metric="top5")
  with pytest.raises(ConfigError, match="labels"):
    make_calibrated_scorer(net, mutator, None, x, y[:3])
