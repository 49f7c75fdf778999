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

from jaxmutate.ops._common import Identity
from jaxmutate.ops._common import batch_norm
from jaxmutate.ops._darts import DartsDilConv
from jaxmutate.ops._darts import DartsPoolBN
from jaxmutate.ops._darts import DartsSepConv
from jaxmutate.ops._darts import DartsSkipConnect
from jaxmutate.ops._darts import DartsZero
from jaxmutate.ops._depthwise import DepthwiseConv
from jaxmutate.ops._depthwise import default_implementation
from jaxmutate.ops._depthwise import depthwise_conv
from jaxmutate.ops._mobilenet import InvertedResidual
from jaxmutate.ops._shufflenet import ShuffleBlock
from jaxmutate.ops._shufflenet import ShuffleXception
from jaxmutate.ops._shufflenet import channel_shuffle

__all__ = [
    "DartsDilConv",
    "DartsPoolBN",
    "DartsSepConv",
    "DartsSkipConnect",
    "DartsZero",
    "DepthwiseConv",
    "Identity",
    "InvertedResidual",
    "ShuffleBlock",
    "ShuffleXception",
    "batch_norm",
    "channel_shuffle",
    "default_implementation",
    "depthwise_conv",
]
