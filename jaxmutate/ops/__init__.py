"""Operations of the searchable spaces: fast depthwise convs and NAS blocks.

``depthwise_conv``/``DepthwiseConv`` avoid XLA CPU's slow grouped conv; the
ShuffleNetV2 (SPOS), MobileNetV2 and DARTS blocks are built on them and are
registered in ``jaxmutate.registry.MODELS``.

Example:
  >>> import jax, jax.numpy as jnp
  >>> from jaxmutate import ops
  >>> block = ops.ShuffleBlock(in_channels=8, out_channels=8, kernel_size=3)
  >>> x = jnp.ones((1, 8, 8, 8))
  >>> block.apply(block.init(jax.random.key(0), x), x).shape
  (1, 8, 8, 8)
"""

from jaxmutate.ops._batch_norm import BatchNorm, batch_moments
from jaxmutate.ops._common import ConvBN, Identity, PointwiseConv, batch_norm
from jaxmutate.ops._darts import DartsDilConv, DartsPoolBN, DartsSepConv, DartsSkipConnect, DartsZero
from jaxmutate.ops._deferred import DeferredNorm, apply_to_input, as_array, rematerialized
from jaxmutate.ops._depthwise import DepthwiseConv, default_implementation, depthwise_conv
from jaxmutate.ops._mobilenet import InvertedResidual
from jaxmutate.ops._shufflenet import ShuffleBlock, ShuffleXception, channel_shuffle

__all__ = [
  "BatchNorm",
  "ConvBN",
  "DartsDilConv",
  "DartsPoolBN",
  "DartsSepConv",
  "DartsSkipConnect",
  "DartsZero",
  "DeferredNorm",
  "DepthwiseConv",
  "Identity",
  "InvertedResidual",
  "PointwiseConv",
  "ShuffleBlock",
  "ShuffleXception",
  "apply_to_input",
  "as_array",
  "batch_moments",
  "batch_norm",
  "channel_shuffle",
  "default_implementation",
  "depthwise_conv",
  "rematerialized",
]
