"""Search groups: custom groups, then aliases, then singletons (MMRazor's three passes)."""

from __future__ import annotations

import flax.linen as nn
import jax.numpy as jnp
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

import jaxmutate as jm
from jaxmutate.mutables import MutableSpec
from jaxmutate.mutators import build_search_groups
from jaxmutate.mutators._grouping import collect_specs, normalize_custom_group
from jaxmutate.spaces import IndexSpace, LogitSpace, ValueSpace

X = jnp.ones((1, 3))


def _spec(alias=None, names=("a", "b"), order=0, mutable_type=jm.OneShotMutableOP, probs=None) -> MutableSpec:
  if issubclass(mutable_type, jm.MutableValue):
    space = ValueSpace(names, ordered=issubclass(mutable_type, jm.OneShotMutableValue))
  elif issubclass(mutable_type, jm.DiffMutableModule):
    space = LogitSpace(names)
  else:
    space = IndexSpace(names, probs)
  return MutableSpec(mutable_type=mutable_type, alias=alias, space=space, order=order)


def _specs(aliases: dict[str, str | None]) -> list[tuple[str, MutableSpec]]:
  return [(name, _spec(alias, order=i)) for i, (name, alias) in enumerate(aliases.items())]


DOC_SPECS = _specs({"op1": "a1", "op2": "a1", "op3": "a2"})


def _groups(specs, custom_group):
  return dict(enumerate(build_search_groups(specs, normalize_custom_group(custom_group))))


# MMRazor's docstring example ---------------------------------------------------


@pytest.mark.parametrize(
  "custom_group, expected",
  [
    ([["a1"], ["a2"]], {0: ("op1", "op2"), 1: ("op3",)}),
    ([["op1", "op2"], ["op3"]], {0: ("op1", "op2"), 1: ("op3",)}),
    ([["a2"], ["op2"]], {0: ("op3",), 1: ("op2",), 2: ("op1",)}),
    (None, {0: ("op1", "op2"), 1: ("op3",)}),
    ([], {0: ("op1", "op2"), 1: ("op3",)}),
    ([["a2", "a1"]], {0: ("op3", "op1", "op2")}),
  ],
)
def test_mmrazor_docstring_example(custom_group, expected):
  assert _groups(DOC_SPECS, custom_group) == expected


class DocNet(nn.Module):
  """The docstring example as a real supernet: op1, op2, op3 with aliases a1, a1, a2."""

  @nn.compact
  def __call__(self, x, choices):
    for name, alias in (("op1", "a1"), ("op2", "a1"), ("op3", "a2")):
      x = jm.OneShotMutableOP({"a": nn.Dense(3), "b": nn.Dense(3)}, alias=alias, name=name)(x, choices)
    return x


@pytest.mark.parametrize(
  "custom_group, expected",
  [
    ([["a1"], ["a2"]], {0: ("op1", "op2"), 1: ("op3",)}),
    ([["op1", "op2"], ["op3"]], {0: ("op1", "op2"), 1: ("op3",)}),
    ([["a2"], ["op2"]], {0: ("op3",), 1: ("op2",), 2: ("op1",)}),
  ],
)
def test_mmrazor_docstring_example_through_a_supernet(custom_group, expected, key):
  variables = DocNet().init(key, X, None)
  for mutator_cls in (jm.OneShotModuleMutator, jm.NasMutator):
    mutator = mutator_cls(custom_group=custom_group).prepare_from_supernet(variables)
    assert mutator.search_groups == expected


def test_singletons_follow_module_definition_order_not_name_order(key):
  class Net(nn.Module):
    @nn.compact
    def __call__(self, x, choices):
      for name in ("zeta", "alpha", "mid"):
        x = jm.OneShotMutableOP({"a": nn.Dense(3), "b": nn.Dense(3)}, name=name)(x, choices)
      return x

  mutator = jm.OneShotModuleMutator().prepare_from_supernet(Net().init(key, X, None))
  assert mutator.search_groups == {0: ("zeta",), 1: ("alpha",), 2: ("mid",)}


def test_alias_groups_come_before_singletons_in_first_appearance_order():
  specs = _specs({"s0": None, "b0": "b", "s1": None, "a0": "a", "b1": "b", "a1": "a"})
  assert _groups(specs, None) == {0: ("b0", "b1"), 1: ("a0", "a1"), 2: ("s0",), 3: ("s1",)}


def test_custom_group_of_names_splits_an_alias_and_the_rest_stays_together():
  specs = _specs({"m0": "x", "m1": "x", "m2": "x"})
  assert _groups(specs, [["m1"]]) == {0: ("m1",), 1: ("m0", "m2")}


def test_alias_pass_is_skipped_when_all_members_are_grouped():
  specs = _specs({"m0": "x", "m1": "x", "s": None})
  assert _groups(specs, [["m0", "m1"]]) == {0: ("m0", "m1"), 1: ("s",)}


# Errors -----------------------------------------------------------------------


def test_unknown_key_raises_value_error_naming_it():
  with pytest.raises(ValueError, match="'op9'.*matches no mutable name or alias") as info:
    _groups(DOC_SPECS, [["op1"], ["op9"]])
  assert "custom_group[1]" in str(info.value)
  assert "op1" in str(info.value) and "a1" in str(info.value)  # it lists what exists


@pytest.mark.parametrize(
  "custom_group, key",
  [
    ([["op1"], ["op1"]], "op1"),
    ([["op3", "op3"]], "op3"),
    ([["a1"], ["a1"]], "op1"),
    ([["a1", "a1"]], "op1"),
  ],
)
def test_a_mutable_in_two_groups_raises_value_error_naming_it(custom_group, key):
  with pytest.raises(ValueError, match=f"'{key}'.*(two search groups|listed twice)"):
    _groups(DOC_SPECS, custom_group)


@pytest.mark.parametrize("custom_group", [[["a1", "op1"]], [["a1"], ["op2"]], [["op2"], ["op3"], ["a1"]]])
def test_alias_mixed_with_its_own_names_raises_value_error_naming_both(custom_group):
  with pytest.raises(ValueError, match="alias 'a1'.*op") as info:
    _groups(DOC_SPECS, custom_group)
  assert "op1" in str(info.value) or "op2" in str(info.value)


def test_alias_with_names_of_other_aliases_is_fine():
  assert _groups(DOC_SPECS, [["a1", "op3"]]) == {0: ("op1", "op2", "op3")}


@pytest.mark.parametrize(
  "other",
  [
    _spec(names=("a", "c"), order=1),
    _spec(names=("a", "b", "c"), order=1),
    _spec(mutable_type=jm.OneShotProbMutableOP, probs=(0.5, 0.5), order=1),
    _spec(mutable_type=jm.OneShotMutableValue, names=(1, 2), order=1),
    _spec(mutable_type=jm.DiffMutableOP, order=1),
  ],
)
def test_group_with_different_search_spaces_raises_value_error_naming_both(other):
  specs = [("first", _spec(order=0)), ("second", other)]
  with pytest.raises(ValueError, match="'first'.*'second'"):
    build_search_groups(specs, (("first", "second"),))


def test_alias_over_different_search_spaces_raises_value_error_naming_both():
  specs = [("first", _spec(alias="x", order=0)), ("second", _spec(alias="x", names=("a", "z"), order=1))]
  with pytest.raises(ValueError, match="different search spaces.*'first'.*'second'"):
    build_search_groups(specs, None)


@pytest.mark.parametrize(
  "custom_group, error",
  [
    ("op1", TypeError),
    (["op1"], TypeError),
    ([["op1"], []], ValueError),
    ([[1]], TypeError),
  ],
)
def test_malformed_custom_group_raises(custom_group, error):
  with pytest.raises(error):
    jm.OneShotModuleMutator(custom_group=custom_group)


def test_collect_specs_needs_the_mutables_collection(key):
  variables = DocNet().init(key, X, None)
  with pytest.raises(ValueError, match="'mutables'"):
    collect_specs({"params": variables["params"]})
  with pytest.raises(TypeError):
    collect_specs([variables])
  assert [name for name, _ in collect_specs(variables)] == ["op1", "op2", "op3"]


# Invariants over random layouts ---------------------------------------------


@st.composite
def layouts(draw):
  """Random mutables (some aliased) and a valid custom_group over them."""
  num = draw(st.integers(1, 8))
  aliases = draw(st.lists(st.sampled_from([None, "x", "y", "z"]), min_size=num, max_size=num))
  names = [f"m{i}" for i in range(num)]
  alias_of = dict(zip(names, aliases))
  members: dict[str, list[str]] = {}
  for name, alias in alias_of.items():
    if alias is not None:
      members.setdefault(alias, []).append(name)
  # Each unit (an alias, or a mutable name) may be used at most once, and an
  # alias excludes its own names.
  units = [("alias", a) for a in members] + [("name", n) for n in names]
  chosen = draw(st.lists(st.sampled_from(units), unique=True, max_size=len(units)))
  used_aliases = {value for kind, value in chosen if kind == "alias"}
  chosen = [(kind, value) for kind, value in chosen if kind == "alias" or alias_of[value] not in used_aliases]
  cuts = draw(st.lists(st.integers(0, len(chosen)), max_size=3))
  bounds = sorted({0, len(chosen), *cuts})
  custom = [[value for _, value in chosen[lo:hi]] for lo, hi in zip(bounds, bounds[1:]) if hi > lo]
  return alias_of, members, custom


def _expand(entry, members):
  return [n for key in entry for n in (members.get(key) or [key])]


@settings(max_examples=150, deadline=None)
@given(layouts())
def test_grouping_invariants_over_random_layouts(layout):
  alias_of, members, custom = layout
  specs = _specs(alias_of)
  groups = _groups(specs, custom or None)
  names = list(alias_of)
  # Ids count from 0 and the groups partition the mutables.
  assert sorted(groups) == list(range(len(groups)))
  flat = [n for group in groups.values() for n in group]
  assert sorted(flat) == sorted(names) and len(flat) == len(set(flat))
  # Pass 1: custom groups first, in order, aliases expanded.
  for gid, entry in enumerate(custom):
    assert list(groups[gid]) == _expand(entry, members)
  rest = [groups[g] for g in range(len(custom), len(groups))]
  used = {key for entry in custom for key in entry if key in members}
  in_custom = {n for entry in custom for n in _expand(entry, members)}
  # Pass 2: each unused alias with remaining members, in first-appearance order.
  alias_groups = [
    tuple(n for n in members[a] if n not in in_custom)
    for a in members
    if a not in used and any(n not in in_custom for n in members[a])
  ]
  assert rest[: len(alias_groups)] == alias_groups
  # Pass 3: singletons of the rest, in definition order.
  grouped = in_custom | {n for g in alias_groups for n in g}
  assert rest[len(alias_groups) :] == [(n,) for n in names if n not in grouped]
  # Mutables of one alias share a group unless custom groups split them by name.
  for alias, alias_members in members.items():
    if not any(n in in_custom for n in alias_members) or alias in used:
      assert len({next(g for g, ns in groups.items() if n in ns) for n in alias_members}) == 1


@settings(max_examples=50, deadline=None)
@given(layouts(), st.data())
def test_duplicating_any_key_of_a_valid_layout_raises(layout, data):
  alias_of, members, custom = layout
  if not custom:
    return
  entry = data.draw(st.sampled_from(custom))
  key = data.draw(st.sampled_from(entry))
  duplicated = [*custom, [key]]
  expected_name = (members.get(key) or [key])[0]
  with pytest.raises(ValueError, match=f"'{expected_name}'.*(two search groups|listed twice)"):
    _groups(_specs(alias_of), duplicated)
