"""Pieces shared by the searchable-space blocks: Identity and conv-BN-act."""

from __future__ import annotations

import functools
from typing import Any

import flax.linen as nn
import jax
import jax.numpy as jnp
from jax import lax

from jaxmutate.ops._depthwise import DepthwiseConv
from jaxmutate.registry import MODELS

# PyTorch's BatchNorm2d defaults (momentum 0.1 of the new value = flax 0.9 of
# the old, eps 1e-5), so ports of MMRazor configs train the same way.
BN_MOMENTUM = 0.9
BN_EPSILON = 1e-5

_ACTIVATIONS = {"relu": nn.relu, "relu6": nn.relu6}


def check_positive_int(value: Any, name: str, owner: str) -> None:
  """Raises unless ``value`` is an int >= 1 (``owner`` names the module)."""
  if isinstance(value, bool) or not isinstance(value, int):
    raise TypeError(f"{owner} {name} must be an int, got {value!r}.")
  if value < 1:
    raise ValueError(f"{owner} {name} must be >= 1, got {value!r}.")


def check_choice(value: Any, name: str, owner: str, allowed: tuple[Any, ...]) -> None:
  """Raises ``ValueError`` unless ``value`` is one of ``allowed``."""
  if isinstance(value, bool) or value not in allowed:
    raise ValueError(f"{owner} {name} must be one of {allowed}, got {value!r}.")


def batch_norm(
    train: bool,
    momentum: float = BN_MOMENTUM,
    epsilon: float = BN_EPSILON,
    affine: bool = True,
    name: str | None = None,
) -> nn.BatchNorm:
  """``nn.BatchNorm`` with PyTorch-like defaults; batch statistics iff ``train``.

  Must be called inside a compact method.
  """
  return nn.BatchNorm(
      use_running_average=not train,
      momentum=momentum,
      epsilon=epsilon,
      use_scale=affine,
      use_bias=affine,
      name=name,
  )


def _batch_stats_2d(x2: jax.Array) -> tuple[jax.Array, jax.Array]:
  """(1, C) mean and biased variance of (M, C) ``x2`` (one pass)."""
  count = x2.shape[0]
  mean = jnp.sum(x2, axis=0, keepdims=True) / count
  mean_sq = jnp.sum(x2 * x2, axis=0, keepdims=True) / count
  # E[x^2] - E[x]^2 as in flax's fast variance; clipped against round-off.
  return mean, jnp.maximum(mean_sq - mean * mean, 0.0)


def _bn_train_fwd(x, scale, bias, epsilon, relu):
  channels = x.shape[-1]
  x2 = x.reshape(-1, channels)
  # Statistics, scale and bias as (1, C) rows (explicit broadcasting).
  scale, bias = scale.reshape(1, channels), bias.reshape(1, channels)
  mean, var = _batch_stats_2d(x2)
  inv_std = lax.rsqrt(var + epsilon)
  mul = scale * inv_std
  y = x2 * mul + (bias - mean * mul)
  if relu:
    y = jnp.maximum(y, 0.0)
  outputs = (y.reshape(x.shape), mean.reshape(channels), var.reshape(channels))
  return outputs, (x, mean, inv_std, scale, bias)


def _bn_train_bwd(epsilon, relu, residuals, cotangents):
  del epsilon
  x, mean, inv_std, scale, bias = residuals
  d_y, d_mean, d_var = cotangents
  channels = x.shape[-1]
  x2 = x.reshape(-1, channels)
  count = x2.shape[0]
  d_y2 = d_y.reshape(-1, channels)
  d_mean, d_var = d_mean.reshape(1, channels), d_var.reshape(1, channels)
  centered = x2 - mean
  x_hat = centered * inv_std
  if relu:  # recompute the ReLU mask instead of saving it
    d_y2 = jnp.where(x_hat * scale + bias > 0, d_y2, 0.0)
  d_bias = jnp.sum(d_y2, axis=0, keepdims=True)
  d_scale = jnp.sum(d_y2 * x_hat, axis=0, keepdims=True)
  d_x = (scale * inv_std) * (d_y2 - (d_bias + x_hat * d_scale) / count)
  # Cotangents of the returned batch statistics (zero in a plain train step).
  d_x = d_x + d_mean / count + centered * (2.0 * d_var / count)
  return d_x.reshape(x.shape), d_scale.reshape(channels), d_bias.reshape(channels)


@functools.partial(jax.custom_vjp, nondiff_argnums=(3, 4))
def _bn_train(x, scale, bias, epsilon, relu):
  return _bn_train_fwd(x, scale, bias, epsilon, relu)[0]


_bn_train.defvjp(_bn_train_fwd, _bn_train_bwd)


def batch_norm_train(
    x: jax.Array,
    scale: jax.Array,
    bias: jax.Array,
    epsilon: float = BN_EPSILON,
    relu: bool = False,
) -> tuple[jax.Array, jax.Array, jax.Array]:
  """BatchNorm with batch statistics over all axes but the last, fused ReLU.

  Forward: one pass for mean and mean of squares, then one multiply-add
  (and ``max(·, 0)`` when ``relu``). The custom VJP needs two reductions
  (``sum(dy)``, ``sum(dy * x_hat)``) and one elementwise pass, and recomputes
  the ReLU mask from the saved input instead of keeping the pre-activation.

  Args:
    x: (..., C) float array.
    scale: (C,) scale.
    bias: (C,) shift.
    epsilon: added to the variance.
    relu: apply ReLU to the output.

  Returns:
    ``(y, mean, var)``: output and the batch mean and biased variance.

  Example:
    >>> import jax.numpy as jnp
    >>> from jaxmutate.ops._common import batch_norm_train
    >>> y, mean, var = batch_norm_train(jnp.arange(8.0).reshape(4, 2),
    ...                                 jnp.ones(2), jnp.zeros(2))
    >>> mean.tolist(), var.tolist()
    ([3.0, 4.0], [5.0, 5.0])
  """
  return _bn_train(x, scale, bias, float(epsilon), bool(relu))


class BatchNorm(nn.Module):
  """``nn.BatchNorm`` over the last axis with an optional fused ReLU.

  Same variables as ``flax.linen.BatchNorm`` (params ``scale``/``bias`` when
  ``affine``; batch_stats ``mean``/``var``), same running-average update
  (``momentum * old + (1 - momentum) * batch``, biased batch variance, no
  update while initialising) and the same outputs up to float32 round-off;
  train mode uses :func:`batch_norm_train` (fewer passes over activations).

  Attributes:
    use_running_average: normalise with the running statistics (eval).
    momentum: running-average momentum.
    epsilon: added to the variance.
    affine: learn ``scale`` and ``bias``.
    relu: apply ReLU to the output.

  Example:
    >>> import jax, jax.numpy as jnp
    >>> from jaxmutate.ops._common import BatchNorm
    >>> bn = BatchNorm(use_running_average=False)
    >>> variables = bn.init(jax.random.key(0), jnp.ones((2, 3, 3, 4)))
    >>> y, updates = bn.apply(variables, jnp.ones((2, 3, 3, 4)),
    ...                       mutable=["batch_stats"])
    >>> updates["batch_stats"]["mean"].shape
    (4,)
  """

  use_running_average: bool = False
  momentum: float = BN_MOMENTUM
  epsilon: float = BN_EPSILON
  affine: bool = True
  relu: bool = False

  @nn.compact
  def __call__(self, x: jax.Array) -> jax.Array:
    """Normalises (..., C) ``x`` and updates the running statistics in train mode."""
    channels = x.shape[-1]
    x = jnp.asarray(x, jnp.promote_types(x.dtype, jnp.float32))
    ra_mean = self.variable(
        "batch_stats", "mean", lambda s: jnp.zeros(s, jnp.float32), (channels,)
    )
    ra_var = self.variable(
        "batch_stats", "var", lambda s: jnp.ones(s, jnp.float32), (channels,)
    )
    if self.affine:
      scale = self.param("scale", nn.initializers.ones, (channels,), jnp.float32)
      bias = self.param("bias", nn.initializers.zeros, (channels,), jnp.float32)
    else:
      scale = jnp.ones((channels,), jnp.float32)
      bias = jnp.zeros((channels,), jnp.float32)
    if self.use_running_average:
      row = (1,) * (x.ndim - 1) + (channels,)
      mul = scale * lax.rsqrt(ra_var.value + self.epsilon)
      y = x * mul.reshape(row) + (bias - ra_mean.value * mul).reshape(row)
      return jnp.maximum(y, 0.0) if self.relu else y
    y, mean, var = batch_norm_train(x, scale, bias, self.epsilon, self.relu)
    if not self.is_initializing():
      ra_mean.value = self.momentum * ra_mean.value + (1 - self.momentum) * mean
      ra_var.value = self.momentum * ra_var.value + (1 - self.momentum) * var
    return y


class PointwiseConv(nn.Module):
  """1x1 stride-1 conv without bias, computed as one 2-d matmul.

  Same parameter (``kernel`` of shape (1, 1, Cin, Cout), lecun-normal) as
  ``nn.Conv(features, (1, 1), use_bias=False)``, so the two are
  interchangeable. On XLA CPU the conv form's backward transposes the
  activations for the kernel gradient (the dot of a 4-d operand contracts over
  three leading dims); flattening to (N*H*W, Cin) first makes forward, input
  gradient and kernel gradient plain 2-d matmuls (~3x faster fwd+bwd at
  64x32x32x16).

  Attributes:
    features: output channels.
    kernel_init: initializer of the (1, 1, Cin, Cout) kernel.
    dtype: computation dtype (``None``: inferred from inputs and params).
    param_dtype: dtype of the parameters.

  Example:
    >>> import jax, jax.numpy as jnp
    >>> from jaxmutate.ops._common import PointwiseConv
    >>> conv = PointwiseConv(features=6)
    >>> variables = conv.init(jax.random.key(0), jnp.ones((1, 4, 4, 3)))
    >>> variables["params"]["kernel"].shape
    (1, 1, 3, 6)
    >>> conv.apply(variables, jnp.ones((1, 4, 4, 3))).shape
    (1, 4, 4, 6)
  """

  features: int
  kernel_init: Any = nn.initializers.lecun_normal()
  dtype: Any = None
  param_dtype: Any = jnp.float32

  @nn.compact
  def __call__(self, x: jax.Array) -> jax.Array:
    """Applies the 1x1 conv to (..., Cin) ``x``."""
    channels = x.shape[-1]
    kernel = self.param(
        "kernel", self.kernel_init, (1, 1, channels, self.features),
        self.param_dtype,
    )
    x, kernel = nn.dtypes.promote_dtype(x, kernel, dtype=self.dtype)
    flat = lax.dot_general(
        x.reshape(-1, channels), kernel[0, 0], (((1,), (0,)), ((), ()))
    )
    return flat.reshape(*x.shape[:-1], self.features)


class ConvBN(nn.Module):
  """Conv (dense 1x1/kxk or depthwise, no bias) → BatchNorm → optional act.

  MMCV's ``ConvModule`` with ``norm_cfg=dict(type="BN")``. Submodules are
  named ``conv`` and ``bn``.

  Attributes:
    features: output channels (ignored when ``depthwise``: same as input).
    kernel_size: odd int.
    stride: int.
    dilation: int.
    depthwise: use :class:`DepthwiseConv` (fast on CPU) instead of ``nn.Conv``.
    act: ``None``, ``"relu"`` or ``"relu6"``.
    implementation: depthwise implementation, see ``depthwise_conv``.
    bn_momentum: BatchNorm momentum.
    bn_epsilon: BatchNorm epsilon.
    affine: BatchNorm learns scale and bias.

  Example:
    >>> import jax, jax.numpy as jnp
    >>> from jaxmutate.ops._common import ConvBN
    >>> block = ConvBN(features=4, kernel_size=3, depthwise=True, act="relu")
    >>> variables = block.init(jax.random.key(0), jnp.ones((1, 6, 6, 4)))
    >>> block.apply(variables, jnp.ones((1, 6, 6, 4))).shape
    (1, 6, 6, 4)
  """

  features: int
  kernel_size: int = 1
  stride: int = 1
  dilation: int = 1
  depthwise: bool = False
  act: str | None = None
  implementation: str | None = None
  bn_momentum: float = BN_MOMENTUM
  bn_epsilon: float = BN_EPSILON
  affine: bool = True

  @nn.compact
  def __call__(self, x: jax.Array, *, train: bool = False) -> jax.Array:
    """Applies conv, BN (batch stats iff ``train``) and the activation."""
    # PyTorch-style symmetric padding k//2 * d (MMRazor's ops), not lax SAME,
    # which pads asymmetrically at stride 2.
    pad = (self.kernel_size // 2) * self.dilation
    if self.depthwise:
      x = DepthwiseConv(
          kernel_size=self.kernel_size,
          strides=self.stride,
          dilation=self.dilation,
          padding=((pad, pad), (pad, pad)),
          implementation=self.implementation,
          name="conv",
      )(x)
    elif self.kernel_size == 1 and self.stride == 1:
      x = PointwiseConv(self.features, name="conv")(x)
    else:
      x = nn.Conv(
          self.features,
          (self.kernel_size, self.kernel_size),
          strides=self.stride,
          kernel_dilation=self.dilation,
          padding=((pad, pad), (pad, pad)),
          use_bias=False,
          name="conv",
      )(x)
    # BN with the ReLU fused in: fewer passes over the activation in train
    # mode (forward and backward) than nn.BatchNorm followed by nn.relu.
    relu = self.act == "relu"
    x = BatchNorm(
        use_running_average=not train,
        momentum=self.bn_momentum,
        epsilon=self.bn_epsilon,
        affine=self.affine,
        relu=relu,
        name="bn",
    )(x)
    if self.act is not None and not relu:
      x = _ACTIVATIONS[self.act](x)
    return x


@MODELS.register_module()
class Identity(nn.Module):
  """Returns its input (a search-space candidate, e.g. SPOS/DARTS skip).

  Attributes:
    in_channels: optional, for configs that pass it to every candidate; must
      equal ``out_channels`` when both are given.
    out_channels: optional, see ``in_channels``.
    stride: must be 1 (use ``DartsSkipConnect`` for a strided skip).

  Example:
    >>> import jax.numpy as jnp
    >>> from jaxmutate.ops import Identity
    >>> Identity().apply({}, jnp.ones((1, 4, 4, 2)), train=True).shape
    (1, 4, 4, 2)
  """

  in_channels: int | None = None
  out_channels: int | None = None
  stride: int = 1

  def __post_init__(self) -> None:
    if self.stride != 1:
      raise ValueError(
          f"Identity stride must be 1, got {self.stride!r}; use "
          "DartsSkipConnect for a strided skip connection."
      )
    if (
        self.in_channels is not None
        and self.out_channels is not None
        and self.in_channels != self.out_channels
    ):
      raise ValueError(
          f"Identity needs in_channels == out_channels, got "
          f"in_channels={self.in_channels}, out_channels={self.out_channels}."
      )
    super().__post_init__()

  def __call__(self, x: jax.Array, *, train: bool = False) -> jax.Array:
    """Returns ``x``; ``train`` is accepted for a uniform call signature."""
    del train
    return jnp.asarray(x)
