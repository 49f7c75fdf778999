"""An ordinary Flax CNN with nothing searchable in it: what structured pruning starts from.

``PlainCNN`` uses only ``nn.Conv``, ``nn.BatchNorm`` and ``nn.Dense``; the
pruning runner finds its channel units with :func:`jaxmutate.analysis.analyze_channels`
and exports it at its new widths by ``clone(features=...)``.
"""

from __future__ import annotations

from collections.abc import Sequence

import flax.linen as nn
import jax

from jaxmutate.errors import ConfigError
from jaxmutate.registry import MODELS

__all__ = ["PlainCNN"]


@MODELS.register_module()
class PlainCNN(nn.Module):
  """An ordinary Flax CNN (``conv -> BatchNorm -> relu`` blocks, global pooling, a classifier): nothing searchable.

  Attributes:
    features: output channels of each block.
    strides: stride of each block.
    num_classes: classifier outputs.

  Example:
    >>> import jax, jax.numpy as jnp
    >>> from jaxmutate.models import PlainCNN
    >>> net = PlainCNN(features=(4, 8), strides=(1, 2), num_classes=3)
    >>> variables = net.init(jax.random.key(0), jnp.ones((1, 8, 8, 1)))
    >>> net.apply(variables, jnp.ones((2, 8, 8, 1))).shape
    (2, 3)
  """

  features: Sequence[int] = (16, 32, 64)
  strides: Sequence[int] = (1, 2, 2)
  num_classes: int = 10

  @nn.compact
  def __call__(self, x: jax.Array, train: bool = False) -> jax.Array:
    if len(self.features) != len(self.strides):
      raise ConfigError(f"PlainCNN: {len(self.features)} features but {len(self.strides)} strides (one per block).")
    for i, (features, stride) in enumerate(zip(self.features, self.strides)):
      x = nn.Conv(int(features), (3, 3), strides=int(stride), use_bias=False, name=f"conv{i}")(x)
      x = nn.BatchNorm(use_running_average=not train, momentum=0.9, epsilon=1e-5, name=f"bn{i}")(x)
      x = nn.relu(x)
    return nn.Dense(self.num_classes, name="fc")(x.mean((1, 2)))
