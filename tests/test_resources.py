"""FLOPs/params of subnets: exact per subnet, tables for populations; latency measured here."""

import jax
import jax.numpy as jnp
import numpy as np
import pytest

import jaxmutate as jm
from jaxmutate.runners.latency import build_latency_table, median_latency_ms


@pytest.fixture(scope="module")
def setup():
  net = jm.SearchableConvNet(width=4, num_layers=2)
  x = jnp.ones((1, 8, 8, 1))
  variables = jm.init_supernet(net, jax.random.key(0), x)
  mutator = jm.OneShotModuleMutator().prepare_from_supernet(variables)
  return net, x, variables, mutator


def test_exact_resources_follow_the_choice(setup):
  net, x, variables, mutator = setup
  measured = {k: jm.estimate_resources(net, variables, mutator, {0: k, 1: k}, x) for k in range(4)}
  skip = measured[3]
  # XLA counts a SAME conv's in-bounds multiply-adds twice: on 8x8 a k-tap row
  # covers sum_i |[i-k//2, i+k//2] ∩ [0, 8)| positions, and 4->4 channels make 16 pairs.
  for choice, k in enumerate((3, 5, 7)):
    taps = sum(min(i + k // 2, 7) - max(i - k // 2, 0) + 1 for i in range(8)) ** 2
    conv = 2 * taps * 16 / 1e6
    added = (measured[choice]["flops"] - skip["flops"]) / 2  # two layers
    assert conv <= added < conv * 1.1, (k, added, conv)  # BatchNorm and ReLU add a little
  assert skip["flops"] < measured[0]["flops"] < measured[1]["flops"] < measured[2]["flops"]
  # Params: a conv3 candidate has 4*4*9 weights + 2*4 BN scale/bias.
  assert (measured[0]["params"] - skip["params"]) * 1e6 == pytest.approx(2 * (4 * 4 * 9 + 8))


def test_concrete_choices_trace_to_the_chosen_candidate_only(setup):
  net, x, variables, _ = setup
  hlo = jax.jit(lambda v, x: net.apply(v, x, {"layers.0": np.int32(2), "layers.1": 1})).lower(variables, x).as_text()
  assert "stablehlo.case" not in hlo and "7x7x4x4" in hlo and "3x3x4x4" not in hlo


def test_count_params_drops_unchosen_candidates(setup):
  _, _, variables, mutator = setup
  total = sum(np.size(leaf) for leaf in jax.tree.leaves(variables["params"]))
  skip_only = jm.count_params(variables["params"], mutator, {"layers.0": 3, "layers.1": 3})
  per_layer = sum(np.size(leaf) for leaf in jax.tree.leaves(variables["params"]["layers.0"]))
  assert skip_only == total - 2 * per_layer


def test_table_matches_exact_measurements(setup):
  net, x, variables, mutator = setup
  table = jm.build_resource_table(net, variables, mutator, x)
  errors = table.max_error(net, variables, mutator, x, jax.random.key(1), num_subnets=3)
  assert errors["flops"] < 1e-3 and errors["params"] < 1e-6
  population = jax.vmap(mutator.sample_choices)(jax.random.split(jax.random.key(2), 5))
  batched = jax.jit(lambda p: table(p))(population)
  assert batched["flops"].shape == (5,)
  for i in range(5):
    one = table({g: v[i] for g, v in population.items()})
    np.testing.assert_allclose(batched["flops"][i], one["flops"], rtol=1e-6)


def test_table_rejects_routes(key):
  route = jm.DiffChoiceRoute({"a": lambda x: x, "b": lambda x: x}, num_chosen=1)
  xs = [jnp.ones((1, 2))] * 2
  variables = route.init(key, xs, None)
  mutator = jm.NasMutator().prepare_from_supernet(variables)
  with pytest.raises(ValueError, match="route"):
    jm.build_resource_table(lambda *a: None, variables, mutator, xs)


def test_latency_is_the_median_of_timed_calls_after_warmup():
  calls = []
  ticks = iter([0.0, 0.005, 1.0, 1.001, 2.0, 2.003])  # timed calls of 5, 1 and 3 ms

  def fn():
    calls.append(1)

  assert median_latency_ms(fn, warmup=2, repeats=3, clock=lambda: next(ticks)) == pytest.approx(3.0)
  assert len(calls) == 5  # two warm-up calls are run but not timed
  with pytest.raises(ValueError, match="repeats must be an int >= 1"):
    median_latency_ms(fn, repeats=0)


def test_latency_table_is_a_third_resource(setup):
  net, x, variables, mutator = setup
  table = build_latency_table(net, variables, mutator, x, warmup=1, repeats=3)
  assert table.names == ("latency",) and table.base["latency"] > 0
  population = jax.vmap(mutator.sample_choices)(jax.random.split(jax.random.key(3), 4))
  latency = jax.jit(lambda p: table(p)["latency"])(population)
  assert latency.shape == (4,) and bool(jnp.all(jnp.isfinite(latency)))
  merged = jm.ResourceTable(("flops", "latency"), {"flops": 1.0, **table.base}, {"flops": {}, **table.deltas})
  assert sorted(merged(population)) == ["flops", "latency"]
