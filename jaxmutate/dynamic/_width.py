"""Widths: how many channels of a layer are kept, as a value a dynamic layer takes.

A width keeps a prefix of the channels (``order=None``) or, for L1-style units
whose kept set is not a prefix, the first ``value`` entries of a permutation
``order`` of the channels. The value may be concrete (a Python int, a NumPy
integer, a concrete int32 array: the layer traces to exactly the sliced static
layer) or traced (inside ``jit``/``vmap``/``grad``: one compile serves every
width).

Traced widths cannot be checked by value. Like every traced choice in
jaxmutate they are clipped into range, never an error or a NaN: into
``[1, num_channels]``, or ``[1, max(candidates)]`` when the width knows its
candidates.
"""

from __future__ import annotations

from typing import Any

import jax
import jax.numpy as jnp
import numpy as np
from flax import struct

from jaxmutate.errors import ChoiceError, ChoiceTypeError, SearchSpaceError

__all__ = ["Width", "WidthLike", "as_width"]


@struct.dataclass
class Width:
  """The kept width of one channel axis: a pytree that passes through ``jit``/``vmap``.

  Attributes:
    value: int32 scalar (traced or concrete; a Python int is accepted): the
      number of kept channels. Under ``jax.vmap`` a batch of widths has a
      batched ``value``.
    num_channels: (static) the maximum width, the layer's full channel count.
    candidates: (static) the sorted widths ``value`` can take, as a channel
      unit of candidates knows them; ``None`` means any width in
      ``1..num_channels``. Dynamic layers dispatch among a few of them.
    unit: (static) the name of the channel unit the width comes from.
    order: optional int32 permutation of the channels (an array leaf): the
      kept channels are ``order[:value]``. The producer and the consumers of
      one unit must use the same order.

  Candidates are sorted and de-duplicated on construction; a candidate
  outside ``[1, num_channels]`` raises :class:`~jaxmutate.errors.SearchSpaceError`.

  Example:
    >>> import jax, jax.numpy as jnp
    >>> from jaxmutate.dynamic import Width
    >>> w = Width(jnp.int32(16), num_channels=32, candidates=(32, 8, 16), unit="conv1_(0, 32)_32")
    >>> w.candidates
    (8, 16, 32)
    >>> w.mask().sum()
    Array(16, dtype=int32)
    >>> jax.vmap(lambda w: w.mask().sum())(Width(jnp.array([8, 32]), 32)).tolist()
    [8, 32]
  """

  value: Any
  num_channels: int = struct.field(pytree_node=False)
  candidates: tuple[int, ...] | None = struct.field(pytree_node=False, default=None)
  unit: str | None = struct.field(pytree_node=False, default=None)
  order: Any = None

  def __post_init__(self) -> None:
    # Only static fields are checked here: jax rebuilds pytrees with
    # placeholder leaves (tracers, object()) that must pass untouched.
    n = self.num_channels
    if isinstance(n, bool) or not isinstance(n, (int, np.integer)) or n < 1:
      raise SearchSpaceError(f"Width num_channels must be an int >= 1, got {n!r}{_unit_suffix(self.unit)}.")
    object.__setattr__(self, "num_channels", int(n))
    if self.candidates is not None:
      candidates = tuple(self.candidates)
      if not candidates:
        raise SearchSpaceError(f"Width candidates must not be empty (use None for any width){_unit_suffix(self.unit)}.")
      for c in candidates:
        if isinstance(c, bool) or not isinstance(c, (int, np.integer)):
          raise SearchSpaceError(
            f"Width candidates must be ints (numbers of channels), got {c!r} in {candidates}{_unit_suffix(self.unit)}."
          )
        if not 1 <= c <= n:
          raise SearchSpaceError(f"Width candidate {c} is outside [1, num_channels={n}]{_unit_suffix(self.unit)}.")
      object.__setattr__(self, "candidates", tuple(sorted({int(c) for c in candidates})))

  def mask(self) -> jax.Array:
    """The kept channels as a boolean vector of length ``num_channels`` (traced widths clipped)."""
    value = jnp.clip(jnp.asarray(self.value, jnp.int32), 1, self.max_value)
    if self.order is None:
      return jnp.arange(self.num_channels, dtype=jnp.int32) < value
    return rank_of(self.order) < value

  @property
  def max_value(self) -> int:
    """The largest width this width can take: the largest candidate, or ``num_channels``."""
    return self.candidates[-1] if self.candidates is not None else self.num_channels


WidthLike = Width | int | np.integer | jax.Array | np.ndarray


def _unit_suffix(unit: str | None) -> str:
  return f" (unit {unit!r})" if unit else ""


def rank_of(order: jax.Array) -> jax.Array:
  """The position of each channel in ``order`` (the inverse permutation)."""
  order = jnp.asarray(order, jnp.int32)
  return jnp.zeros(order.shape, jnp.int32).at[..., order].set(jnp.arange(order.shape[-1], dtype=jnp.int32))


def is_traced(value: Any) -> bool:
  """Whether ``value`` is a tracer (inside ``jit``/``vmap``/``grad``) rather than a concrete number."""
  return isinstance(value, jax.core.Tracer)


def _check_integer_dtype(value: Any, what: str) -> None:
  dtype = getattr(value, "dtype", None)
  if isinstance(value, (bool, np.bool_)) or (dtype is not None and dtype == np.bool_):
    raise ChoiceTypeError(f"{what} must be an int number of channels, got a bool {value!r}.")
  if isinstance(value, (float, complex, np.floating)) or (dtype is not None and not jnp.issubdtype(dtype, jnp.integer)):
    raise ChoiceTypeError(
      f"{what} must be an int number of channels (Python int or int32 array), got {value!r} of type "
      f"{type(value).__name__}{'' if dtype is None else f' ({dtype})'}; a ratio r of C channels is "
      "max(1, int(C * r))."
    )


def as_width(width: WidthLike | None, num_channels: int, *, layer: str = "layer", argument: str = "width") -> Width:
  """Normalises a width argument (``Width``, int or int32 scalar array, or ``None``) into a :class:`Width`.

  ``None`` is the full width. Concrete values are checked here; traced ones
  are kept as they are (layers clip them into range).

  Args:
    width: what the caller passed.
    num_channels: the layer's maximum width on that axis.
    layer: the layer's name, for error messages.
    argument: the argument's name, for error messages.

  Returns:
    A ``Width`` with ``num_channels`` equal to the layer's.

  Raises:
    ChoiceTypeError: a float, bool or non-integer array.
    ChoiceError: a concrete width outside ``[1, num_channels]``, not among
      the width's candidates, or not a scalar.
    SearchSpaceError: a ``Width`` of another ``num_channels``, or an
      ``order`` that is not a permutation of the channels.

  Example:
    >>> from jaxmutate.dynamic import as_width
    >>> as_width(8, 32).value, as_width(None, 32).value
    (8, 32)
    >>> as_width(40, 32, layer="conv1", argument="out_width")
    Traceback (most recent call last):
    ...
    jaxmutate.errors.ChoiceError: conv1: out_width=40 is outside [1, 32] (the layer's maximum is 32 channels).
  """
  what = f"{layer}: {argument}"
  if width is None:
    return Width(num_channels, num_channels)
  if isinstance(width, Width):
    if width.num_channels != num_channels:
      raise SearchSpaceError(
        f"{what} is a Width of num_channels={width.num_channels}{_unit_suffix(width.unit)}, but the layer has "
        f"{num_channels} channels on that axis: the width belongs to another unit or layer."
      )
    result = width
  else:
    if not isinstance(width, (int, np.integer, np.ndarray, jax.Array)):
      raise ChoiceTypeError(
        f"{what} must be a Width, an int or an int32 scalar array, got {type(width).__name__} {width!r}."
      )
    result = Width(width, num_channels)
  value = result.value
  _check_integer_dtype(value, what)
  if np.ndim(value) != 0:
    raise ChoiceError(
      f"{what} must be a scalar, got shape {np.shape(value)}; to run several widths, jax.vmap over them."
    )
  if result.order is not None:
    order = result.order
    _check_integer_dtype(order, f"{what} order")
    if np.shape(order) != (num_channels,):
      raise SearchSpaceError(f"{what} order must have shape ({num_channels},), got {np.shape(order)}.")
    if not is_traced(order) and sorted(np.asarray(order).tolist()) != list(range(num_channels)):
      raise SearchSpaceError(f"{what} order must be a permutation of range({num_channels}), got {order!r}.")
  if not is_traced(value):
    v = int(np.asarray(value))
    if not 1 <= v <= num_channels:
      raise ChoiceError(
        f"{what}={v} is outside [1, {num_channels}] (the layer's maximum is {num_channels} channels)"
        f"{_unit_suffix(result.unit)}."
      )
    if result.candidates is not None and v not in result.candidates:
      raise ChoiceError(
        f"{what}={v} is not among the width's candidates {result.candidates}{_unit_suffix(result.unit)}."
      )
    result = result.replace(value=v)
  return result
