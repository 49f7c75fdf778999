"""The contract every mutable shares: specs, names, parameter layout, choice lookup."""

from __future__ import annotations

import dataclasses
from collections.abc import Callable
from typing import Any

import flax.linen as nn
import jax
import jax.numpy as jnp
import numpy as np
import pytest

import jaxmutate as jm
from jaxmutate.mutables import MutableSpec
from jaxmutate.spaces import IndexSpace, check_index_choice, check_logits_choice

X = jnp.ones((2, 3))


@dataclasses.dataclass(frozen=True)
class Kind:
  """How to build, call and choose for one kind of module mutable."""

  name: str
  make: Callable[..., nn.Module]  # make(candidates, **kwargs)
  call: Callable[[nn.Module, Any, Any], Any]  # call(mutable, x, choices)
  choice: Callable[[int], Any]  # a valid choice for a mutable with n candidates
  rngs: Callable[[], dict[str, jax.Array]] = dict


def _call_op(m, x, choices):
  return m(x, choices)


def _call_route(m, x, choices):
  return m([x, x], choices)


KINDS = [
  Kind("OneShotMutableOP", jm.OneShotMutableOP, _call_op, lambda n: jnp.int32(n - 1)),
  Kind(
    "OneShotProbMutableOP",
    lambda c, **kw: jm.OneShotProbMutableOP(c, choice_probs=(0.5, 0.5), **kw),
    _call_op,
    lambda n: jnp.int32(0),
  ),
  Kind("DiffMutableOP", jm.DiffMutableOP, _call_op, lambda n: jnp.zeros(n)),
  Kind(
    "DiffChoiceRoute", lambda c, **kw: jm.DiffChoiceRoute(c, num_chosen=1, **kw), _call_route, lambda n: jnp.zeros(n)
  ),
  Kind(
    "GumbelChoiceRoute",
    jm.GumbelChoiceRoute,
    _call_route,
    lambda n: jnp.zeros(n),
    rngs=lambda: {"gumbel": jax.random.key(3)},
  ),
]
KIND_IDS = [k.name for k in KINDS]


def _inside_net(kind: Kind, alias: str | None = None) -> nn.Module:
  """A supernet whose candidates are constructed inside its compact method."""

  class Inside(nn.Module):
    @nn.compact
    def __call__(self, x, choices):
      x = nn.Dense(3, name="stem")(x)
      candidates = {"wide": nn.Dense(4), "narrow": nn.Dense(4, use_bias=False)}
      return kind.call(kind.make(candidates, alias=alias, name="choice_block1"), x, choices)

  return Inside()


_OUTSIDE_CANDIDATES = {"wide": nn.Dense(4), "narrow": nn.Dense(4, use_bias=False)}


def _outside_net(kind: Kind) -> nn.Module:
  """A supernet whose candidates were constructed outside any module."""

  class Outside(nn.Module):
    @nn.compact
    def __call__(self, x, choices):
      x = nn.Dense(3, name="stem")(x)
      return kind.call(kind.make(_OUTSIDE_CANDIDATES, name="choice_block1"), x, choices)

  return Outside()


@pytest.mark.parametrize("kind", KINDS, ids=KIND_IDS)
@pytest.mark.parametrize("where", ["inside", "outside"])
def test_init_with_none_builds_every_candidate_under_its_name(kind, where, key):
  net = _inside_net(kind) if where == "inside" else _outside_net(kind)
  variables = net.init(key, X, None)
  params = variables["params"]
  assert set(params) == {"stem", "choice_block1"}
  assert set(params["choice_block1"]) == {"wide", "narrow"}
  assert set(params["choice_block1"]["wide"]) == {"kernel", "bias"}
  assert set(params["choice_block1"]["narrow"]) == {"kernel"}
  assert params["choice_block1"]["wide"]["kernel"].shape == (3, 4)
  spec = variables[jm.MUTABLES_COLLECTION]["choice_block1"]["spec"]
  assert isinstance(spec, MutableSpec)
  assert spec.mutable_type.__name__ == kind.name
  assert spec.choice_names == ("wide", "narrow")
  assert spec.num_choices == 2


@pytest.mark.parametrize("kind", KINDS, ids=KIND_IDS)
def test_apply_runs_with_a_valid_choice(kind, key):
  net = _inside_net(kind)
  variables = net.init(key, X, None)
  out = net.apply(variables, X, {"choice_block1": kind.choice(2)}, rngs=kind.rngs())
  assert out.shape == (2, 4)
  assert bool(jnp.all(jnp.isfinite(out)))


@pytest.mark.parametrize("kind", KINDS, ids=KIND_IDS)
@pytest.mark.parametrize("choices", [{}, {"other": jnp.int32(0)}, None])
def test_missing_choice_at_apply_raises_key_error_naming_the_mutable(kind, choices, key):
  net = _inside_net(kind)
  variables = net.init(key, X, None)
  with pytest.raises(KeyError, match="choice_block1"):
    net.apply(variables, X, choices, rngs=kind.rngs())


@pytest.mark.parametrize("kind", KINDS, ids=KIND_IDS)
def test_alias_is_recorded_in_the_spec(kind, key):
  variables = _inside_net(kind, alias="shared").init(key, X, None)
  assert variables[jm.MUTABLES_COLLECTION]["choice_block1"]["spec"].alias == "shared"


@pytest.mark.parametrize("kind", KINDS, ids=KIND_IDS)
def test_non_string_alias_raises_type_error(kind, key):
  with pytest.raises(TypeError, match="alias"):
    _inside_net(kind, alias=3).init(key, X, None)


@pytest.mark.parametrize("kind", KINDS, ids=KIND_IDS)
@pytest.mark.parametrize(
  "candidates, error", [({}, ValueError), ([nn.Dense(2)], TypeError), ({"": nn.Dense(2)}, TypeError)]
)
def test_bad_candidates_raise(kind, candidates, error, key):
  mutable = kind.make(candidates)
  with pytest.raises(error):
    mutable.init(key, [X] if "Route" in kind.name else X, None)


def test_mutable_name_is_the_module_path_joined_with_dots(key):
  class Stage(nn.Module):
    @nn.compact
    def __call__(self, x, choices):
      return jm.OneShotMutableOP({"a": nn.Dense(2), "b": nn.Dense(2)}, name="block0")(x, choices)

  class Backbone(nn.Module):
    @nn.compact
    def __call__(self, x, choices):
      return Stage(name="stage1")(x, choices)

  class Net(nn.Module):
    @nn.compact
    def __call__(self, x, choices):
      return Backbone(name="backbone")(x, choices)

  variables = Net().init(key, X, None)
  assert "spec" in variables["mutables"]["backbone"]["stage1"]["block0"]
  mutator = jm.OneShotModuleMutator().prepare_from_supernet(variables)
  assert mutator.search_groups == {0: ("backbone.stage1.block0",)}
  with pytest.raises(KeyError, match="backbone.stage1.block0"):
    Net().apply(variables, X, {})
  out = Net().apply(variables, X, {"backbone.stage1.block0": jnp.int32(1)})
  assert out.shape == (2, 2)


def test_definition_order_is_recorded_and_identical_across_inits(key):
  class Net(nn.Module):
    @nn.compact
    def __call__(self, x, choices):
      for i in (2, 0, 1):
        x = jm.OneShotMutableOP({"a": nn.Dense(3), "b": nn.Dense(3)}, name=f"z{i}")(x, choices)
      return x

  first = Net().init(key, X, None)["mutables"]
  second = Net().init(jax.random.key(1), X, None)["mutables"]
  orders = {name: first[name]["spec"].order for name in first}
  assert orders == {"z2": 0, "z0": 1, "z1": 2}
  assert first == second


def test_specs_are_pytrees_without_leaves(key):
  variables = _inside_net(KINDS[0]).init(key, X, None)
  assert jax.tree.leaves(variables["mutables"]) == []


def test_check_index_choice_validates_shape_dtype_and_range():
  assert check_index_choice("m", 1, 3).dtype == jnp.int32
  with pytest.raises(ValueError, match="'m'.*shape"):
    check_index_choice("m", jnp.array([0, 1]), 3)
  with pytest.raises(TypeError, match="'m'.*dtype"):
    check_index_choice("m", jnp.float32(1.0), 3)
  with pytest.raises(ValueError, match="'m'.*out of range"):
    check_index_choice("m", 3, 3)
  with pytest.raises(ValueError, match="out of range"):
    check_index_choice("m", -1, 3)
  # Traced indices cannot be range-checked: they are clipped into range.
  out = jax.jit(lambda i: check_index_choice("m", i, 3))(jnp.int32(7))
  assert int(out) == 2


def test_check_logits_choice_validates_shape_and_dtype():
  np.testing.assert_array_equal(check_logits_choice("m", jnp.zeros(3), 3), jnp.zeros(3))
  with pytest.raises(ValueError, match=r"'m'.*\(3,\)"):
    check_logits_choice("m", jnp.zeros(2), 3)
  with pytest.raises(TypeError, match="'m'"):
    check_logits_choice("m", jnp.zeros(3, jnp.int32), 3)


def test_index_space_defaults():
  space = IndexSpace(("a", "b", "c"))
  choice = space.sample(jax.random.key(0))
  assert choice.dtype == jnp.int32 and choice.shape == ()
  with pytest.raises(ValueError, match="no max choice"):
    space.max()
  with pytest.raises(ValueError, match="no min choice"):
    space.min()
  assert space.export(jnp.int32(2)) == "c"
  assert int(space.load("b", "k")) == 1
  with pytest.raises(ValueError, match="'k'.*'z'"):
    space.load("z", "k")
  with pytest.raises(ValueError, match="out of range"):
    space.check(5, "group 0")


@pytest.mark.parametrize("route_cls", [jm.DiffChoiceRoute, jm.GumbelChoiceRoute])
def test_route_needs_one_input_per_edge(route_cls, key):
  route = route_cls({"e0": nn.Dense(2), "e1": nn.Dense(2)}, num_chosen=1)
  with pytest.raises(ValueError, match="2 inputs"):
    route.init(key, [X], None)
  with pytest.raises(ValueError, match="2 inputs"):
    route.init(key, X, None)


def test_gumbel_route_needs_the_gumbel_rng(key):
  route = jm.GumbelChoiceRoute({"e0": nn.Dense(2), "e1": nn.Dense(2)})
  variables = route.init(key, [X, X], None)
  with pytest.raises(ValueError, match="'gumbel'"):
    route.apply(variables, [X, X], {"": jnp.zeros(2)})
  first = route.apply(variables, [X, X], {"": jnp.zeros(2)}, rngs={"gumbel": jax.random.key(1)})
  again = route.apply(variables, [X, X], {"": jnp.zeros(2)}, rngs={"gumbel": jax.random.key(1)})
  np.testing.assert_array_equal(first, again)
