"""Evolution search over group choices (MMRazor's ``EvolutionSearchLoop``).

Populations are stacked group choices ``{group id: array[P, ...]}``: the
score function rates a whole population in one call (e.g. a jitted ``vmap``
over subnets), and new candidates are drawn in vectorised batches from
explicit PRNG keys.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Callable, Mapping
from typing import Any, NamedTuple

import jax
import jax.numpy as jnp
import numpy as np

from jaxmutate.errors import ConfigError, ConfigKeyError, SearchError
from jaxmutate.mutators import ModuleMutator
from jaxmutate.registry import MODELS
from jaxmutate.typing import GroupChoices, PRNGKey

Population = dict[int, jax.Array]
"""Stacked group choices: ``{group id: array[P, ...]}``."""
ScoreFunction = Callable[[Population], Any]
"""Rates a population: returns scores of shape ``[P]`` (higher is better)."""
ResourceFunction = Callable[[Population], Mapping[str, Any]]
"""Estimates resources of a population: ``{name: array[P]}``."""


def population_size(population: Population) -> int:
  return int(next(iter(population.values())).shape[0])


def take(population: Population, index: Any) -> Population:
  """Members ``index`` (an int array) of a population."""
  return {g: v[index] for g, v in population.items()}


def member(population: Population, i: int) -> GroupChoices:
  """The ``i``-th subnet of a population, as group choices.

  Example:
    >>> import jax.numpy as jnp
    >>> from jaxmutate.search import member
    >>> population = {0: jnp.array([0, 2, 1]), 1: jnp.array([1, 1, 0])}
    >>> {g: int(c) for g, c in member(population, 1).items()}
    {0: 2, 1: 1}
  """
  return {g: v[i] for g, v in population.items()}


def concatenate(populations: list[Population]) -> Population:
  populations = [p for p in populations if p and population_size(p) > 0]
  if not populations:
    return {}
  return {g: jnp.concatenate([p[g] for p in populations]) for g in populations[0]}


def member_keys(population: Population) -> list[bytes]:
  """A hashable identity per member (for de-duplication and score caching)."""
  size = population_size(population)
  if size == 0:
    return []
  arrays = [np.asarray(population[g]).reshape(size, -1) for g in sorted(population)]
  rows = np.concatenate(arrays, axis=1).astype(np.int64)
  return [row.tobytes() for row in rows]


def unique(population: Population) -> Population:
  """The distinct members of a population, first occurrences in order."""
  if not population or population_size(population) == 0:
    return population
  seen: set[bytes] = set()
  keep = []
  for i, identity in enumerate(member_keys(population)):
    if identity not in seen:
      seen.add(identity)
      keep.append(i)
  return take(population, np.asarray(keep, np.int32))


def _mix(key: PRNGKey, first: Population, second: Population, prob: float) -> Population:
  """Per gene (group), take ``second``'s value with probability ``prob``."""
  size = population_size(first)
  keys = jax.random.split(key, len(first))
  mixed = {}
  for k, g in zip(keys, sorted(first)):
    take_second = jax.random.bernoulli(k, prob, (size,))
    take_second = take_second.reshape((size,) + (1,) * (first[g].ndim - 1))
    mixed[g] = jnp.where(take_second, second[g], first[g])
  return mixed


def _as_range(name: str, bounds: Any) -> tuple[float, float]:
  if isinstance(bounds, (int, float)):
    return 0.0, float(bounds)
  if isinstance(bounds, (tuple, list)) and len(bounds) == 2 and all(isinstance(b, (int, float)) for b in bounds):
    return float(bounds[0]), float(bounds[1])
  raise ConfigError(
    f"constraints_range[{name!r}] must be a number (upper bound) or a (low, high) pair, got {bounds!r}."
  )


def admissible(
  population: Population, resource_fn: ResourceFunction | None, constraints_range: Mapping[str, Any] | None
) -> np.ndarray:
  """Which members of a population meet every ``(low, high)`` bound of ``constraints_range``.

  Args:
    population: stacked group choices ``{group id: [P, ...]}``.
    resource_fn: ``population -> {name: [P]}`` (e.g. a
      :class:`~jaxmutate.resources.ResourceTable`); may be ``None`` without
      constraints.
    constraints_range: resource name -> ``(low, high)``, or a number (the
      upper bound), as :class:`~jaxmutate.search.EvolutionSearchLoop` takes it.

  Returns:
    A boolean NumPy array ``[P]``.

  Raises:
    ConfigError: a bound that is neither a number nor a pair, or constraints
      without a resource function.
    ConfigKeyError: a constraint on a resource the function does not give.

  Example:
    >>> import jax.numpy as jnp
    >>> from jaxmutate.search import admissible
    >>> cost = lambda population: {"flops": population[0].astype(jnp.float32)}
    >>> admissible({0: jnp.array([0, 1, 2, 3])}, cost, {"flops": (1, 2)}).tolist()
    [False, True, True, False]
  """
  keep = np.ones(population_size(population), bool)
  if not constraints_range:
    return keep
  if resource_fn is None:
    raise ConfigError(f"constraints_range {dict(constraints_range)} has no resource function to check it (got None).")
  resources = resource_fn(population)
  for name, bounds in constraints_range.items():
    if name not in resources:
      raise ConfigKeyError(
        f"constraints_range names {name!r}, but the resource function gives only {sorted(resources)}."
      )
    low, high = _as_range(name, bounds)
    value = np.asarray(resources[name])
    keep &= (value >= low) & (value <= high)
  return keep


@MODELS.register_module()
@dataclasses.dataclass(frozen=True)
class EvolutionSearchLoop:
  """Settings of the evolution search; :meth:`run` performs it.

  Each epoch: rate the pool; keep the best ``top_k`` of pool ∪ previous top-k;
  make ``num_mutation`` mutants (a random top-k parent whose genes are each
  replaced by a fresh random sample with probability ``mutate_prob``) and
  ``num_crossover`` children (two random top-k parents mixed gene by gene with
  probability ``crossover_prob``); the next pool is mutants + children.
  Candidates outside ``constraints_range`` are rejected; each generator stops
  after ``max_attempts_factor`` × its target number of draws, so a pool can be
  short (as in MMRazor). Duplicates are dropped and scores are cached, so no
  subnet is rated twice.

  Attributes:
    max_epochs: generations.
    num_candidates: size of the first pool.
    top_k: how many of the best are kept.
    num_mutation: mutants per generation.
    num_crossover: crossover children per generation.
    mutate_prob: per-gene replacement probability of a mutation.
    crossover_prob: per-gene probability of taking the second parent's gene.
    constraints_range: resource name → ``(low, high)`` (or a number: the upper
      bound), checked against the resource function's estimates.
    max_attempts_factor: the cap on draws per generator, as a multiple of its
      target.

  Example:
    >>> import jax, jax.numpy as jnp
    >>> import jaxmutate as jm
    >>> net = jm.models.SearchableMLP(num_classes=2, width=4, num_layers=3)
    >>> variables = net.init(jax.random.key(0), jnp.ones((1, 3)), None)
    >>> mutator = jm.OneShotModuleMutator().prepare_from_supernet(variables)
    >>> score = lambda population: sum(v for v in population.values()).astype(jnp.float32)
    >>> loop = jm.EvolutionSearchLoop(max_epochs=3, num_candidates=8, top_k=4, num_mutation=4, num_crossover=4)
    >>> result = loop.run(jax.random.key(1), mutator, score)
    >>> float(result.best_score) <= 9.0
    True
  """

  max_epochs: int = 20
  num_candidates: int = 50
  top_k: int = 10
  num_mutation: int = 25
  num_crossover: int = 25
  mutate_prob: float = 0.1
  crossover_prob: float = 0.5
  constraints_range: Mapping[str, Any] | None = None
  max_attempts_factor: int = 10

  def __post_init__(self) -> None:
    for name in ("max_epochs", "num_candidates", "top_k", "max_attempts_factor"):
      value = getattr(self, name)
      if not isinstance(value, int) or value < 1:
        raise ConfigError(f"EvolutionSearchLoop: {name} must be a positive int, got {value!r}.")
    for name in ("num_mutation", "num_crossover"):
      value = getattr(self, name)
      if not isinstance(value, int) or value < 0:
        raise ConfigError(f"EvolutionSearchLoop: {name} must be a non-negative int, got {value!r}.")
    for name in ("mutate_prob", "crossover_prob"):
      value = getattr(self, name)
      if not isinstance(value, (int, float)) or not 0.0 <= value <= 1.0:
        raise ConfigError(f"EvolutionSearchLoop: {name} must be in [0, 1], got {value!r}.")
    if self.top_k > self.num_candidates:
      raise ConfigError(
        f"EvolutionSearchLoop: top_k ({self.top_k}) cannot exceed num_candidates ({self.num_candidates})."
      )
    for name, bounds in (self.constraints_range or {}).items():
      _as_range(name, bounds)

  def _admissible(self, population: Population, resource_fn: ResourceFunction | None) -> np.ndarray:
    return admissible(population, resource_fn, self.constraints_range)

  def _generate(
    self,
    key: PRNGKey,
    target: int,
    make: Callable[[PRNGKey, int], Population],
    resource_fn: ResourceFunction | None,
  ) -> tuple[Population, int]:
    """Up to ``target`` admissible, distinct candidates within the attempt cap."""
    if target == 0:
      return {}, 0
    drawn = make(key, target * self.max_attempts_factor)
    keep = self._admissible(drawn, resource_fn)
    chosen, seen = [], set()
    for i, identity in enumerate(member_keys(drawn)):
      if keep[i] and identity not in seen:
        seen.add(identity)
        chosen.append(i)
        if len(chosen) == target:
          break
    return take(drawn, np.asarray(chosen, np.int32)), int(keep.sum())

  def run(
    self,
    key: PRNGKey,
    mutator: ModuleMutator,
    score_fn: ScoreFunction,
    resource_fn: ResourceFunction | None = None,
    on_generation: Callable[[dict[str, Any]], None] | None = None,
  ) -> EvolutionResult:
    """Runs the search.

    Args:
      key: PRNG key; the run is a deterministic function of it.
      mutator: a prepared mutator whose ``sample_choices(key)`` draws subnets.
      score_fn: rates a stacked population, returning ``[P]`` scores.
      resource_fn: estimates ``{name: [P]}`` resources; needed with
        ``constraints_range``.
      on_generation: called after each generation is rated with that
        generation's history record (``epoch``, ``pool_size``, ``best_score``,
        ``top_k_mean``): where an application shows progress (the runners
        drive a tqdm bar with it); the library itself prints nothing.

    Returns:
      An :class:`EvolutionResult`.

    Raises:
      RuntimeError: no candidate satisfies the constraints.
    """
    sample_population = jax.jit(lambda k, n: jax.vmap(mutator.sample_choices)(jax.random.split(k, n)), static_argnums=1)

    def random_candidates(k: PRNGKey, n: int) -> Population:
      return sample_population(k, n)

    scores: dict[bytes, float] = {}
    history: list[dict[str, Any]] = []
    key, first_key = jax.random.split(key)
    pool, _ = self._generate(first_key, self.num_candidates, random_candidates, resource_fn)
    if population_size(pool) == 0:
      raise SearchError(
        f"No random subnet out of {self.num_candidates * self.max_attempts_factor} satisfies constraints_range {dict(self.constraints_range or {})}."
      )
    top: Population = {}
    for epoch in range(self.max_epochs):
      identities = member_keys(pool)
      fresh = [i for i, identity in enumerate(identities) if identity not in scores]
      if fresh:
        fresh_scores = np.asarray(score_fn(take(pool, np.asarray(fresh, np.int32))), np.float64)
        for i, s in zip(fresh, fresh_scores):
          scores[identities[i]] = float(s)
      merged = unique(concatenate([pool, top]))
      merged_ids = member_keys(merged)
      order = sorted(range(len(merged_ids)), key=lambda i: -scores[merged_ids[i]])
      top = take(merged, np.asarray(order[: self.top_k], np.int32))
      top_scores = [scores[i] for i in member_keys(top)]
      history.append(
        {
          "epoch": epoch,
          "pool_size": population_size(pool),
          "best_score": top_scores[0],
          "top_k_mean": float(np.mean(top_scores)),
        }
      )
      if on_generation is not None:
        on_generation(history[-1])
      if epoch == self.max_epochs - 1:
        continue  # the last generation is rated, not bred
      key, mutation_key, crossover_key = jax.random.split(key, 3)
      num_top = population_size(top)

      def mutants(k: PRNGKey, n: int) -> Population:
        parent_key, random_key, mix_key = jax.random.split(k, 3)
        parents = take(top, jax.random.randint(parent_key, (n,), 0, num_top))
        return _mix(mix_key, parents, random_candidates(random_key, n), self.mutate_prob)

      def children(k: PRNGKey, n: int) -> Population:
        first_key, second_key, mix_key = jax.random.split(k, 3)
        first = take(top, jax.random.randint(first_key, (n,), 0, num_top))
        second = take(top, jax.random.randint(second_key, (n,), 0, num_top))
        return _mix(mix_key, first, second, self.crossover_prob)

      new_mutants, _ = self._generate(mutation_key, self.num_mutation, mutants, resource_fn)
      new_children, _ = self._generate(crossover_key, self.num_crossover, children, resource_fn)
      # A mutant and a child can coincide: keep one.
      pool = unique(concatenate([new_mutants, new_children]))
      if not pool or population_size(pool) == 0:
        pool = top
    best = member(top, 0)
    return EvolutionResult(
      best, scores[member_keys(top)[0]], top, [scores[i] for i in member_keys(top)], history, len(scores)
    )


class EvolutionResult(NamedTuple):
  """What an evolution search found.

  Attributes:
    best_choices: group choices of the best subnet.
    best_score: its score.
    top_k: the final top-k population (best first).
    top_k_scores: their scores.
    history: per-epoch ``{epoch, pool_size, best_score, top_k_mean}``.
    num_evaluated: distinct subnets rated.

  Example:
    >>> import jax.numpy as jnp
    >>> from jaxmutate.search import EvolutionResult
    >>> top_k = {0: jnp.array([2, 0])}
    >>> result = EvolutionResult({0: top_k[0][0]}, 0.9, top_k, [0.9, 0.7], [], num_evaluated=12)
    >>> int(result.best_choices[0]), result.top_k_scores[0] == result.best_score, result.num_evaluated
    (2, True, 12)
  """

  best_choices: GroupChoices
  best_score: float
  top_k: Population
  top_k_scores: list[float]
  history: list[dict[str, Any]]
  num_evaluated: int
