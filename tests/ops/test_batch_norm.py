"""The blocks' BatchNorm (fused ReLU, custom VJP) against flax's nn.BatchNorm."""

import flax.linen as nn
import jax
import jax.numpy as jnp
import numpy as np
import pytest

from jaxmutate.ops._common import BatchNorm, ConvBN


def _flax_bn(train, affine=True):
  return nn.BatchNorm(
      use_running_average=not train, momentum=0.9, epsilon=1e-5,
      use_scale=affine, use_bias=affine,
  )


def _variables(seed, channels, affine=True):
  keys = jax.random.split(jax.random.key(seed), 4)
  variables = {
      "batch_stats": {
          "mean": jax.random.normal(keys[0], (channels,)),
          "var": jax.random.uniform(keys[1], (channels,), minval=0.5, maxval=2.0),
      }
  }
  if affine:
    variables["params"] = {
        "scale": jax.random.normal(keys[2], (channels,)),
        "bias": jax.random.normal(keys[3], (channels,)),
    }
  return variables


def _x(seed=0, shape=(4, 5, 6, 3)):
  return 3.0 * jax.random.normal(jax.random.key(seed), shape) + 1.5


@pytest.mark.parametrize("relu", [False, True])
@pytest.mark.parametrize("affine", [True, False])
def test_train_matches_flax_values_stats_and_grads(relu, affine):
  x, variables = _x(), _variables(1, 3, affine)
  weights = jax.random.normal(jax.random.key(2), x.shape)
  act = nn.relu if relu else (lambda v: v)

  def loss(module, post, params, x):
    y, updates = module.apply(
        {**variables, **({"params": params} if affine else {})}, x,
        mutable=["batch_stats"],
    )
    return jnp.sum(post(y) * weights), (post(y), updates["batch_stats"])

  ours = jax.value_and_grad(
      lambda p, x: loss(BatchNorm(relu=relu, affine=affine), lambda v: v, p, x),
      argnums=(0, 1), has_aux=True,
  )
  theirs = jax.value_and_grad(
      lambda p, x: loss(_flax_bn(True, affine), act, p, x),
      argnums=(0, 1), has_aux=True,
  )
  params = variables.get("params", {})
  (_, (y, stats)), grads = jax.jit(ours)(params, x)
  (_, (y_ref, stats_ref)), grads_ref = jax.jit(theirs)(params, x)
  np.testing.assert_allclose(y, y_ref, rtol=1e-5, atol=1e-5)
  for key in ("mean", "var"):
    np.testing.assert_allclose(stats[key], stats_ref[key], rtol=1e-5, atol=1e-6)
  for got, want in zip(jax.tree.leaves(grads), jax.tree.leaves(grads_ref)):
    np.testing.assert_allclose(got, want, rtol=1e-4, atol=1e-4)


def test_eval_matches_flax_and_keeps_stats():
  x, variables = _x(3), _variables(4, 3)
  y, updates = BatchNorm(use_running_average=True, relu=True).apply(
      variables, x, mutable=["batch_stats"]
  )
  y_ref = nn.relu(_flax_bn(False).apply(variables, x))
  np.testing.assert_allclose(y, y_ref, rtol=1e-5, atol=1e-5)
  for key in ("mean", "var"):
    np.testing.assert_array_equal(
        updates["batch_stats"][key], variables["batch_stats"][key]
    )


def test_same_variables_as_flax_and_no_update_at_init():
  x = _x(5)
  ours = BatchNorm().init(jax.random.key(0), x)
  theirs = _flax_bn(True).init(jax.random.key(0), x)
  assert jax.tree.map(jnp.shape, ours) == jax.tree.map(jnp.shape, theirs)
  for got, want in zip(jax.tree.leaves(ours), jax.tree.leaves(theirs)):
    np.testing.assert_array_equal(got, want)


def test_stat_cotangents_match_autodiff():
  # Gradients flowing into the returned batch statistics are exact too.
  x, variables = _x(6), _variables(7, 3)

  def through_stats(module, x):
    _, updates = module.apply(variables, x, mutable=["batch_stats"])
    stats = updates["batch_stats"]
    return jnp.sum(stats["mean"] * jnp.arange(3.0)) + jnp.sum(stats["var"] ** 2)

  got = jax.grad(lambda x: through_stats(BatchNorm(), x))(x)
  want = jax.grad(lambda x: through_stats(_flax_bn(True), x))(x)
  np.testing.assert_allclose(got, want, rtol=1e-4, atol=1e-5)


def test_conv_bn_relu6_and_variable_names():
  block = ConvBN(features=4, kernel_size=1, act="relu6")
  x = _x(8, (2, 3, 3, 2))
  variables = block.init(jax.random.key(0), x)
  assert set(variables["params"]["bn"]) == {"scale", "bias"}
  assert set(variables["batch_stats"]["bn"]) == {"mean", "var"}
  y, _ = block.apply(variables, 5.0 * x, train=True, mutable=["batch_stats"])
  assert float(y.min()) >= 0.0 and float(y.max()) <= 6.0
