"""The strategy interface: random, grid, aging evolution and NSGA-II as pure ask/tell state, scanned on device."""

import chex
import jax
import jax.numpy as jnp
import numpy as np
import pytest

import jaxmutate as jm
from jaxmutate.search import (
  Strategy,
  crowding_distance,
  grid_search,
  grid_size,
  make_constraint,
  make_generation_step,
  make_search_fn,
  nsga2,
  pareto_front,
  pareto_ranks,
  random_search,
  regularized_evolution,
  run_strategy,
  space_choices,
)
from jaxmutate.search._evolution import member_keys

FAST = {"xla_backend_optimization_level": 0, "xla_llvm_disable_expensive_passes": True}


@pytest.fixture(scope="module")
def mutator():
  net = jm.SearchableMLP(num_classes=2, width=4, num_layers=3)  # 3 groups x 4 ops: 64 subnets
  variables = net.init(jax.random.key(0), jnp.ones((1, 3)), None)
  return jm.OneShotModuleMutator().prepare_from_supernet(variables)


def skips(population):
  return {"skips": sum((v == 3).astype(jnp.float32) for v in population.values())}


def score(population, poison):
  # The best subnets (group 0 at 3) score NaN when poisoned; some others +inf.
  total = sum(v.astype(jnp.float32) for v in population.values())
  total = jnp.where((population[0] == 3) & (poison > 0), jnp.nan, total)
  return jnp.where((population[0] == 0) & (population[1] == 3) & (poison > 0), jnp.inf, total)


def test_random_search_contract_constraint_nan_and_reproducibility(mutator):
  strategy = random_search(mutator, 8, constraint=make_constraint(skips, {"skips": (0, 1)}))
  assert isinstance(strategy, Strategy) and strategy.population_size == 8
  search = make_search_fn(strategy, score, 4, compiler_options=FAST)
  first, second = search(jax.random.key(1), 1.0), search(jax.random.key(1), 1.0)
  chex.assert_trees_all_equal(first, second)  # bit for bit from one key
  state, history = first
  assert history["best_score"].shape == (4,) and search._cache_size() == 1
  assert np.isfinite(state.stats.best_score) and int(state.stats.best[0]) != 3
  assert int(state.stats.num_nonfinite) > 0 and (np.asarray(history["num_valid"]) == 8).all()
  assert float(skips({g: v[None] for g, v in state.stats.best.items()})["skips"][0]) <= 1
  # The state is a pytree of arrays: it goes through jit and can be saved as is.
  assert all(isinstance(leaf, jax.Array) for leaf in jax.tree.leaves(state))
  state_again, _ = search(jax.random.key(2), 0.0)
  assert float(state_again.stats.best_score) >= float(state.stats.best_score) - 3


def test_grid_covers_the_space_exactly_once(mutator):
  assert grid_size(mutator) == 64
  seen = []

  def recording_score(population):
    return sum(v.astype(jnp.float32) for v in population.values())

  strategy = grid_search(mutator, 10)
  state = strategy.init(jax.random.key(0))
  ask, tell = jax.jit(strategy.ask), jax.jit(strategy.tell)
  for _ in range(7):  # 70 slots >= 64 subnets
    population, state = ask(state)
    valid = np.asarray(state.valid)
    seen.extend(k for k, v in zip(member_keys(population), valid) if v)
    state = tell(state, population, recording_score(population))
  assert len(seen) == len(set(seen)) == 64
  assert int(state.stats.num_rated) == 64 and float(state.stats.best_score) == 9.0
  population, state = ask(state)  # past the end: nothing more
  assert not np.asarray(state.valid).any()


def test_grid_errors_name_the_size(mutator):
  with pytest.raises(jm.errors.SearchSpaceError, match="64 subnets"):
    grid_search(mutator, 4, max_size=10)
  with pytest.raises(jm.errors.SearchSpaceError, match="cannot be listed"):

    class Continuous(jm.spaces.SearchSpace):
      names = ()

      def sample(self, key):
        return jax.random.uniform(key)

      def check(self, choice, where):
        return choice

      def export(self, choice):
        return float(choice)

      def load(self, chosen, where):
        return jnp.float32(chosen)

    space_choices(Continuous(), "group 0")
  routes = space_choices(jm.spaces.EdgeSubsetSpace(("a", "b", "c", "d"), num_chosen=2))
  assert routes.shape == (6, 2)


@pytest.mark.slow
def test_regularized_evolution_ages_out_and_drops_nan(mutator):
  strategy = regularized_evolution(mutator, population_size=8, sample_size=3, mutation_prob=0.5, batch_size=4)
  search = make_search_fn(strategy, score, 12, compiler_options=FAST)
  (state, history), again = search(jax.random.key(3), 1.0), search(jax.random.key(3), 1.0)
  chex.assert_trees_all_equal((state, history), again)
  assert np.isfinite(np.asarray(state.scores)).all()  # non-finite children never join the population
  assert int(state.stats.num_nonfinite) > 0 and np.isfinite(state.stats.best_score)
  best = np.asarray(history["best_score"])
  assert (np.diff(best) >= 0).all() and best[-1] > best[0]
  # Aging: the population is the 8 newest finite children, whatever their scores.
  assert int(state.count) > 8 and 40 <= int(state.stats.num_rated) <= 48
  assert best[-1] == 8.0  # the best finite subnet: group 0 at 2, the others at 3


def test_pareto_ranks_and_crowding_on_a_known_case():
  # (accuracy, -FLOPs): A, B and E trade off; C is dominated by B, D by A (same accuracy, more FLOPs).
  points = jnp.array([[0.9, -3.0], [0.8, -1.0], [0.7, -2.0], [0.9, -4.0], [0.5, -0.5], [0.1, -9.0]])
  valid = jnp.array([True, True, True, True, True, False])
  ranks = pareto_ranks(points, valid)
  assert ranks.tolist()[:5] == [0, 0, 1, 1, 0] and ranks[5] > 100
  crowding = crowding_distance(points, ranks)
  assert np.isinf(crowding[0]) and np.isinf(crowding[4]) and np.isfinite(crowding[1])


@pytest.mark.slow
def test_nsga2_finds_the_true_front(mutator):
  def accuracy(population, poison):
    return score(population, poison)

  def flops(population):
    return {"flops": (2 * population[0] + population[1] + 3 * population[2]).astype(jnp.float32)}

  state, history = run_strategy(
    jax.random.key(0),
    nsga2(mutator, 16, mutate_prob=0.3),
    accuracy,
    15,
    resource_fn=flops,
    score_args=(0.0,),
    compiler_options=FAST,
  )
  front, scores, costs = pareto_front(state)
  # The true front by brute force over the 64 subnets.
  everything = {g: jnp.asarray(v) for g, v in grid_population(mutator).items()}
  objectives = jnp.stack([accuracy(everything, 0.0), -flops(everything)["flops"]], axis=1)
  true = np.asarray(pareto_ranks(objectives)) == 0
  true_points = sorted(zip(np.asarray(-objectives[true, 1]).tolist(), np.asarray(objectives[true, 0]).tolist()))
  assert sorted(zip(costs.tolist(), scores.tolist())) == true_points
  assert int(history["front_size"][-1]) == len(true_points)


def grid_population(mutator):
  strategy = grid_search(mutator, grid_size(mutator))
  population, _ = strategy.ask(strategy.init(jax.random.key(0)))
  return population


def test_nsga2_needs_its_cost_and_bad_settings_raise(mutator):
  with pytest.raises(KeyError, match="flops"):
    make_search_fn(nsga2(mutator, 4), score, 1)(jax.random.key(0), 0.0)
  for make, message in [
    (lambda: random_search(mutator, 0), "population_size"),
    (lambda: regularized_evolution(mutator, population_size=4, sample_size=5), "sample_size"),
    (lambda: regularized_evolution(mutator, mutation_prob=1.5), "mutation_prob"),
    (lambda: nsga2(mutator, 4, crossover_prob=-1), "crossover_prob"),
    (lambda: jm.search.evolution(mutator, 2, num_candidates=4, top_k=5), "top_k"),
    (lambda: make_constraint(skips, {"skips": (1, 2, 3)}), "skips"),
    (lambda: make_constraint(None, {"skips": 1}), "no resource function"),
    (lambda: make_search_fn(random_search(mutator, 2), score, 0), "num_generations"),
  ]:
    with pytest.raises(ValueError, match=message):
      make()


def test_run_strategy_raises_when_nothing_meets_the_constraint(mutator):
  impossible = make_constraint(skips, {"skips": (-2, -1)})
  with pytest.raises(jm.errors.SearchError, match="no candidate met the constraints"):
    run_strategy(jax.random.key(0), grid_search(mutator, 8, constraint=impossible), score, 2, score_args=(0.0,))


def test_stepping_generation_by_generation_equals_the_scan(mutator):
  # What a checkpointing driver does: jit one generation, keep the state between calls.
  strategy = grid_search(mutator, 6)  # no random draws: the cheapest program to compile
  step = jax.jit(make_generation_step(strategy, score), compiler_options=FAST)
  state = strategy.init(jax.random.key(5))
  for _ in range(4):
    state, _ = step(state, 0.0)
  scanned, _ = make_search_fn(strategy, score, 4, compiler_options=FAST)(jax.random.key(5), 0.0)
  chex.assert_trees_all_equal(state, scanned)
