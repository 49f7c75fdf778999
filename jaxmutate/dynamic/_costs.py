"""Costs of the kept widths: multiply-accumulates and parameters, as jittable functions of the widths.

When the ``costs`` collection is mutable (``model.apply(..., mutable=["costs"])``)
every dynamic layer sows two float32 scalars into it, computed with ``jnp``
from its kept widths, so they work with concrete widths, traced ones (``jit``)
and batches of them (``vmap``):

- ``macs``: multiply-accumulates per example (the batch axis excluded) of the
  statically sliced layer;
- ``params``: the number of parameters the sliced layer has.

Conventions (per example):

=====================  ==================================================  ====================================
layer                  macs                                                params
=====================  ==================================================  ====================================
``DynamicConv``        ``prod(out_spatial) * prod(kernel) * in * out / g``  ``prod(kernel) * in * out / g (+ out)``
``DynamicDepthwiseConv`` ``prod(out_spatial) * prod(kernel) * kept``        ``prod(kernel) * kept (+ kept)``
``DynamicDense``       ``prod(leading non-batch dims) * in * out``          ``in * out (+ out)``
``DynamicBatchNorm``   ``2 * kept * prod(spatial)`` (normalise, affine)    ``kept`` per scale and per bias
``SwitchableBatchNorm`` as ``DynamicBatchNorm``, the chosen candidate       as ``DynamicBatchNorm``
``DynamicLayerNorm``   ``4 * kept * prod(spatial)`` (statistics too)       ``kept`` per scale and per bias
=====================  ==================================================  ====================================

``in``/``out``/``kept`` are the kept widths, ``g`` the number of groups the
sliced conv keeps. Biases are added, not multiplied: they count as
parameters, not MACs; running statistics are not parameters. These are the
usual counts (MMRazor, fvcore); XLA's ``cost_analysis()["flops"] / 2`` is
close: it counts only the kernel taps inside the image (fewer at padded
borders), BatchNorm's inference form as 1.5 per element and LayerNorm as 4.

Only dynamic layers sow costs: an ``nn.Conv`` or ``nn.Dense`` of the network
is not counted. One-shot mutables with a traced choice pass on the costs of
the chosen candidate only (a mixture of every candidate counts them all).
"""

from __future__ import annotations

from collections.abc import Callable, Mapping, Sequence
from typing import Any

import jax
import jax.numpy as jnp
import numpy as np

__all__ = ["COSTS_COLLECTION", "dynamic_costs", "sum_costs"]

COSTS_COLLECTION = "costs"
"""The collection dynamic layers sow their ``macs`` and ``params`` into."""

COST_NAMES = ("macs", "params")


def wants_costs(module: Any) -> bool:
  """Whether ``module`` should sow its costs: the ``costs`` collection is mutable (never at ``init``)."""
  return not module.is_initializing() and module.is_mutable_collection(COSTS_COLLECTION)


def sow_costs(module: Any, macs: Any, params: Any) -> None:
  """Sows the two costs of one call of ``module`` as float32 scalars."""
  module.sow(COSTS_COLLECTION, "macs", jnp.asarray(macs, jnp.float32))
  module.sow(COSTS_COLLECTION, "params", jnp.asarray(params, jnp.float32))


def as_count(value: Any) -> Any:
  """A kept width as a float32 scalar (a Python int stays exact until the product is formed)."""
  if isinstance(value, (int, np.integer)):
    return float(value)
  return jnp.asarray(value).astype(jnp.float32)


def sum_costs(costs: Mapping[str, Any]) -> dict[str, jax.Array]:
  """Sums a ``costs`` collection (what ``model.apply(..., mutable=["costs"])`` returns) by cost name.

  Args:
    costs: the ``costs`` collection: nested dicts whose ``macs``/``params``
      entries are tuples of scalars (one per call of a layer).

  Returns:
    ``{"macs": float32 scalar, "params": float32 scalar}`` (zeros when nothing
    was sown).

  Example:
    >>> import jax.numpy as jnp
    >>> from jaxmutate.dynamic import sum_costs
    >>> costs = {"conv": {"macs": (jnp.float32(6.0),), "params": (jnp.float32(2.0),)}, "fc": {"macs": (1.0, 1.0)}}
    >>> {k: float(v) for k, v in sum_costs(costs).items()}
    {'macs': 8.0, 'params': 2.0}
  """
  totals = {name: jnp.zeros((), jnp.float32) for name in COST_NAMES}
  for path, leaf in jax.tree_util.tree_leaves_with_path(costs):
    names = [p.key for p in path if isinstance(p, jax.tree_util.DictKey)]
    if names and names[-1] in totals:
      totals[names[-1]] = totals[names[-1]] + jnp.asarray(leaf, jnp.float32)
  return totals


def dynamic_costs(
  model: Any,
  variables: Mapping[str, Any],
  *args: Any,
  method: Callable[..., Any] | str | None = None,
  mutable: Sequence[str] = (),
  rngs: Any = None,
  **kwargs: Any,
) -> dict[str, jax.Array]:
  """The MACs and parameters of the dynamic layers of ``model`` at the widths its inputs give.

  Runs ``model.apply(variables, *args, **kwargs)`` with the ``costs``
  collection mutable and returns only the summed costs: under ``jit`` the
  network's own computation is dead code and XLA removes it, so costing a
  width configuration (traced, or a ``vmap`` over many) is cheap. See the
  module docs for the conventions; only the dynamic layers of
  :mod:`jaxmutate.dynamic` are counted.

  Args:
    model: the network (a supernet or a static subnet).
    variables: its variables.
    *args: the call's arguments (the input and, for a supernet, the choices).
    method: as in ``model.apply``.
    mutable: further collections to make mutable (e.g. ``["batch_stats"]``
      for a call in training mode).
    rngs: as in ``model.apply``.
    **kwargs: the call's keyword arguments.

  Returns:
    ``{"macs": float32 scalar, "params": float32 scalar}``, per example.

  Example:
    >>> import jax, jax.numpy as jnp, flax.linen as nn
    >>> from jaxmutate import dynamic
    >>> class Net(nn.Module):
    ...   @nn.compact
    ...   def __call__(self, x, w):
    ...     x = dynamic.DynamicConv(8, 3, use_bias=False)(x, out_width=w)
    ...     return dynamic.DynamicDense(2)(x.mean((1, 2)), in_width=w)
    >>> net, x = Net(), jnp.ones((1, 4, 4, 3))
    >>> variables = net.init(jax.random.key(0), x, 8)
    >>> costs = jax.jit(lambda w: dynamic.dynamic_costs(net, variables, x, dynamic.Width(w, 8)))
    >>> {k: int(v) for k, v in costs(4).items()}  # 16 * 9 * 3 * 4 + 4 * 2; 9 * 3 * 4 + 4 * 2 + 2
    {'macs': 1736, 'params': 118}
  """
  variables = {name: tree for name, tree in variables.items() if name != COSTS_COLLECTION}
  _, state = model.apply(variables, *args, method=method, mutable=[COSTS_COLLECTION, *mutable], rngs=rngs, **kwargs)
  return sum_costs(state.get(COSTS_COLLECTION, {}))
