"""A dense layer whose kept input and output widths are inputs."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import flax.linen as nn
import jax
import jax.numpy as jnp

from jaxmutate.dynamic._dispatch import DEFAULT_MAX_BUCKETS, dispatch, keep, layer_name, masked, put, resolve_axis, take
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
    in_features, features = x.shape[-1], self.features
    kernel = self.param("kernel", self.kernel_init, (in_features, features), self.param_dtype)
    bias = self.param("bias", self.bias_init, (features,), self.param_dtype) if self.use_bias else None
    out_axis = resolve_axis(out_width, features, layer=name, argument="out_width", max_buckets=self.max_buckets)
    in_axis = resolve_axis(in_width, in_features, layer=name, argument="in_width", max_buckets=self.max_buckets)

    def make(sizes: tuple[int, int]) -> Callable[..., jax.Array]:
      a, b = sizes
      static = nn.Dense(
        b, use_bias=self.use_bias, dtype=self.dtype, param_dtype=self.param_dtype, precision=self.precision, parent=None
      )

      def branch(x, kernel, bias, dynamics):
        (in_value, in_order), (out_value, out_order) = dynamics
        in_keep = keep(a, in_features, in_value, in_order)
        out_keep = keep(b, features, out_value, out_order)
        k = take(take(kernel, 0, a, in_features, in_order), 1, b, features, out_order)
        params = {"kernel": masked(masked(k, in_keep, 0), out_keep, 1)}
        if bias is not None:
          params["bias"] = masked(take(bias, 0, b, features, out_order), out_keep, 0)
        y = static.apply({"params": params}, take(x, -1, a, in_features, in_order))
        return put(y, -1, b, features, out_order)

      return branch

    return dispatch([in_axis, out_axis], make, x, kernel, bias)
