"""Dynamic layers: conv, dense and norm layers whose kept widths are inputs.

A width is the number of kept channels (a prefix of the channels, or the
first entries of a :class:`Width`'s ``order``). Every layer takes its widths as
call arguments (a :class:`Width`, a Python int or an int32 scalar array),
ignores input channels beyond the kept ones and returns the full static shape
with exact zeros beyond the kept output channels, so the next layer can rely
on it. A concrete width traces to exactly the statically sliced flax layer; a
traced width (``jit``/``vmap``/``grad``, one compile for every width) runs the
layer sliced to the next of a few bucket widths and masks the rest, so that a
narrow subnet costs less than the full width (see :func:`bucket_widths`).

Besides computing, the layers report what they are:

- at ``init``, a layer given a width that names a channel unit records a
  :class:`LayerChannels` (which units its axes follow) in the ``mutables``
  collection, which channel mutators read;
- with the ``costs`` collection mutable, each layer sows its MACs and
  parameters at the kept widths as float32 scalars (jittable, traced or
  concrete): :func:`dynamic_costs` sums them;
- in :func:`static_mode` a layer is the plain static layer of its kept
  widths, and with :data:`SLICES_COLLECTION` mutable it records its variables
  cut to those widths (:class:`LayerSlices`): together they make
  :func:`jaxmutate.export.export_subnet`'s smaller network with real weights.

Example:
  >>> import jax, jax.numpy as jnp, flax.linen as nn
  >>> from jaxmutate import dynamic
  >>> class Net(nn.Module):
  ...   @nn.compact
  ...   def __call__(self, x, w):
  ...     x = dynamic.DynamicConv(16, 3, use_bias=False)(x, out_width=w)
  ...     x = nn.relu(dynamic.DynamicBatchNorm(use_running_average=True)(x, w))
  ...     return dynamic.DynamicDense(10)(x.mean((1, 2)), in_width=w)
  >>> net, x = Net(), jnp.ones((2, 8, 8, 3))
  >>> unit = lambda v: dynamic.Width(v, 16, candidates=(4, 8, 16), unit="conv_(0, 16)_16")
  >>> variables = net.init(jax.random.key(0), x, unit(16))
  >>> logits = jax.jit(jax.vmap(lambda v: net.apply(variables, x, unit(v))))(jnp.array([4, 8, 16]))
  >>> logits.shape
  (3, 2, 10)
"""

from jaxmutate.dynamic._conv import DynamicConv as DynamicConv
from jaxmutate.dynamic._conv import DynamicDepthwiseConv as DynamicDepthwiseConv
from jaxmutate.dynamic._costs import COSTS_COLLECTION as COSTS_COLLECTION
from jaxmutate.dynamic._costs import dynamic_costs as dynamic_costs
from jaxmutate.dynamic._costs import sum_costs as sum_costs
from jaxmutate.dynamic._dense import DynamicDense as DynamicDense
from jaxmutate.dynamic._dispatch import DEFAULT_MAX_BUCKETS as DEFAULT_MAX_BUCKETS
from jaxmutate.dynamic._dispatch import bucket_widths as bucket_widths
from jaxmutate.dynamic._norm import DynamicBatchNorm as DynamicBatchNorm
from jaxmutate.dynamic._norm import DynamicLayerNorm as DynamicLayerNorm
from jaxmutate.dynamic._norm import SwitchableBatchNorm as SwitchableBatchNorm
from jaxmutate.dynamic._record import CHANNELS_KEY as CHANNELS_KEY
from jaxmutate.dynamic._record import LayerChannels as LayerChannels
from jaxmutate.dynamic._record import width_spans as width_spans
from jaxmutate.dynamic._static import SLICES_COLLECTION as SLICES_COLLECTION
from jaxmutate.dynamic._static import LayerSlices as LayerSlices
from jaxmutate.dynamic._static import full_channels as full_channels
from jaxmutate.dynamic._static import is_static_mode as is_static_mode
from jaxmutate.dynamic._static import static_mode as static_mode
from jaxmutate.dynamic._width import Width as Width
from jaxmutate.dynamic._width import WidthLike as WidthLike
from jaxmutate.dynamic._width import as_width as as_width

__all__ = [
  "CHANNELS_KEY",
  "COSTS_COLLECTION",
  "DEFAULT_MAX_BUCKETS",
  "DynamicBatchNorm",
  "DynamicConv",
  "DynamicDense",
  "DynamicDepthwiseConv",
  "DynamicLayerNorm",
  "LayerChannels",
  "LayerSlices",
  "SLICES_COLLECTION",
  "SwitchableBatchNorm",
  "Width",
  "WidthLike",
  "as_width",
  "bucket_widths",
  "dynamic_costs",
  "full_channels",
  "is_static_mode",
  "static_mode",
  "sum_costs",
  "width_spans",
]
