"""Channel pruning and width search: mutable channel units, derived widths, ``make_divisible``.

MMRazor's ``mutable_channel`` package, adapted to pure functions. A channel
unit (:class:`OneShotMutableChannelUnit`, :class:`SequentialMutableChannelUnit`,
:class:`SlimmableChannelUnit`, :class:`L1MutableChannelUnit`) is a mutable:
called ``unit(choices)`` in a supernet it returns the kept width, a
:class:`MutableWidth` that every layer of :mod:`jaxmutate.dynamic` takes.
Widths derive other widths with MMRazor's numbers (:func:`expand`,
:func:`divide`, :func:`concat`, :func:`same`, the live :func:`product` with a
value mutable). Units record a :class:`ChannelSpace` in the ``mutables``
collection, so mutators group, sample and export them like every mutable.

Example:
  >>> import jax, jax.numpy as jnp, flax.linen as nn
  >>> from jaxmutate import dynamic
  >>> from jaxmutate.channels import OneShotMutableChannelUnit
  >>> class Net(nn.Module):
  ...   @nn.compact
  ...   def __call__(self, x, choices):
  ...     w = OneShotMutableChannelUnit(16, (0.25, 0.5, 1.0), name="unit1")(choices)
  ...     x = dynamic.DynamicConv(16, 3)(x, out_width=w)
  ...     x = dynamic.DynamicConv(32, 3)(x, in_width=w, out_width=w * 2)
  ...     return dynamic.DynamicDense(10)(x.mean((1, 2)), in_width=w * 2)
  >>> net, x = Net(), jnp.ones((2, 8, 8, 3))
  >>> variables = net.init(jax.random.key(0), x, None)
  >>> variables["mutables"]["unit1"]["spec"].space.describe()
  'ChannelSpace(num_channels=16, candidates=[4, 8, 16], ratio)'
  >>> logits = jax.jit(jax.vmap(lambda i: net.apply(variables, x, {"unit1": i})))(jnp.arange(3))
  >>> logits.shape
  (3, 2, 10)
"""

from jaxmutate.channels._channel import Channel as Channel
from jaxmutate.channels._channel import UnitChannels as UnitChannels
from jaxmutate.channels._channel import channel_unit_name as channel_unit_name
from jaxmutate.channels._derived import concat as concat
from jaxmutate.channels._derived import divide as divide
from jaxmutate.channels._derived import expand as expand
from jaxmutate.channels._derived import product as product
from jaxmutate.channels._derived import same as same
from jaxmutate.channels._divisible import make_divisible as make_divisible
from jaxmutate.channels._divisible import make_divisible_jnp as make_divisible_jnp
from jaxmutate.channels._space import CHOICE_MODES as CHOICE_MODES
from jaxmutate.channels._space import ChannelSpace as ChannelSpace
from jaxmutate.channels._space import normalize_candidates as normalize_candidates
from jaxmutate.channels._space import ratio_to_number as ratio_to_number
from jaxmutate.channels._units import L1MutableChannelUnit as L1MutableChannelUnit
from jaxmutate.channels._units import MutableChannelUnit as MutableChannelUnit
from jaxmutate.channels._units import OneShotMutableChannelUnit as OneShotMutableChannelUnit
from jaxmutate.channels._units import SequentialMutableChannelUnit as SequentialMutableChannelUnit
from jaxmutate.channels._units import SlimmableChannelUnit as SlimmableChannelUnit
from jaxmutate.channels._units import l1_channel_order as l1_channel_order
from jaxmutate.channels._units import slimmable_subnets as slimmable_subnets
from jaxmutate.channels._width import DerivedMutable as DerivedMutable
from jaxmutate.channels._width import MutableWidth as MutableWidth
from jaxmutate.channels._width import Value as Value

__all__ = [
  "CHOICE_MODES",
  "Channel",
  "ChannelSpace",
  "DerivedMutable",
  "L1MutableChannelUnit",
  "MutableChannelUnit",
  "MutableWidth",
  "OneShotMutableChannelUnit",
  "SequentialMutableChannelUnit",
  "SlimmableChannelUnit",
  "UnitChannels",
  "Value",
  "channel_unit_name",
  "concat",
  "divide",
  "expand",
  "make_divisible",
  "make_divisible_jnp",
  "normalize_candidates",
  "product",
  "ratio_to_number",
  "same",
  "slimmable_subnets",
]
