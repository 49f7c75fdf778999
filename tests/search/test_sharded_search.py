"""The device search with population-sharded scoring: 8 forced host devices give the results of one (subprocess)."""

from __future__ import annotations

import os
import subprocess
import sys
import textwrap

import jax
import jax.numpy as jnp
import pytest

import jaxmutate as jm
from jaxmutate.sharding import make_mesh

EIGHT_DEVICES = textwrap.dedent(
  """
  import jax, jax.numpy as jnp, numpy as np
  import jaxmutate as jm
  from jaxmutate.algorithms import evaluate_accuracy
  from jaxmutate.sharding import make_mesh, replicate

  assert len(jax.devices()) == 8, jax.devices()
  FAST = {"xla_backend_optimization_level": 0, "xla_llvm_disable_expensive_passes": True}
  rng = np.random.default_rng(0)
  images = jnp.asarray(rng.normal(size=(64, 6)).astype(np.float32))
  labels = jnp.asarray(rng.integers(0, 3, 64).astype(np.int32))
  net = jm.SearchableMLP(num_classes=3, width=16, num_layers=4)
  variables = net.init(jax.random.key(0), images[:1], None)
  mutator = jm.OneShotModuleMutator().prepare_from_supernet(variables)

  shardings = []

  def score(population, params, images, labels):
    # A real scorer: the subnets' accuracy plus a continuous term (their mean true-class probability), vmapped.
    jax.debug.inspect_array_sharding(population[0], callback=shardings.append)
    def one(group_choices):
      choices = mutator.set_choices(group_choices)
      logits = net.apply({"params": params}, images, choices)
      prob = jnp.take_along_axis(jax.nn.softmax(logits), labels[:, None], axis=1).mean()
      return evaluate_accuracy(net, params, {}, choices, images, labels) + 0.01 * prob

    return jax.vmap(one)(population)

  loop = jm.EvolutionSearchLoop(max_epochs=4, num_candidates=16, top_k=4, num_mutation=8, num_crossover=8)
  args = (variables["params"], images, labels)
  one = loop.run_on_device(jax.random.key(3), mutator, score, score_args=args, compiler_options=FAST)
  mesh = make_mesh(population=8)

  def same(a, b):
    assert a.history == b.history or all(
      x["pool_size"] == y["pool_size"] and abs(x["best_score"] - y["best_score"]) < 1e-6
      for x, y in zip(a.history, b.history)
    ), (a.history, b.history)
    assert {g: np.asarray(v).tolist() for g, v in a.top_k.items()} == {
      g: np.asarray(v).tolist() for g, v in b.top_k.items()
    }
    np.testing.assert_allclose(a.top_k_scores, b.top_k_scores, atol=1e-6)
    assert (a.num_evaluated, a.num_nonfinite) == (b.num_evaluated, b.num_nonfinite)

  # run_on_device (one jitted make_search_fn scan) with the population split over 8 devices: the whole pool, then
  # 8-subnet chunks of the new subnets only.
  sharded_args = replicate(mesh, args)
  eight = loop.run_on_device(
    jax.random.key(3), mutator, score, score_args=sharded_args, compiler_options=FAST, mesh=mesh
  )
  same(eight, one)
  chunked = loop.run_on_device(
    jax.random.key(3), mutator, score, score_args=sharded_args, compiler_options=FAST, chunk_size=8, mesh=mesh
  )
  same(chunked, one)

  # The scorer really saw its population split over the 8 devices (the sharding XLA chose, read at compile time).
  assert any(len(seen.device_set) == 8 and not seen.is_fully_replicated for seen in shardings), shardings

  # A mesh that does not divide the population is a named error.
  try:
    jm.EvolutionSearchLoop(max_epochs=1, num_candidates=12, top_k=2, num_mutation=6, num_crossover=6).run_on_device(
      jax.random.key(0), mutator, score, score_args=args, mesh=mesh
    )
  except jm.errors.ShardingError as error:
    assert "does not divide the 12 subnets" in str(error), error
  else:
    raise AssertionError("no ShardingError")
  print("OK")
  """
)


@pytest.mark.slow
def test_the_device_search_on_eight_host_devices_equals_one(tmp_path):
  flags = (
    f"{os.environ.get('XLA_FLAGS', '')} --xla_force_host_platform_device_count=8".strip()
  )  # keep the suite's flags
  env = {**os.environ, "XLA_FLAGS": flags, "JAX_PLATFORMS": "cpu"}
  done = subprocess.run(
    [sys.executable, "-c", EIGHT_DEVICES], env=env, capture_output=True, text=True, cwd=tmp_path, timeout=600
  )
  assert done.returncode == 0 and done.stdout.strip().endswith("OK"), done.stderr[-3000:]


def test_a_mesh_that_does_not_divide_the_chunks_is_a_named_error():
  net = jm.SearchableMLP(num_classes=2, width=4, num_layers=2)
  mutator = jm.OneShotModuleMutator().prepare_from_supernet(net.init(jax.random.key(0), jnp.ones((1, 3)), None))
  loop = jm.EvolutionSearchLoop(max_epochs=1, num_candidates=4, top_k=2, num_mutation=2, num_crossover=2)

  class TwoWays:  # the shape of a mesh with a 2-device population axis: the check comes before any device is used
    shape = {"population": 2}

  score = lambda population: population[0].astype(jnp.float32)  # noqa: E731
  with pytest.raises(jm.errors.ShardingError, match="does not divide the 3 subnets rated at once"):
    loop.run_on_device(jax.random.key(0), mutator, score, mesh=TwoWays(), chunk_size=3)
  assert dict(make_mesh(population=1).shape)["population"] == 1
