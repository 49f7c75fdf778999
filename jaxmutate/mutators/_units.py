"""Channel units as mutators see them: their related channels and MMRazor's names.

A unit does not know its layers; the dynamic layers record, at ``init``, which
units their axes follow (:class:`~jaxmutate.dynamic.LayerChannels` in the
``mutables`` collection). These functions turn those records into each
unit's ``output_related`` / ``input_related`` channels and its MMRazor name,
``f"{first output-related layer}_({start}, {end})_{num_channels}"``.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any, NamedTuple

from jaxmutate.channels import Channel, ChannelSpace, MutableChannelUnit, UnitChannels
from jaxmutate.dynamic import LayerChannels
from jaxmutate.mutables import MUTABLES_COLLECTION, MutableSpec


def collect_layer_channels(variables: Mapping[str, Any]) -> list[LayerChannels]:
  """Every dynamic layer's record of related channels, in the order the layers were defined."""
  found: list[LayerChannels] = []

  def walk(node: Any) -> None:
    if isinstance(node, LayerChannels):
      found.append(node)
    elif isinstance(node, Mapping):
      for value in node.values():
        walk(value)

  walk(variables.get(MUTABLES_COLLECTION, {}))
  found.sort(key=lambda record: record.order)
  return found


def is_channel_unit(spec: MutableSpec) -> bool:
  """Whether a spec is a channel unit's."""
  return isinstance(spec.mutable_type, type) and issubclass(spec.mutable_type, MutableChannelUnit)


def relate_units(specs: Sequence[tuple[str, MutableSpec]], records: Sequence[LayerChannels]) -> dict[str, UnitChannels]:
  """``{unit mutable name: its related channels}`` for the channel units among ``specs``.

  Spans naming something that is not one of these units (a hand-made
  :class:`~jaxmutate.dynamic.Width` with a label) are not channel relations
  and are skipped, and so are spans of widths derived by a division or a
  product that are not the unit's width or a multiple of it: such a layer
  follows the unit's choice but its channels are not the unit's channels
  (MMRazor relates only equal or expanded channels).
  """
  units = {name: spec for name, spec in specs if is_channel_unit(spec)}
  sides: dict[str, tuple[list[Channel], list[Channel]]] = {name: ([], []) for name in units}
  for record in records:
    for position, spans in enumerate((record.output, record.input)):
      for unit, start, end in spans:
        width = end - start
        if unit in sides and width % units[unit].space.num_channels == 0:
          channel = Channel(record.path, int(start), int(end))
          if channel not in sides[unit][position]:
            sides[unit][position].append(channel)
  related = {name: UnitChannels(tuple(output), tuple(input_)) for name, (output, input_) in sides.items()}
  return related


def unit_display_name(mutable_name: str, spec: MutableSpec, channels: UnitChannels) -> str:
  """MMRazor's unit name from its first related channel; the mutable name when no layer uses it."""
  if not channels.output_related and not channels.input_related:
    return mutable_name
  return channels.unit_name(spec.space.num_channels)


class ChannelUnitInfo(NamedTuple):
  """One channel unit of a prepared mutator: what MMRazor's ``mutator.units`` lists.

  Attributes:
    name: MMRazor's unit name (subnet files and ``config_template`` use it,
      unless the unit has an alias).
    mutable_name: the unit's Flax module path: its key in ``choices``.
    unit_type: the unit's class.
    space: its :class:`~jaxmutate.channels.ChannelSpace`.
    alias: its alias, or ``None``.
    init_args: MMRazor's ``init_args``, plain Python.
    channels: its related channels (:class:`~jaxmutate.channels.UnitChannels`).

  Example:
    >>> import jax, jax.numpy as jnp, flax.linen as nn
    >>> import jaxmutate as jm
    >>> from jaxmutate import dynamic
    >>> from jaxmutate.channels import OneShotMutableChannelUnit
    >>> class Net(nn.Module):
    ...   @nn.compact
    ...   def __call__(self, x, choices):
    ...     w = OneShotMutableChannelUnit(8, (0.5, 1.0), name="unit")(choices)
    ...     x = dynamic.DynamicConv(8, 3, name="conv1")(x, out_width=w)
    ...     return dynamic.DynamicDense(2, name="fc")(x.mean((1, 2)), in_width=w)
    >>> variables = Net().init(jax.random.key(0), jnp.ones((1, 4, 4, 1)), None)
    >>> unit = jm.OneShotChannelMutator().prepare_from_supernet(variables).units[0]
    >>> unit.name, unit.mutable_name, unit.is_mutable
    ('conv1_(0, 8)_8', 'unit', True)
  """

  name: str
  mutable_name: str
  unit_type: type
  space: ChannelSpace
  alias: str | None
  init_args: dict[str, Any]
  channels: UnitChannels

  @property
  def is_mutable(self) -> bool:
    """MMRazor's rule: the unit has an output-related and an input-related layer (or no recorded layer at all)."""
    output, input_ = self.channels
    return bool(output) == bool(input_)

  @property
  def num_channels(self) -> int:
    """The unit's full width."""
    return self.space.num_channels


def units_as_fix_subnet(subnet: Mapping[str, Any]) -> Mapping[str, Any]:
  """Reads the ``units`` part of a channel mutator's ``config_template`` as a subnet file.

  Accepts a whole template (``{"type": ..., "channel_unit_cfg": {"units": ...}}``),
  its ``units`` mapping (``{unit name: {"choice": v, ...}}``), or an ordinary
  subnet (``{name: {"chosen": v}}``, returned unchanged).
  """
  if "channel_unit_cfg" in subnet and isinstance(subnet["channel_unit_cfg"], Mapping):
    subnet = subnet["channel_unit_cfg"].get("units", {})
    if not isinstance(subnet, Mapping):
      return subnet
  if subnet and all(
    isinstance(entry, Mapping) and "choice" in entry and "chosen" not in entry for entry in subnet.values()
  ):
    return {name: {"chosen": entry["choice"]} for name, entry in subnet.items()}
  return subnet
