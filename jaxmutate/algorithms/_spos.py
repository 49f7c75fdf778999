"""SPOS (Single Path One-Shot) as pure functions: train steps and population scoring.

The runner that trains a supernet, searches and retrains from a config is
:class:`jaxmutate.runners.SPOS`.

References:
  Guo et al., *Single Path One-Shot Neural Architecture Search with Uniform
  Sampling*, ECCV 2020. https://arxiv.org/abs/1904.00420
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from typing import Any

import flax.linen as nn
import jax
import jax.numpy as jnp
import numpy as np
import optax

from jaxmutate.algorithms._batch_norm import apply_in_train_mode, recalibrate_batch_stats
from jaxmutate.algorithms._metrics import LossFunction, classification_loss, evaluate_accuracy
from jaxmutate.algorithms._train_state import TrainState
from jaxmutate.errors import ConfigError
from jaxmutate.mutators import ModuleMutator
from jaxmutate.typing import GroupChoices, PRNGKey

StepFunction = Callable[[TrainState, jax.Array, jax.Array, PRNGKey], tuple[TrainState, dict[str, jax.Array]]]
"""``step(state, images, labels, key) -> (state, metrics)``."""


def supervised_update(
  model: nn.Module,
  optimizer: optax.GradientTransformation,
  loss_fn: LossFunction,
  state: TrainState,
  images: jax.Array,
  labels: jax.Array,
  choices: Mapping[str, Any],
) -> tuple[TrainState, dict[str, jax.Array]]:
  """One optimiser step of the subnet ``choices`` on a labelled batch (BN in train mode).

  Example:
    >>> from jaxmutate.algorithms import classification_loss, supervised_update
    >>> import jax, jax.numpy as jnp, optax
    >>> import jaxmutate as jm
    >>> from jaxmutate.algorithms import init_train_state
    >>> net = jm.SearchableMLP(num_classes=2, width=4, num_layers=1)
    >>> x, y = jnp.ones((4, 3)), jnp.array([0, 1, 0, 1])
    >>> state, variables = init_train_state(net, optax.sgd(0.1), jax.random.key(0), x)
    >>> state, metrics = supervised_update(net, optax.sgd(0.1), classification_loss, state, x, y, {"layers.0": 0})
    >>> int(state.step), sorted(metrics), float(metrics["accuracy"])
    (1, ['accuracy', 'loss'], 0.5)
  """

  def loss_and_stats(params):
    logits, new_stats = apply_in_train_mode(model, params, state.batch_stats, images, choices)
    return loss_fn(logits, labels), (new_stats, (jnp.argmax(logits, -1) == labels).mean())

  (loss, (batch_stats, acc)), grads = jax.value_and_grad(loss_and_stats, has_aux=True)(state.params)
  updates, opt_state = optimizer.update(grads, state.opt_state, state.params)
  params = optax.apply_updates(state.params, updates)
  return TrainState(params, batch_stats, opt_state, state.step + 1), {"loss": loss, "accuracy": acc}


def make_spos_train_step(
  model: nn.Module,
  mutator: ModuleMutator,
  optimizer: optax.GradientTransformation,
  loss_fn: LossFunction = classification_loss,
) -> StepFunction:
  """A jitted SPOS supernet step: sample one subnet from ``key``, one update.

  The subnet is drawn uniformly (``mutator.sample_choices(key)``), so every
  step trains one path; BatchNorm runs in train mode and only the chosen
  candidates' statistics move. One compiled executable serves every subnet.

  Args:
    model: the supernet, called as ``model(x, choices, train=True)``.
    mutator: a prepared one-shot (or NAS) mutator.
    optimizer: the weight optimiser.
    loss_fn: ``loss_fn(logits, labels)``.

  Returns:
    ``step(state, images, labels, key) -> (state, {"loss", "accuracy"})``.

  Example:
    >>> import jax, jax.numpy as jnp, optax
    >>> import jaxmutate as jm
    >>> from jaxmutate.algorithms import init_train_state, make_spos_train_step
    >>> net = jm.models.SearchableConvNet(width=4, num_layers=2)
    >>> x, y = jnp.ones((8, 8, 8, 1)), jnp.zeros(8, jnp.int32)
    >>> state, variables = init_train_state(net, optax.sgd(0.1), jax.random.key(0), x)
    >>> mutator = jm.OneShotModuleMutator().prepare_from_supernet(variables)
    >>> step = make_spos_train_step(net, mutator, optax.sgd(0.1))
    >>> state, metrics = step(state, x, y, jax.random.key(1))
    >>> int(state.step)
    1
  """

  @jax.jit
  def step(state: TrainState, images: jax.Array, labels: jax.Array, key: PRNGKey):
    choices = mutator.set_choices(mutator.sample_choices(key))
    return supervised_update(model, optimizer, loss_fn, state, images, labels, choices)

  return step


def make_fixed_subnet_train_step(
  model: nn.Module,
  choices: Mapping[str, Any],
  optimizer: optax.GradientTransformation,
  loss_fn: LossFunction = classification_loss,
  compiler_options: Mapping[str, Any] | None = None,
) -> Callable[[TrainState, jax.Array, jax.Array], tuple[TrainState, dict[str, jax.Array]]]:
  """A jitted step that trains one fixed subnet (retraining from scratch).

  The choices are baked in as constants, so the compiled step contains only
  the chosen candidates: it is the hand-written network. A network without
  choices (``model(x, choices, train=...)`` ignoring them) takes ``{}``.

  Args:
    model: the supernet, called as ``model(x, choices, train=True)``.
    choices: the subnet (concrete values).
    optimizer: the weight optimiser.
    loss_fn: ``loss_fn(logits, labels)``.
    compiler_options: XLA options of the jitted step (e.g.
      ``{"xla_backend_optimization_level": 0}`` compiles faster on CPU).

  Returns:
    ``step(state, images, labels) -> (state, {"loss", "accuracy"})``.

  Example:
    >>> from jaxmutate.algorithms import make_fixed_subnet_train_step
    >>> import jax, jax.numpy as jnp, optax
    >>> import jaxmutate as jm
    >>> from jaxmutate.algorithms import init_train_state
    >>> net = jm.SearchableMLP(num_classes=2, width=4, num_layers=1)
    >>> x, y = jnp.ones((4, 3)), jnp.array([0, 1, 0, 1])
    >>> state, variables = init_train_state(net, optax.sgd(0.1), jax.random.key(0), x)
    >>> step = make_fixed_subnet_train_step(net, {"layers.0": 3}, optax.sgd(0.1))  # the "skip" subnet
    >>> for _ in range(2):
    ...   state, metrics = step(state, x, y)
    >>> int(state.step), metrics["loss"].shape
    (2, ())
  """
  static_choices = {k: np.asarray(v) for k, v in choices.items()}

  def step(state: TrainState, images: jax.Array, labels: jax.Array):
    return supervised_update(model, optimizer, loss_fn, state, images, labels, static_choices)

  return jax.jit(step, compiler_options=dict(compiler_options or {}) or None)


def make_population_scorer(
  model: nn.Module,
  mutator: ModuleMutator,
  calibration_images: jax.Array | None,
  images: jax.Array,
  labels: jax.Array,
  chunk_size: int = 25,
) -> Callable[[TrainState, dict[int, jax.Array]], np.ndarray]:
  """Rates a stacked population of subnets with one compiled ``vmap``.

  Each subnet gets its own BatchNorm statistics recalibrated on
  ``calibration_images`` (skipped when ``None``), then its top-1 accuracy on
  ``(images, labels)`` is measured. Populations of any size are scored in
  chunks of ``chunk_size`` (the last one padded), so one executable serves
  every population size.

  Returns:
    ``score(state, population) -> accuracies [P]`` (a NumPy array).

  Raises:
    ConfigError: (a ``ValueError``) ``chunk_size`` < 1.

  Example:
    >>> from jaxmutate.algorithms import make_population_scorer
    >>> import jax, jax.numpy as jnp, optax
    >>> import jaxmutate as jm
    >>> from jaxmutate.algorithms import init_train_state
    >>> net = jm.SearchableMLP(num_classes=2, width=4, num_layers=1)
    >>> x, y = jnp.ones((4, 3)), jnp.array([0, 1, 0, 1])
    >>> state, variables = init_train_state(net, optax.sgd(0.1), jax.random.key(0), x)
    >>> mutator = jm.OneShotModuleMutator().prepare_from_supernet(variables)
    >>> score = make_population_scorer(net, mutator, None, x, y, chunk_size=2)
    >>> scores = score(state, {0: jnp.array([0, 1, 3], jnp.int32)})  # three subnets, two chunks
    >>> scores.shape, bool(((scores >= 0) & (scores <= 1)).all())
    ((3,), True)
  """
  if chunk_size < 1:
    raise ConfigError(f"make_population_scorer: chunk_size must be an int >= 1, got {chunk_size!r}.")

  def score_one(state: TrainState, group_choices: GroupChoices) -> jax.Array:
    choices = mutator.set_choices(group_choices)
    batch_stats = state.batch_stats
    if calibration_images is not None:
      batch_stats = recalibrate_batch_stats(model, state.params, batch_stats, choices, calibration_images)
    return evaluate_accuracy(model, state.params, batch_stats, choices, images, labels)

  score_chunk = jax.jit(jax.vmap(score_one, in_axes=(None, 0)))

  def score(state: TrainState, population: dict[int, jax.Array]) -> np.ndarray:
    size = int(next(iter(population.values())).shape[0])
    scores = []
    for start in range(0, size, chunk_size):
      index = np.minimum(np.arange(start, start + chunk_size), size - 1)
      chunk = {g: jnp.asarray(v)[index] for g, v in population.items()}
      scores.append(np.asarray(score_chunk(state, chunk))[: min(chunk_size, size - start)])
    return np.concatenate(scores)

  return score
