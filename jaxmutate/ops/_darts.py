"""DARTS' candidate operations, as in MMRazor's ``darts_series.py``.

Every op takes ``in_channels``/``out_channels``/``stride`` so one config can
build all candidates of an edge, and a static ``train`` call kwarg for
BatchNorm. DARTS searches with ``affine=False`` BatchNorm (MMRazor's
``norm_cfg=dict(type="BN", affine=False)``); the default here is ``True``.

References:
  Liu et al., DARTS: Differentiable Architecture Search,
  https://arxiv.org/abs/1806.09055
"""

from __future__ import annotations

import flax.linen as nn
import jax
import jax.numpy as jnp

from jaxmutate.errors import ConfigError
from jaxmutate.ops._common import (
  BN_EPSILON,
  BN_MOMENTUM,
  batch_norm,
  check_choice,
  check_positive_int,
)
from jaxmutate.ops._depthwise import DepthwiseConv
from jaxmutate.registry import MODELS


def _check_in_out(owner: str, in_channels: int | None, out_channels: int | None) -> None:
  if in_channels is not None:
    check_positive_int(in_channels, "in_channels", owner)
  if out_channels is not None:
    check_positive_int(out_channels, "out_channels", owner)


@MODELS.register_module()
class DartsPoolBN(nn.Module):
  """3x3 max or average pooling (padding ``k // 2``) followed by BatchNorm.

  Average pooling excludes the padding from the count (PyTorch's
  ``count_include_pad=False``, as in DARTS).

  Attributes:
    pool_type: ``"max"`` or ``"avg"``.
    kernel_size: odd pooling window.
    stride: 1 or 2.
    in_channels: optional, must equal ``out_channels`` when both are given.
    out_channels: optional.
    affine: BatchNorm learns scale and bias.
    bn_momentum: BatchNorm momentum (0.9).
    bn_epsilon: BatchNorm epsilon (1e-5).

  Example:
    >>> import jax, jax.numpy as jnp
    >>> from jaxmutate.ops import DartsPoolBN
    >>> op = DartsPoolBN(pool_type="max", stride=2)
    >>> x = jnp.ones((2, 8, 8, 4))
    >>> op.apply(op.init(jax.random.key(0), x), x).shape
    (2, 4, 4, 4)
  """

  pool_type: str = "max"
  kernel_size: int = 3
  stride: int = 1
  in_channels: int | None = None
  out_channels: int | None = None
  affine: bool = True
  bn_momentum: float = BN_MOMENTUM
  bn_epsilon: float = BN_EPSILON

  def __post_init__(self) -> None:
    check_choice(self.pool_type, "pool_type", "DartsPoolBN", ("max", "avg"))
    check_positive_int(self.kernel_size, "kernel_size", "DartsPoolBN")
    if self.kernel_size % 2 == 0:
      raise ConfigError(f"DartsPoolBN kernel_size must be odd, got {self.kernel_size}.")
    check_choice(self.stride, "stride", "DartsPoolBN", (1, 2))
    _check_in_out("DartsPoolBN", self.in_channels, self.out_channels)
    if None not in (self.in_channels, self.out_channels) and (self.in_channels != self.out_channels):
      raise ConfigError(
        f"DartsPoolBN keeps the channels: in_channels={self.in_channels} must equal out_channels={self.out_channels}."
      )
    super().__post_init__()

  @nn.compact
  def __call__(self, x: jax.Array, *, train: bool = False) -> jax.Array:
    """Pools NHWC ``x`` and normalises; BN uses batch statistics iff ``train``."""
    k, p = self.kernel_size, self.kernel_size // 2
    window, strides, pads = (k, k), (self.stride, self.stride), ((p, p), (p, p))
    if self.pool_type == "max":
      x = nn.max_pool(x, window, strides, pads)
    else:
      x = nn.avg_pool(x, window, strides, pads, count_include_pad=False)
    return batch_norm(train, self.bn_momentum, self.bn_epsilon, self.affine, name="bn")(x)


@MODELS.register_module()
class DartsDilConv(nn.Module):
  """ReLU → dilated kxk depthwise conv → 1x1 conv → BN (DARTS' dil_conv).

  Padding ``(k // 2) * dilation`` keeps the size at stride 1. MMRazor sizes
  the BatchNorm by ``in_channels``; here it normalises the ``out_channels``
  it actually receives (the same whenever they are equal, as in DARTS).

  Attributes:
    in_channels: input channels.
    out_channels: output channels.
    kernel_size: 3 or 5.
    stride: 1 or 2.
    dilation: kernel dilation (2 in DARTS).
    implementation: depthwise implementation (``None``: by backend).
    affine: BatchNorm learns scale and bias.
    bn_momentum: BatchNorm momentum (0.9).
    bn_epsilon: BatchNorm epsilon (1e-5).

  Example:
    >>> import jax, jax.numpy as jnp
    >>> from jaxmutate.ops import DartsDilConv
    >>> op = DartsDilConv(in_channels=4, out_channels=4, kernel_size=3)
    >>> x = jnp.ones((2, 8, 8, 4))
    >>> op.apply(op.init(jax.random.key(0), x), x).shape
    (2, 8, 8, 4)
  """

  in_channels: int
  out_channels: int
  kernel_size: int = 3
  stride: int = 1
  dilation: int = 2
  implementation: str | None = None
  affine: bool = True
  bn_momentum: float = BN_MOMENTUM
  bn_epsilon: float = BN_EPSILON

  def __post_init__(self) -> None:
    _check_in_out("DartsDilConv", self.in_channels, self.out_channels)
    check_choice(self.kernel_size, "kernel_size", "DartsDilConv", (3, 5))
    check_choice(self.stride, "stride", "DartsDilConv", (1, 2))
    check_positive_int(self.dilation, "dilation", "DartsDilConv")
    super().__post_init__()

  @nn.compact
  def __call__(self, x: jax.Array, *, train: bool = False) -> jax.Array:
    """Applies the op to NHWC ``x``; BN uses batch statistics iff ``train``."""
    pad = (self.kernel_size // 2) * self.dilation
    x = nn.relu(x)
    x = DepthwiseConv(
      kernel_size=self.kernel_size,
      strides=self.stride,
      dilation=self.dilation,
      padding=((pad, pad), (pad, pad)),
      implementation=self.implementation,
      name="depthwise",
    )(x)
    x = nn.Conv(self.out_channels, (1, 1), use_bias=False, name="pointwise")(x)
    return batch_norm(train, self.bn_momentum, self.bn_epsilon, self.affine, name="bn")(x)


@MODELS.register_module()
class DartsSepConv(nn.Module):
  """Two stacked ReLU → kxk depthwise → 1x1 conv → BN (DARTS' sep_conv).

  The first unit carries the stride and keeps ``in_channels``; the second
  maps to ``out_channels`` (original DARTS; MMRazor's second depthwise conv
  would use a channel multiplier when the two differ, which DARTS never does).

  Attributes:
    in_channels: input channels.
    out_channels: output channels.
    kernel_size: 3 or 5.
    stride: 1 or 2.
    implementation: depthwise implementation (``None``: by backend).
    affine: BatchNorm learns scale and bias.
    bn_momentum: BatchNorm momentum (0.9).
    bn_epsilon: BatchNorm epsilon (1e-5).

  Example:
    >>> import jax, jax.numpy as jnp
    >>> from jaxmutate.ops import DartsSepConv
    >>> op = DartsSepConv(in_channels=4, out_channels=8, kernel_size=5, stride=2)
    >>> x = jnp.ones((2, 8, 8, 4))
    >>> op.apply(op.init(jax.random.key(0), x), x).shape
    (2, 4, 4, 8)
  """

  in_channels: int
  out_channels: int
  kernel_size: int = 3
  stride: int = 1
  implementation: str | None = None
  affine: bool = True
  bn_momentum: float = BN_MOMENTUM
  bn_epsilon: float = BN_EPSILON

  def __post_init__(self) -> None:
    _check_in_out("DartsSepConv", self.in_channels, self.out_channels)
    check_choice(self.kernel_size, "kernel_size", "DartsSepConv", (3, 5))
    check_choice(self.stride, "stride", "DartsSepConv", (1, 2))
    super().__post_init__()

  @nn.compact
  def __call__(self, x: jax.Array, *, train: bool = False) -> jax.Array:
    """Applies the op to NHWC ``x``; BN uses batch statistics iff ``train``."""
    k, pad = self.kernel_size, self.kernel_size // 2
    for i, (stride, features) in enumerate(((self.stride, self.in_channels), (1, self.out_channels))):
      x = nn.relu(x)
      x = DepthwiseConv(
        kernel_size=k,
        strides=stride,
        padding=((pad, pad), (pad, pad)),
        implementation=self.implementation,
        name=f"depthwise{i}",
      )(x)
      x = nn.Conv(features, (1, 1), use_bias=False, name=f"pointwise{i}")(x)
      x = batch_norm(train, self.bn_momentum, self.bn_epsilon, self.affine, name=f"bn{i}")(x)
    return x


@MODELS.register_module()
class DartsSkipConnect(nn.Module):
  """DARTS' skip_connect: identity at stride 1, FactorizedReduce at stride 2.

  FactorizedReduce: ReLU, then two 1x1 stride-2 convs to ``out_channels // 2``
  each, the second on the input shifted by one pixel (``x[:, 1:, 1:]``),
  concatenated, then BN. It needs even spatial sizes.

  Attributes:
    in_channels: input channels.
    out_channels: output channels (== ``in_channels`` at stride 1, even at
      stride 2).
    stride: 1 or 2.
    affine: BatchNorm learns scale and bias.
    bn_momentum: BatchNorm momentum (0.9).
    bn_epsilon: BatchNorm epsilon (1e-5).

  Example:
    >>> import jax, jax.numpy as jnp
    >>> from jaxmutate.ops import DartsSkipConnect
    >>> op = DartsSkipConnect(in_channels=4, out_channels=8, stride=2)
    >>> x = jnp.ones((2, 8, 8, 4))
    >>> op.apply(op.init(jax.random.key(0), x), x).shape
    (2, 4, 4, 8)
  """

  in_channels: int
  out_channels: int
  stride: int = 1
  affine: bool = True
  bn_momentum: float = BN_MOMENTUM
  bn_epsilon: float = BN_EPSILON

  def __post_init__(self) -> None:
    _check_in_out("DartsSkipConnect", self.in_channels, self.out_channels)
    check_choice(self.stride, "stride", "DartsSkipConnect", (1, 2))
    if self.stride == 1 and self.in_channels != self.out_channels:
      raise ConfigError(
        f"DartsSkipConnect at stride 1 is the identity and needs "
        f"in_channels == out_channels, got in_channels={self.in_channels}, "
        f"out_channels={self.out_channels}."
      )
    if self.stride == 2 and self.out_channels % 2:
      raise ConfigError(
        f"DartsSkipConnect at stride 2 concatenates two halves and needs an even out_channels, got {self.out_channels}."
      )
    super().__post_init__()

  @nn.compact
  def __call__(self, x: jax.Array, *, train: bool = False) -> jax.Array:
    """Applies the op to NHWC ``x``; BN uses batch statistics iff ``train``."""
    if self.stride == 1:
      return x
    if x.shape[1] % 2 or x.shape[2] % 2:
      raise ConfigError(f"DartsSkipConnect at stride 2 needs even spatial sizes, got x.shape={tuple(x.shape)}.")
    x = nn.relu(x)
    half = self.out_channels // 2
    conv = dict(kernel_size=(1, 1), strides=2, padding="VALID", use_bias=False)
    y1 = nn.Conv(half, name="conv1", **conv)(x)
    y2 = nn.Conv(half, name="conv2", **conv)(x[:, 1:, 1:, :])
    y = jnp.concatenate([y1, y2], axis=-1)
    return batch_norm(train, self.bn_momentum, self.bn_epsilon, self.affine, name="bn")(y)


@MODELS.register_module()
class DartsZero(nn.Module):
  """DARTS' ``none`` op: zeros, subsampled by ``stride``.

  Attributes:
    stride: int >= 1; the output is ``x[:, ::stride, ::stride] * 0``.
    in_channels: optional, must equal ``out_channels`` when both are given.
    out_channels: optional.

  Example:
    >>> import jax.numpy as jnp
    >>> from jaxmutate.ops import DartsZero
    >>> DartsZero(stride=2).apply({}, jnp.ones((1, 8, 8, 3))).shape
    (1, 4, 4, 3)
  """

  stride: int = 1
  in_channels: int | None = None
  out_channels: int | None = None

  def __post_init__(self) -> None:
    check_positive_int(self.stride, "stride", "DartsZero")
    _check_in_out("DartsZero", self.in_channels, self.out_channels)
    if None not in (self.in_channels, self.out_channels) and (self.in_channels != self.out_channels):
      raise ConfigError(
        f"DartsZero keeps the channels: in_channels={self.in_channels} must equal out_channels={self.out_channels}."
      )
    super().__post_init__()

  def __call__(self, x: jax.Array, *, train: bool = False) -> jax.Array:
    """Returns zeros shaped like ``x[:, ::stride, ::stride]``."""
    del train
    # Multiply instead of zeros_like so NaN/inf inputs propagate as in MMRazor.
    return x[:, :: self.stride, :: self.stride, :] * jnp.zeros((), x.dtype)
