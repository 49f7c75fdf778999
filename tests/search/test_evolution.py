"""Evolution search: MMRazor's loop semantics, constraints, determinism."""

import jax
import jax.numpy as jnp
import numpy as np
import pytest

import jaxmutate as jm
from jaxmutate.search._evolution import member_keys, population_size


@pytest.fixture(scope="module")
def mutator():
  net = jm.SearchableMLP(num_classes=2, width=4, num_layers=5)
  variables = net.init(jax.random.key(0), jnp.ones((1, 3)), None)
  return jm.OneShotModuleMutator().prepare_from_supernet(variables)


def score_sum(population):
  # Higher choice indices score higher: the optimum is every group at 3.
  return sum(v for v in population.values()).astype(jnp.float32)


def small_loop(**overrides):
  settings = dict(max_epochs=6, num_candidates=10, top_k=4, num_mutation=6, num_crossover=6)
  settings.update(overrides)
  return jm.EvolutionSearchLoop(**settings)


def test_search_improves_and_is_reproducible(mutator):
  first = small_loop().run(jax.random.key(1), mutator, score_sum)
  second = small_loop().run(jax.random.key(1), mutator, score_sum)
  assert first.best_score == second.best_score
  assert member_keys(first.top_k) == member_keys(second.top_k)
  scores = [h["best_score"] for h in first.history]
  assert scores == sorted(scores), "the best score never gets worse"
  assert scores[-1] > scores[0]
  assert first.top_k_scores == sorted(first.top_k_scores, reverse=True)
  assert len(set(member_keys(first.top_k))) == population_size(first.top_k)


def test_different_keys_explore_differently(mutator):
  a = small_loop(max_epochs=1).run(jax.random.key(1), mutator, score_sum)
  b = small_loop(max_epochs=1).run(jax.random.key(2), mutator, score_sum)
  assert member_keys(a.top_k) != member_keys(b.top_k)


def test_scores_are_cached_not_recomputed(mutator):
  seen = []

  def counting_score(population):
    seen.extend(member_keys(population))
    return score_sum(population)

  result = small_loop().run(jax.random.key(3), mutator, counting_score)
  assert len(seen) == len(set(seen)) == result.num_evaluated


def test_constraints_reject_candidates(mutator):
  # Resource: the number of groups at choice 3 ("skip"); allow at most one.
  def resources(population):
    return {"skips": sum((v == 3).astype(jnp.float32) for v in population.values())}

  result = small_loop(constraints_range=dict(skips=(0, 1))).run(jax.random.key(4), mutator, score_sum, resources)
  skips = np.asarray(resources(result.top_k)["skips"])
  assert (skips <= 1).all()
  # A scalar bound means (0, bound).
  scalar = small_loop(constraints_range=dict(skips=1)).run(jax.random.key(4), mutator, score_sum, resources)
  assert (np.asarray(resources(scalar.top_k)["skips"]) <= 1).all()


def test_unsatisfiable_constraints_raise(mutator):
  def resources(population):
    return {"flops": jnp.full(population_size(population), 10.0)}

  with pytest.raises(RuntimeError, match="constraints_range"):
    small_loop(constraints_range=dict(flops=(0, 1))).run(jax.random.key(0), mutator, score_sum, resources)


def test_constraints_need_a_resource_function(mutator):
  with pytest.raises(ValueError, match="no resource function"):
    small_loop(constraints_range=dict(flops=(0, 1))).run(jax.random.key(0), mutator, score_sum)


def test_unknown_constraint_name(mutator):
  with pytest.raises(KeyError, match="params"):
    small_loop(constraints_range=dict(params=(0, 1))).run(
      jax.random.key(0), mutator, score_sum, lambda p: {"flops": jnp.zeros(population_size(p))}
    )


@pytest.mark.parametrize(
  "overrides, message",
  [
    (dict(top_k=20), "top_k"),
    (dict(num_candidates=0), "num_candidates"),
    (dict(mutate_prob=1.5), "mutate_prob"),
    (dict(crossover_prob=-0.1), "crossover_prob"),
    (dict(num_mutation=-1), "num_mutation"),
    (dict(constraints_range=dict(flops=(1, 2, 3))), "flops"),
  ],
)
def test_bad_settings(overrides, message):
  with pytest.raises(ValueError, match=message):
    small_loop(**overrides)


def test_mutation_with_zero_probability_copies_parents(mutator):
  # No mutation and crossover of a parent with itself never creates new subnets
  # beyond the first pool's top-k.
  result = small_loop(mutate_prob=0.0, crossover_prob=0.0, num_crossover=0).run(jax.random.key(5), mutator, score_sum)
  assert result.num_evaluated == 10


def test_routes_evolve(key):
  # Vector-valued (route) genes are mixed whole.
  route = jm.DiffChoiceRoute({f"p{i}": (lambda x: x) for i in range(4)}, num_chosen=2)
  xs = [jnp.ones((1, 2))] * 4
  variables = route.init(key, xs, None)
  mutator = jm.NasMutator().prepare_from_supernet(variables)
  score = lambda population: population[0].sum(-1).astype(jnp.float32)
  result = small_loop(num_candidates=4, top_k=2).run(jax.random.key(1), mutator, score)
  chosen = np.asarray(result.best_choices[0])
  assert chosen.shape == (2,) and len(set(chosen.tolist())) == 2
  assert sorted(chosen.tolist()) == [2, 3]


def test_on_generation_reports_each_generation_and_the_library_prints_nothing(mutator, capsys):
  records = []
  result = small_loop().run(jax.random.key(1), mutator, score_sum, on_generation=records.append)
  assert records == result.history
  assert [r["epoch"] for r in records] == list(range(len(result.history)))
  captured = capsys.readouterr()
  assert captured.out == "" and captured.err == ""
