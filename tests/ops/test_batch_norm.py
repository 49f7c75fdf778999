"""The blocks' BatchNorm (fused activation, deferred form) against flax's nn.BatchNorm."""

import flax.linen as nn
import jax
import jax.numpy as jnp
import numpy as np
import pytest

from jaxmutate.ops import BatchNorm, ConvBN, DeferredNorm, as_array, depthwise_conv, rematerialized


def _flax_bn(train, affine=True):
  return nn.BatchNorm(
    use_running_average=not train,
    momentum=0.9,
    epsilon=1e-5,
    use_scale=affine,
    use_bias=affine,
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


@pytest.mark.parametrize("activation", [None, "relu", "relu6"])
@pytest.mark.parametrize("affine", [True, False])
def test_train_matches_flax_values_stats_and_grads(activation, affine):
  x, variables = _x(), _variables(1, 3, affine)
  weights = jax.random.normal(jax.random.key(2), x.shape)
  act = {None: lambda v: v, "relu": nn.relu, "relu6": nn.relu6}[activation]

  def loss(module, post, params, x):
    y, updates = module.apply(
      {**variables, **({"params": params} if affine else {})},
      x,
      mutable=["batch_stats"],
    )
    return jnp.sum(post(y) * weights), (post(y), updates["batch_stats"])

  ours = jax.value_and_grad(
    lambda p, x: loss(BatchNorm(activation=activation, affine=affine), lambda v: v, p, x),
    argnums=(0, 1),
    has_aux=True,
  )
  theirs = jax.value_and_grad(
    lambda p, x: loss(_flax_bn(True, affine), act, p, x),
    argnums=(0, 1),
    has_aux=True,
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
  y, updates = BatchNorm(use_running_average=True, activation="relu").apply(variables, x, mutable=["batch_stats"])
  y_ref = nn.relu(_flax_bn(False).apply(variables, x))
  np.testing.assert_allclose(y, y_ref, rtol=1e-5, atol=1e-5)
  for key in ("mean", "var"):
    np.testing.assert_array_equal(updates["batch_stats"][key], variables["batch_stats"][key])


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


# --- Deferred normalisation and rematerialisation ---------------------------


def test_rematerialized_values_grads_second_order_and_vmap():
  def body(x, w):
    return jnp.sin(x) * w + depthwise_conv(jnp.cos(x), jnp.ones((3, 3, 2)))

  x = _x(9, (2, 5, 5, 2))
  w = jnp.float32(1.5)
  plain = lambda x, w: jnp.sum(body(x, w) ** 2)
  remat = lambda x, w: jnp.sum(rematerialized(body, x, w) ** 2)
  np.testing.assert_allclose(remat(x, w), plain(x, w), rtol=1e-6)
  for got, want in zip(jax.jit(jax.grad(remat, (0, 1)))(x, w), jax.grad(plain, (0, 1))(x, w)):
    np.testing.assert_allclose(got, want, rtol=1e-5, atol=1e-5)
  # Reverse over reverse (DARTS' second-order step differentiates a gradient).
  second = lambda f: jax.grad(lambda w: jnp.sum(jax.grad(f)(x, w) ** 2))(w)
  np.testing.assert_allclose(second(remat), second(plain), rtol=1e-4)
  batched = jax.vmap(jax.grad(remat), in_axes=(0, None))(jnp.stack([x, 2 * x]), w)
  np.testing.assert_allclose(batched[1], jax.grad(plain)(2 * x, w), rtol=1e-5, atol=1e-5)


def test_deferred_chain_keeps_fewer_activations():
  # conv → BN → ReLU → depthwise conv → ... : deferred, the backward pass keeps
  # each conv's output only, not also the normalised activation (or its
  # padded copy) the next conv reads.

  class Chain(nn.Module):
    defer: bool

    @nn.compact
    def __call__(self, x):
      for i in range(10):
        x = ConvBN(8, 3, depthwise=True, act="relu", name=f"layer{i}")(x, train=True, defer=self.defer and i < 9)
      return x

  x = _x(14, (8, 16, 16, 8))
  variables = Chain(False).init(jax.random.key(0), x)

  def temp_bytes(defer):
    def loss(params):
      y, _ = Chain(defer).apply({**variables, "params": params}, x, mutable=["batch_stats"])
      return jnp.sum(y**2)

    compiled = jax.jit(jax.grad(loss)).lower(variables["params"]).compile()
    return compiled.memory_analysis().temp_size_in_bytes

  assert temp_bytes(True) < 0.75 * temp_bytes(False)


def test_deferred_norm_is_a_pytree_with_static_activation():
  deferred = DeferredNorm(jnp.ones((2, 3)), jnp.ones(3), jnp.zeros(3), "relu6")
  leaves, treedef = jax.tree.flatten(deferred)
  assert len(leaves) == 3
  assert jax.tree.unflatten(treedef, leaves).activation == "relu6"
  assert deferred.shape == (2, 3) and deferred.dtype == jnp.float32
  doubled = jax.jit(lambda d: d.materialize() * 2)(deferred)
  np.testing.assert_array_equal(doubled, 2 * jnp.ones((2, 3)))
  np.testing.assert_array_equal(as_array(deferred), jnp.ones((2, 3)))


@pytest.mark.parametrize("train", [True, False])
@pytest.mark.parametrize("activation", [None, "relu"])
def test_deferred_then_equals_normalise_then_apply(train, activation):
  x, variables = _x(10), _variables(11, 3)
  kernel = jax.random.normal(jax.random.key(12), (3, 3, 3))
  conv = lambda y, k: depthwise_conv(y, k, padding=1)
  bn = BatchNorm(use_running_average=not train, activation=activation)

  def run(defer):
    def loss(params, x, kernel):
      out, updates = bn.apply({**variables, "params": params}, x, defer=defer, mutable=["batch_stats"])
      y = out.then(conv, kernel) if defer else conv(out, kernel)
      return jnp.sum(jnp.tanh(y)), (y, updates["batch_stats"])

    return jax.jit(jax.value_and_grad(loss, (0, 1, 2), has_aux=True))(variables["params"], x, kernel)

  (_, (y, stats)), grads = run(True)
  (_, (y_ref, stats_ref)), grads_ref = run(False)
  np.testing.assert_allclose(y, y_ref, rtol=1e-5, atol=1e-5)
  for got, want in zip(jax.tree.leaves((stats, grads)), jax.tree.leaves((stats_ref, grads_ref))):
    np.testing.assert_allclose(got, want, rtol=1e-4, atol=1e-5)


@pytest.mark.parametrize("kernel_size,depthwise", [(1, False), (3, True), (3, False)])
def test_conv_bn_consumes_a_deferred_input(kernel_size, depthwise):
  # ConvBN(defer=True) → ConvBN equals the same two layers without deferral,
  # also for a dense kxk conv (which materialises the deferred input first).

  class Pair(nn.Module):
    defer: bool

    @nn.compact
    def __call__(self, x):
      x = ConvBN(3, 1, act="relu", name="a")(x, train=True, defer=self.defer)
      return ConvBN(3, kernel_size, depthwise=depthwise, name="b")(x, train=True)

  x = _x(13)
  variables = Pair(True).init(jax.random.key(0), x)

  def loss(defer):
    def f(params, x):
      y, _ = Pair(defer).apply({**variables, "params": params}, x, mutable=["batch_stats"])
      return jnp.sum(jnp.sin(y)), y

    return jax.jit(jax.value_and_grad(f, (0, 1), has_aux=True))(variables["params"], x)

  (_, y), grads = loss(True)
  (_, y_ref), grads_ref = loss(False)
  np.testing.assert_allclose(y, y_ref, rtol=1e-5, atol=1e-5)
  for got, want in zip(jax.tree.leaves(grads), jax.tree.leaves(grads_ref)):
    np.testing.assert_allclose(got, want, rtol=1e-4, atol=1e-5)


def test_bad_activation_names_the_value():
  with pytest.raises(ValueError, match="activation must be one of .*'gelu'"):
    BatchNorm(activation="gelu")
  with pytest.raises(ValueError, match="ConvBN activation .*'tanh'"):
    ConvBN(features=2, act="tanh")
