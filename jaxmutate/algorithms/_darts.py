"""DARTS search steps as pure functions: the search state and the jitted steps.

A search step alternates an architecture step on a validation batch and a
weight step on a training batch, each with its own optax optimiser and state
(Adam for the architecture logits, SGD with momentum for the weights): the
two pytrees never meet in one optimiser. The architecture gradient is
:func:`~jaxmutate.algorithms.arch_gradient` (first or exact second order).
The runner that searches from a config is :class:`jaxmutate.runners.DARTS`.

References:
  Liu et al., DARTS: Differentiable Architecture Search, ICLR 2019,
  https://arxiv.org/abs/1806.09055.
  Dong & Yang, Searching for a Robust Neural Architecture in Four GPU Hours
  (GDAS), CVPR 2019, https://arxiv.org/abs/1910.04465.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from typing import Any, NamedTuple

import flax.linen as nn
import jax
import jax.numpy as jnp
import optax

from jaxmutate.algorithms._arch_gradient import Batch, arch_gradient, supernet_loss
from jaxmutate.algorithms._arch_params import uses_temperature
from jaxmutate.algorithms._metrics import LossFunction, accuracy, classification_loss
from jaxmutate.errors import ConfigError, NotPreparedError
from jaxmutate.mutables import check_temperature
from jaxmutate.mutators import DiffModuleMutator
from jaxmutate.typing import PRNGKey


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
    >>> from jaxmutate.models import DartsBackbone
    >>> net = DartsBackbone(base_channels=2, num_layers=1, num_nodes=1, num_classes=3,
    ...                     op_names=("zero", "skip_connect"))
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
    >>> from jaxmutate.models import DartsBackbone
    >>> net = DartsBackbone(base_channels=2, num_layers=1, num_nodes=1, num_classes=3,
    ...                     op_names=("zero", "skip_connect"))
    >>> variables = net.init(jax.random.key(0), jnp.ones((2, 8, 8, 1)), None)
    >>> mutator = jm.DiffModuleMutator().prepare_from_supernet(variables)
    >>> steps = make_darts_steps(net, mutator, optax.sgd(0.1), optax.adam(1e-3))
    >>> isinstance(steps, DartsSteps), DartsSteps._fields
    (True, ('arch_step', 'weight_step', 'search_step'))
  """

  arch_step: Callable[..., tuple[DartsState, dict[str, jax.Array]]]
  weight_step: Callable[..., tuple[DartsState, dict[str, jax.Array]]]
  search_step: Callable[..., tuple[DartsState, dict[str, jax.Array]]]


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
    >>> from jaxmutate.models import DartsBackbone
    >>> net = DartsBackbone(base_channels=2, num_layers=1, num_nodes=1, num_classes=3,
    ...                     op_names=("zero", "skip_connect"))
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
    NotPreparedError: (a ``RuntimeError``) the mutator is not prepared.
    ConfigError: (a ``ValueError``) ``unroll_lr`` < 0.

  Example:
    >>> import jax, jax.numpy as jnp, optax
    >>> import jaxmutate as jm
    >>> from jaxmutate.algorithms import init_darts_state, make_darts_steps
    >>> from jaxmutate.models import DartsBackbone
    >>> net = DartsBackbone(base_channels=2, num_layers=1, num_nodes=1, num_classes=3,
    ...                     op_names=("zero", "skip_connect"))
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
    raise NotPreparedError(
      f"make_darts_steps needs a prepared mutator, got an unprepared {type(mutator).__name__}: call "
      "mutator = mutator.prepare_from_supernet(variables) (or init_darts_state) first."
    )
  if not unroll_lr >= 0:
    raise ConfigError(f"make_darts_steps: unroll_lr must be >= 0, got {unroll_lr!r}.")
  with_tau = uses_temperature(mutator)
  xi = float(unroll_lr) if unroll else 0.0
  options = dict(compiler_options or {}) or None

  def model_tau(tau):
    return jnp.asarray(tau, jnp.float32) if with_tau else None

  def arch_update(state: DartsState, train_batch: Batch, val_batch: Batch, key: PRNGKey, tau: Any):
    loss, grads, logits = arch_gradient(
      model,
      mutator,
      state.params,
      state.batch_stats,
      state.arch_params,
      train_batch,
      val_batch,
      key,
      model_tau(tau),
      xi,
      unroll_weight_decay,
      loss_fn,
    )
    updates, arch_opt_state = arch_optimizer.update(grads, state.arch_opt_state, state.arch_params)
    arch_params = optax.apply_updates(state.arch_params, updates)
    metrics = {"val_loss": loss, "val_accuracy": accuracy(logits, val_batch[1])}
    return state._replace(arch_params=arch_params, arch_opt_state=arch_opt_state), metrics

  def weight_update(state: DartsState, train_batch: Batch, key: PRNGKey, tau: Any):
    def loss_of(params):
      return supernet_loss(
        model, mutator, params, state.batch_stats, state.arch_params, train_batch, key, model_tau(tau), loss_fn
      )

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
