"""Normalisation layers over the kept channels: BatchNorm, LayerNorm and switchable BatchNorm."""

from __future__ import annotations

import math
from collections.abc import Callable
from typing import Any

import flax.linen as nn
import jax
import jax.numpy as jnp
import numpy as np

from jaxmutate.dynamic._costs import as_count, sow_costs, wants_costs
from jaxmutate.dynamic._dispatch import along, dispatch, keep, layer_name, put, resolve_axis, take, update
from jaxmutate.dynamic._record import record_channels, width_spans
from jaxmutate.dynamic._static import (
  StaticAxis,
  concrete_sizes,
  fit_input,
  is_static_mode,
  record_slices,
  static_axis,
  wants_slices,
)
from jaxmutate.dynamic._width import Width, WidthLike, _unit_suffix, as_width, is_traced
from jaxmutate.errors import ChoiceError, ChoiceTypeError, SearchSpaceError, TracedChoiceError
from jaxmutate.mutables import switch
from jaxmutate.registry import MODELS

__all__ = ["DynamicBatchNorm", "DynamicLayerNorm", "SwitchableBatchNorm"]

# Norms are memory-bound: slicing saves little and a conditional keeps the
# norm from fusing with its neighbours. In benchmarks/dynamic.py (TinyResNet,
# b256, 2-core CPU) bucketed BatchNorms made the traced net slower (full width
# 1.56x vs 1.00x of the static net, min width 0.76x vs 0.58x) than masking at
# the full width; so norms mask by default (max_buckets=1).
NORM_MAX_BUCKETS = 1

Initializer = Callable[..., jax.Array]

# MACs per kept element (see jaxmutate.dynamic._costs): BatchNorm's inference
# form normalises and applies the affine; LayerNorm also computes its statistics.
BATCH_NORM_MACS = 2
LAYER_NORM_MACS = 4


def _norm_costs(module: Any, x: jax.Array, kept: Any, macs_per_element: int) -> None:
  kept = as_count(kept)
  affine = int(module.use_scale) + int(module.use_bias)
  sow_costs(module, macs_per_element * math.prod(x.shape[1:-1]) * kept, affine * kept)


def _record_norm(module: Any, width: Any, channels: int) -> None:
  spans = width_spans(width, channels)
  record_channels(module, spans, spans)  # MMRazor relates a norm on both sides


def _check_last_axis(module: Any, axis: int, ndim: int) -> None:
  if axis % ndim != ndim - 1:
    raise SearchSpaceError(f"{layer_name(module)}: only the last axis can be dynamic (channels last), got axis={axis}.")


def _zero_dropped(y: jax.Array, kept: jax.Array | None) -> jax.Array:
  # ``where``, not a product: dropped inputs may hold anything, even inf.
  return y if kept is None else jnp.where(along(kept, y.ndim, -1), y, jnp.zeros((), y.dtype))


def _batch_norm_step(
  static: nn.BatchNorm, use_running_average: bool, x: jax.Array, params: dict, stats: dict
) -> tuple[jax.Array, dict]:
  """One ``nn.BatchNorm`` call on sliced variables: output and (updated) statistics."""
  variables = {"params": params, "batch_stats": stats}
  if use_running_average:
    return static.apply(variables, x), stats
  y, updated = static.apply(variables, x, mutable=["batch_stats"])
  return y, updated["batch_stats"]


@MODELS.register_module()
class DynamicBatchNorm(nn.Module):
  """``nn.BatchNorm`` over the kept channels (MMRazor's DynamicBatchNorm).

  Variables are those of ``nn.BatchNorm`` (``scale``, ``bias``; ``batch_stats``
  ``mean``, ``var``). ``bn(x, width)`` normalises the kept channels with their
  own statistics and is exactly zero beyond them (whatever ``x`` holds there);
  in training mode only the kept channels' running statistics change. A
  concrete width is the sliced ``nn.BatchNorm``; a traced one is computed at
  the full width and masked (``max_buckets=1``, the default: norms are
  memory-bound and fuse with their neighbours) or dispatched among
  ``max_buckets`` sliced widths.

  Like every dynamic layer it also records, at ``init``, the units its
  widths name (:class:`~jaxmutate.dynamic.LayerChannels`), sows its MACs and
  parameters when the ``costs`` collection is mutable
  (:func:`~jaxmutate.dynamic.dynamic_costs`), and in
  :func:`~jaxmutate.dynamic.static_mode` is the ``nn.BatchNorm`` of its kept
  widths (what :func:`jaxmutate.export.export_subnet` builds on).

  Attributes:
    use_running_average, axis, momentum, epsilon, dtype, param_dtype,
      use_bias, use_scale, bias_init, scale_init, axis_name,
      axis_index_groups, use_fast_variance: as in ``nn.BatchNorm``
      (``axis`` must be the last one).
    max_buckets: static widths a traced width is rounded up to (default 1:
      masking at full width).

  Example:
    >>> import jax, jax.numpy as jnp
    >>> from jaxmutate.dynamic import DynamicBatchNorm
    >>> bn = DynamicBatchNorm(use_running_average=False)
    >>> x = jnp.arange(24.0).reshape(4, 6)
    >>> variables = bn.init(jax.random.key(0), x)
    >>> y, updates = bn.apply(variables, x, 2, mutable=["batch_stats"])
    >>> bool((y[:, 2:] == 0).all()), updates["batch_stats"]["mean"][2:].tolist()
    (True, [0.0, 0.0, 0.0, 0.0])
  """

  use_running_average: bool | None = None
  axis: int = -1
  momentum: float = 0.99
  epsilon: float = 1e-5
  dtype: Any = None
  param_dtype: Any = jnp.float32
  use_bias: bool = True
  use_scale: bool = True
  bias_init: Initializer = nn.initializers.zeros
  scale_init: Initializer = nn.initializers.ones
  axis_name: str | None = None
  axis_index_groups: Any = None
  use_fast_variance: bool = True
  max_buckets: int = NORM_MAX_BUCKETS

  def _static(self, use_running_average: bool) -> nn.BatchNorm:
    return nn.BatchNorm(
      use_running_average=use_running_average,
      momentum=self.momentum,
      epsilon=self.epsilon,
      dtype=self.dtype,
      param_dtype=self.param_dtype,
      use_bias=self.use_bias,
      use_scale=self.use_scale,
      axis_name=self.axis_name,
      axis_index_groups=self.axis_index_groups,
      use_fast_variance=self.use_fast_variance,
      parent=None,
    )

  @nn.compact
  def __call__(
    self, x: jax.Array, width: WidthLike | None = None, use_running_average: bool | None = None
  ) -> jax.Array:
    """Normalises the kept ``width`` channels of ``x`` (channels last).

    Args:
      x: the input; channels beyond ``width`` are ignored.
      width: kept channels (``Width``, int or int32 scalar); ``None`` is all.
      use_running_average: overrides the attribute (as in ``nn.BatchNorm``).

    Returns:
      The normalised ``x``, zero beyond ``width``.
    """
    _check_last_axis(self, self.axis, x.ndim)
    use_running_average = nn.merge_param("use_running_average", self.use_running_average, use_running_average)
    if is_static_mode():
      return self._static_call(x, width, use_running_average)
    channels = x.shape[-1]
    ra_mean, ra_var, scale, bias = self._variables(channels)
    axis = resolve_axis(width, channels, layer=layer_name(self), argument="width", max_buckets=self.max_buckets)
    _record_norm(self, width, channels)
    static = self._static(use_running_average)

    def make(sizes: tuple[int]) -> Callable[..., Any]:
      (b,) = sizes

      def branch(x, scale, bias, mean, var, dynamics):
        ((value, order),) = dynamics
        kept = keep(b, channels, value, order)
        params = {
          name: take(p, 0, b, channels, order) for name, p in (("scale", scale), ("bias", bias)) if p is not None
        }
        stats = {"mean": take(mean, 0, b, channels, order), "var": take(var, 0, b, channels, order)}
        y, new = _batch_norm_step(static, use_running_average, take(x, -1, b, channels, order), params, stats)
        if kept is not None:
          new = {k: jnp.where(kept, new[k], stats[k]) for k in ("mean", "var")}
        y = put(_zero_dropped(y, kept), -1, b, channels, order)
        return y, update(mean, new["mean"], b, channels, order), update(var, new["var"], b, channels, order)

      return branch

    if wants_slices(self):
      concrete_sizes(self, {"width": axis})
      (b,) = axis.sizes
      cut = lambda v: take(v, 0, b, channels, axis.order)
      params = {name: cut(p) for name, p in (("scale", scale), ("bias", bias)) if p is not None}
      record_slices(self, {"params": params, "batch_stats": {"mean": cut(ra_mean.value), "var": cut(ra_var.value)}})
    y, new_mean, new_var = dispatch([axis], make, x, scale, bias, ra_mean.value, ra_var.value)
    if not use_running_average and not self.is_initializing():
      ra_mean.value, ra_var.value = new_mean, new_var
    if wants_costs(self):
      _norm_costs(self, x, axis.kept, BATCH_NORM_MACS)
    return y

  def _variables(self, channels: int) -> tuple[Any, Any, jax.Array | None, jax.Array | None]:
    ra_mean = self.variable("batch_stats", "mean", lambda s: jnp.zeros(s, jnp.float32), (channels,))
    ra_var = self.variable("batch_stats", "var", lambda s: jnp.ones(s, jnp.float32), (channels,))
    scale = self.param("scale", self.scale_init, (channels,), self.param_dtype) if self.use_scale else None
    bias = self.param("bias", self.bias_init, (channels,), self.param_dtype) if self.use_bias else None
    return ra_mean, ra_var, scale, bias

  def _static_call(self, x: jax.Array, width: WidthLike | None, use_running_average: bool) -> jax.Array:
    """Static mode: the ``nn.BatchNorm`` of the kept channels."""
    name = layer_name(self)
    axis = static_axis(width, x.shape[-1], layer=name, argument="width")
    x = fit_input(x, axis, layer=name, argument="width")
    ra_mean, ra_var, scale, bias = self._variables(axis.kept)
    params = {name: p for name, p in (("scale", scale), ("bias", bias)) if p is not None}
    stats = {"mean": ra_mean.value, "var": ra_var.value}
    y, new = _batch_norm_step(self._static(use_running_average), use_running_average, x, params, stats)
    if not use_running_average and not self.is_initializing():
      ra_mean.value, ra_var.value = new["mean"], new["var"]
    if wants_costs(self):
      _norm_costs(self, x, axis.kept, BATCH_NORM_MACS)
    return y


@MODELS.register_module()
class DynamicLayerNorm(nn.Module):
  """``nn.LayerNorm`` over the kept features only (MMRazor's DynamicLayerNorm).

  Variables are those of ``nn.LayerNorm`` (``scale``, ``bias`` of the full
  feature size). ``ln(x, width)`` computes the mean and variance over the
  kept features, applies their slice of the affine parameters and is exactly
  zero beyond them.

  Like every dynamic layer it also records, at ``init``, the units its
  widths name (:class:`~jaxmutate.dynamic.LayerChannels`), sows its MACs and
  parameters when the ``costs`` collection is mutable
  (:func:`~jaxmutate.dynamic.dynamic_costs`), and in
  :func:`~jaxmutate.dynamic.static_mode` is the ``nn.LayerNorm`` of its kept
  widths (what :func:`jaxmutate.export.export_subnet` builds on).

  Attributes:
    epsilon, dtype, param_dtype, use_bias, use_scale, bias_init, scale_init,
      use_fast_variance: as in ``nn.LayerNorm`` (features on the last axis).
    max_buckets: static widths a traced width is rounded up to (default 1:
      masking at full width).

  Example:
    >>> import jax, jax.numpy as jnp
    >>> from jaxmutate.dynamic import DynamicLayerNorm
    >>> ln = DynamicLayerNorm()
    >>> x = jnp.array([[1.0, 3.0, 100.0, -7.0]])
    >>> variables = ln.init(jax.random.key(0), x)
    >>> jnp.round(ln.apply(variables, x, 2), 3).tolist()
    [[-1.0, 1.0, 0.0, 0.0]]
  """

  epsilon: float = 1e-6
  dtype: Any = None
  param_dtype: Any = jnp.float32
  use_bias: bool = True
  use_scale: bool = True
  bias_init: Initializer = nn.initializers.zeros
  scale_init: Initializer = nn.initializers.ones
  use_fast_variance: bool = True
  max_buckets: int = NORM_MAX_BUCKETS

  @nn.compact
  def __call__(self, x: jax.Array, width: WidthLike | None = None) -> jax.Array:
    """Normalises ``x`` over its kept ``width`` features (last axis).

    Args:
      x: the input; features beyond ``width`` are ignored.
      width: kept features (``Width``, int or int32 scalar); ``None`` is all.

    Returns:
      The normalised ``x``, zero beyond ``width``.
    """
    name = layer_name(self)
    static = nn.LayerNorm(
      epsilon=self.epsilon,
      dtype=self.dtype,
      param_dtype=self.param_dtype,
      use_bias=self.use_bias,
      use_scale=self.use_scale,
      use_fast_variance=self.use_fast_variance,
      parent=None,
    )
    if is_static_mode():
      axis = static_axis(width, x.shape[-1], layer=name, argument="width")
      x = fit_input(x, axis, layer=name, argument="width")
      scale, bias = self._variables(axis.kept)
      params = {name: p for name, p in (("scale", scale), ("bias", bias)) if p is not None}
      if wants_costs(self):
        _norm_costs(self, x, axis.kept, LAYER_NORM_MACS)
      return static.apply({"params": params}, x)
    features = x.shape[-1]
    scale, bias = self._variables(features)
    axis = resolve_axis(width, features, layer=name, argument="width", max_buckets=self.max_buckets)
    _record_norm(self, width, features)

    def make(sizes: tuple[int]) -> Callable[..., jax.Array]:
      (b,) = sizes

      def branch(x, scale, bias, dynamics):
        ((value, order),) = dynamics
        kept = keep(b, features, value, order)
        params = {
          name: take(p, 0, b, features, order) for name, p in (("scale", scale), ("bias", bias)) if p is not None
        }
        xs = take(x, -1, b, features, order)
        mask = None if kept is None else jnp.broadcast_to(along(kept, xs.ndim, -1), xs.shape)
        y = static.apply({"params": params}, xs, mask=mask)
        return put(_zero_dropped(y, kept), -1, b, features, order)

      return branch

    if wants_slices(self):
      concrete_sizes(self, {"width": axis})
      (b,) = axis.sizes
      params = {n: take(p, 0, b, features, axis.order) for n, p in (("scale", scale), ("bias", bias)) if p is not None}
      record_slices(self, {"params": params})
    if wants_costs(self):
      _norm_costs(self, x, axis.kept, LAYER_NORM_MACS)
    return dispatch([axis], make, x, scale, bias)

  def _variables(self, features: int) -> tuple[jax.Array | None, jax.Array | None]:
    scale = self.param("scale", self.scale_init, (features,), self.param_dtype) if self.use_scale else None
    bias = self.param("bias", self.bias_init, (features,), self.param_dtype) if self.use_bias else None
    return scale, bias


class _BatchNormVariables(nn.Module):
  """The variables of one ``nn.BatchNorm(features)``, declared but not applied."""

  features: int
  use_scale: bool
  use_bias: bool
  scale_init: Initializer
  bias_init: Initializer
  param_dtype: Any

  def setup(self) -> None:
    shape = (self.features,)
    self.mean = self.variable("batch_stats", "mean", lambda s: jnp.zeros(s, jnp.float32), shape)
    self.var = self.variable("batch_stats", "var", lambda s: jnp.ones(s, jnp.float32), shape)
    self.scale = self.param("scale", self.scale_init, shape, self.param_dtype) if self.use_scale else None
    self.bias = self.param("bias", self.bias_init, shape, self.param_dtype) if self.use_bias else None

  def __call__(self) -> tuple[dict, dict]:
    params = {name: p for name, p in (("scale", self.scale), ("bias", self.bias)) if p is not None}
    return params, {"mean": self.mean.value, "var": self.var.value}

  def store(self, stats: dict) -> None:
    self.mean.value, self.var.value = stats["mean"], stats["var"]


@MODELS.register_module()
class SwitchableBatchNorm(nn.Module):
  """One BatchNorm per candidate width (Slimmable networks; MMRazor's SwitchableBatchNorm2d).

  Candidate ``w`` has its own statistics and affine parameters, the
  variables of ``nn.BatchNorm`` over ``w`` channels, in the submodule
  ``candidate_bn_{w}``. ``sbn(x, choice)`` normalises the first ``w``
  channels with candidate ``w``'s BatchNorm and is zero beyond them; only that
  candidate's statistics change in training mode.

  ``choice`` is an index into the sorted ``candidates`` (int or int32 scalar;
  a traced index is clipped into range) or a :class:`Width` of those
  candidates (a traced width that is no candidate uses the next larger
  candidate's BatchNorm, masked to the width).

  Like every dynamic layer it also records, at ``init``, the units its
  widths name (:class:`~jaxmutate.dynamic.LayerChannels`), sows its MACs and
  parameters when the ``costs`` collection is mutable
  (:func:`~jaxmutate.dynamic.dynamic_costs`), and in
  :func:`~jaxmutate.dynamic.static_mode` is the chosen candidate's ``nn.BatchNorm`` of its kept
  widths (what :func:`jaxmutate.export.export_subnet` builds on).

  Attributes:
    candidates: the widths (sorted and de-duplicated; each in
      ``[1, channels]``).
    use_running_average, momentum, epsilon, dtype, param_dtype, use_bias,
      use_scale, bias_init, scale_init, axis_name, axis_index_groups,
      use_fast_variance: as in ``nn.BatchNorm``.

  Example:
    >>> import jax, jax.numpy as jnp
    >>> from jaxmutate.dynamic import SwitchableBatchNorm
    >>> sbn = SwitchableBatchNorm(candidates=(2, 4), use_running_average=False)
    >>> x = jnp.arange(16.0).reshape(4, 4)
    >>> variables = sbn.init(jax.random.key(0), x, 0)
    >>> sorted(variables["params"])
    ['candidate_bn_2', 'candidate_bn_4']
    >>> step = jax.jit(lambda i: sbn.apply(variables, x, i, mutable=["batch_stats"]))
    >>> y, updates = step(0)   # a traced index: candidate 2's BatchNorm
    >>> y.shape, bool((y[:, 2:] == 0).all()), updates["batch_stats"]["candidate_bn_4"]["mean"].tolist()
    ((4, 4), True, [0.0, 0.0, 0.0, 0.0])
  """

  candidates: tuple[int, ...]
  use_running_average: bool | None = None
  momentum: float = 0.99
  epsilon: float = 1e-5
  dtype: Any = None
  param_dtype: Any = jnp.float32
  use_bias: bool = True
  use_scale: bool = True
  bias_init: Initializer = nn.initializers.zeros
  scale_init: Initializer = nn.initializers.ones
  axis_name: str | None = None
  axis_index_groups: Any = None
  use_fast_variance: bool = True

  def _sorted_candidates(self, channels: int | None) -> tuple[int, ...]:
    name = layer_name(self)
    try:
      candidates = tuple(sorted({int(c) for c in self.candidates}))
    except (TypeError, ValueError):
      raise SearchSpaceError(
        f"{name}: candidates must be ints (numbers of channels), got {self.candidates!r}."
      ) from None
    if not candidates or any(isinstance(c, (bool, float)) for c in self.candidates):
      raise SearchSpaceError(f"{name}: candidates must be a non-empty tuple of ints, got {self.candidates!r}.")
    bad = [c for c in candidates if not 1 <= c <= (candidates[-1] if channels is None else channels)]
    if bad:
      raise SearchSpaceError(f"{name}: candidates {bad} are outside [1, {channels}] (the input's channels).")
    return candidates

  def _resolve(self, choice: Any, candidates: tuple[int, ...], channels: int) -> tuple[Any, Any]:
    """(candidate index, width to mask to or None): concrete ints, or traced int32 arrays."""
    name = layer_name(self)
    if isinstance(choice, Width):
      width = as_width(choice, channels, layer=name, argument="width")
      if width.order is not None:
        raise SearchSpaceError(f"{name}: switchable BatchNorm keeps prefixes of channels; got a width with an order.")
      if width.candidates is not None and width.candidates != candidates:
        raise SearchSpaceError(
          f"{name}: the width's candidates {width.candidates}{_unit_suffix(width.unit)} are not this layer's "
          f"candidates {candidates}."
        )
      if not is_traced(width.value):
        if width.value not in candidates:
          raise ChoiceError(f"{name}: width={width.value} is not among the candidates {candidates}.")
        return candidates.index(width.value), None
      value = jnp.clip(jnp.asarray(width.value).astype(jnp.int32), 1, candidates[-1])
      return jnp.sum(value > jnp.asarray(candidates[:-1], jnp.int32)).astype(jnp.int32), value
    dtype = getattr(choice, "dtype", None)
    if (
      isinstance(choice, (bool, np.bool_, float, np.floating))
      or (dtype is not None and not jnp.issubdtype(dtype, jnp.integer))
      or not isinstance(choice, (int, np.integer, np.ndarray, jax.Array))
    ):
      raise ChoiceTypeError(
        f"{name}: the choice must be an int index into the candidates {candidates} or a Width, got {choice!r}."
      )
    if np.ndim(choice) != 0:
      raise ChoiceError(f"{name}: the choice must be a scalar index, got shape {np.shape(choice)}.")
    if not is_traced(choice):
      index = int(np.asarray(choice))
      if not 0 <= index < len(candidates):
        raise ChoiceError(
          f"{name}: choice index {index} is outside [0, {len(candidates) - 1}] (candidates {candidates})."
        )
      return index, None
    return jnp.clip(jnp.asarray(choice).astype(jnp.int32), 0, len(candidates) - 1), None

  def _norm(self, width: int) -> _BatchNormVariables:
    return _BatchNormVariables(
      width,
      self.use_scale,
      self.use_bias,
      self.scale_init,
      self.bias_init,
      self.param_dtype,
      name=f"candidate_bn_{width}",
    )

  def _static_call(self, x: jax.Array, choice: Any, static: nn.BatchNorm, use_running_average: bool) -> jax.Array:
    """Static mode: only the chosen candidate's BatchNorm (its variables under the same name)."""
    name = layer_name(self)
    full = choice.num_channels if isinstance(choice, Width) else None
    if is_traced(choice.value if isinstance(choice, Width) else choice):
      raise TracedChoiceError(f"{name}: the choice is traced, but a static subnet has concrete widths.")
    candidates = self._sorted_candidates(full)
    index, _ = self._resolve(choice, candidates, full if full is not None else candidates[-1])
    width = candidates[index]
    x = fit_input(x, StaticAxis(width, full, None), layer=name, argument="width")
    norm = self._norm(width)
    params, stats = norm()
    y, new = _batch_norm_step(static, use_running_average, x, params, stats)
    if not use_running_average and not self.is_initializing():
      norm.store(new)
    if wants_costs(self):
      _norm_costs(self, x, width, BATCH_NORM_MACS)
    return y

  @nn.compact
  def __call__(self, x: jax.Array, choice: Any, use_running_average: bool | None = None) -> jax.Array:
    """Normalises the chosen candidate's channels of ``x`` (channels last) with its own BatchNorm.

    Args:
      x: ``(..., channels)``; channels beyond the chosen width are ignored.
      choice: an index into the sorted candidates, or a :class:`Width`.
      use_running_average: overrides the attribute (as in ``nn.BatchNorm``).

    Returns:
      The normalised ``x``, zero beyond the chosen width.
    """
    use_running_average = nn.merge_param("use_running_average", self.use_running_average, use_running_average)
    static = nn.BatchNorm(
      use_running_average=use_running_average,
      momentum=self.momentum,
      epsilon=self.epsilon,
      dtype=self.dtype,
      param_dtype=self.param_dtype,
      use_bias=self.use_bias,
      use_scale=self.use_scale,
      axis_name=self.axis_name,
      axis_index_groups=self.axis_index_groups,
      use_fast_variance=self.use_fast_variance,
      parent=None,
    )
    if is_static_mode():
      return self._static_call(x, choice, static, use_running_average)
    channels = x.shape[-1]
    candidates = self._sorted_candidates(channels)
    norms = [self._norm(w) for w in candidates]
    variables = [norm() for norm in norms]
    index, value = self._resolve(choice, candidates, channels)
    if isinstance(choice, Width):
      _record_norm(self, choice, channels)
    if wants_costs(self):
      kept = candidates[index] if isinstance(index, int) else jnp.asarray(candidates, jnp.int32)[index]
      _norm_costs(self, x, kept if value is None else value, BATCH_NORM_MACS)

    def make(i: int) -> Callable[..., Any]:
      w = candidates[i]

      def branch(x, variables, value):
        params, stats = variables[i]
        y, new = _batch_norm_step(static, use_running_average, take(x, -1, w, channels, None), params, stats)
        kept = keep(w, channels, value, None)
        if kept is not None:
          new = {k: jnp.where(kept, new[k], stats[k]) for k in ("mean", "var")}
        all_stats = [s for _, s in variables]
        all_stats[i] = new
        return put(_zero_dropped(y, kept), -1, w, channels, None), all_stats

      return branch

    if isinstance(index, int):
      y, all_stats = make(index)(x, variables, value)
    else:
      y, all_stats = switch(index, [make(i) for i in range(len(candidates))], x, variables, value)
    if not use_running_average and not self.is_initializing():
      for norm, stats in zip(norms, all_stats):
        norm.store(stats)
    return y
