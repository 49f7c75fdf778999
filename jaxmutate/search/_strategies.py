"""Search strategies as pure ``init`` / ``ask`` / ``tell`` functions over pytree state.

Like optax's ``GradientTransformation``, a :class:`Strategy` is a NamedTuple
of pure functions; its state is a NamedTuple of arrays (a pytree that
``jit``, ``lax.scan`` and orbax take as is). Every population has a static
number of slots, ``strategy.population_size``; which slots hold a real
candidate (the rest failed the constraint within the attempt cap, or were
duplicates) is the state's ``valid`` mask, set by ``ask`` and read by
``tell``, so a driver never needs to know it. :func:`make_search_fn` runs
ask → score → tell as one jitted ``lax.scan`` over generations.

Every state carries :class:`SearchStats`: the best finite-scored subnet so
far and how many non-finite (NaN/inf) scores were dropped. A non-finite score
never ranks first, enters a top-k, wins a tournament or joins a front.
"""

from __future__ import annotations

import functools
import itertools
import math
from collections.abc import Callable, Mapping
from typing import Any, NamedTuple

import jax
import jax.numpy as jnp
import numpy as np

from jaxmutate.channels import ChannelSpace
from jaxmutate.errors import ConfigError, SearchError, SearchSpaceError
from jaxmutate.mutators import ModuleMutator
from jaxmutate.search._population import (
  Constraint,
  Population,
  concat,
  first_distinct,
  gather,
  generate,
  member_of,
  mix,
  pad,
  rows,
  sampler,
)
from jaxmutate.spaces import EdgeSubsetSpace, IndexSpace, LogitSpace, SearchSpace, ValueSpace
from jaxmutate.typing import GroupChoices, PRNGKey

ScoreFunction = Callable[..., jax.Array]
"""``(population, *score_args) -> scores [P]`` (higher is better), jittable."""
ResourceFunction = Callable[[Population], Mapping[str, jax.Array]]
"""``population -> {name: [P]}``, jittable."""


class SearchStats(NamedTuple):
  """What every strategy state records about the search so far.

  Attributes:
    generation: ``tell`` calls so far (int32).
    best: the best finite-scored subnet told so far (group choices; zeros
      before any).
    best_score: its score (float32; ``-inf`` before any).
    num_rated: valid candidates told (int32; a strategy that keeps an
      archive counts distinct ones).
    num_nonfinite: of those, how many scored NaN or ±inf and were dropped.
    num_valid: valid candidates in the last ``ask``.

  Example:
    >>> import jax
    >>> import jaxmutate as jm
    >>> from jaxmutate.search import random_search
    >>> net = jm.models.SearchableMLP(num_classes=2, width=4, num_layers=2)
    >>> mutator = jm.OneShotModuleMutator().prepare_from_supernet(net.init(jax.random.key(0), jax.numpy.ones((1, 3)), None))
    >>> stats = random_search(mutator, population_size=4).init(jax.random.key(1)).stats
    >>> int(stats.generation), float(stats.best_score)
    (0, -inf)
  """

  generation: jax.Array
  best: GroupChoices
  best_score: jax.Array
  num_rated: jax.Array
  num_nonfinite: jax.Array
  num_valid: jax.Array


class Strategy(NamedTuple):
  """A search strategy: pure functions over a pytree state, all jittable with static shapes.

  A NamedTuple of functions, as optax's ``GradientTransformation``:
  ``init(key) -> state``; ``ask(state) -> (population, state)`` with
  ``population_size`` slots (``state.valid`` says which are real);
  ``tell(state, population, scores, resources=None) -> state`` with
  ``scores [P]`` (higher is better) and ``resources {name: [P]}`` (NSGA-II
  reads its cost there); ``report(state) -> {name: scalar}``, what a driver
  records per generation.

  Attributes:
    init: ``key -> state``.
    ask: ``state -> (population, state)``.
    tell: ``(state, population, scores, resources) -> state``.
    report: ``state -> {name: scalar array}``.
    population_size: the static number of slots ``ask`` returns.

  Example:
    >>> import jax, jax.numpy as jnp
    >>> import jaxmutate as jm
    >>> from jaxmutate.search import grid_search
    >>> net = jm.models.SearchableMLP(num_classes=2, width=4, num_layers=3)
    >>> mutator = jm.OneShotModuleMutator().prepare_from_supernet(net.init(jax.random.key(0), jnp.ones((1, 3)), None))
    >>> strategy = grid_search(mutator, population_size=8)
    >>> state = strategy.init(jax.random.key(1))
    >>> population, state = jax.jit(strategy.ask)(state)
    >>> scores = sum(population.values()).astype(jnp.float32)
    >>> state = jax.jit(strategy.tell)(state, population, scores)
    >>> float(state.stats.best_score) == float(scores.max()), int(state.stats.num_rated)
    (True, 8)
  """

  init: Callable[[PRNGKey], Any]
  ask: Callable[[Any], tuple[Population, Any]]
  tell: Callable[..., Any]
  report: Callable[[Any], dict[str, jax.Array]]
  population_size: int


# Shared pieces ---------------------------------------------------------------


def _template(mutator: ModuleMutator) -> GroupChoices:
  shapes = jax.eval_shape(mutator.sample_choices, jax.random.key(0))
  return {g: jnp.zeros(s.shape, s.dtype) for g, s in shapes.items()}


def init_stats(mutator: ModuleMutator) -> SearchStats:
  """Empty :class:`SearchStats` for ``mutator``'s subnets (a building block for custom strategies).

  Example:
    >>> import jax
    >>> import jaxmutate as jm
    >>> from jaxmutate.search import init_stats
    >>> net = jm.models.SearchableMLP(num_classes=2, width=4, num_layers=2)
    >>> mutator = jm.OneShotModuleMutator().prepare_from_supernet(net.init(jax.random.key(0), jax.numpy.ones((1, 3)), None))
    >>> sorted(init_stats(mutator).best)
    [0, 1]
  """
  zero = jnp.int32(0)
  return SearchStats(zero, _template(mutator), jnp.float32(-jnp.inf), zero, zero, zero)


def update_stats(stats: SearchStats, population: Population, scores: jax.Array, valid: jax.Array) -> SearchStats:
  """Folds one told population into :class:`SearchStats`; non-finite scores are counted and never best.

  Example:
    >>> import jax, jax.numpy as jnp
    >>> import jaxmutate as jm
    >>> from jaxmutate.search import init_stats, update_stats
    >>> net = jm.models.SearchableMLP(num_classes=2, width=4, num_layers=1)
    >>> mutator = jm.OneShotModuleMutator().prepare_from_supernet(net.init(jax.random.key(0), jnp.ones((1, 3)), None))
    >>> stats = update_stats(init_stats(mutator), {0: jnp.array([1, 2, 3])}, jnp.array([0.5, jnp.nan, 0.7]),
    ...                      jnp.array([True, True, False]))
    >>> float(stats.best_score), int(stats.best[0]), int(stats.num_nonfinite), int(stats.num_rated)
    (0.5, 1, 1, 2)
  """
  scores = jnp.asarray(scores, jnp.float32)
  finite = valid & jnp.isfinite(scores)
  masked = jnp.where(finite, scores, -jnp.inf)
  i = jnp.argmax(masked)
  better = finite[i] & (masked[i] > stats.best_score)
  best = {g: jnp.where(better, population[g][i], stats.best[g]) for g in stats.best}
  return SearchStats(
    stats.generation + 1,
    best,
    jnp.where(better, masked[i], stats.best_score),
    stats.num_rated + jnp.sum(valid, dtype=jnp.int32),
    stats.num_nonfinite + jnp.sum(valid & ~jnp.isfinite(scores), dtype=jnp.int32),
    stats.num_valid,
  )


def stats_report(stats: SearchStats) -> dict[str, jax.Array]:
  """The per-generation record of :class:`SearchStats` (``generation``, ``best_score``, counts).

  Example:
    >>> import jax, jax.numpy as jnp
    >>> import jaxmutate as jm
    >>> from jaxmutate.search import init_stats, stats_report
    >>> net = jm.models.SearchableMLP(num_classes=2, width=4, num_layers=2)
    >>> mutator = jm.OneShotModuleMutator().prepare_from_supernet(net.init(jax.random.key(0), jnp.ones((1, 3)), None))
    >>> sorted(stats_report(init_stats(mutator)))
    ['best_score', 'generation', 'num_nonfinite', 'num_rated', 'num_valid']
  """
  return {
    "generation": stats.generation - 1,
    "best_score": stats.best_score,
    "num_valid": stats.num_valid,
    "num_rated": stats.num_rated,
    "num_nonfinite": stats.num_nonfinite,
  }


def _check_positive(where: str, **values: Any) -> None:
  for name, value in values.items():
    if not isinstance(value, int) or isinstance(value, bool) or value < 1:
      raise ConfigError(f"{where}: {name} must be a positive int, got {value!r}.")


def _check_prob(where: str, **values: Any) -> None:
  for name, value in values.items():
    if not isinstance(value, (int, float)) or isinstance(value, bool) or not 0.0 <= value <= 1.0:
      raise ConfigError(f"{where}: {name} must be in [0, 1], got {value!r}.")


# Random search ---------------------------------------------------------------


class RandomSearchState(NamedTuple):
  """State of :func:`random_search`.

  Attributes:
    key: the PRNG key of the next ask.
    valid: bool[P], which slots of the last ask are real.
    stats: :class:`SearchStats`.

  Example:
    >>> import jax, jax.numpy as jnp
    >>> import jaxmutate as jm
    >>> from jaxmutate.search import RandomSearchState, random_search
    >>> net = jm.models.SearchableMLP(num_classes=2, width=4, num_layers=2)
    >>> mutator = jm.OneShotModuleMutator().prepare_from_supernet(net.init(jax.random.key(0), jnp.ones((1, 3)), None))
    >>> state = random_search(mutator, 4).init(jax.random.key(0))
    >>> isinstance(state, RandomSearchState), state.valid.shape
    (True, (4,))
  """

  key: PRNGKey
  valid: jax.Array
  stats: SearchStats


def random_search(
  mutator: ModuleMutator,
  population_size: int,
  constraint: Constraint | None = None,
  max_attempts_factor: int = 10,
  distinct: bool = True,
) -> Strategy:
  """Random search: every generation, ``population_size`` fresh random subnets that meet ``constraint``.

  Args:
    mutator: a prepared mutator (its ``sample_choices`` draws subnets).
    population_size: subnets per generation.
    constraint: a jittable ``population -> bool[P]`` (e.g.
      :func:`make_constraint`); ``None`` admits every subnet.
    max_attempts_factor: draws per generation, as a multiple of
      ``population_size`` (the attempt cap).
    distinct: drop a draw equal to an earlier one of the same generation.

  Returns:
    A :class:`Strategy` whose state is a :class:`RandomSearchState`.

  Raises:
    ConfigError: a non-positive size or factor.

  Example:
    >>> import jax, jax.numpy as jnp
    >>> import jaxmutate as jm
    >>> from jaxmutate.search import make_constraint, random_search
    >>> net = jm.models.SearchableMLP(num_classes=2, width=4, num_layers=3)
    >>> mutator = jm.OneShotModuleMutator().prepare_from_supernet(net.init(jax.random.key(0), jnp.ones((1, 3)), None))
    >>> cost = lambda population: {"skips": sum((v == 3).astype(jnp.float32) for v in population.values())}
    >>> strategy = random_search(mutator, 8, constraint=make_constraint(cost, {"skips": (0, 1)}))
    >>> strategy.population_size, type(strategy.init(jax.random.key(1))).__name__
    (8, 'RandomSearchState')
  """
  _check_positive("random_search", population_size=population_size, max_attempts_factor=max_attempts_factor)
  sample = sampler(mutator)

  def init(key: PRNGKey) -> RandomSearchState:
    return RandomSearchState(key, jnp.zeros(population_size, bool), init_stats(mutator))

  def ask(state: RandomSearchState) -> tuple[Population, RandomSearchState]:
    key, draw_key = jax.random.split(state.key)
    population, valid = generate(draw_key, population_size, sample, max_attempts_factor, constraint, distinct)
    stats = state.stats._replace(num_valid=jnp.sum(valid, dtype=jnp.int32))
    return population, RandomSearchState(key, valid, stats)

  def tell(state: RandomSearchState, population: Population, scores: jax.Array, resources: Any = None):
    return state._replace(stats=update_stats(state.stats, population, scores, state.valid))

  return Strategy(init, ask, tell, lambda state: stats_report(state.stats), population_size)


# Grid search -------------------------------------------------------------------


def space_choices(space: SearchSpace, where: str = "space") -> np.ndarray:
  """Every discrete choice of a finite search space, stacked ``[n, ...]`` (what grid search enumerates).

  Op, value and logit spaces give their indices; a route's space its
  ``num_chosen``-edge subsets (as sorted index tuples: a route sums its
  edges, so order does not matter); a channel space its indices, or the
  kept counts of a sequential one.

  Raises:
    SearchSpaceError: a space whose choices cannot be listed (an unknown or
      infinite kind).

  Example:
    >>> from jaxmutate.search import space_choices
    >>> from jaxmutate.spaces import EdgeSubsetSpace, IndexSpace
    >>> space_choices(IndexSpace(("a", "b", "c"))).tolist()
    [0, 1, 2]
    >>> space_choices(EdgeSubsetSpace(("p0", "p1", "p2"), num_chosen=2)).tolist()
    [[0, 1], [0, 2], [1, 2]]
  """
  if isinstance(space, EdgeSubsetSpace):
    return np.asarray(list(itertools.combinations(range(space.num_choices), space.num_chosen)), np.int32)
  if isinstance(space, ChannelSpace):
    if space.is_sequential:
      return np.asarray(space.kept_counts, np.int32)
    return np.arange(len(space.kept_counts), dtype=np.int32)
  if isinstance(space, (IndexSpace, ValueSpace, LogitSpace)):
    return np.arange(space.num_choices, dtype=np.int32)
  raise SearchSpaceError(
    f"grid_search: {where} has a space whose choices cannot be listed ({type(space).__name__}: "
    f"{space.describe()}); grid search needs finite op, value, route or channel spaces."
  )


class GridSearchState(NamedTuple):
  """State of :func:`grid_search`.

  Attributes:
    next: the index of the next subnet of the grid (int32).
    valid: bool[P], which slots of the last ask are real.
    stats: :class:`SearchStats`.

  Example:
    >>> import jax, jax.numpy as jnp
    >>> import jaxmutate as jm
    >>> from jaxmutate.search import grid_search
    >>> net = jm.models.SearchableMLP(num_classes=2, width=4, num_layers=2)
    >>> mutator = jm.OneShotModuleMutator().prepare_from_supernet(net.init(jax.random.key(0), jnp.ones((1, 3)), None))
    >>> strategy = grid_search(mutator, 4)
    >>> _, state = strategy.ask(strategy.init(jax.random.key(0)))
    >>> int(state.next), state.valid.tolist()
    (4, [True, True, True, True])
  """

  next: jax.Array
  valid: jax.Array
  stats: SearchStats


def grid_search(
  mutator: ModuleMutator, population_size: int, constraint: Constraint | None = None, max_size: int = 10_000_000
) -> Strategy:
  """Grid search: every subnet of a finite space exactly once, ``population_size`` per generation.

  Subnet ``i`` of the grid is ``i`` written in the mixed radix of the groups'
  choice counts (the first group varies fastest). Slots past the end of the
  grid, and subnets that fail ``constraint``, are invalid (not rated).
  ``ceil(grid_size(mutator) / population_size)`` generations cover the
  space (:func:`grid_size`).

  Args:
    mutator: a prepared mutator.
    population_size: subnets per generation.
    constraint: a jittable ``population -> bool[P]``, or ``None``.
    max_size: the largest grid accepted.

  Returns:
    A :class:`Strategy` whose state is a :class:`GridSearchState`.

  Raises:
    SearchSpaceError: a space that cannot be enumerated, or a grid of more
      than ``max_size`` subnets (the message gives the size and the groups'
      counts).
    ConfigError: a non-positive ``population_size``.

  Example:
    >>> import jax, jax.numpy as jnp
    >>> import jaxmutate as jm
    >>> from jaxmutate.search import grid_search, grid_size, run_strategy
    >>> net = jm.models.SearchableMLP(num_classes=2, width=4, num_layers=2)
    >>> mutator = jm.OneShotModuleMutator().prepare_from_supernet(net.init(jax.random.key(0), jnp.ones((1, 3)), None))
    >>> grid_size(mutator)
    16
    >>> score = lambda population: (population[0] * 4 + population[1]).astype(jnp.float32)
    >>> state, history = run_strategy(jax.random.key(0), grid_search(mutator, 5), score, num_generations=4)
    >>> int(state.stats.num_rated), float(state.stats.best_score)
    (16, 15.0)
  """
  _check_positive("grid_search", population_size=population_size)
  tables, size = _grid(mutator, max_size)
  groups = sorted(tables)

  def decode(index: jax.Array) -> Population:
    out, rest = {}, index
    for g in groups:
      n = tables[g].shape[0]
      out[g] = jnp.asarray(tables[g])[rest % n]
      rest = rest // n
    return out

  def init(key: PRNGKey) -> GridSearchState:
    del key  # the grid's order is fixed
    return GridSearchState(jnp.int32(0), jnp.zeros(population_size, bool), init_stats(mutator))

  def ask(state: GridSearchState) -> tuple[Population, GridSearchState]:
    index = state.next + jnp.arange(population_size, dtype=jnp.int32)
    valid = index < size
    population = decode(jnp.minimum(index, size - 1))
    if constraint is not None:
      valid = valid & jnp.asarray(constraint(population), bool)
    stats = state.stats._replace(num_valid=jnp.sum(valid, dtype=jnp.int32))
    return population, GridSearchState(jnp.minimum(state.next + population_size, size), valid, stats)

  def tell(state: GridSearchState, population: Population, scores: jax.Array, resources: Any = None):
    return state._replace(stats=update_stats(state.stats, population, scores, state.valid))

  return Strategy(init, ask, tell, lambda state: stats_report(state.stats), population_size)


def _grid(mutator: ModuleMutator, max_size: int) -> tuple[dict[int, np.ndarray], int]:
  tables = {}
  for g in mutator.search_groups:
    where = f"group {g} ({mutator.group_key(g)!r})" if hasattr(mutator, "group_key") else f"group {g}"
    tables[g] = space_choices(mutator.group_space(g), where)
  counts = {g: int(t.shape[0]) for g, t in tables.items()}
  size = math.prod(counts.values())
  limit = min(max_size, np.iinfo(np.int32).max - 2**20)
  if size > limit:
    raise SearchSpaceError(
      f"grid_search: the space has {size:,} subnets (choices per group: {counts}), more than "
      f"max_size={limit:,}; use random search or evolution, or a smaller space."
    )
  return tables, size


def grid_size(mutator: ModuleMutator) -> int:
  """How many subnets :func:`grid_search` enumerates over ``mutator``'s space (any size; nothing is built).

  Raises:
    SearchSpaceError: a space that cannot be enumerated.

  Example:
    >>> import jax, jax.numpy as jnp
    >>> import jaxmutate as jm
    >>> from jaxmutate.search import grid_size
    >>> net = jm.models.SearchableMLP(num_classes=2, width=4, num_layers=3)
    >>> grid_size(jm.OneShotModuleMutator().prepare_from_supernet(net.init(jax.random.key(0), jnp.ones((1, 3)), None)))
    64
  """
  return math.prod(int(space_choices(mutator.group_space(g), f"group {g}").shape[0]) for g in mutator.search_groups)


# Regularized (aging) evolution -----------------------------------------------


class AgingEvolutionState(NamedTuple):
  """State of :func:`regularized_evolution`.

  Attributes:
    key: the PRNG key of the next ask.
    members: the population ring buffer ``{group: [N, ...]}``.
    scores: float32[N], their scores (``-inf`` in unfilled slots).
    count: members ever inserted (int32); slot ``i`` holds the newest of
      insertions ``≡ i (mod N)``, so the oldest is overwritten first.
    valid: bool[B], which slots of the last ask are real.
    stats: :class:`SearchStats`.

  Example:
    >>> import jax, jax.numpy as jnp
    >>> import jaxmutate as jm
    >>> from jaxmutate.search import regularized_evolution
    >>> net = jm.models.SearchableMLP(num_classes=2, width=4, num_layers=2)
    >>> mutator = jm.OneShotModuleMutator().prepare_from_supernet(net.init(jax.random.key(0), jnp.ones((1, 3)), None))
    >>> state = regularized_evolution(mutator, population_size=6, sample_size=2).init(jax.random.key(0))
    >>> state.scores.shape, int(state.count)
    ((6,), 0)
  """

  key: PRNGKey
  members: Population
  scores: jax.Array
  count: jax.Array
  valid: jax.Array
  stats: SearchStats


def regularized_evolution(
  mutator: ModuleMutator,
  population_size: int = 100,
  sample_size: int = 25,
  mutation_prob: float = 0.05,
  batch_size: int = 1,
  constraint: Constraint | None = None,
  max_attempts_factor: int = 10,
  dedup: bool = True,
) -> Strategy:
  """Regularized (aging) evolution (Real et al. 2019), as NNI's ``RegularizedEvolution`` and PyGlove's.

  Until ``population_size`` members have been rated, asks are random subnets.
  Then each child comes from a tournament: ``sample_size`` members drawn
  without replacement, the best one mutated (each gene replaced by a fresh
  random choice with probability ``mutation_prob``). A rated child joins the
  population and the *oldest* member leaves (not the worst: that is the
  "regularization"). ``batch_size`` children are asked per call (1 is the
  sequential algorithm; more rates a batch at once, each child from its own
  tournament over the same population). A child with a non-finite score is
  dropped (counted in ``stats.num_nonfinite``), never inserted. ``dedup``
  rejects a child equal to a current member (NNI's ``dedup``), within the
  attempt cap.

  Args:
    mutator: a prepared mutator.
    population_size: members kept (the ring buffer).
    sample_size: tournament size (``<= population_size``).
    mutation_prob: per-gene mutation probability.
    batch_size: children per ask (``<= population_size``).
    constraint: a jittable ``population -> bool[P]``, or ``None``.
    max_attempts_factor: draws per ask, as a multiple of ``batch_size``.
    dedup: drop children equal to a member or to an earlier child.

  Returns:
    A :class:`Strategy` whose state is an :class:`AgingEvolutionState`.

  Raises:
    ConfigError: a non-positive size, ``sample_size`` or ``batch_size``
      above ``population_size``, or a probability outside ``[0, 1]``.

  Example:
    >>> import jax, jax.numpy as jnp
    >>> import jaxmutate as jm
    >>> from jaxmutate.search import regularized_evolution
    >>> net = jm.models.SearchableMLP(num_classes=2, width=4, num_layers=4)
    >>> mutator = jm.OneShotModuleMutator().prepare_from_supernet(net.init(jax.random.key(0), jnp.ones((1, 3)), None))
    >>> strategy = regularized_evolution(mutator, population_size=8, sample_size=3, mutation_prob=0.3, batch_size=4)
    >>> state = strategy.init(jax.random.key(1))
    >>> strategy.population_size, state.scores.shape, int(state.count)  # asks 4 at a time; keeps 8
    (4, (8,), 0)
  """
  where = "regularized_evolution"
  _check_positive(
    where,
    population_size=population_size,
    sample_size=sample_size,
    batch_size=batch_size,
    max_attempts_factor=max_attempts_factor,
  )
  _check_prob(where, mutation_prob=mutation_prob)
  for name, value in (("sample_size", sample_size), ("batch_size", batch_size)):
    if value > population_size:
      raise ConfigError(f"{where}: {name} ({value}) cannot exceed population_size ({population_size}).")
  sample = sampler(mutator)
  n, b = population_size, batch_size

  def init(key: PRNGKey) -> AgingEvolutionState:
    members = gather(sample(jax.random.key(0), 1), jnp.zeros(n, jnp.int32))
    return AgingEvolutionState(
      key, members, jnp.full(n, -jnp.inf, jnp.float32), jnp.int32(0), jnp.zeros(b, bool), init_stats(mutator)
    )

  def ask(state: AgingEvolutionState) -> tuple[Population, AgingEvolutionState]:
    key, random_key, mutant_key = jax.random.split(state.key, 3)
    filled = jnp.arange(n) < state.count
    exclude = (rows(state.members), jnp.minimum(state.count, n)) if dedup else None
    fresh, fresh_valid = generate(random_key, b, sample, max_attempts_factor, constraint, dedup, exclude)

    def mutants(k: PRNGKey, m: int) -> Population:
      tournament_key, random_key, mix_key = jax.random.split(k, 3)
      logits = jnp.where(filled, 0.0, -jnp.inf)

      def winner(k: PRNGKey) -> jax.Array:
        # Gumbel top-k over the filled slots: a sample without replacement.
        entrants = jax.lax.top_k(logits + jax.random.gumbel(k, (n,)), sample_size)[1]
        return entrants[jnp.argmax(state.scores[entrants])]

      parents = gather(state.members, jax.vmap(winner)(jax.random.split(tournament_key, m)))
      return mix(mix_key, parents, sample(random_key, m), mutation_prob)

    children, child_valid = generate(mutant_key, b, mutants, max_attempts_factor, constraint, dedup, exclude)
    warm_up = state.count + jnp.arange(b) < n
    population = {g: jnp.where(_expand(warm_up, v), fresh[g], children[g]) for g, v in fresh.items()}
    valid = jnp.where(warm_up, fresh_valid, child_valid)
    stats = state.stats._replace(num_valid=jnp.sum(valid, dtype=jnp.int32))
    return population, state._replace(key=key, valid=valid, stats=stats)

  def tell(state: AgingEvolutionState, population: Population, scores: jax.Array, resources: Any = None):
    scores = jnp.asarray(scores, jnp.float32)
    keep = state.valid & jnp.isfinite(scores)
    position = (state.count + jnp.cumsum(keep) - 1) % n
    slot = jnp.where(keep, position, n)  # n: dropped by the scatter
    members = {g: state.members[g].at[slot].set(population[g], mode="drop") for g in state.members}
    return state._replace(
      members=members,
      scores=state.scores.at[slot].set(scores, mode="drop"),
      count=state.count + jnp.sum(keep, dtype=jnp.int32),
      stats=update_stats(state.stats, population, scores, state.valid),
    )

  def report(state: AgingEvolutionState) -> dict[str, jax.Array]:
    filled = jnp.arange(n) < state.count
    mean = jnp.sum(jnp.where(filled, state.scores, 0.0)) / jnp.maximum(jnp.sum(filled), 1)
    return {**stats_report(state.stats), "population_mean": mean}

  return Strategy(init, ask, tell, report, b)


def _expand(mask: jax.Array, like: jax.Array) -> jax.Array:
  return mask.reshape(mask.shape + (1,) * (like.ndim - 1))


# MMRazor's evolution ---------------------------------------------------------


class EvolutionState(NamedTuple):
  """State of :func:`evolution` (MMRazor's ``EvolutionSearchLoop`` on device).

  Attributes:
    key: the PRNG key of the next ask.
    valid: bool[P], which slots of the current pool are real.
    top: the top-k ``{group: [K, ...]}``, best first; the first ``num_top``
      slots are real.
    top_scores: float32[K] (``-inf`` past ``num_top``).
    num_top: int32.
    archive: int32[C, D], every distinct subnet rated, as flat rows (the
      score cache: no subnet is rated twice, its first score is kept).
    archive_scores: float32[C].
    num_archived: int32 (``num_evaluated``).
    pool_size: int32, the size of the last rated pool (the top-k when a
      generation bred nothing, as MMRazor).
    to_score: bool[P], the pool's slots not in the archive yet: what a
      chunked driver rates (the others' scores come from the archive).
    stats: :class:`SearchStats`.

  Example:
    >>> import jax, jax.numpy as jnp
    >>> import jaxmutate as jm
    >>> from jaxmutate.search import evolution
    >>> net = jm.models.SearchableMLP(num_classes=2, width=4, num_layers=2)
    >>> mutator = jm.OneShotModuleMutator().prepare_from_supernet(net.init(jax.random.key(0), jnp.ones((1, 3)), None))
    >>> state = evolution(mutator, 3, num_candidates=4, top_k=2, num_mutation=2, num_crossover=2).init(jax.random.key(0))
    >>> state.top_scores.tolist(), state.archive.shape  # 4 + 2 x 4 subnets of 2 genes
    ([-inf, -inf], (12, 2))
  """

  key: PRNGKey
  valid: jax.Array
  top: Population
  top_scores: jax.Array
  num_top: jax.Array
  archive: jax.Array
  archive_scores: jax.Array
  num_archived: jax.Array
  pool_size: jax.Array
  to_score: jax.Array
  stats: SearchStats


def evolution(
  mutator: ModuleMutator,
  num_generations: int,
  num_candidates: int = 50,
  top_k: int = 10,
  num_mutation: int = 25,
  num_crossover: int = 25,
  mutate_prob: float = 0.1,
  crossover_prob: float = 0.5,
  constraint: Constraint | None = None,
  max_attempts_factor: int = 10,
) -> Strategy:
  """MMRazor's evolution (``EvolutionSearchLoop``) as a strategy, draw for draw the host loop's.

  The first ask is ``num_candidates`` random subnets; each tell keeps the best
  ``top_k`` of pool ∪ top-k (finite scores only); each later ask is
  ``num_mutation`` mutants (a random top-k parent, each gene replaced by a
  fresh sample with probability ``mutate_prob``) and ``num_crossover``
  children (two random top-k parents mixed gene by gene with probability
  ``crossover_prob``). Each generator keeps the first admissible, distinct
  draws out of ``max_attempts_factor ×`` its target; a mutant equal to a
  child is dropped. Rated subnets are cached in an archive of every distinct
  subnet (capacity ``num_candidates + (num_generations - 1) × (num_mutation +
  num_crossover)``), so a subnet keeps its first score. From the same key,
  the choices, scores and history equal
  :meth:`~jaxmutate.search.EvolutionSearchLoop.run`'s.

  Args:
    mutator: a prepared mutator.
    num_generations: generations the archive must hold (``max_epochs``).
    num_candidates, top_k, num_mutation, num_crossover, mutate_prob,
      crossover_prob, max_attempts_factor: as
      :class:`~jaxmutate.search.EvolutionSearchLoop`.
    constraint: a jittable ``population -> bool[P]`` (e.g.
      :func:`make_constraint`), or ``None``.

  Returns:
    A :class:`Strategy` whose state is an :class:`EvolutionState`; its
    ``population_size`` is ``max(num_candidates, num_mutation + num_crossover)``.

  Raises:
    ConfigError: bad settings (as :class:`~jaxmutate.search.EvolutionSearchLoop`).

  Example:
    >>> import jax, jax.numpy as jnp
    >>> import jaxmutate as jm
    >>> from jaxmutate.search import evolution
    >>> net = jm.models.SearchableMLP(num_classes=2, width=4, num_layers=4)
    >>> mutator = jm.OneShotModuleMutator().prepare_from_supernet(net.init(jax.random.key(0), jnp.ones((1, 3)), None))
    >>> strategy = evolution(mutator, 5, num_candidates=8, top_k=4, num_mutation=6, num_crossover=6)
    >>> state = strategy.init(jax.random.key(1))
    >>> strategy.population_size, state.archive.shape  # 8 + 4 generations x 12 subnets, 4 genes each
    (12, (56, 4))
  """
  where = "evolution"
  _check_positive(
    where,
    num_generations=num_generations,
    num_candidates=num_candidates,
    top_k=top_k,
    max_attempts_factor=max_attempts_factor,
  )
  for name, value in (("num_mutation", num_mutation), ("num_crossover", num_crossover)):
    if not isinstance(value, int) or isinstance(value, bool) or value < 0:
      raise ConfigError(f"{where}: {name} must be a non-negative int, got {value!r}.")
  _check_prob(where, mutate_prob=mutate_prob, crossover_prob=crossover_prob)
  if top_k > num_candidates:
    raise ConfigError(f"{where}: top_k ({top_k}) cannot exceed num_candidates ({num_candidates}).")
  sample = sampler(mutator)
  size = max(num_candidates, num_mutation + num_crossover)
  capacity = num_candidates + (num_generations - 1) * (num_mutation + num_crossover)
  width = int(rows(_stack(_template(mutator))).shape[1])

  def init(key: PRNGKey) -> EvolutionState:
    top = gather(sample(jax.random.key(0), 1), jnp.zeros(top_k, jnp.int32))
    zero = jnp.int32(0)
    return EvolutionState(
      key,
      jnp.zeros(size, bool),
      top,
      jnp.full(top_k, -jnp.inf, jnp.float32),
      zero,
      jnp.zeros((capacity, width), jnp.int32),
      jnp.full(capacity, jnp.nan, jnp.float32),
      zero,
      zero,
      jnp.zeros(size, bool),
      init_stats(mutator),
    )

  def first_pool(state: EvolutionState) -> tuple[PRNGKey, Population, jax.Array]:
    key, first_key = jax.random.split(state.key)
    pool, valid = generate(first_key, num_candidates, sample, max_attempts_factor, constraint)
    pool, valid = pad(pool, valid, size)
    return key, pool, valid

  def bred_pool(state: EvolutionState) -> tuple[PRNGKey, Population, jax.Array]:
    key, mutation_key, crossover_key = jax.random.split(state.key, 3)
    top, num_top = state.top, state.num_top

    def mutants(k: PRNGKey, m: int) -> Population:
      parent_key, random_key, mix_key = jax.random.split(k, 3)
      parents = gather(top, jax.random.randint(parent_key, (m,), 0, num_top))
      return mix(mix_key, parents, sample(random_key, m), mutate_prob)

    def children(k: PRNGKey, m: int) -> Population:
      first_key, second_key, mix_key = jax.random.split(k, 3)
      first = gather(top, jax.random.randint(first_key, (m,), 0, num_top))
      second = gather(top, jax.random.randint(second_key, (m,), 0, num_top))
      return mix(mix_key, first, second, crossover_prob)

    parts, masks = [], []
    for target, make, k in ((num_mutation, mutants, mutation_key), (num_crossover, children, crossover_key)):
      if target:
        part, mask = generate(k, target, make, max_attempts_factor, constraint)
        parts.append(part)
        masks.append(mask)
    if not parts:
      pool, valid = gather(top, jnp.zeros(size, jnp.int32)), jnp.zeros(size, bool)
    else:
      pool, valid = concat(parts), jnp.concatenate(masks)
      valid = first_distinct(pool, valid) & (num_top > 0)  # a mutant and a child can coincide: keep one
      pool, valid = pad(pool, valid, size)
    return key, pool, valid

  def ask(state: EvolutionState) -> tuple[Population, EvolutionState]:
    key, pool, valid = jax.lax.cond(state.stats.generation == 0, first_pool, bred_pool, state)
    stats = state.stats._replace(num_valid=jnp.sum(valid, dtype=jnp.int32))
    cached, _ = member_of(pool, state.archive, state.num_archived)
    return pool, state._replace(key=key, valid=valid, to_score=valid & ~cached, stats=stats)

  def tell(state: EvolutionState, population: Population, scores: jax.Array, resources: Any = None):
    scores = jnp.asarray(scores, jnp.float32)
    valid = state.valid
    seen, where_seen = member_of(population, state.archive, state.num_archived)
    scores = jnp.where(seen, state.archive_scores[where_seen], scores)
    new = valid & ~seen
    slot = jnp.where(new, state.num_archived + jnp.cumsum(new) - 1, capacity)
    archive = state.archive.at[slot].set(rows(population), mode="drop")
    archive_scores = state.archive_scores.at[slot].set(scores, mode="drop")
    num_archived = state.num_archived + jnp.sum(new, dtype=jnp.int32)
    num_valid = jnp.sum(valid, dtype=jnp.int32)
    # Pool first, then the previous top-k, as the host loop merges them.
    merged = concat([population, state.top])
    merged_scores = jnp.concatenate([scores, state.top_scores])
    merged_valid = first_distinct(merged, jnp.concatenate([valid, jnp.arange(top_k) < state.num_top]))
    rankable = merged_valid & jnp.isfinite(merged_scores)
    order = jnp.argsort(jnp.where(rankable, -merged_scores, jnp.inf), stable=True)[:top_k]
    num_top = jnp.minimum(top_k, jnp.sum(rankable, dtype=jnp.int32))
    real = jnp.arange(top_k) < num_top
    top = gather(merged, order)
    top_scores = jnp.where(real, merged_scores[order], -jnp.inf)
    stats = state.stats
    stats = SearchStats(
      stats.generation + 1,
      {g: jnp.where(num_top > 0, top[g][0], stats.best[g]) for g in stats.best},
      jnp.where(num_top > 0, top_scores[0], -jnp.inf),
      num_archived,
      stats.num_nonfinite + jnp.sum(new & ~jnp.isfinite(scores), dtype=jnp.int32),
      stats.num_valid,
    )
    return state._replace(
      top=top,
      top_scores=top_scores,
      num_top=num_top,
      archive=archive,
      archive_scores=archive_scores,
      num_archived=num_archived,
      pool_size=jnp.where(num_valid == 0, state.num_top, num_valid),
      stats=stats,
    )

  def report(state: EvolutionState) -> dict[str, jax.Array]:
    real = jnp.arange(top_k) < state.num_top
    mean = jnp.sum(jnp.where(real, state.top_scores, 0.0)) / jnp.maximum(state.num_top, 1)
    return {
      **stats_report(state.stats),
      "pool_size": state.pool_size,
      "top_k_mean": mean,
      "top_scores": state.top_scores,
      "num_top": state.num_top,
    }

  return Strategy(init, ask, tell, report, size)


def _stack(member: GroupChoices) -> Population:
  return {g: jnp.asarray(v)[None] for g, v in member.items()}


# Drivers ---------------------------------------------------------------------


def make_generation_step(
  strategy: Strategy,
  score_fn: ScoreFunction,
  resource_fn: ResourceFunction | None = None,
  chunk_size: int | None = None,
) -> Callable[..., tuple[Any, dict[str, jax.Array]]]:
  """One generation, ask → score → tell, as a pure function ``step(state, *score_args) -> (state, report)``.

  ``score_fn(population, *score_args)`` rates the whole population at once
  (e.g. a ``vmap`` over subnets); ``resource_fn(population)``, when given,
  goes to ``tell`` (NSGA-II's cost). Jit it, or scan it
  (:func:`make_search_fn`); the state can be saved between steps.

  With ``chunk_size``, only the slots that need a score are rated: the
  state's ``to_score`` mask (subnets not rated before, for
  :func:`evolution`) or else its ``valid`` mask. They are packed to the
  front and rated ``chunk_size`` at a time (``lax.map``), and a chunk with
  none of them is skipped at run time (``lax.cond``), so an expensive
  scorer costs what the new subnets cost, rounded up to whole chunks; the
  other slots get NaN, which no strategy reads. Without it every slot is
  rated (the cheapest program for a cheap scorer).

  Raises:
    ConfigError: a ``chunk_size`` that is not a positive int.

  Example:
    >>> import jax, jax.numpy as jnp
    >>> import jaxmutate as jm
    >>> from jaxmutate.search import grid_search, make_generation_step
    >>> net = jm.models.SearchableMLP(num_classes=2, width=4, num_layers=2)
    >>> mutator = jm.OneShotModuleMutator().prepare_from_supernet(net.init(jax.random.key(0), jnp.ones((1, 3)), None))
    >>> strategy = grid_search(mutator, 4)
    >>> step = jax.jit(make_generation_step(strategy, lambda p, w: w * p[0].astype(jnp.float32)))
    >>> state, report = step(strategy.init(jax.random.key(1)), 2.0)
    >>> int(report["generation"]), float(report["best_score"])
    (0, 6.0)
  """

  if chunk_size is not None:
    _check_positive("make_generation_step", chunk_size=chunk_size)
  size = strategy.population_size

  def rate(population: Population, state: Any, score_args: tuple[Any, ...]) -> jax.Array:
    if chunk_size is None:
      return jnp.asarray(score_fn(population, *score_args), jnp.float32).reshape(size)
    mask = getattr(state, "to_score", state.valid)
    order = jnp.argsort(~mask, stable=True)  # the slots to rate first, in slot order
    count = jnp.sum(mask, dtype=jnp.int32)
    num_chunks = -(-size // chunk_size)
    index = jnp.concatenate([order, jnp.zeros(num_chunks * chunk_size - size, order.dtype)])
    index = index.reshape(num_chunks, chunk_size)

    def chunk(i: jax.Array) -> jax.Array:
      def run() -> jax.Array:
        scores = score_fn(gather(population, index[i]), *score_args)
        return jnp.asarray(scores, jnp.float32).reshape(chunk_size)

      return jax.lax.cond(i * chunk_size < count, run, lambda: jnp.full(chunk_size, jnp.nan, jnp.float32))

    packed = jax.lax.map(chunk, jnp.arange(num_chunks)).reshape(-1)[:size]
    return jnp.full(size, jnp.nan, jnp.float32).at[order].set(packed)

  def step(state: Any, *score_args: Any) -> tuple[Any, dict[str, jax.Array]]:
    population, state = strategy.ask(state)
    scores = rate(population, state, score_args)
    resources = None if resource_fn is None else dict(resource_fn(population))
    state = strategy.tell(state, population, scores, resources)
    return state, strategy.report(state)

  return step


def make_search_fn(
  strategy: Strategy,
  score_fn: ScoreFunction,
  num_generations: int,
  resource_fn: ResourceFunction | None = None,
  compiler_options: Mapping[str, Any] | None = None,
  chunk_size: int | None = None,
) -> Callable[..., tuple[Any, dict[str, jax.Array]]]:
  """The whole search as one jitted ``lax.scan``: ``search(key, *score_args) -> (state, history)``.

  ``history`` stacks each generation's ``strategy.report`` (arrays
  ``[num_generations]``). The result is a deterministic function of ``key``
  (and the score arguments), bit for bit. Pass large score inputs (network
  weights, data) as ``score_args`` rather than closing over them, so they
  are arguments of the compiled program, not constants in it. Nothing is
  checked inside the program: :func:`check_search_state` (or
  :func:`run_strategy`) raises for a search that found nothing.

  ``compiler_options`` go to ``jax.jit``: with a cheap score function on
  CPU, ``{"xla_backend_optimization_level": 0}`` halves the compile time
  (the search's own work is small; its random-number kernels are what
  LLVM spends its time on). ``chunk_size``: rate only the subnets that need
  it, in chunks (see :func:`make_generation_step`); for an expensive scorer.

  Raises:
    ConfigError: a non-positive ``num_generations``.

  Example:
    >>> import jax, jax.numpy as jnp
    >>> import jaxmutate as jm
    >>> from jaxmutate.search import grid_search, make_search_fn
    >>> net = jm.models.SearchableMLP(num_classes=2, width=4, num_layers=2)
    >>> mutator = jm.OneShotModuleMutator().prepare_from_supernet(net.init(jax.random.key(0), jnp.ones((1, 3)), None))
    >>> search = make_search_fn(grid_search(mutator, 4), lambda p: p[1].astype(jnp.float32), num_generations=3)
    >>> state, history = search(jax.random.key(1))
    >>> history["best_score"].tolist()
    [0.0, 1.0, 2.0]
  """
  _check_positive("make_search_fn", num_generations=num_generations)
  step = make_generation_step(strategy, score_fn, resource_fn, chunk_size)

  @functools.partial(jax.jit, compiler_options=dict(compiler_options) if compiler_options else None)
  def search(key: PRNGKey, *score_args: Any) -> tuple[Any, dict[str, jax.Array]]:
    state = strategy.init(key)
    return jax.lax.scan(lambda s, _: step(s, *score_args), state, None, length=num_generations)

  return search


def check_search_state(state: Any, what: str = "the search") -> None:
  """Raises :class:`~jaxmutate.errors.SearchError` when a finished search found no finite-scored subnet.

  Args:
    state: a strategy state (anything with a ``stats`` :class:`SearchStats`).
    what: how the message names the search (e.g. its constraints).

  Raises:
    SearchError: no admissible candidate was ever asked (the constraints
      were never met within the attempt cap), or every rated one scored
      non-finite.

  Example:
    >>> import jax
    >>> import jaxmutate as jm
    >>> from jaxmutate.search import check_search_state, random_search
    >>> net = jm.models.SearchableMLP(num_classes=2, width=4, num_layers=2)
    >>> mutator = jm.OneShotModuleMutator().prepare_from_supernet(net.init(jax.random.key(0), jax.numpy.ones((1, 3)), None))
    >>> try:
    ...   check_search_state(random_search(mutator, 4).init(jax.random.key(0)))
    ... except jm.errors.SearchError as error:
    ...   print(str(error)[:40])
    the search rated no subnet: no candidate
  """
  stats = state.stats
  rated, nonfinite = int(stats.num_rated), int(stats.num_nonfinite)
  if rated == 0:
    raise SearchError(
      f"{what} rated no subnet: no candidate met the constraints within the attempt cap "
      "(loosen constraints_range or raise max_attempts_factor)."
    )
  if not np.isfinite(float(stats.best_score)):
    raise SearchError(
      f"{what}: every one of the {rated} subnets rated scored non-finite (NaN or inf; {nonfinite} dropped); "
      "there is no best subnet. Check the score function (a diverged supernet?)."
    )


def run_strategy(
  key: PRNGKey,
  strategy: Strategy,
  score_fn: ScoreFunction,
  num_generations: int,
  resource_fn: ResourceFunction | None = None,
  score_args: tuple[Any, ...] = (),
  compiler_options: Mapping[str, Any] | None = None,
) -> tuple[Any, dict[str, np.ndarray]]:
  """Runs a strategy on device (:func:`make_search_fn`), checks it found something, returns host arrays.

  Args:
    key: PRNG key; the run is a deterministic function of it.
    strategy: a :class:`Strategy`.
    score_fn: jittable ``(population, *score_args) -> [P]`` scores.
    num_generations: generations (ask/tell rounds).
    resource_fn: jittable ``population -> {name: [P]}`` passed to ``tell``.
    score_args: extra arguments of ``score_fn`` (weights, data).
    compiler_options: passed to ``jax.jit`` (see :func:`make_search_fn`).

  Returns:
    ``(final state, history)``: the history as NumPy arrays ``[num_generations]``.

  Raises:
    SearchError: nothing admissible was found, or every score was
      non-finite (:func:`check_search_state`).

  Example:
    >>> import jax, jax.numpy as jnp
    >>> import jaxmutate as jm
    >>> from jaxmutate.search import grid_search, run_strategy
    >>> net = jm.models.SearchableMLP(num_classes=2, width=4, num_layers=2)
    >>> mutator = jm.OneShotModuleMutator().prepare_from_supernet(net.init(jax.random.key(0), jnp.ones((1, 3)), None))
    >>> nan = lambda population: jnp.full(population[0].shape, jnp.nan)
    >>> try:
    ...   run_strategy(jax.random.key(0), grid_search(mutator, 4), nan, num_generations=2)
    ... except jm.errors.SearchError as error:
    ...   print(type(error).__name__)
    SearchError
  """
  options = tuple(sorted((compiler_options or {}).items()))
  try:
    search = _cached_search(strategy, score_fn, num_generations, resource_fn, options)
  except TypeError:  # an unhashable function (e.g. a ResourceTable holds dicts): compile afresh
    search = make_search_fn(strategy, score_fn, num_generations, resource_fn, dict(options))
  state, history = search(key, *score_args)
  check_search_state(state)
  return state, {name: np.asarray(v) for name, v in history.items()}


@functools.lru_cache(maxsize=32)
def _cached_search(
  strategy: Strategy,
  score_fn: ScoreFunction,
  num_generations: int,
  resource_fn: ResourceFunction | None,
  options: tuple[tuple[str, Any], ...],
) -> Callable[..., Any]:
  # Strategies are tuples of functions, hashable by identity: the same strategy
  # and score function reuse one compiled search.
  return make_search_fn(strategy, score_fn, num_generations, resource_fn, dict(options))
