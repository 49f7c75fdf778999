"""Training pieces shared by the search algorithms: state, optimiser, loss, BN."""

from __future__ import annotations

from collections.abc import Callable, Mapping
from typing import Any, NamedTuple

import flax.linen as nn
import jax
import jax.numpy as jnp
import optax

from jaxmutate._typing import Choices


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


def build_optimizer(config: Mapping[str, Any] | optax.GradientTransformation) -> optax.GradientTransformation:
  """Builds an optax optimiser from ``dict(type="sgd", learning_rate=..., ...)``.

  ``type`` names any optax function (``sgd``, ``adam``, ``adamw``, ...);
  nested dicts with a ``type`` build optax functions too, so a schedule is
  ``learning_rate=dict(type="cosine_decay_schedule", init_value=0.1,
  decay_steps=1000)``. A ``GradientTransformation`` passes through.

  Raises:
    KeyError: the config has no ``type``, or optax has no such function.

  Example:
    >>> from jaxmutate.algorithms import build_optimizer
    >>> optimizer = build_optimizer(dict(type="sgd", learning_rate=0.1, momentum=0.9))
    >>> type(optimizer).__name__
    'GradientTransformationExtraArgs'
  """
  if isinstance(config, optax.GradientTransformation):
    return config

  def build(value: Any) -> Any:
    if isinstance(value, Mapping) and "type" in value:
      kwargs = {k: build(v) for k, v in value.items() if k != "type"}
      name = value["type"]
      factory = getattr(optax, name, None) if isinstance(name, str) else None
      if not callable(factory):
        raise KeyError(f"Optimiser config type {name!r} is not an optax function (e.g. 'sgd', 'adam', 'cosine_decay_schedule').")
      return factory(**kwargs)
    return value

  if not isinstance(config, Mapping) or "type" not in config:
    raise KeyError(f"An optimiser config needs a 'type' naming an optax function, got {config!r}.")
  return build(config)


def classification_loss(logits: jax.Array, labels: jax.Array) -> jax.Array:
  """Mean softmax cross-entropy with integer labels.

  Example:
    >>> import jax.numpy as jnp
    >>> from jaxmutate.algorithms import classification_loss
    >>> round(float(classification_loss(jnp.zeros((2, 4)), jnp.array([0, 3]))), 4)  # log(4)
    1.3863
  """
  return optax.softmax_cross_entropy_with_integer_labels(logits, labels).mean()


def accuracy(logits: jax.Array, labels: jax.Array) -> jax.Array:
  """Top-1 accuracy in [0, 1].

  Example:
    >>> import jax.numpy as jnp
    >>> from jaxmutate.algorithms import accuracy
    >>> logits = jnp.array([[2.0, 0.0], [0.0, 1.0], [1.0, 0.0], [0.0, 3.0]])
    >>> float(accuracy(logits, jnp.array([0, 1, 1, 1])))
    0.75
  """
  return (jnp.argmax(logits, -1) == labels).mean()


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


def apply_in_train_mode(
    model: nn.Module, params: Any, batch_stats: Any, images: jax.Array, choices: Choices, rngs: Mapping[str, jax.Array] | None = None
) -> tuple[jax.Array, Any]:
  """Runs the model with batch statistics; returns logits and the updated BN stats.

  Example:
    >>> import jax, jax.numpy as jnp
    >>> import jaxmutate as jm
    >>> from jaxmutate.algorithms import apply_in_train_mode
    >>> net = jm.SearchableConvNet(num_classes=3, width=4, num_layers=1)
    >>> x = jax.random.normal(jax.random.key(0), (2, 8, 8, 1))
    >>> variables = jm.init_supernet(net, jax.random.key(1), x)
    >>> logits, stats = apply_in_train_mode(net, variables["params"], variables["batch_stats"], x, {"layers.0": 0})
    >>> logits.shape, bool((stats["stem"]["BatchNorm_0"]["mean"] != 0).any())
    ((2, 3), True)
  """
  logits, updates = model.apply(
      {"params": params, "batch_stats": batch_stats}, images, choices, train=True, mutable=["batch_stats"], rngs=rngs
  )
  return logits, updates.get("batch_stats", {})


def recalibrate_batch_stats(
    model: nn.Module, params: Any, batch_stats: Any, choices: Choices, images: jax.Array
) -> Any:
  """Replaces the chosen subnet's BatchNorm statistics by their exact values on ``images``.

  Weight-sharing training leaves running statistics that mix every subnet
  that was sampled; SPOS re-estimates them per subnet before evaluating it
  (MMRazor's ``CalibrateBNMixin``). This computes the statistics of ``images``
  (one batch) exactly, for any BatchNorm whose update is an exponential moving
  average ``new = m·old + (1−m)·batch``: running from ``old = 0`` gives
  ``(1−m)·batch``, and the momentum ``m`` is read off two tiny runs from 0 and
  1. Statistics of candidates the subnet does not use are left unchanged.
  Works under ``jit`` and ``vmap`` (over ``choices``).

  Args:
    model: the supernet.
    params: its ``params``.
    batch_stats: its current ``batch_stats``.
    choices: the subnet.
    images: calibration images (e.g. a few hundred training images).

  Returns:
    The recalibrated ``batch_stats``.

  Example:
    >>> import jax, jax.numpy as jnp
    >>> import jaxmutate as jm
    >>> from jaxmutate.algorithms import recalibrate_batch_stats
    >>> net = jm.models.SearchableConvNet(width=4, num_layers=1)
    >>> x = jax.random.normal(jax.random.key(0), (16, 8, 8, 1))
    >>> variables = jm.init_supernet(net, jax.random.key(1), x)
    >>> choices = {"layers.0": jnp.int32(0)}
    >>> stats = recalibrate_batch_stats(net, variables["params"], variables["batch_stats"], choices, x)
    >>> bool(jnp.allclose(stats["stem"]["BatchNorm_0"]["mean"], 0.0))
    False
  """
  if not jax.tree.leaves(batch_stats):
    return batch_stats

  def stats_from(start: Any, x: jax.Array) -> Any:
    return apply_in_train_mode(model, params, start, x, choices)[1]

  zeros = jax.tree.map(jnp.zeros_like, batch_stats)
  ones = jax.tree.map(jnp.ones_like, batch_stats)
  scaled_batch_stats = stats_from(zeros, images)
  probe = images[:2]
  momentum = jax.tree.map(lambda a, b: a - b, stats_from(ones, probe), stats_from(zeros, probe))

  def solve(old, scaled, m):
    # m == 1 means this statistic was not updated: its module did not run.
    updated = m < 1 - 1e-6
    return jnp.where(updated, scaled / jnp.where(updated, 1 - m, 1.0), old)

  return jax.tree.map(solve, batch_stats, scaled_batch_stats, momentum)


def evaluate_accuracy(
    model: nn.Module, params: Any, batch_stats: Any, choices: Choices, images: jax.Array, labels: jax.Array
) -> jax.Array:
  """Top-1 accuracy of a subnet with running (inference) BatchNorm statistics.

  Example:
    >>> import jax, jax.numpy as jnp
    >>> import jaxmutate as jm
    >>> from jaxmutate.algorithms import evaluate_accuracy
    >>> net = jm.SearchableConvNet(num_classes=3, width=4, num_layers=1)
    >>> x = jax.random.normal(jax.random.key(0), (2, 8, 8, 1))
    >>> variables = jm.init_supernet(net, jax.random.key(1), x)
    >>> choices = {"layers.0": 3}
    >>> labels = jnp.argmax(net.apply(variables, x, choices), -1)  # the subnet's own predictions
    >>> float(evaluate_accuracy(net, variables["params"], variables["batch_stats"], choices, x, labels))
    1.0
  """
  logits = model.apply({"params": params, "batch_stats": batch_stats}, images, choices, train=False)
  return accuracy(logits, labels)


LossFunction = Callable[[jax.Array, jax.Array], jax.Array]
