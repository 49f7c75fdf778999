"""Mutable channel units: Flax mutables whose choice is a layer width.

A unit is called ``unit(choices)`` in a supernet's compact method and returns
a :class:`~jaxmutate.channels.MutableWidth` (a :class:`~jaxmutate.dynamic.Width`)
for the dynamic layers that share its channels: the producing layers' output
width and the consuming layers' input width. Its choice is
``choices[unit.mutable_name]``; at ``init`` with ``choices=None`` it gives the
full width. The unit does not know its layers: the layers it is passed to
are its related channels (see :class:`~jaxmutate.channels.UnitChannels` for
MMRazor's names and config layout).

==================================  ==============================  ===================================
unit                                choice                          kept channels
==================================  ==============================  ===================================
:class:`SequentialMutableChannelUnit` int32 number of kept channels  a prefix, any ``1..n`` made divisible
:class:`OneShotMutableChannelUnit`  int32 index into candidates     a prefix, one of the candidates
:class:`SlimmableChannelUnit`       int32 index into candidates     a prefix; norms keep one set per width
:class:`L1MutableChannelUnit`       int32 number of kept channels   the top ones by mean ``|w|`` (``order``)
==================================  ==============================  ===================================
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any

import flax.linen as nn
import jax
import jax.numpy as jnp
import numpy as np

from jaxmutate.channels._channel import UnitChannels
from jaxmutate.channels._space import ChannelSpace, normalize_candidates
from jaxmutate.channels._width import MutableWidth
from jaxmutate.errors import ConfigKeyError, ConfigTypeError, SearchSpaceError
from jaxmutate.mutables import BaseMutable
from jaxmutate.registry import MODELS

__all__ = [
  "L1MutableChannelUnit",
  "MutableChannelUnit",
  "OneShotMutableChannelUnit",
  "SequentialMutableChannelUnit",
  "SlimmableChannelUnit",
  "l1_channel_order",
  "slimmable_subnets",
]


class MutableChannelUnit(BaseMutable):
  """Base of the channel units: a mutable whose choice is a width, returning a :class:`MutableWidth`.

  Subclasses define :meth:`_make_space` and :attr:`init_args`.

  Example:
    >>> from jaxmutate.channels import MutableChannelUnit, OneShotMutableChannelUnit
    >>> issubclass(OneShotMutableChannelUnit, MutableChannelUnit)
    True
  """

  def __post_init__(self) -> None:
    self._normalize_fields()
    # Building the space checks the arguments now, with the unit's name if it has one.
    self._make_space(self._label())
    super().__post_init__()

  def _normalize_fields(self) -> None:
    pass

  def _label(self) -> str:
    if self.scope is not None and self.scope.path:
      return self.mutable_name
    return self.name if isinstance(self.name, str) else type(self).__name__

  def _make_space(self, where: str) -> ChannelSpace:
    raise NotImplementedError

  @property
  def space(self) -> ChannelSpace:
    """The unit's :class:`~jaxmutate.channels.ChannelSpace`."""
    return self._make_space(self._label())

  @property
  def init_args(self) -> dict[str, Any]:
    """MMRazor's ``init_args``: the keyword arguments that rebuild this unit."""
    raise NotImplementedError

  def _spec_init_args(self) -> tuple[tuple[str, Any], ...]:
    return tuple((key, tuple(value) if isinstance(value, list) else value) for key, value in self.init_args.items())

  def _width(self, kept: Any, order: Any = None) -> MutableWidth:
    name = self.mutable_name
    space = self.space
    return MutableWidth(
      kept, space.num_channels, candidates=space.width_candidates, unit=name, order=order, sources=(name,)
    )

  def _kept(self, choices: Mapping[str, Any] | None) -> Any:
    self._record_spec()
    space = self.space
    if self.is_initializing() and choices is None:
      return space.kept_counts[-1]
    return space.kept(self._checked_choice(choices))

  @nn.compact
  def __call__(self, choices: Mapping[str, Any] | None = None) -> MutableWidth:
    """The kept width for ``choices`` (the full width at ``init`` without choices)."""
    return self._width(self._kept(choices))

  def config_template(
    self,
    with_init_args: bool = False,
    with_channels: bool = False,
    choice: Any = None,
    channels: UnitChannels | Mapping[str, Any] | None = None,
  ) -> dict[str, Any]:
    """MMRazor's unit entry: ``{"init_args": ..., "channels": ..., "choice": ...}``.

    Args:
      with_init_args: include :attr:`init_args`.
      with_channels: include the related channels (``channels`` is needed:
        the unit does not know its layers).
      choice: the unit's choice (an index or a number of channels, as a
        mutator holds it); ``None`` is the max choice. Written as kept channels
        (number mode) or a ratio (ratio mode).
      channels: the unit's related channels, a
        :class:`~jaxmutate.channels.UnitChannels` or MMRazor's mapping.

    Returns:
      Plain Python, YAML/JSON-serialisable. ``jm.build(dict(type=<unit type>,
      **template["init_args"]))`` rebuilds an equal unit.

    Raises:
      ConfigKeyError: ``with_channels`` without ``channels``.
      ChoiceError: a choice outside the unit's space.

    Example:
      >>> import jaxmutate as jm
      >>> from jaxmutate.channels import OneShotMutableChannelUnit
      >>> unit = OneShotMutableChannelUnit(48, (20, 30, 40), choice_mode="number", divisor=8)
      >>> template = unit.config_template(with_init_args=True, choice=0)
      >>> template
      {'init_args': {'num_channels': 48, 'divisor': 8, 'min_value': 1, 'min_ratio': 0.9, 'candidate_choices': [24, 32, 40], 'choice_mode': 'number'}, 'choice': 24}
      >>> jm.build(dict(type="OneShotMutableChannelUnit", **template["init_args"])) == unit
      True
    """
    space = self.space
    config: dict[str, Any] = {}
    if with_init_args:
      config["init_args"] = self.init_args
    if with_channels:
      if channels is None:
        raise ConfigKeyError(
          f"Channel unit {self._label()!r}: config_template(with_channels=True) needs its channels "
          "(the unit does not know its layers)."
        )
      if not isinstance(channels, UnitChannels):
        channels = UnitChannels.from_config(channels, space.num_channels)
      config["channels"] = channels.check(space.num_channels, self._label()).config_template()
    config["choice"] = space.export(space.max() if choice is None else choice)
    return config


def _as_tuple(value: Any) -> Any:
  if isinstance(value, (list, np.ndarray)):
    return tuple(v.item() if isinstance(v, np.generic) else v for v in np.asarray(value).tolist())
  if isinstance(value, tuple):
    return tuple(v.item() if isinstance(v, np.generic) else v for v in value)
  return value


@MODELS.register_module()
class SequentialMutableChannelUnit(MutableChannelUnit):
  """A unit that keeps any number of channels ``1..num_channels``, made divisible (a prefix).

  The choice is an int32 number of kept channels; it is made divisible with
  :func:`~jaxmutate.channels.make_divisible` (capped at ``num_channels``), as
  MMRazor's setter does. Sampling draws uniformly from ``1..num_channels`` and
  then rounds (MMRazor).

  Attributes:
    num_channels: the full width.
    choice_mode: ``"number"`` or ``"ratio"``: how subnet files write the choice.
    divisor: kept counts are multiples of it (besides the full width).
    min_value: the smallest kept count (at least ``divisor``).
    min_ratio: rounding keeps at least this fraction of a requested count.
    alias: units sharing an alias share a search group.

  Example:
    >>> import jax, jax.numpy as jnp
    >>> from jaxmutate.channels import SequentialMutableChannelUnit
    >>> unit = SequentialMutableChannelUnit(48, divisor=8)
    >>> variables = unit.init(jax.random.key(0), None)
    >>> width = unit.apply(variables, {"": 20})
    >>> width.value, width.num_channels, width.candidates
    (24, 48, (8, 16, 24, 32, 40, 48))
    >>> int(jax.jit(lambda v: unit.apply(variables, {"": v}).value)(jnp.int32(30)))
    32
  """

  num_channels: int
  choice_mode: str = "number"
  divisor: int = 1
  min_value: int = 1
  min_ratio: float = 0.9
  alias: str | None = None

  def _make_space(self, where: str) -> ChannelSpace:
    # normalize_candidates checks the arguments with the unit's name in the message.
    normalize_candidates(self.num_channels, (), self.choice_mode, self.divisor, self.min_value, self.min_ratio, where)
    return ChannelSpace(self.num_channels, None, self.choice_mode, self.divisor, self.min_value, self.min_ratio)

  @property
  def init_args(self) -> dict[str, Any]:
    return {
      "num_channels": self.num_channels,
      "choice_mode": self.choice_mode,
      "divisor": self.divisor,
      "min_value": self.min_value,
      "min_ratio": self.min_ratio,
    }


@MODELS.register_module()
class OneShotMutableChannelUnit(MutableChannelUnit):
  """A unit that keeps one of its candidate widths (AutoSlim, BigNAS): a prefix.

  ``candidate_choices`` are made divisible, then sorted and de-duplicated
  (see :func:`~jaxmutate.channels.normalize_candidates`); the field holds the
  normalized list, as MMRazor's attribute does (ratios in ratio mode).
  The choice is an int32 index into the sorted kept counts; sampling is
  uniform among them, max/min are the last/first.

  Attributes:
    num_channels: the full width.
    candidate_choices: ratios (ratio mode, floats in ``(0, 1]``) or numbers of
      channels (number mode, ints in ``(0, num_channels]``); empty means the
      full width only.
    choice_mode: ``"ratio"`` or ``"number"``.
    divisor: as :class:`SequentialMutableChannelUnit`.
    min_value: as :class:`SequentialMutableChannelUnit`.
    min_ratio: as :class:`SequentialMutableChannelUnit`.
    alias: units sharing an alias share a search group.

  Raises:
    SearchSpaceError: candidates outside ``(0, num_channels]`` or ratios
      outside ``(0, 1]``. ConfigTypeError: floats in number mode, ints in
      ratio mode.

  Example:
    >>> import jax
    >>> from jaxmutate.channels import OneShotMutableChannelUnit
    >>> OneShotMutableChannelUnit(48, (0.3, 0.5, 0.7), divisor=8).candidate_choices
    (0.3333333333333333, 0.5, 0.6666666666666666)
    >>> unit = OneShotMutableChannelUnit(48, (20, 30, 40), choice_mode="number", divisor=8)
    >>> variables = unit.init(jax.random.key(0), None)
    >>> [unit.apply(variables, {"": i}).value for i in range(3)]
    [24, 32, 40]
  """

  num_channels: int
  candidate_choices: Sequence[int | float] = (0.5, 1.0)
  choice_mode: str = "ratio"
  divisor: int = 1
  min_value: int = 1
  min_ratio: float = 0.9
  alias: str | None = None

  def _normalize_fields(self) -> None:
    object.__setattr__(self, "candidate_choices", _as_tuple(self.candidate_choices))
    counts = self._counts(self._label())
    n = self.num_channels
    object.__setattr__(
      self, "candidate_choices", tuple(counts if self.choice_mode == "number" else (k / n for k in counts))
    )

  def _counts(self, where: str) -> tuple[int, ...]:
    return normalize_candidates(
      self.num_channels, self.candidate_choices, self.choice_mode, self.divisor, self.min_value, self.min_ratio, where
    )

  def _make_space(self, where: str) -> ChannelSpace:
    return ChannelSpace(self.num_channels, self._counts(where), self.choice_mode)

  @property
  def init_args(self) -> dict[str, Any]:
    return {
      "num_channels": self.num_channels,
      "divisor": self.divisor,
      "min_value": self.min_value,
      "min_ratio": self.min_ratio,
      "candidate_choices": list(self.candidate_choices),
      "choice_mode": self.choice_mode,
    }


@MODELS.register_module()
class SlimmableChannelUnit(OneShotMutableChannelUnit):
  """A one-shot unit for slimmable networks: each candidate width is one predefined subnet.

  Its norms keep one set of statistics and affine parameters per candidate
  (:class:`~jaxmutate.dynamic.SwitchableBatchNorm` reads the candidates from
  the width). Subnet *i* takes candidate *i* of every unit
  (:func:`slimmable_subnets`). MMRazor's defaults: number mode, no
  candidates meaning the full width.

  Example:
    >>> import jax
    >>> from jaxmutate.channels import SlimmableChannelUnit
    >>> unit = SlimmableChannelUnit(16, (4, 8, 16))
    >>> variables = unit.init(jax.random.key(0), None)
    >>> unit.apply(variables, {"": 1}).value, unit.space.names
    (8, (4, 8, 16))
  """

  num_channels: int
  candidate_choices: Sequence[int | float] = ()
  choice_mode: str = "number"
  divisor: int = 1
  min_value: int = 1
  min_ratio: float = 0.9
  alias: str | None = None


@MODELS.register_module()
class L1MutableChannelUnit(SequentialMutableChannelUnit):
  """A unit that keeps the channels with the largest mean ``|w|`` (L1-norm pruning): not a prefix.

  The choice is a number of kept channels, as for
  :class:`SequentialMutableChannelUnit`; which channels are kept is the
  ``order`` given at call time, the channels sorted by importance
  (:func:`l1_channel_order` of the output-related weights). Without an order
  (e.g. at ``init``, before there are weights) the kept set is a prefix.

  Example:
    >>> import jax, jax.numpy as jnp
    >>> from jaxmutate.channels import L1MutableChannelUnit, l1_channel_order
    >>> unit = L1MutableChannelUnit(4)
    >>> variables = unit.init(jax.random.key(0), None)
    >>> kernel = jnp.array([[0.1, -3.0, 0.5, 2.0]])  # (in, out): output channels last
    >>> width = unit.apply(variables, {"": 2}, order=l1_channel_order(kernel))
    >>> width.mask().tolist()
    [False, True, False, True]
  """

  @nn.compact
  def __call__(self, choices: Mapping[str, Any] | None = None, order: jax.Array | None = None) -> MutableWidth:
    """The kept width; ``order`` is a permutation of the channels, most important first."""
    kept = self._kept(choices)
    if order is not None:
      shape = np.shape(order)
      if shape != (self.num_channels,):
        raise SearchSpaceError(
          f"Channel unit {self._label()!r}: order must be a permutation of its {self.num_channels} channels, "
          f"got shape {shape}."
        )
    return self._width(kept, order)


def l1_channel_order(*weights: jax.Array, channel_axis: int = -1) -> jax.Array:
  """The channels sorted by mean ``|w|`` (most important first): an L1 unit's ``order``.

  MMRazor's ``L1MutableChannelUnit`` rule: each output-related weight gives
  the mean absolute value of every output channel over its other axes; the
  unit's importance is their average. Ties keep the lower channel first.
  Flax kernels hold the output channels last (``(..., in, out)``), the
  default ``channel_axis``. Pure and jit-able.

  Args:
    *weights: the output-related weights (conv or dense kernels) of the unit.
    channel_axis: the output-channel axis of every weight.

  Returns:
    An int32 permutation of the channels.

  Raises:
    SearchSpaceError: no weights, or weights with different numbers of channels.

  Example:
    >>> import jax.numpy as jnp
    >>> from jaxmutate.channels import l1_channel_order
    >>> conv = jnp.array([[[[1.0, -4.0, 2.0]]]])  # (kh, kw, in, out)
    >>> dense = jnp.array([[1.0, 0.0, 4.0]])
    >>> l1_channel_order(conv, dense).tolist()  # means (1, 2, 3)
    [2, 1, 0]
  """
  if not weights:
    raise SearchSpaceError("l1_channel_order needs at least one output-related weight.")
  norms = []
  for w in weights:
    w = jnp.moveaxis(jnp.asarray(w), channel_axis, -1)
    norms.append(jnp.mean(jnp.abs(w).reshape(-1, w.shape[-1]), axis=0))
  sizes = sorted({int(n.shape[0]) for n in norms})
  if len(sizes) != 1:
    raise SearchSpaceError(f"l1_channel_order: the weights have different numbers of channels {sizes}.")
  importance = sum(norms[1:], norms[0]) / len(norms)
  return jnp.argsort(-importance, stable=True).astype(jnp.int32)


def slimmable_subnets(spaces: Mapping[str, ChannelSpace]) -> tuple[dict[str, np.int32], ...]:
  """The predefined subnets of slimmable units: subnet *i* takes candidate *i* of every unit.

  Args:
    spaces: unit (or group) name → its :class:`~jaxmutate.channels.ChannelSpace`.

  Returns:
    One ``{name: int32 index}`` per candidate position, narrowest first.

  Raises:
    SearchSpaceError: units with different numbers of candidates (naming them),
      or a sequential unit (it has no candidate list).
    ConfigTypeError: a value that is not a ``ChannelSpace``.

  Example:
    >>> from jaxmutate.channels import ChannelSpace, slimmable_subnets
    >>> slimmable_subnets({"a": ChannelSpace(8, (4, 8)), "b": ChannelSpace(16, (8, 16))})
    ({'a': np.int32(0), 'b': np.int32(0)}, {'a': np.int32(1), 'b': np.int32(1)})
  """
  counts = {}
  for name, space in spaces.items():
    if not isinstance(space, ChannelSpace):
      raise ConfigTypeError(f"slimmable_subnets: {name!r} has {type(space).__name__}, not a ChannelSpace.")
    if space.candidates is None:
      raise SearchSpaceError(f"slimmable_subnets: unit {name!r} is sequential; slimmable units need candidates.")
    counts[name] = len(space.candidates)
  if len(set(counts.values())) > 1:
    raise SearchSpaceError(
      "Slimmable units must all have the same number of candidates (subnet i takes candidate i of every "
      f"unit), got {counts}."
    )
  size = next(iter(counts.values()), 0)
  return tuple({name: np.int32(i) for name in counts} for i in range(size))
