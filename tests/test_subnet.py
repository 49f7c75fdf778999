"""Subnet export/load and subnet files (MMRazor's ``{name: {chosen: value}}`` layout)."""

from __future__ import annotations

import json

import chex
import flax.linen as nn
import jax
import jax.numpy as jnp
import numpy as np
import pytest
import yaml
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

import jaxmutate as jm

X = jnp.ones((1, 3))


class Layer(nn.Module):
  """Stands in for ``backbone.layers.<i>``, so names have MMRazor's dotted form."""

  @nn.compact
  def __call__(self, x, choices):
    ops = {
      "shuffle_3x3": nn.Dense(3),
      "shuffle_5x5": nn.Dense(3),
      "shuffle_7x7": nn.Dense(3),
      "shuffle_xception": nn.Dense(3),
    }
    return jm.OneShotMutableOP(ops, name="0")(x, choices)


class Backbone(nn.Module):
  @nn.compact
  def __call__(self, x, choices):
    for i in range(2):
      x = Layer(name=f"layer{i}")(x, choices)
    return x


class Supernet(nn.Module):
  """Ops, an aliased pair of values, a diff op and a route."""

  @nn.compact
  def __call__(self, x, choices):
    x = Backbone(name="backbone")(x, choices)
    x = x * jm.OneShotMutableValue([1, 2, 4], alias="expand", name="e0")(choices)
    x = x * jm.OneShotMutableValue([1, 2, 4], alias="expand", name="e1")(choices)
    x = jm.DiffMutableOP({"a": nn.Dense(3), "b": nn.Dense(3)}, name="dop")(x, choices)
    return jm.DiffChoiceRoute({"e0": nn.Dense(3), "e1": nn.Dense(3), "e2": nn.Dense(3)}, num_chosen=2, name="route")(
      [x, x, x], choices
    )


@pytest.fixture(scope="module")
def mutator():
  variables = Supernet().init(jax.random.key(0), X, None)
  return jm.NasMutator().prepare_from_supernet(variables)


EXAMPLE = {
  "backbone.layer0.0": {"chosen": "shuffle_7x7"},
  "backbone.layer1.0": {"chosen": "shuffle_3x3"},
  "expand": {"chosen": 4},
  "dop": {"chosen": "b"},
  "route": {"chosen": ["e2", "e0"]},
}


def test_search_groups_and_export_keys(mutator):
  assert mutator.search_groups == {
    0: ("e0", "e1"),
    1: ("backbone.layer0.0",),
    2: ("backbone.layer1.0",),
    3: ("dop",),
    4: ("route",),
  }


def test_export_gives_plain_python_in_mmrazor_layout(mutator):
  group_choices = {0: jnp.int32(2), 1: jnp.int32(2), 2: jnp.int32(0), 3: jnp.int32(1), 4: jnp.array([2, 0], jnp.int32)}
  fix_subnet = mutator.export_fix_subnet(group_choices)
  assert fix_subnet == EXAMPLE
  assert list(fix_subnet) == ["expand", "backbone.layer0.0", "backbone.layer1.0", "dop", "route"]
  assert type(fix_subnet["expand"]["chosen"]) is int
  assert type(fix_subnet["backbone.layer0.0"]["chosen"]) is str
  assert json.loads(json.dumps(fix_subnet)) == fix_subnet
  assert yaml.safe_load(yaml.safe_dump(fix_subnet)) == fix_subnet


def test_load_is_the_inverse_of_export(mutator):
  group_choices = mutator.load_fix_subnet(EXAMPLE)
  assert mutator.export_fix_subnet(group_choices) == EXAMPLE
  chex.assert_trees_all_equal(
    group_choices,
    {0: jnp.int32(2), 1: jnp.int32(2), 2: jnp.int32(0), 3: jnp.int32(1), 4: jnp.array([2, 0], jnp.int32)},
  )


@st.composite
def group_choices(draw):
  return {
    0: jnp.int32(draw(st.integers(0, 2))),
    1: jnp.int32(draw(st.integers(0, 3))),
    2: jnp.int32(draw(st.integers(0, 3))),
    3: jnp.int32(draw(st.integers(0, 1))),
    4: jnp.asarray(draw(st.permutations([0, 1, 2]))[:2], jnp.int32),
  }


@settings(max_examples=30, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(group_choices())
def test_export_load_round_trip_over_random_choices(mutator, choices):
  fix_subnet = mutator.export_fix_subnet(choices)
  chex.assert_trees_all_equal(mutator.load_fix_subnet(fix_subnet), choices)
  assert mutator.export_fix_subnet(mutator.load_fix_subnet(fix_subnet)) == fix_subnet


@settings(max_examples=10, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(group_choices(), st.sampled_from(["subnet.yaml", "subnet.yml", "subnet.json"]))
def test_file_round_trip_over_random_choices(mutator, tmp_path_factory, choices, filename):
  path = tmp_path_factory.mktemp("subnet") / filename
  fix_subnet = mutator.export_fix_subnet(choices)
  assert jm.save_fix_subnet(fix_subnet, path) == path
  assert jm.read_fix_subnet(path) == fix_subnet
  chex.assert_trees_all_equal(mutator.load_fix_subnet(path), choices)
  chex.assert_trees_all_equal(mutator.load_fix_subnet(str(path)), choices)


def test_sampled_subnets_survive_a_yaml_round_trip(mutator, tmp_path):
  for seed in range(3):
    choices = mutator.sample_choices(jax.random.key(seed))
    path = jm.save_fix_subnet(mutator.export_fix_subnet(choices), tmp_path / f"s{seed}.yaml")
    chex.assert_trees_all_equal(mutator.load_fix_subnet(jm.read_fix_subnet(path)), choices)


def test_export_of_logits_keeps_the_strongest(mutator):
  arch = {0: jnp.int32(0), 1: jnp.int32(0), 2: jnp.int32(0), 3: jnp.array([0.1, -0.2]), 4: jnp.array([0.0, 0.5, 0.2])}
  fix_subnet = mutator.export_fix_subnet(arch)
  assert fix_subnet["dop"] == {"chosen": "a"}
  assert fix_subnet["route"] == {"chosen": ["e1", "e2"]}


def test_loading_mmrazor_style_yaml_text(mutator, tmp_path):
  text = """\
backbone.layer0.0:
  chosen: shuffle_7x7
backbone.layer1.0: {chosen: shuffle_xception}
expand:
  chosen: 2
dop:
  chosen: a
route:
  chosen:
  - e1
  - e0
"""
  path = tmp_path / "mmrazor_subnet.yaml"
  path.write_text(text)
  group_choices = mutator.load_fix_subnet(path)
  assert int(group_choices[0]) == 1
  assert int(group_choices[1]) == 2
  assert int(group_choices[2]) == 3
  assert int(group_choices[3]) == 0
  assert np.asarray(group_choices[4]).tolist() == [1, 0]
  choices = mutator.set_choices(group_choices)
  assert int(choices["e0"]) == int(choices["e1"]) == 1


def test_mmrazor_layers_style_key(tmp_path, key):
  class Layers(nn.Module):
    @nn.compact
    def __call__(self, x, choices):
      ops = {"shuffle_3x3": nn.Dense(3), "shuffle_7x7": nn.Dense(3)}
      return jm.OneShotMutableOP(ops, name="0")(x, choices)

  class Net(nn.Module):
    @nn.compact
    def __call__(self, x, choices):
      return Layers(name="0")(x, choices)

  class Root(nn.Module):
    @nn.compact
    def __call__(self, x, choices):
      return Net(name="layers")(x, choices)

  class Backbone(nn.Module):
    @nn.compact
    def __call__(self, x, choices):
      return Root(name="backbone")(x, choices)

  variables = Backbone().init(key, X, None)
  mutator = jm.OneShotModuleMutator().prepare_from_supernet(variables)
  assert mutator.search_groups == {0: ("backbone.layers.0.0",)}
  path = tmp_path / "subnet.yaml"
  path.write_text("backbone.layers.0.0: {chosen: shuffle_7x7}\n")
  assert {k: int(v) for k, v in mutator.load_fix_subnet(path).items()} == {0: 1}


# Errors ------------------------------------------------------------------------


def test_missing_entry_raises_key_error_naming_it(mutator):
  partial = {k: v for k, v in EXAMPLE.items() if k != "backbone.layer1.0"}
  with pytest.raises(KeyError, match="backbone.layer1.0"):
    mutator.load_fix_subnet(partial)


@pytest.mark.parametrize("bad", [["backbone.layer0.0"], 3, None, ("a", "b")])
def test_non_mapping_raises_type_error(mutator, bad):
  with pytest.raises(TypeError, match="mapping"):
    mutator.load_fix_subnet(bad)


def test_a_string_is_a_path(mutator, tmp_path):
  with pytest.raises(FileNotFoundError, match="missing.yaml"):
    mutator.load_fix_subnet(str(tmp_path / "missing.yaml"))


@pytest.mark.parametrize("entry", ["shuffle_7x7", {"choice": "shuffle_7x7"}, ["shuffle_7x7"]])
def test_entry_that_is_not_a_chosen_mapping_raises_type_error(mutator, entry):
  with pytest.raises(TypeError, match="'backbone.layer0.0'.*chosen"):
    mutator.load_fix_subnet({**EXAMPLE, "backbone.layer0.0": entry})


@pytest.mark.parametrize(
  "key, chosen",
  [
    ("backbone.layer0.0", "shuffle_9x9"),
    ("backbone.layer0.0", 0),
    ("expand", 3),
    ("expand", "4"),
    ("dop", "c"),
    ("route", ["e0"]),
    ("route", ["e0", "e0"]),
    ("route", ["e0", "e9"]),
    ("route", "e0"),
  ],
)
def test_unknown_value_raises_value_error_naming_the_entry(mutator, key, chosen):
  with pytest.raises(ValueError, match=f"'{key}'"):
    mutator.load_fix_subnet({**EXAMPLE, key: {"chosen": chosen}})


def test_extra_keys_raise_value_error_naming_them(mutator):
  with pytest.raises(ValueError, match="'backbone.layer9.0'"):
    mutator.load_fix_subnet({**EXAMPLE, "backbone.layer9.0": {"chosen": "shuffle_7x7"}})
  # A member's own name is not a key when the group exports under its alias.
  with pytest.raises(ValueError, match="'e0'"):
    mutator.load_fix_subnet({**EXAMPLE, "e0": {"chosen": 4}})


def test_export_rejects_traced_or_incomplete_choices(mutator):
  choices = mutator.load_fix_subnet(EXAMPLE)
  with pytest.raises(TypeError, match="concrete"):
    jax.jit(mutator.export_fix_subnet)(choices)
  with pytest.raises(KeyError, match="group 4"):
    mutator.export_fix_subnet({g: c for g, c in choices.items() if g != 4})


def test_save_fix_subnet_writes_yaml_or_json(tmp_path):
  yaml_path = jm.save_fix_subnet(EXAMPLE, tmp_path / "deep" / "dir" / "subnet.yaml")
  assert yaml.safe_load(yaml_path.read_text()) == EXAMPLE
  json_path = jm.save_fix_subnet(EXAMPLE, tmp_path / "subnet.json")
  assert json.loads(json_path.read_text()) == EXAMPLE
  # YAML keeps the export order, so files diff cleanly.
  assert list(yaml.safe_load(yaml_path.read_text())) == list(EXAMPLE)


@pytest.mark.parametrize("bad", [[1, 2], {"a": "shuffle"}, {"a": {"choice": 1}}, {3: {"chosen": 1}}])
def test_save_fix_subnet_rejects_other_layouts(bad, tmp_path):
  with pytest.raises(TypeError):
    jm.save_fix_subnet(bad, tmp_path / "bad.yaml")
  assert not (tmp_path / "bad.yaml").exists()


def test_read_fix_subnet_errors(tmp_path):
  with pytest.raises(FileNotFoundError, match="nope.yaml"):
    jm.read_fix_subnet(tmp_path / "nope.yaml")
  (tmp_path / "list.yaml").write_text("- a\n- b\n")
  with pytest.raises(TypeError, match="mapping"):
    jm.read_fix_subnet(tmp_path / "list.yaml")
  (tmp_path / "flat.yaml").write_text("a: shuffle_7x7\n")  # the plain layout of older MMRazor files
  assert jm.read_fix_subnet(tmp_path / "flat.yaml") == {"a": {"chosen": "shuffle_7x7"}}
  (tmp_path / "mixed.yaml").write_text("a: shuffle_7x7\nb: {chosen: shuffle_3x3}\n")
  with pytest.raises(jm.errors.SubnetFileTypeError, match=r"mixed\.yaml.*'a'.*chosen.*never a mix"):
    jm.read_fix_subnet(tmp_path / "mixed.yaml")
  (tmp_path / "broken.yaml").write_text("a: [unclosed\n")
  with pytest.raises(jm.errors.SubnetFileError, match=r"broken\.yaml.*not valid YAML"):
    jm.read_fix_subnet(tmp_path / "broken.yaml")


# Export keys over grouping layouts -------------------------------------------------


class DocNet(nn.Module):
  """MMRazor's docstring example: op1, op2, op3 with aliases a1, a1, a2."""

  @nn.compact
  def __call__(self, x, choices):
    for name, alias in (("op1", "a1"), ("op2", "a1"), ("op3", "a2")):
      x = jm.OneShotMutableOP({"a": nn.Dense(3), "b": nn.Dense(3)}, alias=alias, name=name)(x, choices)
    return x


@pytest.fixture(scope="module")
def doc_variables():
  return DocNet().init(jax.random.key(0), X, None)


@pytest.mark.parametrize(
  "custom_group, group_choices, expected",
  [
    (None, {0: 1, 1: 0}, {"a1": {"chosen": "b"}, "a2": {"chosen": "a"}}),
    ([["a1", "a2"]], {0: 1}, {"a1": {"chosen": "b"}, "a2": {"chosen": "b"}}),
    # An alias split over groups cannot be a key: its mutables are exported by name.
    ([["a2"], ["op2"]], {0: 0, 1: 1, 2: 0}, {"a2": {"chosen": "a"}, "op2": {"chosen": "b"}, "op1": {"chosen": "a"}}),
    ([["op1", "op3"]], {0: 1, 1: 0}, {"op1": {"chosen": "b"}, "a2": {"chosen": "b"}, "op2": {"chosen": "a"}}),
  ],
)
def test_export_keys_are_unique_and_round_trip(doc_variables, custom_group, group_choices, expected):
  mutator = jm.OneShotModuleMutator(custom_group=custom_group).prepare_from_supernet(doc_variables)
  fix_subnet = mutator.export_fix_subnet(group_choices)
  assert fix_subnet == expected
  loaded = mutator.load_fix_subnet(fix_subnet)
  assert {g: int(c) for g, c in loaded.items()} == group_choices


def test_entries_of_one_group_must_agree(doc_variables):
  mutator = jm.OneShotModuleMutator(custom_group=[["a1", "a2"]]).prepare_from_supernet(doc_variables)
  with pytest.raises(ValueError, match="'a1' and 'a2'.*disagree"):
    mutator.load_fix_subnet({"a1": {"chosen": "a"}, "a2": {"chosen": "b"}})


@st.composite
def layouts_and_choices(draw):
  """Random aliased mutables, a valid custom_group over them and one choice per group."""
  num = draw(st.integers(1, 6))
  aliases = draw(st.lists(st.sampled_from([None, "x", "y"]), min_size=num, max_size=num))
  names = [f"m{i}" for i in range(num)]
  members: dict[str, list[str]] = {}
  for name, alias in zip(names, aliases):
    if alias is not None:
      members.setdefault(alias, []).append(name)
  units = list(members) + names
  chosen = draw(st.lists(st.sampled_from(units), unique=True, max_size=4))
  used = {u for u in chosen if u in members}
  chosen = [u for u in chosen if u in members or dict(zip(names, aliases))[u] not in used]
  custom = [[u] for u in chosen]
  if len(custom) > 1 and draw(st.booleans()):
    custom = [custom[0] + custom[1], *custom[2:]]
  seed = draw(st.integers(0, 2**16))
  return list(zip(names, aliases)), custom, seed


@settings(max_examples=60, deadline=None)
@given(layouts_and_choices())
def test_export_load_round_trip_over_random_layouts(layout):
  from jaxmutate.mutables import MutableSpec
  from jaxmutate.mutators import build_search_groups
  from jaxmutate.mutators._grouping import normalize_custom_group
  from jaxmutate.spaces import IndexSpace

  named_aliases, custom, seed = layout
  specs = tuple(
    (name, MutableSpec(jm.OneShotMutableOP, alias, IndexSpace(("a", "b", "c")), order=i))
    for i, (name, alias) in enumerate(named_aliases)
  )
  custom_group = normalize_custom_group(custom or None)
  mutator = jm.OneShotModuleMutator(custom_group=custom_group).replace(
    specs=specs, groups=build_search_groups(specs, custom_group)
  )
  rng = np.random.default_rng(seed)
  group_choices = {g: jnp.int32(rng.integers(0, 3)) for g in mutator.search_groups}
  fix_subnet = mutator.export_fix_subnet(group_choices)
  # Every mutable is covered by exactly one key, and keys never collide.
  assert sum(len(mutator._export_keys(g)) for g in mutator.search_groups) == len(fix_subnet)
  chex.assert_trees_all_equal(mutator.load_fix_subnet(fix_subnet), group_choices)
  # The choice each mutable gets survives the trip too.
  chex.assert_trees_all_equal(
    mutator.set_choices(mutator.load_fix_subnet(fix_subnet)), mutator.set_choices(group_choices)
  )


def test_mmrazor_darts_op_choice_as_one_element_list(key):
  op = jm.DiffMutableOP({"sep_conv_3x3": nn.Dense(2), "skip_connect": nn.Dense(2)}, alias="normal_n2_p0")
  variables = op.init(key, jnp.ones((1, 2)), None)
  mutator = jm.DiffModuleMutator().prepare_from_supernet(variables)
  loaded = mutator.load_fix_subnet({"normal_n2_p0": {"chosen": ["skip_connect"]}})
  assert int(loaded[0]) == 1
  with pytest.raises(ValueError, match="max_pool"):
    mutator.load_fix_subnet({"normal_n2_p0": {"chosen": ["max_pool_3x3"]}})


def test_load_fix_subnet_strips_prefixes_as_mmrazor_does():
  import jax
  import jax.numpy as jnp

  import jaxmutate as jm

  net = jm.SearchableMLP(num_classes=2, width=4, num_layers=2)
  mutator = jm.OneShotModuleMutator().prepare_from_supernet(net.init(jax.random.key(0), jnp.ones((1, 3)), None))
  names = mutator.group_space(0).names
  plain = {"layers.0": {"chosen": names[1]}, "layers.1": {"chosen": names[0]}}
  expected = {g: int(v) for g, v in mutator.load_fix_subnet(plain).items()}
  backbone = {f"backbone.{k}": v for k, v in plain.items()}
  assert {g: int(v) for g, v in mutator.load_fix_subnet(backbone).items()} == expected  # MMRazor's SPOS files
  # A real prefix, not lstrip's character set: "model.layers.0" loses "model." only.
  model = {f"model.{k}": v for k, v in plain.items()}
  assert {g: int(v) for g, v in mutator.load_fix_subnet(model, prefix="model.").items()} == expected
  short = {k.removeprefix("layers."): v for k, v in plain.items()}
  assert {g: int(v) for g, v in mutator.load_fix_subnet(short, extra_prefix="layers.").items()} == expected
  with pytest.raises(jm.errors.SubnetFileError, match="unknown entries"):
    mutator.load_fix_subnet({**backbone, "backbone.head": {"chosen": 1}})
