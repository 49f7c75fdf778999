"""The state of supernet training, and initialising it."""

from __future__ import annotations

from typing import Any, NamedTuple

import flax.linen as nn
import jax
import jax.numpy as jnp
import optax


class TrainState(NamedTuple):
  """Weights, BatchNorm statistics and optimiser state of a supernet.

  Attributes:
    params: the ``params`` collection.
    batch_stats: the ``batch_stats`` collection (``{}`` without BatchNorm).
    opt_state: the optax state of ``params``.
    step: int32 scalar, number of updates done.

  Example:
    >>> import jax.numpy as jnp, optax
    >>> from jaxmutate.algorithms import TrainState
    >>> params = {"w": jnp.ones(2)}
    >>> state = TrainState(params, {}, optax.sgd(0.1).init(params), jnp.int32(0))
    >>> sorted(state.variables), int(state.step)
    (['batch_stats', 'params'], 0)
  """

  params: Any
  batch_stats: Any
  opt_state: optax.OptState
  step: jax.Array

  @property
  def variables(self) -> dict[str, Any]:
    """The variables ``model.apply`` takes."""
    return {"params": self.params, "batch_stats": self.batch_stats}


def init_supernet(model: nn.Module, key: jax.Array, *inputs: Any, **kwargs: Any) -> dict[str, Any]:
  """``model.init(key, *inputs, None, **kwargs)``, fast: every candidate built.

  Supernets hold every candidate's parameter initialisers, and XLA spends most
  of an init's compile time optimising them (a ShuffleNet supernet: 23 s).
  This jits the init and compiles it without backend optimisation (4 s): it
  runs once, so its speed does not matter. Values equal ``model.init``'s.

  Args:
    model: the supernet, called as ``model(*inputs, choices, **kwargs)``.
    key: PRNG key for the parameters.
    *inputs: sample inputs (shapes matter, values do not).
    **kwargs: static keyword arguments of the call.

  Returns:
    The variables, including the ``mutables`` collection mutators read.

  Example:
    >>> import jax, jax.numpy as jnp
    >>> import jaxmutate as jm
    >>> net = jm.SearchableConvNet(width=4, num_layers=2)
    >>> variables = jm.init_supernet(net, jax.random.key(0), jnp.ones((1, 8, 8, 1)))
    >>> sorted(variables)
    ['batch_stats', 'mutables', 'params']
  """
  init = jax.jit(lambda k, *xs: model.init(k, *xs, None, **kwargs)).lower(key, *inputs)
  return init.compile(compiler_options={"xla_backend_optimization_level": 0})(key, *inputs)


def init_train_state(
  model: nn.Module, optimizer: optax.GradientTransformation, key: jax.Array, sample_input: jax.Array
) -> tuple[TrainState, dict[str, Any]]:
  """Initialises a supernet and its optimiser state.

  Args:
    model: a supernet called as ``model(x, choices, train=...)``.
    optimizer: the weight optimiser.
    key: PRNG key for parameter init.
    sample_input: a batch of the input shape.

  Returns:
    ``(state, variables)``: the train state, and the full variable dict of
    ``init`` (with the ``mutables`` collection mutators are prepared from).

  Example:
    >>> import jax, jax.numpy as jnp, optax
    >>> import jaxmutate as jm
    >>> from jaxmutate.algorithms import init_train_state
    >>> net = jm.SearchableMLP(num_classes=2, width=4, num_layers=1)
    >>> state, variables = init_train_state(net, optax.sgd(0.1), jax.random.key(0), jnp.ones((1, 3)))
    >>> int(state.step), sorted(state.params["layers.0"]), sorted(variables)
    (0, ['gelu', 'relu', 'tanh'], ['mutables', 'params'])
  """
  variables = init_supernet(model, key, sample_input)
  params = variables["params"]
  state = TrainState(params, variables.get("batch_stats", {}), optimizer.init(params), jnp.int32(0))
  return state, variables
