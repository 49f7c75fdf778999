"""What a dynamic layer records at ``init``: which units' channels its axes carry.

A channel unit does not know its layers; the layers know their widths. At
``init`` every dynamic layer given a width that names its unit(s) writes a
:class:`LayerChannels` into the ``mutables`` collection under its own path
(key ``"channels"``). Channel mutators read these records to give each unit
its related channels, ``(layer path, start, end)`` (MMRazor's
``output_related`` / ``input_related``) and MMRazor's unit names.
"""

from __future__ import annotations

from typing import Any

from flax import struct

from jaxmutate.dynamic._width import Width
from jaxmutate.mutables import MUTABLES_COLLECTION, next_definition_order

__all__ = ["CHANNELS_KEY", "LayerChannels", "Span", "width_spans"]

CHANNELS_KEY = "channels"
"""The key under a layer's path in the ``mutables`` collection."""

Span = tuple[str, int, int]
"""``(unit name, start, end)``: channels ``[start, end)`` of a layer's axis that follow that unit."""


@struct.dataclass
class LayerChannels:
  """The units whose channels one dynamic layer's output and input axes carry (static, no arrays).

  Attributes:
    path: the layer's Flax module path joined with ``.``.
    layer_type: the layer's class name, e.g. ``"DynamicConv"``.
    output: spans of the output channel axis; a norm lists its one axis here
      and in ``input`` (MMRazor relates a norm on both sides).
    input: spans of the input channel axis.
    order: the layer's position in definition order (shared with the
      mutables' specs), so a unit is named after its first layer even when a
      jitted ``init`` returns the variables sorted by key.

  A span covers the unit's channels, or a multiple of them when a width was
  expanded (``unit * 2``: one span ``(unit, 0, 2 * n)``). Concatenated widths
  give one span per part.

  Example:
    >>> from jaxmutate.dynamic import LayerChannels
    >>> record = LayerChannels("conv2", "DynamicConv", output=(("u2", 0, 16),), input=(("u1", 0, 8),))
    >>> record.units
    ('u2', 'u1')
  """

  path: str = struct.field(pytree_node=False)
  layer_type: str = struct.field(pytree_node=False)
  output: tuple[Span, ...] = struct.field(pytree_node=False, default=())
  input: tuple[Span, ...] = struct.field(pytree_node=False, default=())
  order: int = struct.field(pytree_node=False, default=0)

  @property
  def units(self) -> tuple[str, ...]:
    """The units named by the spans, output side first, without repeats."""
    names: list[str] = []
    for unit, _, _ in self.output + self.input:
      if unit not in names:
        names.append(unit)
    return tuple(names)


def width_spans(width: Any, num_channels: int) -> tuple[Span, ...]:
  """The spans of one axis of ``num_channels`` channels that follow the units of ``width``.

  - a :class:`Width` naming its unit (a unit's own width, or a
    :class:`~jaxmutate.channels.MutableWidth` of one source):
    ``((unit, 0, num_channels),)``;
  - a concatenation (a :class:`~jaxmutate.channels.DerivedMutable` with
    ``derivation="concat"``): its ``spans``, one per part, already in the
    layer's channel coordinates;
  - any other derived width (expand, divide, product with a value, same): one
    span of its first source (the channel unit; value mutables come after it);
  - a width that names no unit (``None``, an int, an array, a ``Width``
    without ``unit``): no span.

  The width's classes are read by their fields (``sources``, ``derivation``,
  ``spans``), so this layer needs no import of :mod:`jaxmutate.channels`.

  Example:
    >>> from jaxmutate.dynamic import Width, width_spans
    >>> width_spans(Width(4, 8, unit="conv1_(0, 8)_8"), 8)
    (('conv1_(0, 8)_8', 0, 8),)
    >>> width_spans(4, 8), width_spans(Width(4, 8), 8)
    ((), ())
  """
  if not isinstance(width, Width):
    return ()
  derivation = getattr(width, "derivation", None)
  if derivation == "concat":
    return tuple((str(unit), int(start), int(end)) for unit, start, end in getattr(width, "spans", ()) if unit)
  sources = tuple(getattr(width, "sources", ()) or ())
  if derivation is not None and sources:
    return ((str(sources[0]), 0, int(num_channels)),)
  if width.unit:
    return ((str(width.unit), 0, int(num_channels)),)
  if sources:
    return ((str(sources[0]), 0, int(num_channels)),)
  return ()


def record_channels(module: Any, output: tuple[Span, ...], input: tuple[Span, ...]) -> None:
  """Writes the layer's :class:`LayerChannels` at ``init`` (once: a layer called twice keeps its first record).

  Nothing is written when no span names a unit, outside ``init``, or when
  the ``mutables`` collection is not mutable.
  """
  if not (output or input) or not module.is_initializing():
    return
  if not module.is_mutable_collection(MUTABLES_COLLECTION) or module.has_variable(MUTABLES_COLLECTION, CHANNELS_KEY):
    return
  path = ".".join(str(p) for p in module.scope.path)
  record = LayerChannels(
    path, type(module).__name__, output=tuple(output), input=tuple(input), order=next_definition_order(module.scope)
  )
  module.put_variable(MUTABLES_COLLECTION, CHANNELS_KEY, record)
