"""Constrained random subnets (rejection sampling with an attempt cap) and rank statistics."""

import jax
import jax.numpy as jnp
import numpy as np
import pytest

import jaxmutate as jm
from jaxmutate.search import admissible, rank_against, sample_constrained


@pytest.fixture(scope="module")
def mutator():
  # Five groups of four choices: 1024 subnets.
  net = jm.SearchableMLP(num_classes=2, width=4, num_layers=5)
  variables = net.init(jax.random.key(0), jnp.ones((1, 3)), None)
  return jm.OneShotModuleMutator().prepare_from_supernet(variables)


def cost(population):
  return {"cost": sum(np.asarray(v) for v in population.values()).astype(np.float32)}


def test_every_sampled_subnet_meets_the_constraint_and_the_draw_is_reproducible(mutator):
  sample = sample_constrained(jax.random.key(1), mutator, 20, cost, {"cost": (0, 5)})
  assert sample.num_found == 20 and sample.complete and sample.num_requested == 20
  assert 20 <= sample.num_attempts <= sample.max_attempts == 2000
  assert (np.asarray(cost(sample.population)["cost"]) <= 5).all()
  assert all(v.shape == (20,) for v in sample.population.values())
  again = sample_constrained(jax.random.key(1), mutator, 20, cost, {"cost": (0, 5)})
  assert again.num_attempts == sample.num_attempts
  for g in sample.population:
    np.testing.assert_array_equal(again.population[g], sample.population[g])


def test_attempts_count_the_draws_up_to_the_last_one_needed(mutator):
  # Without constraints every draw is kept: exactly num attempts, whatever the batch size.
  sample = sample_constrained(jax.random.key(2), mutator, 7, batch_size=16)
  assert (sample.num_found, sample.num_attempts) == (7, 7)
  # The acceptance rate of a constraint met by cost <= 5 of 15 is well below one: more draws than kept.
  tight = sample_constrained(jax.random.key(2), mutator, 10, cost, {"cost": 3}, batch_size=16)
  assert tight.num_found == 10 and tight.num_attempts > 10
  assert 0 < tight.acceptance_rate < 1


def test_a_constraint_no_subnet_meets_is_reported_with_the_attempts_made(mutator):
  sample = sample_constrained(jax.random.key(3), mutator, 5, cost, {"cost": (-2, -1)}, max_attempts=40, batch_size=16)
  assert (sample.num_found, sample.num_attempts, sample.max_attempts) == (0, 40, 40)
  assert not sample.complete and sample.acceptance_rate == 0.0
  assert all(v.shape == (0,) for v in sample.population.values()) and set(sample.population) == set(range(5))
  with pytest.raises(jm.errors.SearchError, match="empty"):
    rank_against(0.9, np.asarray(cost(sample.population)["cost"]))


def test_fewer_found_than_asked_stops_at_the_cap(mutator):
  # Only the all-zero subnet has cost 0: about one draw in 1024.
  sample = sample_constrained(jax.random.key(4), mutator, 5, cost, {"cost": (0, 0)}, max_attempts=3000, distinct=True)
  assert sample.num_found == 1 and sample.num_attempts == 3000 and not sample.complete


def test_bad_arguments_name_the_value(mutator):
  with pytest.raises(jm.errors.ConfigError, match="max_attempts"):
    sample_constrained(jax.random.key(0), mutator, 5, cost, {"cost": 3}, max_attempts=2)
  with pytest.raises(jm.errors.ConfigError, match="num"):
    sample_constrained(jax.random.key(0), mutator, -1)
  with pytest.raises(jm.errors.ConfigKeyError, match="'flops'"):
    sample_constrained(jax.random.key(0), mutator, 2, cost, {"flops": 3})
  with pytest.raises(jm.errors.ConfigError, match="resource function"):
    admissible({0: jnp.zeros(2, jnp.int32)}, None, {"cost": 3})


def test_rank_and_spread():
  report = rank_against(0.8, [0.5, 0.6, 0.7, 0.8, 0.9])
  assert (report.count, report.median, report.min, report.max) == (5, 0.7, 0.5, 0.9)
  assert (report.q1, report.q3) == pytest.approx((0.6, 0.8))
  assert report.rank == 2 and report.percentile == 70.0 and report.beats_median
  assert rank_against(1.0, [0.5, 0.6]).percentile == 100.0 and rank_against(1.0, [0.5, 0.6]).rank == 1
  worst = rank_against(0.1, [0.5, 0.6])
  assert (worst.rank, worst.percentile, worst.beats_median) == (3, 0.0, False)
  assert set(report.as_dict()) >= {"median", "q1", "q3", "min", "max", "rank", "percentile", "beats_median"}
  with pytest.raises(jm.errors.ConfigError, match="finite"):
    rank_against(float("nan"), [0.5])
