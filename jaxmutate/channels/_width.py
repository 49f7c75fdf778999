"""Widths that know their source: what channel units return, and what derivations give.

:class:`MutableWidth` is a :class:`~jaxmutate.dynamic.Width` (every dynamic
layer takes it) that also records the unit(s) it comes from and offers
MMRazor's derivation operators: ``w * 0.5``, ``w * value``, ``w // 8``,
``w // (ratio, divisor)``. :class:`DerivedMutable` is the result of a
derivation. :class:`Value` carries a value mutable's output together with its
candidates, so that a width can be multiplied by it (the live product).
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any

import jax
import numpy as np
from flax import struct

from jaxmutate.dynamic import Width
from jaxmutate.errors import ConfigTypeError, SearchSpaceError

__all__ = ["DerivedMutable", "MutableWidth", "Value"]


@struct.dataclass
class MutableWidth(Width):
  """A :class:`~jaxmutate.dynamic.Width` from a channel unit, with MMRazor's derivation operators.

  Operators (each returns a :class:`DerivedMutable`; see
  :func:`~jaxmutate.channels.expand`, :func:`~jaxmutate.channels.divide`,
  :func:`~jaxmutate.channels.product`):

  - ``w * r`` / ``r * w`` (int or float ``r``): ``int(kept * r)`` of
    ``int(num_channels * r)`` channels (MMRazor's ``derive_expand_mutable``);
  - ``w * v`` / ``v * w`` (a :class:`Value`): the live product ``int(kept * v)``
    of ``int(num_channels * max(v))`` channels;
  - ``w // r``: ``make_divisible(kept // r, 8)`` (a float ``r`` counts as
    ``int(r)``, as in MMRazor); ``w // (r, divisor)`` uses that divisor.

  Attributes:
    sources: (static) the names of the units (and value mutables) the width
      comes from; a unit's own width has its name.

  Example:
    >>> from jaxmutate.channels import MutableWidth
    >>> w = MutableWidth(24, 48, candidates=(12, 24, 48), unit="conv1_(0, 48)_48", sources=("conv1_(0, 48)_48",))
    >>> (w * 2).value, (w * 2).num_channels, (w // 8).value, (w // (2, 4)).value
    (48, 96, 8, 12)
  """

  sources: tuple[str, ...] = struct.field(pytree_node=False, default=())

  def __mul__(self, other: Any) -> DerivedMutable:
    from jaxmutate.channels._derived import expand, product

    if isinstance(other, Value):
      return product(self, other)
    if _is_number(other):
      return expand(self, other)
    raise ConfigTypeError(_unsupported("*", other))

  __rmul__ = __mul__

  def __floordiv__(self, other: Any) -> DerivedMutable:
    from jaxmutate.channels._derived import divide_operator

    return divide_operator(self, other)

  def derive_expand_mutable(self, expand_ratio: int | float) -> DerivedMutable:
    """MMRazor's name for ``self * expand_ratio``."""
    from jaxmutate.channels._derived import expand

    return expand(self, expand_ratio)

  def derive_divide_mutable(self, ratio: int | float, divisor: int = 8) -> DerivedMutable:
    """MMRazor's name for ``divide(self, ratio, divisor)``."""
    from jaxmutate.channels._derived import divide

    return divide(self, ratio, divisor)

  def derive_same_mutable(self) -> DerivedMutable:
    """MMRazor's name for ``same(self)``."""
    from jaxmutate.channels._derived import same

    return same(self)

  @staticmethod
  def derive_concat_mutable(widths: Sequence[Width]) -> DerivedMutable:
    """MMRazor's name for ``concat(widths)``."""
    from jaxmutate.channels._derived import concat

    return concat(widths)


@struct.dataclass
class DerivedMutable(MutableWidth):
  """A width derived from other widths or values (MMRazor's ``DerivedMutable``).

  It has no search space of its own (a mutator never samples it): its value
  follows its sources. Its candidates are derived exactly from the sources'
  candidates (Python arithmetic, MMRazor's numbers); a traced value is read
  from a table of those numbers, so traced and concrete values agree.

  Attributes:
    derivation: (static) ``"expand"``, ``"divide"``, ``"concat"``,
      ``"product"`` or ``"same"``.
    spans: (static) ``(source unit, start, end)`` of each part on the derived
      channel axis: one span for a single-source derivation, one per part
      for a concatenation.

  Example:
    >>> from jaxmutate.channels import MutableWidth, concat
    >>> a = MutableWidth(1, 3, unit="a", sources=("a",))
    >>> b = MutableWidth(4, 4, unit="b", sources=("b",))
    >>> ab = concat([a, b])
    >>> ab.value, ab.num_channels, ab.sources, ab.spans, ab.mask().astype(int).tolist()
    (5, 7, ('a', 'b'), (('a', 0, 3), ('b', 3, 7)), [1, 0, 0, 1, 1, 1, 1])
  """

  derivation: str = struct.field(pytree_node=False, default="same")
  spans: tuple[tuple[str | None, int, int], ...] = struct.field(pytree_node=False, default=())


def _is_number(value: Any) -> bool:
  return isinstance(value, (int, float, np.integer, np.floating)) and not isinstance(value, (bool, np.bool_))


def _unsupported(op: str, other: Any) -> str:
  hint = ""
  if isinstance(other, (jax.Array, np.ndarray)):
    hint = (
      "; a value mutable's output has no candidates: wrap it as Value.of(value_mutable, choices) for the live product"
    )
  return f"Unsupported operand for a channel width {op}: {type(other).__name__} {other!r}{hint}."


@struct.dataclass
class Value:
  """A value mutable's output with its candidates: the other operand of a live product.

  ``width * value`` keeps ``int(kept * v)`` of ``int(num_channels * max(v))``
  channels (MobileNet's expand channels = expand ratio x input channels).
  ``value * r`` and ``value // r`` derive values with MMRazor's numbers too.

  Attributes:
    value: the chosen value (traced or concrete; batched under ``vmap``).
    candidates: (static) the values it can take, sorted.
    sources: (static) the names of the value mutables it comes from.
    derivation: (static) ``None`` for a mutable's own value, else how it was
      derived (``"expand"``, ``"divide"``, ``"same"``).

  Raises:
    SearchSpaceError: no candidates, or candidates that are not numbers.

  Example:
    >>> import jax, jax.numpy as jnp, flax.linen as nn
    >>> import jaxmutate as jm
    >>> from jaxmutate.channels import OneShotMutableChannelUnit, Value
    >>> class Block(nn.Module):
    ...   @nn.compact
    ...   def __call__(self, choices):
    ...     width = OneShotMutableChannelUnit(8, (4, 8), choice_mode="number", name="unit")(choices)
    ...     expand = Value.of(jm.OneShotMutableValue([3, 6], name="expand"), choices)
    ...     return width * expand
    >>> variables = Block().init(jax.random.key(0), None)
    >>> hidden = Block().apply(variables, {"unit": 0, "expand": 1})
    >>> hidden.value, hidden.num_channels, hidden.sources
    (24, 48, ('unit', 'expand'))
  """

  value: Any
  candidates: tuple[int | float, ...] = struct.field(pytree_node=False, default=())
  sources: tuple[str, ...] = struct.field(pytree_node=False, default=())
  derivation: str | None = struct.field(pytree_node=False, default=None)

  def __post_init__(self) -> None:
    candidates = tuple(c.item() if isinstance(c, np.generic) else c for c in self.candidates)
    if not candidates or not all(_is_number(c) for c in candidates):
      raise SearchSpaceError(
        f"Value{_sources_suffix(self.sources)} needs its candidates (numbers), got {self.candidates!r}."
      )
    object.__setattr__(self, "candidates", tuple(sorted(set(candidates))))

  @classmethod
  def of(cls, mutable: Any, choices: Mapping[str, Any] | None) -> Value:
    """Calls a value mutable (e.g. ``OneShotMutableValue``) and wraps its output with its candidates.

    Call it inside the supernet's compact method, where the mutable gets its
    name.

    Raises:
      ConfigTypeError: ``mutable`` has no ``choices`` (not a value mutable).
    """
    if not hasattr(mutable, "choices") or not callable(mutable):
      raise ConfigTypeError(f"Value.of takes a value mutable (with .choices), got {type(mutable).__name__}.")
    output = mutable(choices)
    name = mutable.mutable_name
    return cls(output, tuple(mutable.choices), sources=(name,) if name else ())

  def __mul__(self, other: Any) -> Any:
    from jaxmutate.channels._derived import expand, product

    if isinstance(other, Width):
      return product(other, self)
    if _is_number(other):
      return expand(self, other)
    raise ConfigTypeError(f"Unsupported operand for a value *: {type(other).__name__} {other!r}.")

  __rmul__ = __mul__

  def __floordiv__(self, other: Any) -> Value:
    from jaxmutate.channels._derived import divide_operator

    return divide_operator(self, other)


def _sources_suffix(sources: tuple[str, ...]) -> str:
  return f" (from {', '.join(repr(s) for s in sources)})" if sources else ""
