"""ShuffleNetV2 blocks of SPOS' search space, as in MMRazor.

References:
  Guo et al., Single Path One-Shot Neural Architecture Search with Uniform
  Sampling, https://arxiv.org/abs/1904.00420 ; MMRazor
  ``mmrazor/models/architectures/ops/shufflenet_series.py``.
"""

from __future__ import annotations

import flax.linen as nn
import jax
import jax.numpy as jnp

from jaxmutate.errors import ConfigError
from jaxmutate.ops._common import (
  BN_EPSILON,
  BN_MOMENTUM,
  ConvBN,
  check_choice,
  check_positive_int,
)
from jaxmutate.registry import MODELS


def channel_shuffle(x: jax.Array, groups: int) -> jax.Array:
  """ShuffleNet's channel shuffle on NHWC input (mmcls' ``channel_shuffle``).

  Channel ``g * (C // groups) + i`` moves to ``i * groups + g``.

  Args:
    x: (..., C) array.
    groups: number of groups; must divide C.

  Returns:
    ``x`` with its channels interleaved across groups.

  Raises:
    ValueError: ``groups`` < 1 or does not divide the channel count.

  Example:
    >>> import jax.numpy as jnp
    >>> from jaxmutate.ops import channel_shuffle
    >>> channel_shuffle(jnp.arange(6.0).reshape(1, 1, 1, 6), 2).ravel().tolist()
    [0.0, 3.0, 1.0, 4.0, 2.0, 5.0]
  """
  if isinstance(groups, bool) or not isinstance(groups, int) or groups < 1:
    raise ConfigError(f"groups must be an int >= 1, got {groups!r}.")
  channels = x.shape[-1]
  if channels % groups:
    raise ConfigError(f"groups={groups} must divide the channels x.shape[-1]={channels}.")
  x = x.reshape(*x.shape[:-1], groups, channels // groups)
  x = jnp.swapaxes(x, -1, -2)
  return x.reshape(*x.shape[:-2], channels)


def _concat_shuffle(x1: jax.Array, x2: jax.Array) -> jax.Array:
  """``channel_shuffle(concatenate([x1, x2], -1), 2)`` for equal halves.

  Channel i of ``x1`` lands at 2i and channel i of ``x2`` at 2i + 1: one
  interleaving write instead of a concatenation and a transpose.
  """
  return jnp.stack([x1, x2], axis=-1).reshape(*x1.shape[:-1], 2 * x1.shape[-1])


def _check_shuffle_channels(owner: str, in_channels: int, out_channels: int, stride: int) -> None:
  check_positive_int(in_channels, "in_channels", owner)
  check_positive_int(out_channels, "out_channels", owner)
  check_choice(stride, "stride", owner, (1, 2))
  if out_channels % 2:
    raise ConfigError(f"{owner} out_channels must be even (two branches of out_channels // 2), got {out_channels}.")
  if stride == 1 and in_channels != out_channels:
    raise ConfigError(
      f"{owner} with stride 1 splits the input in half and needs "
      f"in_channels == out_channels, got in_channels={in_channels}, "
      f"out_channels={out_channels}."
    )


@MODELS.register_module()
class ShuffleBlock(nn.Module):
  """ShuffleNetV2 unit with a k x k depthwise conv (SPOS' shuffle_3x3/5x5/7x7).

  Stride 1: split the channels in half, pass the first half through, run
  ``branch2`` (1x1 conv-BN-ReLU → kxk depthwise-BN → 1x1 conv-BN-ReLU) on the
  second half, concatenate, ``channel_shuffle(·, 2)``. Stride 2: ``branch1``
  (kxk depthwise-BN → 1x1 conv-BN-ReLU) and ``branch2`` both see the whole
  input, each gives ``out_channels // 2`` channels; concatenate and shuffle.
  Padding is ``k // 2`` on every side, as in PyTorch.

  Attributes:
    in_channels: input channels (== ``out_channels`` at stride 1).
    out_channels: output channels, even.
    kernel_size: depthwise kernel size: 3, 5 or 7.
    stride: 1 or 2.
    implementation: depthwise implementation (``None``: by backend; see
      ``depthwise_conv``).
    bn_momentum: BatchNorm momentum (0.9, PyTorch's 0.1).
    bn_epsilon: BatchNorm epsilon (1e-5).

  Example:
    >>> import jax, jax.numpy as jnp
    >>> from jaxmutate.ops import ShuffleBlock
    >>> block = ShuffleBlock(in_channels=8, out_channels=16, kernel_size=5, stride=2)
    >>> x = jnp.ones((2, 8, 8, 8))
    >>> variables = block.init(jax.random.key(0), x)
    >>> y, updates = block.apply(variables, x, train=True, mutable=["batch_stats"])
    >>> y.shape
    (2, 4, 4, 16)
  """

  in_channels: int
  out_channels: int
  kernel_size: int = 3
  stride: int = 1
  implementation: str | None = None
  bn_momentum: float = BN_MOMENTUM
  bn_epsilon: float = BN_EPSILON

  def __post_init__(self) -> None:
    check_choice(self.kernel_size, "kernel_size", "ShuffleBlock", (3, 5, 7))
    _check_shuffle_channels("ShuffleBlock", self.in_channels, self.out_channels, self.stride)
    super().__post_init__()

  @nn.compact
  def __call__(self, x: jax.Array, *, train: bool = False) -> jax.Array:
    """Applies the block to NHWC ``x``; BN uses batch statistics iff ``train``."""
    branch = self.out_channels // 2
    bn = dict(
      implementation=self.implementation,
      bn_momentum=self.bn_momentum,
      bn_epsilon=self.bn_epsilon,
    )
    k, s = self.kernel_size, self.stride
    if s > 1:
      x1 = ConvBN(self.in_channels, k, s, depthwise=True, name="branch1_0", **bn)(x, train=train, defer=True)
      x1 = ConvBN(branch, 1, act="relu", name="branch1_1", **bn)(x1, train=train)
      x2 = x
    else:
      x1, x2 = jnp.split(x, 2, axis=-1)
    # Deferred BN outputs: each conv normalises its input itself, so the
    # backward pass keeps one activation per layer (see ConvBN).
    x2 = ConvBN(branch, 1, act="relu", name="branch2_0", **bn)(x2, train=train, defer=True)
    x2 = ConvBN(branch, k, s, depthwise=True, name="branch2_1", **bn)(x2, train=train, defer=True)
    x2 = ConvBN(branch, 1, act="relu", name="branch2_2", **bn)(x2, train=train)
    return _concat_shuffle(x1, x2)


@MODELS.register_module()
class ShuffleXception(nn.Module):
  """ShuffleNetV2 Xception unit (SPOS' shuffle_xception).

  Like :class:`ShuffleBlock` with ``kernel_size=3``, but ``branch2`` is three
  depthwise-separable convs (3x3 depthwise-BN → 1x1 conv-BN-ReLU; the first
  one carries the stride), as MMCV's ``DepthwiseSeparableConvModule`` with
  ``dw_act_cfg=None``.

  Attributes:
    in_channels: input channels (== ``out_channels`` at stride 1).
    out_channels: output channels, even.
    stride: 1 or 2.
    implementation: depthwise implementation (``None``: by backend).
    bn_momentum: BatchNorm momentum (0.9).
    bn_epsilon: BatchNorm epsilon (1e-5).

  Example:
    >>> import jax, jax.numpy as jnp
    >>> from jaxmutate.ops import ShuffleXception
    >>> block = ShuffleXception(in_channels=8, out_channels=8, stride=1)
    >>> x = jnp.ones((2, 8, 8, 8))
    >>> variables = block.init(jax.random.key(0), x)
    >>> block.apply(variables, x).shape
    (2, 8, 8, 8)
  """

  in_channels: int
  out_channels: int
  stride: int = 1
  implementation: str | None = None
  bn_momentum: float = BN_MOMENTUM
  bn_epsilon: float = BN_EPSILON

  def __post_init__(self) -> None:
    _check_shuffle_channels("ShuffleXception", self.in_channels, self.out_channels, self.stride)
    super().__post_init__()

  @nn.compact
  def __call__(self, x: jax.Array, *, train: bool = False) -> jax.Array:
    """Applies the block to NHWC ``x``; BN uses batch statistics iff ``train``."""
    branch = self.out_channels // 2
    bn = dict(
      implementation=self.implementation,
      bn_momentum=self.bn_momentum,
      bn_epsilon=self.bn_epsilon,
    )
    s = self.stride
    if s > 1:
      x1 = ConvBN(self.in_channels, 3, s, depthwise=True, name="branch1_0", **bn)(x, train=train, defer=True)
      x1 = ConvBN(branch, 1, act="relu", name="branch1_1", **bn)(x1, train=train)
      x2 = x
    else:
      x1, x2 = jnp.split(x, 2, axis=-1)
    for i, stride in enumerate((s, 1, 1)):
      x2 = ConvBN(x2.shape[-1], 3, stride, depthwise=True, name=f"branch2_{i}_dw", **bn)(x2, train=train, defer=True)
      x2 = ConvBN(branch, 1, act="relu", name=f"branch2_{i}_pw", **bn)(x2, train=train, defer=i < 2)
    return _concat_shuffle(x1, x2)
