"""MobileNetV2's inverted residual block.

References:
  Sandler et al., MobileNetV2: Inverted Residuals and Linear Bottlenecks,
  https://arxiv.org/abs/1801.04381 (mmcls ``InvertedResidual``).
"""

from __future__ import annotations

import flax.linen as nn
import jax

from jaxmutate.errors import ConfigError
from jaxmutate.ops._common import (
  BN_EPSILON,
  BN_MOMENTUM,
  ConvBN,
  check_choice,
  check_positive_int,
)
from jaxmutate.registry import MODELS


@MODELS.register_module()
class InvertedResidual(nn.Module):
  """MobileNetV2 block: 1x1 expand → kxk depthwise → 1x1 linear project.

  ``hidden = round(in_channels * expand_ratio)``; the expansion conv-BN-ReLU6
  is skipped when ``expand_ratio == 1``; the depthwise conv-BN-ReLU6 carries
  the stride (padding ``k // 2``); the projection is conv-BN without
  activation. The input is added back when ``stride == 1`` and
  ``in_channels == out_channels``.

  Attributes:
    in_channels: input channels.
    out_channels: output channels.
    stride: 1 or 2.
    expand_ratio: expansion factor of the hidden channels (> 0).
    kernel_size: odd depthwise kernel size (3, 5, 7, ...).
    implementation: depthwise implementation (``None``: by backend).
    bn_momentum: BatchNorm momentum (0.9).
    bn_epsilon: BatchNorm epsilon (1e-5).

  Example:
    >>> import jax, jax.numpy as jnp
    >>> from jaxmutate.ops import InvertedResidual
    >>> block = InvertedResidual(in_channels=8, out_channels=8, stride=1, expand_ratio=6)
    >>> x = jnp.ones((2, 8, 8, 8))
    >>> variables = block.init(jax.random.key(0), x)
    >>> block.apply(variables, x).shape
    (2, 8, 8, 8)
  """

  in_channels: int
  out_channels: int
  stride: int = 1
  expand_ratio: float = 6
  kernel_size: int = 3
  implementation: str | None = None
  bn_momentum: float = BN_MOMENTUM
  bn_epsilon: float = BN_EPSILON

  def __post_init__(self) -> None:
    check_positive_int(self.in_channels, "in_channels", "InvertedResidual")
    check_positive_int(self.out_channels, "out_channels", "InvertedResidual")
    check_choice(self.stride, "stride", "InvertedResidual", (1, 2))
    check_positive_int(self.kernel_size, "kernel_size", "InvertedResidual")
    if self.kernel_size % 2 == 0:
      raise ConfigError(f"InvertedResidual kernel_size must be odd, got {self.kernel_size}.")
    if isinstance(self.expand_ratio, bool) or not self.expand_ratio > 0:
      raise ConfigError(f"InvertedResidual expand_ratio must be > 0, got {self.expand_ratio!r}.")
    if round(self.in_channels * self.expand_ratio) < 1:
      raise ConfigError(
        f"InvertedResidual in_channels * expand_ratio rounds to 0 hidden "
        f"channels (in_channels={self.in_channels}, "
        f"expand_ratio={self.expand_ratio})."
      )
    super().__post_init__()

  @nn.compact
  def __call__(self, x: jax.Array, *, train: bool = False) -> jax.Array:
    """Applies the block to NHWC ``x``; BN uses batch statistics iff ``train``."""
    bn = dict(
      implementation=self.implementation,
      bn_momentum=self.bn_momentum,
      bn_epsilon=self.bn_epsilon,
    )
    hidden = int(round(self.in_channels * self.expand_ratio))
    out = x
    if self.expand_ratio != 1:
      out = ConvBN(hidden, 1, act="relu6", name="expand", **bn)(out, train=train, defer=True)
    out = ConvBN(
      out.shape[-1],
      self.kernel_size,
      self.stride,
      depthwise=True,
      act="relu6",
      name="depthwise",
      **bn,
    )(out, train=train, defer=True)
    out = ConvBN(self.out_channels, 1, name="project", **bn)(out, train=train)
    if self.stride == 1 and self.in_channels == self.out_channels:
      out = out + x
    return out
