"""The evolution search resumed mid-search, in process (a scorer that dies); tests/test_checkpoint.py kills a whole run."""

from __future__ import annotations

import functools

import jax
import jax.numpy as jnp
import numpy as np
import pytest

import jaxmutate as jm
from jaxmutate.runners.checkpoint import Checkpointer, resumable_loop

FAST = {"xla_backend_optimization_level": 0, "xla_llvm_disable_expensive_passes": True}
LOOP = jm.EvolutionSearchLoop(
  max_epochs=5, num_candidates=8, top_k=3, num_mutation=4, num_crossover=4, constraints_range=dict(skips=(0, 2))
)


@pytest.fixture(scope="module")
def mutator():
  net = jm.SearchableMLP(num_classes=2, width=4, num_layers=4)
  return jm.OneShotModuleMutator().prepare_from_supernet(net.init(jax.random.key(0), jnp.ones((1, 3)), None))


def resources(population):
  return {"skips": sum((v == 3).astype(jnp.float32) for v in population.values())}


def score(population):
  # Distinct float32 scores, NaN in one corner (dropped and counted), as a validation accuracy would be.
  values = sum(jnp.asarray(v, jnp.float32) * 10.0**g for g, v in population.items()) / 7.0
  return np.asarray(jnp.where((population[0] == 2) & (population[1] == 1), jnp.nan, values))


def assert_same(got, want):
  assert got.history == want.history
  assert got.top_k_scores == want.top_k_scores and got.best_score == want.best_score
  assert {g: np.asarray(v).tolist() for g, v in got.top_k.items()} == {
    g: np.asarray(v).tolist() for g, v in want.top_k.items()
  }
  assert (got.num_evaluated, got.num_nonfinite) == (want.num_evaluated, want.num_nonfinite)


@pytest.mark.slow
def test_a_search_killed_between_generations_resumes_with_the_same_bits(tmp_path, mutator):
  dies_after = 2
  whole, whole_state = LOOP.run_stepwise(jax.random.key(4), mutator, score, resources, compiler_options=FAST)
  # The stepwise search is the host loop's, draw for draw.
  assert_same(whole, LOOP.run(jax.random.key(4), mutator, score, resources))
  assert whole.num_nonfinite > 0

  class Killed(Exception):
    pass

  calls = []

  def dying(population):
    if len(calls) == dies_after:
      raise Killed  # the process dies while rating generation `dies_after`
    calls.append(1)
    return score(population)

  folder = tmp_path / "search"
  drive = functools.partial(resumable_loop, checkpointer=Checkpointer(folder, {"space": "s"}, every_n_steps=1))
  with pytest.raises(Killed):
    LOOP.run_stepwise(jax.random.key(4), mutator, dying, resources, driver=drive, compiler_options=FAST)
  assert Checkpointer(folder, {}, resume=True).steps()[-1] == dies_after
  rated_again = []

  def counting(population):
    rated_again.append(len(population[0]))
    return score(population)

  saver = Checkpointer(folder, {"space": "s"}, every_n_steps=1, resume=True)
  resumed, resumed_state = LOOP.run_stepwise(
    jax.random.key(4),
    mutator,
    counting,
    resources,
    driver=functools.partial(resumable_loop, checkpointer=saver),
    compiler_options=FAST,
  )
  assert len(rated_again) == LOOP.max_epochs - dies_after  # the finished generations are not run again
  assert_same(resumed, whole)
  raw = lambda x: jax.random.key_data(x) if jax.dtypes.issubdtype(x.dtype, jax.dtypes.prng_key) else x  # noqa: E731
  for got, want in zip(jax.tree.leaves(resumed_state), jax.tree.leaves(whole_state)):
    np.testing.assert_array_equal(np.asarray(raw(got)), np.asarray(raw(want)))
  population, scores = LOOP.rated(resumed_state)
  assert len(scores) == whole.num_evaluated
  np.testing.assert_array_equal(scores, score(population))
  # Another search space on these checkpoints is refused, never a fresh start.
  with pytest.raises(jm.errors.CheckpointMismatchError, match="another space"):
    LOOP.run_stepwise(
      jax.random.key(4),
      mutator,
      score,
      resources,
      driver=functools.partial(resumable_loop, checkpointer=Checkpointer(folder, {"space": "t"}, resume=True)),
      compiler_options=FAST,
    )


@pytest.mark.slow
def test_stepwise_search_errors_come_after_the_first_generation(mutator):
  rated = []

  def nan(population):
    rated.append(1)
    return np.full(population[0].shape, np.nan, np.float32)

  with pytest.raises(jm.errors.SearchError, match="non-finite"):
    LOOP.run_stepwise(jax.random.key(0), mutator, nan, resources, compiler_options=FAST)
  assert len(rated) == 1  # raised at once, not after every generation
  impossible = jm.EvolutionSearchLoop(
    max_epochs=2, num_candidates=8, top_k=3, num_mutation=4, num_crossover=4, constraints_range=dict(skips=(-2, -1))
  )
  with pytest.raises(jm.errors.SearchError, match="constraints_range"):
    impossible.run_stepwise(jax.random.key(0), mutator, score, resources, compiler_options=FAST)
