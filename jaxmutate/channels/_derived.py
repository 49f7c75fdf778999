"""MMRazor's derived mutables on widths and values: expand, divide, concat, same, live product.

Every derivation has two sides that give the same numbers:

- the **candidates** (static): MMRazor's formula applied, in Python, to each
  source candidate (``int(kept * r)``, ``make_divisible(kept // r, divisor)``,
  sums, products);
- the **value**: concrete values go through the same Python formula (so a
  supernet given concrete choices traces to exactly the sliced layers);
  traced or batched values index a table of those numbers with ``jnp``.

A derived count is at least 1 (MMRazor would give 0 channels, e.g.
``int(1 * 0.5)``, which no layer can run). Sources are found from the widths
themselves (their unit names); a width without a name has no source to
derive from and is refused.
"""

from __future__ import annotations

import itertools
from collections.abc import Callable, Sequence
from typing import Any

import jax
import jax.numpy as jnp
import numpy as np

from jaxmutate.channels._divisible import make_divisible
from jaxmutate.channels._width import DerivedMutable, Value
from jaxmutate.dynamic import Width
from jaxmutate.errors import ChoiceError, ConfigError, ConfigTypeError, SearchSpaceError
from jaxmutate.spaces import is_traced

__all__ = ["concat", "divide", "expand", "product", "same"]

# A concrete float value matches a candidate within this (float32 tables hold
# values such as 0.1 inexactly).
_VALUE_TOLERANCE = 1e-5


def _is_number(value: Any) -> bool:
  return isinstance(value, (int, float, np.integer, np.floating)) and not isinstance(value, (bool, np.bool_))


def _check_ratio(ratio: Any, what: str) -> int | float:
  if not _is_number(ratio):
    raise ConfigTypeError(f"{what}: the ratio must be an int or a float, got {type(ratio).__name__} {ratio!r}.")
  if not ratio > 0:
    raise ConfigError(f"{what}: the ratio must be > 0, got {ratio!r}.")
  return ratio.item() if isinstance(ratio, np.generic) else ratio


def _check_divisor(divisor: Any, what: str) -> int:
  if isinstance(divisor, (bool, np.bool_)) or not isinstance(divisor, (int, np.integer)) or divisor < 1:
    raise ConfigError(f"{what}: divisor must be an int >= 1, got {divisor!r}.")
  return int(divisor)


# Sources ------------------------------------------------------------------


def _width_sources(width: Width, what: str) -> tuple[str, ...]:
  sources = getattr(width, "sources", ())
  if sources:
    return tuple(sources)
  if width.unit:
    return (width.unit,)
  raise SearchSpaceError(
    f"{what}: cannot find the source of {width!r}: it names no unit. Derive from the Width a channel unit "
    "returns (or give Width(..., unit=name))."
  )


def _merge(*groups: Sequence[str]) -> tuple[str, ...]:
  return tuple(dict.fromkeys(itertools.chain(*groups)))


def _unit_label(width: Width, sources: tuple[str, ...]) -> str:
  return width.unit or sources[0]


def _spans_of(width: Width, offset: int, label: str) -> tuple[tuple[str | None, int, int], ...]:
  if isinstance(width, DerivedMutable) and width.derivation == "concat":
    return tuple((unit, start + offset, end + offset) for unit, start, end in width.spans)
  return ((label, offset, offset + width.num_channels),)


# Reading a source's value -------------------------------------------------


def _is_scalar_concrete(value: Any) -> bool:
  return not is_traced(value) and np.ndim(value) == 0


def _width_counts(width: Width) -> tuple[int, ...]:
  if width.candidates is not None:
    return width.candidates
  return tuple(range(1, width.num_channels + 1))


def _concrete_width(width: Width, what: str) -> int:
  value = np.asarray(width.value)
  if not jnp.issubdtype(value.dtype, jnp.integer) or value.dtype == np.bool_:
    raise ChoiceError(f"{what}: a width's value must be an int number of channels, got {width.value!r}.")
  v = int(value)
  unit = f" (unit {width.unit!r})" if width.unit else ""
  if not 1 <= v <= width.num_channels:
    raise ChoiceError(f"{what}: width {v} is outside [1, num_channels={width.num_channels}]{unit}.")
  if width.candidates is not None and v not in width.candidates:
    raise ChoiceError(f"{what}: width {v} is not among the width's candidates {list(width.candidates)}{unit}.")
  return v


def _width_index(width: Width) -> jax.Array:
  """The position of a traced width among its counts (rounded up to the next one, clipped)."""
  value = jnp.asarray(width.value).astype(jnp.int32)
  if width.candidates is None:
    return jnp.clip(value, 1, width.num_channels) - 1
  counts = jnp.asarray(width.candidates, jnp.int32)
  return jnp.clip(jnp.searchsorted(counts, value), 0, len(width.candidates) - 1)


def _concrete_value(value: Value, what: str) -> int | float:
  v = float(np.asarray(value.value))
  for c in value.candidates:
    if abs(c - v) <= _VALUE_TOLERANCE * max(1.0, abs(c)):
      return c
  raise ChoiceError(f"{what}: value {v} is not among the value's candidates {list(value.candidates)}.")


def _value_index(value: Value) -> jax.Array:
  x = jnp.asarray(value.value)
  table = jnp.asarray(value.candidates, x.dtype if jnp.issubdtype(x.dtype, jnp.floating) else jnp.float32)
  return jnp.argmin(jnp.abs(table - x[..., None].astype(table.dtype)), axis=-1)


# Building a derived width -------------------------------------------------


def _counts_to_candidates(counts: Sequence[int], num_channels: int) -> tuple[int, ...] | None:
  distinct = tuple(sorted(set(counts)))
  return None if distinct == tuple(range(1, num_channels + 1)) else distinct


def _derive_width(
  width: Width, fn: Callable[[int], int], num_channels: int, derivation: str, what: str, sources=None, order=None
) -> DerivedMutable:
  """A single-source derived width: ``fn`` maps a source count to a derived count (clamped to [1, n])."""
  own = _width_sources(width, what)
  if num_channels < 1:
    raise SearchSpaceError(
      f"{what}: the derived width has {num_channels} channels (from {width.num_channels}); it needs at least 1."
    )
  clamp = lambda k: min(num_channels, max(1, int(fn(k))))
  counts = _width_counts(width)
  table = [clamp(k) for k in counts]
  if _is_scalar_concrete(width.value):
    value = clamp(_concrete_width(width, what))
  else:
    value = jnp.asarray(table, jnp.int32)[_width_index(width)]
  label = _unit_label(width, own)
  return DerivedMutable(
    value,
    num_channels,
    candidates=_counts_to_candidates(table, num_channels),
    unit=label,
    order=order,
    sources=sources or own,
    derivation=derivation,
    spans=((label, 0, num_channels),),
  )


def _derive_value(value: Value, fn: Callable[[int | float], int | float], derivation: str, what: str) -> Value:
  table = [fn(c) for c in value.candidates]
  if _is_scalar_concrete(value.value):
    out: Any = fn(_concrete_value(value, what))
  else:
    kind = jnp.int32 if all(isinstance(t, int) for t in table) else jnp.float32
    out = jnp.asarray(table, kind)[_value_index(value)]
  return Value(out, tuple(table), sources=value.sources, derivation=derivation)


# The derivations ----------------------------------------------------------


def expand(source: Width | Value, expand_ratio: int | float) -> Any:
  """MMRazor's ``derive_expand_mutable``: ``int(kept * expand_ratio)``.

  A width of ``n`` channels gives a prefix width of ``int(n * expand_ratio)``
  channels (a prefix mask, as MMRazor's; the source's ``order`` is not
  carried). A :class:`~jaxmutate.channels.Value` gives a value. A
  ``Value`` as the ratio makes the live :func:`product`.

  Args:
    source: a width (from a unit, or derived) or a value.
    expand_ratio: an int or float > 0 (or a ``Value``).

  Returns:
    A :class:`~jaxmutate.channels.DerivedMutable` (or a ``Value``).

  Raises:
    ConfigTypeError: a ratio that is not a number. ConfigError: a ratio <= 0.
    SearchSpaceError: the derived width has no channels, or the source names
      no unit.
    ChoiceError: a concrete source width outside ``[1, num_channels]``.

  Example:
    >>> from jaxmutate.channels import MutableWidth, expand
    >>> channel = MutableWidth(10, 10, unit="c", sources=("c",))
    >>> expand(channel, 0.5).value, expand(channel.replace(value=5), 0.5).value
    (5, 2)
    >>> wide = expand(channel.replace(value=2, num_channels=3), 3)
    >>> wide.value, wide.num_channels
    (6, 9)
  """
  what = f"expand(x{expand_ratio!r})"
  if isinstance(expand_ratio, Value):
    return product(source, expand_ratio)
  ratio = _check_ratio(expand_ratio, what)
  if isinstance(source, Value):
    return _derive_value(source, lambda v: int(v * ratio), "expand", what)
  _check_source(source, what)
  return _derive_width(source, lambda k: int(k * ratio), int(source.num_channels * ratio), "expand", what)


def divide(source: Width | Value, ratio: int | float, divisor: int = 8) -> Any:
  """MMRazor's ``derive_divide_mutable``: ``make_divisible(kept // ratio, divisor)``.

  A width of ``n`` channels gives a prefix width of
  ``make_divisible(n // ratio, divisor)`` channels (MobileNet's SE channels:
  ``divide(expand, 4, 8)``).

  Args:
    source: a width or a value.
    ratio: an int or float > 0 (used as given; the ``//`` operator truncates a
      float to an int, as MMRazor does).
    divisor: as :func:`~jaxmutate.channels.make_divisible` (default 8).

  Returns:
    A :class:`~jaxmutate.channels.DerivedMutable` (or a ``Value``).

  Raises:
    As :func:`expand`; ConfigError for ``divisor < 1``.

  Example:
    >>> from jaxmutate.channels import MutableWidth, divide
    >>> channel = MutableWidth(120, 128, unit="c", sources=("c",))
    >>> (channel // 8).value, (channel // 8).num_channels, divide(channel, 4, 8).value
    (16, 16, 32)
  """
  what = f"divide(//{ratio!r}, divisor={divisor!r})"
  r = _check_ratio(ratio, what)
  d = _check_divisor(divisor, what)
  fn = lambda k: make_divisible(k // r, d)
  if isinstance(source, Value):
    return _derive_value(source, fn, "divide", what)
  _check_source(source, what)
  return _derive_width(source, fn, fn(source.num_channels), "divide", what)


def divide_operator(source: Width | Value, other: Any) -> Any:
  """``source // other`` with MMRazor's operand rules (int; float → int; ``(ratio, divisor)``)."""
  if isinstance(other, tuple):
    if len(other) != 2:
      raise ConfigTypeError(f"width // (ratio, divisor) takes a pair, got {other!r}.")
    return divide(source, *other)
  if isinstance(other, (float, np.floating)):
    return divide(source, int(other))
  if _is_number(other):
    return divide(source, other)
  if isinstance(other, Value):
    raise ConfigTypeError(
      "Dividing by a value mutable is not supported: MMRazor takes its current choice as a constant at derive "
      "time; divide by that number instead."
    )
  raise ConfigTypeError(f"Unsupported operand for //: {type(other).__name__} {other!r}.")


def same(source: Width | Value) -> Any:
  """MMRazor's ``derive_same_mutable``: the same width (and the same ``order``), as a derived one.

  Example:
    >>> from jaxmutate.channels import MutableWidth, same
    >>> derived = same(MutableWidth(2, 3, unit="c", sources=("c",)))
    >>> derived.value, derived.derivation, derived.mask().astype(int).tolist()
    (2, 'same', [1, 1, 0])
  """
  what = "same()"
  if isinstance(source, Value):
    return _derive_value(source, lambda v: v, "same", what)
  _check_source(source, what)
  return _derive_width(source, lambda k: k, source.num_channels, "same", what, order=source.order)


def product(width: Width, value: Value) -> DerivedMutable:
  """The live product ``int(kept * v)`` of a width and a value (MMRazor's ``channel * OneShotMutableValue``).

  The derived axis has ``int(num_channels * max(v))`` channels; its candidates
  are the products over both candidate sets. MobileNet's expand channels are
  ``product(in_width, expand_ratio)``.

  Args:
    width: a width (its unit is the channel source).
    value: a :class:`~jaxmutate.channels.Value` (see ``Value.of``).

  Returns:
    A :class:`~jaxmutate.channels.DerivedMutable` whose sources are the
    width's and the value's.

  Raises:
    ConfigTypeError: ``value`` is not a ``Value`` (a bare array has no
      candidates). SearchSpaceError: a value candidate <= 0, or no source.

  Example:
    >>> import jax, jax.numpy as jnp
    >>> from jaxmutate.channels import MutableWidth, Value, product
    >>> channel = MutableWidth(2, 2, unit="c", sources=("c",))
    >>> ratio = Value(3, (1, 2, 3), sources=("expand",))
    >>> product(channel, ratio).value, (ratio.replace(value=1) * channel).value
    (6, 2)
    >>> f = jax.jit(jax.vmap(lambda v: product(channel, ratio.replace(value=v)).value))
    >>> f(jnp.array([1, 2, 3])).tolist()
    [2, 4, 6]
  """
  what = "product(width * value)"
  if isinstance(width, Value) and isinstance(value, Width):
    width, value = value, width
  if not isinstance(value, Value):
    raise ConfigTypeError(
      f"{what}: the value must be a Value (a value mutable's output with its candidates: "
      f"Value.of(mutable, choices)), got {type(value).__name__}."
    )
  _check_source(width, what)
  if min(value.candidates) <= 0:
    raise SearchSpaceError(f"{what}: value candidates must be > 0, got {list(value.candidates)}.")
  own = _width_sources(width, what)
  n = int(width.num_channels * max(value.candidates))
  if n < 1:
    raise SearchSpaceError(f"{what}: the derived width has {n} channels; it needs at least 1.")
  clamp = lambda k, v: min(n, max(1, int(k * v)))
  counts = _width_counts(width)
  table = np.asarray([[clamp(k, v) for v in value.candidates] for k in counts], np.int32)
  if _is_scalar_concrete(width.value) and _is_scalar_concrete(value.value):
    out: Any = clamp(_concrete_width(width, what), _concrete_value(value, what))
  else:
    out = jnp.asarray(table)[_width_index(width), _value_index(value)]
  label = _unit_label(width, own)
  return DerivedMutable(
    out,
    n,
    candidates=_counts_to_candidates(table.ravel().tolist(), n),
    unit=label,
    sources=_merge(own, value.sources),
    derivation="product",
    spans=((label, 0, n),),
  )


def concat(widths: Sequence[Width]) -> DerivedMutable:
  """MMRazor's ``derive_concat_mutable``: widths concatenated along the channel axis.

  The kept count is the sum of the parts'; the kept channels are each part's
  kept channels at its offset, so the result is not a prefix (its ``order``
  lists every part's kept channels first, in part order, then the dropped
  ones). Candidates are the sums over the parts' candidate sets.

  Args:
    widths: two or more widths (one is allowed: a same-width copy).

  Returns:
    A :class:`~jaxmutate.channels.DerivedMutable` with one span per part.

  Raises:
    ConfigTypeError: a part that is not a width (e.g. a ``Value``: MMRazor
      needs every part to have a mask). ConfigError: no parts.
    SearchSpaceError: a part that names no unit.
    ChoiceError: a batched (non-vmapped) part value.

  Example:
    >>> from jaxmutate.channels import MutableWidth, concat
    >>> a = MutableWidth(1, 3, unit="a", sources=("a",))
    >>> b = MutableWidth(1, 4, unit="b", sources=("b",))
    >>> ab = concat([a, b])
    >>> ab.value, ab.mask().astype(int).tolist()
    (2, [1, 0, 0, 1, 0, 0, 0])
  """
  what = "concat()"
  if isinstance(widths, Width) or not isinstance(widths, Sequence) or not widths:
    raise ConfigError(f"{what} takes a non-empty list of widths, got {widths!r}.")
  for part in widths:
    if not isinstance(part, Width):
      raise ConfigTypeError(
        f"{what}: every part must be a channel width (with a mask), got {type(part).__name__} {part!r}."
      )
    _check_source(part, what)
  sources = _merge(*(_width_sources(part, what) for part in widths))
  sizes = [part.num_channels for part in widths]
  n = sum(sizes)
  offsets = np.cumsum([0] + sizes[:-1]).tolist()
  spans = tuple(s for part, o in zip(widths, offsets) for s in _spans_of(part, o, _unit_label(part, sources)))
  labels = list(dict.fromkeys(unit for unit, _, _ in spans if unit))
  label = labels[0] if len(labels) == 1 else f"concat({', '.join(labels)})"
  sums = np.asarray([0])
  for part in widths:
    sums = np.unique(np.add.outer(sums, np.asarray(_width_counts(part))).ravel())
  candidates = _counts_to_candidates(sums.tolist(), n)
  if all(_is_scalar_concrete(part.value) and not is_traced(part.order) for part in widths):
    kept = [_concrete_width(part, what) for part in widths]
    value: Any = sum(kept)
    order = _concrete_concat_order(widths, kept, offsets)
  else:
    for part in widths:
      if not is_traced(part.value) and np.ndim(part.value) != 0:
        raise ChoiceError(f"{what}: part widths must be scalars, got shape {np.shape(part.value)}; jax.vmap over them.")
    kept = [jnp.clip(jnp.asarray(part.value, jnp.int32), 1, part.max_value) for part in widths]
    value = sum(kept[1:], kept[0])
    order = _traced_concat_order(widths, kept, offsets, n)
  return DerivedMutable(
    value, n, candidates=candidates, unit=label, order=order, sources=sources, derivation="concat", spans=spans
  )


def _part_order(part: Width) -> np.ndarray | jax.Array:
  if part.order is None:
    return np.arange(part.num_channels)
  return part.order


def _concrete_concat_order(widths: Sequence[Width], kept: list[int], offsets: list[int]) -> np.ndarray | None:
  orders = [np.asarray(_part_order(part)) + o for part, o in zip(widths, offsets)]
  front = np.concatenate([order[:k] for order, k in zip(orders, kept)])
  back = np.concatenate([order[k:] for order, k in zip(orders, kept)])
  order = np.concatenate([front, back]).astype(np.int32)
  # A prefix needs no order: the layers then slice statically.
  if np.array_equal(np.sort(front), np.arange(len(front))) and all(p.order is None for p in widths):
    return None
  return order


def _traced_concat_order(widths: Sequence[Width], kept: list[Any], offsets: list[int], n: int) -> jax.Array:
  total = sum(kept[1:], kept[0])
  before = 0  # kept channels of the parts before this one
  positions, elements = [], []
  for part, k, o in zip(widths, kept, offsets):
    j = jnp.arange(part.num_channels, dtype=jnp.int32)
    positions.append(jnp.where(j < k, before + j, total + (o - before) + (j - k)))
    elements.append(jnp.asarray(_part_order(part), jnp.int32) + o)
    before = before + k
  return jnp.zeros(n, jnp.int32).at[jnp.concatenate(positions)].set(jnp.concatenate(elements))


def _check_source(source: Any, what: str) -> None:
  if not isinstance(source, Width):
    raise ConfigTypeError(f"{what}: expected a channel width or a Value, got {type(source).__name__} {source!r}.")
