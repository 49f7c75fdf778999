"""Depthwise convolutions that are fast on XLA CPU.

On XLA CPU ``lax.conv_general_dilated(..., feature_group_count=C)`` (what
``flax.linen.Conv`` runs for a depthwise conv) takes a slow generic path: at
64x32x32x16, k=7 it is ~30x slower than the same conv written as k² shifted
multiply-adds. This module computes depthwise convs as shifted sums on CPU, with
a ``jax.custom_vjp`` whose backward pass is fast too:

* input gradient: a depthwise conv of the (stride-dilated) output cotangent
  with the flipped kernel, again as shifted sums;
* kernel gradient: the k² sums ``sum(shifted(x) * g)``, evaluated over small
  chunks of the batch inside a ``lax.scan`` so that each chunk stays in cache
  while all k² taps read it (one pass over the whole batch per tap streams from
  memory and is ~8x slower). For kernel width 3 one variadic reduction
  computes all taps in a single pass over the chunk; from width 5 each chunk
  instead runs kh channel-batched matmuls (one per kernel row, contracting
  batch and rows) whose strided diagonals are the taps: ~2x faster at k=7, a
  smaller HLO and ~35% less compile time. The forward saves the padded input,
  so the backward does not pad it again.

The backward pass is written with ordinary differentiable ops, so
``jax.jvp(jax.grad(f))`` (Hessian-vector products, DARTS' second-order step)
and ``jax.grad(jax.grad(f))`` work. Forward mode applied directly to the
shifted op (``jax.jvp(depthwise_conv)``, ``jax.jacfwd``) is not supported by
``jax.custom_vjp``; use ``implementation="xla"`` there.

On GPU/TPU the vendor kernels behind ``lax.conv_general_dilated`` are fast and
are used by default.
"""

from __future__ import annotations

import functools
from collections.abc import Callable, Sequence
from typing import Any, Literal

import flax.linen as nn
import jax
import jax.numpy as jnp
from jax import lax

from jaxmutate.errors import ConfigError, ConfigTypeError
from jaxmutate.ops._deferred import DeferredNorm, apply_to_input
from jaxmutate.registry import MODELS

Implementation = Literal["shifted", "xla"]
PaddingLike = str | int | Sequence[int] | Sequence[tuple[int, int]]
IntPair = int | Sequence[int]

IMPLEMENTATIONS: tuple[str, ...] = ("shifted", "xla")

# Bytes of (padded input + cotangent) per batch chunk in the kernel gradient.
# Measured on a 2-core EPYC (512 KiB L2) with the current chunk bodies, fwd+bwd
# at 64x32x32x16 (8 images per chunk vs 2 at the former 320 KiB): k=3 2.1 vs
# 3.3 ms, k=5 5.8 vs 7.9 ms, k=7 9.6 vs 13.1 ms; 2560 KiB was no better at
# k=3 and slower at k=5/7; the SPOS train step 4% faster at 640-1280 KiB.
_KERNEL_GRAD_CHUNK_BYTES = 1280 * 1024

# Kernel widths from which the kernel gradient uses kh channel-batched matmuls
# per chunk instead of kh*kw reductions (measured at 64x32x32x16: k=7 11 ms vs
# 21 ms, k=5 about even, k=3 slower; compile 0.9 s vs 1.4 s at k=7).
_DOT_KERNEL_GRAD_MIN_WIDTH = 5

__all__ = ["depthwise_conv", "DepthwiseConv", "default_implementation"]


def default_implementation() -> str:
  """The implementation ``depthwise_conv`` uses when none is given.

  Returns:
    ``"shifted"`` when JAX's default backend is the CPU, else ``"xla"``.

  Example:
    >>> from jaxmutate.ops import default_implementation
    >>> default_implementation() in ("shifted", "xla")
    True
  """
  return "shifted" if jax.default_backend() == "cpu" else "xla"


def _pair(value: Any, name: str) -> tuple[int, int]:
  """Normalises an int or a pair of ints >= 1 (``stride``, ``dilation``)."""
  if isinstance(value, bool):
    raise ConfigTypeError(f"{name} must be an int or a pair of ints, got {value!r}.")
  if isinstance(value, int):
    value = (value, value)
  try:
    pair = tuple(value)
  except TypeError:
    raise ConfigTypeError(f"{name} must be an int or a pair of ints, got {value!r}.") from None
  if len(pair) != 2 or not all(isinstance(v, int) and not isinstance(v, bool) for v in pair):
    raise ConfigTypeError(f"{name} must be an int or a pair of ints, got {value!r}.")
  if min(pair) < 1:
    raise ConfigError(f"{name} must be >= 1, got {value!r}.")
  return pair  # type: ignore[return-value]


def _same_pads(size: int, k: int, s: int, d: int) -> tuple[int, int]:
  # lax's "SAME": output ceil(size / s), the extra row (if any) at the end.
  out = -(-size // s)
  total = max((out - 1) * s + (k - 1) * d + 1 - size, 0)
  return total // 2, total - total // 2


def _resolve_padding(
  padding: Any,
  spatial: tuple[int, int],
  ksize: tuple[int, int],
  stride: tuple[int, int],
  dilation: tuple[int, int],
) -> tuple[tuple[int, int], tuple[int, int]]:
  """Turns ``padding`` into explicit ((lo, hi), (lo, hi)) pairs."""
  if isinstance(padding, str):
    mode = padding.upper()
    if mode == "SAME":
      return tuple(  # type: ignore[return-value]
        _same_pads(n, k, s, d) for n, k, s, d in zip(spatial, ksize, stride, dilation)
      )
    if mode == "VALID":
      return ((0, 0), (0, 0))
    raise ConfigError(
      f"padding must be 'SAME', 'VALID', an int, a pair of ints or a pair of (lo, hi) pairs, got {padding!r}."
    )
  bad = ValueError(
    f"padding must be 'SAME', 'VALID', an int >= 0, a pair of ints or a pair of (lo, hi) pairs, got {padding!r}."
  )
  if isinstance(padding, bool):
    raise bad
  if isinstance(padding, int):
    pads: Any = ((padding, padding), (padding, padding))
  else:
    try:
      items = list(padding)
    except TypeError:
      raise bad from None
    if len(items) != 2:
      raise bad
    if all(isinstance(p, int) and not isinstance(p, bool) for p in items):
      pads = ((items[0], items[0]), (items[1], items[1]))
    else:
      try:
        pads = tuple(tuple(p) for p in items)
      except TypeError:
        raise bad from None
  flat = [p for pair in pads for p in pair]
  if any(len(pair) != 2 for pair in pads) or not all(
    isinstance(p, int) and not isinstance(p, bool) and p >= 0 for p in flat
  ):
    raise bad
  return tuple(tuple(pair) for pair in pads)  # type: ignore[return-value]


def _canonical_kernel(kernel: jax.Array, channels: int) -> jax.Array:
  """Checks ``kernel`` and returns it as (kh, kw, C)."""
  if kernel.ndim == 4:
    if kernel.shape[2] != 1:
      raise ConfigError(
        f"A 4-d depthwise kernel must be HWIO with I == 1, i.e. (kh, kw, 1, C); got kernel.shape={tuple(kernel.shape)}."
      )
    kernel = kernel[:, :, 0, :]
  if kernel.ndim != 3:
    raise ConfigError(f"kernel must have shape (kh, kw, C) or (kh, kw, 1, C), got kernel.shape={tuple(kernel.shape)}.")
  kh, kw, kc = kernel.shape
  if kh % 2 == 0 or kw % 2 == 0:
    raise ConfigError(
      f"kernel sizes must be odd (3, 5, 7, ...), got kernel.shape={tuple(kernel.shape)} (kernel size {kh}x{kw})."
    )
  if kc != channels:
    if kc % channels == 0:
      raise ConfigError(
        f"kernel has {kc} output channels for {channels} input channels "
        f"(channel multiplier {kc // channels}); only channel multiplier 1 "
        "is supported: kernel.shape[-1] must equal x.shape[-1]."
      )
    raise ConfigError(f"kernel.shape[-1]={kc} does not match the input channels x.shape[-1]={channels}.")
  return kernel


def _out_size(size: int, pads: tuple[int, int], k: int, s: int, d: int) -> int:
  return (size + pads[0] + pads[1] - (k - 1) * d - 1) // s + 1


def _shifted_forward(
  x: jax.Array,
  kernel: jax.Array,
  stride: tuple[int, int],
  dilation: tuple[int, int],
  pads: tuple[tuple[int, int], tuple[int, int]],
) -> jax.Array:
  """Plain-jnp depthwise conv as k² shifted multiply-adds (one XLA fusion)."""
  xp = jnp.pad(x, ((0, 0), pads[0], pads[1], (0, 0)))
  return _shifted_forward_padded(xp, kernel, stride, dilation)


def _tap_window(
  xp: jax.Array,
  i: int,
  j: int,
  out_size: tuple[int, int],
  stride: tuple[int, int],
  dilation: tuple[int, int],
) -> jax.Array:
  """The (N, Ho, Wo, C) window of padded ``xp`` that kernel tap (i, j) reads."""
  n, _, _, c = xp.shape
  (ho, wo), (sh, sw), (dh, dw) = out_size, stride, dilation
  return lax.slice(
    xp,
    (0, i * dh, j * dw, 0),
    (n, i * dh + (ho - 1) * sh + 1, j * dw + (wo - 1) * sw + 1, c),
    (1, sh, sw, 1),
  )


def _shifted_forward_padded(
  xp: jax.Array,
  kernel: jax.Array,
  stride: tuple[int, int],
  dilation: tuple[int, int],
) -> jax.Array:
  """:func:`_shifted_forward` of an already padded input (VALID conv)."""
  _, h, w, c = xp.shape
  kh, kw, _ = kernel.shape
  (sh, sw), (dh, dw) = stride, dilation
  ho = _out_size(h, (0, 0), kh, sh, dh)
  wo = _out_size(w, (0, 0), kw, sw, dw)
  out = None
  for i in range(kh):
    for j in range(kw):
      window = _tap_window(xp, i, j, (ho, wo), stride, dilation)
      # Explicit (1, 1, 1, C) keeps this valid under rank-promotion="raise".
      term = window * kernel[i, j].reshape(1, 1, 1, c)
      out = term if out is None else out + term
  return out


def _input_grad(
  g: jax.Array,
  kernel: jax.Array,
  in_shape: tuple[int, ...],
  stride: tuple[int, int],
  dilation: tuple[int, int],
  pads: tuple[tuple[int, int], tuple[int, int]],
) -> jax.Array:
  """d(out)/d(x)ᵀ g: a stride-1 depthwise conv of the dilated g, flipped kernel."""
  _, h, w, _ = in_shape
  kh, kw, _ = kernel.shape
  (sh, sw), (dh, dw) = stride, dilation
  ho, wo = g.shape[1], g.shape[2]
  # Row u of dx sums g[v] w[i] over v*s + i*d = u + pad_lo; placing g at every
  # s-th row and padding by (k-1)*d - pad_lo in front turns that into a
  # correlation with the flipped kernel. Negative pads crop (lax.pad allows it).
  lo_h = (kh - 1) * dh - pads[0][0]
  lo_w = (kw - 1) * dw - pads[1][0]
  hi_h = h + pads[0][0] - (ho - 1) * sh - 1
  hi_w = w + pads[1][0] - (wo - 1) * sw - 1
  zero = jnp.zeros((), g.dtype)
  gd = lax.pad(
    g,
    zero,
    ((0, 0, 0), (lo_h, hi_h, sh - 1), (lo_w, hi_w, sw - 1), (0, 0, 0)),
  )
  return _shifted_forward(gd, kernel[::-1, ::-1], (1, 1), dilation, ((0, 0), (0, 0)))


def _largest_divisor_at_most(n: int, limit: int) -> int:
  for d in range(max(1, min(n, limit)), 0, -1):
    if n % d == 0:
      return d
  return 1


def _kernel_grad_chunk(
  xp: jax.Array,
  g: jax.Array,
  ksize: tuple[int, int],
  stride: tuple[int, int],
  dilation: tuple[int, int],
) -> jax.Array:
  """Σ over (n, h, w) of shifted(xp) * g for every tap: (kh, kw, C).

  One variadic reduction computes all taps in a single pass over the chunk
  (XLA fuses the shifted slices and products into it), instead of one
  materialised slice and one reduction per tap.
  """
  _, ho, wo, c = g.shape
  products = []
  for i in range(ksize[0]):
    for j in range(ksize[1]):
      window = _tap_window(xp, i, j, (ho, wo), stride, dilation)
      products.append((window * g).reshape(-1, c))
  zeros = [jnp.zeros((), g.dtype)] * len(products)
  sums = lax.reduce(products, zeros, lambda a, b: [u + v for u, v in zip(a, b)], (0,))
  return jnp.stack(sums).reshape(*ksize, c)


def _kernel_grad_chunk_dot(
  xp: jax.Array,
  g: jax.Array,
  ksize: tuple[int, int],
  stride: tuple[int, int],
  dilation: tuple[int, int],
) -> jax.Array:
  """As :func:`_kernel_grad_chunk`, with kh matmuls instead of a kh*kw-way reduction.

  For kernel row i, ``m[c, u, w] = Σ_{n,h} xp[n, h*sh + i*dh, u, c] g[n, h, w,
  c]`` is one channel-batched matmul; tap (i, j) is the strided diagonal
  ``Σ_w m[c, w*sw + j*dw, w]``. It does ~Wp/kw times the multiply-adds of the
  direct form but as matmuls, and its HLO has kh dots instead of kh*kw
  reductions (faster and quicker to compile for kw >= 5).
  """
  n, ho, wo, c = g.shape
  (sh, sw), (dh, dw) = stride, dilation
  wp = xp.shape[2]
  out_cols = jnp.arange(wo)
  rows = []
  for i in range(ksize[0]):
    window_rows = lax.slice(
      xp,
      (0, i * dh, 0, 0),
      (n, i * dh + (ho - 1) * sh + 1, wp, c),
      (1, sh, 1, 1),
    )
    m = lax.dot_general(window_rows, g, (((0, 1), (0, 1)), ((3,), (3,))))
    rows.append(jnp.stack([m[:, out_cols * sw + j * dw, out_cols].sum(-1) for j in range(ksize[1])]))
  return jnp.stack(rows)


def _kernel_grad(
  xp: jax.Array,
  g: jax.Array,
  kernel: jax.Array,
  stride: tuple[int, int],
  dilation: tuple[int, int],
  pads: tuple[tuple[int, int], tuple[int, int]],
) -> jax.Array:
  """d(out)/d(kernel)ᵀ g from the padded input ``xp``, chunked over the batch."""
  ksize = kernel.shape[:2]
  n = xp.shape[0]
  per_image = (xp[0].size + g[0].size) * xp.dtype.itemsize
  budget = max(1, _KERNEL_GRAD_CHUNK_BYTES // max(per_image, 1))
  chunk = _largest_divisor_at_most(n, min(budget, n // 2))
  if n // chunk < 2:
    # A one-step loop gets inlined, and XLA then fuses g's producer (often the
    # forward conv itself) into each of the k² reductions, recomputing it k²
    # times (seconds to compile). Small problems use XLA's own kernel
    # gradient, a batch-grouped conv that nothing fuses into.
    return jax.vjp(lambda k: _xla_conv(xp, k, stride, dilation, ((0, 0), (0, 0))), kernel)[1](g)[0]
  chunk_grad = _kernel_grad_chunk_dot if ksize[1] >= _DOT_KERNEL_GRAD_MIN_WIDTH else _kernel_grad_chunk

  # Each step slices its chunk out of the whole operands (materialised once,
  # xp being the forward's residual buffer) and reads it from cache for every
  # tap. Slicing by index rather than scanning over a reshaped
  # (n // chunk, chunk, ...) copy keeps XLA from fusing the pad (and its
  # producer) a second time into that copy.
  def body(acc: jax.Array, step: jax.Array):
    xs = lax.dynamic_slice_in_dim(xp, step * chunk, chunk, 0)
    gs = lax.dynamic_slice_in_dim(g, step * chunk, chunk, 0)
    return acc + chunk_grad(xs, gs, ksize, stride, dilation), None

  acc0 = jnp.zeros((*ksize, g.shape[-1]), g.dtype)
  return lax.scan(body, acc0, jnp.arange(n // chunk))[0]


@functools.partial(jax.custom_vjp, nondiff_argnums=(2, 3, 4))
def _shifted_conv(
  x: jax.Array,
  kernel: jax.Array,
  stride: tuple[int, int],
  dilation: tuple[int, int],
  pads: tuple[tuple[int, int], tuple[int, int]],
) -> jax.Array:
  return _shifted_forward(x, kernel, stride, dilation, pads)


def _shifted_conv_fwd(x, kernel, stride, dilation, pads):
  # The padded input is the residual: the kernel gradient reads it directly
  # instead of padding x (a full pass over the activation) a second time.
  xp = jnp.pad(x, ((0, 0), pads[0], pads[1], (0, 0)))
  out = _shifted_forward_padded(xp, kernel, stride, dilation)
  return out, (xp, kernel)


def _shifted_conv_bwd(stride, dilation, pads, res, g):
  xp, kernel = res
  (lo_h, hi_h), (lo_w, hi_w) = pads
  in_shape = (
    xp.shape[0],
    xp.shape[1] - lo_h - hi_h,
    xp.shape[2] - lo_w - hi_w,
    xp.shape[3],
  )
  dx = _input_grad(g, kernel, in_shape, stride, dilation, pads)
  dk = _kernel_grad(xp, g, kernel, stride, dilation, pads)
  return dx.astype(xp.dtype), dk.astype(kernel.dtype)


_shifted_conv.defvjp(_shifted_conv_fwd, _shifted_conv_bwd)


def _xla_conv(
  x: jax.Array,
  kernel: jax.Array,
  stride: tuple[int, int],
  dilation: tuple[int, int],
  pads: tuple[tuple[int, int], tuple[int, int]],
) -> jax.Array:
  c = x.shape[-1]
  return lax.conv_general_dilated(
    x,
    kernel[:, :, None, :],
    window_strides=stride,
    padding=pads,
    rhs_dilation=dilation,
    dimension_numbers=("NHWC", "HWIO", "NHWC"),
    feature_group_count=c,
  )


def depthwise_conv(
  x: jax.Array,
  kernel: jax.Array,
  *,
  stride: IntPair = 1,
  dilation: IntPair = 1,
  padding: PaddingLike = "SAME",
  bias: jax.Array | None = None,
  implementation: str | None = None,
) -> jax.Array:
  """Depthwise 2-d convolution (channel multiplier 1), NHWC.

  Computes the same as ``lax.conv_general_dilated(x, kernel[:, :, None, :],
  stride, padding, rhs_dilation=dilation, feature_group_count=C)`` with
  ``("NHWC", "HWIO", "NHWC")`` dimension numbers, but fast on XLA CPU (see the
  module docstring). Composes with ``jit``, ``vmap``, ``grad``, ``jvp`` of
  ``grad`` and ``grad`` of ``grad``.

  Args:
    x: input of shape (N, H, W, C).
    kernel: (kh, kw, C), or flax's depthwise layout (kh, kw, 1, C); odd kernel
      sizes only.
    stride: int or (sh, sw), >= 1.
    dilation: int or (dh, dw), >= 1 (kernel dilation, as in DARTS' dil_conv).
    padding: ``"SAME"`` (lax's convention: extra padding at the end),
      ``"VALID"``, an int ``p`` (p on every side, PyTorch's ``padding=p``), a
      pair ``(ph, pw)`` or explicit ``((lo, hi), (lo, hi))``.
    bias: optional (C,) vector added to the output.
    implementation: ``"shifted"`` (k² shifted multiply-adds with a custom VJP:
      fast on CPU; no direct forward-mode AD), ``"xla"``
      (``lax.conv_general_dilated``: vendor kernels on GPU/TPU, slow on CPU) or
      ``None`` for :func:`default_implementation` (``"shifted"`` on CPU, else
      ``"xla"``).

  Returns:
    (N, Ho, Wo, C) with ``Ho = (H + pad_h - (kh - 1) * dh - 1) // sh + 1``.

  Raises:
    ValueError: for a bad shape (``x`` not 4-d, ``kernel`` channels not equal
      to ``x``'s, a channel multiplier other than 1, an even kernel size, an
      input smaller than the dilated kernel), ``stride``/``dilation`` < 1 or an
      unknown ``padding``/``implementation``.
    TypeError: ``stride``/``dilation``/``padding`` of the wrong type.

  Example:
    >>> import jax.numpy as jnp
    >>> from jaxmutate.ops import depthwise_conv
    >>> x = jnp.ones((2, 8, 8, 4))
    >>> kernel = jnp.ones((3, 3, 4))
    >>> depthwise_conv(x, kernel, stride=2).shape
    (2, 4, 4, 4)
    >>> float(depthwise_conv(x, kernel)[0, 4, 4, 0])  # interior: 9 taps of 1
    9.0
  """
  if implementation is None:
    implementation = default_implementation()
  if implementation not in IMPLEMENTATIONS:
    raise ConfigError(f"implementation must be one of {IMPLEMENTATIONS} or None, got {implementation!r}.")
  x = jnp.asarray(x)
  kernel = jnp.asarray(kernel)
  if x.ndim != 4:
    raise ConfigError(f"x must be NHWC (4-d), got x.shape={tuple(x.shape)}; use jax.vmap for extra batch dimensions.")
  kernel = _canonical_kernel(kernel, x.shape[-1])
  stride = _pair(stride, "stride")
  dilation = _pair(dilation, "dilation")
  ksize = kernel.shape[:2]
  pads = _resolve_padding(padding, x.shape[1:3], ksize, stride, dilation)
  for axis, (size, pad, k, _, d) in enumerate(zip(x.shape[1:3], pads, ksize, stride, dilation)):
    if size + pad[0] + pad[1] < (k - 1) * d + 1:
      raise ConfigError(
        f"x spatial dim {axis + 1} ({size}, padded to {size + sum(pad)}) is "
        f"smaller than the dilated kernel ({(k - 1) * d + 1}); "
        f"x.shape={tuple(x.shape)}, padding={padding!r}."
      )
  dtype = jnp.result_type(x, kernel)
  x, kernel = x.astype(dtype), kernel.astype(dtype)
  if implementation == "shifted":
    out = _shifted_conv(x, kernel, stride, dilation, pads)
  else:
    out = _xla_conv(x, kernel, stride, dilation, pads)
  if bias is not None:
    bias = jnp.asarray(bias)
    if bias.shape != (x.shape[-1],):
      raise ConfigError(f"bias must have shape (C,) = ({x.shape[-1]},), got bias.shape={tuple(bias.shape)}.")
    out = out + bias.astype(out.dtype).reshape(1, 1, 1, -1)
  return out


@MODELS.register_module()
class DepthwiseConv(nn.Module):
  """Flax module for :func:`depthwise_conv` (channel multiplier 1, NHWC).

  Parameters have the same names, shapes and default initialisation as
  ``nn.Conv(features=C, kernel_size=k, feature_group_count=C)``: ``kernel``
  (kh, kw, 1, C) and ``bias`` (C,), so the two are interchangeable.

  Attributes:
    kernel_size: odd int or (kh, kw).
    strides: int or (sh, sw).
    dilation: int or (dh, dw) kernel dilation.
    padding: see :func:`depthwise_conv`; ``"SAME"`` by default.
    use_bias: add a learned bias.
    features: optional; when given it must equal the input channels (a
      channel multiplier other than 1 is not supported).
    implementation: ``"shifted"``, ``"xla"`` or ``None`` (by backend).
    kernel_init: initializer of the (kh, kw, 1, C) kernel.
    bias_init: initializer of the (C,) bias.
    dtype: computation dtype (``None``: inferred from inputs and params).
    param_dtype: dtype of the parameters.

  Example:
    >>> import jax, jax.numpy as jnp
    >>> from jaxmutate.ops import DepthwiseConv
    >>> conv = DepthwiseConv(kernel_size=5, strides=2)
    >>> variables = conv.init(jax.random.key(0), jnp.ones((1, 8, 8, 3)))
    >>> variables["params"]["kernel"].shape
    (5, 5, 1, 3)
    >>> conv.apply(variables, jnp.ones((1, 8, 8, 3))).shape
    (1, 4, 4, 3)
  """

  kernel_size: IntPair = 3
  strides: IntPair = 1
  dilation: IntPair = 1
  padding: PaddingLike = "SAME"
  use_bias: bool = False
  features: int | None = None
  implementation: str | None = None
  kernel_init: Callable[..., jax.Array] = nn.initializers.lecun_normal()
  bias_init: Callable[..., jax.Array] = nn.initializers.zeros_init()
  dtype: Any = None
  param_dtype: Any = jnp.float32

  @nn.compact
  def __call__(self, x: jax.Array | DeferredNorm) -> jax.Array:
    """Applies the depthwise conv to (N, H, W, C) ``x``.

    A :class:`~jaxmutate.ops._batch_norm.DeferredNorm` input is normalised
    inside the conv's rematerialised op (only its pre-normalisation values
    are kept for the backward pass).
    """
    channels = x.shape[-1]
    if self.features is not None and self.features != channels:
      raise ConfigError(
        f"DepthwiseConv features={self.features} must equal the input "
        f"channels x.shape[-1]={channels} (channel multiplier 1 only)."
      )
    kh, kw = _pair(self.kernel_size, "kernel_size")
    if kh % 2 == 0 or kw % 2 == 0:
      raise ConfigError(f"kernel_size must be odd (3, 5, 7, ...), got {self.kernel_size!r}.")
    kernel = self.param("kernel", self.kernel_init, (kh, kw, 1, channels), self.param_dtype)
    bias = self.param("bias", self.bias_init, (channels,), self.param_dtype) if self.use_bias else None
    conv = functools.partial(
      _depthwise_conv_with_bias,
      stride=self.strides,
      dilation=self.dilation,
      padding=self.padding,
      implementation=self.implementation,
    )
    params = (kernel,) if bias is None else (kernel, bias)
    return apply_to_input(x, conv, *params, dtype=self.dtype)


def _depthwise_conv_with_bias(
  x: jax.Array, kernel: jax.Array, bias: jax.Array | None = None, **options: Any
) -> jax.Array:
  return depthwise_conv(x, kernel, bias=bias, **options)
