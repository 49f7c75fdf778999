"""The searchable backbones: structure, names, shapes, config builds."""

import jax
import jax.numpy as jnp
import pytest

import jaxmutate as jm


def test_shufflenet_search_space(key):
  # XLA depthwise convs compile faster; the fast CPU path is tested in tests/ops.
  net = jm.SearchableShuffleNetV2(
    arch_setting=((8, 2, 1), (16, 1, 2)),
    stem_channels=8,
    last_channels=16,
    num_classes=5,
    depthwise_implementation="xla",
  )
  x = jnp.ones((2, 8, 8, 1))
  variables = jm.init_supernet(net, key, x)
  mutator = jm.OneShotModuleMutator().prepare_from_supernet(variables)
  assert mutator.search_groups == {0: ("layers.0.0",), 1: ("layers.0.1",), 2: ("layers.1.0",)}
  assert sorted(variables["params"]["layers.0.0"]) == sorted(jm.models.SPOS_CANDIDATES)
  apply = jax.jit(net.apply)
  for choice in range(4):
    choices = mutator.set_choices({g: jnp.int32(choice) for g in range(3)})
    assert apply(variables, x, choices).shape == (2, 5)
  mixed = mutator.set_choices({0: 0, 1: 1, 2: 3})
  concrete = {k: int(v) for k, v in mixed.items()}
  static = jax.jit(lambda v, x: net.apply(v, x, concrete))(variables, x)
  assert jnp.allclose(apply(variables, x, mixed), static, atol=1e-5)


def test_shufflenet_widen_factor_and_errors(key):
  net = jm.SearchableShuffleNetV2(arch_setting=((8, 1, 2),), stem_channels=8, last_channels=8, widen_factor=0.5)
  variables = jax.eval_shape(lambda: net.init(key, jnp.ones((1, 8, 8, 1)), None))
  assert variables["params"]["stem_conv"]["kernel"].shape[-1] == 4
  with pytest.raises(ValueError, match="unknown candidate_names"):
    jm.SearchableShuffleNetV2(candidate_names=("shuffle_9x9",)).init(key, jnp.ones((1, 8, 8, 1)), None)
  with pytest.raises(ValueError, match=r"arch_setting\[0\]"):
    jm.SearchableShuffleNetV2(arch_setting=((8, 0, 1),)).init(key, jnp.ones((1, 8, 8, 1)), None)


def test_models_build_from_config():
  net = jm.build(dict(type="jaxmutate.SearchableConvNet", width=4, num_layers=1))
  assert isinstance(net, jm.SearchableConvNet)
  mlp = jm.build(dict(type="SearchableMLP", activations=["relu", "tanh"]))
  variables = mlp.init(jax.random.key(0), jnp.ones((1, 4)), None)
  assert sorted(variables["params"]["layers.0"]) == ["relu", "tanh"]


def test_dense_act_rejects_unknown_activation(key):
  with pytest.raises(ValueError, match="swishy"):
    jm.models.DenseAct(2, "swishy").init(key, jnp.ones((1, 2)))
