"""Tests of the ShuffleNet / MobileNet / DARTS blocks in jaxmutate.ops."""

import flax.linen as nn
import jax
import jax.numpy as jnp
import numpy as np
import pytest

from jaxmutate import ops
from jaxmutate.registry import MODELS


def init_apply(block, x, train=False):
  variables = block.init(jax.random.key(0), x)
  if train:
    y, updates = block.apply(variables, x, train=True, mutable=["batch_stats"])
    return variables, y, updates
  return variables, block.apply(variables, x, train=False), None


def n_params(variables):
  return sum(p.size for p in jax.tree.leaves(variables.get("params", {})))


def x_of(shape, seed=0):
  return jax.random.normal(jax.random.key(seed), shape)


class TestChannelShuffle:
  def test_matches_mmcls_nchw_semantics(self):
    x = x_of((2, 3, 3, 12))
    groups = 3
    # mmcls: NCHW view(b, g, c/g, h, w).transpose(1, 2).
    nchw = np.asarray(x).transpose(0, 3, 1, 2)
    b, c, h, w = nchw.shape
    expected = nchw.reshape(b, groups, c // groups, h, w).transpose(0, 2, 1, 3, 4)
    expected = expected.reshape(b, c, h, w).transpose(0, 2, 3, 1)
    np.testing.assert_array_equal(ops.channel_shuffle(x, groups), expected)

  def test_fused_concat_shuffle_equals_concat_then_shuffle(self):
    from jaxmutate.ops._shufflenet import _concat_shuffle

    x1, x2 = x_of((2, 3, 3, 4), 1), x_of((2, 3, 3, 4), 2)
    np.testing.assert_array_equal(_concat_shuffle(x1, x2), ops.channel_shuffle(jnp.concatenate([x1, x2], -1), 2))

  def test_bad_groups(self):
    with pytest.raises(ValueError, match="groups=5"):
      ops.channel_shuffle(jnp.ones((1, 1, 1, 6)), 5)
    with pytest.raises(ValueError, match="groups must be"):
      ops.channel_shuffle(jnp.ones((1, 1, 1, 6)), 0)


class TestPointwiseConv:
  def test_same_params_and_output_as_nn_conv(self):
    import flax.linen as nn

    from jaxmutate.ops import PointwiseConv

    x = x_of((2, 5, 4, 3))
    ours, ref = PointwiseConv(features=6), nn.Conv(6, (1, 1), use_bias=False)
    variables = ours.init(jax.random.key(3), x)
    ref_variables = ref.init(jax.random.key(3), x)
    np.testing.assert_array_equal(variables["params"]["kernel"], ref_variables["params"]["kernel"])
    np.testing.assert_allclose(ours.apply(variables, x), ref.apply(variables, x), rtol=1e-5, atol=1e-6)
    loss = lambda f: lambda v, x: jnp.sum(jnp.sin(f.apply(v, x)))
    ours_grads = jax.grad(loss(ours), (0, 1))(variables, x)
    ref_grads = jax.grad(loss(ref), (0, 1))(variables, x)
    for a, b in zip(jax.tree.leaves(ours_grads), jax.tree.leaves(ref_grads)):
      np.testing.assert_allclose(a, b, rtol=1e-5, atol=1e-5)


class TestShuffleNet:
  @pytest.mark.parametrize("kernel_size", [3, 5, 7])
  def test_shuffle_block_stride1_structure(self, kernel_size):
    x = x_of((2, 8, 8, 16))
    block = ops.ShuffleBlock(16, 16, kernel_size, 1)
    variables, y, _ = init_apply(block, x)
    assert y.shape == x.shape
    # The first half passes through and lands on the even channels.
    np.testing.assert_array_equal(y[..., 0::2], x[..., :8])
    # MMRazor: pw 8x8 + BN, dw k²x8 + BN, pw 8x8 + BN (BN: scale + bias).
    assert n_params(variables) == 64 + kernel_size**2 * 8 + 64 + 3 * 16

  def test_shuffle_block_stride2_structure(self):
    x = x_of((2, 8, 8, 8))
    block = ops.ShuffleBlock(8, 16, 5, 2)
    variables, y, updates = init_apply(block, x, train=True)
    assert y.shape == (2, 4, 4, 16)
    # branch1: dw 25x8 + BN(8), pw 8x8 + BN(8); branch2: pw 8x8 + BN, dw
    # 25x8 + BN, pw 8x8 + BN.
    assert n_params(variables) == (200 + 16 + 64 + 16) + (64 + 16 + 200 + 16 + 64 + 16)
    assert set(updates["batch_stats"]) == set(variables["batch_stats"])

  @pytest.mark.parametrize("stride", [1, 2])
  def test_shuffle_xception_shapes(self, stride):
    x = x_of((2, 8, 8, 8))
    block = ops.ShuffleXception(8, 8, stride)
    variables, y, _ = init_apply(block, x)
    assert y.shape == (2, 8 // stride, 8 // stride, 8)
    dw = [k for k in variables["params"] if k.startswith("branch2_") and k.endswith("_dw")]
    assert len(dw) == 3

  def test_shifted_and_xla_implementations_agree_in_train_mode(self):
    x = x_of((2, 8, 8, 8))
    shifted = ops.ShuffleBlock(8, 8, 7, 1, implementation="shifted")
    grouped = ops.ShuffleBlock(8, 8, 7, 1, implementation="xla")
    variables = shifted.init(jax.random.key(0), x)

    def loss(params, block):
      y, _ = block.apply({**variables, "params": params}, x, train=True, mutable=["batch_stats"])
      return jnp.sum(y**2)

    both = jax.jit(lambda p: [jax.value_and_grad(loss)(p, b) for b in (shifted, grouped)])
    (l1, g1), (l2, g2) = both(variables["params"])
    np.testing.assert_allclose(l1, l2, rtol=1e-5)
    for a, b in zip(jax.tree.leaves(g1), jax.tree.leaves(g2)):
      np.testing.assert_allclose(a, b, rtol=1e-3, atol=1e-4)

  @pytest.mark.parametrize(
    "kwargs, match",
    [
      (dict(in_channels=16, out_channels=16, kernel_size=4), "kernel_size"),
      (dict(in_channels=8, out_channels=16, kernel_size=3), "in_channels == out_channels"),
      (dict(in_channels=8, out_channels=9, kernel_size=3, stride=2), "even"),
      (dict(in_channels=8, out_channels=8, kernel_size=3, stride=3), "stride"),
    ],
  )
  def test_bad_config(self, kwargs, match):
    with pytest.raises(ValueError, match=match):
      ops.ShuffleBlock(**kwargs)

  def test_shuffle_xception_bad_config(self):
    with pytest.raises(ValueError, match="in_channels == out_channels"):
      ops.ShuffleXception(8, 16, 1)


class TestMobileNet:
  def test_residual_and_expansion(self):
    x = x_of((2, 8, 8, 8))
    block = ops.InvertedResidual(8, 8, 1, 6)
    variables, y, _ = init_apply(block, x)
    assert y.shape == x.shape
    assert set(variables["params"]) == {"expand", "depthwise", "project"}
    # Zeroing the projection's BN scale leaves only the residual.
    params = jax.tree.map(lambda a: a, variables["params"])
    params["project"]["bn"]["scale"] = jnp.zeros_like(params["project"]["bn"]["scale"])
    y0 = block.apply({**variables, "params": params}, x)
    np.testing.assert_allclose(y0, x, atol=1e-6)

  def test_no_expand_at_ratio_one_and_stride2(self):
    x = x_of((2, 8, 8, 8))
    block = ops.InvertedResidual(8, 16, 2, 1, kernel_size=5)
    variables, y, _ = init_apply(block, x, train=True)
    assert y.shape == (2, 4, 4, 16)
    assert set(variables["params"]) == {"depthwise", "project"}
    assert variables["params"]["depthwise"]["conv"]["kernel"].shape == (5, 5, 1, 8)

  def test_bad_config(self):
    with pytest.raises(ValueError, match="expand_ratio"):
      ops.InvertedResidual(8, 8, 1, 0)
    with pytest.raises(ValueError, match="kernel_size must be odd"):
      ops.InvertedResidual(8, 8, 1, 6, kernel_size=4)


class TestDarts:
  @pytest.mark.parametrize("pool_type", ["max", "avg"])
  def test_pool_bn(self, pool_type):
    x = jnp.arange(16.0).reshape(1, 4, 4, 1)
    op = ops.DartsPoolBN(pool_type, 3, 1)
    _, y, _ = init_apply(op, x)
    # Eval-mode BN at init is x / sqrt(1 + eps); the corner window covers
    # 4 valid pixels (0, 1, 4, 5); avg excludes the padding.
    corner = 5.0 if pool_type == "max" else 2.5
    np.testing.assert_allclose(y[0, 0, 0, 0], corner / np.sqrt(1 + 1e-5), rtol=1e-5)
    assert ops.DartsPoolBN(pool_type, stride=2).init_with_output(jax.random.key(0), x)[0].shape == (1, 2, 2, 1)

  @pytest.mark.parametrize("kernel_size, stride", [(3, 1), (5, 2)])
  def test_dil_and_sep_conv_shapes(self, kernel_size, stride):
    x = x_of((2, 8, 8, 4))
    for op in (
      ops.DartsDilConv(4, 6, kernel_size, stride),
      ops.DartsSepConv(4, 6, kernel_size, stride),
    ):
      variables, y, updates = init_apply(op, x, train=True)
      assert y.shape == (2, 8 // stride, 8 // stride, 6)
      assert updates is not None

  def test_dil_conv_matches_lax_dilated_grouped_conv(self):
    x = x_of((2, 9, 9, 3))
    op = ops.DartsDilConv(3, 3, 5, 1)
    variables, y, _ = init_apply(op, x)
    p = variables["params"]
    h = jax.lax.conv_general_dilated(
      jax.nn.relu(x),
      p["depthwise"]["kernel"],
      (1, 1),
      ((4, 4), (4, 4)),
      rhs_dilation=(2, 2),
      dimension_numbers=("NHWC", "HWIO", "NHWC"),
      feature_group_count=3,
    )
    h = h @ p["pointwise"]["kernel"][0, 0]
    np.testing.assert_allclose(y, h / np.sqrt(1 + 1e-5), rtol=1e-4, atol=1e-5)

  def test_skip_connect(self):
    x = x_of((2, 8, 8, 4))
    np.testing.assert_array_equal(ops.DartsSkipConnect(4, 4, 1).apply({}, x), x)
    op = ops.DartsSkipConnect(4, 8, 2)
    variables, y, _ = init_apply(op, x)
    assert y.shape == (2, 4, 4, 8)
    assert {"conv1", "conv2", "bn"} == set(variables["params"])
    with pytest.raises(ValueError, match="even spatial"):
      op.init(jax.random.key(0), x_of((2, 7, 7, 4)))
    with pytest.raises(ValueError, match="in_channels == out_channels"):
      ops.DartsSkipConnect(4, 8, 1)

  def test_zero_and_identity(self):
    x = x_of((2, 8, 8, 4)).at[0, 0, 0, 0].set(jnp.nan)
    y = ops.DartsZero(stride=2).apply({}, x, train=True)
    assert y.shape == (2, 4, 4, 4)
    assert np.isnan(y[0, 0, 0, 0]) and np.all(np.asarray(y)[1] == 0)
    np.testing.assert_array_equal(ops.Identity().apply({}, x), x)
    with pytest.raises(ValueError, match="stride must be 1"):
      ops.Identity(stride=2)
    with pytest.raises(ValueError, match="stride must be >= 1"):
      ops.DartsZero(stride=0)

  def test_bad_config(self):
    with pytest.raises(ValueError, match="pool_type"):
      ops.DartsPoolBN("min")
    with pytest.raises(ValueError, match="kernel_size"):
      ops.DartsSepConv(4, 4, 7)
    with pytest.raises(ValueError, match="stride"):
      ops.DartsDilConv(4, 4, 3, 3)


@pytest.mark.parametrize(
  "cfg, in_channels",
  [
    (dict(type="ShuffleBlock", in_channels=8, out_channels=8, kernel_size=3), 8),
    (dict(type="ShuffleXception", in_channels=8, out_channels=8), 8),
    (dict(type="InvertedResidual", in_channels=8, out_channels=8, expand_ratio=3), 8),
    (dict(type="jaxmutate.DartsPoolBN", pool_type="avg", stride=1), 4),
    (dict(type="DartsDilConv", in_channels=4, out_channels=4, kernel_size=3), 4),
    (dict(type="DartsSepConv", in_channels=4, out_channels=4, kernel_size=3), 4),
    (dict(type="DartsSkipConnect", in_channels=4, out_channels=4), 4),
    (dict(type="DartsZero", in_channels=4, out_channels=4), 4),
    (dict(type="Identity", in_channels=4, out_channels=4), 4),
  ],
)
def test_registered_and_trainable_under_jit(cfg, in_channels):
  block = MODELS.build(cfg)
  x = x_of((2, 8, 8, in_channels))
  variables = block.init(jax.random.key(0), x)

  @jax.jit
  def loss_and_grads(params):
    def loss(params):
      y, _ = block.apply({**variables, "params": params}, x, train=True, mutable=["batch_stats"])
      return jnp.mean(y**2)

    return jax.value_and_grad(loss)(params)

  value, grads = loss_and_grads(variables.get("params", {}))
  assert np.isfinite(value)
  assert all(np.all(np.isfinite(g)) for g in jax.tree.leaves(grads))


# --- The blocks against a plain Flax reference ------------------------------
#
# The blocks defer BatchNorm into the next conv and use fast depthwise and 1x1
# convs; the reference is the textbook network (nn.Conv, nn.BatchNorm, concat
# then channel shuffle) with the same variable names. Values, batch statistics
# and gradients must agree in train mode.


_ACTS = {None: lambda v: v, "relu": nn.relu, "relu6": nn.relu6}


class RefConvBN(nn.Module):
  features: int
  kernel_size: int = 1
  stride: int = 1
  depthwise: bool = False
  act: str | None = None

  @nn.compact
  def __call__(self, x, train):
    pad = self.kernel_size // 2
    channels = x.shape[-1]
    x = nn.Conv(
      channels if self.depthwise else self.features,
      (self.kernel_size, self.kernel_size),
      strides=self.stride,
      padding=((pad, pad), (pad, pad)),
      feature_group_count=channels if self.depthwise else 1,
      use_bias=False,
      name="conv",
    )(x)
    x = nn.BatchNorm(use_running_average=not train, momentum=0.9, epsilon=1e-5, name="bn")(x)
    return _ACTS[self.act](x)


class RefShuffle(nn.Module):
  out_channels: int
  kernel_size: int
  stride: int
  xception: bool = False

  @nn.compact
  def __call__(self, x, train=False):
    branch, k, s = self.out_channels // 2, self.kernel_size, self.stride
    if s > 1:
      x1 = RefConvBN(0, k, s, True, name="branch1_0")(x, train)
      x1 = RefConvBN(branch, 1, act="relu", name="branch1_1")(x1, train)
      x2 = x
    else:
      x1, x2 = jnp.split(x, 2, axis=-1)
    if self.xception:
      for i, stride in enumerate((s, 1, 1)):
        x2 = RefConvBN(0, 3, stride, True, name=f"branch2_{i}_dw")(x2, train)
        x2 = RefConvBN(branch, 1, act="relu", name=f"branch2_{i}_pw")(x2, train)
    else:
      x2 = RefConvBN(branch, 1, act="relu", name="branch2_0")(x2, train)
      x2 = RefConvBN(0, k, s, True, name="branch2_1")(x2, train)
      x2 = RefConvBN(branch, 1, act="relu", name="branch2_2")(x2, train)
    return ops.channel_shuffle(jnp.concatenate([x1, x2], -1), 2)


class RefInvertedResidual(nn.Module):
  in_channels: int
  out_channels: int
  stride: int
  expand_ratio: float
  kernel_size: int = 3

  @nn.compact
  def __call__(self, x, train=False):
    out = x
    if self.expand_ratio != 1:
      hidden = int(round(self.in_channels * self.expand_ratio))
      out = RefConvBN(hidden, 1, act="relu6", name="expand")(out, train)
    out = RefConvBN(0, self.kernel_size, self.stride, True, act="relu6", name="depthwise")(out, train)
    out = RefConvBN(self.out_channels, 1, name="project")(out, train)
    if self.stride == 1 and self.in_channels == self.out_channels:
      out = out + x
    return out


def _train_outputs(block, variables, x):
  weights = jax.random.normal(jax.random.key(7), block.apply(variables, x).shape)

  def loss(params, x):
    y, updates = block.apply({**variables, "params": params}, x, train=True, mutable=["batch_stats"])
    return jnp.sum(jnp.tanh(y) * weights), (y, updates["batch_stats"])

  (_, (y, stats)), grads = jax.jit(jax.value_and_grad(loss, (0, 1), has_aux=True))(variables["params"], x)
  return y, stats, grads


@pytest.mark.parametrize(
  "ours, reference, in_channels",
  [
    (ops.ShuffleBlock(8, 8, 3, 1), RefShuffle(8, 3, 1), 8),
    (ops.ShuffleBlock(8, 8, 7, 1), RefShuffle(8, 7, 1), 8),
    (ops.ShuffleBlock(4, 8, 5, 2), RefShuffle(8, 5, 2), 4),
    (ops.ShuffleXception(8, 8, 1), RefShuffle(8, 3, 1, True), 8),
    (ops.ShuffleXception(4, 8, 2), RefShuffle(8, 3, 2, True), 4),
    (ops.InvertedResidual(8, 8, 1, 3), RefInvertedResidual(8, 8, 1, 3), 8),
    (ops.InvertedResidual(8, 12, 2, 1, 5), RefInvertedResidual(8, 12, 2, 1, 5), 8),
  ],
  ids=["shuffle3", "shuffle7", "shuffle5-s2", "xception", "xception-s2", "mbv2", "mbv2-s2-k5"],
)
def test_block_matches_plain_flax_reference_in_train_mode(ours, reference, in_channels):
  x = 2.0 * x_of((4, 8, 8, in_channels), 3) + 0.5
  variables = ours.init(jax.random.key(1), x)
  ref_variables = reference.init(jax.random.key(1), x)
  assert jax.tree.map(jnp.shape, variables) == jax.tree.map(jnp.shape, ref_variables)
  # Non-trivial BN parameters and running statistics.
  variables = jax.tree.map(lambda a: a + 0.1 * jax.random.normal(jax.random.key(a.size), a.shape), variables)
  got, want = _train_outputs(ours, variables, x), _train_outputs(reference, variables, x)
  for a, b in zip(jax.tree.leaves(got), jax.tree.leaves(want)):
    np.testing.assert_allclose(a, b, rtol=2e-4, atol=2e-4)
  # Eval mode (running statistics) too.
  np.testing.assert_allclose(ours.apply(variables, x), reference.apply(variables, x), rtol=2e-4, atol=2e-4)


def test_block_second_order_gradients_match_reference():
  # grad of grad through the deferred BN and the fast depthwise conv
  # (DARTS' second-order step differentiates a gradient of such blocks).
  x = x_of((2, 6, 6, 8), 4)
  ours, reference = ops.ShuffleBlock(8, 8, 3, 1), RefShuffle(8, 3, 1)
  variables = ours.init(jax.random.key(2), x)

  def outer(block):
    def inner(params, x):
      y, _ = block.apply({**variables, "params": params}, x, train=True, mutable=["batch_stats"])
      return jnp.sum(jnp.sin(y))

    return jax.jit(
      jax.grad(lambda x: sum(jnp.sum(g**2) for g in jax.tree.leaves(jax.grad(inner)(variables["params"], x))))
    )(x)

  np.testing.assert_allclose(outer(ours), outer(reference), rtol=1e-3, atol=1e-4)


def test_inference_mode_supports_forward_mode_ad():
  # Training mode rematerialises through a custom VJP (reverse mode only);
  # inference mode computes plainly, so jvp works there with XLA's convs.
  x = x_of((2, 6, 6, 8), 5)
  block = ops.ShuffleBlock(8, 8, 3, 1, implementation="xla")
  variables = block.init(jax.random.key(0), x)
  f = lambda x: block.apply(variables, x)
  _, tangent = jax.jvp(f, (x,), (jnp.ones_like(x),))
  want = jax.vjp(f, x)[1]  # the same linear map, via reverse mode
  probe = jax.random.normal(jax.random.key(1), tangent.shape)
  np.testing.assert_allclose(jnp.vdot(tangent, probe), jnp.vdot(jnp.ones_like(x), want(probe)[0]), rtol=1e-4)
