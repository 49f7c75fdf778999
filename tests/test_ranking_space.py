"""The optional ``identity`` candidate of SearchableShuffleNetV2 and the depth space's packaged config."""

import importlib.util
import itertools
import pathlib
import sys

import jax
import jax.numpy as jnp
import numpy as np
import pytest

import jaxmutate as jm

CONFIGS = pathlib.Path(jm.__file__).parent / "configs"
TINY = dict(arch_setting=((4, 1, 1), (8, 1, 2)), stem_channels=4, last_channels=8)


def _space(net, x):
  variables = jm.init_supernet(net, jax.random.key(0), x)  # jitted: an eager init compiles op by op
  mutator = jm.OneShotModuleMutator().prepare_from_supernet(variables)
  return variables, mutator, {name: spec.choice_names for name, spec in mutator.specs}


@pytest.mark.slow
def test_identity_is_offered_only_where_a_block_keeps_its_shape_and_only_when_asked():
  x = jnp.ones((1, 4, 4, 1))
  assert jm.models.SearchableShuffleNetV2().identity_candidate is False  # the default space is unchanged
  net = jm.models.SearchableShuffleNetV2(**TINY, identity_candidate=True)
  variables, mutator, names = _space(net, x)
  # 0.0 keeps 4 channels at stride 1; 1.0 is strided and widens 4 -> 8, so it offers the SPOS blocks only.
  assert names == {"layers.0.0": jm.models.SPOS_CANDIDATES + ("identity",), "layers.1.0": jm.models.SPOS_CANDIDATES}
  table = jm.build_resource_table(net, variables, mutator, x)
  flops = table({0: np.array([0, 1, 2, 3, 4]), 1: np.zeros(5, np.int32)})["flops"]
  assert int(np.argmin(flops)) == 4 and float(flops[4]) > 0  # skipping the block costs only the block
  skip = mutator.set_choices({0: jnp.int32(4), 1: jnp.int32(0)})
  assert net.apply(variables, x, skip).shape == (1, 10)
  with pytest.raises(jm.errors.ConfigError, match="identity_candidate must be True or False, got 'yes'"):
    jm.models.SearchableShuffleNetV2(**TINY, identity_candidate="yes").init(jax.random.key(0), x, None)


@pytest.mark.slow
def test_the_depth_config_offers_a_skip_at_every_block_and_its_budget_keeps_about_a_fifth():
  config = jm.load_config(CONFIGS / "spos_depth_digits.py")
  net = jm.build(config["model"]["architecture"])
  x = jnp.ones((1, 8, 8, 1))
  variables, mutator, names = _space(net, x)
  assert len(names) == 5 and all(n == jm.models.SPOS_CANDIDATES + ("identity",) for n in names.values())
  every = np.array(list(itertools.product(range(5), repeat=5)))  # all 3,125 subnets
  flops = np.asarray(jm.build_resource_table(net, variables, mutator, x)(dict(enumerate(every.T)))["flops"])
  low, high = config["search_cfg"]["constraints_range"]["flops"]
  assert 0.15 < ((flops >= low) & (flops <= high)).mean() < 0.3
  assert flops.argmin() == 3124  # five skips: the cheapest subnet


def test_the_depth_config_trains_its_supernet_80_epochs_with_a_schedule_of_the_same_length():
  # 80 epochs is what ranked (benchmarks/results/ranking_spos_depth_digits*.json); the cosine decay must end with them.
  config = jm.load_config(CONFIGS / "spos_depth_digits.py")
  train_cfg = config["train_cfg"]
  steps_per_epoch = len(jm.runners.load_data(config, "test").train) // train_cfg["batch_size"]  # whole batches only
  assert train_cfg["epochs"] == 80
  assert train_cfg["optimizer"]["learning_rate"]["decay_steps"] == 80 * steps_per_epoch


def _ranking_benchmark():
  benchmarks = pathlib.Path(__file__).resolve().parents[1] / "benchmarks"
  sys.path.insert(0, str(benchmarks))  # ranking.py imports its sibling machine.py
  try:
    spec = importlib.util.spec_from_file_location("ranking_benchmark_primary", benchmarks / "ranking.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
  finally:
    sys.path.remove(str(benchmarks))
  return module


@pytest.mark.parametrize(
  "primary, message",
  [
    (dict(primary_supernet_epochs=80), "primary_supernet_epochs 80 is not one of the supernet epochs \\[40\\]"),
    (dict(primary_signal="test_accuracy"), "primary_signal 'test_accuracy' is not one of"),
    (dict(primary_truth="heldout_f1"), "primary_truth 'heldout_f1' is not one of"),
  ],
)
def test_a_primary_pair_the_run_cannot_measure_is_refused_before_any_training(primary, message):
  ranking = _ranking_benchmark()
  config = jm.load_config(CONFIGS / "spos_depth_digits.py")
  with pytest.raises(jm.errors.ConfigError, match=message):
    ranking.run(config, num_subnets=6, supernet_epochs=[40], standalone_epochs=1, seed=0, **primary)
