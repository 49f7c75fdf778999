"""Jittable building blocks over stacked populations with static shapes.

A population here is a fixed number of slots, ``{group id: array[N, ...]}``,
with a boolean mask saying which slots hold a real candidate. Rejection
sampling and de-duplication are done by oversampling and masking: draw
``target × factor`` candidates, mask the ones that fail, keep the first
``target`` that pass (:func:`first_k`). Everything here runs under ``jit``,
``vmap`` and ``lax.scan``.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from typing import Any

import jax
import jax.numpy as jnp

from jaxmutate.errors import ConfigError, ConfigKeyError
from jaxmutate.mutators import ModuleMutator
from jaxmutate.typing import PRNGKey

Population = dict[int, jax.Array]
Constraint = Callable[[Population], jax.Array]
"""``population -> bool[N]``: which members are admissible (jittable)."""


def size_of(population: Population) -> int:
  """The static number of slots of a population."""
  return int(next(iter(population.values())).shape[0])


def gather(population: Population, index: jax.Array) -> Population:
  """Slots ``index`` (an int array) of a population."""
  return {g: v[index] for g, v in population.items()}


def rows(population: Population) -> jax.Array:
  """Every member as one flat int32 row ``[N, D]`` (groups in sorted order), for equality tests."""
  n = size_of(population)
  return jnp.concatenate([population[g].reshape(n, -1).astype(jnp.int32) for g in sorted(population)], axis=1)


def first_distinct(population: Population, keep: jax.Array) -> jax.Array:
  """``keep`` minus the members equal to an earlier kept member (first occurrences win)."""
  r = rows(population)
  same = jnp.all(r[:, None, :] == r[None, :, :], axis=-1) & keep[None, :]
  earlier = jnp.tril(same, k=-1).any(axis=1)
  return keep & ~earlier


def member_of(population: Population, archive: jax.Array, count: jax.Array) -> tuple[jax.Array, jax.Array]:
  """Whether each member is among the first ``count`` rows of ``archive``, and the matching row's index."""
  r = rows(population)
  live = jnp.arange(archive.shape[0]) < count
  same = jnp.all(r[:, None, :] == archive[None, :, :], axis=-1) & live[None, :]
  return same.any(axis=1), jnp.argmax(same, axis=1)


def first_k(mask: jax.Array, k: int) -> tuple[jax.Array, jax.Array]:
  """The indices of the first ``k`` true entries of ``mask`` (static ``k``), and which of them exist."""
  index = jnp.nonzero(mask, size=k, fill_value=0)[0].astype(jnp.int32)
  return index, jnp.arange(k) < jnp.sum(mask)


def sampler(mutator: ModuleMutator) -> Callable[[PRNGKey, int], Population]:
  """``(key, n) -> n`` random subnets from ``mutator.sample_choices`` (one key each, split from ``key``)."""

  def sample(key: PRNGKey, n: int) -> Population:
    return jax.vmap(mutator.sample_choices)(jax.random.split(key, n))

  return sample


def mix(key: PRNGKey, first: Population, second: Population, prob: Any) -> Population:
  """Per gene (group), ``second``'s value with probability ``prob``, else ``first``'s.

  Keys: ``key`` is split into one key per group, in sorted group order (the
  host :class:`~jaxmutate.search.EvolutionSearchLoop` draws the same bits).
  """
  n = size_of(first)
  keys = jax.random.split(key, len(first))
  mixed = {}
  for k, g in zip(keys, sorted(first)):
    take_second = jax.random.bernoulli(k, prob, (n,))
    take_second = take_second.reshape((n,) + (1,) * (first[g].ndim - 1))
    mixed[g] = jnp.where(take_second, second[g], first[g])
  return mixed


def pad(population: Population, valid: jax.Array, size: int) -> tuple[Population, jax.Array]:
  """Pads a population with invalid slots (copies of slot 0) to ``size`` slots."""
  n = size_of(population)
  if n == size:
    return population, valid
  index = jnp.concatenate([jnp.arange(n), jnp.zeros(size - n, jnp.int32)]).astype(jnp.int32)
  return gather(population, index), jnp.concatenate([valid, jnp.zeros(size - n, bool)])


def concat(populations: list[Population]) -> Population:
  """Concatenates populations along their slots."""
  return {g: jnp.concatenate([p[g] for p in populations]) for g in populations[0]}


def generate(
  key: PRNGKey,
  target: int,
  make: Callable[[PRNGKey, int], Population],
  factor: int,
  constraint: Constraint | None,
  distinct: bool = True,
  exclude: tuple[jax.Array, jax.Array] | None = None,
) -> tuple[Population, jax.Array]:
  """Up to ``target`` admissible (and distinct) candidates out of ``target × factor`` draws.

  The static-shape form of rejection sampling with an attempt cap: the first
  ``target`` draws that pass ``constraint`` (and are not equal to an earlier
  kept draw, or to a row of ``exclude = (archive rows, count)``) fill the
  slots; when fewer pass, the rest of the slots are invalid.

  Returns:
    ``(population [target], valid bool[target])``.
  """
  drawn = make(key, target * factor)
  keep = jnp.ones(target * factor, bool) if constraint is None else jnp.asarray(constraint(drawn), bool)
  if exclude is not None:
    seen, _ = member_of(drawn, *exclude)
    keep = keep & ~seen
  if distinct:
    keep = first_distinct(drawn, keep)
  index, valid = first_k(keep, target)
  return gather(drawn, index), valid


def _as_range(name: str, bounds: Any) -> tuple[float, float]:
  if isinstance(bounds, (int, float)) and not isinstance(bounds, bool):
    return 0.0, float(bounds)
  if isinstance(bounds, (tuple, list)) and len(bounds) == 2 and all(isinstance(b, (int, float)) for b in bounds):
    return float(bounds[0]), float(bounds[1])
  raise ConfigError(
    f"constraints_range[{name!r}] must be a number (upper bound) or a (low, high) pair, got {bounds!r}."
  )


def make_constraint(
  resource_fn: Callable[[Population], Mapping[str, Any]] | None, constraints_range: Mapping[str, Any] | None
) -> Constraint | None:
  """A jittable admissibility test: every ``constraints_range`` bound checked on ``resource_fn``'s estimates.

  Args:
    resource_fn: a jittable ``population -> {name: [N]}`` (e.g. a
      :class:`~jaxmutate.resources.ResourceTable`).
    constraints_range: resource name -> ``(low, high)`` or a number (the upper
      bound), as :class:`~jaxmutate.search.EvolutionSearchLoop` takes it;
      ``None`` or empty: no constraint.

  Returns:
    ``population -> bool[N]``, or ``None`` without constraints.

  Raises:
    ConfigError: a bound that is neither a number nor a pair, or constraints
      without a resource function.
    ConfigKeyError: (when the test is first traced) a constraint on a
      resource the function does not give.

  Example:
    >>> import jax, jax.numpy as jnp
    >>> from jaxmutate.search import make_constraint
    >>> cost = lambda population: {"flops": population[0].astype(jnp.float32)}
    >>> admissible = jax.jit(make_constraint(cost, {"flops": (1, 2)}))
    >>> admissible({0: jnp.array([0, 1, 2, 3])}).tolist()
    [False, True, True, False]
  """
  if not constraints_range:
    return None
  bounds = {name: _as_range(name, b) for name, b in constraints_range.items()}
  if resource_fn is None:
    raise ConfigError(f"constraints_range {dict(constraints_range)} has no resource function to check it (got None).")

  def admissible(population: Population) -> jax.Array:
    resources = resource_fn(population)
    keep = jnp.ones(size_of(population), bool)
    for name, (low, high) in bounds.items():
      if name not in resources:
        raise ConfigKeyError(
          f"constraints_range names {name!r}, but the resource function gives only {sorted(resources)}."
        )
      value = jnp.asarray(resources[name])
      keep = keep & (value >= low) & (value <= high)
    return keep

  return admissible
