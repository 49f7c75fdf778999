"""What moves together when channels are pruned: slices of variable leaves grouped into units.

A :class:`ChannelGroup` is one prunable unit found in an unmodified model: a
number of channels and, for every variable leaf they touch, which positions of
which axis they occupy. Channel ``i`` of the unit is position
``slice.indices[i]`` along ``slice.axis`` of every slice, so concatenations
(an index range), channel shuffles (a permutation) and attention head splits
are all plain index lists.
"""

from __future__ import annotations

from typing import NamedTuple

__all__ = ["ChannelGroup", "ParamSlice"]

# What a slice is to its layer; pruning criteria pick the roles they read.
ROLES = ("output", "input", "norm", "bias", "other")


class ParamSlice(NamedTuple):
  """Positions ``indices`` along ``axis`` of the leaf ``variables[collection][path...]``.

  Attributes:
    collection: the variable collection, e.g. ``"params"`` or ``"batch_stats"``.
    path: the keys from the collection down to the leaf.
    axis: a non-negative axis of that leaf.
    indices: channel ``i`` of the unit is position ``indices[i]`` on ``axis``.
    role: ``"output"`` (a producing kernel's output axis), ``"input"`` (a
      consuming kernel's input axis), ``"norm"`` (norm scale or statistics),
      ``"bias"``, or ``"other"`` (positional embeddings, layer scales, ...).

  Example:
    >>> from jaxmutate.analysis import ParamSlice
    >>> s = ParamSlice("params", ("conv1", "kernel"), 3, (0, 1, 2, 3), "output")
    >>> s.is_contiguous, s.num_channels
    (True, 4)
  """

  collection: str
  path: tuple[str, ...]
  axis: int
  indices: tuple[int, ...]
  role: str

  @property
  def num_channels(self) -> int:
    """How many positions the slice covers."""
    return len(self.indices)

  @property
  def is_contiguous(self) -> bool:
    """Whether ``indices`` is one increasing range ``start, start + 1, ...``."""
    return all(b == a + 1 for a, b in zip(self.indices, self.indices[1:]))


class ChannelGroup(NamedTuple):
  """One prunable unit: ``num_channels`` channels and every slice that moves with them.

  Attributes:
    name: the unit's name (MMRazor's ``f"{path}_({start}, {end})_{n}"`` of its first output slice).
    num_channels: the unit's number of channels; every slice has that many indices.
    slices: the slices, output slices first.
    num_blocks: the channels are ``num_blocks`` equal consecutive blocks (groups of a
      grouped convolution, attention heads) and a width keeps the same positions in
      every block, so kept counts are multiples of ``num_blocks``.

  Example:
    >>> from jaxmutate.analysis import ChannelGroup, ParamSlice
    >>> out = ParamSlice("params", ("conv1", "kernel"), 3, (0, 1), "output")
    >>> nxt = ParamSlice("params", ("conv2", "kernel"), 2, (0, 1), "input")
    >>> ChannelGroup("conv1_(0, 2)_2", 2, (out, nxt)).num_blocks
    1
  """

  name: str
  num_channels: int
  slices: tuple[ParamSlice, ...]
  num_blocks: int = 1
