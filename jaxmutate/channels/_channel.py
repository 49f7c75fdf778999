"""Channels of layers related to a unit, and MMRazor's unit names.

A unit's channels are slices ``[start, end)`` of layers' channel axes: the
output channels of the layers that produce them (``output_related``) and the
input channels of the layers that consume them (``input_related``). A unit is
named after its first related channel, output-related first, as MMRazor does:
``f"{layer path}_({start}, {end})_{num_channels}"``.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any, NamedTuple

from jaxmutate.errors import ConfigKeyError, ConfigTypeError, SearchSpaceError

__all__ = ["Channel", "UnitChannels", "channel_unit_name"]

# MMRazor's name for a unit without any related channel.
_NO_CHANNEL_NAME = "unitx"


def channel_unit_name(path: str, start: int, end: int, num_channels: int) -> str:
  """MMRazor's unit name: ``f"{path}_({start}, {end})_{num_channels}"``.

  Args:
    path: the Flax module path of the unit's first related layer, joined with ``.``.
    start: the first channel of the unit in that layer.
    end: one past its last channel.
    num_channels: the unit's number of channels.

  Example:
    >>> from jaxmutate.channels import channel_unit_name
    >>> channel_unit_name("backbone.conv1.conv", 0, 48, 48)
    'backbone.conv1.conv_(0, 48)_48'
  """
  return f"{path}_({int(start)}, {int(end)})_{int(num_channels)}"


class Channel(NamedTuple):
  """A slice ``[start, end)`` of one layer's channel axis.

  Attributes:
    path: the layer's Flax module path, joined with ``.``.
    start: the first channel.
    end: one past the last channel.

  Example:
    >>> from jaxmutate.channels import Channel
    >>> channel = Channel("backbone.conv1", 0, 16)
    >>> channel.num_channels, channel.config_template(is_output_channel=True)
    (16, {'name': 'backbone.conv1', 'start': 0, 'end': 16, 'is_output_channel': True})
    >>> Channel.from_config({"name": "head.fc"}, num_channels=16)
    Channel(path='head.fc', start=0, end=16)
  """

  path: str
  start: int
  end: int

  @property
  def num_channels(self) -> int:
    """``end - start``."""
    return self.end - self.start

  @property
  def index(self) -> tuple[int, int]:
    """``(start, end)``, as MMRazor's ``Channel.index``."""
    return (self.start, self.end)

  def config_template(self, is_output_channel: bool) -> dict[str, Any]:
    """MMRazor's channel entry: ``{name, start, end, is_output_channel}``."""
    return {"name": self.path, "start": self.start, "end": self.end, "is_output_channel": bool(is_output_channel)}

  @classmethod
  def from_config(cls, config: Mapping[str, Any], num_channels: int | None = None) -> Channel:
    """Reads a channel entry; ``start`` defaults to 0 and ``end`` to ``num_channels`` (MMRazor).

    Other keys (``is_output_channel``, ``expand_ratio``) are accepted and ignored.

    Raises:
      ConfigTypeError: not a mapping, or a name or bound of the wrong type.
      ConfigKeyError: no ``name``, or no ``end`` and no ``num_channels``.
      SearchSpaceError: ``start >= end`` or ``start < 0``.
    """
    if not isinstance(config, Mapping):
      raise ConfigTypeError(f"A channel entry must be a mapping with 'name', 'start', 'end', got {config!r}.")
    if "name" not in config:
      raise ConfigKeyError(f"A channel entry needs a 'name' (the layer's path), got {dict(config)!r}.")
    path = config["name"]
    start = config.get("start", 0)
    if "end" not in config and num_channels is None:
      raise ConfigKeyError(f"Channel entry {path!r} has no 'end' and the unit's num_channels is unknown.")
    end = config.get("end", num_channels)
    return cls.checked(path, start, end)

  @classmethod
  def checked(cls, path: Any, start: Any, end: Any) -> Channel:
    """A channel with its fields checked: a str path and ints ``0 <= start < end``.

    Example:
      >>> from jaxmutate.channels import Channel
      >>> Channel.checked("conv", 0, 8)
      Channel(path='conv', start=0, end=8)
    """
    if not isinstance(path, str):
      raise ConfigTypeError(f"A channel's path must be a str (a Flax module path), got {path!r}.")
    for bound in (start, end):
      if isinstance(bound, bool) or not isinstance(bound, int):
        raise ConfigTypeError(f"Channel {path!r}: start and end must be ints, got start={start!r}, end={end!r}.")
    if not 0 <= start < end:
      raise SearchSpaceError(f"Channel {path!r}: needs 0 <= start < end, got start={start}, end={end}.")
    return cls(path, int(start), int(end))


class UnitChannels(NamedTuple):
  """The channels related to one unit: what its producing and consuming layers share.

  Attributes:
    output_related: output-channel slices of the layers that produce the unit.
    input_related: input-channel slices of the layers that consume it.

  Example:
    >>> from jaxmutate.channels import Channel, UnitChannels
    >>> channels = UnitChannels((Channel("conv1", 0, 8),), (Channel("bn1", 0, 8), Channel("conv2", 0, 8)))
    >>> channels.unit_name(8)
    'conv1_(0, 8)_8'
    >>> UnitChannels.from_config(channels.config_template(), 8) == channels
    True
  """

  output_related: tuple[Channel, ...] = ()
  input_related: tuple[Channel, ...] = ()

  def unit_name(self, num_channels: int) -> str:
    """MMRazor's name: after the first output-related channel, else the first input-related one."""
    related = list(self.output_related) + list(self.input_related)
    if not related:
      return f"{_NO_CHANNEL_NAME}_{int(num_channels)}"
    first = related[0]
    return channel_unit_name(first.path, first.start, first.end, num_channels)

  def check(self, num_channels: int, unit: str = "") -> UnitChannels:
    """Checks that every slice spans the unit's width or a multiple of it (MMRazor's expanded channels).

    Raises:
      SearchSpaceError: a slice of another width, naming the unit and the layer.

    Example:
      >>> from jaxmutate.channels import Channel, UnitChannels
      >>> UnitChannels((Channel("conv1", 0, 8),), (Channel("fc", 0, 32),)).check(8).input_related[0].num_channels
      32
    """
    for side, channels in (("output_related", self.output_related), ("input_related", self.input_related)):
      for channel in channels:
        width = channel.num_channels
        if width != num_channels and (width < num_channels or width % num_channels):
          raise SearchSpaceError(
            f"Channel unit {unit or self.unit_name(num_channels)!r}: {side} layer {channel.path!r} spans "
            f"{width} channels ({channel.start}..{channel.end}), but the unit has {num_channels}; layers coupled "
            "in one unit must have its width (or a multiple of it)."
          )
    return self

  def config_template(self) -> dict[str, list[dict[str, Any]]]:
    """MMRazor's ``channels`` entry: ``{"input_related": [...], "output_related": [...]}``."""
    return {
      "input_related": [c.config_template(is_output_channel=False) for c in self.input_related],
      "output_related": [c.config_template(is_output_channel=True) for c in self.output_related],
    }

  @classmethod
  def from_config(cls, config: Mapping[str, Any], num_channels: int | None = None) -> UnitChannels:
    """Reads MMRazor's ``channels`` entry (either list may be missing).

    Raises:
      ConfigTypeError: not a mapping of lists of channel entries.
      ConfigKeyError: an unknown key beside ``input_related``/``output_related``.
    """
    if not isinstance(config, Mapping):
      raise ConfigTypeError(f"A unit's 'channels' must be a mapping of input_related/output_related, got {config!r}.")
    unknown = sorted(set(config) - {"input_related", "output_related"})
    if unknown:
      raise ConfigKeyError(f"A unit's 'channels' has unknown keys {unknown}; expected input_related, output_related.")
    sides = []
    for side in ("output_related", "input_related"):
      entries = config.get(side, ())
      if isinstance(entries, (str, bytes)) or not isinstance(entries, Sequence):
        raise ConfigTypeError(f"'channels.{side}' must be a list of channel entries, got {entries!r}.")
      sides.append(tuple(Channel.from_config(entry, num_channels) for entry in entries))
    return cls(*sides)
