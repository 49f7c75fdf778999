"""Deferred normalisation: carry ``z`` and an affine map instead of ``act(BN(z))``.

A train step on XLA CPU spends a large share of its time in page faults on
the buffers that hold activations for the backward pass (XLA maps a fresh
temporary buffer for every execution), so memory saved is time saved. In a
``conv → BN → act → conv`` chain the second conv normally keeps its input,
``act(BN(z))``, for its kernel gradient, while BatchNorm keeps ``z``: two
activations where one determines the other. :class:`DeferredNorm` carries
``z`` and the per-channel affine map instead of the normalised activation;
the conv that consumes it (``DepthwiseConv``, ``PointwiseConv``) runs
``conv(act(z * multiplier + offset))`` as one :func:`rematerialized` call
that keeps only ``z`` and recomputes the cheap elementwise part in the
backward pass. For the SPOS ShuffleNet blocks this halves the activations
kept per block. Layers that accept a deferred input call
:func:`apply_to_input`.
"""

from __future__ import annotations

import functools
from collections.abc import Callable
from typing import Any

import flax.linen as nn
import flax.struct
import jax
import jax.numpy as jnp

from jaxmutate.errors import ConfigError

ACTIVATIONS: dict[str | None, Callable[[jax.Array], jax.Array]] = {
  None: lambda x: x,
  "relu": nn.relu,
  "relu6": nn.relu6,
}


def check_activation(activation: Any, owner: str) -> None:
  """Raises ``ValueError`` unless ``activation`` names one of :data:`ACTIVATIONS`."""
  if activation not in ACTIVATIONS:
    raise ConfigError(f"{owner} activation must be one of {tuple(ACTIVATIONS)}, got {activation!r}.")


@functools.partial(jax.custom_vjp, nondiff_argnums=(0,))
def rematerialized(fn: Callable[..., Any], *args: Any) -> Any:
  """``fn(*args)`` whose backward pass keeps only ``args`` and recomputes the rest.

  Unlike ``jax.checkpoint``, this also drops the residuals of custom-VJP
  functions called inside ``fn`` (the backward pass runs ``jax.vjp(fn)``
  afresh); outputs of ``fn`` the backward pass does not need are removed by
  XLA. Reverse-over-reverse differentiation works; forward mode does not
  (a ``jax.custom_vjp``).

  Args:
    fn: a function of arrays; it must not close over traced values.
    *args: its array arguments.

  Returns:
    ``fn(*args)``.

  Example:
    >>> import jax, jax.numpy as jnp
    >>> from jaxmutate.ops import rematerialized
    >>> f = lambda x: jnp.sum(rematerialized(jnp.sin, x))
    >>> float(jax.grad(f)(0.0))
    1.0
  """
  return fn(*args)


def _rematerialized_fwd(fn, *args):
  return fn(*args), args


def _rematerialized_bwd(fn, args, cotangent):
  # Make the recomputation depend on the cotangent (a zero XLA cannot fold
  # away: it is NaN for a NaN cotangent). Otherwise XLA CPU, which drops
  # optimisation barriers before scheduling, computes it early or merges it
  # with the forward computation, and the recomputed values stay alive as
  # long as stored ones would.
  first = jax.tree.leaves(cotangent)[0]
  zero = first.reshape(-1)[0] * 0
  args = tuple(a + zero.astype(a.dtype) if jnp.issubdtype(a.dtype, jnp.inexact) else a for a in args)
  return jax.vjp(fn, *args)[1](cotangent)


rematerialized.defvjp(_rematerialized_fwd, _rematerialized_bwd)


def _affine_activation(
  inputs: jax.Array,
  multiplier: jax.Array,
  offset: jax.Array,
  activation: str | None,
) -> jax.Array:
  row = (1,) * (inputs.ndim - 1) + (inputs.shape[-1],)
  return ACTIVATIONS[activation](inputs * multiplier.reshape(row) + offset.reshape(row))


def _affine_activation_then(
  activation: str | None,
  then: Callable[..., jax.Array] | None,
  inputs: jax.Array,
  multiplier: jax.Array,
  offset: jax.Array,
  *params: jax.Array,
) -> jax.Array:
  y = _affine_activation(inputs, multiplier, offset, activation)
  return y if then is None else then(y, *params)


@flax.struct.dataclass
class DeferredNorm:
  """``act(inputs * multiplier + offset)``, not yet computed.

  What ``BatchNorm(..., defer=True)`` returns: the pre-normalisation
  ``inputs`` with BatchNorm folded into a per-channel ``multiplier`` and
  ``offset`` (``scale / sqrt(var + eps)`` and ``bias - mean * multiplier``).
  A consumer either calls :meth:`materialize` or passes its own op to
  :meth:`then`; with ``rematerialize`` (the default) both keep only
  ``inputs`` (and the (C,) vectors) for the backward pass. A pytree (arrays
  are leaves, ``activation`` and ``rematerialize`` are static), so it can
  cross ``jit``/``vmap`` boundaries and Flax module calls.

  Attributes:
    inputs: (..., C) values before normalisation.
    multiplier: (C,) per-channel factor.
    offset: (C,) per-channel shift.
    activation: ``None``, ``"relu"`` or ``"relu6"``.
    rematerialize: compute through :func:`rematerialized` (a custom VJP:
      less memory in training, no forward-mode AD); ``False`` computes
      plainly, as BatchNorm does in inference mode.

  Example:
    >>> import jax.numpy as jnp
    >>> from jaxmutate.ops import DeferredNorm
    >>> deferred = DeferredNorm(jnp.array([[-1.0, 2.0]]), jnp.array([2.0, 1.0]),
    ...                         jnp.array([0.0, 1.0]), "relu")
    >>> deferred.materialize().tolist()
    [[0.0, 3.0]]
    >>> deferred.then(lambda y, w: y @ w, jnp.ones((2, 1))).tolist()
    [[3.0]]
  """

  inputs: jax.Array
  multiplier: jax.Array
  offset: jax.Array
  activation: str | None = flax.struct.field(pytree_node=False, default=None)
  rematerialize: bool = flax.struct.field(pytree_node=False, default=True)

  @property
  def shape(self) -> tuple[int, ...]:
    """Shape of the (deferred) output, the same as ``inputs``'."""
    return tuple(self.inputs.shape)

  @property
  def dtype(self) -> Any:
    """Dtype of the (deferred) output."""
    return jnp.result_type(self.inputs, self.multiplier)

  def materialize(self) -> jax.Array:
    """Computes the activation (its backward pass keeps only ``inputs``)."""
    return self.then(None)

  def then(self, fn: Callable[..., jax.Array] | None, *params: jax.Array) -> jax.Array:
    """``fn(activation, *params)`` as one rematerialised op.

    Args:
      fn: ``fn(y, *params)``, e.g. a convolution; ``None`` returns ``y``. It
        must not close over traced values (pass them as ``params``).
      *params: array arguments of ``fn`` (differentiated).

    Returns:
      ``fn(act(inputs * multiplier + offset), *params)``.
    """
    body = functools.partial(_affine_activation_then, self.activation, fn)
    args = (self.inputs, self.multiplier, self.offset, *params)
    return rematerialized(body, *args) if self.rematerialize else body(*args)


def apply_to_input(
  x: jax.Array | DeferredNorm,
  fn: Callable[..., jax.Array],
  *params: jax.Array,
  dtype: Any = None,
) -> jax.Array:
  """``fn(x, *params)`` for an array or a :class:`DeferredNorm` input.

  What a layer that accepts deferred inputs calls: an array and the params
  are promoted to a common dtype (``dtype`` if given, as flax layers do); a
  deferred input runs ``fn`` inside its rematerialised op, with the params
  cast to the computation dtype.

  Args:
    x: the layer input.
    fn: ``fn(y, *params)``; it must not close over traced values.
    *params: the layer's arrays (kernel, bias, ...).
    dtype: computation dtype (``None``: inferred from ``x`` and ``params``).

  Returns:
    ``fn(x, *params)``, with ``x`` materialised inside ``fn``'s op if deferred.

  Example:
    >>> import jax.numpy as jnp
    >>> from jaxmutate.ops import DeferredNorm, apply_to_input
    >>> matmul = lambda y, w: y @ w
    >>> apply_to_input(jnp.ones((1, 2)), matmul, jnp.ones((2, 1))).tolist()
    [[2.0]]
    >>> deferred = DeferredNorm(jnp.ones((1, 2)), jnp.full(2, 3.0), jnp.zeros(2))
    >>> apply_to_input(deferred, matmul, jnp.ones((2, 1))).tolist()
    [[6.0]]
  """
  if isinstance(x, DeferredNorm):
    dtype = dtype or jnp.result_type(x.dtype, *params)
    return x.then(fn, *(p.astype(dtype) for p in params))
  x, *params = nn.dtypes.promote_dtype(x, *params, dtype=dtype)
  return fn(x, *params)


def as_array(x: jax.Array | DeferredNorm) -> jax.Array:
  """``x`` itself, or the materialised activation of a :class:`DeferredNorm`.

  Example:
    >>> import jax.numpy as jnp
    >>> from jaxmutate.ops import as_array
    >>> as_array(jnp.ones(2)).tolist()
    [1.0, 1.0]
  """
  return x.materialize() if isinstance(x, DeferredNorm) else jnp.asarray(x)
