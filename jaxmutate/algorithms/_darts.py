"""DARTS (first and exact second order) as pure functions, plus the ``DARTS`` runner.

A search step alternates an architecture step on a validation batch and a
weight step on a training batch, each with its own optax optimiser and state
(Adam for the architecture logits, SGD with momentum for the weights): the
two pytrees never meet in one optimiser.

The second-order architecture gradient is the DARTS hypergradient

  ``∇α L_val(w − ξ ∇w L_train(w, α), α)``

computed *exactly* by differentiating through the unrolled weight step (JAX
reverse-over-reverse AD, i.e. a Hessian-vector product), not by MMRazor's
finite differences; with ``ξ = 0`` it is the first-order gradient.

References:
  Liu et al., DARTS: Differentiable Architecture Search, ICLR 2019,
  https://arxiv.org/abs/1806.09055 (eq. 6-8).
  Dong & Yang, Searching for a Robust Neural Architecture in Four GPU Hours
  (GDAS), CVPR 2019, https://arxiv.org/abs/1910.04465.
"""

from __future__ import annotations

import dataclasses
import json
import time
from collections.abc import Callable, Mapping
from pathlib import Path
from typing import Any, NamedTuple

import flax.linen as nn
import jax
import jax.numpy as jnp
import numpy as np
import optax

from jaxmutate._typing import GroupChoices, PRNGKey
from jaxmutate.algorithms._base import SearchResult
from jaxmutate.algorithms._common import accuracy, build_optimizer, classification_loss, recalibrate_batch_stats
from jaxmutate.mutables._diff import GUMBEL_RNG, GumbelChoiceRoute, GumbelMutableOP, check_temperature
from jaxmutate.mutators._diff import DiffModuleMutator
from jaxmutate.models.darts import DartsDiscreteNetwork  # also registers DartsBackbone
from jaxmutate.registry import MODELS, build

LossFunction = Callable[[jax.Array, jax.Array], jax.Array]
Batch = tuple[jax.Array, jax.Array]
"""``(images, labels)``."""


class DartsState(NamedTuple):
  """Everything a DARTS search carries from step to step.

  Attributes:
    params: supernet weights (the ``params`` collection).
    batch_stats: BatchNorm statistics (``{}`` without BatchNorm).
    arch_params: ``{group id: float32 logits}`` (``DiffModuleMutator``).
    weight_opt_state: optax state of ``params`` only.
    arch_opt_state: optax state of ``arch_params`` only.
    step: int32 scalar, search steps done.

  Example:
    >>> import jax, jax.numpy as jnp, optax
    >>> import jaxmutate as jm
    >>> from jaxmutate.algorithms import DartsState, init_darts_state
    >>> from jaxmutate.models.darts import DartsBackbone
    >>> net = DartsBackbone(base_channels=2, num_layers=1, num_nodes=1, num_classes=3, op_names=("zero", "skip_connect"))
    >>> state, mutator, _ = init_darts_state(net, jm.DiffModuleMutator(), optax.sgd(0.1), optax.adam(1e-3),
    ...                                      jax.random.key(0), jnp.ones((2, 8, 8, 1)),
    ...                                      compiler_options={"xla_backend_optimization_level": 0})
    >>> isinstance(state, DartsState), state.arch_params[1].shape, int(state.step)
    (True, (2,), 0)
  """

  params: Any
  batch_stats: Any
  arch_params: dict[int, jax.Array]
  weight_opt_state: optax.OptState
  arch_opt_state: optax.OptState
  step: jax.Array


class DartsSteps(NamedTuple):
  """The jitted steps :func:`make_darts_steps` returns.

  Attributes:
    arch_step: ``(state, train_batch, val_batch, key, tau) -> (state, metrics)``;
      updates ``arch_params`` only (``train_batch`` is used by the unrolled,
      second-order gradient only).
    weight_step: ``(state, train_batch, key, tau) -> (state, metrics)``;
      updates ``params`` and ``batch_stats`` only.
    search_step: both, arch step first, in one compiled function.

  Example:
    >>> import optax
    >>> from jaxmutate.algorithms import DartsSteps, make_darts_steps
    >>> import jax, jax.numpy as jnp
    >>> import jaxmutate as jm
    >>> from jaxmutate.models.darts import DartsBackbone
    >>> net = DartsBackbone(base_channels=2, num_layers=1, num_nodes=1, num_classes=3, op_names=("zero", "skip_connect"))
    >>> variables = net.init(jax.random.key(0), jnp.ones((2, 8, 8, 1)), None)
    >>> mutator = jm.DiffModuleMutator().prepare_from_supernet(variables)
    >>> steps = make_darts_steps(net, mutator, optax.sgd(0.1), optax.adam(1e-3))
    >>> isinstance(steps, DartsSteps), DartsSteps._fields
    (True, ('arch_step', 'weight_step', 'search_step'))
  """

  arch_step: Callable[..., tuple[DartsState, dict[str, jax.Array]]]
  weight_step: Callable[..., tuple[DartsState, dict[str, jax.Array]]]
  search_step: Callable[..., tuple[DartsState, dict[str, jax.Array]]]


def uses_temperature(mutator: DiffModuleMutator) -> bool:
  """Whether the supernet has Gumbel mutables (so ``model.apply`` takes ``tau``).

  Example:
    >>> from jaxmutate.algorithms import uses_temperature
    >>> import jax, jax.numpy as jnp
    >>> import jaxmutate as jm
    >>> from jaxmutate.models.darts import DartsBackbone
    >>> net = DartsBackbone(base_channels=2, num_layers=1, num_nodes=1, num_classes=3, op_names=("zero", "skip_connect"))
    >>> variables = net.init(jax.random.key(0), jnp.ones((2, 8, 8, 1)), None)
    >>> mutator = jm.DiffModuleMutator().prepare_from_supernet(variables)
    >>> gumbel_net = net.clone(mutable_cfg=dict(type="GumbelMutableOP"))
    >>> gumbel_variables = gumbel_net.init(jax.random.key(0), jnp.ones((2, 8, 8, 1)), None)
    >>> uses_temperature(mutator), uses_temperature(jm.DiffModuleMutator().prepare_from_supernet(gumbel_variables))
    (False, True)
  """
  return any(issubclass(spec.mutable_type, (GumbelMutableOP, GumbelChoiceRoute)) for _, spec in mutator.specs)


def check_arch_params(mutator: DiffModuleMutator, arch_params: Mapping[int, Any]) -> dict[int, jax.Array]:
  """Validates architecture logits against the mutator's groups.

  Raises:
    TypeError: not a mapping, or integer (discrete) values.
    KeyError: a group is missing (the message names its id and alias).
    ValueError: an unknown group id or a vector of the wrong shape (naming
      the group and the expected shape).

  Example:
    >>> from jaxmutate.algorithms import check_arch_params
    >>> import jax, jax.numpy as jnp
    >>> import jaxmutate as jm
    >>> from jaxmutate.models.darts import DartsBackbone
    >>> net = DartsBackbone(base_channels=2, num_layers=1, num_nodes=1, num_classes=3, op_names=("zero", "skip_connect"))
    >>> variables = net.init(jax.random.key(0), jnp.ones((2, 8, 8, 1)), None)
    >>> mutator = jm.DiffModuleMutator().prepare_from_supernet(variables)
    >>> {g: v.shape for g, v in check_arch_params(mutator, mutator.init_arch_params(jax.random.key(1))).items()}
    {0: (2,), 1: (2,), 2: (2,)}
    >>> check_arch_params(mutator, {0: jnp.zeros(3), 1: jnp.zeros(2), 2: jnp.zeros(2)})
    Traceback (most recent call last):
    ...
    ValueError: Mutable 'group 0' expects architecture logits of shape (2,), got shape (3,).
  """
  checked = mutator.check_group_choices(arch_params)
  for group, logits in checked.items():
    if not jnp.issubdtype(logits.dtype, jnp.floating):
      raise TypeError(
          f"Architecture params of group {group} ({mutator.group_key(group)!r}) must be float logits of shape "
          f"({mutator.group_spec(group).num_choices},), got dtype {logits.dtype}."
      )
  return dict(checked)


def supernet_loss(
    model: nn.Module,
    mutator: DiffModuleMutator,
    params: Any,
    batch_stats: Any,
    arch_params: Mapping[int, jax.Array],
    batch: Batch,
    key: PRNGKey,
    tau: Any = None,
    loss_fn: LossFunction = classification_loss,
) -> tuple[jax.Array, tuple[Any, jax.Array]]:
  """The supernet's training-mode loss for given weights and logits.

  BatchNorm uses batch statistics; the Gumbel stream gets ``key``; ``tau``
  is passed to the model when it is not ``None``.

  Returns:
    ``(loss, (new batch_stats, logits))``.

  Example:
    >>> from jaxmutate.algorithms import supernet_loss
    >>> import jax, jax.numpy as jnp
    >>> import jaxmutate as jm
    >>> from jaxmutate.models.darts import DartsBackbone
    >>> net = DartsBackbone(base_channels=2, num_layers=1, num_nodes=1, num_classes=3, op_names=("zero", "skip_connect"))
    >>> variables = net.init(jax.random.key(0), jnp.ones((2, 8, 8, 1)), None)
    >>> mutator = jm.DiffModuleMutator().prepare_from_supernet(variables)
    >>> alpha = mutator.init_arch_params(jax.random.key(1))
    >>> batch = (jnp.ones((2, 8, 8, 1)), jnp.array([0, 2]))
    >>> loss, (batch_stats, logits) = supernet_loss(net, mutator, variables["params"], variables["batch_stats"], alpha,
    ...                                             batch, jax.random.key(2))
    >>> loss.shape, logits.shape, sorted(batch_stats) == sorted(variables["batch_stats"])
    ((), (2, 3), True)
  """
  choices = mutator.set_choices(arch_params)
  extra = {} if tau is None else {"tau": tau}
  logits, updates = model.apply(
      {"params": params, "batch_stats": batch_stats},
      batch[0],
      choices,
      train=True,
      mutable=["batch_stats"],
      rngs={GUMBEL_RNG: key},
      **extra,
  )
  return loss_fn(logits, batch[1]), (updates.get("batch_stats", {}), logits)


def arch_gradient(
    model: nn.Module,
    mutator: DiffModuleMutator,
    params: Any,
    batch_stats: Any,
    arch_params: Mapping[int, jax.Array],
    train_batch: Batch,
    val_batch: Batch,
    key: PRNGKey,
    tau: Any = None,
    unroll_lr: float = 0.0,
    unroll_weight_decay: float = 0.0,
    loss_fn: LossFunction = classification_loss,
) -> tuple[jax.Array, dict[int, jax.Array], jax.Array]:
  """The DARTS architecture gradient, first order or exact second order.

  With ``unroll_lr = ξ > 0`` it is ``∇α L_val(w′(α), α)`` with the unrolled
  weights ``w′(α) = w − ξ (∇w L_train(w, α) + λ w)`` (``λ`` =
  ``unroll_weight_decay``), differentiated exactly through ``w′`` (the
  second-order term ``−ξ ∇²α,w L_train · ∇w′ L_val`` comes out of
  reverse-over-reverse AD). With ``ξ = 0`` (a Python number) it is the
  first-order gradient ``∇α L_val(w, α)`` and the training batch is unused.

  Args:
    model, mutator: the supernet and its prepared ``DiffModuleMutator``.
    params, batch_stats: supernet weights and BatchNorm statistics.
    arch_params: ``{group id: logits}``.
    train_batch: ``(images, labels)`` for the virtual weight step.
    val_batch: ``(images, labels)`` for the architecture loss.
    key: PRNG key (split for the Gumbel noise of the two passes).
    tau: Gumbel temperature, or ``None`` for models without Gumbel mutables.
    unroll_lr: ``ξ``, the virtual step's learning rate (0: first order).
    unroll_weight_decay: ``λ`` of the virtual step.
    loss_fn: ``loss_fn(logits, labels)``.

  Returns:
    ``(validation loss, {group id: gradient}, validation logits)``.

  Example:
    >>> import jax, jax.numpy as jnp, flax.linen as nn
    >>> import jaxmutate as jm
    >>> from jaxmutate.algorithms._darts import arch_gradient
    >>> class Net(nn.Module):
    ...   @nn.compact
    ...   def __call__(self, x, choices, train=False):
    ...     return jm.DiffMutableOP({"a": nn.Dense(3), "b": nn.Dense(3)}, name="op")(x, choices)
    >>> x, y = jnp.ones((4, 2)), jnp.zeros(4, jnp.int32)
    >>> variables = Net().init(jax.random.key(0), x, None)
    >>> mutator = jm.DiffModuleMutator().prepare_from_supernet(variables)
    >>> alpha = mutator.init_arch_params(jax.random.key(1))
    >>> loss, grads, _ = arch_gradient(Net(), mutator, variables["params"], {}, alpha, (x, y), (x, y),
    ...                                jax.random.key(2), unroll_lr=0.1)
    >>> grads[0].shape
    (2,)
  """
  train_key, val_key = jax.random.split(key)

  def val_loss(arch):
    weights = params
    if not (isinstance(unroll_lr, (int, float)) and unroll_lr == 0):
      grads = jax.grad(lambda w: supernet_loss(model, mutator, w, batch_stats, arch, train_batch, train_key, tau, loss_fn)[0])(params)
      weights = jax.tree.map(lambda w, g: w - unroll_lr * (g + unroll_weight_decay * w), params, grads)
    loss, (_, logits) = supernet_loss(model, mutator, weights, batch_stats, arch, val_batch, val_key, tau, loss_fn)
    return loss, logits

  (loss, logits), grads = jax.value_and_grad(val_loss, has_aux=True)(dict(arch_params))
  return loss, grads, logits


def make_weight_optimizer(config: Mapping[str, Any] | optax.GradientTransformation) -> optax.GradientTransformation:
  """An optax optimiser from ``dict(type=..., weight_decay=0, clip_grad_norm=None, ...)``.

  ``weight_decay`` becomes an L2 term added to the gradient (PyTorch's SGD /
  Adam ``weight_decay``, as DARTS uses) and ``clip_grad_norm`` a global-norm
  clip before it; the other keys go to :func:`~jaxmutate.algorithms.build_optimizer`.

  Example:
    >>> from jaxmutate.algorithms._darts import make_weight_optimizer
    >>> opt = make_weight_optimizer(dict(type="sgd", learning_rate=0.1, momentum=0.9, weight_decay=3e-4, clip_grad_norm=5.0))
    >>> type(opt).__name__
    'GradientTransformationExtraArgs'
  """
  if isinstance(config, optax.GradientTransformation):
    return config
  config = dict(config)
  weight_decay = float(config.pop("weight_decay", 0.0))
  clip = config.pop("clip_grad_norm", None)
  parts = []
  if clip is not None:
    parts.append(optax.clip_by_global_norm(float(clip)))
  if weight_decay:
    parts.append(optax.add_decayed_weights(weight_decay))
  parts.append(build_optimizer(config))
  return optax.chain(*parts)


def init_darts_state(
    model: nn.Module,
    mutator: DiffModuleMutator,
    weight_optimizer: optax.GradientTransformation,
    arch_optimizer: optax.GradientTransformation,
    key: PRNGKey,
    sample_input: jax.Array,
    compiler_options: Mapping[str, Any] | None = None,
) -> tuple[DartsState, DiffModuleMutator, dict[str, Any]]:
  """Initialises the supernet, prepares the mutator and both optimiser states.

  Args:
    model: the supernet, called as ``model(x, choices, train=..., [tau=...])``.
    mutator: an (unprepared or prepared) ``DiffModuleMutator``.
    weight_optimizer, arch_optimizer: the two optax optimisers.
    key: PRNG key, split into the weight and the logit initialisation keys.
    sample_input: a batch of the input shape.
    compiler_options: XLA options for the jitted init (e.g.
      ``{"xla_backend_optimization_level": 0}`` compiles faster on CPU).

  Returns:
    ``(state, prepared mutator, variables from init)``.

  Example:
    >>> import jax, jax.numpy as jnp, optax
    >>> import jaxmutate as jm
    >>> from jaxmutate.algorithms import init_darts_state
    >>> from jaxmutate.models.darts import DartsBackbone
    >>> net = DartsBackbone(base_channels=2, num_layers=1, num_nodes=1, num_classes=3, op_names=("zero", "skip_connect"))
    >>> state, mutator, variables = init_darts_state(net, jm.DiffModuleMutator(), optax.sgd(0.1), optax.adam(1e-3),
    ...                                              jax.random.key(0), jnp.ones((2, 8, 8, 1)),
    ...                                              compiler_options={"xla_backend_optimization_level": 0})
    >>> [mutator.group_key(g) for g in sorted(state.arch_params)], sorted(variables)
    (['reduce_n2', 'reduce_n2_p0', 'reduce_n2_p1'], ['batch_stats', 'mutables', 'params'])
  """
  init_key, arch_key = jax.random.split(key)
  init = jax.jit(lambda k, x: model.init(k, x, None), compiler_options=dict(compiler_options or {}) or None)
  variables = init(init_key, sample_input)
  variables = {col: tree for col, tree in variables.items()}
  prepared = mutator if mutator.groups is not None else mutator.prepare_from_supernet(variables)
  arch_params = prepared.init_arch_params(arch_key)
  params = variables["params"]
  state = DartsState(
      params=params,
      batch_stats=variables.get("batch_stats", {}),
      arch_params=arch_params,
      weight_opt_state=weight_optimizer.init(params),
      arch_opt_state=arch_optimizer.init(arch_params),
      step=jnp.int32(0),
  )
  return state, prepared, variables


def make_darts_steps(
    model: nn.Module,
    mutator: DiffModuleMutator,
    weight_optimizer: optax.GradientTransformation,
    arch_optimizer: optax.GradientTransformation,
    *,
    unroll: bool = False,
    unroll_lr: float = 0.025,
    unroll_weight_decay: float = 0.0,
    loss_fn: LossFunction = classification_loss,
    compiler_options: Mapping[str, Any] | None = None,
) -> DartsSteps:
  """Jitted DARTS steps (see :class:`DartsSteps`).

  The architecture step uses :func:`arch_gradient` (second order when
  ``unroll``, with ``ξ = unroll_lr``) and ``arch_optimizer``; its BatchNorm
  runs in training mode but its statistics are discarded (running statistics
  follow the training data). The weight step uses ``weight_optimizer`` on the
  training batch and updates the BatchNorm statistics. ``tau`` (the Gumbel
  temperature, a float32 scalar: changing it never recompiles) is passed to
  the model only when the supernet has Gumbel mutables; keys split per pass.

  Args:
    model, mutator: the supernet and its prepared ``DiffModuleMutator``.
    weight_optimizer, arch_optimizer: optax optimisers of the two pytrees.
    unroll: exact second-order architecture gradient.
    unroll_lr: ``ξ`` (usually the weight learning rate).
    unroll_weight_decay: weight decay in the virtual step.
    loss_fn: ``loss_fn(logits, labels)``.
    compiler_options: XLA compiler options of the jitted steps.

  Returns:
    :class:`DartsSteps`.

  Raises:
    ValueError: the mutator is not prepared, or ``unroll_lr`` < 0.

  Example:
    >>> import jax, jax.numpy as jnp, optax
    >>> import jaxmutate as jm
    >>> from jaxmutate.algorithms._darts import init_darts_state, make_darts_steps
    >>> from jaxmutate.models.darts import DartsBackbone
    >>> net = DartsBackbone(base_channels=2, num_layers=1, num_nodes=1, num_classes=3, op_names=("zero", "skip_connect"))
    >>> x, y = jnp.ones((2, 8, 8, 1)), jnp.zeros(2, jnp.int32)
    >>> fast = {"xla_backend_optimization_level": 0}
    >>> state, mutator, _ = init_darts_state(net, jm.DiffModuleMutator(), optax.sgd(0.1), optax.adam(1e-3),
    ...                                      jax.random.key(0), x, compiler_options=fast)
    >>> steps = make_darts_steps(net, mutator, optax.sgd(0.1), optax.adam(1e-3), unroll=True, unroll_lr=0.1,
    ...                          compiler_options=fast)
    >>> state, metrics = steps.search_step(state, (x, y), (x, y), jax.random.key(1), 1.0)
    >>> int(state.step), sorted(metrics)
    (1, ['train_accuracy', 'train_loss', 'val_accuracy', 'val_loss'])
  """
  if mutator.groups is None:
    raise ValueError("make_darts_steps needs a prepared mutator: call mutator.prepare_from_supernet(variables) first.")
  if not unroll_lr >= 0:
    raise ValueError(f"make_darts_steps: unroll_lr must be >= 0, got {unroll_lr!r}.")
  with_tau = uses_temperature(mutator)
  xi = float(unroll_lr) if unroll else 0.0
  options = dict(compiler_options or {}) or None

  def model_tau(tau):
    return jnp.asarray(tau, jnp.float32) if with_tau else None

  def arch_update(state: DartsState, train_batch: Batch, val_batch: Batch, key: PRNGKey, tau: Any):
    loss, grads, logits = arch_gradient(
        model, mutator, state.params, state.batch_stats, state.arch_params, train_batch, val_batch, key,
        model_tau(tau), xi, unroll_weight_decay, loss_fn,
    )
    updates, arch_opt_state = arch_optimizer.update(grads, state.arch_opt_state, state.arch_params)
    arch_params = optax.apply_updates(state.arch_params, updates)
    metrics = {"val_loss": loss, "val_accuracy": accuracy(logits, val_batch[1])}
    return state._replace(arch_params=arch_params, arch_opt_state=arch_opt_state), metrics

  def weight_update(state: DartsState, train_batch: Batch, key: PRNGKey, tau: Any):
    def loss_of(params):
      return supernet_loss(model, mutator, params, state.batch_stats, state.arch_params, train_batch, key, model_tau(tau), loss_fn)

    (loss, (batch_stats, logits)), grads = jax.value_and_grad(loss_of, has_aux=True)(state.params)
    updates, weight_opt_state = weight_optimizer.update(grads, state.weight_opt_state, state.params)
    params = optax.apply_updates(state.params, updates)
    metrics = {"train_loss": loss, "train_accuracy": accuracy(logits, train_batch[1])}
    return state._replace(params=params, batch_stats=batch_stats, weight_opt_state=weight_opt_state), metrics

  def _arch_step(state, train_batch, val_batch, key, tau):
    return arch_update(state, train_batch, val_batch, key, tau)

  def _weight_step(state, train_batch, key, tau):
    state, metrics = weight_update(state, train_batch, key, tau)
    return state._replace(step=state.step + 1), metrics

  def _search_step(state, train_batch, val_batch, key, tau):
    arch_key, weight_key = jax.random.split(key)
    state, arch_metrics = arch_update(state, train_batch, val_batch, arch_key, tau)
    state, weight_metrics = weight_update(state, train_batch, weight_key, tau)
    return state._replace(step=state.step + 1), {**arch_metrics, **weight_metrics}

  jitted_arch = jax.jit(_arch_step, compiler_options=options)
  jitted_weight = jax.jit(_weight_step, compiler_options=options)
  jitted_search = jax.jit(_search_step, compiler_options=options)

  def _checked_tau(tau: Any) -> jax.Array:
    if with_tau:
      check_temperature("DARTS step", tau)
    return jnp.asarray(1.0 if tau is None else tau, jnp.float32)

  def arch_step(state: DartsState, train_batch: Batch, val_batch: Batch, key: PRNGKey, tau: Any = None):
    return jitted_arch(state, train_batch, val_batch, key, _checked_tau(tau))

  def weight_step(state: DartsState, train_batch: Batch, key: PRNGKey, tau: Any = None):
    return jitted_weight(state, train_batch, key, _checked_tau(tau))

  def search_step(state: DartsState, train_batch: Batch, val_batch: Batch, key: PRNGKey, tau: Any = None):
    return jitted_search(state, train_batch, val_batch, key, _checked_tau(tau))

  return DartsSteps(arch_step, weight_step, search_step)


def derive_group_choices(
    mutator: DiffModuleMutator, arch_params: Mapping[int, jax.Array], exclude: tuple[str, ...] = ("zero",)
) -> GroupChoices:
  """The discrete subnet: argmax ops and top-``num_chosen`` routes.

  Like the DARTS paper, candidates named in ``exclude`` (the ``zero`` op) are
  never chosen for an op group, unless they are its only candidates.

  Returns:
    ``{group id: int32 index}`` for ops, ``int32[num_chosen]`` for routes.

  Example:
    >>> from jaxmutate.algorithms import derive_group_choices
    >>> import jax, jax.numpy as jnp
    >>> import jaxmutate as jm
    >>> from jaxmutate.models.darts import DartsBackbone
    >>> net = DartsBackbone(base_channels=2, num_layers=1, num_nodes=1, num_classes=3, op_names=("zero", "skip_connect"))
    >>> variables = net.init(jax.random.key(0), jnp.ones((2, 8, 8, 1)), None)
    >>> mutator = jm.DiffModuleMutator().prepare_from_supernet(variables)
    >>> [mutator.group_spec(g).choice_names for g in (0, 1)]
    [('reduce_n2_p0', 'reduce_n2_p1'), ('zero', 'skip_connect')]
    >>> alpha = {0: jnp.array([0.0, 1.0]), 1: jnp.array([5.0, 0.0]), 2: jnp.array([0.0, 1.0])}
    >>> {g: c.tolist() for g, c in derive_group_choices(mutator, alpha).items()}  # group 1 never takes "zero"
    {0: [1, 0], 1: 1, 2: 1}
  """
  checked = check_arch_params(mutator, arch_params)
  masked = {}
  for group, logits in checked.items():
    names = mutator.group_spec(group).choice_names
    drop = jnp.asarray([name in exclude for name in names])
    if mutator.group_spec(group).num_chosen is None and not bool(drop.all()):
      logits = jnp.where(drop, -jnp.inf, logits)
    masked[group] = logits
  return mutator.sample_choices(masked)


def discrete_arch_weights(mutator: DiffModuleMutator, group_choices: Mapping[int, Any]) -> dict[int, jax.Array]:
  """Mixture weights of a discrete subnet: 1 on chosen candidates/edges, else 0.

  Fed through ``set_choices`` to a supernet built with ``direct_weights=True``
  mutables, the supernet computes exactly the derived discrete network.

  Example:
    >>> from jaxmutate.algorithms import discrete_arch_weights
    >>> import jax, jax.numpy as jnp
    >>> import jaxmutate as jm
    >>> from jaxmutate.models.darts import DartsBackbone
    >>> net = DartsBackbone(base_channels=2, num_layers=1, num_nodes=1, num_classes=3, op_names=("zero", "skip_connect"))
    >>> variables = net.init(jax.random.key(0), jnp.ones((2, 8, 8, 1)), None)
    >>> mutator = jm.DiffModuleMutator().prepare_from_supernet(variables)
    >>> group_choices = {0: jnp.array([1, 0], jnp.int32), 1: jnp.int32(1), 2: jnp.int32(0)}
    >>> {g: w.tolist() for g, w in discrete_arch_weights(mutator, group_choices).items()}
    {0: [1.0, 1.0], 1: [0.0, 1.0], 2: [1.0, 0.0]}
  """
  return {
      g: mutator.group_spec(g).mutable_type.discrete_weights(mutator.group_spec(g), jnp.asarray(c))
      for g, c in group_choices.items()
  }


def arch_weights_table(mutator: DiffModuleMutator, arch_params: Mapping[int, jax.Array]) -> dict[str, list[float]]:
  """``{group alias: softmax(logits)}`` as plain floats (for logs and plots).

  Example:
    >>> from jaxmutate.algorithms import arch_weights_table
    >>> import jax, jax.numpy as jnp
    >>> import jaxmutate as jm
    >>> from jaxmutate.models.darts import DartsBackbone
    >>> net = DartsBackbone(base_channels=2, num_layers=1, num_nodes=1, num_classes=3, op_names=("zero", "skip_connect"))
    >>> variables = net.init(jax.random.key(0), jnp.ones((2, 8, 8, 1)), None)
    >>> mutator = jm.DiffModuleMutator().prepare_from_supernet(variables)
    >>> arch_weights_table(mutator, {0: jnp.zeros(2), 1: jnp.array([0.0, jnp.log(3.0)]), 2: jnp.zeros(2)})
    {'reduce_n2': [0.5, 0.5], 'reduce_n2_p0': [0.25, 0.75], 'reduce_n2_p1': [0.5, 0.5]}
  """
  return {mutator.group_key(g): np.asarray(jax.nn.softmax(v)).round(5).tolist() for g, v in arch_params.items()}


def _plot_arch_weights(path: Path, log: dict[str, Any]) -> bool:
  try:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
  except ImportError:
    return False
  keys = list(log["choice_names"])
  if not log["history"]:
    return False
  cols = min(6, len(keys))
  rows = -(-len(keys) // cols)
  fig, axes = plt.subplots(rows, cols, figsize=(3.2 * cols, 2.4 * rows), squeeze=False)
  epochs = [h["epoch"] for h in log["history"]]
  # Op groups share one figure legend (their candidates); routes (edge names
  # that differ per node) get their own small legends.
  op_names = max((tuple(names) for names in log["choice_names"].values()), key=len)
  legend_axis = None
  for ax, key in zip(axes.flat, keys):
    series = np.asarray([h["weights"][key] for h in log["history"]])
    for i, name in enumerate(log["choice_names"][key]):
      ax.plot(epochs, series[:, i], label=name)
    ax.set_title(key, fontsize=8)
    ax.tick_params(labelsize=6)
    if tuple(log["choice_names"][key]) == op_names:
      legend_axis = legend_axis or ax
    else:
      ax.legend(fontsize=5)
  for ax in list(axes.flat)[len(keys):]:
    ax.axis("off")
  handles, labels = (legend_axis or axes.flat[0]).get_legend_handles_labels()
  fig.legend(handles, labels, loc="lower center", ncol=min(8, len(labels)), fontsize=7)
  fig.suptitle("DARTS architecture weights (softmax of logits) per epoch")
  fig.tight_layout(rect=(0, 0.06, 1, 0.96))
  fig.savefig(path, dpi=80)
  plt.close(fig)
  return True


@MODELS.register_module()
class DARTS:
  """The DARTS search runner the CLI builds from ``model = dict(type="DARTS", ...)``.

  Args:
    architecture: the supernet (a built module or a config dict), e.g.
      ``dict(type="DartsBackbone", num_classes=10, ...)``; it must return
      class logits.
    mutator: a ``DiffModuleMutator`` (or its config dict); default one.
    unroll: exact second-order architecture gradient (MMRazor's ``unroll``).
    unroll_lr: ``ξ``; ``None`` uses the weight optimiser's learning rate
      (when it is a number), else 0.025.
    exclude_zero: never derive the ``zero`` op for an edge (DARTS paper).

  Raises:
    TypeError: ``mutator`` is not a ``DiffModuleMutator``.

  Example:
    >>> import jaxmutate as jm
    >>> import jaxmutate.algorithms._darts  # registers DARTS
    >>> algo = jm.build(dict(type="DARTS", architecture=dict(type="DartsBackbone", num_classes=10),
    ...                      mutator=dict(type="DiffModuleMutator"), unroll=True))
    >>> type(algo).__name__, algo.unroll
    ('DARTS', True)
  """

  def __init__(
      self,
      architecture: nn.Module | Mapping[str, Any],
      mutator: DiffModuleMutator | Mapping[str, Any] | None = None,
      unroll: bool = False,
      unroll_lr: float | None = None,
      exclude_zero: bool = True,
  ):
    if isinstance(architecture, Mapping):
      architecture = build(architecture)
    if not isinstance(architecture, nn.Module):
      raise TypeError(f"DARTS architecture must be a Flax module or its config dict, got {architecture!r}.")
    if mutator is None:
      mutator = DiffModuleMutator()
    elif isinstance(mutator, Mapping):
      mutator = build(mutator)
    if not isinstance(mutator, DiffModuleMutator):
      raise TypeError(f"DARTS mutator must be a DiffModuleMutator (or its config), got {type(mutator).__name__}.")
    if unroll_lr is not None and not unroll_lr >= 0:
      raise ValueError(f"DARTS unroll_lr must be >= 0, got {unroll_lr!r}.")
    self.architecture = architecture
    self.mutator = mutator
    self.unroll = bool(unroll)
    self.unroll_lr = unroll_lr
    self.exclude_zero = bool(exclude_zero)

  def run(self, config: dict[str, Any], work_dir: Path, seed: int, progress: bool = True) -> SearchResult:
    """Searches on the digits data, derives and (optionally) retrains the subnet.

    Config keys (all optional but ``model``): ``data`` (``load_digits``
    arguments), ``train_cfg`` (``epochs``, ``batch_size``, ``optimizer``: the
    weight optimiser with ``weight_decay``/``clip_grad_norm``,
    ``arch_optimizer``, ``tau_schedule``: arguments of
    :func:`~jaxmutate.mutables.gumbel_temperature_schedule` without
    ``transition_steps``, ``fast_compile``: XLA optimisation level 0, which
    compiles the large supernet several times faster on CPU), ``retrain_cfg``
    (``epochs``, ``optimizer``; ``epochs=0`` skips it).

    Writes ``arch_weights.json`` (softmax weights per group per epoch) and,
    with matplotlib, ``arch_weights.png`` into ``work_dir``. The summary holds
    the supernet's validation accuracy, the derived network's accuracy with
    the inherited weights (BatchNorm statistics re-estimated on 512 training
    images) and after the retrain, parameter counts and timings.
    """
    from jaxmutate.data import iterate_batches, load_digits
    from jaxmutate.models.darts import DartsBackbone, derive_discrete_network, discrete_network_variables
    from jaxmutate.mutables._diff import gumbel_temperature_schedule

    work_dir = Path(work_dir)
    work_dir.mkdir(parents=True, exist_ok=True)
    timings: dict[str, float] = {}
    data_cfg = dict(config.get("data", {}))
    data_cfg.pop("type", None)
    data = load_digits(**data_cfg)
    train_cfg = dict(
        epochs=10,
        batch_size=64,
        optimizer=dict(type="sgd", learning_rate=0.05, momentum=0.9, weight_decay=3e-4, clip_grad_norm=5.0),
        arch_optimizer=dict(type="adam", learning_rate=3e-3, b1=0.5, b2=0.999, weight_decay=1e-3),
        tau_schedule=dict(init_value=10.0, end_value=0.1),
        fast_compile=True,
    )
    train_cfg.update(config.get("train_cfg", {}))
    retrain_cfg = dict(epochs=0, batch_size=train_cfg["batch_size"], optimizer=dict(type="sgd", learning_rate=0.05, momentum=0.9))
    retrain_cfg.update(config.get("retrain_cfg", {}))
    epochs, batch_size = int(train_cfg["epochs"]), int(train_cfg["batch_size"])
    if epochs < 1 or batch_size < 1:
      raise ValueError(f"train_cfg epochs and batch_size must be >= 1, got epochs={epochs}, batch_size={batch_size}.")
    compiler_options = {"xla_backend_optimization_level": 0} if train_cfg["fast_compile"] else None

    weight_optimizer = make_weight_optimizer(train_cfg["optimizer"])
    arch_optimizer = make_weight_optimizer(train_cfg["arch_optimizer"])
    unroll_lr = self.unroll_lr
    if unroll_lr is None:
      lr = train_cfg["optimizer"].get("learning_rate") if isinstance(train_cfg["optimizer"], Mapping) else None
      unroll_lr = float(lr) if isinstance(lr, (int, float)) else 0.025
    unroll_wd = float(train_cfg["optimizer"].get("weight_decay", 0.0)) if isinstance(train_cfg["optimizer"], Mapping) else 0.0

    key = jax.random.key(seed)
    init_key, train_key, val_key, step_key, retrain_key = jax.random.split(key, 5)
    model = self.architecture
    sample = jnp.asarray(data.train.images[:batch_size])
    start = time.perf_counter()
    state, mutator, variables = init_darts_state(model, self.mutator, weight_optimizer, arch_optimizer, init_key, sample, compiler_options)
    timings["init_s"] = time.perf_counter() - start
    out_shape = jax.eval_shape(lambda: model.apply(variables, sample[:2], mutator.set_choices(state.arch_params), rngs={GUMBEL_RNG: init_key}))
    if getattr(out_shape, "shape", None) != (2, data.num_classes):
      raise ValueError(
          f"DARTS needs an architecture that outputs class logits of shape (batch, {data.num_classes}); got "
          f"{getattr(out_shape, 'shape', out_shape)} (set num_classes={data.num_classes} on the backbone)."
      )
    steps = make_darts_steps(
        model, mutator, weight_optimizer, arch_optimizer, unroll=self.unroll, unroll_lr=unroll_lr,
        unroll_weight_decay=unroll_wd, compiler_options=compiler_options,
    )
    steps_per_epoch = len(data.train) // batch_size
    total_steps = epochs * steps_per_epoch
    with_tau = uses_temperature(mutator)
    tau_schedule = gumbel_temperature_schedule(transition_steps=max(total_steps, 1), **train_cfg["tau_schedule"]) if with_tau else None

    log: dict[str, Any] = {
        "choice_names": {mutator.group_key(g): list(mutator.group_spec(g).choice_names) for g in mutator.search_groups},
        "history": [{"epoch": 0, "step": 0, "weights": arch_weights_table(mutator, state.arch_params)}],
    }
    step_times: list[float] = []
    epoch_metrics: list[dict[str, float]] = []
    bar = None
    if progress:
      from tqdm.auto import tqdm

      bar = tqdm(total=total_steps, desc="DARTS search" + (" (2nd order)" if self.unroll else ""), unit="step")
    val_keys = iter(jax.random.split(val_key, 10 * epochs + 10))
    val_batches = iterate_batches(next(val_keys), data.val, batch_size)
    search_start = time.perf_counter()
    for epoch in range(epochs):
      sums: dict[str, float] = {}
      for images, labels in iterate_batches(jax.random.fold_in(train_key, epoch), data.train, batch_size):
        try:
          val_batch = next(val_batches)
        except StopIteration:
          val_batches = iterate_batches(next(val_keys), data.val, batch_size)
          val_batch = next(val_batches)
        tau = float(tau_schedule(int(state.step))) if with_tau else None
        start = time.perf_counter()
        state, metrics = steps.search_step(
            state, (jnp.asarray(images), jnp.asarray(labels)), (jnp.asarray(val_batch[0]), jnp.asarray(val_batch[1])),
            jax.random.fold_in(step_key, int(state.step)), tau,
        )
        metrics = jax.device_get(metrics)
        step_times.append(time.perf_counter() - start)
        for name, value in metrics.items():
          sums[name] = sums.get(name, 0.0) + float(value)
        if bar is not None:
          bar.update(1)
          bar.set_postfix(epoch=epoch + 1, train_acc=f"{float(metrics['train_accuracy']):.2f}", val_acc=f"{float(metrics['val_accuracy']):.2f}")
      averages = {name: value / steps_per_epoch for name, value in sums.items()}
      if with_tau:
        averages["tau"] = float(tau_schedule(int(state.step)))
      epoch_metrics.append(averages)
      log["history"].append({"epoch": epoch + 1, "step": int(state.step), "weights": arch_weights_table(mutator, state.arch_params), **averages})
    if bar is not None:
      bar.close()
    timings["search_s"] = time.perf_counter() - search_start
    timings["first_step_s (compile)"] = step_times[0]
    timings["median_step_s"] = float(np.median(step_times[1:])) if len(step_times) > 1 else step_times[0]

    (work_dir / "arch_weights.json").write_text(json.dumps(log, indent=1))
    plotted = _plot_arch_weights(work_dir / "arch_weights.png", log)

    # Supernet accuracy with its softmax mixtures, inference-mode BatchNorm.
    val_images, val_labels = jnp.asarray(data.val.images), jnp.asarray(data.val.labels)
    test_images, test_labels = jnp.asarray(data.test.images), jnp.asarray(data.test.labels)
    extra = {"tau": jnp.float32(train_cfg["tau_schedule"].get("end_value", 1.0))} if with_tau else {}
    supernet_logits = jax.jit(
        lambda p, b, a, x: model.apply({"params": p, "batch_stats": b}, x, mutator.set_choices(a), train=False, rngs={GUMBEL_RNG: init_key}, **extra),
        compiler_options=compiler_options,
    )(state.params, state.batch_stats, state.arch_params, val_images)
    supernet_val = float(accuracy(supernet_logits, val_labels))

    group_choices = derive_group_choices(mutator, state.arch_params, ("zero",) if self.exclude_zero else ())
    fix_subnet = mutator.export_fix_subnet(group_choices)
    summary: dict[str, Any] = {
        "algorithm": ("GDAS-style hard Gumbel" if with_tau else "DARTS") + (" (second order, exact)" if self.unroll else " (first order)"),
        "gumbel": with_tau,
        "epochs": epochs,
        "steps": int(state.step),
        "num_search_groups": len(mutator.search_groups),
        "supernet_val_accuracy": supernet_val,
        "final_epoch": epoch_metrics[-1],
        "arch_weights_plot": plotted,
    }
    if isinstance(model, DartsBackbone):
      network = derive_discrete_network(model, fix_subnet)
      sub_vars = discrete_network_variables(network, {"params": state.params, "batch_stats": state.batch_stats}, sample)
      summary["derived_num_params"] = int(sum(np.size(x) for x in jax.tree.leaves(sub_vars["params"])))
      summary["supernet_num_params"] = int(sum(np.size(x) for x in jax.tree.leaves(state.params)))
      predict = jax.jit(lambda v, x: network.apply(v, x, train=False), compiler_options=compiler_options)
      # The supernet's running BatchNorm statistics describe mixtures, not the
      # discrete network: re-estimate them (exactly, on training images) first.
      calibration = jnp.asarray(data.train.images[:512])
      sub_vars["batch_stats"] = jax.jit(
          lambda v, x: recalibrate_batch_stats(_WithChoices(**_fields(network)), v["params"], v["batch_stats"], {}, x),
          compiler_options=compiler_options,
      )(sub_vars, calibration)
      summary["derived_val_accuracy_inherited"] = float(accuracy(predict(sub_vars, val_images), val_labels))
      if int(retrain_cfg["epochs"]) > 0:
        start = time.perf_counter()
        sub_vars = _retrain(network, sub_vars, data, retrain_cfg, retrain_key, progress, compiler_options)
        timings["retrain_s"] = time.perf_counter() - start
        summary["retrain_epochs"] = int(retrain_cfg["epochs"])
        summary["derived_val_accuracy_retrained"] = float(accuracy(predict(sub_vars, val_images), val_labels))
        summary["derived_test_accuracy_retrained"] = float(accuracy(predict(sub_vars, test_images), test_labels))
    summary["timings"] = {k: round(v, 4) for k, v in timings.items()}
    return SearchResult(fix_subnet, summary)


class _WithChoices(DartsDiscreteNetwork):
  """The derived network with the supernet call signature ``(x, choices, train)``."""

  def __call__(self, x: jax.Array, choices: Any = None, train: bool = False) -> jax.Array:  # type: ignore[override]
    del choices
    return super().__call__(x, train=train)


def _fields(module: nn.Module) -> dict[str, Any]:
  return {f.name: getattr(module, f.name) for f in dataclasses.fields(module) if f.init and f.name not in ("parent", "name")}


def _retrain(
    network: nn.Module,
    variables: dict[str, Any],
    data: Any,
    retrain_cfg: Mapping[str, Any],
    key: PRNGKey,
    progress: bool,
    compiler_options: Mapping[str, Any] | None,
) -> dict[str, Any]:
  """Fine-tunes the derived network (from the inherited weights) on train."""
  from jaxmutate.data import iterate_batches

  optimizer = make_weight_optimizer(retrain_cfg["optimizer"])
  params, batch_stats = variables["params"], variables.get("batch_stats", {})
  opt_state = optimizer.init(params)

  def step(params, batch_stats, opt_state, images, labels):
    def loss_of(p):
      logits, updates = network.apply({"params": p, "batch_stats": batch_stats}, images, train=True, mutable=["batch_stats"])
      return classification_loss(logits, labels), updates.get("batch_stats", {})

    (_, new_stats), grads = jax.value_and_grad(loss_of, has_aux=True)(params)
    updates, opt_state = optimizer.update(grads, opt_state, params)
    return optax.apply_updates(params, updates), new_stats, opt_state

  step = jax.jit(step, compiler_options=dict(compiler_options or {}) or None)
  batch_size = int(retrain_cfg["batch_size"])
  epochs = int(retrain_cfg["epochs"])
  iterator = range(epochs)
  if progress:
    from tqdm.auto import tqdm

    iterator = tqdm(iterator, desc="retrain derived network", unit="epoch")
  for epoch in iterator:
    for images, labels in iterate_batches(jax.random.fold_in(key, epoch), data.train, batch_size):
      params, batch_stats, opt_state = step(params, batch_stats, opt_state, jnp.asarray(images), jnp.asarray(labels))
  return {"params": params, "batch_stats": batch_stats}


MODELS.register_module(name="Darts", module=DARTS)
