"""Convolutions whose kept input and output widths are inputs: dense, grouped and depthwise."""

from __future__ import annotations

import math
from collections.abc import Callable, Sequence
from typing import Any

import flax.linen as nn
import jax
import jax.numpy as jnp

from jaxmutate.dynamic._costs import as_count, sow_costs, wants_costs
from jaxmutate.dynamic._dispatch import (
  DEFAULT_MAX_BUCKETS,
  Axis,
  dispatch,
  keep,
  layer_name,
  masked,
  put,
  resolve_axis,
  take,
)
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
from jaxmutate.dynamic._width import WidthLike
from jaxmutate.errors import SearchSpaceError
from jaxmutate.ops import DepthwiseConv
from jaxmutate.registry import MODELS

__all__ = ["DynamicConv", "DynamicDepthwiseConv"]

PaddingLike = str | int | Sequence[int | tuple[int, int]]
IntOrSeq = int | Sequence[int]


def _group_input_mask(k: jax.Array, in_group: int, out_group: int, limit: Any) -> jax.Array:
  """A grouped kernel ``(..., in_group, b)`` with the inputs at or beyond ``limit`` zeroed."""
  b = k.shape[-1]
  # Input channel r of the group of output column j is (j // out_group) * in_group + r.
  column_group = jnp.arange(b, dtype=jnp.int32)[None, :] // out_group
  channel = column_group * in_group + jnp.arange(in_group, dtype=jnp.int32)[:, None]
  return k * (channel < limit).reshape((1,) * (k.ndim - 2) + (in_group, b)).astype(k.dtype)


def _conv_costs(module: Any, y: jax.Array, kernel_size: tuple[int, ...], in_per_group: Any, out: Any) -> None:
  """Sows a conv's MACs and parameters: ``in_per_group`` inputs feed each of the ``out`` kept outputs."""
  taps = math.prod(kernel_size)
  weights = taps * as_count(in_per_group) * as_count(out)
  macs = math.prod(y.shape[1:-1]) * weights
  sow_costs(module, macs, weights + as_count(out) if module.use_bias else weights)


@MODELS.register_module()
class DynamicConv(nn.Module):
  """``nn.Conv`` whose kept output and input widths are call arguments.

  Variables are those of ``nn.Conv`` with the same attributes (``kernel`` of
  shape ``kernel_size + (in_features // feature_group_count, features)``,
  ``bias`` ``(features,)``, same initialisers), so at full width the layer is
  ``nn.Conv`` and a subnet's parameters are slices of these.

  ``conv(x, out_width, in_width)`` keeps ``in_width`` input channels (the rest
  of ``x`` is ignored: multiplied by zero weights) and computes ``out_width``
  output channels; the output keeps the full shape ``(..., features)`` with
  exact zeros beyond ``out_width``. Concrete widths trace to exactly the
  sliced ``nn.Conv``; traced widths dispatch among statically sliced buckets
  (see :mod:`jaxmutate.dynamic._dispatch` and ``max_buckets``).

  A grouped conv (``feature_group_count > 1``) keeps groups whole: widths
  must be multiples of the group sizes (checked for concrete widths and
  candidates), and only the output axis is dispatched on.

  Like every dynamic layer it also records, at ``init``, the units its
  widths name (:class:`~jaxmutate.dynamic.LayerChannels`), sows its MACs and
  parameters when the ``costs`` collection is mutable
  (:func:`~jaxmutate.dynamic.dynamic_costs`), and in
  :func:`~jaxmutate.dynamic.static_mode` is the ``nn.Conv`` of its kept
  widths (what :func:`jaxmutate.export.export_subnet` builds on).

  Attributes:
    features: the maximum number of output channels.
    kernel_size: int (the same for every spatial axis) or a tuple.
    strides, padding, input_dilation, kernel_dilation, feature_group_count,
      use_bias, dtype, param_dtype, precision, kernel_init, bias_init: as in
      ``nn.Conv``.
    max_buckets: static widths per traced axis (see
      :func:`~jaxmutate.dynamic.bucket_widths`); 1 means masking only.

  Example:
    >>> import jax, jax.numpy as jnp
    >>> from jaxmutate.dynamic import DynamicConv, Width
    >>> conv = DynamicConv(features=8, kernel_size=3)
    >>> x = jnp.ones((2, 6, 6, 4))
    >>> variables = conv.init(jax.random.key(0), x)
    >>> y = conv.apply(variables, x, out_width=3, in_width=2)   # concrete: the sliced conv
    >>> y.shape, bool((y[..., 3:] == 0).all())
    ((2, 6, 6, 8), True)
    >>> f = jax.jit(lambda w: conv.apply(variables, x, Width(w, 8, candidates=(2, 4, 8))))
    >>> bool(jnp.allclose(f(2), conv.apply(variables, x, 2), atol=1e-6))   # traced: one compile
    True
  """

  features: int
  kernel_size: IntOrSeq
  strides: None | IntOrSeq = 1
  padding: PaddingLike = "SAME"
  input_dilation: None | IntOrSeq = 1
  kernel_dilation: None | IntOrSeq = 1
  feature_group_count: int = 1
  use_bias: bool = True
  dtype: Any = None
  param_dtype: Any = jnp.float32
  precision: Any = None
  kernel_init: Callable[..., jax.Array] = nn.linear.default_kernel_init
  bias_init: Callable[..., jax.Array] = nn.initializers.zeros_init()
  max_buckets: int = DEFAULT_MAX_BUCKETS

  def _static(self, features: int, groups: int, kernel_size: tuple[int, ...]) -> nn.Conv:
    return nn.Conv(
      features,
      kernel_size,
      strides=self.strides,
      padding=self.padding,
      input_dilation=self.input_dilation,
      kernel_dilation=self.kernel_dilation,
      feature_group_count=groups,
      use_bias=self.use_bias,
      dtype=self.dtype,
      param_dtype=self.param_dtype,
      precision=self.precision,
      parent=None,
    )

  @nn.compact
  def __call__(self, x: jax.Array, out_width: WidthLike | None = None, in_width: WidthLike | None = None) -> jax.Array:
    """Applies the conv to ``x`` (channels last), keeping ``in_width`` inputs and ``out_width`` outputs.

    Args:
      x: ``(batch, *spatial, in_features)``.
      out_width: kept output channels (``Width``, int or int32 scalar);
        ``None`` is ``features``.
      in_width: kept input channels; ``None`` is ``x.shape[-1]``.

    Returns:
      ``(batch, *spatial_out, features)``, zero beyond ``out_width``.
    """
    name = layer_name(self)
    if isinstance(self.kernel_size, int):
      kernel_size = (self.kernel_size,) * (x.ndim - 2)
    else:
      kernel_size = tuple(self.kernel_size)
    if is_static_mode():
      return self._static_call(x, out_width, in_width, kernel_size)
    in_features, features, groups = x.shape[-1], self.features, self.feature_group_count
    self._check_groups(in_features)
    in_group, out_group = in_features // groups, features // groups
    kernel = self.param("kernel", self.kernel_init, kernel_size + (in_group, features), self.param_dtype)
    bias = self.param("bias", self.bias_init, (features,), self.param_dtype) if self.use_bias else None
    multiple = groups > 1
    out_axis = resolve_axis(
      out_width,
      features,
      layer=name,
      argument="out_width",
      max_buckets=self.max_buckets,
      multiple_of=out_group if multiple else 1,
    )
    in_axis = resolve_axis(
      in_width,
      in_features,
      layer=name,
      argument="in_width",
      max_buckets=self.max_buckets,
      multiple_of=in_group if multiple else 1,
    )
    record_channels(self, width_spans(out_width, features), width_spans(in_width, in_features))
    if groups == 1:
      y = dispatch([in_axis, out_axis], self._dense_branch(kernel_size, in_features), x, kernel, bias)
    else:
      y = dispatch(
        [out_axis], self._group_branch(kernel_size, in_axis, in_group, out_group), x, kernel, bias, in_axis.value
      )
    if wants_slices(self):
      concrete_sizes(self, {"out_width": out_axis, "in_width": in_axis})
      record_slices(self, {"params": self._slices(kernel, bias, in_axis, out_axis, in_group, out_group)})
    if wants_costs(self):
      out = out_axis.kept
      _conv_costs(self, y, kernel_size, in_axis.kept if groups == 1 else in_group, out)
    return y

  def _check_groups(self, in_features: int) -> None:
    groups, features = self.feature_group_count, self.features
    if groups < 1 or in_features % groups or features % groups:
      raise SearchSpaceError(
        f"{layer_name(self)}: feature_group_count={groups} must divide the input channels ({in_features}) and "
        f"features ({features})."
      )

  def _slices(
    self, kernel: jax.Array, bias: jax.Array | None, in_axis: Axis, out_axis: Axis, in_group: int, out_group: int
  ) -> dict[str, jax.Array]:
    """The kernel and bias of the statically sliced conv (concrete widths)."""
    (a,), (b,) = in_axis.sizes, out_axis.sizes
    in_features, features = in_axis.num_channels, out_axis.num_channels
    if self.feature_group_count == 1:
      k = take(take(kernel, -2, a, in_features, in_axis.order), -1, b, features, out_axis.order)
    else:
      k = take(kernel, -1, b, features, None)
      if a < (b // out_group) * in_group:
        k = _group_input_mask(k, in_group, out_group, a)
    params = {"kernel": k}
    if bias is not None:
      params["bias"] = take(bias, 0, b, features, out_axis.order)
    return params

  def _static_call(
    self, x: jax.Array, out_width: WidthLike | None, in_width: WidthLike | None, kernel_size: tuple[int, ...]
  ) -> jax.Array:
    """Static mode: the ``nn.Conv`` of the kept widths, on an input of the kept channels."""
    name = layer_name(self)
    out = static_axis(out_width, self.features, layer=name, argument="out_width", full=self.features)
    inn = static_axis(in_width, x.shape[-1], layer=name, argument="in_width")
    groups = self.feature_group_count
    if groups == 1:
      x, kept_groups, in_size = fit_input(x, inn, layer=name, argument="in_width"), 1, inn.kept
    else:
      x, kept_groups, in_size = self._fit_groups(x, inn, out)
    kernel = self.param("kernel", self.kernel_init, kernel_size + (in_size // kept_groups, out.kept), self.param_dtype)
    params = {"kernel": kernel}
    if self.use_bias:
      params["bias"] = self.param("bias", self.bias_init, (out.kept,), self.param_dtype)
    y = self._static(out.kept, kept_groups, kernel_size).apply({"params": params}, x)
    if wants_costs(self):
      _conv_costs(self, y, kernel_size, in_size // kept_groups, out.kept)
    return y

  def _fit_groups(self, x: jax.Array, inn: StaticAxis, out: StaticAxis) -> tuple[jax.Array, int, int]:
    """A grouped conv's input in static mode: whole groups (inputs beyond the kept width are zeros)."""
    name = layer_name(self)
    full = inn.num_channels if inn.num_channels is not None else x.shape[-1]
    self._check_groups(full)
    in_group, out_group = full // self.feature_group_count, self.features // self.feature_group_count
    if out.kept % out_group:
      raise SearchSpaceError(
        f"{name}: out_width={out.kept} is not a multiple of the group size {out_group} (groups are kept whole)."
      )
    kept_groups = out.kept // out_group
    size, channels = kept_groups * in_group, x.shape[-1]
    if channels == full and channels != size:
      x = x[..., :size]
    elif channels == inn.kept and channels < size:
      x = jnp.pad(x, [(0, 0)] * (x.ndim - 1) + [(0, size - channels)])
    elif channels != size:
      raise SearchSpaceError(
        f"{name}: in a static subnet it keeps {kept_groups} groups ({size} input channels), but its input has "
        f"{channels} channels."
      )
    return x, kept_groups, size

  def _dense_branch(self, kernel_size: tuple[int, ...], in_features: int) -> Callable[..., Any]:
    features = self.features

    def make(sizes: tuple[int, int]) -> Callable[..., jax.Array]:
      a, b = sizes

      def branch(x, kernel, bias, dynamics):
        (in_value, in_order), (out_value, out_order) = dynamics
        in_keep = keep(a, in_features, in_value, in_order)
        out_keep = keep(b, features, out_value, out_order)
        k = take(take(kernel, -2, a, in_features, in_order), -1, b, features, out_order)
        params = {"kernel": masked(masked(k, in_keep, -2), out_keep, -1)}
        if bias is not None:
          params["bias"] = masked(take(bias, 0, b, features, out_order), out_keep, 0)
        y = self._static(b, 1, kernel_size).apply({"params": params}, take(x, -1, a, in_features, in_order))
        return put(y, -1, b, features, out_order)

      return branch

    return make

  def _group_branch(
    self, kernel_size: tuple[int, ...], in_axis: Axis, in_group: int, out_group: int
  ) -> Callable[..., Any]:
    features, in_features = self.features, in_axis.num_channels
    in_limit = in_axis.sizes[0] if in_axis.value is None else None

    def make(sizes: tuple[int]) -> Callable[..., jax.Array]:
      (b,) = sizes
      kept_groups = b // out_group
      a = kept_groups * in_group

      def branch(x, kernel, bias, in_value, dynamics):
        ((out_value, _),) = dynamics
        k = take(kernel, -1, b, features, None)
        limit = in_value if in_value is not None else (in_limit if in_limit < a else None)
        if limit is not None:
          k = _group_input_mask(k, in_group, out_group, limit)
        out_keep = keep(b, features, out_value, None)
        params = {"kernel": masked(k, out_keep, -1)}
        if bias is not None:
          params["bias"] = masked(take(bias, 0, b, features, None), out_keep, 0)
        y = self._static(b, kept_groups, kernel_size).apply({"params": params}, take(x, -1, a, in_features, None))
        return put(y, -1, b, features, None)

      return branch

    return make


@MODELS.register_module()
class DynamicDepthwiseConv(nn.Module):
  """A depthwise conv (channel multiplier 1) whose kept width is a call argument.

  Input and output channels are one unit: ``conv(x, width)`` keeps the
  ``width`` channels (``order`` widths included) and is zero beyond them.
  Computes with :func:`jaxmutate.ops.depthwise_conv` (XLA CPU's grouped conv
  is ~30x slower), on the kept channels only; variables are those of
  :class:`jaxmutate.ops.DepthwiseConv` and ``nn.Conv(C, kernel_size,
  feature_group_count=C)``: ``kernel`` ``(kh, kw, 1, C)``, ``bias`` ``(C,)``.

  Like every dynamic layer it also records, at ``init``, the units its
  widths name (:class:`~jaxmutate.dynamic.LayerChannels`), sows its MACs and
  parameters when the ``costs`` collection is mutable
  (:func:`~jaxmutate.dynamic.dynamic_costs`), and in
  :func:`~jaxmutate.dynamic.static_mode` is the depthwise conv of its kept
  widths (what :func:`jaxmutate.export.export_subnet` builds on).

  Attributes:
    kernel_size, strides, dilation, padding, use_bias, features,
      implementation, kernel_init, bias_init, dtype, param_dtype: as in
      :class:`jaxmutate.ops.DepthwiseConv` (``features``, if given, must
      equal the input channels).
    max_buckets: static widths a traced width is rounded up to.

  Example:
    >>> import jax, jax.numpy as jnp
    >>> from jaxmutate.dynamic import DynamicDepthwiseConv
    >>> conv = DynamicDepthwiseConv(kernel_size=3)
    >>> x = jnp.ones((1, 5, 5, 6))
    >>> variables = conv.init(jax.random.key(0), x)
    >>> variables["params"]["kernel"].shape
    (3, 3, 1, 6)
    >>> y = jax.jit(conv.apply)(variables, x, jnp.int32(4))
    >>> bool((y[..., 4:] == 0).all()), bool((y[..., :4] != 0).all())
    (True, True)
  """

  kernel_size: IntOrSeq = 3
  strides: IntOrSeq = 1
  dilation: IntOrSeq = 1
  padding: PaddingLike = "SAME"
  use_bias: bool = False
  features: int | None = None
  implementation: str | None = None
  kernel_init: Callable[..., jax.Array] = nn.initializers.lecun_normal()
  bias_init: Callable[..., jax.Array] = nn.initializers.zeros_init()
  dtype: Any = None
  param_dtype: Any = jnp.float32
  max_buckets: int = DEFAULT_MAX_BUCKETS

  @nn.compact
  def __call__(self, x: jax.Array, width: WidthLike | None = None) -> jax.Array:
    """Applies the depthwise conv to ``(N, H, W, C)`` ``x``, keeping ``width`` channels.

    Args:
      x: the input; channels beyond ``width`` are ignored.
      width: kept channels (``Width``, int or int32 scalar); ``None`` is all.

    Returns:
      ``(N, Ho, Wo, C)``, zero beyond ``width``.
    """
    name = layer_name(self)
    kh, kw = (self.kernel_size, self.kernel_size) if isinstance(self.kernel_size, int) else tuple(self.kernel_size)
    if is_static_mode():
      return self._static_call(x, width, (kh, kw))
    channels = x.shape[-1]
    self._check_features(channels)
    kernel = self.param("kernel", self.kernel_init, (kh, kw, 1, channels), self.param_dtype)
    bias = self.param("bias", self.bias_init, (channels,), self.param_dtype) if self.use_bias else None
    axis = resolve_axis(width, channels, layer=name, argument="width", max_buckets=self.max_buckets)
    spans = width_spans(width, channels)
    record_channels(self, spans, spans)  # input and output are one axis
    static = self._static((kh, kw))

    def make(sizes: tuple[int]) -> Callable[..., jax.Array]:
      (b,) = sizes

      def branch(x, kernel, bias, dynamics):
        ((value, order),) = dynamics
        kept = keep(b, channels, value, order)
        params = {"kernel": masked(take(kernel, -1, b, channels, order), kept, -1)}
        if bias is not None:
          params["bias"] = masked(take(bias, 0, b, channels, order), kept, 0)
        return put(static.apply({"params": params}, take(x, -1, b, channels, order)), -1, b, channels, order)

      return branch

    y = dispatch([axis], make, x, kernel, bias)
    if wants_slices(self):
      concrete_sizes(self, {"width": axis})
      (b,) = axis.sizes
      params = {"kernel": take(kernel, -1, b, channels, axis.order)}
      if bias is not None:
        params["bias"] = take(bias, 0, b, channels, axis.order)
      record_slices(self, {"params": params})
    if wants_costs(self):
      self._costs(y, (kh, kw), axis.kept)
    return y

  def _check_features(self, channels: int) -> None:
    if self.features is not None and self.features != channels:
      raise SearchSpaceError(
        f"{layer_name(self)}: features={self.features} must equal the input channels x.shape[-1]={channels} "
        "(channel multiplier 1 only)."
      )

  def _static(self, kernel_size: tuple[int, int]) -> DepthwiseConv:
    return DepthwiseConv(
      kernel_size=kernel_size,
      strides=self.strides,
      dilation=self.dilation,
      padding=self.padding,
      use_bias=self.use_bias,
      implementation=self.implementation,
      dtype=self.dtype,
      param_dtype=self.param_dtype,
      parent=None,
    )

  def _costs(self, y: jax.Array, kernel_size: tuple[int, int], kept: Any) -> None:
    weights = math.prod(kernel_size) * as_count(kept)
    sow_costs(self, math.prod(y.shape[1:-1]) * weights, weights + as_count(kept) if self.use_bias else weights)

  def _static_call(self, x: jax.Array, width: WidthLike | None, kernel_size: tuple[int, int]) -> jax.Array:
    """Static mode: the depthwise conv of the kept channels."""
    name = layer_name(self)
    axis = static_axis(width, x.shape[-1], layer=name, argument="width", full=self.features)
    x = fit_input(x, axis, layer=name, argument="width")
    params = {"kernel": self.param("kernel", self.kernel_init, (*kernel_size, 1, axis.kept), self.param_dtype)}
    if self.use_bias:
      params["bias"] = self.param("bias", self.bias_init, (axis.kept,), self.param_dtype)
    y = self._static(kernel_size).apply({"params": params}, x)
    if wants_costs(self):
      self._costs(y, kernel_size, axis.kept)
    return y
