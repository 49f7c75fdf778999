"""A dense layer whose kept input and output widths are inputs."""

from __future__ import annotations

import math
from collections.abc import Callable
from typing import Any

import flax.linen as nn
import jax
import jax.numpy as jnp

from jaxmutate.dynamic._costs import as_count, sow_costs, wants_costs
from jaxmutate.dynamic._dispatch import (
  DEFAULT_MAX_BUCKETS,
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
  concrete_sizes,
  fit_input,
  is_static_mode,
  record_slices,
  static_axis,
  wants_slices,
)
from jaxmutate.dynamic._width import WidthLike
from jaxmutate.registry import MODELS

__all__ = ["DynamicDense"]


@MODELS.register_module()
class DynamicDense(nn.Module):
  """``nn.Dense`` whose kept output and input widths are call arguments.

  Variables are those of ``nn.Dense(features)``: ``kernel`` ``(in_features,
  features)`` and ``bias`` ``(features,)``. ``dense(x, out_width, in_width)``
  ignores inputs beyond ``in_width`` and is exactly zero beyond
  ``out_width``; concrete widths trace to the sliced ``nn.Dense``, traced ones
  dispatch among statically sliced buckets (``max_buckets`` per axis).

  Like every dynamic layer it also records, at ``init``, the units its
  widths name (:class:`~jaxmutate.dynamic.LayerChannels`), sows its MACs and
  parameters when the ``costs`` collection is mutable
  (:func:`~jaxmutate.dynamic.dynamic_costs`), and in
  :func:`~jaxmutate.dynamic.static_mode` is the ``nn.Dense`` of its kept
  widths (what :func:`jaxmutate.export.export_subnet` builds on).

  Attributes:
    features: the maximum number of output features.
    use_bias, dtype, param_dtype, precision, kernel_init, bias_init: as in
      ``nn.Dense``.
    max_buckets: static widths per traced axis; 1 means masking only.

  Example:
    >>> import jax, jax.numpy as jnp
    >>> from jaxmutate.dynamic import DynamicDense
    >>> dense = DynamicDense(features=6)
    >>> x = jnp.ones((3, 4))
    >>> variables = dense.init(jax.random.key(0), x)
    >>> y = jax.vmap(lambda w: dense.apply(variables, x, out_width=w))(jnp.array([2, 6]))
    >>> y.shape, bool((y[0, :, 2:] == 0).all())
    ((2, 3, 6), True)
  """

  features: int
  use_bias: bool = True
  dtype: Any = None
  param_dtype: Any = jnp.float32
  precision: Any = None
  kernel_init: Callable[..., jax.Array] = nn.linear.default_kernel_init
  bias_init: Callable[..., jax.Array] = nn.initializers.zeros_init()
  max_buckets: int = DEFAULT_MAX_BUCKETS

  @nn.compact
  def __call__(self, x: jax.Array, out_width: WidthLike | None = None, in_width: WidthLike | None = None) -> jax.Array:
    """Applies the layer to ``x`` (features last).

    Args:
      x: ``(..., in_features)``.
      out_width: kept outputs (``Width``, int or int32 scalar); ``None`` is all.
      in_width: kept inputs; ``None`` is all.

    Returns:
      ``(..., features)``, zero beyond ``out_width``.
    """
    name = layer_name(self)
    if is_static_mode():
      return self._static_call(x, out_width, in_width)
    in_features, features = x.shape[-1], self.features
    kernel = self.param("kernel", self.kernel_init, (in_features, features), self.param_dtype)
    bias = self.param("bias", self.bias_init, (features,), self.param_dtype) if self.use_bias else None
    out_axis = resolve_axis(out_width, features, layer=name, argument="out_width", max_buckets=self.max_buckets)
    in_axis = resolve_axis(in_width, in_features, layer=name, argument="in_width", max_buckets=self.max_buckets)
    record_channels(self, width_spans(out_width, features), width_spans(in_width, in_features))
    static = self._static

    def make(sizes: tuple[int, int]) -> Callable[..., jax.Array]:
      a, b = sizes

      def branch(x, kernel, bias, dynamics):
        (in_value, in_order), (out_value, out_order) = dynamics
        in_keep = keep(a, in_features, in_value, in_order)
        out_keep = keep(b, features, out_value, out_order)
        k = take(take(kernel, 0, a, in_features, in_order), 1, b, features, out_order)
        params = {"kernel": masked(masked(k, in_keep, 0), out_keep, 1)}
        if bias is not None:
          params["bias"] = masked(take(bias, 0, b, features, out_order), out_keep, 0)
        y = static(b).apply({"params": params}, take(x, -1, a, in_features, in_order))
        return put(y, -1, b, features, out_order)

      return branch

    y = dispatch([in_axis, out_axis], make, x, kernel, bias)
    if wants_slices(self):
      concrete_sizes(self, {"out_width": out_axis, "in_width": in_axis})
      (a,), (b,) = in_axis.sizes, out_axis.sizes
      params = {"kernel": take(take(kernel, 0, a, in_features, in_axis.order), 1, b, features, out_axis.order)}
      if bias is not None:
        params["bias"] = take(bias, 0, b, features, out_axis.order)
      record_slices(self, {"params": params})
    if wants_costs(self):
      self._costs(x, in_axis.kept, out_axis.kept)
    return y

  def _static(self, features: int) -> nn.Dense:
    return nn.Dense(
      features,
      use_bias=self.use_bias,
      dtype=self.dtype,
      param_dtype=self.param_dtype,
      precision=self.precision,
      parent=None,
    )

  def _costs(self, x: jax.Array, in_kept: Any, out_kept: Any) -> None:
    # Every position of the leading non-batch axes (e.g. tokens) is one matrix-vector product.
    positions = math.prod(x.shape[1:-1]) if x.ndim > 1 else 1
    weights = as_count(in_kept) * as_count(out_kept)
    sow_costs(self, positions * weights, weights + as_count(out_kept) if self.use_bias else weights)

  def _static_call(self, x: jax.Array, out_width: WidthLike | None, in_width: WidthLike | None) -> jax.Array:
    """Static mode: the ``nn.Dense`` of the kept widths, on an input of the kept features."""
    name = layer_name(self)
    out = static_axis(out_width, self.features, layer=name, argument="out_width", full=self.features)
    inn = static_axis(in_width, x.shape[-1], layer=name, argument="in_width")
    x = fit_input(x, inn, layer=name, argument="in_width")
    params = {"kernel": self.param("kernel", self.kernel_init, (inn.kept, out.kept), self.param_dtype)}
    if self.use_bias:
      params["bias"] = self.param("bias", self.bias_init, (out.kept,), self.param_dtype)
    y = self._static(out.kept).apply({"params": params}, x)
    if wants_costs(self):
      self._costs(x, inn.kept, out.kept)
    return y
