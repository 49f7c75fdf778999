"""Evolution search over group choices (MMRazor's ``EvolutionSearchLoop``).

Populations are stacked group choices ``{group id: array[P, ...]}``: the
score function rates a whole population in one call (e.g. a jitted ``vmap``
over subnets), and new candidates are drawn in vectorised batches from
explicit PRNG keys.
"""

from __future__ import annotations

import dataclasses
import functools
from collections.abc import Callable, Mapping
from typing import Any, NamedTuple

import jax
import jax.numpy as jnp
import numpy as np

from jaxmutate.errors import ConfigError, ConfigKeyError, SearchError, ShardingError
from jaxmutate.mutators import ModuleMutator
from jaxmutate.registry import MODELS
from jaxmutate.search._population import _as_range, make_constraint
from jaxmutate.search._strategies import EvolutionState, Strategy, evolution, make_search_fn
from jaxmutate.sharding import POPULATION_AXIS
from jaxmutate.typing import GroupChoices, PRNGKey

Population = dict[int, jax.Array]
"""Stacked group choices: ``{group id: array[P, ...]}``."""
ScoreFunction = Callable[[Population], Any]
"""Rates a population: returns scores of shape ``[P]`` (higher is better)."""
ResourceFunction = Callable[[Population], Mapping[str, Any]]
"""Estimates resources of a population: ``{name: array[P]}``."""
SearchDriver = Callable[[Callable[[int, Any], Any], Any, int], tuple[Any, Any]]
"""``driver(step, state, num_steps) -> (state, resumed_from)``: runs ``state = step(i, state)`` for each generation
(e.g. :func:`jaxmutate.runners.checkpoint.resumable_loop` with a checkpointer)."""


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
  subnet is rated twice. A non-finite (NaN or ±inf) score never ranks: such
  a subnet stays out of the top-k and is counted in
  :attr:`EvolutionResult.num_nonfinite`; when every subnet of the first pool
  scores non-finite there is nothing to breed from (a ``SearchError``).

  :meth:`run` drives the search from the host with any score function;
  :meth:`run_on_device` runs the same search, with the same result, as one
  compiled ``lax.scan`` when the score and resource functions are jittable
  (:meth:`as_strategy` gives the :class:`~jaxmutate.search.Strategy`).

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
      SearchError: (a ``RuntimeError``) no candidate satisfies the
        constraints, or every subnet of the first pool scored non-finite.
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
        fresh_scores = np.asarray(score_fn(take(pool, np.asarray(fresh, np.int32))), np.float64).reshape(-1)
        for i, s in zip(fresh, fresh_scores):
          scores[identities[i]] = float(s)
      merged = unique(concatenate([pool, top]))
      merged_ids = member_keys(merged)
      # A NaN/inf score never ranks: it is cached (not rated again) and counted, but kept out of the top-k.
      rankable = [i for i in range(len(merged_ids)) if np.isfinite(scores[merged_ids[i]])]
      order = sorted(rankable, key=lambda i: -scores[merged_ids[i]])
      if not order:
        raise SearchError(
          f"EvolutionSearchLoop: every one of the {len(scores)} subnets rated so far scored non-finite "
          "(NaN or inf); there is nothing to breed from. Check the score function (a diverged supernet?)."
        )
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
    num_nonfinite = sum(1 for s in scores.values() if not np.isfinite(s))
    return EvolutionResult(
      best,
      scores[member_keys(top)[0]],
      top,
      [scores[i] for i in member_keys(top)],
      history,
      len(scores),
      num_nonfinite,
    )

  def run_stepwise(
    self,
    key: PRNGKey,
    mutator: ModuleMutator,
    score_fn: ScoreFunction,
    resource_fn: ResourceFunction | None = None,
    on_generation: Callable[[dict[str, Any]], None] | None = None,
    driver: SearchDriver | None = None,
    compiler_options: Mapping[str, Any] | None = None,
  ) -> tuple[EvolutionResult, EvolutionState]:
    """Runs the search one generation at a time from a pure state that can be saved and resumed; :meth:`run`'s result.

    The strategy of :meth:`as_strategy` breeds and ranks (jitted ``ask`` and
    ``tell``) and ``score_fn`` rates, on the host, only the subnets not rated
    before (in pool order, as :meth:`run` rates them), so any scorer works
    (a chunked, sharded one included). Each generation is
    ``step(i, (state, history)) -> (state, history)`` over a fixed-shape
    pytree (the :class:`~jaxmutate.search.EvolutionState`, with its key,
    population, archive of every score, and the per-generation reports so
    far), so a ``driver`` such as
    :func:`~jaxmutate.runners.checkpoint.resumable_loop` can checkpoint it
    after any generation and resume it later: the resumed search ends with
    the bits of one never interrupted.

    Args:
      key: PRNG key; the run is a deterministic function of it.
      mutator: a prepared mutator.
      score_fn: rates a stacked population, returning ``[P]`` scores (any
        Python function; it is called with the new subnets only).
      resource_fn: a *jittable* ``population -> {name: [P]}`` (e.g. a
        :class:`~jaxmutate.resources.ResourceTable`); needed with
        ``constraints_range``.
      on_generation: called after each generation run here (not the ones a
        resumed driver skipped) with its record, as in :meth:`run`.
      driver: ``driver(step, state, num_steps) -> (state, resumed_from)``;
        ``None``: a plain loop over the generations.
      compiler_options: passed to ``jax.jit`` of ``ask`` and ``tell`` (their
        kernels are small: ``{"xla_backend_optimization_level": 0}`` halves
        their compile time on CPU).

    Returns:
      ``(result, state)``: the :class:`EvolutionResult` (equal to
      :meth:`run`'s from the same key for a deterministic scorer) and the
      final state (:meth:`rated` lists what it rated).

    Raises:
      SearchError: no random subnet meets the constraints within the attempt
        cap, or every subnet of the first pool scored non-finite (raised
        after the first generation).

    Example:
      >>> import jax, jax.numpy as jnp
      >>> import jaxmutate as jm
      >>> net = jm.models.SearchableMLP(num_classes=2, width=4, num_layers=3)
      >>> mutator = jm.OneShotModuleMutator().prepare_from_supernet(net.init(jax.random.key(0), jnp.ones((1, 3)), None))
      >>> score = lambda population: sum(v for v in population.values()).astype(jnp.float32)
      >>> loop = jm.EvolutionSearchLoop(max_epochs=3, num_candidates=8, top_k=4, num_mutation=4, num_crossover=4)
      >>> result, state = loop.run_stepwise(jax.random.key(1), mutator, score)
      >>> result.history == loop.run(jax.random.key(1), mutator, score).history, int(state.num_archived) > 8
      (True, True)
    """
    # A resource function is keyed by identity (a ResourceTable holds dicts, unhashable): the same table, the
    # same compiled ask and tell, so a resumed search in the same process compiles nothing.
    args = (_settings(self), mutator, _ByIdentity(resource_fn), tuple(sorted((compiler_options or {}).items())))
    try:
      strategy, ask, tell = _cached_stepwise(*args)
    except TypeError:  # something else unhashable: compile afresh
      strategy, ask, tell = _stepwise(*args)
    start = strategy.init(key)
    shapes = jax.eval_shape(strategy.report, start)
    history = {name: jnp.zeros((self.max_epochs, *s.shape), s.dtype) for name, s in shapes.items()}

    def step(i: int, carry: tuple[EvolutionState, Any]) -> tuple[EvolutionState, Any]:
      population, state = ask(carry[0])
      fresh = np.flatnonzero(np.asarray(state.to_score))
      scores = np.full(strategy.population_size, np.nan, np.float32)
      if fresh.size:
        scores[fresh] = np.asarray(score_fn(take(population, fresh.astype(np.int32))), np.float32).reshape(-1)
      carry = tell((state, carry[1]), jnp.int32(i), population, jnp.asarray(scores))
      records = jax.device_get(carry[1])
      if i == 0:
        self._check_first_generation(records)
      if on_generation is not None:
        on_generation(_record(records, i))
      return carry

    run = driver if driver is not None else _plain_loop
    (state, history), _ = run(step, (start, history), self.max_epochs)
    return self.result_of(state, history), state

  def rated(self, state: EvolutionState) -> tuple[Population, np.ndarray]:
    """Every distinct subnet a search rated, in rating order, and its score (from its state's archive).

    Args:
      state: an :class:`~jaxmutate.search.EvolutionState` (of :meth:`run_stepwise`, or a device search).

    Returns:
      ``(population, scores)``: ``{group: [N, ...]}`` and float32 ``[N]``.

    Example:
      >>> import jax, jax.numpy as jnp
      >>> import jaxmutate as jm
      >>> net = jm.models.SearchableMLP(num_classes=2, width=4, num_layers=3)
      >>> mutator = jm.OneShotModuleMutator().prepare_from_supernet(net.init(jax.random.key(0), jnp.ones((1, 3)), None))
      >>> score = lambda population: population[0].astype(jnp.float32)
      >>> loop = jm.EvolutionSearchLoop(max_epochs=2, num_candidates=4, top_k=2, num_mutation=2, num_crossover=2)
      >>> result, state = loop.run_stepwise(jax.random.key(1), mutator, score)
      >>> population, scores = loop.rated(state)
      >>> len(scores) == result.num_evaluated, bool((scores == population[0]).all())
      (True, True)
    """
    state = jax.device_get(state)
    count = int(state.num_archived)
    archive = np.asarray(state.archive)[:count]
    population, column = {}, 0
    for g in sorted(state.top):
      like = np.asarray(state.top[g])
      width = int(np.prod(like.shape[1:], dtype=np.int64))
      population[g] = archive[:, column : column + width].reshape((count, *like.shape[1:])).astype(like.dtype)
      column += width
    return population, np.asarray(state.archive_scores)[:count]

  def _check_first_generation(self, history: Mapping[str, Any]) -> None:
    if int(history["num_valid"][0]) == 0:
      raise SearchError(
        f"No random subnet out of {self.num_candidates * self.max_attempts_factor} satisfies constraints_range {dict(self.constraints_range or {})}."
      )
    if not np.isfinite(history["best_score"][0]):
      raise SearchError(
        f"EvolutionSearchLoop: every one of the {int(history['num_rated'][0])} subnets of the first pool scored "
        "non-finite (NaN or inf); there is nothing to breed from. Check the score function (a diverged supernet?)."
      )

  def as_strategy(self, mutator: ModuleMutator, resource_fn: ResourceFunction | None = None) -> Strategy:
    """These settings as an on-device :class:`~jaxmutate.search.Strategy` (:func:`~jaxmutate.search.evolution`).

    Args:
      mutator: a prepared mutator.
      resource_fn: a *jittable* ``population -> {name: [P]}`` (e.g. a
        :class:`~jaxmutate.resources.ResourceTable`); needed with
        ``constraints_range``.

    Returns:
      A :class:`~jaxmutate.search.Strategy` that makes the same choices as
      :meth:`run`, draw for draw.

    Example:
      >>> import jax, jax.numpy as jnp
      >>> import jaxmutate as jm
      >>> net = jm.models.SearchableMLP(num_classes=2, width=4, num_layers=3)
      >>> mutator = jm.OneShotModuleMutator().prepare_from_supernet(net.init(jax.random.key(0), jnp.ones((1, 3)), None))
      >>> jm.EvolutionSearchLoop(num_candidates=20, top_k=5).as_strategy(mutator).population_size
      50
    """
    return evolution(
      mutator,
      self.max_epochs,
      num_candidates=self.num_candidates,
      top_k=self.top_k,
      num_mutation=self.num_mutation,
      num_crossover=self.num_crossover,
      mutate_prob=self.mutate_prob,
      crossover_prob=self.crossover_prob,
      constraint=make_constraint(resource_fn, self.constraints_range),
      max_attempts_factor=self.max_attempts_factor,
    )

  def run_on_device(
    self,
    key: PRNGKey,
    mutator: ModuleMutator,
    score_fn: Callable[..., Any],
    resource_fn: ResourceFunction | None = None,
    score_args: tuple[Any, ...] = (),
    compiler_options: Mapping[str, Any] | None = None,
    chunk_size: int | None = None,
    mesh: Any = None,
  ) -> EvolutionResult:
    """Runs the search as one jitted ``lax.scan`` over generations; the same result as :meth:`run`.

    Sampling, constraint checks, de-duplication, the score cache, top-k and
    breeding all run inside one compiled program (static shapes: oversample
    and mask); only the result comes back to the host. From the same key
    and a deterministic score function, the result equals :meth:`run`'s
    (choices, scores, history, ``num_evaluated``, ``num_nonfinite``).

    Args:
      key: PRNG key.
      mutator: a prepared mutator.
      score_fn: a *jittable* ``(population, *score_args) -> [P]`` (e.g. a
        ``vmap`` over subnets); it rates every slot of the pool, padding
        included, so it must not fail on repeated subnets.
      resource_fn: a *jittable* ``population -> {name: [P]}``; needed with
        ``constraints_range``.
      score_args: extra arguments of ``score_fn`` (weights, data): program
        arguments rather than constants.
      compiler_options: passed to ``jax.jit`` (see
        :func:`~jaxmutate.search.make_search_fn`).
      chunk_size: rate only the subnets not rated before, ``chunk_size`` at
        a time, skipping empty chunks (for an expensive scorer such as
        BatchNorm recalibration plus validation; see
        :func:`~jaxmutate.search.make_generation_step`). ``None`` rates every
        slot of the pool every generation. A scorer that rates subnets one
        after the other, such as
        :func:`~jaxmutate.algorithms.make_population_scorer`'s ``rate`` (the
        SPOS runner's), is best at ``chunk_size=1``: no padding is rated.
      mesh: a :func:`~jaxmutate.sharding.make_mesh` mesh: each population
        handed to ``score_fn`` is split over its ``population`` axis (a
        sharding constraint inside the compiled search, so every device rates
        its slice in the same program); the result equals one device's up to
        float reassociation inside ``score_fn``. Its ``population`` axis must
        divide what ``score_fn`` rates at once (``chunk_size``, else the
        strategy's ``population_size``).

    The compiled search is cached per (settings, mutator, score function,
    resource function, options) when they are hashable: a second call with
    another key or other ``score_args`` compiles nothing.

    Returns:
      An :class:`EvolutionResult`.

    Raises:
      SearchError: no random subnet meets the constraints within the attempt
        cap, or every subnet of the first pool scored non-finite.
      ShardingError: the mesh's ``population`` axis does not divide what
        ``score_fn`` rates at once.

    Example:
      >>> import jax, jax.numpy as jnp
      >>> import jaxmutate as jm
      >>> net = jm.models.SearchableMLP(num_classes=2, width=4, num_layers=3)
      >>> mutator = jm.OneShotModuleMutator().prepare_from_supernet(net.init(jax.random.key(0), jnp.ones((1, 3)), None))
      >>> score = lambda population: sum(v for v in population.values()).astype(jnp.float32)
      >>> loop = jm.EvolutionSearchLoop(max_epochs=2, num_candidates=4, top_k=2, num_mutation=2, num_crossover=2)
      >>> result = loop.run_on_device(jax.random.key(1), mutator, score)
      >>> len(result.history), result.top_k_scores == sorted(result.top_k_scores, reverse=True), result.num_nonfinite
      (2, True, 0)
    """
    options = tuple(sorted((compiler_options or {}).items()))
    args = (_settings(self), mutator, score_fn, resource_fn, options, chunk_size, mesh)
    try:
      search = _cached_device_search(*args)
    except TypeError:  # something unhashable (e.g. a ResourceTable holds dicts): compile afresh
      search = _device_search(*args)
    return self.result_of(*search(key, *score_args))

  def result_of(self, state: Any, history: Mapping[str, Any]) -> EvolutionResult:
    """The :class:`EvolutionResult` of a finished on-device search (``make_search_fn(loop.as_strategy(...))``).

    ``loop.run_on_device(...)`` is ``loop.result_of(*make_search_fn(loop.as_strategy(mutator, resource_fn),
    score_fn, loop.max_epochs)(key, *score_args))``; call the pieces yourself to keep the compiled search, or to
    save its state between generations (:func:`~jaxmutate.search.make_generation_step`).

    Args:
      state: the final :class:`~jaxmutate.search.EvolutionState`.
      history: the stacked per-generation reports.

    Returns:
      An :class:`EvolutionResult`, as :meth:`run` returns it.

    Raises:
      SearchError: the first pool was empty (constraints) or all non-finite.
    """
    state, history = jax.device_get((state, history))
    self._check_first_generation(history)
    num_top = int(state.num_top)
    top = {g: jnp.asarray(v[:num_top]) for g, v in state.top.items()}
    top_scores = [float(s) for s in np.asarray(state.top_scores[:num_top])]
    records = [_record(history, e) for e in range(self.max_epochs)]
    return EvolutionResult(
      member(top, 0), top_scores[0], top, top_scores, records, int(state.num_archived), int(state.stats.num_nonfinite)
    )


def _settings(loop: EvolutionSearchLoop) -> tuple[tuple[str, Any], ...]:
  settings = dataclasses.asdict(loop)
  ranges = settings.pop("constraints_range") or {}
  frozen = tuple(sorted((k, tuple(v) if isinstance(v, (list, tuple)) else v) for k, v in ranges.items()))
  return tuple(sorted(settings.items())) + (("constraints_range", frozen),)


def _device_search(
  settings: tuple[tuple[str, Any], ...],
  mutator: ModuleMutator,
  score_fn: Callable[..., Any],
  resource_fn: ResourceFunction | None,
  options: tuple[tuple[str, Any], ...],
  chunk_size: int | None = None,
  mesh: Any = None,
) -> Callable[..., Any]:
  fields = dict(settings)
  fields["constraints_range"] = dict(fields["constraints_range"]) or None
  loop = EvolutionSearchLoop(**fields)
  strategy = loop.as_strategy(mutator, resource_fn)
  if mesh is not None:
    score_fn = _population_sharded(score_fn, mesh, chunk_size or strategy.population_size)
  return make_search_fn(
    strategy, score_fn, loop.max_epochs, compiler_options=dict(options) or None, chunk_size=chunk_size
  )


_cached_device_search = functools.lru_cache(maxsize=16)(_device_search)


class _ByIdentity:
  """Hashes and compares a value by identity (a cache key for an unhashable but fixed object)."""

  def __init__(self, value: Any):
    self.value = value

  def __hash__(self) -> int:
    return id(self.value)

  def __eq__(self, other: object) -> bool:
    return isinstance(other, _ByIdentity) and other.value is self.value


def _stepwise(
  settings: tuple[tuple[str, Any], ...],
  mutator: ModuleMutator,
  resource_fn: _ByIdentity,
  options: tuple[tuple[str, Any], ...],
) -> tuple[Strategy, Callable[..., Any], Callable[..., Any]]:
  """The strategy of :meth:`EvolutionSearchLoop.run_stepwise` and its jitted ask and tell (with the history write)."""
  fields = dict(settings)
  fields["constraints_range"] = dict(fields["constraints_range"]) or None
  strategy = EvolutionSearchLoop(**fields).as_strategy(mutator, resource_fn.value)
  jit = functools.partial(jax.jit, compiler_options=dict(options) or None)

  def tell(carry: tuple[EvolutionState, Any], i: jax.Array, population: Population, scores: jax.Array) -> Any:
    state, history = carry
    state = strategy.tell(state, population, scores)
    report = strategy.report(state)
    return state, jax.tree.map(lambda h, r: h.at[i].set(r), history, report)

  return strategy, jit(strategy.ask), jit(tell)


_cached_stepwise = functools.lru_cache(maxsize=16)(_stepwise)


def _population_sharded(score_fn: Callable[..., Any], mesh: Any, size: int) -> Callable[..., Any]:
  """``score_fn`` with its population split over the mesh's population axis (inside the compiled search)."""
  ways = int(mesh.shape[POPULATION_AXIS])
  if size % ways:
    raise ShardingError(
      f"run_on_device: the mesh's {POPULATION_AXIS!r} axis ({ways} devices) does not divide the {size} subnets "
      "rated at once (chunk_size, else max(num_candidates, num_mutation + num_crossover)); use a multiple of "
      f"{ways} or another mesh."
    )

  def constrain(leaf: jax.Array) -> jax.Array:
    spec = jax.sharding.PartitionSpec(POPULATION_AXIS, *([None] * (leaf.ndim - 1)))
    return jax.lax.with_sharding_constraint(leaf, jax.sharding.NamedSharding(mesh, spec))

  def score(population: Population, *score_args: Any) -> Any:
    return score_fn({g: constrain(v) for g, v in population.items()}, *score_args)

  return score


def _plain_loop(step: Callable[[int, Any], Any], state: Any, num_steps: int) -> tuple[Any, None]:
  for i in range(num_steps):
    state = step(i, state)
  return state, None


def _record(history: Mapping[str, np.ndarray], epoch: int) -> dict[str, Any]:
  """Generation ``epoch``'s history record, as :meth:`EvolutionSearchLoop.run` writes it."""
  return {
    "epoch": int(history["generation"][epoch]),
    "pool_size": int(history["pool_size"][epoch]),
    "best_score": float(history["best_score"][epoch]),
    "top_k_mean": float(np.mean(_top_scores_at(history, epoch))),
  }


def _top_scores_at(history: Mapping[str, np.ndarray], epoch: int) -> list[float]:
  # The host loop averages Python floats (float64): average the same values here.
  return [float(s) for s in history["top_scores"][epoch][: int(history["num_top"][epoch])]]


class EvolutionResult(NamedTuple):
  """What an evolution search found.

  Attributes:
    best_choices: group choices of the best subnet.
    best_score: its score.
    top_k: the final top-k population (best first).
    top_k_scores: their scores.
    history: per-epoch ``{epoch, pool_size, best_score, top_k_mean}``.
    num_evaluated: distinct subnets rated.
    num_nonfinite: of those, how many scored NaN or ±inf (never ranked,
      never in the top-k).

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
  num_nonfinite: int = 0
