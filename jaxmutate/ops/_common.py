"""Pieces shared by the searchable-space blocks: Identity and conv-BN-act."""

from __future__ import annotations

from typing import Any

import flax.linen as nn
import jax
import jax.numpy as jnp
from jax import lax

from jaxmutate.errors import ConfigError, ConfigTypeError
from jaxmutate.ops._batch_norm import BN_EPSILON, BN_MOMENTUM, BatchNorm
from jaxmutate.ops._deferred import DeferredNorm, apply_to_input, as_array, check_activation
from jaxmutate.ops._depthwise import DepthwiseConv
from jaxmutate.registry import MODELS


def check_positive_int(value: Any, name: str, owner: str) -> None:
  """Raises unless ``value`` is an int >= 1 (``owner`` names the module)."""
  if isinstance(value, bool) or not isinstance(value, int):
    raise ConfigTypeError(f"{owner} {name} must be an int, got {value!r}.")
  if value < 1:
    raise ConfigError(f"{owner} {name} must be >= 1, got {value!r}.")


def check_choice(value: Any, name: str, owner: str, allowed: tuple[Any, ...]) -> None:
  """Raises ``ValueError`` unless ``value`` is one of ``allowed``."""
  if isinstance(value, bool) or value not in allowed:
    raise ConfigError(f"{owner} {name} must be one of {allowed}, got {value!r}.")


def batch_norm(
  train: bool,
  momentum: float = BN_MOMENTUM,
  epsilon: float = BN_EPSILON,
  affine: bool = True,
  name: str | None = None,
) -> nn.BatchNorm:
  """``nn.BatchNorm`` with PyTorch-like defaults; batch statistics iff ``train``.

  Must be called inside a compact method.

  Example:
    >>> import jax, jax.numpy as jnp, flax.linen as nn
    >>> from jaxmutate.ops import batch_norm
    >>> class Net(nn.Module):
    ...   @nn.compact
    ...   def __call__(self, x, train=False):
    ...     return batch_norm(train)(x)
    >>> variables = Net().init(jax.random.key(0), jnp.ones((2, 3)))
    >>> sorted(variables), variables["batch_stats"]["BatchNorm_0"]["mean"].shape
    (['batch_stats', 'params'], (3,))
  """
  return nn.BatchNorm(
    use_running_average=not train,
    momentum=momentum,
    epsilon=epsilon,
    use_scale=affine,
    use_bias=affine,
    name=name,
  )


def _pointwise(x: jax.Array, kernel: jax.Array) -> jax.Array:
  """(..., Cin) @ (Cin, Cout) as one 2-d matmul."""
  flat = lax.dot_general(x.reshape(-1, x.shape[-1]), kernel, (((1,), (0,)), ((), ())))
  return flat.reshape(*x.shape[:-1], kernel.shape[-1])


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
    >>> from jaxmutate.ops import PointwiseConv
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
  def __call__(self, x: jax.Array | DeferredNorm) -> jax.Array:
    """Applies the 1x1 conv to (..., Cin) ``x``.

    A :class:`~jaxmutate.ops._batch_norm.DeferredNorm` input is normalised
    inside the conv's rematerialised op (only its pre-normalisation values
    are kept for the backward pass).
    """
    channels = x.shape[-1]
    kernel = self.param(
      "kernel",
      self.kernel_init,
      (1, 1, channels, self.features),
      self.param_dtype,
    )
    return apply_to_input(x, _pointwise, kernel[0, 0], dtype=self.dtype)


class ConvBN(nn.Module):
  """Conv (dense 1x1/kxk or depthwise, no bias) → BatchNorm → optional act.

  MMCV's ``ConvModule`` with ``norm_cfg=dict(type="BN")``. Submodules are
  named ``conv`` and ``bn``. Chains of these save memory: called with
  ``defer=True`` a ConvBN returns a
  :class:`~jaxmutate.ops._batch_norm.DeferredNorm`, and the next ConvBN with
  a depthwise or 1x1 conv normalises it inside its conv, so the backward pass
  keeps one activation per layer (the conv output) instead of two. Values and
  gradients are those of the plain chain.

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
    >>> from jaxmutate.ops import ConvBN
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

  def __post_init__(self) -> None:
    check_activation(self.act, "ConvBN")
    super().__post_init__()

  @nn.compact
  def __call__(
    self,
    x: jax.Array | DeferredNorm,
    *,
    train: bool = False,
    defer: bool = False,
  ) -> jax.Array | DeferredNorm:
    """Applies conv, BN (batch stats iff ``train``) and the activation.

    Args:
      x: NHWC input, or the deferred output of a previous ``ConvBN``.
      train: normalise with batch statistics (and update the running ones).
      defer: return a ``DeferredNorm`` for the next ``ConvBN`` to consume.

    Returns:
      The activation, or its deferred form.
    """
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
      )(as_array(x))
    return BatchNorm(
      use_running_average=not train,
      momentum=self.bn_momentum,
      epsilon=self.bn_epsilon,
      affine=self.affine,
      activation=self.act,
      name="bn",
    )(x, defer=defer)


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
      raise ConfigError(
        f"Identity stride must be 1, got {self.stride!r}; use DartsSkipConnect for a strided skip connection."
      )
    if self.in_channels is not None and self.out_channels is not None and self.in_channels != self.out_channels:
      raise ConfigError(
        f"Identity needs in_channels == out_channels, got "
        f"in_channels={self.in_channels}, out_channels={self.out_channels}."
      )
    super().__post_init__()

  def __call__(self, x: jax.Array, *, train: bool = False) -> jax.Array:
    """Returns ``x``; ``train`` is accepted for a uniform call signature."""
    del train
    return jnp.asarray(x)
