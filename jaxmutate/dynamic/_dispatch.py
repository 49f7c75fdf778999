"""Traced widths that save compute: dispatch among a few statically sliced widths.

Masking a full-width layer costs the full width whatever the kept width.
Dynamic layers instead round a traced width up to the next of a few *buckets*
(static widths taken from the width's candidates, always the smallest and the
largest) and run, through :func:`jaxmutate.mutables.switch`, the layer
statically sliced to that bucket; the channels between the kept width and the
bucket are masked exactly (zero weights in, zeros out). A layer with two
traced axes (a conv's input and output) dispatches on the in x out grid of
buckets.

``max_buckets`` (an attribute of every dynamic layer; :data:`DEFAULT_MAX_BUCKETS`
for convs and dense layers, 1 for norms) bounds the branches per axis: compile
time grows with the number of branches (``max_buckets`` squared for a conv or
dense layer with both widths traced), the wasted work of rounding up shrinks
with it. ``max_buckets=1`` is plain masking at the full width (no conditional
at all): right for memory-bound layers such as norms, which then fuse with
their neighbours.

What a traced width cannot save on XLA:CPU: every activation keeps its full
static shape, so each layer still writes the zero padding and the elementwise
layers between convs (norms, activations, residual adds) still pass over the
full width; and XLA's convolutions are less efficient at small channel counts
(a 3x3 conv 8 -> 8 channels at 32x32 costs ~0.4x of 32 -> 32 for 1/16 of the
flops). See ``benchmarks/dynamic.py`` for the measured ratios.

A concrete width has one bucket, its own value, and no mask: the layer is then
exactly the sliced static layer.
"""

from __future__ import annotations

import itertools
import math
from collections.abc import Callable, Sequence
from typing import Any, NamedTuple

import jax
import jax.numpy as jnp
from jax import lax

from jaxmutate.dynamic._width import Width, WidthLike, as_width, is_traced, rank_of
from jaxmutate.errors import SearchSpaceError
from jaxmutate.mutables import switch

__all__ = ["DEFAULT_MAX_BUCKETS", "bucket_widths"]

# Four buckets per axis: 0.25/0.5/0.75/1.0-style candidates dispatch exactly;
# a conv with both widths traced has 16 branches. benchmarks/dynamic.py
# (7 convs, 2-core CPU): the traced forward compiles in 3.8 s with 4 buckets,
# 2.7 s with 2 (min width 0.53x of the static net either way; widths between
# the two buckets then round up to the full width).
DEFAULT_MAX_BUCKETS = 4


def bucket_widths(
  num_channels: int,
  candidates: Sequence[int] | None = None,
  max_buckets: int = DEFAULT_MAX_BUCKETS,
  multiple_of: int = 1,
) -> tuple[int, ...]:
  """The static widths a traced width is rounded up to (sorted, at most ``max_buckets``).

  With candidates: the smallest and the largest candidate and, between them,
  the first candidate at or above evenly spaced targets (every candidate when
  there are at most ``max_buckets``). Without: ``ceil(num_channels * k /
  max_buckets)`` for ``k = 1..max_buckets``. Each bucket is rounded up to a
  multiple of ``multiple_of`` (a grouped conv's group size).

  Args:
    num_channels: the axis' maximum width.
    candidates: the sorted widths a value can take, or ``None`` for any.
    max_buckets: the most buckets (>= 1); 1 means masking at full width.
    multiple_of: buckets are multiples of this (it must divide
      ``num_channels``).

  Returns:
    Sorted distinct bucket widths; the last is the largest reachable width.

  Raises:
    SearchSpaceError: ``max_buckets < 1`` or ``multiple_of`` not dividing
      ``num_channels``.

  Example:
    >>> from jaxmutate.dynamic import bucket_widths
    >>> bucket_widths(64, (16, 32, 48, 64))
    (16, 32, 48, 64)
    >>> bucket_widths(96, [8 * i for i in range(2, 13)])
    (16, 48, 72, 96)
    >>> bucket_widths(32), bucket_widths(32, max_buckets=1)
    ((8, 16, 24, 32), (32,))
  """
  if isinstance(max_buckets, bool) or not isinstance(max_buckets, int) or max_buckets < 1:
    raise SearchSpaceError(f"max_buckets must be an int >= 1, got {max_buckets!r}.")
  if multiple_of < 1 or num_channels % multiple_of:
    raise SearchSpaceError(f"the group size {multiple_of} does not divide num_channels={num_channels}.")
  if candidates is None:
    sizes = {math.ceil(num_channels * k / max_buckets) for k in range(1, max_buckets + 1)}
  else:
    pool = sorted({int(c) for c in candidates})
    if len(pool) <= max_buckets:
      sizes = set(pool)
    elif max_buckets == 1:
      sizes = {pool[-1]}
    else:
      lo, hi = pool[0], pool[-1]
      targets = [lo + (hi - lo) * k / (max_buckets - 1) for k in range(max_buckets)]
      sizes = {next(c for c in pool if c >= t - 1e-9) for t in targets}
  rounded = {min(num_channels, -(-s // multiple_of) * multiple_of) for s in sizes}
  return tuple(sorted(rounded))


class Axis(NamedTuple):
  """One channel axis of a layer, resolved from a width argument.

  Attributes:
    num_channels: the axis' full width.
    sizes: static widths to dispatch among; one (the exact width) when concrete.
    value: the clipped traced width (int32), or ``None`` when concrete.
    order: the width's channel permutation, or ``None`` (a prefix).
  """

  num_channels: int
  sizes: tuple[int, ...]
  value: jax.Array | None
  order: jax.Array | None

  @property
  def kept(self) -> Any:
    """The kept width: the clipped traced value, or the one static size of a concrete width."""
    return self.sizes[0] if self.value is None else self.value

  @property
  def dynamic(self) -> tuple[Any, Any]:
    """The traced parts a branch needs (passed as switch operands, never closed over)."""
    return self.value, self.order

  def index(self) -> jax.Array | int:
    """The bucket a traced width rounds up to (0 when there is one bucket)."""
    if len(self.sizes) == 1:
      return 0
    return jnp.sum(self.value > jnp.asarray(self.sizes[:-1], jnp.int32)).astype(jnp.int32)


def resolve_axis(
  width: WidthLike | None,
  num_channels: int,
  *,
  layer: str,
  argument: str,
  max_buckets: int,
  multiple_of: int = 1,
) -> Axis:
  """Checks a width argument and decides the buckets of its axis (see :func:`bucket_widths`)."""
  w: Width = as_width(width, num_channels, layer=layer, argument=argument)
  if w.order is not None and multiple_of > 1:
    raise SearchSpaceError(
      f"{layer}: {argument} has an order (a non-prefix kept set), but the layer keeps groups of {multiple_of} "
      "channels whole; grouped layers need prefix widths."
    )
  if w.candidates is not None and multiple_of > 1:
    bad = [c for c in w.candidates if c % multiple_of]
    if bad:
      raise SearchSpaceError(
        f"{layer}: {argument} candidates {bad} are not multiples of the group size {multiple_of} "
        "(groups are kept whole)."
      )
  if not is_traced(w.value):
    v = int(w.value)
    if v % multiple_of:
      raise SearchSpaceError(
        f"{layer}: {argument}={v} is not a multiple of the group size {multiple_of} (groups are kept whole)."
      )
    order = None if v == num_channels else w.order
    return Axis(num_channels, (v,), None, order)
  value = jnp.clip(jnp.asarray(w.value).astype(jnp.int32), 1, w.max_value)
  sizes = bucket_widths(num_channels, w.candidates, max_buckets, multiple_of)
  return Axis(num_channels, sizes, value, w.order)


# Channel selection inside a branch. ``size`` is static; ``value``/``order``
# are the axis' traced parts (operands of the branch). A size equal to the
# full width selects everything in place (no gather even with an order).


def take(array: jax.Array, axis: int, size: int, num_channels: int, order: jax.Array | None) -> jax.Array:
  """The ``size`` selected channels of ``array`` along ``axis``."""
  if size == num_channels:
    return array
  if order is None:
    return lax.slice_in_dim(array, 0, size, axis=axis)
  return jnp.take(array, order[:size], axis=axis)


def put(array: jax.Array, axis: int, size: int, num_channels: int, order: jax.Array | None) -> jax.Array:
  """Places ``size`` selected channels back at their positions of a zero full-width array."""
  if size == num_channels:
    return array
  axis = axis % array.ndim
  if order is None:
    pads = [(0, 0)] * array.ndim
    pads[axis] = (0, num_channels - size)
    return jnp.pad(array, pads)
  shape = list(array.shape)
  shape[axis] = num_channels
  index = (slice(None),) * axis + (order[:size],)
  return jnp.zeros(shape, array.dtype).at[index].set(array)


def update(full: jax.Array, part: jax.Array, size: int, num_channels: int, order: jax.Array | None) -> jax.Array:
  """``full`` (a per-channel vector) with its ``size`` selected channels replaced by ``part``."""
  if size == num_channels:
    return part
  if order is None:
    return jnp.concatenate([part, full[size:]])
  return full.at[order[:size]].set(part)


def keep(size: int, num_channels: int, value: jax.Array | None, order: jax.Array | None) -> jax.Array | None:
  """Which of the ``size`` selected channels are kept (``None``: all, no mask needed)."""
  if value is None:
    return None
  if size == num_channels and order is not None:
    return rank_of(order) < value
  return jnp.arange(size, dtype=jnp.int32) < value


def along(mask: jax.Array, ndim: int, axis: int) -> jax.Array:
  """``mask`` reshaped to broadcast along ``axis`` of an ``ndim`` array (no implicit rank promotion)."""
  shape = [1] * ndim
  shape[axis % ndim] = mask.shape[0]
  return mask.reshape(shape)


def masked(array: jax.Array, mask: jax.Array | None, axis: int) -> jax.Array:
  """``array`` times ``mask`` along ``axis`` (``None``: unchanged); zero weights keep zero gradients."""
  if mask is None:
    return array
  return array * along(mask, array.ndim, axis).astype(array.dtype)


def dispatch(
  axes: Sequence[Axis],
  make_branch: Callable[[tuple[int, ...]], Callable[..., Any]],
  *operands: Any,
) -> Any:
  """Runs ``make_branch(sizes)(*operands, dynamics)`` for the buckets the traced widths round up to.

  ``dynamics`` is the tuple of every axis' ``(value, order)``. With one bucket
  per axis the branch is called directly (a concrete width traces to exactly
  its sliced layer); otherwise :func:`jaxmutate.mutables.switch` picks the
  branch of the grid of buckets (in x out for two axes), cheaply under
  ``vmap`` (a batch of widths runs member by member) and ``grad``.
  """
  dynamics = tuple(a.dynamic for a in axes)
  grid = list(itertools.product(*(a.sizes for a in axes)))
  if len(grid) == 1:
    return make_branch(grid[0])(*operands, dynamics)
  index = jnp.int32(0)
  for a in axes:
    index = index * len(a.sizes) + a.index()
  return switch(index, [make_branch(sizes) for sizes in grid], *operands, dynamics)


def layer_name(module: Any) -> str:
  """``Class 'path.to.layer'`` for error messages."""
  path = ".".join(str(p) for p in getattr(getattr(module, "scope", None), "path", ()) or ())
  return f"{type(module).__name__} {path!r}" if path else type(module).__name__
