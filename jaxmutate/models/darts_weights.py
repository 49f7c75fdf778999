"""Inherited weights: a supernet's variables for the network derived from it."""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

import flax.linen as nn
import jax
import jax.numpy as jnp

from jaxmutate.errors import ConfigError, ConfigKeyError


def discrete_network_variables(
  network: nn.Module, supernet_variables: Mapping[str, Any], sample_input: jax.Array
) -> dict[str, Any]:
  """The supernet's weights for a derived network, copied by module path.

  Args:
    network: the derived network (module names match the supernet's).
    supernet_variables: the supernet's variables (``params``, ``batch_stats``).
    sample_input: an input batch (only its shape is used).

  Returns:
    ``{"params": ..., "batch_stats": ...}`` for ``network.apply``.

  Raises:
    KeyError: a variable of the derived network has no counterpart (naming
      its path).

  Example:
    >>> import jax, jax.numpy as jnp
    >>> from jaxmutate.models import derive_discrete_network, discrete_network_variables
    >>> from jaxmutate.models import DartsBackbone
    >>> net = DartsBackbone(base_channels=2, num_layers=1, num_nodes=1, num_classes=3,
    ...                     op_names=("zero", "skip_connect"))
    >>> fix_subnet = {"reduce_n2": {"chosen": ["reduce_n2_p0", "reduce_n2_p1"]},
    ...               "reduce_n2_p0": {"chosen": "skip_connect"}, "reduce_n2_p1": {"chosen": ["zero"]}}
    >>> x = jnp.ones((2, 8, 8, 1))
    >>> supernet_variables = net.init(jax.random.key(0), x, None)
    >>> network = derive_discrete_network(net, fix_subnet)
    >>> variables = discrete_network_variables(network, supernet_variables, x)
    >>> sorted(variables["params"]["cell0"]["reduce_n2"]), network.apply(variables, x).shape  # "zero" has no weights
    (['reduce_n2_p0'], (2, 3))
  """
  shapes = jax.eval_shape(lambda: network.init(jax.random.key(0), sample_input))

  def pick(tree: Any, source: Any, path: tuple[str, ...]) -> Any:
    if isinstance(tree, Mapping):
      if not isinstance(source, Mapping):
        raise ConfigKeyError(f"Supernet variables have no subtree {'/'.join(path)!r}.")
      out = {}
      for key, value in tree.items():
        if key not in source:
          raise ConfigKeyError(f"Supernet variables have no entry {'/'.join(path + (key,))!r} for the derived network.")
        out[key] = pick(value, source[key], path + (key,))
      return out
    if tuple(tree.shape) != tuple(jnp.shape(source)):
      raise ConfigError(
        f"Variable {'/'.join(path)!r}: derived shape {tree.shape} but supernet shape {jnp.shape(source)}."
      )
    return source

  return {col: pick(tree, supernet_variables.get(col, {}), (col,)) for col, tree in shapes.items()}


__all__ = ["discrete_network_variables"]
