"""MMRazor's evolution on device: the host loop's results, bit-for-bit reproducible, NaN-safe, one compile."""

import chex
import jax
import jax.numpy as jnp
import numpy as np
import pytest

import jaxmutate as jm
from jaxmutate.search import make_search_fn
from jaxmutate.search._evolution import _cached_device_search, _settings, member_keys


@pytest.fixture(scope="module")
def mutator():
  net = jm.SearchableMLP(num_classes=2, width=4, num_layers=4)
  variables = net.init(jax.random.key(0), jnp.ones((1, 3)), None)
  return jm.OneShotModuleMutator().prepare_from_supernet(variables)


def resources(population):
  return {"skips": sum((v == 3).astype(jnp.float32) for v in population.values())}


def score(population, poison):
  # Higher choices score higher; with poison > 0 the best region (group 0 at 3) scores NaN and part of the rest inf;
  # with poison > 1 everything is NaN.
  total = sum(v.astype(jnp.float32) for v in population.values())
  total = jnp.where(poison > 1, jnp.nan, total)
  total = jnp.where((population[0] == 3) & (poison > 0), jnp.nan, total)
  return jnp.where((population[0] == 0) & (population[1] == 3) & (poison > 0), jnp.inf, total)


# The search's own kernels are small: skipping LLVM's optimisations halves the compile time of these tests.
FAST = {"xla_backend_optimization_level": 0, "xla_llvm_disable_expensive_passes": True}
LOOP = jm.EvolutionSearchLoop(
  max_epochs=5, num_candidates=12, top_k=4, num_mutation=6, num_crossover=6, constraints_range=dict(skips=(0, 2))
)


@pytest.fixture(scope="module")
def search(mutator):
  # The program run_on_device caches: the tests below share one compile.
  return _cached_device_search(_settings(LOOP), mutator, score, resources, tuple(sorted(FAST.items())), None)


def assert_same_result(host, device):
  assert device.history == host.history
  assert device.top_k_scores == host.top_k_scores
  assert device.best_score == host.best_score
  assert member_keys(device.top_k) == member_keys(host.top_k)
  assert (device.num_evaluated, device.num_nonfinite) == (host.num_evaluated, host.num_nonfinite)


@pytest.mark.slow
def test_device_loop_equals_host_loop(mutator, search):
  # Poisoned: NaN and inf scores, constraint rejections, duplicates and cached scores all take part.
  key, poison = jax.random.key(7), 1.0
  host = LOOP.run(key, mutator, lambda p: score(p, poison), resources)
  device = LOOP.result_of(*search(key, poison))
  assert_same_result(host, device)
  assert (np.asarray(resources(device.top_k)["skips"]) <= 2).all()
  # NaN/inf never rank: the best is finite and outside the poisoned region; the drops are counted.
  assert np.isfinite(device.best_score) and int(device.best_choices[0]) != 3
  assert all(np.isfinite(device.top_k_scores)) and device.num_nonfinite > 0


def test_device_loop_is_bitwise_reproducible_and_compiles_once(search):
  first = search(jax.random.key(3), 0.0)
  second = search(jax.random.key(3), 0.0)
  chex.assert_trees_all_equal(first, second)
  other = search(jax.random.key(4), 0.0)
  assert not np.array_equal(np.asarray(first[0].archive), np.asarray(other[0].archive))
  assert search._cache_size() == 1  # new keys and score inputs reuse the compiled scan


def test_run_on_device_api_and_nan_errors(mutator, search):
  result = LOOP.run_on_device(jax.random.key(7), mutator, score, resources, score_args=(0.0,), compiler_options=FAST)
  assert_same_result(LOOP.result_of(*search(jax.random.key(7), 0.0)), result)
  assert search._cache_size() == 1
  # Rating only the subnets not rated before, 5 at a time, skipping empty chunks: the same search.
  chunked = LOOP.run_on_device(
    jax.random.key(7), mutator, score, resources, score_args=(1.0,), compiler_options=FAST, chunk_size=5
  )
  assert_same_result(LOOP.result_of(*search(jax.random.key(7), 1.0)), chunked)
  # Every subnet of the first pool NaN: nothing to breed from, on device and on the host.
  with pytest.raises(jm.errors.SearchError, match="non-finite"):
    LOOP.run_on_device(jax.random.key(1), mutator, score, resources, score_args=(2.0,), compiler_options=FAST)
  with pytest.raises(jm.errors.SearchError, match="non-finite"):
    LOOP.run(jax.random.key(2), mutator, lambda p: np.full(p[0].shape, np.nan), resources)


def test_unsatisfiable_constraints_and_unknown_resources_raise_on_device(mutator):
  loop = jm.EvolutionSearchLoop(
    max_epochs=1, num_candidates=2, top_k=1, num_mutation=0, num_crossover=0, constraints_range=dict(skips=(-2, -1))
  )
  with pytest.raises(jm.errors.SearchError, match="constraints_range"):
    loop.run_on_device(jax.random.key(0), mutator, score, resources, score_args=(0.0,), compiler_options=FAST)
  strategy = jm.EvolutionSearchLoop(max_epochs=1, constraints_range=dict(flops=1.0)).as_strategy(mutator, resources)
  with pytest.raises(KeyError, match="flops"):
    make_search_fn(strategy, score, 1)(jax.random.key(0), 0.0)
  with pytest.raises(ValueError, match="no resource function"):
    jm.EvolutionSearchLoop(constraints_range=dict(flops=1.0)).as_strategy(mutator)
