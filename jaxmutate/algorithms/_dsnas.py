"""DSNAS as pure jitted steps: one-hot sampled ops, a FLOPs loss above a target, a fixed subnet to finetune.

MMRazor's ``DSNAS`` runs three stages by epoch: supernet pretraining
(weights only, ``epoch < pretrain_epochs``), search (weights and
architecture logits on the same training batch, until ``finetune_epochs``)
and finetuning of the fixed subnet. Each search step samples one candidate
per group from ``softmax(α)`` (:class:`~jaxmutate.OneHotMutableOP`: only the
sampled candidate runs, scaled by a weight of value 1 whose gradient is the
score function), so one backward pass gives the weights their ordinary
gradient and ``α`` DSNAS's gradient ``∂L/∂wᵢ · ∇ log pᵢ``. When the argmax
subnet costs at least the target (MMRazor's gate), a FLOPs loss
``coef · E_softmax(α)[FLOPs] / target`` is added (see
:func:`~jaxmutate.algorithms.expected_cost`).

Differences from MMRazor, on purpose: the FLOPs loss is the exact expected
cost under ``softmax(α)`` (MMRazor's ``Σ p[sampled] · flops[sampled]``) and
its gradient is added as it is, not multiplied by ``Σ ∂L/∂w`` as MMRazor's
``handle_grads`` multiplies the whole ``α`` gradient (which gives the FLOPs
term a random sign); the gate reads a jittable cost table instead of a
deep-copied, re-exported subnet; the unit-free coefficient divides by the
target. The phase is a traced flag, so moving from pretraining to search
never recompiles.

References:
  Hu et al., DSNAS: Direct Neural Architecture Search without Parameter
  Retraining, CVPR 2020, https://arxiv.org/abs/2002.09128.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from typing import Any, NamedTuple

import flax.linen as nn
import jax
import jax.numpy as jnp
import numpy as np
import optax

from jaxmutate.algorithms._arch_gradient import Batch, supernet_loss
from jaxmutate.algorithms._cost import CostTable, expected_cost
from jaxmutate.algorithms._darts import DartsState
from jaxmutate.algorithms._derive import derive_group_choices
from jaxmutate.algorithms._metrics import LossFunction, accuracy, classification_loss
from jaxmutate.algorithms._spos import supervised_update
from jaxmutate.algorithms._train_state import TrainState
from jaxmutate.errors import ConfigError, NotPreparedError
from jaxmutate.mutables import OneHotMutableOP
from jaxmutate.mutators import DiffModuleMutator
from jaxmutate.typing import GroupChoices, PRNGKey

Step = Callable[..., tuple[DartsState, dict[str, jax.Array]]]


class DsnasSteps(NamedTuple):
  """The jitted steps of :func:`make_dsnas_steps`.

  Attributes:
    search_step: ``(state, batch, key, update_arch) -> (state, metrics)``: one
      weight update, and an architecture update where the bool scalar
      ``update_arch`` is true (pretraining passes false; no recompile).
    make_finetune_step: ``make_finetune_step(group_choices)`` is a jitted
      ``(state, batch) -> (state, metrics)`` weight update of the fixed subnet
      ``group_choices`` (from :func:`fix_dsnas_subnet`; its choices are
      constants of the compiled step, so it runs the plain subnet);
      ``arch_params`` stay as they are.

  Example:
    >>> from jaxmutate.algorithms import DsnasSteps
    >>> DsnasSteps._fields
    ('search_step', 'make_finetune_step')
  """

  search_step: Step
  make_finetune_step: Callable[[GroupChoices], Callable[[DartsState, Batch], tuple[DartsState, dict[str, jax.Array]]]]


def fix_dsnas_subnet(
  mutator: DiffModuleMutator, arch_params: Mapping[int, jax.Array], exclude: tuple[str, ...] = ()
) -> GroupChoices:
  """The subnet DSNAS fixes at ``finetune_epochs``: argmax ops, top-``num_chosen`` routes, as NumPy.

  Example:
    >>> import jax.numpy as jnp, flax.linen as nn, jax
    >>> import jaxmutate as jm
    >>> from jaxmutate.algorithms import fix_dsnas_subnet
    >>> op = jm.OneHotMutableOP({"a": nn.Dense(2), "b": nn.Dense(2)}, name="op")
    >>> variables = op.init(jax.random.key(0), jnp.ones((1, 2)), None)
    >>> mutator = jm.DiffModuleMutator().prepare_from_supernet(variables)
    >>> {g: int(c) for g, c in fix_dsnas_subnet(mutator, {0: jnp.array([0.0, 2.0])}).items()}
    {0: 1}
  """
  return {g: np.asarray(c) for g, c in derive_group_choices(mutator, arch_params, exclude).items()}


def make_dsnas_steps(
  model: nn.Module,
  mutator: DiffModuleMutator,
  weight_optimizer: optax.GradientTransformation,
  arch_optimizer: optax.GradientTransformation,
  *,
  cost_table: CostTable | None = None,
  flops_target: float | None = None,
  flops_loss_coef: float = 1.0,
  resource: str = "flops",
  loss_fn: LossFunction = classification_loss,
  compiler_options: Mapping[str, Any] | None = None,
) -> DsnasSteps:
  """Jitted DSNAS steps on a supernet of :class:`~jaxmutate.OneHotMutableOP` s (see :class:`DsnasSteps`).

  The state is a :class:`~jaxmutate.algorithms.DartsState` (weights, logits
  and their two optimiser states; :func:`~jaxmutate.algorithms.init_darts_state`
  makes it). A search step computes the training loss once and updates both
  the weights (``weight_optimizer``) and, where ``update_arch``, the logits
  (``arch_optimizer``), adding the FLOPs loss when a ``cost_table`` and a
  ``flops_target`` are given and the argmax subnet costs ``>= flops_target``.

  Args:
    model, mutator: the supernet (its op groups ``OneHotMutableOP``) and its
      prepared ``DiffModuleMutator``.
    weight_optimizer, arch_optimizer: optax optimisers of the two pytrees.
    cost_table: prices the op groups (e.g. :func:`~jaxmutate.build_resource_table`).
    flops_target: the budget, > 0, in the table's units (MFLOPs per image).
    flops_loss_coef: the FLOPs loss weight, >= 0 (unit-free: the loss is
      ``coef · E[FLOPs] / flops_target``).
    resource: the table's resource the target is about.
    loss_fn: ``loss_fn(logits, labels)``.
    compiler_options: XLA options of the jitted steps.

  Returns:
    :class:`DsnasSteps`. Search metrics: ``loss``, ``accuracy``,
    ``expected_flops`` and ``argmax_flops`` (with a table), ``flops_loss``.

  Raises:
    NotPreparedError: (a ``RuntimeError``) the mutator is not prepared.
    ConfigError: (a ``ValueError``) no ``OneHotMutableOP`` in the supernet, a
      target without a table (or the reverse), a target <= 0, a negative
      coefficient, or an unknown resource.

  Example:
    >>> import jax, jax.numpy as jnp, flax.linen as nn, optax
    >>> import jaxmutate as jm
    >>> from jaxmutate.algorithms import init_darts_state, make_dsnas_steps
    >>> class Net(nn.Module):
    ...   @nn.compact
    ...   def __call__(self, x, choices, train=False):
    ...     return jm.OneHotMutableOP({"a": nn.Dense(3), "b": nn.Dense(3)}, name="op")(x, choices)
    >>> x, y = jnp.ones((4, 2)), jnp.zeros(4, jnp.int32)
    >>> state, mutator, _ = init_darts_state(Net(), jm.DiffModuleMutator(), optax.sgd(0.1), optax.adam(0.1),
    ...                                      jax.random.key(0), x)
    >>> steps = make_dsnas_steps(Net(), mutator, optax.sgd(0.1), optax.adam(0.1))
    >>> state, metrics = steps.search_step(state, (x, y), jax.random.key(1), True)
    >>> int(state.step), sorted(metrics)
    (1, ['accuracy', 'flops_loss', 'loss'])
  """
  if mutator.groups is None:
    raise NotPreparedError(
      f"make_dsnas_steps needs a prepared mutator, got an unprepared {type(mutator).__name__}: call "
      "mutator = mutator.prepare_from_supernet(variables) (or init_darts_state) first."
    )
  if not any(issubclass(spec.mutable_type, OneHotMutableOP) for _, spec in mutator.specs):
    raise ConfigError(
      "make_dsnas_steps: the supernet has no OneHotMutableOP; DSNAS samples one-hot ops (e.g. "
      "DartsBackbone(mutable_cfg=dict(type='OneHotMutableOP')))."
    )
  if (cost_table is None) != (flops_target is None):
    raise ConfigError(
      "make_dsnas_steps: cost_table and flops_target go together (the FLOPs loss needs both), got "
      f"cost_table={'given' if cost_table is not None else None}, flops_target={flops_target!r}."
    )
  if flops_target is not None and not flops_target > 0:
    raise ConfigError(f"make_dsnas_steps: flops_target must be > 0 (MFLOPs per image), got {flops_target!r}.")
  if not flops_loss_coef >= 0:
    raise ConfigError(f"make_dsnas_steps: flops_loss_coef must be >= 0, got {flops_loss_coef!r}.")
  if cost_table is not None and resource not in cost_table.names:
    raise ConfigError(f"make_dsnas_steps: unknown resource {resource!r}; the table has {list(cost_table.names)}.")
  options = dict(compiler_options or {}) or None

  def flops_terms(arch_params: Mapping[int, jax.Array]) -> tuple[jax.Array, dict[str, jax.Array]]:
    if cost_table is None:
      return jnp.float32(0.0), {"flops_loss": jnp.float32(0.0)}
    argmax = {g: jnp.argmax(arch_params[g]).astype(jnp.int32) for g in cost_table.groups}
    argmax_cost = jax.lax.stop_gradient(cost_table(argmax)[resource])  # type: ignore[operator]
    expected = expected_cost(cost_table, arch_params)[resource]
    active = argmax_cost >= flops_target
    loss = jnp.where(active, flops_loss_coef * expected / flops_target, 0.0)
    return loss, {"flops_loss": loss, "expected_flops": expected, "argmax_flops": argmax_cost}

  def search(state: DartsState, batch: Batch, key: PRNGKey, update_arch: jax.Array):
    def loss_of(params, arch_params):
      return supernet_loss(model, mutator, params, state.batch_stats, arch_params, batch, key, None, loss_fn)

    (loss, (batch_stats, logits)), (weight_grads, arch_grads) = jax.value_and_grad(
      loss_of, argnums=(0, 1), has_aux=True
    )(state.params, dict(state.arch_params))
    (_, flops_metrics), flops_grads = jax.value_and_grad(flops_terms, has_aux=True)(dict(state.arch_params))
    arch_grads = jax.tree.map(jnp.add, arch_grads, flops_grads)

    updates, weight_opt_state = weight_optimizer.update(weight_grads, state.weight_opt_state, state.params)
    params = optax.apply_updates(state.params, updates)
    arch_updates, arch_opt_state = arch_optimizer.update(arch_grads, state.arch_opt_state, state.arch_params)
    arch_params = optax.apply_updates(state.arch_params, arch_updates)
    keep = jnp.asarray(update_arch, bool)
    arch_params = jax.tree.map(lambda new, old: jnp.where(keep, new, old), arch_params, state.arch_params)
    arch_opt_state = jax.tree.map(lambda new, old: jnp.where(keep, new, old), arch_opt_state, state.arch_opt_state)
    state = DartsState(params, batch_stats, arch_params, weight_opt_state, arch_opt_state, state.step + 1)
    return state, {"loss": loss, "accuracy": accuracy(logits, batch[1]), **flops_metrics}

  jitted_search = jax.jit(search, compiler_options=options)

  def search_step(state: DartsState, batch: Batch, key: PRNGKey, update_arch: Any = True):
    return jitted_search(state, batch, key, jnp.asarray(update_arch, bool))

  def make_finetune_step(group_choices: GroupChoices):
    choices = {k: np.asarray(v) for k, v in mutator.set_choices(group_choices).items()}

    def step(state: DartsState, batch: Batch):
      train = TrainState(state.params, state.batch_stats, state.weight_opt_state, state.step)
      train, metrics = supervised_update(model, weight_optimizer, loss_fn, train, batch[0], batch[1], choices)
      return state._replace(
        params=train.params, batch_stats=train.batch_stats, weight_opt_state=train.opt_state, step=train.step
      ), metrics

    return jax.jit(step, compiler_options=options)

  return DsnasSteps(search_step, make_finetune_step)
