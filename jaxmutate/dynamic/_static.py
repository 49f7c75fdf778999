"""Static subnets: dynamic layers that are the plain layers of their kept widths.

Two things turn a supernet of dynamic layers into a smaller network with real
weights (see :func:`jaxmutate.export_subnet`):

- **Static mode** (``with static_mode():``, entered by the exported
  network's own call): every dynamic layer takes concrete widths only,
  declares its variables at the *kept* shapes (under the same names) and
  computes exactly the ``nn.Conv``/``nn.Dense``/``nn.BatchNorm`` of those
  shapes. Activations then hold only the kept channels, in the order the
  widths keep them (``order[:kept]`` for L1-style widths), and a layer's
  input must hold either the kept channels or all of them (it then selects
  the kept ones). Nothing is recorded in the ``mutables`` collection.
- **Slices** (the collection :data:`SLICES_COLLECTION` made mutable in a
  supernet ``apply`` with concrete choices): every dynamic layer records a
  :class:`LayerSlices`, its variables cut to the kept widths (kept input and
  output channels of a kernel, the kept statistics of a norm), which the
  static network's variables are assembled from.
"""

from __future__ import annotations

import contextlib
import contextvars
from collections.abc import Iterator, Mapping
from typing import Any, NamedTuple

import jax
import numpy as np
from flax import struct

from jaxmutate.dynamic._dispatch import Axis, layer_name, take
from jaxmutate.dynamic._width import Width, as_width, is_traced
from jaxmutate.errors import SearchSpaceError, TracedChoiceError

__all__ = ["SLICES_COLLECTION", "LayerSlices", "full_channels", "is_static_mode", "static_mode"]

SLICES_COLLECTION = "subnet_slices"
"""The collection where dynamic layers record their sliced variables (:class:`LayerSlices`)."""

_SLICES_KEY = "slices"

# Set for the extent of a static network's call (trace time): the dynamic
# layers it reaches read it while Flax runs their ``__call__``.
_STATIC_MODE: contextvars.ContextVar[bool] = contextvars.ContextVar("jaxmutate_dynamic_static_mode", default=False)


@contextlib.contextmanager
def static_mode(enabled: bool = True) -> Iterator[None]:
  """Within this context, dynamic layers are the static layers of their (concrete) kept widths.

  The exported network (:class:`jaxmutate.export.FixedSubnet`) enters it around
  its supernet's call; call it yourself only to build such a network by hand.
  It is read while a module's Python code runs (at trace time), so it holds
  under ``jit``, ``grad`` and ``vmap`` of the call made inside it.

  Args:
    enabled: ``False`` turns static mode off inside an enclosing one.

  Example:
    >>> import jax, jax.numpy as jnp
    >>> from jaxmutate.dynamic import DynamicConv, is_static_mode, static_mode
    >>> conv, x = DynamicConv(8, 3), jnp.ones((1, 5, 5, 4))
    >>> with static_mode():
    ...   variables = conv.init(jax.random.key(0), x, out_width=3)
    ...   y = conv.apply(variables, x, out_width=3)
    >>> variables["params"]["kernel"].shape, y.shape, is_static_mode()
    ((3, 3, 4, 3), (1, 5, 5, 3), False)
  """
  token = _STATIC_MODE.set(bool(enabled))
  try:
    yield
  finally:
    _STATIC_MODE.reset(token)


def is_static_mode() -> bool:
  """Whether dynamic layers run as static layers of their kept widths (see :func:`static_mode`).

  Example:
    >>> from jaxmutate.dynamic import is_static_mode, static_mode
    >>> with static_mode():
    ...   inside = is_static_mode()
    >>> inside, is_static_mode()
    (True, False)
  """
  return _STATIC_MODE.get()


@struct.dataclass
class LayerSlices:
  """One dynamic layer's variables cut to its kept widths, recorded for a static subnet.

  Attributes:
    path: (static) the layer's Flax module path joined with ``.``.
    variables: ``{collection: {variable name: array}}``: the kept parts of
      the layer's own variables (e.g. ``{"params": {"kernel": ...}}``).

  Example:
    >>> import jax, jax.numpy as jnp
    >>> from jaxmutate.dynamic import DynamicDense, SLICES_COLLECTION
    >>> dense, x = DynamicDense(6), jnp.ones((1, 4))
    >>> variables = dense.init(jax.random.key(0), x)
    >>> _, state = dense.apply(variables, x, out_width=2, in_width=3, mutable=[SLICES_COLLECTION])
    >>> jax.tree.map(jnp.shape, state[SLICES_COLLECTION]["slices"].variables)
    {'params': {'bias': (2,), 'kernel': (3, 2)}}
  """

  path: str = struct.field(pytree_node=False)
  variables: dict[str, dict[str, Any]]


def wants_slices(module: Any) -> bool:
  """Whether ``module`` should record its :class:`LayerSlices` (a supernet ``apply`` that asks for them)."""
  return not module.is_initializing() and not is_static_mode() and module.is_mutable_collection(SLICES_COLLECTION)


def record_slices(module: Any, variables: Mapping[str, Mapping[str, Any]]) -> None:
  """Records ``variables`` (cut to the kept widths) as ``module``'s :class:`LayerSlices`.

  Raises:
    SearchSpaceError: the layer was called before with other kept widths (a
      static network has one shape per layer).
  """
  path = ".".join(str(p) for p in module.scope.path)
  variables = {col: dict(tree) for col, tree in variables.items() if tree}
  if module.has_variable(SLICES_COLLECTION, _SLICES_KEY):
    before = module.get_variable(SLICES_COLLECTION, _SLICES_KEY)
    shapes = lambda tree: jax.tree.map(np.shape, tree)
    if shapes(before.variables) != shapes(variables):
      raise SearchSpaceError(
        f"{layer_name(module)} is called twice with different kept widths ({shapes(before.variables)} and "
        f"{shapes(variables)}); a static subnet has one shape per layer."
      )
  module.put_variable(SLICES_COLLECTION, _SLICES_KEY, LayerSlices(path, variables))


def concrete_sizes(module: Any, axes: Mapping[str, Axis]) -> None:
  """Raises unless every axis has a concrete width (slices need static shapes)."""
  for argument, axis in axes.items():
    if axis.value is not None:
      raise TracedChoiceError(
        f"{layer_name(module)}: {argument} is traced; slicing a subnet's variables needs concrete widths "
        "(call with concrete choices, outside jit/vmap over the choices)."
      )


def full_channels(x: jax.Array, width: Any = None) -> int:
  """The full (supernet) channel count of ``x``'s last axis: ``width.num_channels`` for a ``Width``.

  In the static network a dynamic layer's output holds only the kept
  channels, so a module that decides its structure from its input's channel
  count (a hidden width ``in * expand_ratio``, whether a residual add or a
  projection shortcut exists) must read the full count from the width, not
  from ``x.shape[-1]``. Without a ``Width`` this is ``x.shape[-1]``.

  Example:
    >>> import jax.numpy as jnp
    >>> from jaxmutate.dynamic import Width, full_channels
    >>> x = jnp.ones((1, 4, 4, 6))  # 6 kept channels of 24 in a static subnet
    >>> full_channels(x, Width(6, 24)), full_channels(x), full_channels(x, 6)
    (24, 6, 6)
  """
  if isinstance(width, Width):
    return width.num_channels
  return int(x.shape[-1])


class StaticAxis(NamedTuple):
  """One channel axis of a layer in static mode.

  Attributes:
    kept: the number of kept channels (the static layer's size on that axis).
    num_channels: the supernet's full width when known (a ``Width`` knows
      it), else ``None``.
    order: the kept channels' positions among all of them (a width's
      ``order``), or ``None`` for a prefix; used only to select the kept
      channels of an input that holds all of them.
  """

  kept: int
  num_channels: int | None
  order: Any


def static_axis(width: Any, default: int, *, layer: str, argument: str, full: int | None = None) -> StaticAxis:
  """Resolves a width argument in static mode; ``None`` is ``default`` (the input's channels, or ``features``).

  ``full`` is the axis' full width when the layer knows it (an output axis:
  ``features``); a ``Width`` must then have as many channels.

  Raises:
    TracedChoiceError: a traced width.
    ChoiceError, ChoiceTypeError, SearchSpaceError: as :func:`~jaxmutate.dynamic.as_width`.
  """
  if width is None:
    return StaticAxis(int(default), int(default), None)
  if isinstance(width, Width):
    if is_traced(width.value):
      raise TracedChoiceError(
        f"{layer}: {argument} is traced{_unit(width)}, but a static subnet has concrete widths: build it from "
        "concrete choices."
      )
    if full is not None and width.num_channels != full:
      raise SearchSpaceError(
        f"{layer}: {argument} is a Width of num_channels={width.num_channels}{_unit(width)}, but the layer has "
        f"{full} channels on that axis. In a static subnet inputs hold only their kept channels: a module that "
        "sizes this layer from x.shape[-1] must use jaxmutate.dynamic.full_channels(x, width) instead."
      )
    w = as_width(width, width.num_channels, layer=layer, argument=argument)
    kept = int(w.value)
    return StaticAxis(kept, w.num_channels, None if kept == w.num_channels else w.order)
  if is_traced(width):
    raise TracedChoiceError(f"{layer}: {argument} is traced, but a static subnet has concrete widths.")
  w = as_width(width, default, layer=layer, argument=argument)
  return StaticAxis(int(w.value), None, None)


def fit_input(x: jax.Array, axis: StaticAxis, *, layer: str, argument: str) -> jax.Array:
  """``x`` with exactly the kept channels on its last axis: as it is, or its kept channels selected.

  Raises:
    SearchSpaceError: ``x`` holds neither the kept channels nor all of them.
  """
  channels = x.shape[-1]
  if channels == axis.kept:
    return x
  full = axis.num_channels
  if channels > axis.kept and (full is None or channels == full):
    return take(x, -1, axis.kept, channels, axis.order if full is not None else None)
  expected = f"{axis.kept}" + (f" (or all {full})" if full is not None else "")
  raise SearchSpaceError(
    f"{layer}: in a static subnet its {argument} keeps {axis.kept} channels, so its input must hold {expected} "
    f"channels, but it has {channels}: the layer producing them must keep the same width."
  )


def _unit(width: Width) -> str:
  return f" (unit {width.unit!r})" if width.unit else ""
