"""BatchNorm for the searchable blocks, with a deferred form that saves memory.

``BatchNorm`` matches ``flax.linen.BatchNorm`` (variables, defaults, running
average update, outputs and gradients up to float32 round-off); with
``defer=True`` it returns a :class:`~jaxmutate.ops.DeferredNorm` for the next
conv to consume (see :mod:`jaxmutate.ops._deferred`).
"""

from __future__ import annotations

import flax.linen as nn
import jax
import jax.numpy as jnp
from jax import lax

from jaxmutate.ops._deferred import DeferredNorm, check_activation

# PyTorch's BatchNorm2d defaults (momentum 0.1 of the new value = flax 0.9 of
# the old, eps 1e-5), so ports of MMRazor configs train the same way.
BN_MOMENTUM = 0.9
BN_EPSILON = 1e-5


def batch_moments(x: jax.Array) -> tuple[jax.Array, jax.Array]:
  """Mean and biased variance over all axes but the last, in one pass.

  ``E[x²] − E[x]²`` clipped at zero, as flax's ``BatchNorm`` with its default
  ``use_fast_variance=True``.

  Args:
    x: (..., C) float array.

  Returns:
    ``(mean, var)``, each of shape (C,).

  Example:
    >>> import jax.numpy as jnp
    >>> from jaxmutate.ops import batch_moments
    >>> mean, var = batch_moments(jnp.arange(8.0).reshape(4, 2))
    >>> mean.tolist(), var.tolist()
    ([3.0, 4.0], [5.0, 5.0])
  """
  flat = x.reshape(-1, x.shape[-1])
  count = flat.shape[0]
  mean = jnp.sum(flat, axis=0) / count
  mean_of_squares = jnp.sum(flat * flat, axis=0) / count
  return mean, jnp.maximum(mean_of_squares - mean * mean, 0.0)


class BatchNorm(nn.Module):
  """``nn.BatchNorm`` over the last axis with a fused activation.

  Same variables as ``flax.linen.BatchNorm`` (params ``scale``/``bias`` when
  ``affine``; batch_stats ``mean``/``var``), the same running-average update
  (``momentum * old + (1 - momentum) * batch``, biased batch variance, no
  update while initialising) and the same outputs and gradients up to float32
  round-off. Called with ``defer=True`` it returns a :class:`DeferredNorm`
  for the next op to consume; either way, in training mode the backward pass
  keeps only the input (the activation's mask is recomputed). Inference mode
  (``use_running_average``) computes plainly, so forward-mode AD works there.

  Attributes:
    use_running_average: normalise with the running statistics (eval).
    momentum: running-average momentum.
    epsilon: added to the variance.
    affine: learn ``scale`` and ``bias``.
    activation: ``None``, ``"relu"`` or ``"relu6"``, applied after the
      affine map.

  Example:
    >>> import jax, jax.numpy as jnp
    >>> from jaxmutate.ops import BatchNorm
    >>> bn = BatchNorm(use_running_average=False, activation="relu")
    >>> x = jnp.arange(8.0).reshape(2, 1, 1, 4)
    >>> variables = bn.init(jax.random.key(0), x)
    >>> y, updates = bn.apply(variables, x, mutable=["batch_stats"])
    >>> y[:, 0, 0].round(3).tolist()
    [[0.0, 0.0, 0.0, 0.0], [1.0, 1.0, 1.0, 1.0]]
    >>> [round(m, 3) for m in updates["batch_stats"]["mean"].tolist()]
    [0.2, 0.3, 0.4, 0.5]
  """

  use_running_average: bool = False
  momentum: float = BN_MOMENTUM
  epsilon: float = BN_EPSILON
  affine: bool = True
  activation: str | None = None

  def __post_init__(self) -> None:
    check_activation(self.activation, "BatchNorm")
    super().__post_init__()

  @nn.compact
  def __call__(self, x: jax.Array, *, defer: bool = False) -> jax.Array | DeferredNorm:
    """Normalises (..., C) ``x``; updates the running statistics in train mode.

    Args:
      x: (..., C) input.
      defer: return a :class:`DeferredNorm` instead of the activation.

    Returns:
      ``act(BN(x))``, or its deferred form.
    """
    channels = x.shape[-1]
    x = jnp.asarray(x, jnp.promote_types(x.dtype, jnp.float32))
    running_mean = self.variable("batch_stats", "mean", lambda s: jnp.zeros(s, jnp.float32), (channels,))
    running_var = self.variable("batch_stats", "var", lambda s: jnp.ones(s, jnp.float32), (channels,))
    if self.affine:
      scale = self.param("scale", nn.initializers.ones, (channels,), jnp.float32)
      bias = self.param("bias", nn.initializers.zeros, (channels,), jnp.float32)
    else:
      scale = jnp.ones((channels,), jnp.float32)
      bias = jnp.zeros((channels,), jnp.float32)
    if self.use_running_average:
      mean, var = running_mean.value, running_var.value
    else:
      mean, var = batch_moments(x)
      if not self.is_initializing():
        keep = self.momentum
        running_mean.value = keep * running_mean.value + (1 - keep) * mean
        running_var.value = keep * running_var.value + (1 - keep) * var
    multiplier = scale * lax.rsqrt(var + self.epsilon)
    deferred = DeferredNorm(
      x,
      multiplier,
      bias - mean * multiplier,
      self.activation,
      rematerialize=not self.use_running_average,
    )
    return deferred if defer else deferred.materialize()
