"""Group sparsity: a group-lasso penalty over the channels of every unit, as an optax transformation."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any

import jax
import jax.numpy as jnp
import optax

from jaxmutate.analysis import ChannelGroup
from jaxmutate.errors import ConfigError
from jaxmutate.pruning._masks import channel_rows, leaf_of

__all__ = ["group_lasso", "group_lasso_penalty"]


def group_lasso_penalty(
  params: Mapping[str, Any], groups: Sequence[ChannelGroup], roles: Sequence[str] | None = None, eps: float = 1e-8
) -> jax.Array:
  """``sum over units and channels of ||w_channel||_2``: every ``params`` slice of a channel is one group.

  Args:
    params: the ``params`` collection.
    groups: the units.
    roles: the slices that form a channel's group (default: all of them).
    eps: added under the square root, so that the gradient of a zeroed channel is finite.

  Example:
    >>> import jax.numpy as jnp
    >>> from jaxmutate.analysis import ChannelGroup, ParamSlice
    >>> from jaxmutate.pruning import group_lasso_penalty
    >>> params = {"fc1": {"kernel": jnp.array([[3.0, 0.0], [4.0, 1.0]])}}
    >>> unit = ChannelGroup("fc1_(0, 2)_2", 2, (ParamSlice("params", ("fc1", "kernel"), 1, (0, 1), "output"),))
    >>> round(float(group_lasso_penalty(params, [unit], eps=0.0)), 4)  # ||(3, 4)|| + ||(0, 1)||
    6.0
  """
  tree = {"params": params}
  total = jnp.zeros((), jnp.float32)
  for group in groups:
    squares = jnp.zeros((group.num_channels,), jnp.float32)
    for s in group.slices:
      if s.collection == "params" and (roles is None or s.role in roles):
        squares = squares + (channel_rows(leaf_of(tree, s), s).astype(jnp.float32) ** 2).sum(1)
    total = total + jnp.sqrt(squares + eps).sum()
  return total


def group_lasso(
  groups: Sequence[ChannelGroup], strength: float, roles: Sequence[str] | None = None, eps: float = 1e-8
) -> optax.GradientTransformation:
  """Adds ``strength`` times the gradient of :func:`group_lasso_penalty` to the updates (needs ``params``).

  Chain it before the optimiser, as ``optax.add_decayed_weights``:
  ``optax.chain(group_lasso(groups, 1e-4), optax.sgd(0.1))``; channels whose
  whole group shrinks to zero are the ones to prune.

  Raises:
    ConfigError: a negative ``strength``.

  Example:
    >>> import jax.numpy as jnp, numpy as np
    >>> from jaxmutate.analysis import ChannelGroup, ParamSlice
    >>> from jaxmutate.pruning import group_lasso
    >>> params = {"fc1": {"kernel": jnp.array([[3.0, 0.0], [4.0, 1.0]])}}
    >>> unit = ChannelGroup("fc1_(0, 2)_2", 2, (ParamSlice("params", ("fc1", "kernel"), 1, (0, 1), "output"),))
    >>> transform = group_lasso([unit], strength=0.5, eps=0.0)
    >>> zeros = {"fc1": {"kernel": jnp.zeros((2, 2))}}
    >>> updates, _ = transform.update(zeros, transform.init(params), params)
    >>> np.asarray(updates["fc1"]["kernel"], np.float64).round(3).tolist()  # 0.5 * w / ||w|| per channel
    [[0.3, 0.0], [0.4, 0.5]]
  """
  if not isinstance(strength, (int, float)) or isinstance(strength, bool) or strength < 0:
    raise ConfigError(f"group_lasso: strength must be a number >= 0, got {strength!r}.")
  groups = tuple(groups)

  def init(params: Any) -> optax.EmptyState:
    del params
    return optax.EmptyState()

  def update(updates: Any, state: optax.EmptyState, params: Any = None) -> tuple[Any, optax.EmptyState]:
    if params is None:
      raise ConfigError("group_lasso: update needs params (call optimizer.update(grads, state, params)).")
    grads = jax.grad(lambda p: group_lasso_penalty(p, groups, roles, eps))(params)
    return jax.tree.map(lambda u, g: u + strength * g.astype(u.dtype), updates, grads), state

  return optax.GradientTransformation(init, update)
