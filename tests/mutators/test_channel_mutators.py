"""Channel mutators: units, related channels, names, groups, sampling, config templates and subnet files."""

import chex
import flax.linen as nn
import jax
import jax.numpy as jnp
import numpy as np
import pytest

import jaxmutate as jm
from jaxmutate import dynamic
from jaxmutate.channels import (
  OneShotMutableChannelUnit,
  SequentialMutableChannelUnit,
  SlimmableChannelUnit,
)
from jaxmutate.errors import (
  ConfigError,
  ConfigKeyError,
  ConfigTypeError,
  MissingChoiceError,
  NotPreparedError,
  SearchSpaceError,
  SubnetEntryMissingError,
  SubnetFileError,
)

RATIOS = (0.25, 0.5, 0.75, 1.0)


class Net(nn.Module):
  """conv1 -> bn1 -> conv2 (+ residual conv3 sharing unit u2) -> fc; a one-shot op and a sequential unit."""

  alias: str | None = None
  unit_type: type = OneShotMutableChannelUnit

  @nn.compact
  def __call__(self, x, choices, train=False):
    u1 = self.unit_type(8, RATIOS, choice_mode="ratio", name="u1")(choices)
    u2 = self.unit_type(16, RATIOS, choice_mode="ratio", alias=self.alias, name="u2")(choices)
    x = dynamic.DynamicConv(8, 3, use_bias=False, name="conv1")(x, out_width=u1)
    x = nn.relu(dynamic.DynamicBatchNorm(use_running_average=not train, name="bn1")(x, u1))
    y = dynamic.DynamicConv(16, 3, name="conv2")(x, in_width=u1, out_width=u2)
    z = dynamic.DynamicConv(16, 1, name="conv3")(x, in_width=u1, out_width=u2)
    x = nn.relu(y + z)
    return dynamic.DynamicDense(3, name="fc")(x.mean((1, 2)), in_width=u2)


X = jnp.ones((2, 6, 6, 1))


@pytest.fixture(scope="module")
def variables():
  return Net().init(jax.random.key(0), X, None)


@pytest.fixture(scope="module")
def mutator(variables):
  return jm.OneShotChannelMutator().prepare_from_supernet(variables)


def test_units_related_channels_and_names(mutator):
  units = {u.mutable_name: u for u in mutator.units}
  u1, u2 = units["u1"], units["u2"]
  assert u1.name == "conv1_(0, 8)_8" and u2.name == "conv2_(0, 16)_16"
  assert [c.path for c in u1.channels.output_related] == ["conv1", "bn1"]
  assert [c.path for c in u1.channels.input_related] == ["bn1", "conv2", "conv3"]
  assert [c.path for c in u2.channels.output_related] == ["conv2", "conv3"]
  assert [(c.path, c.start, c.end) for c in u2.channels.input_related] == [("fc", 0, 16)]
  assert u1.is_mutable and u2.is_mutable and len(mutator.mutable_units) == 2
  assert u1.init_args["candidate_choices"] == list(RATIOS)
  assert mutator.search_groups == {0: ("u1",), 1: ("u2",)}


def test_sample_set_max_min(mutator, variables):
  assert {g: int(v) for g, v in mutator.max_choices().items()} == {0: 3, 1: 3}
  assert {g: int(v) for g, v in mutator.min_choices().items()} == {0: 0, 1: 0}
  full = Net().apply(variables, X, mutator.set_choices(mutator.max_choices()))
  chex.assert_shape(full, (2, 3))

  @jax.jit
  @chex.assert_max_traces(n=1)
  def forward(key):
    return Net().apply(variables, X, mutator.set_choices(mutator.sample_choices(key)))

  for seed in range(3):
    chex.assert_tree_all_finite(forward(jax.random.key(seed)))


def test_ten_thousand_configurations_in_one_jitted_call(mutator):
  sample = jax.jit(jax.vmap(lambda k: mutator.set_choices(mutator.sample_choices(k))))
  choices = sample(jax.random.split(jax.random.key(0), 10_000))
  assert choices["u1"].shape == (10_000,) and set(np.unique(choices["u1"]).tolist()) == {0, 1, 2, 3}


def test_grad_through_traced_widths(mutator, variables):
  def loss(params, key):
    choices = mutator.set_choices(mutator.sample_choices(key))
    return Net().apply({**variables, "params": params}, X, choices).sum()

  grads = jax.jit(jax.grad(loss))(variables["params"], jax.random.key(3))
  chex.assert_trees_all_equal_shapes(grads, variables["params"])


def test_alias_and_custom_group_by_unit_name(variables):
  same = Net(alias="stage").init(jax.random.key(0), X, None)
  mutator = jm.OneShotChannelMutator().prepare_from_supernet(same)
  assert mutator.export_fix_subnet(mutator.max_choices()) == {
    "conv1_(0, 8)_8": {"chosen": 1.0},
    "stage": {"chosen": 1.0},
  }
  with pytest.raises(SearchSpaceError, match="different search spaces"):
    jm.OneShotChannelMutator(custom_group=[["conv1_(0, 8)_8", "u2"]]).prepare_from_supernet(variables)


def test_export_and_load_round_trip(mutator):
  group_choices = {0: jnp.int32(1), 1: jnp.int32(2)}
  fix_subnet = mutator.export_fix_subnet(group_choices)
  assert fix_subnet == {"conv1_(0, 8)_8": {"chosen": 0.5}, "conv2_(0, 16)_16": {"chosen": 0.75}}
  assert {g: int(v) for g, v in mutator.load_fix_subnet(fix_subnet).items()} == {0: 1, 1: 2}
  # Module paths are accepted as well as MMRazor's names; numbers as well as ratios.
  loaded = mutator.load_fix_subnet({"u1": {"chosen": 4}, "conv2_(0, 16)_16": {"chosen": 12}})
  assert {g: int(v) for g, v in loaded.items()} == {0: 1, 1: 2}
  with pytest.raises(SubnetEntryMissingError, match="conv2_"):
    mutator.load_fix_subnet({"u1": {"chosen": 4}})
  with pytest.raises(SubnetFileError, match="unknown entries"):
    mutator.load_fix_subnet({**fix_subnet, "conv9_(0, 8)_8": {"chosen": 4}})
  with pytest.raises(SubnetFileError, match="not among the unit's candidates"):
    mutator.load_fix_subnet({"u1": {"chosen": 5}, "u2": {"chosen": 16}})
  with pytest.raises(SubnetFileError, match="outside"):
    mutator.load_fix_subnet({"u1": {"chosen": 9}, "u2": {"chosen": 16}})


def test_config_template_round_trip(mutator, variables):
  group_choices = {0: jnp.int32(0), 1: jnp.int32(2)}
  template = mutator.config_template(with_unit_init_args=True, with_channels=True, group_choices=group_choices)
  units = template["channel_unit_cfg"]["units"]
  assert template["type"] == "OneShotChannelMutator" and template["parse_cfg"] == {"type": "Predefined"}
  assert units["conv1_(0, 8)_8"]["choice"] == 0.25
  assert units["conv2_(0, 16)_16"]["channels"]["input_related"] == [
    {"name": "fc", "start": 0, "end": 16, "is_output_channel": False}
  ]
  rebuilt = jm.build(template).prepare_from_supernet(variables)
  assert rebuilt.search_groups == mutator.search_groups
  assert {g: int(v) for g, v in rebuilt.current_choices().items()} == {0: 0, 1: 2}
  assert rebuilt.config_template(with_unit_init_args=True, with_channels=True) == template
  # load_fix_subnet reads a template's units part.
  assert {g: int(v) for g, v in mutator.load_fix_subnet(template).items()} == {0: 0, 1: 2}


def test_config_errors(variables):
  with pytest.raises(ConfigKeyError, match="default_args"):
    jm.OneShotChannelMutator(channel_unit_cfg=dict(type="OneShotMutableChannelUnit", defualt_args={}))
  with pytest.raises(ConfigKeyError, match="divisr"):
    jm.OneShotChannelMutator(channel_unit_cfg=dict(type="OneShotMutableChannelUnit", default_args=dict(divisr=8)))
  with pytest.raises(ConfigTypeError, match="manages OneShotMutableChannelUnit"):
    jm.OneShotChannelMutator(channel_unit_cfg="SequentialMutableChannelUnit")
  with pytest.raises(ConfigError, match="ChannelAnalyzer' needs the model"):
    jm.ChannelMutator(parse_cfg=dict(type="ChannelAnalyzer", demo_input=(1, 8, 8, 3))).prepare_from_supernet(variables)
  with pytest.raises(ConfigError, match="unknown type"):
    jm.ChannelMutator(parse_cfg=dict(type="Tracer"))
  with pytest.raises(SearchSpaceError, match="divisor"):
    jm.OneShotChannelMutator(
      channel_unit_cfg=dict(type="OneShotMutableChannelUnit", default_args=dict(divisor=8))
    ).prepare_from_supernet(variables)
  with pytest.raises(ConfigKeyError, match="unknown unit 'conv7"):
    jm.OneShotChannelMutator(
      channel_unit_cfg=dict(type="OneShotMutableChannelUnit", units={"conv7_(0, 8)_8": {"choice": 0.5}})
    ).prepare_from_supernet(variables)
  with pytest.raises(ConfigKeyError, match="does not list"):
    jm.OneShotChannelMutator(
      channel_unit_cfg=dict(type="OneShotMutableChannelUnit", units={"u1": {"choice": 0.5}}),
      parse_cfg=dict(type="Config"),
    ).prepare_from_supernet(variables)
  with pytest.raises(SearchSpaceError, match="found no mutable of type"):
    jm.SlimmableChannelMutator().prepare_from_supernet(variables)
  with pytest.raises(NotPreparedError):
    _ = jm.OneShotChannelMutator().units
  with pytest.raises(MissingChoiceError):
    jm.OneShotChannelMutator().prepare_from_supernet(variables).set_choices({0: 1})


def test_default_args_matching_the_declared_units_are_accepted(variables):
  cfg = dict(type="OneShotMutableChannelUnit", default_args=dict(candidate_choices=list(RATIOS), choice_mode="ratio"))
  mutator = jm.OneShotChannelMutator(channel_unit_cfg=cfg).prepare_from_supernet(variables)
  assert len(mutator.units) == 2


def test_units_file(tmp_path, variables):
  path = tmp_path / "units.yaml"
  path.write_text("conv1_(0, 8)_8: {choice: 0.5}\n")
  mutator = jm.OneShotChannelMutator(channel_unit_cfg=dict(units=str(path))).prepare_from_supernet(variables)
  assert {g: int(v) for g, v in mutator.current_choices().items()} == {0: 1, 1: 3}


def test_slimmable_mutator_subnets_and_sampling():
  variables = Net(unit_type=SlimmableChannelUnit).init(jax.random.key(0), X, None)
  with pytest.raises(ConfigTypeError, match="manages SlimmableChannelUnit"):
    jm.SlimmableChannelMutator(channel_unit_cfg="OneShotMutableChannelUnit")
  mutator = jm.SlimmableChannelMutator().prepare_from_supernet(variables)
  assert len(mutator.subnets) == 4
  assert mutator.export_fix_subnet(mutator.subnets[0]) == {
    "conv1_(0, 8)_8": {"chosen": 0.25},
    "conv2_(0, 16)_16": {"chosen": 0.25},
  }
  draws = jax.vmap(mutator.sample_choices)(jax.random.split(jax.random.key(0), 64))
  np.testing.assert_array_equal(draws[0], draws[1])  # one subnet index for every unit
  assert set(np.asarray(draws[0]).tolist()) == {0, 1, 2, 3}
  assert int(mutator.sample_choices(jax.random.key(0), "min")[1]) == 0


def test_slimmable_units_with_different_candidate_counts_are_an_error():
  class Uneven(nn.Module):
    @nn.compact
    def __call__(self, x, choices):
      a = SlimmableChannelUnit(8, (4, 8), name="a")(choices)
      b = SlimmableChannelUnit(8, (2, 4, 8), name="b")(choices)
      x = dynamic.DynamicConv(8, 3, name="c1")(x, out_width=a)
      return dynamic.DynamicConv(8, 3, name="c2")(x, in_width=a, out_width=b)

  variables = Uneven().init(jax.random.key(0), X, None)
  with pytest.raises(SearchSpaceError, match="same number of candidates"):
    jm.SlimmableChannelMutator().prepare_from_supernet(variables)


def test_nas_mutator_manages_ops_values_and_channels_together():
  class Mixed(nn.Module):
    @nn.compact
    def __call__(self, x, choices):
      w = SequentialMutableChannelUnit(8, divisor=2, name="width")(choices)
      x = nn.relu(dynamic.DynamicConv(8, 3, name="conv")(x, out_width=w))
      x = jm.OneShotMutableOP({"id": jm.ops.Identity(), "relu": nn.relu}, name="op")(x, choices)
      scale = jm.OneShotMutableValue([1, 2], name="scale")(choices)
      return dynamic.DynamicDense(2, name="fc")(x.mean((1, 2)) * scale, in_width=w)

  variables = Mixed().init(jax.random.key(0), X, None)
  mutator = jm.NasMutator().prepare_from_supernet(variables)
  assert mutator.search_groups == {0: ("width",), 1: ("op",), 2: ("scale",)}
  subnet = mutator.export_fix_subnet(mutator.sample_choices(jax.random.key(0)))
  assert list(subnet) == ["conv_(0, 8)_8", "op", "scale"] and subnet["conv_(0, 8)_8"]["chosen"] % 2 == 0
  # Ordered groups (widths, values) have max/min subnets; the op group has no order.
  with pytest.raises(SearchSpaceError, match="unordered='random'"):
    mutator.min_choices()
  sandwich = jm.NasMutator(unordered="random").prepare_from_supernet(variables)
  widest = jax.vmap(lambda k: sandwich.sample_choices(k, "max"))(jax.random.split(jax.random.key(0), 32))
  assert set(np.asarray(widest[0]).tolist()) == {8} and set(np.asarray(widest[2]).tolist()) == {1}
  assert set(np.asarray(widest[1]).tolist()) == {0, 1}
  with pytest.raises(ConfigError, match="unordered"):
    jm.NasMutator(unordered="first")
  out = jax.jit(lambda k: Mixed().apply(variables, X, mutator.set_choices(mutator.sample_choices(k))))(
    jax.random.key(1)
  )
  chex.assert_shape(out, (2, 2))
  channel = jm.ChannelMutator().prepare_from_supernet(variables)
  assert [u.name for u in channel.units] == ["conv_(0, 8)_8"]


def test_scan_over_width_configurations_compiles_once(mutator, variables):
  @jax.jit
  @chex.assert_max_traces(n=1)
  def mean_logits(keys):
    def body(total, key):
      choices = mutator.set_choices(mutator.sample_choices(key))
      return total + Net().apply(variables, X, choices).mean(), None

    return jax.lax.scan(body, jnp.float32(0), keys)[0] / keys.shape[0]

  keys = jax.random.split(jax.random.key(7), 5)
  expected = np.mean(
    [float(Net().apply(variables, X, mutator.set_choices(mutator.sample_choices(k))).mean()) for k in keys]
  )
  np.testing.assert_allclose(float(mean_logits(keys)), expected, rtol=1e-5)
  mean_logits(jax.random.split(jax.random.key(8), 5))  # other widths, same program
