"""Channel units as Flax mutables: specs, widths, init_args, config templates, names, L1 order, slimmable subnets."""

from __future__ import annotations

import inspect
import json

import flax.linen as nn
import jax
import jax.numpy as jnp
import numpy as np
import pytest

import jaxmutate as jm
from jaxmutate import dynamic
from jaxmutate.channels import (
  Channel,
  ChannelSpace,
  L1MutableChannelUnit,
  MutableChannelUnit,
  MutableWidth,
  OneShotMutableChannelUnit,
  SequentialMutableChannelUnit,
  SlimmableChannelUnit,
  UnitChannels,
  channel_unit_name,
  l1_channel_order,
  slimmable_subnets,
)
from jaxmutate.errors import (
  ChoiceError,
  ConfigError,
  ConfigKeyError,
  ConfigTypeError,
  MissingChoiceError,
  SearchSpaceError,
)

UNIT_TYPES = [SequentialMutableChannelUnit, OneShotMutableChannelUnit, SlimmableChannelUnit, L1MutableChannelUnit]


class Supernet(nn.Module):
  """Two units: a one-shot stem and a sequential hidden width, with dynamic layers between."""

  @nn.compact
  def __call__(self, x, choices):
    stem = OneShotMutableChannelUnit(16, (0.25, 0.5, 1.0), name="stem")(choices)
    hidden = SequentialMutableChannelUnit(24, divisor=8, name="hidden")(choices)
    x = dynamic.DynamicConv(16, 3, name="conv1")(x, out_width=stem)
    x = nn.relu(x)
    x = dynamic.DynamicConv(24, 3, name="conv2")(x, in_width=stem, out_width=hidden)
    return dynamic.DynamicDense(10, name="head")(x.mean((1, 2)), in_width=hidden), (stem, hidden)


@pytest.fixture(scope="module")
def supernet():
  net, x = Supernet(), jnp.ones((2, 8, 8, 3))
  return net, x, net.init(jax.random.key(0), x, None)


def test_signatures_follow_mmrazor():
  def params(cls):
    return [p for p in inspect.signature(cls).parameters if p not in ("parent", "name")]

  assert params(SequentialMutableChannelUnit) == [
    "num_channels",
    "choice_mode",
    "divisor",
    "min_value",
    "min_ratio",
    "alias",
  ]
  assert params(OneShotMutableChannelUnit)[:6] == [
    "num_channels",
    "candidate_choices",
    "choice_mode",
    "divisor",
    "min_value",
    "min_ratio",
  ]
  defaults = {k: v.default for k, v in inspect.signature(OneShotMutableChannelUnit).parameters.items()}
  assert defaults["candidate_choices"] == (0.5, 1.0) and defaults["choice_mode"] == "ratio"
  assert defaults["divisor"] == 1 and defaults["min_value"] == 1 and defaults["min_ratio"] == 0.9
  seq = {k: v.default for k, v in inspect.signature(SequentialMutableChannelUnit).parameters.items()}
  assert seq["choice_mode"] == "number" and seq["alias"] is None
  assert params(SlimmableChannelUnit)[:2] == ["num_channels", "candidate_choices"]
  for cls in UNIT_TYPES:
    assert issubclass(cls, MutableChannelUnit) and issubclass(cls, jm.BaseMutable)
    assert jm.MODELS.get(cls.__name__) is cls and jm.MODELS.get(f"jaxmutate.{cls.__name__}") is cls


def test_specs_are_recorded(supernet):
  _, _, variables = supernet
  specs = variables[jm.MUTABLES_COLLECTION]
  stem, hidden = specs["stem"]["spec"], specs["hidden"]["spec"]
  assert stem.mutable_type is OneShotMutableChannelUnit and stem.space == ChannelSpace(16, (4, 8, 16), "ratio")
  assert hidden.space == ChannelSpace(24, None, "number", divisor=8)
  assert stem.order < hidden.order and jax.tree.leaves(specs) == []


def test_init_gives_the_full_width(supernet):
  net, x, variables = supernet
  (_, (stem, hidden)) = net.init_with_output(jax.random.key(0), x, None)[0]
  assert isinstance(stem, MutableWidth) and isinstance(stem, dynamic.Width)
  assert (stem.value, stem.num_channels, stem.candidates, stem.unit, stem.sources) == (
    16,
    16,
    (4, 8, 16),
    "stem",
    ("stem",),
  )
  assert (hidden.value, hidden.candidates) == (24, (8, 16, 24))


def test_concrete_choices_stay_concrete(supernet):
  net, x, variables = supernet
  _, (stem, hidden) = net.apply(variables, x, {"stem": 1, "hidden": 12})
  assert stem.value == 8 and isinstance(stem.value, int)
  assert hidden.value == 16 and isinstance(hidden.value, int)  # 12 made divisible by 8
  # Under jit, a concrete (NumPy) choice is still concrete: the layers slice statically.
  kept = jax.jit(lambda: net.apply(variables, x, {"stem": np.int32(0), "hidden": np.int32(24)})[1][0].value)()
  assert int(kept) == 4


def test_traced_choices_under_jit_and_vmap(supernet, compile_log):
  net, x, variables = supernet
  run = jax.jit(jax.vmap(lambda c: net.apply(variables, x, c)))
  choices = {"stem": jnp.array([0, 1, 2]), "hidden": jnp.array([1, 12, 24])}
  logits, (stem, hidden) = run(choices)
  assert logits.shape == (3, 2, 10)
  assert stem.value.tolist() == [4, 8, 16] and hidden.value.tolist() == [8, 16, 24]
  # Every traced subnet equals the same subnet run with concrete choices.
  for i in range(3):
    concrete = net.apply(variables, x, {k: int(v[i]) for k, v in choices.items()})[0]
    np.testing.assert_allclose(logits[i], concrete, rtol=1e-5, atol=1e-5)
  with compile_log() as log:
    run({"stem": jnp.array([2, 0, 1]), "hidden": jnp.array([5, 7, 9])})
  assert log.names == []  # other widths: no recompile


def test_ten_thousand_widths_in_one_jitted_vmapped_call(key):
  class Units(nn.Module):
    @nn.compact
    def __call__(self, choices):
      a = OneShotMutableChannelUnit(96, [i / 12 for i in range(2, 13)], divisor=8, name="a")(choices)
      b = SequentialMutableChannelUnit(64, divisor=8, name="b")(choices)
      return a.value, b.value, (a * 2).value, (b // 4).value

  units = Units()
  variables = units.init(key, None)
  specs = {name: entry["spec"].space for name, entry in variables[jm.MUTABLES_COLLECTION].items()}

  def sample_and_run(k):
    ka, kb = jax.random.split(k)
    return units.apply(variables, {"a": specs["a"].sample(ka), "b": specs["b"].sample(kb)})

  a, b, a2, b4 = jax.jit(jax.vmap(sample_and_run))(jax.random.split(key, 10_000))
  assert a.shape == (10_000,)
  assert set(np.asarray(a).tolist()) == set(range(16, 97, 8))
  assert set(np.asarray(b).tolist()) <= set(range(8, 65, 8)) and len(set(np.asarray(b).tolist())) == 8
  np.testing.assert_array_equal(a2, 2 * np.asarray(a))
  np.testing.assert_array_equal(b4, [jm.channels.make_divisible(int(v) // 4, 8) for v in np.asarray(b)])


def test_missing_and_bad_choices(supernet):
  net, x, variables = supernet
  with pytest.raises(MissingChoiceError, match="'hidden'"):
    net.apply(variables, x, {"stem": 0})
  with pytest.raises(ChoiceError, match=r"'hidden': width 25 is outside \[1, num_channels=24\]"):
    net.apply(variables, x, {"stem": 0, "hidden": 25})
  with pytest.raises(ChoiceError, match="out of range"):
    net.apply(variables, x, {"stem": 3, "hidden": 8})


def test_traced_choices_are_clipped(supernet):
  net, x, variables = supernet
  _, (stem, hidden) = jax.jit(lambda c: net.apply(variables, x, c))({"stem": jnp.int32(7), "hidden": jnp.int32(99)})
  assert int(stem.value) == 16 and int(hidden.value) == 24


def test_one_shot_candidates_are_normalised_like_mmrazor():
  assert OneShotMutableChannelUnit(48, [20, 30, 40], choice_mode="number", divisor=8).candidate_choices == (24, 32, 40)
  assert OneShotMutableChannelUnit(48, [0.3, 0.5, 0.7], divisor=8).candidate_choices == (1 / 3, 0.5, 2 / 3)
  assert OneShotMutableChannelUnit(48, ()).candidate_choices == (1.0,)
  assert SlimmableChannelUnit(48).candidate_choices == (48,)
  assert OneShotMutableChannelUnit(48).space == ChannelSpace(48, (24, 48), "ratio")
  assert hash(OneShotMutableChannelUnit(48, [0.5, 1.0])) == hash(OneShotMutableChannelUnit(48, (0.5, 1.0)))


@pytest.mark.parametrize(
  "build, error, match",
  [
    (lambda: OneShotMutableChannelUnit(48, (0, 10), "number", name="u"), SearchSpaceError, r"'u'.*outside \(0, num"),
    (lambda: OneShotMutableChannelUnit(48, (64,), "number", name="u"), SearchSpaceError, "outside"),
    (lambda: OneShotMutableChannelUnit(48, (0.5, 1.2), name="u"), SearchSpaceError, r"'u'.*outside \(0, 1\]"),
    (lambda: OneShotMutableChannelUnit(48, (24,), name="u"), ConfigTypeError, "ratio mode"),
    (lambda: OneShotMutableChannelUnit(48, (0.5,), "number", name="u"), ConfigTypeError, "number mode"),
    (lambda: SequentialMutableChannelUnit(48, "percent", name="u"), ConfigError, "choice_mode"),
    (lambda: SequentialMutableChannelUnit(48, divisor=0, name="u"), ConfigError, "divisor"),
    (lambda: SequentialMutableChannelUnit(0, name="u"), SearchSpaceError, "num_channels"),
  ],
)
def test_bad_arguments_fail_at_construction(build, error, match):
  with pytest.raises(error, match=match):
    build()


@pytest.mark.parametrize(
  "unit",
  [
    SequentialMutableChannelUnit(48, choice_mode="ratio", divisor=8),
    OneShotMutableChannelUnit(48, (0.3, 0.5, 0.7), divisor=8),
    OneShotMutableChannelUnit(48, (20, 30, 40), choice_mode="number", divisor=8, min_value=16),
    SlimmableChannelUnit(32, (8, 16, 32)),
    L1MutableChannelUnit(16, divisor=4),
  ],
  ids=lambda u: type(u).__name__,
)
def test_config_template_round_trips_through_build(unit):
  template = unit.config_template(with_init_args=True)
  assert list(template) == ["init_args", "choice"]
  assert json.loads(json.dumps(template)) == template  # plain Python
  rebuilt = jm.build(dict(type=type(unit).__name__, **template["init_args"]))
  assert rebuilt == unit and rebuilt.space == unit.space and rebuilt.init_args == unit.init_args
  # The choice read back is the choice written.
  space = unit.space
  for choice in (space.min(), space.max()):
    written = unit.config_template(choice=choice)["choice"]
    assert int(space.load(written, "u")) == int(choice)


def test_init_args_are_mmrazors():
  assert SequentialMutableChannelUnit(48, divisor=8).init_args == dict(
    num_channels=48, choice_mode="number", divisor=8, min_value=1, min_ratio=0.9
  )
  assert list(OneShotMutableChannelUnit(48).init_args) == [
    "num_channels",
    "divisor",
    "min_value",
    "min_ratio",
    "candidate_choices",
    "choice_mode",
  ]
  assert OneShotMutableChannelUnit(48, (0.5, 1.0)).config_template(with_init_args=True) == {
    "init_args": dict(
      num_channels=48, divisor=1, min_value=1, min_ratio=0.9, candidate_choices=[0.5, 1.0], choice_mode="ratio"
    ),
    "choice": 1.0,
  }


def test_config_template_with_channels():
  unit = OneShotMutableChannelUnit(8, (4, 8), choice_mode="number")
  channels = UnitChannels((Channel("conv1", 0, 8),), (Channel("bn1", 0, 8), Channel("conv2", 0, 8)))
  template = unit.config_template(with_init_args=True, with_channels=True, choice=0, channels=channels)
  assert list(template) == ["init_args", "channels", "choice"] and template["choice"] == 4
  assert template["channels"] == {
    "input_related": [
      {"name": "bn1", "start": 0, "end": 8, "is_output_channel": False},
      {"name": "conv2", "start": 0, "end": 8, "is_output_channel": False},
    ],
    "output_related": [{"name": "conv1", "start": 0, "end": 8, "is_output_channel": True}],
  }
  assert UnitChannels.from_config(template["channels"], 8) == channels
  assert unit.config_template(with_channels=True, channels=template["channels"])["channels"] == template["channels"]
  with pytest.raises(ConfigKeyError, match="needs its channels"):
    unit.config_template(with_channels=True)
  with pytest.raises(SearchSpaceError, match="'conv2'.*spans 6 channels"):
    unit.config_template(
      with_channels=True, channels=UnitChannels((Channel("conv1", 0, 8),), (Channel("conv2", 0, 6),))
    )


def test_unit_names_are_mmrazors():
  assert channel_unit_name("backbone.conv1.conv", 0, 48, 48) == "backbone.conv1.conv_(0, 48)_48"
  channels = UnitChannels((Channel("backbone.layer1.0.conv1", 0, 64),), (Channel("backbone.layer1.0.bn1", 0, 64),))
  assert channels.unit_name(64) == "backbone.layer1.0.conv1_(0, 64)_64"
  assert UnitChannels((), (Channel("fc", 8, 16),)).unit_name(8) == "fc_(8, 16)_8"
  assert UnitChannels().unit_name(8) == "unitx_8"
  assert Channel("conv", 16, 32).index == (16, 32)
  # A consumer spanning a multiple of the unit's width (MMRazor's expanded channels) is accepted.
  assert UnitChannels((Channel("conv", 0, 8),), (Channel("fc", 0, 32),)).check(8)


@pytest.mark.parametrize(
  "config, error",
  [
    ({"start": 0, "end": 8}, ConfigKeyError),
    ({"name": "conv", "start": 8, "end": 8}, SearchSpaceError),
    ({"name": "conv", "start": -1, "end": 8}, SearchSpaceError),
    ({"name": 3, "end": 8}, ConfigTypeError),
    ({"name": "conv", "end": 8.0}, ConfigTypeError),
    ("conv", ConfigTypeError),
  ],
)
def test_channel_config_errors(config, error):
  with pytest.raises(error):
    Channel.from_config(config, num_channels=8)


def test_unit_channels_config_errors():
  with pytest.raises(ConfigKeyError, match="unknown keys"):
    UnitChannels.from_config({"inputs": []})
  with pytest.raises(ConfigKeyError, match="no 'end'"):
    UnitChannels.from_config({"output_related": [{"name": "conv"}]})
  with pytest.raises(ConfigTypeError):
    UnitChannels.from_config([])


def test_l1_channel_order_is_mmrazors_rule():
  kernel = jnp.array([[[[1.0, -4.0, 2.0, 0.0]], [[1.0, 0.0, 2.0, 0.0]]]])  # (1, 2, 1, 4): mean |w| (1, 2, 2, 0)
  assert l1_channel_order(kernel).tolist() == [1, 2, 0, 3]  # a tie keeps the lower channel first
  dense = jnp.array([[0.0, 0.0, 0.0, 9.0]])
  assert l1_channel_order(kernel, dense).tolist() == [3, 1, 2, 0]  # averages of (0.5, 1, 1, 4.5)
  assert l1_channel_order(jnp.arange(8.0).reshape(4, 2), channel_axis=0).tolist() == [3, 2, 1, 0]  # (out, in)
  assert jax.jit(l1_channel_order)(kernel).tolist() == [1, 2, 0, 3]
  with pytest.raises(SearchSpaceError, match="different numbers of channels"):
    l1_channel_order(kernel, jnp.ones((2, 3)))
  with pytest.raises(SearchSpaceError, match="at least one"):
    l1_channel_order()


def test_l1_unit_keeps_the_top_channels_in_a_supernet(key):
  class Net(nn.Module):
    @nn.compact
    def __call__(self, x, choices):
      conv = dynamic.DynamicConv(8, 1, use_bias=False, name="conv")
      order = None if self.is_initializing() else l1_channel_order(conv.variables["params"]["kernel"])
      width = L1MutableChannelUnit(8, name="unit")(choices, order=order)
      return conv(x, out_width=width), width

  net, x = Net(), jnp.ones((1, 2, 2, 3))
  variables = net.init(key, x, None)
  kernel = variables["params"]["conv"]["kernel"]
  top = np.argsort(-np.abs(np.asarray(kernel)).mean((0, 1, 2)), kind="stable")[:3]
  y, width = net.apply(variables, x, {"unit": 3})
  assert sorted(np.flatnonzero(np.asarray(width.mask())).tolist()) == sorted(top.tolist())
  kept = np.flatnonzero(np.abs(np.asarray(y)).sum((0, 1, 2)) > 0)
  assert set(kept.tolist()) <= set(top.tolist())
  y_traced, _ = jax.jit(lambda c: net.apply(variables, x, c))({"unit": jnp.int32(3)})
  np.testing.assert_allclose(y_traced, y, rtol=1e-6, atol=1e-6)
  with pytest.raises(SearchSpaceError, match="permutation of its 8 channels"):
    L1MutableChannelUnit(8).apply({}, {"": 3}, order=jnp.arange(4))


def test_slimmable_subnets():
  spaces = {"a": ChannelSpace(8, (2, 4, 8)), "b": ChannelSpace(16, (4, 8, 16))}
  subnets = slimmable_subnets(spaces)
  assert [{k: int(v) for k, v in s.items()} for s in subnets] == [{"a": i, "b": i} for i in range(3)]
  with pytest.raises(SearchSpaceError, match=r"same number of candidates.*'b': 3, 'c': 2"):
    slimmable_subnets({**spaces, "c": ChannelSpace(8, (4, 8))})
  with pytest.raises(SearchSpaceError, match="sequential"):
    slimmable_subnets({"s": ChannelSpace(8)})
  with pytest.raises(ConfigTypeError):
    slimmable_subnets({"x": jm.spaces.ValueSpace((1, 2))})


def test_alias_is_recorded(key):
  class Net(nn.Module):
    @nn.compact
    def __call__(self, choices):
      return [OneShotMutableChannelUnit(8, alias="stage1", name=f"u{i}")(choices) for i in range(2)]

  specs = Net().init(key, None)[jm.MUTABLES_COLLECTION]
  assert specs["u0"]["spec"].alias == specs["u1"]["spec"].alias == "stage1"
  assert specs["u0"]["spec"].space == specs["u1"]["spec"].space
