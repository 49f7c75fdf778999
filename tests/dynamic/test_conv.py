"""DynamicConv, DynamicDepthwiseConv and DynamicDense against the statically sliced flax layers."""

from __future__ import annotations

import chex
import flax.linen as nn
import jax
import jax.extend
import jax.numpy as jnp
import numpy as np
import pytest

from jaxmutate import errors, ops
from jaxmutate.dynamic import DynamicBatchNorm, DynamicConv, DynamicDense, DynamicDepthwiseConv, Width
from jaxmutate.registry import MODELS

IN, OUT = 6, 8
IN_CANDIDATES, OUT_CANDIDATES = (2, 4, 6), (2, 5, 8)


def pad_to(y, n):
  return jnp.pad(y, [(0, 0)] * (y.ndim - 1) + [(0, n - y.shape[-1])])


def with_garbage(x, in_width):
  """``x`` with large values in the channels a layer must ignore."""
  garbage = jnp.arange(x.shape[-1]) >= in_width
  return jnp.where(garbage.reshape((1,) * (x.ndim - 1) + (-1,)), 1e3, x)


def sliced_conv(variables, x, in_w, out_w, **kwargs):
  kernel = variables["params"]["kernel"][..., :in_w, :out_w]
  params = {"kernel": kernel}
  if "bias" in variables["params"]:
    params["bias"] = variables["params"]["bias"][:out_w]
  y = nn.Conv(out_w, **kwargs).apply({"params": params}, x[..., :in_w])
  return pad_to(y, variables["params"]["kernel"].shape[-1])


def sliced_dense(variables, x, in_w, out_w):
  params = {"kernel": variables["params"]["kernel"][:in_w, :out_w], "bias": variables["params"]["bias"][:out_w]}
  return pad_to(nn.Dense(out_w).apply({"params": params}, x[..., :in_w]), variables["params"]["kernel"].shape[-1])


CONV_KWARGS = dict(kernel_size=(3, 3), strides=(2, 1), padding="SAME")


@pytest.fixture(scope="module")
def conv_setup():
  conv = DynamicConv(OUT, **CONV_KWARGS)
  x = jax.random.normal(jax.random.key(1), (2, 7, 6, IN))
  variables = conv.init(jax.random.key(0), x)
  return conv, variables, x


def widths(in_v, out_v):
  return Width(out_v, OUT, candidates=OUT_CANDIDATES), Width(in_v, IN, candidates=IN_CANDIDATES)


def test_conv_variables_and_full_width_equal_nn_conv(conv_setup):
  conv, variables, x = conv_setup
  reference = nn.Conv(OUT, **CONV_KWARGS)
  ref_variables = reference.init(jax.random.key(0), x)
  chex.assert_trees_all_equal(variables, ref_variables)
  chex.assert_trees_all_equal(conv.apply(variables, x), reference.apply(variables, x))
  chex.assert_trees_all_equal(conv.apply(variables, x, OUT, IN), reference.apply(variables, x))


@pytest.mark.parametrize("in_w, out_w", [(2, 5), (6, 1)])
def test_concrete_widths_are_the_sliced_conv(conv_setup, in_w, out_w):
  conv, variables, x = conv_setup
  y = conv.apply(variables, with_garbage(x, in_w), out_w, in_w)
  chex.assert_trees_all_close(y, sliced_conv(variables, x, in_w, out_w, **CONV_KWARGS), atol=1e-6)
  assert (y[..., out_w:] == 0).all()


def test_traced_widths_under_jit_equal_the_sliced_conv_and_never_recompile(conv_setup):
  conv, variables, x = conv_setup

  @jax.jit
  @chex.assert_max_traces(n=1)
  def f(x, in_v, out_v):
    return conv.apply(variables, x, *widths(in_v, out_v))

  # Every bucket and widths between buckets (rounded up and masked); clipped values too.
  for in_w, out_w in [(2, 2), (3, 5), (6, 8), (4, 1), (1, 7), (6, 3)]:
    xg = with_garbage(x, in_w)
    y = f(xg, jnp.int32(in_w), jnp.int32(out_w))
    chex.assert_trees_all_close(y, sliced_conv(variables, x, in_w, out_w, **CONV_KWARGS), atol=1e-5)
    assert (y[..., out_w:] == 0).all()
  chex.assert_trees_all_close(
    f(x, jnp.int32(100), jnp.int32(-5)), sliced_conv(variables, x, 6, 1, **CONV_KWARGS), atol=1e-5
  )


def test_vmap_over_widths(conv_setup):
  conv, variables, x = conv_setup
  in_ws, out_ws = jnp.array([2, 6, 3]), jnp.array([8, 2, 5])
  ys = jax.jit(jax.vmap(lambda i, o: conv.apply(variables, x, *widths(i, o))))(in_ws, out_ws)
  for k in range(3):
    chex.assert_trees_all_close(
      ys[k], sliced_conv(variables, x, int(in_ws[k]), int(out_ws[k]), **CONV_KWARGS), atol=1e-5
    )


def test_vmap_over_a_batch_of_width_pytrees(conv_setup):
  conv, variables, x = conv_setup
  out = Width(jnp.array([2, 5]), OUT, candidates=OUT_CANDIDATES)
  ys = jax.vmap(lambda w: conv.apply(variables, x, w))(out)
  chex.assert_trees_all_close(ys[1], sliced_conv(variables, x, IN, 5, **CONV_KWARGS), atol=1e-5)


def test_grad_equals_the_sliced_layers_grad_and_is_zero_outside(conv_setup):
  conv, variables, x = conv_setup
  in_w, out_w = 3, 5

  def loss(params, in_v, out_v):
    return jnp.sum(jnp.sin(conv.apply({"params": params}, x, *widths(in_v, out_v))))

  grads = jax.jit(jax.grad(loss))(variables["params"], jnp.int32(in_w), jnp.int32(out_w))

  def sliced_loss(kernel, bias):
    params = {"kernel": kernel, "bias": bias}
    return jnp.sum(jnp.sin(nn.Conv(out_w, **CONV_KWARGS).apply({"params": params}, x[..., :in_w])))

  gk, gb = jax.grad(sliced_loss, argnums=(0, 1))(
    variables["params"]["kernel"][..., :in_w, :out_w], variables["params"]["bias"][:out_w]
  )
  expected_kernel = jnp.zeros_like(grads["kernel"]).at[..., :in_w, :out_w].set(gk)
  chex.assert_trees_all_close(grads["kernel"], expected_kernel, atol=1e-5)
  chex.assert_trees_all_close(grads["bias"], jnp.zeros(OUT).at[:out_w].set(gb), atol=1e-5)


def conv_shapes(jaxpr):
  """(lhs shape, rhs shape) of every convolution in a jaxpr, nested jaxprs included."""
  found = []
  for eqn in jaxpr.eqns:
    if eqn.primitive.name == "conv_general_dilated":
      found.append((tuple(eqn.invars[0].aval.shape), tuple(eqn.invars[1].aval.shape)))
    for sub in jax.extend.core.jaxprs_in_params(eqn.params):
      found += conv_shapes(sub)
  return found


def test_a_concrete_width_traces_to_exactly_the_sliced_conv(conv_setup):
  conv, variables, x = conv_setup
  jaxpr = jax.make_jaxpr(lambda v, x: conv.apply(v, x, *widths(4, 5)))(variables, x).jaxpr
  assert conv_shapes(jaxpr) == [((2, 7, 6, 4), (3, 3, 4, 5))]
  assert not [e for e in jaxpr.eqns if e.primitive.name == "cond"]
  flops = jax.jit(lambda v, x: conv.apply(v, x, 5, 4)).lower(variables, x).compile().cost_analysis()["flops"]
  reference = nn.Conv(5, **CONV_KWARGS)
  sliced = reference.init(jax.random.key(0), x[..., :4])
  ref_flops = jax.jit(reference.apply).lower(sliced, x[..., :4]).compile().cost_analysis()["flops"]
  assert flops == pytest.approx(ref_flops, rel=0.02)


def test_a_traced_width_dispatches_among_sliced_convs(conv_setup):
  conv, variables, x = conv_setup
  jaxpr = jax.make_jaxpr(lambda i, o: conv.apply(variables, x, *widths(i, o)))(jnp.int32(1), jnp.int32(1)).jaxpr
  rhs_shapes = {rhs for _, rhs in conv_shapes(jaxpr)}
  # in x out buckets: every candidate is a bucket here (3 x 3 branches).
  assert rhs_shapes == {(3, 3, a, b) for a in IN_CANDIDATES for b in OUT_CANDIDATES}


def test_max_buckets_bounds_the_branches(conv_setup):
  _, variables, x = conv_setup
  conv = DynamicConv(OUT, **CONV_KWARGS, max_buckets=2)
  jaxpr = jax.make_jaxpr(lambda i, o: conv.apply(variables, x, *widths(i, o)))(jnp.int32(1), jnp.int32(1)).jaxpr
  assert {rhs for _, rhs in conv_shapes(jaxpr)} == {(3, 3, a, b) for a in (2, 6) for b in (2, 8)}
  masked = DynamicConv(OUT, **CONV_KWARGS, max_buckets=1)
  jaxpr = jax.make_jaxpr(lambda i, o: masked.apply(variables, x, *widths(i, o)))(jnp.int32(1), jnp.int32(1)).jaxpr
  assert conv_shapes(jaxpr) == [((2, 7, 6, 6), (3, 3, 6, 8))]
  y = jax.jit(lambda i, o: masked.apply(variables, x, *widths(i, o)))(jnp.int32(4), jnp.int32(5))
  chex.assert_trees_all_close(y, sliced_conv(variables, x, 4, 5, **CONV_KWARGS), atol=1e-5)


@pytest.mark.slow
def test_widths_with_an_order_keep_the_ordered_channels(conv_setup):
  conv, variables, x = conv_setup
  in_order, out_order = jnp.array([5, 1, 3, 0, 2, 4]), jnp.array([7, 0, 6, 1, 5, 2, 4, 3])
  in_w, out_w = 3, 4
  kernel = variables["params"]["kernel"][..., in_order[:in_w], :][..., out_order[:out_w]]
  params = {"kernel": kernel, "bias": variables["params"]["bias"][out_order[:out_w]]}
  kept = nn.Conv(out_w, **CONV_KWARGS).apply({"params": params}, x[..., in_order[:in_w]])
  expected = jnp.zeros(kept.shape[:-1] + (OUT,)).at[..., out_order[:out_w]].set(kept)

  def f(i, o):
    return conv.apply(variables, x, Width(o, OUT, order=out_order), Width(i, IN, order=in_order))

  chex.assert_trees_all_close(f(in_w, out_w), expected, atol=1e-5)
  chex.assert_trees_all_close(jax.jit(f)(jnp.int32(in_w), jnp.int32(out_w)), expected, atol=1e-5)


@pytest.mark.slow
def test_grouped_conv_keeps_groups_whole():
  conv = DynamicConv(8, (3, 3), feature_group_count=2)
  x = jax.random.normal(jax.random.key(2), (2, 5, 5, 4))
  variables = conv.init(jax.random.key(0), x)
  assert variables["params"]["kernel"].shape == (3, 3, 2, 8)
  chex.assert_trees_all_equal(conv.apply(variables, x), nn.Conv(8, (3, 3), feature_group_count=2).apply(variables, x))

  def sliced(groups):
    params = {
      "kernel": variables["params"]["kernel"][..., : 4 * groups],
      "bias": variables["params"]["bias"][: 4 * groups],
    }
    static = nn.Conv(4 * groups, (3, 3), feature_group_count=groups)
    return pad_to(static.apply({"params": params}, x[..., : 2 * groups]), 8)

  chex.assert_trees_all_close(conv.apply(variables, x, 4, 2), sliced(1), atol=1e-6)
  f = jax.jit(lambda o, i: conv.apply(variables, x, Width(o, 8, candidates=(4, 8)), Width(i, 4, candidates=(2, 4))))
  chex.assert_trees_all_close(f(4, 2), sliced(1), atol=1e-5)
  chex.assert_trees_all_close(f(8, 4), sliced(2), atol=1e-5)
  with pytest.raises(errors.SearchSpaceError, match="group size"):
    conv.apply(variables, x, 6, 4)
  with pytest.raises(errors.SearchSpaceError, match="group size"):
    conv.apply(variables, x, Width(jnp.int32(8), 8, candidates=(3, 8)))
  with pytest.raises(errors.SearchSpaceError):
    DynamicConv(6, (3, 3), feature_group_count=4).init(jax.random.key(0), x)


def test_conv_errors_name_the_layer_and_the_maximum(conv_setup):
  conv, variables, x = conv_setup
  with pytest.raises(errors.ChoiceError, match="DynamicConv.*out_width=9.*8"):
    conv.apply(variables, x, 9)
  with pytest.raises(errors.ChoiceError, match="in_width=0"):
    conv.apply(variables, x, 4, 0)
  with pytest.raises(errors.ChoiceTypeError):
    conv.apply(variables, x, 0.5)
  with pytest.raises(errors.SearchSpaceError, match="num_channels=16"):
    conv.apply(variables, x, Width(4, 16))


@pytest.mark.slow
def test_depthwise_conv_equals_the_ops_layer_at_full_and_sliced_widths():
  x = jax.random.normal(jax.random.key(3), (1, 5, 5, 5))
  conv = DynamicDepthwiseConv(kernel_size=3, strides=2, use_bias=True)
  variables = conv.init(jax.random.key(0), x)
  static = ops.DepthwiseConv(kernel_size=3, strides=2, use_bias=True)
  chex.assert_trees_all_equal(variables, static.init(jax.random.key(0), x))
  chex.assert_trees_all_equal(conv.apply(variables, x), static.apply(variables, x))

  def sliced(w):
    params = {"kernel": variables["params"]["kernel"][..., :w], "bias": variables["params"]["bias"][:w]}
    return pad_to(static.apply({"params": params}, x[..., :w]), 5)

  traced = jax.jit(lambda x, w: conv.apply(variables, x, Width(w, 5, candidates=(2, 5))))
  for w in (2, 3):
    chex.assert_trees_all_close(conv.apply(variables, with_garbage(x, w), w), sliced(w), atol=1e-6)
  for w in (1, 3, 5):
    chex.assert_trees_all_close(traced(with_garbage(x, w), w), sliced(w), atol=1e-5)
  ys = jax.vmap(lambda w: conv.apply(variables, x, w))(jnp.array([1, 4]))
  chex.assert_trees_all_close(ys[1], sliced(4), atol=1e-5)
  grads = jax.jit(jax.grad(lambda p, w: jnp.sum(conv.apply({"params": p}, x, w) ** 2)))(variables["params"], 2)
  assert (grads["kernel"][..., 2:] == 0).all() and (grads["kernel"][..., :2] != 0).all()
  with pytest.raises(errors.ChoiceError, match="width=6"):
    conv.apply(variables, x, 6)
  with pytest.raises(errors.SearchSpaceError):
    DynamicDepthwiseConv(features=4).init(jax.random.key(0), x)


@pytest.mark.slow
def test_depthwise_conv_with_an_order():
  x = jax.random.normal(jax.random.key(3), (1, 4, 4, 4))
  conv = DynamicDepthwiseConv(kernel_size=3)
  variables = conv.init(jax.random.key(0), x)
  order = jnp.array([2, 0, 3, 1])
  full = conv.apply(variables, x)
  y = jax.jit(lambda w: conv.apply(variables, x, Width(w, 4, candidates=(2, 4), order=order)))(2)
  chex.assert_trees_all_close(y[..., jnp.array([2, 0])], full[..., jnp.array([2, 0])], atol=1e-5)
  assert (y[..., jnp.array([1, 3])] == 0).all()


def test_dense_equals_nn_dense_full_and_sliced():
  x = jax.random.normal(jax.random.key(4), (3, IN))
  dense = DynamicDense(OUT)
  variables = dense.init(jax.random.key(0), x)
  chex.assert_trees_all_equal(variables, nn.Dense(OUT).init(jax.random.key(0), x))
  chex.assert_trees_all_equal(dense.apply(variables, x), nn.Dense(OUT).apply(variables, x))

  def run(i, o):
    return dense.apply(
      variables, with_garbage(x, i), Width(o, OUT, candidates=OUT_CANDIDATES), Width(i, IN, candidates=IN_CANDIDATES)
    )

  f = jax.jit(chex.assert_max_traces(run, n=1))
  for in_w, out_w in [(2, 2), (3, 8), (6, 5), (4, 1)]:
    chex.assert_trees_all_close(f(in_w, out_w), sliced_dense(variables, x, in_w, out_w), atol=1e-5)
  concrete = jax.jit(lambda x: dense.apply(variables, x, 5, 3))
  chex.assert_trees_all_close(concrete(with_garbage(x, 3)), sliced_dense(variables, x, 3, 5), atol=1e-6)
  ys = jax.vmap(lambda o: dense.apply(variables, x, o, 4))(jnp.array([3, 8]))
  chex.assert_trees_all_close(ys[0], sliced_dense(variables, x, 4, 3), atol=1e-5)
  grads = jax.jit(jax.grad(lambda p: jnp.sum(dense.apply({"params": p}, x, jnp.int32(3), jnp.int32(4)) ** 2)))(
    variables["params"]
  )
  assert (grads["kernel"][4:] == 0).all() and (grads["kernel"][:, 3:] == 0).all() and (grads["bias"][3:] == 0).all()
  jaxpr = jax.make_jaxpr(lambda v, x: dense.apply(v, x, 5, 3))(variables, x).jaxpr
  dots = [tuple(e.invars[1].aval.shape) for e in jaxpr.eqns if e.primitive.name == "dot_general"]
  assert dots == [(3, 5)] and not [e for e in jaxpr.eqns if e.primitive.name == "cond"]
  with pytest.raises(errors.ChoiceError, match="DynamicDense.*9"):
    dense.apply(variables, x, 9)


def test_layers_are_registered():
  for name in (
    "DynamicConv",
    "DynamicDepthwiseConv",
    "DynamicDense",
    "DynamicBatchNorm",
    "DynamicLayerNorm",
    "SwitchableBatchNorm",
  ):
    assert name in MODELS
  assert isinstance(MODELS.build(dict(type="DynamicConv", features=4, kernel_size=3)), DynamicConv)


def test_nested_module_names_appear_in_errors():
  class Net(nn.Module):
    @nn.compact
    def __call__(self, x, w):
      return DynamicDense(4, name="head")(x, w)

  x = jnp.ones((1, 3))
  variables = Net().init(jax.random.key(0), x, None)
  with pytest.raises(errors.ChoiceError, match="'head'"):
    Net().apply(variables, x, 5)
  np.testing.assert_array_equal(Net().apply(variables, x, 2)[:, 2:], 0)


@pytest.mark.slow
def test_vmap_of_grad_over_widths_with_training_batch_norm():
  """What a sandwich step does: per-width gradients and BatchNorm updates in one compiled call."""

  class Net(nn.Module):
    @nn.compact
    def __call__(self, x, w):
      x = DynamicConv(8, 3, use_bias=False)(x, w)
      x = nn.relu(DynamicBatchNorm(use_running_average=False)(x, w))
      return DynamicDense(3)(x.mean((1, 2)), in_width=w)

  net, x = Net(), jax.random.normal(jax.random.key(5), (2, 4, 4, 3))
  variables = net.init(jax.random.key(0), x, None)

  def loss(params, value):
    out, updates = net.apply(
      {"params": params, "batch_stats": variables["batch_stats"]},
      x,
      Width(value, 8, candidates=(2, 4, 8)),
      mutable=["batch_stats"],
    )
    return jnp.sum(out**2), updates

  grads, updates = jax.jit(jax.vmap(jax.grad(loss, has_aux=True), in_axes=(None, 0)))(
    variables["params"], jnp.array([2, 8])
  )
  single, single_updates = jax.jit(jax.grad(loss, has_aux=True))(variables["params"], 2)
  chex.assert_trees_all_close(jax.tree.map(lambda g: g[0], grads), single, atol=1e-5)
  chex.assert_trees_all_close(jax.tree.map(lambda s: s[0], updates), single_updates, atol=1e-5)
  assert (grads["DynamicConv_0"]["kernel"][0][..., 2:] == 0).all()
