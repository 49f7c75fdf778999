"""Meshes, data-parallel supernet training and population-sharded scoring: 1 device here, 8 in a subprocess."""

from __future__ import annotations

import os
import subprocess
import sys
import textwrap

import jax.numpy as jnp
import numpy as np
import pytest

import jaxmutate as jm
from jaxmutate import errors
from jaxmutate.sharding import make_mesh, pad_population, replicate, shard_batch


def test_one_device_mesh_and_its_errors():
  mesh = make_mesh(population=1, data=1)
  assert dict(mesh.shape) == {"population": 1, "data": 1}
  images, labels = shard_batch(mesh, (np.ones((3, 2)), np.zeros(3)))
  assert images.shape == (3, 2) and labels.shape == (3,)
  assert replicate(mesh, {"w": jnp.ones(2)})["w"].sharding.is_fully_replicated
  with pytest.raises(errors.ShardingError, match="2 devices asked for, but only 1"):
    make_mesh(population=2, data=1)
  with pytest.raises(errors.ShardingError, match="population must be an int >= 1"):
    make_mesh(population=0)
  with pytest.raises(errors.ShardingError, match="same leading axis"):
    shard_batch(mesh, (np.ones((3, 2)), np.zeros(4)))
  padded, size = pad_population({0: jnp.array([4, 5, 6])}, 4)
  assert padded[0].tolist() == [4, 5, 6, 6] and size == 3
  with pytest.raises(errors.ShardingError, match="empty"):
    pad_population({0: jnp.zeros(0, jnp.int32)}, 2)


def test_runner_sharding_config_is_checked():
  spos = jm.build(
    dict(type="SPOS", architecture=dict(type="SearchableMLP", width=4), mutator=dict(type="OneShotModuleMutator"))
  )
  spos.check_config({"model": {}, "sharding": dict(population=1, data=1)})
  with pytest.raises(errors.ConfigKeyError, match="'populaton'"):
    spos.check_config({"model": {}, "sharding": dict(populaton=1)})
  with pytest.raises(errors.ShardingError, match="sharding="):
    spos.check_config({"model": {}, "sharding": dict(population=4, data=4)})


EIGHT_DEVICES = textwrap.dedent(
  """
  import jax, jax.numpy as jnp, numpy as np, optax
  import jaxmutate as jm
  from jaxmutate import errors
  from jaxmutate.algorithms import init_train_state, make_population_scorer
  from jaxmutate.data import Split
  from jaxmutate.runners import train_supernet
  from jaxmutate.runners.spos import make_sharded_population_scorer
  from jaxmutate.sharding import make_mesh, replicate, shard_batch, shard_population

  assert len(jax.devices()) == 8, jax.devices()
  mesh = make_mesh(population=2, data=4)
  for bad in (lambda: shard_batch(mesh, np.ones((6, 2))), lambda: shard_population(mesh, {0: np.arange(3)})):
    try:
      bad()
    except errors.ShardingError as error:
      assert "does not divide" in str(error), error
    else:
      raise AssertionError("no ShardingError")

  # Data-parallel SPOS training (BatchNorm statistics reduced over the devices) equals one device.
  rng = np.random.default_rng(0)
  split = Split(rng.normal(size=(48, 4, 4, 1)).astype(np.float32), rng.integers(0, 10, 48).astype(np.int32))
  net = jm.models.SearchableConvNet(width=4, num_layers=1)
  optimizer = optax.sgd(0.1, momentum=0.9)
  state, variables = init_train_state(net, optimizer, jax.random.key(0), jnp.asarray(split.images[:16]))
  mutator = jm.OneShotModuleMutator().prepare_from_supernet(variables)
  single, single_log = train_supernet(net, mutator, optimizer, state, split, 1, 16, jax.random.key(1))
  data_mesh = make_mesh(population=1, data=8)
  place = lambda images, labels: shard_batch(data_mesh, (images, labels))
  sharded, sharded_log = train_supernet(
    net, mutator, optimizer, replicate(data_mesh, state), split, 1, 16, jax.random.key(1), place_batch=place
  )
  assert len(jax.tree.leaves(sharded)[0].sharding.device_set) == 8
  for a, b in zip(jax.tree.leaves(single), jax.tree.leaves(sharded)):
    np.testing.assert_allclose(np.asarray(a), np.asarray(b), rtol=1e-4, atol=1e-5)
  for a, b in zip(single_log, sharded_log):
    assert abs(a["loss"] - b["loss"]) < 1e-4, (a, b)

  # Population-sharded scoring equals one device's, for a population the mesh does not divide (padded).
  population = jax.vmap(mutator.sample_choices)(jax.random.split(jax.random.key(2), 7))
  images, labels = jnp.asarray(split.images[:32]), jnp.asarray(split.labels[:32])
  calibration = jnp.asarray(split.images[32:])
  want = make_population_scorer(net, mutator, calibration, images, labels, chunk_size=5)(single, population)
  got = make_sharded_population_scorer(
    net, mutator, calibration, images, labels, make_mesh(population=4, data=2), chunk_size=5
  )(single, population)
  np.testing.assert_allclose(got, want, atol=1e-6)

  # The SPOS runner on a 2 x 4 mesh (the checks above are what it runs, recalibration included).
  config = dict(
    model=dict(type="SPOS", architecture=dict(type="SearchableMLP", width=8, num_layers=2),
               mutator=dict(type="OneShotModuleMutator")),
    train_cfg=dict(epochs=1, batch_size=32),
    search_cfg=dict(max_epochs=1, num_candidates=4, top_k=2, num_mutation=2, num_crossover=2,
                    calibrate_sample_num=0),
    num_random_baseline=0,
    sharding=dict(population=2, data=4),
  )
  summary = jm.build(config["model"]).run(config, ".", 0, progress=False).summary
  assert 0 <= summary["best_val_accuracy"] <= 1 and np.isfinite(summary["supernet_train"][0]["loss"])
  print("OK")
  """
)


@pytest.mark.slow
def test_eight_host_devices_give_the_results_of_one(tmp_path):
  flags = (
    f"{os.environ.get('XLA_FLAGS', '')} --xla_force_host_platform_device_count=8".strip()
  )  # keep the suite's compile flags
  env = {**os.environ, "XLA_FLAGS": flags, "JAX_PLATFORMS": "cpu"}
  done = subprocess.run(
    [sys.executable, "-c", EIGHT_DEVICES], env=env, capture_output=True, text=True, cwd=tmp_path, timeout=600
  )
  assert done.returncode == 0 and done.stdout.strip().endswith("OK"), done.stderr[-3000:]
