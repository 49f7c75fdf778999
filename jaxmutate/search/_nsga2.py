"""NSGA-II (Deb et al. 2002): multi-objective search for the accuracy–cost Pareto front, on device.

Objectives: the score up (accuracy), one resource down (``cost_key``, FLOPs
by default). Non-dominated sorting and crowding distances are computed on
the whole merged population at once with pairwise comparisons (static
shapes; ``O(N²)`` per generation, cheap at search population sizes).
"""

from __future__ import annotations

from typing import Any, NamedTuple

import jax
import jax.numpy as jnp
import numpy as np

from jaxmutate.errors import ConfigError, ConfigKeyError
from jaxmutate.mutators import ModuleMutator
from jaxmutate.search._population import (
  Constraint,
  Population,
  concat,
  first_distinct,
  gather,
  generate,
  mix,
  rows,
  sampler,
)
from jaxmutate.search._strategies import (
  SearchStats,
  Strategy,
  init_stats,
  stats_report,
  update_stats,
)
from jaxmutate.typing import PRNGKey

_UNRANKED = 2**30


def pareto_ranks(objectives: jax.Array, valid: jax.Array | None = None) -> jax.Array:
  """Non-dominated sorting: the front index of every point (0 = the Pareto front), all objectives maximised.

  A point dominates another when it is at least as good in every objective
  and better in one. Invalid points get a rank of ``2**30`` and dominate
  nothing.

  Args:
    objectives: float ``[N, M]``, higher is better in every column (negate
      a cost).
    valid: bool ``[N]``; ``None``: all valid.

  Returns:
    int32 ``[N]``.

  Example:
    >>> import jax.numpy as jnp
    >>> from jaxmutate.search import pareto_ranks
    >>> accuracy_and_negative_flops = jnp.array([[0.9, -3.0], [0.8, -1.0], [0.7, -2.0], [0.9, -4.0], [0.5, -0.5]])
    >>> pareto_ranks(accuracy_and_negative_flops).tolist()
    [0, 0, 1, 1, 0]
  """
  objectives = jnp.asarray(objectives, jnp.float32)
  n = objectives.shape[0]
  valid = jnp.ones(n, bool) if valid is None else jnp.asarray(valid, bool)
  no_worse = jnp.all(objectives[:, None, :] >= objectives[None, :, :], axis=-1)
  better = jnp.any(objectives[:, None, :] > objectives[None, :, :], axis=-1)
  dominates = no_worse & better & valid[:, None] & valid[None, :]  # [i, j]: i dominates j

  def peel(i: jax.Array, ranks: jax.Array) -> jax.Array:
    open_ = ranks < 0
    dominated = jnp.any(dominates & open_[:, None], axis=0)
    return jnp.where(open_ & ~dominated, i, ranks)

  ranks = jax.lax.fori_loop(0, n, peel, jnp.where(valid, -1, _UNRANKED).astype(jnp.int32))
  return ranks


def crowding_distance(objectives: jax.Array, ranks: jax.Array) -> jax.Array:
  """NSGA-II's crowding distance of every point within its front (``inf`` at a front's ends).

  For each objective, a point's neighbours are the nearest points of its
  front below and above it (ties broken by index), and the gap between them,
  divided by the front's range, is added; a point with no neighbour on one
  side gets ``inf``.

  Args:
    objectives: float ``[N, M]``.
    ranks: int ``[N]`` from :func:`pareto_ranks`.

  Returns:
    float32 ``[N]``.

  Example:
    >>> import jax.numpy as jnp
    >>> from jaxmutate.search import crowding_distance
    >>> points = jnp.array([[0.0, 3.0], [1.0, 2.0], [2.0, 0.0]])
    >>> crowding_distance(points, jnp.zeros(3, jnp.int32)).tolist()
    [inf, 2.0, inf]
  """
  objectives = jnp.asarray(objectives, jnp.float32)
  n, m = objectives.shape
  same_front = ranks[:, None] == ranks[None, :]
  index = jnp.arange(n)
  total = jnp.zeros(n, jnp.float32)
  for k in range(m):
    f = objectives[:, k]
    # j is above i in objective k: larger value, or equal value and larger index.
    above = same_front & ((f[None, :] > f[:, None]) | ((f[None, :] == f[:, None]) & (index[None, :] > index[:, None])))
    below = same_front & ~above & (index[None, :] != index[:, None])
    upper = jnp.min(jnp.where(above, f[None, :], jnp.inf), axis=1)
    lower = jnp.max(jnp.where(below, f[None, :], -jnp.inf), axis=1)
    span = jnp.max(jnp.where(same_front, f[None, :], -jnp.inf), axis=1) - jnp.min(
      jnp.where(same_front, f[None, :], jnp.inf), axis=1
    )
    edge = ~jnp.any(above, axis=1) | ~jnp.any(below, axis=1)
    gap = jnp.where(span > 0, (upper - lower) / jnp.where(span > 0, span, 1.0), 0.0)
    total = total + jnp.where(edge, jnp.inf, gap)
  return total


class NSGA2State(NamedTuple):
  """State of :func:`nsga2`.

  Attributes:
    key: the PRNG key of the next ask.
    parents: the surviving population ``{group: [N, ...]}``.
    scores: float32[N], their scores (higher is better).
    costs: float32[N], their costs (lower is better).
    parent_valid: bool[N], which parent slots are real.
    ranks: int32[N], their front index (0: non-dominated).
    crowding: float32[N], their crowding distance.
    valid: bool[N], which slots of the last ask are real.
    stats: :class:`SearchStats` (``best``: the highest score).

  Example:
    >>> import jax, jax.numpy as jnp
    >>> import jaxmutate as jm
    >>> from jaxmutate.search import nsga2
    >>> net = jm.models.SearchableMLP(num_classes=2, width=4, num_layers=2)
    >>> mutator = jm.OneShotModuleMutator().prepare_from_supernet(net.init(jax.random.key(0), jnp.ones((1, 3)), None))
    >>> state = nsga2(mutator, 6).init(jax.random.key(0))
    >>> state.parent_valid.any().item(), state.costs.shape
    (False, (6,))
  """

  key: PRNGKey
  parents: Population
  scores: jax.Array
  costs: jax.Array
  parent_valid: jax.Array
  ranks: jax.Array
  crowding: jax.Array
  valid: jax.Array
  stats: SearchStats


def nsga2(
  mutator: ModuleMutator,
  population_size: int = 50,
  cost_key: str = "flops",
  mutate_prob: float = 0.1,
  crossover_prob: float = 0.5,
  constraint: Constraint | None = None,
  max_attempts_factor: int = 10,
) -> Strategy:
  """NSGA-II over subnets: score up, ``resources[cost_key]`` down; the survivors' first front is the answer.

  The first ask is random subnets. Each tell merges parents and offspring,
  drops duplicates and non-finite scores or costs (counted in
  ``stats.num_nonfinite``), sorts the rest into fronts
  (:func:`pareto_ranks`) and keeps ``population_size`` by (front, larger
  crowding distance). Each later ask breeds offspring: two binary
  tournaments (lower front, then larger crowding distance), a per-gene
  uniform crossover (``crossover_prob``) and a per-gene mutation
  (``mutate_prob``: a fresh random choice), keeping admissible offspring
  that are new (not a parent, not an earlier offspring) within the attempt
  cap. The driver must pass a ``resource_fn`` whose output has ``cost_key``;
  :func:`pareto_front` reads the result.

  Args:
    mutator: a prepared mutator.
    population_size: parents kept and offspring per generation.
    cost_key: the resource minimised.
    mutate_prob: per-gene mutation probability.
    crossover_prob: per-gene probability of taking the second parent's gene.
    constraint: a jittable ``population -> bool[P]``, or ``None``.
    max_attempts_factor: draws per ask, as a multiple of ``population_size``.

  Returns:
    A :class:`Strategy` whose state is an :class:`NSGA2State`.

  Raises:
    ConfigError: bad sizes or probabilities; ``ConfigKeyError`` (when traced)
      if ``tell`` gets no resources or none named ``cost_key``.

  Example:
    >>> import jax, jax.numpy as jnp
    >>> import jaxmutate as jm
    >>> from jaxmutate.search import nsga2
    >>> net = jm.models.SearchableMLP(num_classes=2, width=4, num_layers=3)
    >>> mutator = jm.OneShotModuleMutator().prepare_from_supernet(net.init(jax.random.key(0), jnp.ones((1, 3)), None))
    >>> strategy = nsga2(mutator, 16, cost_key="flops")  # pareto_front(state) reads the result
    >>> state = strategy.init(jax.random.key(0))
    >>> strategy.population_size, state.ranks.shape
    (16, (16,))
  """
  where = "nsga2"
  for name, value in (("population_size", population_size), ("max_attempts_factor", max_attempts_factor)):
    if not isinstance(value, int) or isinstance(value, bool) or value < 1:
      raise ConfigError(f"{where}: {name} must be a positive int, got {value!r}.")
  for name, value in (("mutate_prob", mutate_prob), ("crossover_prob", crossover_prob)):
    if not isinstance(value, (int, float)) or isinstance(value, bool) or not 0.0 <= value <= 1.0:
      raise ConfigError(f"{where}: {name} must be in [0, 1], got {value!r}.")
  if not isinstance(cost_key, str):
    raise ConfigError(f"{where}: cost_key must be a resource name (str), got {cost_key!r}.")
  sample = sampler(mutator)
  n = population_size

  def init(key: PRNGKey) -> NSGA2State:
    parents = gather(sample(jax.random.key(0), 1), jnp.zeros(n, jnp.int32))
    inf = jnp.full(n, jnp.inf, jnp.float32)
    return NSGA2State(
      key,
      parents,
      -inf,
      inf,
      jnp.zeros(n, bool),
      jnp.full(n, _UNRANKED, jnp.int32),
      jnp.zeros(n, jnp.float32),
      jnp.zeros(n, bool),
      init_stats(mutator),
    )

  def ask(state: NSGA2State) -> tuple[Population, NSGA2State]:
    key, random_key, child_key = jax.random.split(state.key, 3)
    fresh, fresh_valid = generate(random_key, n, sample, max_attempts_factor, constraint)
    alive = state.parent_valid
    logits = jnp.where(alive, 0.0, -jnp.inf)

    def tournament(k: PRNGKey) -> jax.Array:
      a, b = jax.random.categorical(k, logits, shape=(2,))
      a_wins = (state.ranks[a] < state.ranks[b]) | (
        (state.ranks[a] == state.ranks[b]) & (state.crowding[a] >= state.crowding[b])
      )
      return jnp.where(a_wins, a, b)

    def offspring(k: PRNGKey, m: int) -> Population:
      first_key, second_key, cross_key, mutate_key, random_key = jax.random.split(k, 5)
      first = gather(state.parents, jax.vmap(tournament)(jax.random.split(first_key, m)))
      second = gather(state.parents, jax.vmap(tournament)(jax.random.split(second_key, m)))
      children = mix(cross_key, first, second, crossover_prob)
      return mix(mutate_key, children, sample(random_key, m), mutate_prob)

    # Survivors are sorted with the invalid slots last, so the live parents are a prefix.
    exclude = (rows(state.parents), jnp.sum(alive, dtype=jnp.int32))
    children, child_valid = generate(child_key, n, offspring, max_attempts_factor, constraint, exclude=exclude)
    started = jnp.any(alive)
    population = {g: jnp.where(started, children[g], fresh[g]) for g in fresh}
    valid = jnp.where(started, child_valid, fresh_valid)
    stats = state.stats._replace(num_valid=jnp.sum(valid, dtype=jnp.int32))
    return population, state._replace(key=key, valid=valid, stats=stats)

  def tell(state: NSGA2State, population: Population, scores: jax.Array, resources: Any = None) -> NSGA2State:
    if resources is None or cost_key not in resources:
      given = "no resources" if resources is None else f"resources {sorted(resources)}"
      raise ConfigKeyError(
        f"nsga2 minimises resource {cost_key!r} but tell got {given}; give the driver a resource_fn with {cost_key!r}."
      )
    scores = jnp.asarray(scores, jnp.float32)
    costs = jnp.asarray(resources[cost_key], jnp.float32).reshape(n)
    ok = state.valid & jnp.isfinite(scores) & jnp.isfinite(costs)
    merged = concat([state.parents, population])
    merged_scores = jnp.concatenate([state.scores, scores])
    merged_costs = jnp.concatenate([state.costs, costs])
    merged_valid = first_distinct(merged, jnp.concatenate([state.parent_valid, ok]))
    objectives = jnp.stack([merged_scores, -merged_costs], axis=1)
    objectives = jnp.where(merged_valid[:, None], objectives, 0.0)
    ranks = pareto_ranks(objectives, merged_valid)
    crowding = crowding_distance(objectives, ranks)
    order = jnp.lexsort((-crowding, ranks))[:n]  # lexsort: the last key is the primary one
    stats = update_stats(state.stats, population, scores, state.valid)
    bad_costs = jnp.sum(state.valid & jnp.isfinite(scores) & ~jnp.isfinite(costs), dtype=jnp.int32)
    stats = stats._replace(num_nonfinite=stats.num_nonfinite + bad_costs)
    return state._replace(
      parents=gather(merged, order),
      scores=merged_scores[order],
      costs=merged_costs[order],
      parent_valid=merged_valid[order],
      ranks=ranks[order],
      crowding=crowding[order],
      stats=stats,
    )

  def report(state: NSGA2State) -> dict[str, jax.Array]:
    front = state.parent_valid & (state.ranks == 0)
    return {**stats_report(state.stats), "front_size": jnp.sum(front, dtype=jnp.int32)}

  return Strategy(init, ask, tell, report, n)


def pareto_front(state: NSGA2State) -> tuple[Population, Any, Any]:
  """The Pareto front an :func:`nsga2` search found, sorted by cost (host arrays).

  Returns:
    ``(population {group: [F, ...]}, scores [F], costs [F])``: the
    surviving non-dominated subnets, cheapest first.

  Example:
    >>> import jax, jax.numpy as jnp
    >>> import jaxmutate as jm
    >>> from jaxmutate.search import nsga2, pareto_front, run_strategy
    >>> net = jm.models.SearchableMLP(num_classes=2, width=4, num_layers=2)
    >>> mutator = jm.OneShotModuleMutator().prepare_from_supernet(net.init(jax.random.key(0), jnp.ones((1, 3)), None))
    >>> score = lambda population: (population[0] + population[1]).astype(jnp.float32)
    >>> cost = lambda population: {"flops": population[0].astype(jnp.float32)}
    >>> fast = {"xla_backend_optimization_level": 0}  # a cheap scorer: compile the search quickly
    >>> state, _ = run_strategy(jax.random.key(0), nsga2(mutator, 8), score, 6, resource_fn=cost, compiler_options=fast)
    >>> front, scores, costs = pareto_front(state)
    >>> scores.tolist(), costs.tolist()
    ([3.0, 4.0, 5.0, 6.0], [0.0, 1.0, 2.0, 3.0])
  """
  keep = np.asarray(state.parent_valid) & (np.asarray(state.ranks) == 0)
  costs = np.asarray(state.costs)[keep]
  order = np.lexsort((-np.asarray(state.scores)[keep], costs))
  index = np.flatnonzero(keep)[order]
  return (
    {g: np.asarray(v)[index] for g, v in state.parents.items()},
    np.asarray(state.scores)[index],
    np.asarray(state.costs)[index],
  )
