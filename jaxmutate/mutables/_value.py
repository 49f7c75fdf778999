"""Value mutables: a choice among numbers (widths, ratios, kernel sizes, depths)."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any, ClassVar

import flax.linen as nn
import jax
import jax.numpy as jnp
import numpy as np

from jaxmutate.errors import ConfigTypeError, SearchSpaceError
from jaxmutate.mutables._base import BaseMutable
from jaxmutate.mutables._candidates import record_spec
from jaxmutate.registry import MODELS
from jaxmutate.spaces import ValueSpace, is_traced


@MODELS.register_module()
class MutableValue(BaseMutable):
  """A choice among values, given as an int32 index into ``value_list``.

  ``value(choices)`` returns the chosen value: a traced array for a traced
  choice (use it arithmetically or as a mask, not as a shape), a NumPy scalar
  (a constant, even under ``jit``) for a concrete one. At ``init`` with
  ``choices=None`` it returns the default value.

  Attributes:
    value_list: the candidate values, all of one type (int or float).
    default_value: the value used at init; the first value when ``None``.
    alias: values sharing an alias share a search group.

  Raises:
    TypeError: values of mixed types, or not numbers.
    ValueError: an empty list, duplicates, or a default not in the list.

  Example:
    >>> import jax, jax.numpy as jnp
    >>> import jaxmutate as jm
    >>> ratio = jm.MutableValue([3, 6, 4])
    >>> variables = ratio.init(jax.random.key(0), None)
    >>> int(ratio.apply(variables, {"": jnp.int32(1)}))
    6
  """

  value_list: Sequence[int | float] = ()
  default_value: int | float | None = None
  alias: str | None = None

  ordered: ClassVar[bool] = False

  @property
  def choices(self) -> tuple[int | float, ...]:
    """The values in index order."""
    # NumPy scalars (e.g. from np.arange) become Python numbers, so that specs
    # and exported subnets stay plain Python.
    values = tuple(v.item() if isinstance(v, np.generic) else v for v in self.value_list)
    owner = f"{type(self).__name__} {self.mutable_name!r}"
    if not values:
      raise SearchSpaceError(f"{owner}: value_list is empty; give at least one value.")
    kinds = {type(v) for v in values}
    if len(kinds) != 1 or not kinds <= {int, float}:
      raise ConfigTypeError(f"{owner}: value_list must hold ints or floats of one type, got {values!r}.")
    if len(set(values)) != len(values):
      raise SearchSpaceError(f"{owner}: value_list has duplicates: {values!r}.")
    return values

  @property
  def default_index(self) -> int:
    values = self.choices
    if self.default_value is None:
      return self._default_position(values)
    if self.default_value not in values:
      raise SearchSpaceError(
        f"{type(self).__name__} {self.mutable_name!r}: default_value {self.default_value!r} is not in {values!r}."
      )
    return values.index(self.default_value)

  def _default_position(self, values: tuple[Any, ...]) -> int:
    return 0

  @property
  def space(self) -> ValueSpace:
    return ValueSpace(self.choices, ordered=self.ordered)

  @nn.compact
  def __call__(self, choices: Mapping[str, Any] | None = None) -> jax.Array:
    record_spec(self, choices)
    values = self.choices
    table = jnp.asarray(values)
    if self.is_initializing() and choices is None:
      return table[self.default_index]
    index = self._checked_choice(choices)
    if not is_traced(index):
      # A NumPy value: a constant even inside jit, so a concrete choice gives
      # concrete widths and shapes downstream (a derived channel count).
      return np.asarray(values, table.dtype)[int(index)]
    return table[index]


@MODELS.register_module()
class OneShotMutableValue(MutableValue):
  """A :class:`MutableValue` over **sorted** values with max/min (BigNAS, OFA).

  Index 0 is the smallest value (``min_choice``), the last index the largest
  (``max_choice``) and the default.

  Example:
    >>> import jax, jax.numpy as jnp
    >>> import jaxmutate as jm
    >>> expand = jm.OneShotMutableValue([6, 3, 4])
    >>> variables = expand.init(jax.random.key(0), None)
    >>> int(expand.apply(variables, {"": jnp.int32(0)}))
    3
  """

  ordered: ClassVar[bool] = True

  @property
  def choices(self) -> tuple[int | float, ...]:
    return tuple(sorted(super().choices))

  def _default_position(self, values: tuple[Any, ...]) -> int:
    return len(values) - 1
