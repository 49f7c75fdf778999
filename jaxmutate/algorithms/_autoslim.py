"""AutoSlim / BigNAS sandwich training, slimmable training and per-width BatchNorm calibration, as pure functions.

Every step trains several width configurations of one supernet on one batch
and sums their gradients into **one** optimiser update, in **one** compiled
function (MMRazor accumulates gradients over the subnets of a batch and steps
the optimiser once, ``reference/mmrazor.md`` §4.1).

How the subnets of a step run. Subnets with fixed widths (the max and the
min of a sandwich step, every slimmable subnet) have concrete choices, so
each traces to exactly its sliced network, the hand-written one. The random
subnets of a sandwich step have traced widths and are scanned with
``lax.scan``, one configuration per iteration; their dynamic layers dispatch
among statically sliced widths with :func:`jaxmutate.mutables.switch`, so an
iteration runs one branch per layer and a narrow subnet costs what it
computes. Every subnet takes its own gradient and adds it to a running sum:
the backward pass keeps one subnet's activations at a time (gradient
accumulation, as MMRazor does), and BatchNorm's running statistics move
subnet after subnet in MMRazor's order (max, min, random 0, random 1, ...).
A ``vmap`` over the random configurations would keep every one's
activations at once and could not thread the statistics from one subnet to
the next, for no gain in speed (``switch`` maps a batched index member by
member anyway).

References:
  Yu & Huang, *AutoSlim: Towards One-Shot Architecture Search for Channel
  Numbers*, 2019. https://arxiv.org/abs/1903.11728

  Yu et al., *BigNAS: Scaling Up Neural Architecture Search with Big
  Single-Stage Models*, ECCV 2020. https://arxiv.org/abs/2003.11142

  Yu et al., *Slimmable Neural Networks*, ICLR 2019.
  https://arxiv.org/abs/1812.08928
"""

from __future__ import annotations

from collections.abc import Callable, Mapping, Sequence
from typing import Any

import flax.linen as nn
import jax
import jax.numpy as jnp
import numpy as np
import optax
from jax import lax

from jaxmutate.algorithms._batch_norm import apply_in_train_mode, recalibrate_batch_stats
from jaxmutate.algorithms._distill import DistillFunction, kl_divergence
from jaxmutate.algorithms._metrics import LossFunction, classification_loss
from jaxmutate.algorithms._train_state import TrainState
from jaxmutate.errors import ConfigError, ConfigKeyError, ConfigTypeError
from jaxmutate.typing import Choices, GroupChoices, PRNGKey

StepFunction = Callable[[TrainState, jax.Array, jax.Array, PRNGKey], tuple[TrainState, dict[str, jax.Array]]]
"""``step(state, images, labels, key) -> (state, metrics)``."""

GRAD_REDUCTIONS = ("sum", "mean")


# Helpers ---------------------------------------------------------------------


def _check_int(name: str, value: Any, minimum: int) -> int:
  if isinstance(value, bool) or not isinstance(value, (int, np.integer)) or value < minimum:
    raise ConfigError(f"{name} must be an int >= {minimum}, got {value!r}.")
  return int(value)


def _check_weight(name: str, value: Any) -> float:
  if isinstance(value, bool) or not isinstance(value, (int, float)) or not np.isfinite(value) or value < 0:
    raise ConfigError(f"{name} must be a finite number >= 0, got {value!r}.")
  return float(value)


def _check_reduction(grad_reduction: Any) -> str:
  if grad_reduction not in GRAD_REDUCTIONS:
    raise ConfigError(f"grad_reduction must be one of {GRAD_REDUCTIONS}, got {grad_reduction!r}.")
  return grad_reduction


def stack_group_choices(configs: Sequence[Mapping[int, Any]], where: str = "stack_group_choices") -> GroupChoices:
  """Stacks width configurations (group choices) into one ``{group id: int32[S, ...]}``.

  Args:
    configs: group choices with the same group ids.
    where: the caller's name, for error messages.

  Returns:
    The stacked configurations, ready for ``lax.scan``/``lax.map``/``vmap``.

  Raises:
    ConfigError: no configurations. ConfigTypeError: one is not a mapping.
    ConfigKeyError: (a ``KeyError``) configurations with different group ids.

  Example:
    >>> from jaxmutate.algorithms import stack_group_choices
    >>> stacked = stack_group_choices([{0: 0, 1: 0}, {0: 2, 1: 1}])
    >>> stacked[0].tolist(), stacked[1].dtype
    ([0, 2], dtype('int32'))
  """
  configs = list(configs)
  if not configs:
    raise ConfigError(f"{where}: needs at least one width configuration (group choices), got none.")
  for i, config in enumerate(configs):
    if not isinstance(config, Mapping):
      raise ConfigTypeError(f"{where}: configuration {i} must be a dict of group id -> choice, got {config!r}.")
  keys = list(configs[0])
  for i, config in enumerate(configs[1:], start=1):
    if set(config) != set(keys):
      raise ConfigKeyError(
        f"{where}: configuration {i} has groups {sorted(config, key=str)}, configuration 0 has "
        f"{sorted(keys, key=str)}; every configuration needs the same groups."
      )
  return {g: jnp.stack([jnp.asarray(c[g], jnp.int32) for c in configs]) for g in keys}


def _concrete(group_choices: Mapping[int, Any]) -> dict[int, np.int32]:
  return {g: np.int32(np.asarray(v)) for g, v in group_choices.items()}


def sample_sandwich_choices(
  mutator: Any, key: PRNGKey, num_random_samples: int = 2
) -> tuple[dict[int, np.int32], dict[int, np.int32], GroupChoices]:
  """The width configurations of one sandwich step: the max, the min and the random ones.

  The max and min are concrete (NumPy int32, computed at trace time even
  under ``jit``), so a supernet called with them traces to exactly the full
  and the narrowest network. Keys: ``key`` is split into
  ``num_random_samples`` keys (``jax.random.split``), one per random
  configuration (``mutator.sample_choices(k)``). Works under ``jit``.

  Args:
    mutator: a prepared mutator with ``max_choices()``, ``min_choices()`` and
      ``sample_choices(key)`` (``NasMutator``, ``OneShotChannelMutator``...).
    key: a PRNG key.
    num_random_samples: random configurations (>= 0).

  Returns:
    ``(max_group_choices, min_group_choices, random)``: ``random`` is stacked,
    ``{group id: int32[num_random_samples]}``.

  Raises:
    ConfigError: ``num_random_samples`` not an int >= 0.

  Example:
    >>> import jax
    >>> import jaxmutate as jm
    >>> from jaxmutate.algorithms import sample_sandwich_choices
    >>> from jaxmutate.channels import OneShotMutableChannelUnit
    >>> unit = OneShotMutableChannelUnit(8, (0.25, 0.5, 1.0), name="unit")
    >>> mutator = jm.NasMutator().prepare_from_supernet(unit.init(jax.random.key(0), None))
    >>> largest, smallest, random = sample_sandwich_choices(mutator, jax.random.key(1), 2)
    >>> int(largest[0]), int(smallest[0]), random[0].shape
    (2, 0, (2,))
  """
  num_random_samples = _check_int("num_random_samples", num_random_samples, 0)
  with jax.ensure_compile_time_eval():
    largest = _concrete(mutator.max_choices())
    smallest = _concrete(mutator.min_choices())
  keys = jax.random.split(key, num_random_samples)
  random = jax.vmap(lambda k: mutator.sample_choices(k))(keys)
  random = {g: jnp.asarray(random[g], jnp.int32).reshape(num_random_samples) for g in largest}
  return largest, smallest, random


def _accuracy(logits: jax.Array, labels: jax.Array) -> jax.Array:
  return (jnp.argmax(logits, -1) == labels).mean()


def _accumulated_gradients(
  model: nn.Module,
  mutator: Any,
  loss_fn: LossFunction,
  distill_fn: DistillFunction,
  hard_loss_weight: float,
  params: Any,
  batch_stats: Any,
  images: jax.Array,
  labels: jax.Array,
  teacher: Mapping[int, Any] | None,
  unrolled: Sequence[Mapping[int, Any]],
  scanned: GroupChoices | None,
) -> tuple[Any, Any, dict[str, jax.Array] | None, dict[str, jax.Array]]:
  """Gradient sum of a teacher (the hard loss) and students (hard loss and KD from the teacher).

  Subnets run in order: the teacher, the ``unrolled`` students (concrete
  choices: each traces to its sliced network), then the ``scanned``
  students (stacked, traced, one ``lax.scan`` iteration each). Each takes its
  own gradient, added to the running sum, and threads BatchNorm's running
  statistics to the next. Without a teacher the students take the hard loss
  only (weight 1).

  Returns ``(grads, batch_stats, teacher_metrics, student_metrics)``; the
  student metrics (``loss``, ``hard_loss``, ``distill_loss``, ``accuracy``)
  are stacked over the students, unrolled first.
  """

  def subnet_loss(
    p: Any, stats: Any, group_choices: Mapping[int, Any], teacher_logits: jax.Array | None
  ) -> tuple[jax.Array, tuple[Any, dict, jax.Array]]:
    logits, new_stats = apply_in_train_mode(model, p, stats, images, mutator.set_choices(group_choices))
    hard = loss_fn(logits, labels)
    if teacher_logits is None:
      soft = jnp.zeros((), hard.dtype)
      loss = hard
    else:
      soft = distill_fn(logits, teacher_logits)
      loss = hard_loss_weight * hard + soft
    metrics = {"loss": loss, "hard_loss": hard, "distill_loss": soft, "accuracy": _accuracy(logits, labels)}
    return loss, (new_stats, metrics, logits)

  def subnet_step(
    total: Any, stats: Any, group_choices: Mapping[int, Any], teacher_logits: jax.Array | None
  ) -> tuple[Any, Any, dict, jax.Array]:
    loss_and_grad = jax.value_and_grad(subnet_loss, has_aux=True)
    (_, (new_stats, metrics, logits)), g = loss_and_grad(params, stats, group_choices, teacher_logits)
    total = g if total is None else jax.tree.map(jnp.add, total, g)
    return total, new_stats, metrics, logits

  grads = None
  teacher_metrics = None
  teacher_logits = None
  if teacher is not None:
    grads, batch_stats, metrics, logits = subnet_step(grads, batch_stats, teacher, None)
    teacher_metrics = {"loss": metrics["loss"], "accuracy": metrics["accuracy"]}
    # The teacher is a constant for the students (MMRazor detaches it too).
    teacher_logits = lax.stop_gradient(logits)
  if grads is None:
    grads = jax.tree.map(jnp.zeros_like, params)
  per_student = []
  for group_choices in unrolled:
    grads, batch_stats, metrics, _ = subnet_step(grads, batch_stats, group_choices, teacher_logits)
    per_student.append(jax.tree.map(lambda m: m[None], metrics))
  if scanned is not None and jax.tree.leaves(scanned) and next(iter(scanned.values())).shape[0]:

    def body(carry: tuple[Any, Any], group_choices: GroupChoices) -> tuple[tuple[Any, Any], dict]:
      total, stats, metrics, _ = subnet_step(*carry, group_choices, teacher_logits)
      return (total, stats), metrics

    (grads, batch_stats), metrics = lax.scan(body, (grads, batch_stats), scanned)
    per_student.append(metrics)
  student_metrics = jax.tree.map(lambda *ms: jnp.concatenate(ms), *per_student) if per_student else {}
  return grads, batch_stats, teacher_metrics, student_metrics


def _apply_update(
  optimizer: optax.GradientTransformation, state: TrainState, grads: Any, batch_stats: Any, count: int, reduction: str
) -> TrainState:
  if reduction == "mean":
    grads = jax.tree.map(lambda g: g / count, grads)
  updates, opt_state = optimizer.update(grads, state.opt_state, state.params)
  params = optax.apply_updates(state.params, updates)
  return TrainState(params, batch_stats, opt_state, state.step + 1)


# Sandwich rule -----------------------------------------------------------------


def make_sandwich_train_step(
  model: nn.Module,
  mutator: Any,
  optimizer: optax.GradientTransformation,
  num_random_samples: int = 2,
  loss_fn: LossFunction = classification_loss,
  distill_fn: DistillFunction = kl_divergence,
  hard_loss_weight: float = 1.0,
  grad_reduction: str = "sum",
) -> StepFunction:
  """A jitted AutoSlim / BigNAS sandwich-rule step: max, min and random widths, in-place distillation, one update.

  One step, from one PRNG key (see :func:`sample_sandwich_choices`):

  * the **max** subnet is trained with ``loss_fn`` on the labels (MMRazor:
    the architecture's CE loss), and its logits become the teacher;
  * the **min** and ``num_random_samples`` **random** subnets are trained with
    ``hard_loss_weight * loss_fn(labels) + distill_fn(logits, teacher)``,
    the teacher detached. MMRazor's AutoSlim config: the head's CE loss
    (weight 1) plus ``KLDivergence(tau=1, loss_weight=1)`` on the logits,
    the defaults here; BigNAS trains the students by distillation only,
    ``hard_loss_weight=0``;
  * the gradients of all ``2 + num_random_samples`` subnets are summed
    (``grad_reduction="sum"``) into one optimiser update. MMRazor's
    optimiser wrapper divides each loss by the number of accumulated
    subnets; ``grad_reduction="mean"`` does that (for SGD, the same as a
    learning rate divided by ``2 + num_random_samples``).

  BatchNorm runs in train mode (batch statistics) for every subnet, as the
  SPOS steps do, and the running statistics move subnet after subnet in that
  order (only the kept channels of each). The max and min subnets trace to
  their sliced networks, the random ones are scanned (see the module docs);
  one compiled executable serves every key. Dropout and other
  stochastic layers get no PRNG stream.

  Args:
    model: the supernet, called as ``model(x, choices, train=True)``.
    mutator: a prepared mutator with ``max_choices()``, ``min_choices()``,
      ``sample_choices(key)`` and ``set_choices(group_choices)``
      (``NasMutator``, ``OneShotChannelMutator``, ...).
    optimizer: the weight optimiser.
    num_random_samples: random subnets per step (MMRazor's default 2).
    loss_fn: ``loss_fn(logits, labels)``, the hard loss.
    distill_fn: ``distill_fn(student_logits, teacher_logits)``, e.g.
      ``functools.partial(kl_divergence, tau=2.0)``.
    hard_loss_weight: the students' weight on the hard loss (>= 0).
    grad_reduction: ``"sum"`` or ``"mean"`` over the subnets.

  Returns:
    ``step(state, images, labels, key) -> (state, metrics)``; the metrics
    (scalars) are ``loss`` (the sum of every subnet's loss), ``max_loss``,
    ``min_loss``, ``random_loss`` (mean over the random subnets; absent when
    ``num_random_samples=0``), ``distill_loss`` (mean over the students),
    ``accuracy`` (the max subnet's, on this batch) and ``min_accuracy``.

  Raises:
    ConfigError: (a ``ValueError``) ``num_random_samples`` not an int >= 0, a
      negative ``hard_loss_weight``, an unknown ``grad_reduction``.

  Example:
    >>> import jax, jax.numpy as jnp, flax.linen as nn, optax
    >>> import jaxmutate as jm
    >>> from jaxmutate import dynamic
    >>> from jaxmutate.algorithms import init_train_state, make_sandwich_train_step
    >>> from jaxmutate.channels import OneShotMutableChannelUnit
    >>> class Net(nn.Module):
    ...   @nn.compact
    ...   def __call__(self, x, choices, train=False):
    ...     w = OneShotMutableChannelUnit(8, (0.25, 0.5, 1.0), name="unit")(choices)
    ...     x = dynamic.DynamicConv(8, 3, use_bias=False)(x, out_width=w)
    ...     x = nn.relu(dynamic.DynamicBatchNorm(use_running_average=not train)(x, w))
    ...     return dynamic.DynamicDense(3)(x.mean((1, 2)), in_width=w)
    >>> net, x, y = Net(), jnp.ones((4, 8, 8, 1)), jnp.array([0, 1, 2, 0])
    >>> state, variables = init_train_state(net, optax.sgd(0.1), jax.random.key(0), x)
    >>> mutator = jm.NasMutator().prepare_from_supernet(variables)
    >>> step = make_sandwich_train_step(net, mutator, optax.sgd(0.1))
    >>> state, metrics = step(state, x, y, jax.random.key(1))
    >>> int(state.step), sorted(metrics)
    (1, ['accuracy', 'distill_loss', 'loss', 'max_loss', 'min_accuracy', 'min_loss', 'random_loss'])
  """
  num_random_samples = _check_int("make_sandwich_train_step: num_random_samples", num_random_samples, 0)
  hard_loss_weight = _check_weight("make_sandwich_train_step: hard_loss_weight", hard_loss_weight)
  grad_reduction = _check_reduction(grad_reduction)
  count = 2 + num_random_samples

  @jax.jit
  def step(state: TrainState, images: jax.Array, labels: jax.Array, key: PRNGKey):
    largest, smallest, random = sample_sandwich_choices(mutator, key, num_random_samples)
    grads, batch_stats, teacher, per_student = _accumulated_gradients(
      model,
      mutator,
      loss_fn,
      distill_fn,
      hard_loss_weight,
      state.params,
      state.batch_stats,
      images,
      labels,
      largest,
      [smallest],
      random,
    )
    new_state = _apply_update(optimizer, state, grads, batch_stats, count, grad_reduction)
    metrics = {
      "loss": teacher["loss"] + per_student["loss"].sum(),
      "max_loss": teacher["loss"],
      "min_loss": per_student["loss"][0],
      "distill_loss": per_student["distill_loss"].mean(),
      "accuracy": teacher["accuracy"],
      "min_accuracy": per_student["accuracy"][0],
    }
    if num_random_samples:
      metrics["random_loss"] = per_student["loss"][1:].mean()
    return new_state, metrics

  return step


# Slimmable networks --------------------------------------------------------------


def make_slimmable_train_step(
  model: nn.Module,
  mutator: Any,
  optimizer: optax.GradientTransformation,
  subnets: Sequence[Mapping[int, Any]] | None = None,
  loss_fn: LossFunction = classification_loss,
  distill: bool = False,
  distill_fn: DistillFunction = kl_divergence,
  hard_loss_weight: float = 1.0,
  grad_reduction: str = "sum",
) -> Callable[[TrainState, jax.Array, jax.Array], tuple[TrainState, dict[str, jax.Array]]]:
  """A jitted slimmable-network step: every predefined subnet on the batch, gradients summed, one update.

  MMRazor's ``SlimmableNetwork`` trains each subnet of the
  ``SlimmableChannelMutator`` in turn with gradient accumulation and steps
  the optimiser once per batch. Here every subnet traces to its sliced
  network, in one compiled step, and their gradients are summed (``grad_reduction="mean"`` divides by the
  number of subnets, as MMRazor's accumulation does). With
  ``distill=True`` the widest subnet (the last one: subnets run narrowest
  first) is trained on the labels first and the others with
  ``hard_loss_weight * loss_fn + distill_fn(logits, widest logits)``
  (in-place distillation, the teacher detached). BatchNorm runs in train
  mode; with :class:`~jaxmutate.dynamic.SwitchableBatchNorm` each subnet
  moves its own statistics.

  Args:
    model: the supernet, called as ``model(x, choices, train=True)``.
    mutator: a prepared mutator (``set_choices(group_choices)``).
    optimizer: the weight optimiser.
    subnets: the predefined subnets, group choices narrowest first (e.g.
      :func:`jaxmutate.channels.slimmable_subnets` of the mutator's group
      spaces); ``None`` reads ``mutator.subnets`` (``SlimmableChannelMutator``).
    loss_fn: ``loss_fn(logits, labels)``.
    distill: in-place distillation from the widest subnet.
    distill_fn: ``distill_fn(student_logits, teacher_logits)``.
    hard_loss_weight: the students' weight on the hard loss with ``distill``.
    grad_reduction: ``"sum"`` or ``"mean"`` over the subnets.

  Returns:
    ``step(state, images, labels) -> (state, metrics)``: ``loss`` (the sum
    over subnets), ``losses`` (``[S]``, each subnet's loss), ``accuracies``
    (``[S]``) and ``accuracy`` (the widest subnet's).

  Raises:
    ConfigError: no subnets (or ``None`` and a mutator without ``subnets``),
      ``distill`` with a single subnet, a negative ``hard_loss_weight``, an
      unknown ``grad_reduction``. ConfigKeyError: subnets with different
      group ids.

  Example:
    >>> import jax, jax.numpy as jnp, flax.linen as nn, optax
    >>> import jaxmutate as jm
    >>> from jaxmutate import dynamic
    >>> from jaxmutate.algorithms import init_train_state, make_slimmable_train_step
    >>> from jaxmutate.channels import SlimmableChannelUnit, slimmable_subnets
    >>> class Net(nn.Module):
    ...   @nn.compact
    ...   def __call__(self, x, choices, train=False):
    ...     w = SlimmableChannelUnit(8, (2, 4, 8), name="unit")(choices)
    ...     x = dynamic.DynamicConv(8, 3, use_bias=False)(x, out_width=w)
    ...     x = nn.relu(dynamic.SwitchableBatchNorm((2, 4, 8), use_running_average=not train)(x, w))
    ...     return dynamic.DynamicDense(3)(x.mean((1, 2)), in_width=w)
    >>> net, x, y = Net(), jnp.ones((4, 8, 8, 1)), jnp.array([0, 1, 2, 0])
    >>> state, variables = init_train_state(net, optax.sgd(0.1), jax.random.key(0), x)
    >>> mutator = jm.NasMutator().prepare_from_supernet(variables)
    >>> subnets = slimmable_subnets({g: mutator.group_space(g) for g in mutator.search_groups})
    >>> step = make_slimmable_train_step(net, mutator, optax.sgd(0.1), subnets)
    >>> state, metrics = step(state, x, y)
    >>> int(state.step), metrics["losses"].shape
    (1, (3,))
  """
  if subnets is None:
    subnets = getattr(mutator, "subnets", None)
    if subnets is None:
      raise ConfigError(
        f"make_slimmable_train_step: {type(mutator).__name__} has no `subnets`; pass subnets= (e.g. "
        "jaxmutate.channels.slimmable_subnets of the mutator's group spaces)."
      )
  subnets = list(subnets)
  # Validates the subnets (same groups, int choices); the steps use them concrete, so each subnet
  # traces to exactly its sliced network.
  stacked = stack_group_choices(subnets, "make_slimmable_train_step")
  num_subnets = len(subnets)
  configs = [{g: np.int32(np.asarray(v)[i]) for g, v in stacked.items()} for i in range(num_subnets)]
  if distill and num_subnets < 2:
    raise ConfigError("make_slimmable_train_step: distill=True needs at least two subnets (a teacher and a student).")
  hard_loss_weight = _check_weight("make_slimmable_train_step: hard_loss_weight", hard_loss_weight)
  grad_reduction = _check_reduction(grad_reduction)
  teacher = configs[-1] if distill else None
  students = configs[:-1] if distill else configs

  @jax.jit
  def step(state: TrainState, images: jax.Array, labels: jax.Array):
    grads, batch_stats, teacher_metrics, per_student = _accumulated_gradients(
      model,
      mutator,
      loss_fn,
      distill_fn,
      hard_loss_weight,
      state.params,
      state.batch_stats,
      images,
      labels,
      teacher,
      students,
      None,
    )
    new_state = _apply_update(optimizer, state, grads, batch_stats, num_subnets, grad_reduction)
    losses, accuracies = per_student["loss"], per_student["accuracy"]
    if teacher_metrics is not None:
      losses = jnp.concatenate([losses, teacher_metrics["loss"][None]])
      accuracies = jnp.concatenate([accuracies, teacher_metrics["accuracy"][None]])
    metrics = {"loss": losses.sum(), "losses": losses, "accuracies": accuracies, "accuracy": accuracies[-1]}
    return new_state, metrics

  return step


# BatchNorm calibration and scoring ------------------------------------------------


def _stack_batches(batches: Any, where: str) -> jax.Array:
  if isinstance(batches, (list, tuple)):
    if not batches:
      raise ConfigError(f"{where}: needs at least one calibration batch, got none.")
    shapes = {tuple(np.shape(b)) for b in batches}
    if len(shapes) > 1:
      raise ConfigError(f"{where}: calibration batches must have one shape to be stacked, got {sorted(shapes)}.")
    return jnp.stack([jnp.asarray(b) for b in batches])
  if np.ndim(batches) < 2 or np.shape(batches)[0] == 0:
    raise ConfigError(
      f"{where}: calibration batches must be stacked as [num_batches, batch, ...] (or a list of batches), "
      f"got shape {np.shape(batches)}."
    )
  return batches


def calibrate_batch_stats(model: nn.Module, params: Any, batch_stats: Any, choices: Choices, batches: Any) -> Any:
  """A subnet's BatchNorm statistics, re-estimated as the exact average over calibration batches.

  MMRazor's ``CalibrateBNMixin``: weight-sharing training leaves running
  statistics that mix every width that was trained, so before a width
  configuration is scored its statistics are reset and recomputed as the
  plain average, over ``N`` batches, of each batch's mean and variance (a
  BatchNorm with cumulative momentum). Each batch's statistics are exact
  (:func:`~jaxmutate.algorithms.recalibrate_batch_stats`, for any EMA-style
  BatchNorm); the batches are mapped with ``lax.map``, so memory is that of
  one batch. Statistics the subnet does not use (dropped channels, other
  candidates of a switchable BatchNorm) keep their values. Pure and jit-able;
  ``vmap`` or ``lax.map`` it over width configurations (``choices`` stacked).

  Args:
    model: the supernet.
    params: its ``params``.
    batch_stats: its current ``batch_stats``.
    choices: the subnet (``mutator.set_choices(group_choices)``).
    batches: calibration images stacked as ``[N, B, ...]``, or a list of
      ``N`` batches of one shape.

  Returns:
    The calibrated ``batch_stats``.

  Raises:
    ConfigError: no batches, batches of different shapes, or an array that
      is not stacked (fewer than two axes).

  Example:
    >>> import jax, jax.numpy as jnp, flax.linen as nn
    >>> from jaxmutate import dynamic
    >>> from jaxmutate.algorithms import calibrate_batch_stats
    >>> class Net(nn.Module):  # a BatchNorm on the images, its width from the choices
    ...   @nn.compact
    ...   def __call__(self, x, choices, train=False):
    ...     return dynamic.DynamicBatchNorm(use_running_average=not train, name="bn")(x, choices["w"])
    >>> net, batches = Net(), jnp.stack([jnp.zeros((2, 3)), jnp.full((2, 3), 4.0)])
    >>> variables = net.init(jax.random.key(0), batches[0], {"w": 3})
    >>> stats = calibrate_batch_stats(net, variables["params"], variables["batch_stats"], {"w": 2}, batches)
    >>> jnp.round(stats["bn"]["mean"], 4).tolist()  # kept: the average of the batch means; the third keeps 0
    [2.0, 2.0, 0.0]
  """
  if not jax.tree.leaves(batch_stats):
    return batch_stats
  batches = _stack_batches(batches, "calibrate_batch_stats")
  per_batch = lax.map(lambda x: recalibrate_batch_stats(model, params, batch_stats, choices, x), batches)
  return jax.tree.map(lambda s: s.mean(axis=0), per_batch)


SCORE_METRICS = ("accuracy", "loss")


def make_calibrated_scorer(
  model: nn.Module,
  mutator: Any,
  calibration_batches: Any | None,
  images: jax.Array,
  labels: jax.Array,
  metric: str = "accuracy",
  loss_fn: LossFunction = classification_loss,
) -> Callable[[TrainState, Mapping[int, jax.Array]], jax.Array]:
  """Scores many width configurations in one jitted call, each with its own calibrated BatchNorm.

  For each configuration of a stacked population: :func:`calibrate_batch_stats`
  on ``calibration_batches`` (skipped when ``None``), then the metric on the
  validation set with those running statistics. The configurations are
  mapped with ``lax.map`` (one at a time: each runs its own sliced widths and
  memory stays that of one subnet); one compile serves every population of
  the same size (the greedy search always passes the same size).

  Args:
    model: the supernet, called as ``model(x, choices, train=...)``.
    mutator: a prepared mutator (``set_choices(group_choices)``).
    calibration_batches: training images ``[N, B, ...]`` (or a list), or
      ``None`` to score with the current statistics.
    images: validation images, one batch ``[B, ...]`` (``labels`` ``[B]``)
      or stacked batches ``[M, B, ...]`` (``labels`` ``[M, B]``).
    labels: int labels.
    metric: ``"accuracy"`` (top-1, MMRazor's ``accuracy/top1``) or
      ``"loss"`` (the negated mean ``loss_fn``: higher is better, and it
      separates subnets that tie on accuracy).
    loss_fn: ``loss_fn(logits, labels)`` for ``metric="loss"``.

  Returns:
    ``score(state, population) -> float32[P]`` (higher is better), jitted.

  Raises:
    ConfigError: an unknown ``metric``, labels that are neither ``[B]`` nor
      ``[M, B]``, bad calibration batches.

  Example:
    >>> import jax, jax.numpy as jnp, flax.linen as nn, optax
    >>> import jaxmutate as jm
    >>> from jaxmutate import dynamic
    >>> from jaxmutate.algorithms import init_train_state, make_calibrated_scorer
    >>> from jaxmutate.channels import OneShotMutableChannelUnit
    >>> class Net(nn.Module):
    ...   @nn.compact
    ...   def __call__(self, x, choices, train=False):
    ...     w = OneShotMutableChannelUnit(8, (0.25, 0.5, 1.0), name="unit")(choices)
    ...     x = dynamic.DynamicConv(8, 3, use_bias=False)(x, out_width=w)
    ...     x = nn.relu(dynamic.DynamicBatchNorm(use_running_average=not train)(x, w))
    ...     return dynamic.DynamicDense(3)(x.mean((1, 2)), in_width=w)
    >>> net, x = Net(), jax.random.normal(jax.random.key(0), (4, 8, 8, 1))
    >>> state, variables = init_train_state(net, optax.sgd(0.1), jax.random.key(1), x)
    >>> mutator = jm.NasMutator().prepare_from_supernet(variables)
    >>> score = make_calibrated_scorer(net, mutator, x[None], x, jnp.array([0, 1, 2, 0]))
    >>> score(state, {0: jnp.array([0, 1, 2], jnp.int32)}).shape
    (3,)
  """
  if metric not in SCORE_METRICS:
    raise ConfigError(f"make_calibrated_scorer: metric must be one of {SCORE_METRICS}, got {metric!r}.")
  if calibration_batches is not None:
    calibration_batches = _stack_batches(calibration_batches, "make_calibrated_scorer")
  label_ndim = np.ndim(labels)
  if label_ndim not in (1, 2) or np.shape(images)[:label_ndim] != np.shape(labels):
    raise ConfigError(
      "make_calibrated_scorer: labels must be [B] for images [B, ...] or [M, B] for stacked images "
      f"[M, B, ...]; got images {np.shape(images)} and labels {np.shape(labels)}."
    )
  val_images = images if label_ndim == 2 else images[None]
  val_labels = labels if label_ndim == 2 else labels[None]

  def score_one(state: TrainState, group_choices: GroupChoices) -> jax.Array:
    choices = mutator.set_choices(group_choices)
    batch_stats = state.batch_stats
    if calibration_batches is not None:
      batch_stats = calibrate_batch_stats(model, state.params, batch_stats, choices, calibration_batches)
    variables = {"params": state.params, "batch_stats": batch_stats}

    def on_batch(batch: tuple[jax.Array, jax.Array]) -> jax.Array:
      x, y = batch
      logits = model.apply(variables, x, choices, train=False)
      return _accuracy(logits, y) if metric == "accuracy" else -loss_fn(logits, y)

    return lax.map(on_batch, (val_images, val_labels)).mean().astype(jnp.float32)

  @jax.jit
  def score(state: TrainState, population: Mapping[int, jax.Array]) -> jax.Array:
    return lax.map(lambda gc: score_one(state, gc), dict(population))

  return score
