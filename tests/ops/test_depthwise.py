"""Tests of jaxmutate.ops.depthwise_conv / DepthwiseConv against lax.conv."""

import itertools

import chex
import flax.linen as nn
import hypothesis
import hypothesis.strategies as st
import jax
import jax.numpy as jnp
import numpy as np
import pytest
from jax import lax

from jaxmutate.ops import DepthwiseConv, _depthwise, default_implementation, depthwise_conv
from jaxmutate.registry import MODELS

TOL = dict(rtol=1e-4, atol=2e-4)


def lax_depthwise(x, kernel, stride=1, dilation=1, padding="SAME"):
  """The reference: XLA's grouped conv, exactly what nn.Conv runs."""
  if isinstance(padding, int):
    padding = ((padding, padding), (padding, padding))
  stride = (stride, stride) if isinstance(stride, int) else stride
  dilation = (dilation, dilation) if isinstance(dilation, int) else dilation
  return lax.conv_general_dilated(
    x,
    kernel[:, :, None, :],
    window_strides=stride,
    padding=padding,
    rhs_dilation=dilation,
    dimension_numbers=("NHWC", "HWIO", "NHWC"),
    feature_group_count=x.shape[-1],
  )


def make_inputs(seed, x_shape, k, channels=None):
  channels = x_shape[-1] if channels is None else channels
  kx, kk = jax.random.split(jax.random.key(seed))
  kh, kw = (k, k) if isinstance(k, int) else k
  x = jax.random.normal(kx, x_shape, jnp.float32)
  kernel = jax.random.normal(kk, (kh, kw, channels), jnp.float32)
  return x, kernel


def value_and_grads(fn, x, kernel):
  """Output and both gradients of a non-trivial scalar loss."""

  def loss(x, kernel):
    y = fn(x, kernel)
    return jnp.sum(jnp.sin(y) * jnp.arange(y.size, dtype=y.dtype).reshape(y.shape) / y.size)

  y = fn(x, kernel)
  gx, gk = jax.grad(loss, argnums=(0, 1))(x, kernel)
  return y, gx, gk


def assert_all_close(actual, expected):
  for a, e in zip(actual, expected):
    assert a.shape == e.shape
    np.testing.assert_allclose(np.asarray(a), np.asarray(e), **TOL)


class TestNumerics(chex.TestCase):
  @chex.variants(with_jit=True, without_jit=True)
  def test_matches_lax_with_and_without_jit(self):
    # Op-by-op dispatch of k² slices is slow: one config here, every kernel
    # size, stride and dilation in test_matches_lax_for_every_config.
    check_configs(self.variant, [(3, 2, 2)])


def check_configs(variant, configs):
  x, _ = make_inputs(0, (2, 11, 10, 3), 3)
  for k, stride, dilation in configs:
    kernel = make_inputs(k, (1, 1, 1, 3), k)[1]

    def ours(x, kernel, stride=stride, dilation=dilation):
      return depthwise_conv(x, kernel, stride=stride, dilation=dilation, implementation="shifted")

    def ref(x, kernel, stride=stride, dilation=dilation):
      return lax_depthwise(x, kernel, stride, dilation)

    actual, expected = variant(
      lambda x, kernel, ours=ours, ref=ref: (
        value_and_grads(ours, x, kernel),
        value_and_grads(ref, x, kernel),
      )
    )(x, kernel)
    assert_all_close(actual, expected)


@pytest.mark.slow
def test_matches_lax_for_every_config():
  check_configs(jax.jit, itertools.product((3, 5, 7), (1, 2), (1, 2)))


class TestMoreNumerics(chex.TestCase):
  @chex.variants(with_jit=True, without_jit=True)
  def test_padding_modes_and_bias(self):
    x, kernel = make_inputs(1, (2, 9, 8, 4), (5, 3))
    bias = jnp.arange(4.0)
    for padding in ("SAME", "VALID", 1, (2, 0), ((0, 3), (1, 2))):
      expected_pad = padding
      if isinstance(padding, tuple) and isinstance(padding[0], int):
        expected_pad = ((padding[0],) * 2, (padding[1],) * 2)
      actual = self.variant(
        lambda x, k, b, padding=padding: depthwise_conv(
          x, k, stride=(2, 1), padding=padding, bias=b, implementation="shifted"
        )
      )(x, kernel, bias)
      expected = lax_depthwise(x, kernel, (2, 1), 1, expected_pad) + bias.reshape(1, 1, 1, 4)
      np.testing.assert_allclose(actual, expected, **TOL)

  def test_flax_hwio_kernel_layout_is_accepted(self):
    x, kernel = make_inputs(2, (1, 6, 6, 3), 3)
    np.testing.assert_allclose(depthwise_conv(x, kernel[:, :, None, :]), depthwise_conv(x, kernel), **TOL)

  def test_kernel_grad_chunked_over_the_batch(self):
    # Tiny chunks force the lax.scan path of the kernel gradient.
    x, kernel = make_inputs(3, (6, 7, 7, 2), 3)
    old = _depthwise._KERNEL_GRAD_CHUNK_BYTES
    _depthwise._KERNEL_GRAD_CHUNK_BYTES = 2 * (9 * 9 + 4 * 4) * 2 * 4
    try:
      ours = jax.jit(
        lambda x, k: value_and_grads(
          lambda x, k: depthwise_conv(x, k, stride=2, implementation="shifted"),
          x,
          k,
        )
      )(x, kernel)
    finally:
      _depthwise._KERNEL_GRAD_CHUNK_BYTES = old
    ref = value_and_grads(lambda x, k: lax_depthwise(x, k, 2), x, kernel)
    assert_all_close(ours, ref)

  def test_matmul_kernel_grad_path(self):
    # kw >= _DOT_KERNEL_GRAD_MIN_WIDTH: per-chunk channel-batched matmuls and
    # strided diagonal sums; strides, dilations and second order must hold.
    x, kernel = make_inputs(8, (4, 11, 10, 3), (3, 5))
    assert kernel.shape[1] >= _depthwise._DOT_KERNEL_GRAD_MIN_WIDTH
    old = _depthwise._KERNEL_GRAD_CHUNK_BYTES
    _depthwise._KERNEL_GRAD_CHUNK_BYTES = 1  # one image per scan step
    try:
      for stride, dilation in (((1, 1), (1, 1)), ((2, 1), (1, 2))):
        ours = jax.jit(
          lambda x, k, s=stride, d=dilation: value_and_grads(
            lambda x, k: depthwise_conv(x, k, stride=s, dilation=d, implementation="shifted"),
            x,
            k,
          )
        )(x, kernel)
        ref = value_and_grads(lambda x, k, s=stride, d=dilation: lax_depthwise(x, k, s, d), x, kernel)
        assert_all_close(ours, ref)
      tx, tk = make_inputs(9, (4, 11, 10, 3), (3, 5))
      results = {}
      for impl in ("shifted", "xla"):
        grad_fn = jax.grad(
          lambda x, k, impl=impl: jnp.sum(jnp.tanh(depthwise_conv(x, k, stride=2, implementation=impl))),
          argnums=(0, 1),
        )
        _, hvp = jax.jit(lambda x, k: jax.jvp(grad_fn, (x, k), (tx, tk)))(x, kernel)
        results[impl] = hvp
      assert_all_close(results["shifted"], results["xla"])
    finally:
      _depthwise._KERNEL_GRAD_CHUNK_BYTES = old

  def test_vmap_and_vmap_of_grad(self):
    x, kernel = make_inputs(4, (3, 2, 8, 8, 3), 5)
    kernels = jax.random.normal(jax.random.key(5), (3, 5, 5, 3))

    def loss(fn):
      return lambda x, k: jnp.sum(fn(x, k) ** 2)

    ours = lambda x, k: depthwise_conv(x, k, stride=2, implementation="shifted")
    ref = lambda x, k: lax_depthwise(x, k, 2)
    np.testing.assert_allclose(jax.vmap(ours)(x, kernels), jax.vmap(ref)(x, kernels), **TOL)
    grads = lambda fn: jax.vmap(jax.grad(loss(fn), (0, 1)))
    actual, expected = jax.jit(lambda x, k: (grads(ours)(x, k), grads(ref)(x, k)))(x, kernels)
    assert_all_close(actual, expected)
    # Per-example kernel gradients (vmap over the batch, kernel shared).
    per_example = lambda fn: jax.vmap(jax.grad(loss(fn), 1), (0, None))
    actual, expected = jax.jit(lambda x, k: (per_example(ours)(x, k), per_example(ref)(x, k)))(x[:, :1], kernel)
    np.testing.assert_allclose(actual, expected, rtol=1e-4, atol=1e-3)

  def test_second_order_jvp_of_grad_and_grad_of_grad(self):
    x, kernel = make_inputs(6, (2, 7, 7, 2), 3)
    tx, tk = make_inputs(7, (2, 7, 7, 2), 3)

    def loss(impl):
      return lambda x, k: jnp.sum(jnp.tanh(depthwise_conv(x, k, stride=2, dilation=2, implementation=impl)))

    results = {}
    for impl in ("shifted", "xla"):
      grad_fn = jax.grad(loss(impl), argnums=(0, 1))
      _, hvp = jax.jit(lambda x, k: jax.jvp(grad_fn, (x, k), (tx, tk)))(x, kernel)
      gg = jax.grad(lambda x, k: jnp.sum(grad_fn(x, k)[1] ** 2), argnums=(0, 1))(x, kernel)
      results[impl] = (*hvp, *gg)
    assert_all_close(results["shifted"], results["xla"])

  def test_default_implementation_is_shifted_on_cpu(self):
    assert default_implementation() == ("shifted" if jax.default_backend() == "cpu" else "xla")


@pytest.mark.slow
@hypothesis.settings(max_examples=12, deadline=None, derandomize=True)
@hypothesis.given(
  n=st.integers(1, 3),
  h=st.integers(1, 9),
  w=st.integers(1, 9),
  c=st.integers(1, 4),
  kh=st.sampled_from([1, 3, 5]),
  kw=st.sampled_from([1, 3, 5]),
  stride=st.tuples(st.integers(1, 3), st.integers(1, 3)),
  dilation=st.tuples(st.integers(1, 2), st.integers(1, 2)),
  padding=st.sampled_from(["SAME", "VALID", 0, 1, 2]),
)
def test_hypothesis_matches_lax(n, h, w, c, kh, kw, stride, dilation, padding):
  if padding == "VALID" or isinstance(padding, int):
    pad = 0 if padding == "VALID" else padding
    hypothesis.assume(h + 2 * pad >= (kh - 1) * dilation[0] + 1)
    hypothesis.assume(w + 2 * pad >= (kw - 1) * dilation[1] + 1)
  x, kernel = make_inputs(n * 100 + h * 10 + w, (n, h, w, c), (kh, kw))
  kwargs = dict(stride=stride, dilation=dilation, padding=padding)

  def both(x, k):  # one compile for both sides
    return [
      value_and_grads(lambda x, k: depthwise_conv(x, k, implementation=impl, **kwargs), x, k)
      for impl in ("shifted", "xla")
    ]

  ours, ref = jax.jit(both)(x, kernel)
  assert_all_close(ours, ref)


class TestModule:
  def test_params_and_output_match_nn_conv_grouped(self):
    x, _ = make_inputs(8, (2, 8, 8, 4), 3)
    conv = DepthwiseConv(kernel_size=5, strides=2, use_bias=True)
    ref = nn.Conv(4, (5, 5), strides=2, feature_group_count=4, use_bias=True)
    variables = ref.init(jax.random.key(0), x)
    ours_vars = conv.init(jax.random.key(0), x)
    chex.assert_trees_all_equal_shapes(ours_vars, variables)
    variables = jax.tree.map(lambda v: v + jax.random.normal(jax.random.key(1), v.shape), variables)
    np.testing.assert_allclose(conv.apply(variables, x), ref.apply(variables, x), **TOL)

  def test_registered_and_buildable(self):
    conv = MODELS.build(dict(type="DepthwiseConv", kernel_size=3, dilation=2))
    x = jnp.ones((1, 7, 7, 2))
    assert conv.apply(conv.init(jax.random.key(0), x), x).shape == (1, 7, 7, 2)

  def test_bad_module_config(self):
    x = jnp.ones((1, 6, 6, 2))
    with pytest.raises(ValueError, match="features=4"):
      DepthwiseConv(features=4).init(jax.random.key(0), x)
    with pytest.raises(ValueError, match="kernel_size must be odd"):
      DepthwiseConv(kernel_size=4).init(jax.random.key(0), x)


class TestErrors:
  x = jnp.ones((1, 8, 8, 3))
  kernel = jnp.ones((3, 3, 3))

  @pytest.mark.parametrize(
    "kwargs, match",
    [
      (dict(kernel=jnp.ones((4, 4, 3))), "kernel sizes must be odd"),
      (dict(kernel=jnp.ones((3, 3, 6))), "channel multiplier 2"),
      (dict(kernel=jnp.ones((3, 3, 1, 6))), "channel multiplier 2"),
      (dict(kernel=jnp.ones((3, 3, 2, 3))), "I == 1"),
      (dict(kernel=jnp.ones((3, 3, 4))), r"kernel.shape\[-1\]=4"),
      (dict(kernel=jnp.ones((3, 3))), "kernel must have shape"),
      (dict(x=jnp.ones((8, 8, 3))), "x must be NHWC"),
      (dict(padding="FULL"), "padding must be"),
      (dict(padding=-1), "padding must be"),
      (dict(padding=(1, 2, 3)), "padding must be"),
      (dict(implementation="cudnn"), "implementation must be one of"),
      (dict(stride=0), "stride must be >= 1"),
      (dict(stride=(1, 0)), "stride must be >= 1"),
      (dict(dilation=0), "dilation must be >= 1"),
      (dict(bias=jnp.ones(4)), "bias must have shape"),
      (dict(x=jnp.ones((1, 2, 2, 3)), padding="VALID"), "smaller than"),
    ],
  )
  def test_value_errors(self, kwargs, match):
    args = dict(x=self.x, kernel=self.kernel)
    args.update(kwargs)
    x, kernel = args.pop("x"), args.pop("kernel")
    with pytest.raises(ValueError, match=match):
      depthwise_conv(x, kernel, **args)

  @pytest.mark.parametrize("kwargs", [dict(stride=True), dict(dilation=1.5), dict(stride="2")])
  def test_type_errors(self, kwargs):
    with pytest.raises(TypeError, match=next(iter(kwargs))):
      depthwise_conv(self.x, self.kernel, **kwargs)
