"""Cost-aware architecture losses: the expected cost of a distribution over subnets, and its penalty.

A cost table (:class:`jaxmutate.resources.ResourceTable`, or anything with
its ``expected(weights)`` method) prices every group's candidates; under
independent per-group weights ``w_g`` (the softmax of the architecture
logits, or Gumbel-softmax samples) the expected cost ``E_w[cost]`` is a
smooth function of the logits. For the one-hot samples of GDAS (hard
Gumbel) and DSNAS, the sampled subnet *is* distributed as ``softmax(α)``
(argmax of Gumbel-perturbed logits is a categorical draw at any
temperature), so the softmax expectation is their exact expected cost.

:func:`cost_penalty` turns it into a hinge penalty above a target, and
:func:`add_cost_penalty` into an optax transformation that adds the
weighted penalty's gradient to the architecture gradient, so a DARTS/GDAS search
(:func:`~jaxmutate.algorithms.make_darts_steps`) becomes cost-aware by
chaining it before the architecture optimiser.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from typing import Any, NamedTuple, Protocol

import jax
import jax.numpy as jnp
import optax

from jaxmutate.errors import ConfigError, SearchSpaceError
from jaxmutate.mutables import check_temperature, gumbel_softmax
from jaxmutate.typing import PRNGKey

WEIGHT_KINDS = ("softmax", "gumbel")


class CostTable(Protocol):
  """What the cost functions need of a table: its resource names, groups and expectation."""

  names: tuple[str, ...]

  @property
  def groups(self) -> tuple[int, ...]: ...

  def expected(self, weights: Mapping[int, jax.Array]) -> dict[str, jax.Array]: ...


def arch_weights(
  arch_params: Mapping[int, jax.Array],
  kind: str = "softmax",
  key: PRNGKey | None = None,
  tau: Any = 1.0,
  groups: tuple[int, ...] | None = None,
) -> dict[int, jax.Array]:
  """Per-group candidate weights of architecture logits: ``softmax(α)`` or a Gumbel-softmax sample.

  Args:
    arch_params: ``{group id: logits}``.
    kind: ``"softmax"`` or ``"gumbel"`` (soft weights ``softmax((α + g) / τ)``,
      one independent draw per group).
    key: PRNG key, required for ``"gumbel"``.
    tau: Gumbel temperature, > 0.
    groups: only these groups (default: all).

  Returns:
    ``{group id: weights}``, each summing to 1; differentiable in the logits.

  Raises:
    ConfigError: (a ``ValueError``) an unknown ``kind``, ``"gumbel"`` without
      a key, or a temperature <= 0.
    SearchSpaceError: (a ``ValueError``) a group in ``groups`` without logits.

  Example:
    >>> import jax, jax.numpy as jnp
    >>> from jaxmutate.algorithms import arch_weights
    >>> alpha = {0: jnp.array([0.0, jnp.log(3.0)])}
    >>> [round(float(w), 3) for w in arch_weights(alpha)[0]]
    [0.25, 0.75]
    >>> arch_weights(alpha, "gumbel", jax.random.key(0), tau=0.5)[0].shape
    (2,)
  """
  if kind not in WEIGHT_KINDS:
    raise ConfigError(f"arch_weights: kind must be one of {WEIGHT_KINDS}, got {kind!r}.")
  if kind == "gumbel" and key is None:
    raise ConfigError("arch_weights: kind='gumbel' needs a PRNG key (key=...).")
  groups = tuple(sorted(arch_params)) if groups is None else tuple(groups)
  missing = [g for g in groups if g not in arch_params]
  if missing:
    raise SearchSpaceError(
      f"arch_weights: no architecture logits for group(s) {missing}; got groups {sorted(arch_params)}."
    )
  if kind == "softmax":
    return {g: jax.nn.softmax(jnp.asarray(arch_params[g], jnp.float32)) for g in groups}
  tau = check_temperature("arch_weights", tau)
  keys = jax.random.split(key, len(groups))
  return {g: gumbel_softmax(k, jnp.asarray(arch_params[g], jnp.float32), tau, hard=False) for g, k in zip(groups, keys)}


def expected_cost(
  table: CostTable,
  arch_params: Mapping[int, jax.Array],
  kind: str = "softmax",
  key: PRNGKey | None = None,
  tau: Any = 1.0,
) -> dict[str, jax.Array]:
  """The expected resources of the subnets the logits describe (``table.expected`` of :func:`arch_weights`).

  Groups the table does not price (e.g. routes it was built with held fixed)
  are ignored; jittable and differentiable in ``arch_params``.

  Example:
    >>> import jax, jax.numpy as jnp
    >>> import jaxmutate as jm
    >>> from jaxmutate.algorithms import expected_cost
    >>> table = jm.ResourceTable(("flops",), {"flops": 4.0}, {"flops": {0: jnp.array([0.0, -3.0])}})
    >>> alpha = {0: jnp.zeros(2)}
    >>> float(expected_cost(table, alpha)["flops"])  # 4 - 3 / 2
    2.5
    >>> float(jax.grad(lambda a: expected_cost(table, a)["flops"])(alpha)[0][1])  # d/dα₁ of 4 - 3·σ(α₁ - α₀)
    -0.75
  """
  return table.expected(arch_weights(arch_params, kind, key, tau, groups=table.groups))


def cost_penalty(
  table: CostTable, target: float = 0.0, resource: str = "flops", scale: float | None = None
) -> Callable[[Mapping[int, jax.Array]], jax.Array]:
  """A hinge on the expected cost: ``max(0, E[cost] − target) / scale`` under ``softmax(α)``.

  Weight it with :func:`add_cost_penalty` (or multiply it into a loss).

  Args:
    table: the cost table.
    target: the budget, >= 0, in the table's units (MFLOPs per image for
      :func:`~jaxmutate.build_resource_table`); nothing is charged below it.
    resource: which of ``table.names``.
    scale: the cost that counts as 1 (default: ``target``, or with target 0
      the expected cost under uniform weights), so the penalty is unit-free.

  Returns:
    ``penalty(arch_params) -> float32 scalar``, jittable and differentiable.

  Raises:
    ConfigError: (a ``ValueError``) a negative target, a scale <= 0, or an
      unknown resource.

  Example:
    >>> import jax.numpy as jnp
    >>> import jaxmutate as jm
    >>> from jaxmutate.algorithms import cost_penalty
    >>> table = jm.ResourceTable(("flops",), {"flops": 4.0}, {"flops": {0: jnp.array([0.0, -3.0])}})
    >>> penalty = cost_penalty(table, target=2.0)
    >>> float(penalty({0: jnp.zeros(2)}))  # (2.5 - 2) / 2
    0.25
  """
  if resource not in table.names:
    raise ConfigError(f"cost_penalty: unknown resource {resource!r}; the table has {list(table.names)}.")
  if not target >= 0:
    raise ConfigError(f"cost_penalty: target must be >= 0 (in the table's units), got {target!r}.")
  if scale is None:
    if target > 0:
      scale = float(target)
    else:
      uniform = {g: jnp.zeros(_num_choices(table, g, resource)) for g in table.groups}
      scale = float(expected_cost(table, uniform)[resource])
  if not scale > 0:
    raise ConfigError(f"cost_penalty: scale must be > 0, got {scale!r} (give scale=... explicitly).")
  target, scale = float(target), float(scale)

  def penalty(arch_params: Mapping[int, jax.Array]) -> jax.Array:
    cost = expected_cost(table, arch_params)[resource]
    return jnp.maximum(cost - target, 0.0) / scale

  return penalty


def _num_choices(table: Any, group: int, resource: str) -> int:
  return int(table.deltas[resource][group].shape[0])


class CostPenaltyState(NamedTuple):
  """The state of :func:`add_cost_penalty`: the penalty's weight (a float32 scalar).

  It lives in the state, not in the compiled step, so a schedule or a sweep
  can change it without recompiling.

  Example:
    >>> import jax.numpy as jnp, optax
    >>> from jaxmutate.algorithms import CostPenaltyState, add_cost_penalty
    >>> tx = optax.chain(add_cost_penalty(lambda p: p.sum(), weight=0.1), optax.sgd(1.0))
    >>> penalty_state, sgd_state = tx.init(jnp.zeros(2))
    >>> state = (CostPenaltyState(jnp.float32(2.0)), sgd_state)  # a heavier penalty, same program
    >>> tx.update(jnp.zeros(2), state, jnp.zeros(2))[0].tolist()
    [-2.0, -2.0]
  """

  weight: jax.Array


def add_cost_penalty(penalty: Callable[[Any], jax.Array], weight: float = 1.0) -> optax.GradientTransformation:
  """An optax transformation that adds ``weight · ∇ penalty(params)`` to the incoming gradient.

  Chain it before the architecture optimiser,
  ``optax.chain(add_cost_penalty(p, 0.5), optax.adam(3e-4))``, and the
  optimiser minimises ``loss + weight · penalty`` without the step knowing
  about costs (the DARTS and GDAS steps pass the current logits as
  ``params``). The weight is :class:`CostPenaltyState`'s.

  Raises:
    ConfigError: (a ``ValueError``) a negative weight; at update, no ``params``.

  Example:
    >>> import jax.numpy as jnp, optax
    >>> from jaxmutate.algorithms import add_cost_penalty
    >>> tx = add_cost_penalty(lambda p: (p[0] ** 2).sum(), weight=0.5)
    >>> params = {0: jnp.array([1.0, -2.0])}
    >>> updates, _ = tx.update({0: jnp.zeros(2)}, tx.init(params), params)
    >>> updates[0].tolist()
    [1.0, -2.0]
  """
  if not weight >= 0:
    raise ConfigError(f"add_cost_penalty: weight must be >= 0, got {weight!r}.")

  def init_fn(params: Any) -> CostPenaltyState:
    del params
    return CostPenaltyState(jnp.float32(weight))

  def update_fn(updates: Any, state: CostPenaltyState, params: Any = None) -> tuple[Any, CostPenaltyState]:
    if params is None:
      raise ConfigError("add_cost_penalty needs the parameters: call update(grads, state, params).")
    extra = jax.grad(penalty)(params)
    return jax.tree.map(lambda g, e: g + (state.weight * e).astype(g.dtype), updates, extra), state

  return optax.GradientTransformation(init_fn, update_fn)
