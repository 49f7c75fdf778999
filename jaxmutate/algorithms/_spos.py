"""SPOS (Single Path One-Shot) as pure functions: train steps and population scoring.

The runner that trains a supernet, searches and retrains from a config is
:class:`jaxmutate.runners.SPOS`.

References:
  Guo et al., *Single Path One-Shot Neural Architecture Search with Uniform
  Sampling*, ECCV 2020. https://arxiv.org/abs/1904.00420
"""

from __future__ import annotations

import functools
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


def _member_score(
  model: nn.Module,
  mutator: ModuleMutator,
  params: Any,
  batch_stats: Any,
  group_choices: GroupChoices,
  calibration_images: jax.Array | None,
  images: jax.Array,
  labels: jax.Array,
) -> jax.Array:
  """One subnet's top-1 accuracy after recalibrating its BatchNorm statistics (skipped without images)."""
  choices = mutator.set_choices(group_choices)
  if calibration_images is not None:
    batch_stats = recalibrate_batch_stats(model, params, batch_stats, choices, calibration_images)
  return jnp.asarray(evaluate_accuracy(model, params, batch_stats, choices, images, labels), jnp.float32)


def _rate_population(model: nn.Module, mutator: ModuleMutator) -> Callable[..., jax.Array]:
  """``rate(population, params, batch_stats, calibration_images, images, labels) -> float32[P]``, jittable.

  Members are rated one after the other (``lax.map``), not ``vmap``ped: a
  batched choice index makes every :func:`~jaxmutate.mutables.switch` loop over
  members anyway, and the batched layers between them cost more than they
  share (measured about 1.5-2x slower per subnet on CPU), so the sequential
  map is both faster and what the host and the on-device search compile alike.
  """

  def rate(population: dict[int, jax.Array], params, batch_stats, calibration_images, images, labels) -> jax.Array:
    def one(group_choices: GroupChoices) -> jax.Array:
      return _member_score(model, mutator, params, batch_stats, group_choices, calibration_images, images, labels)

    return jax.lax.map(one, population)

  return rate


def _count_limited(model: nn.Module, mutator: ModuleMutator) -> Callable[..., jax.Array]:
  """A jitted chunk scorer that rates only its first ``count`` members (the rest of the chunk is padding: NaN)."""

  def rate(population, count, params, batch_stats, calibration_images, images, labels) -> jax.Array:
    size = next(iter(population.values())).shape[0]

    def body(i: jax.Array, scores: jax.Array) -> jax.Array:
      member = {g: v[i] for g, v in population.items()}
      score = _member_score(model, mutator, params, batch_stats, member, calibration_images, images, labels)
      return scores.at[i].set(score)

    return jax.lax.fori_loop(0, count, body, jnp.full(size, jnp.nan, jnp.float32))

  return jax.jit(rate)


@functools.lru_cache(maxsize=8)
def _shared_chunk_scorer(model: nn.Module, mutator: ModuleMutator) -> Callable[..., jax.Array]:
  # Data are arguments, not constants: the validation and the test scorers of one run share an executable.
  return _count_limited(model, mutator)


class PopulationScorer:
  """The scorer :func:`make_population_scorer` returns: host calls, plus a jittable form for on-device search.

  ``scorer(state, population)`` rates a stacked population from the host
  (NumPy scores); ``scorer.rate(population, *scorer.score_args(state))`` is
  the same computation as a jittable function, for
  :func:`~jaxmutate.search.make_search_fn` or
  :meth:`~jaxmutate.search.EvolutionSearchLoop.run_on_device` (``score_fn=scorer.rate``,
  ``score_args=scorer.score_args(state)``): both rate each subnet with the
  same per-subnet program, so they give the same scores.

  Attributes:
    rate: ``rate(population, params, batch_stats, calibration_images, images, labels) -> float32[P]``.
    chunk_size: how many subnets a host call rates per compiled call.

  Example:
    >>> import jax, jax.numpy as jnp, numpy as np, optax
    >>> import jaxmutate as jm
    >>> from jaxmutate.algorithms import init_train_state, make_population_scorer
    >>> net = jm.SearchableMLP(num_classes=2, width=4, num_layers=1)
    >>> x, y = jnp.ones((4, 3)), jnp.array([0, 1, 0, 1])
    >>> state, variables = init_train_state(net, optax.sgd(0.1), jax.random.key(0), x)
    >>> mutator = jm.OneShotModuleMutator().prepare_from_supernet(variables)
    >>> scorer = make_population_scorer(net, mutator, None, x, y)
    >>> population = {0: jnp.array([0, 3], jnp.int32)}
    >>> on_device = jax.jit(scorer.rate)(population, *scorer.score_args(state))
    >>> bool(np.array_equal(np.asarray(on_device), scorer(state, population)))
    True
  """

  def __init__(
    self,
    model: nn.Module,
    mutator: ModuleMutator,
    calibration_images: jax.Array | None,
    images: jax.Array,
    labels: jax.Array,
    chunk_size: int,
  ):
    self.chunk_size = chunk_size
    self.rate = _rate_population(model, mutator)
    self._data = (calibration_images, jnp.asarray(images), jnp.asarray(labels))
    try:
      self._chunk = _shared_chunk_scorer(model, mutator)
    except TypeError:  # an unhashable model or mutator: its own executable
      self._chunk = _count_limited(model, mutator)

  def score_args(self, state: TrainState) -> tuple[Any, ...]:
    """The arguments after ``population`` of :attr:`rate`: the weights, statistics and data."""
    return (state.params, state.batch_stats, *self._data)

  def __call__(self, state: TrainState, population: dict[int, jax.Array]) -> np.ndarray:
    size = int(next(iter(population.values())).shape[0])
    chunk_size = self.chunk_size
    scores = []
    for start in range(0, size, chunk_size):
      count = min(chunk_size, size - start)
      index = np.minimum(np.arange(start, start + chunk_size), size - 1)
      chunk = {g: jnp.asarray(v)[index] for g, v in population.items()}
      rated = self._chunk(chunk, jnp.int32(count), *self.score_args(state))
      scores.append(np.asarray(rated)[:count])
    return np.concatenate(scores) if scores else np.zeros(0, np.float32)


def make_population_scorer(
  model: nn.Module,
  mutator: ModuleMutator,
  calibration_images: jax.Array | None,
  images: jax.Array,
  labels: jax.Array,
  chunk_size: int = 25,
) -> PopulationScorer:
  """Rates a stacked population of subnets, from the host or inside a jitted search.

  Each subnet gets its own BatchNorm statistics recalibrated on
  ``calibration_images`` (skipped when ``None``), then its top-1 accuracy on
  ``(images, labels)`` is measured. A host call rates populations of any size
  in chunks of ``chunk_size`` (the last one padded; padding is not rated), so
  one executable serves every population size, and the data are arguments of
  it: scorers of one model and mutator on other data of the same shapes
  (validation and test splits) share it. Subnets are rated one after the
  other inside the compiled call, which on CPU is faster than a ``vmap``.

  The returned :class:`PopulationScorer` also has ``rate``, the same scoring
  as a jittable function ``rate(population, *scorer.score_args(state))``,
  for an on-device search (same scores as the host call).

  Returns:
    ``score(state, population) -> accuracies [P]`` (a NumPy array), a
    :class:`PopulationScorer`.

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
  if not isinstance(chunk_size, int) or isinstance(chunk_size, bool) or chunk_size < 1:
    raise ConfigError(f"make_population_scorer: chunk_size must be an int >= 1, got {chunk_size!r}.")
  return PopulationScorer(model, mutator, calibration_images, images, labels, chunk_size)
