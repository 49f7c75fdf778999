"""Mutators: prepare → sample → set, immutability, keys, kinds, arch params."""

from __future__ import annotations

import dataclasses

import chex
import flax.linen as nn
import jax
import jax.numpy as jnp
import numpy as np
import pytest

import jaxmutate as jm

X = jnp.ones((2, 3))
PROBS = (0.7, 0.2, 0.1)


class Supernet(nn.Module):
  """Every NAS mutable kind, tiny: two aliased ops, a prob op, a value, a diff op and a route."""

  @nn.compact
  def __call__(self, x, choices):
    for i in range(2):
      x = jm.OneShotMutableOP({"a": nn.Dense(3), "b": nn.Dense(3), "c": nn.Dense(3)}, alias="blk", name=f"op{i}")(
        x, choices
      )
    x = jm.OneShotProbMutableOP(
      {"p": nn.Dense(3), "q": nn.Dense(3), "r": nn.Dense(3)}, choice_probs=PROBS, name="prob"
    )(x, choices)
    x = x * jm.OneShotMutableValue([1.0, 0.5, 2.0], name="scale")(choices)
    x = jm.DiffMutableOP({"a": nn.Dense(3), "b": nn.Dense(3)}, name="dop")(x, choices)
    return jm.DiffChoiceRoute({"e0": nn.Dense(3), "e1": nn.Dense(3), "e2": nn.Dense(3)}, num_chosen=2, name="route")(
      [x, 2 * x, 3 * x], choices
    )


class OneShotNet(nn.Module):
  """Only one-shot mutables (so every group has a random choice)."""

  @nn.compact
  def __call__(self, x, choices):
    x = jm.OneShotMutableOP({"a": nn.Dense(3), "b": nn.Dense(3), "c": nn.Dense(3)}, name="op")(x, choices)
    x = jm.OneShotProbMutableOP(
      {"p": nn.Dense(3), "q": nn.Dense(3), "r": nn.Dense(3)}, choice_probs=PROBS, name="prob"
    )(x, choices)
    return x * jm.OneShotMutableValue([1.0, 0.5, 2.0], name="scale")(choices)


class ValueNet(nn.Module):
  """Only sorted values (so max/min are defined for every group)."""

  @nn.compact
  def __call__(self, x, choices):
    width = jm.OneShotMutableValue([4, 2, 8], name="width")(choices)
    ratio = jm.OneShotMutableValue([0.5, 1.0], alias="ratio", name="r0")(choices)
    ratio2 = jm.OneShotMutableValue([0.5, 1.0], alias="ratio", name="r1")(choices)
    return x * width * ratio * ratio2


@pytest.fixture(scope="module")
def variables():
  return Supernet().init(jax.random.key(0), X, None)


@pytest.fixture(scope="module")
def one_shot_variables():
  return OneShotNet().init(jax.random.key(0), X, None)


@pytest.fixture(scope="module")
def value_variables():
  return ValueNet().init(jax.random.key(0), X, None)


# Construction, immutability ---------------------------------------------------


def test_module_mutator_is_abstract():
  with pytest.raises(TypeError, match="mutable_class_type"):
    jm.ModuleMutator()
  with pytest.raises(TypeError):
    jm.BaseMutator()


def test_a_subclass_that_names_its_mutables_can_be_built(variables):
  class ValueOnly(jm.ModuleMutator):
    mutable_class_type = jm.MutableValue

  mutator = ValueOnly().prepare_from_supernet(variables)
  assert mutator.search_groups == {0: ("scale",)}


@pytest.mark.parametrize("cls", [jm.OneShotModuleMutator, jm.DiffModuleMutator, jm.NasMutator])
def test_prepare_returns_a_new_mutator_and_leaves_the_original_unprepared(cls, variables):
  mutator = cls(custom_group=None)
  prepared = mutator.prepare_from_supernet(variables)
  assert prepared is not mutator
  assert type(prepared) is cls
  assert prepared.search_groups
  with pytest.raises(RuntimeError, match="prepare_from_supernet"):
    _ = mutator.search_groups
  with pytest.raises(dataclasses.FrozenInstanceError):
    mutator.custom_group = (("op0",),)  # type: ignore[misc]


@pytest.mark.parametrize("cls", [jm.OneShotModuleMutator, jm.DiffModuleMutator, jm.NasMutator])
@pytest.mark.parametrize(
  "call",
  [
    lambda m: m.search_groups,
    lambda m: m.name_to_spec,
    lambda m: m.set_choices({}),
    lambda m: m.export_fix_subnet({}),
    lambda m: m.load_fix_subnet({}),
  ],
)
def test_use_before_prepare_raises_runtime_error(cls, call):
  with pytest.raises(RuntimeError, match=f"{cls.__name__}.prepare_from_supernet"):
    call(cls())


@pytest.mark.parametrize(
  "cls, expected",
  [
    (jm.OneShotModuleMutator, {0: ("op0", "op1"), 1: ("prob",), 2: ("scale",)}),
    (jm.DiffModuleMutator, {0: ("dop",), 1: ("route",)}),
    (jm.NasMutator, {0: ("op0", "op1"), 1: ("prob",), 2: ("scale",), 3: ("dop",), 4: ("route",)}),
  ],
)
def test_each_mutator_manages_only_its_mutable_class_type(cls, expected, variables):
  assert cls().prepare_from_supernet(variables).search_groups == expected


def test_prepare_without_managed_mutables_raises(one_shot_variables):
  with pytest.raises(ValueError, match="DiffModuleMutator found no mutable"):
    jm.DiffModuleMutator().prepare_from_supernet(one_shot_variables)


def test_prepare_needs_the_whole_variable_dict(variables):
  with pytest.raises(ValueError, match="'mutables'"):
    jm.NasMutator().prepare_from_supernet({"params": variables["params"]})


def test_prepared_mutator_is_a_pytree_without_leaves(variables):
  mutator = jm.NasMutator(custom_group=[["blk"]]).prepare_from_supernet(variables)
  assert jax.tree.leaves(mutator) == []
  leaves, treedef = jax.tree.flatten(mutator)
  assert jax.tree.unflatten(treedef, leaves) == mutator


def test_a_prepared_mutator_passes_into_jit_without_retracing(one_shot_variables):
  mutator = jm.OneShotModuleMutator().prepare_from_supernet(one_shot_variables)
  same = jm.OneShotModuleMutator().prepare_from_supernet(one_shot_variables)
  assert same == mutator and hash(same) == hash(mutator)

  @jax.jit
  @chex.assert_max_traces(n=1)
  def step(mutator, key):
    return mutator.set_choices(mutator.sample_choices(key))

  for i in range(4):
    step(mutator if i % 2 else same, jax.random.key(i))


def test_group_key_and_group_spec(variables):
  mutator = jm.NasMutator().prepare_from_supernet(variables)
  assert mutator.group_key(0) == "blk"
  assert mutator.group_key(2) == "scale"
  assert mutator.group_spec(2).choice_names == (0.5, 1.0, 2.0)
  assert mutator.group_spec(4).space.num_chosen == 2


# sample_choices -----------------------------------------------------------------


def test_sample_choices_is_deterministic_per_key(variables):
  mutator = jm.NasMutator().prepare_from_supernet(variables)
  first = mutator.sample_choices(jax.random.key(7))
  chex.assert_trees_all_equal(first, mutator.sample_choices(jax.random.key(7)))
  others = [mutator.sample_choices(jax.random.key(k)) for k in range(8)]
  assert any(not all(np.array_equal(o[g], first[g]) for g in first) for o in others)


def test_sample_choices_shapes_and_dtypes(variables):
  mutator = jm.NasMutator().prepare_from_supernet(variables)
  group_choices = mutator.sample_choices(jax.random.key(0))
  assert set(group_choices) == set(mutator.search_groups)
  for g in (0, 1, 2, 3):
    chex.assert_shape(group_choices[g], ())
    chex.assert_type(group_choices[g], jnp.int32)
  chex.assert_shape(group_choices[4], (2,))
  assert len(set(np.asarray(group_choices[4]).tolist())) == 2


NUM_KEYS = 3000


@pytest.fixture(scope="module")
def population_and_choices(variables):
  """Group choices and choices for NUM_KEYS keys from one jitted vmap (one compile keeps this fast)."""
  mutator = jm.NasMutator().prepare_from_supernet(variables)
  keys = jax.random.split(jax.random.key(42), NUM_KEYS)

  def sample_and_set(key):
    group_choices = mutator.sample_choices(key)
    return group_choices, mutator.set_choices(group_choices)

  return jax.tree.map(np.asarray, jax.jit(jax.vmap(sample_and_set))(keys))


@pytest.fixture(scope="module")
def population(population_and_choices):
  return population_and_choices[0]


def _frequencies(samples: np.ndarray, n: int) -> np.ndarray:
  return np.bincount(samples.ravel(), minlength=n) / samples.size


def test_vmapped_sampling_matches_sampling_key_by_key(variables, population):
  mutator = jm.NasMutator().prepare_from_supernet(variables)
  keys = jax.random.split(jax.random.key(42), NUM_KEYS)
  for i in (0, 1, NUM_KEYS - 1):
    chex.assert_trees_all_equal(mutator.sample_choices(keys[i]), jax.tree.map(lambda a: a[i], population))


def test_uniform_sampling_covers_every_candidate_evenly(population):
  chex.assert_shape(population[0], (NUM_KEYS,))
  np.testing.assert_allclose(_frequencies(population[0], 3), [1 / 3] * 3, atol=0.04)  # op
  np.testing.assert_allclose(_frequencies(population[2], 3), [1 / 3] * 3, atol=0.04)  # value
  np.testing.assert_allclose(_frequencies(population[3], 2), [1 / 2] * 2, atol=0.04)  # diff op


def test_choice_probs_frequencies(population):
  np.testing.assert_allclose(_frequencies(population[1], 3), PROBS, atol=0.04)


def test_route_sampling_picks_distinct_edges_uniformly(population):
  edges = population[4]
  chex.assert_shape(edges, (NUM_KEYS, 2))
  assert (edges[:, 0] != edges[:, 1]).all()
  np.testing.assert_allclose(_frequencies(edges, 3), [1 / 3] * 3, atol=0.04)


def test_groups_are_sampled_independently(population):
  # Tied groups would share draws; independent ones agree about 1/3 of the time.
  agree = np.mean(population[0] == population[2])
  assert 0.25 < agree < 0.42


def test_sample_choices_max_min_for_sorted_values(value_variables):
  mutator = jm.OneShotModuleMutator().prepare_from_supernet(value_variables)
  assert mutator.search_groups == {0: ("r0", "r1"), 1: ("width",)}
  chex.assert_trees_all_equal(mutator.sample_choices(jax.random.key(0), kind="max"), {0: jnp.int32(1), 1: jnp.int32(2)})
  chex.assert_trees_all_equal(mutator.sample_choices(jax.random.key(0), kind="min"), {0: jnp.int32(0), 1: jnp.int32(0)})
  chex.assert_trees_all_equal(mutator.max_choices(), {0: jnp.int32(1), 1: jnp.int32(2)})
  chex.assert_trees_all_equal(mutator.min_choices(), {0: jnp.int32(0), 1: jnp.int32(0)})
  assert mutator.export_fix_subnet(mutator.max_choices()) == {"ratio": {"chosen": 1.0}, "width": {"chosen": 8}}
  assert mutator.export_fix_subnet(mutator.min_choices()) == {"ratio": {"chosen": 0.5}, "width": {"chosen": 2}}
  out = ValueNet().apply(value_variables, X, mutator.set_choices(mutator.max_choices()))
  np.testing.assert_allclose(out, 8 * X)


@pytest.mark.parametrize("kind", ["max", "min"])
def test_max_min_for_ops_raise_a_clear_error(kind, variables):
  mutator = jm.NasMutator().prepare_from_supernet(variables)
  with pytest.raises(ValueError, match=f"kind='{kind}'.*group 0 \\('blk'\\).*no {kind} choice"):
    mutator.sample_choices(jax.random.key(0), kind=kind)
  with pytest.raises(ValueError, match="no max choice"):
    jm.OneShotModuleMutator().prepare_from_supernet(variables).max_choices()


def test_unknown_kind_raises(variables):
  with pytest.raises(ValueError, match="'largest'"):
    jm.NasMutator().prepare_from_supernet(variables).sample_choices(jax.random.key(0), kind="largest")


def test_sample_and_set_under_jit_and_vmap_over_keys(variables, population_and_choices):
  mutator = jm.NasMutator().prepare_from_supernet(variables)
  group_choices, choices = population_and_choices
  chex.assert_shape([choices["op0"], choices["scale"]], (NUM_KEYS,))
  # Discrete choices reach differentiable mutables as they are (issue 8: no -inf logits).
  chex.assert_shape(choices["route"], (NUM_KEYS, 2))
  chex.assert_trees_all_equal(choices["op0"], choices["op1"])
  for i in (0, 5):
    expected = mutator.set_choices(jax.tree.map(lambda a: a[i], group_choices))
    chex.assert_trees_all_equal(jax.tree.map(lambda a: a[i], choices), expected)


# set_choices --------------------------------------------------------------------


def test_set_choices_expands_groups_to_every_member(variables):
  mutator = jm.OneShotModuleMutator().prepare_from_supernet(variables)
  choices = mutator.set_choices({0: 2, 1: jnp.int32(1), 2: jnp.int32(0)})
  assert set(choices) == {"op0", "op1", "prob", "scale"}
  assert int(choices["op0"]) == int(choices["op1"]) == 2
  chex.assert_type(choices["op0"], jnp.int32)


def test_set_choices_missing_group_raises_key_error_naming_it(variables):
  mutator = jm.OneShotModuleMutator().prepare_from_supernet(variables)
  with pytest.raises(KeyError, match="group 1 \\('prob'\\)"):
    mutator.set_choices({0: 0, 2: 0})


@pytest.mark.parametrize("extra", [3, -1, "0"])
def test_set_choices_unknown_group_raises_value_error_naming_it(extra, variables):
  mutator = jm.OneShotModuleMutator().prepare_from_supernet(variables)
  with pytest.raises(ValueError, match=f"Unknown search group id.*{extra!r}"):
    mutator.set_choices({0: 0, 1: 0, 2: 0, extra: 0})


def test_set_choices_rejects_bad_values(variables):
  mutator = jm.OneShotModuleMutator().prepare_from_supernet(variables)
  with pytest.raises(ValueError, match="group 0.*out of range"):
    mutator.set_choices({0: 3, 1: 0, 2: 0})
  with pytest.raises(ValueError, match="group 2.*shape"):
    mutator.set_choices({0: 0, 1: 0, 2: jnp.zeros(2, jnp.int32)})
  with pytest.raises(TypeError, match="group 2.*dtype"):
    mutator.set_choices({0: 0, 1: 0, 2: 0.5})
  with pytest.raises(TypeError, match="dict"):
    mutator.set_choices([0, 0, 0])


def test_set_choices_drives_the_supernet(variables):
  mutator = jm.NasMutator().prepare_from_supernet(variables)
  group_choices = {0: 1, 1: 2, 2: 0, 3: 1, 4: jnp.array([2, 0], jnp.int32)}
  choices = mutator.set_choices(group_choices)
  # Discrete choices reach differentiable mutables as they are (issue 8: no -inf logits).
  np.testing.assert_array_equal(choices["dop"], 1)
  np.testing.assert_array_equal(choices["route"], [2, 0])
  eager = Supernet().apply(variables, X, choices)
  jitted = jax.jit(lambda c: Supernet().apply(variables, X, mutator.set_choices(c)))(group_choices)
  chex.assert_trees_all_close(eager, jitted, rtol=1e-5)


def test_custom_group_ties_mutables_of_the_same_search_space(variables):
  mutator = jm.NasMutator(custom_group=[["op0"], ["op1"]]).prepare_from_supernet(variables)
  assert mutator.search_groups[0] == ("op0",) and mutator.search_groups[1] == ("op1",)
  with pytest.raises(ValueError, match="'op0'.*'prob'"):
    jm.NasMutator(custom_group=[["op0", "prob"]]).prepare_from_supernet(variables)


# DiffModuleMutator ----------------------------------------------------------------


def test_init_arch_params_shapes_and_std(variables):
  mutator = jm.DiffModuleMutator().prepare_from_supernet(variables)
  arch_params = mutator.init_arch_params(jax.random.key(0))
  chex.assert_trees_all_equal_shapes_and_dtypes(arch_params, {0: jnp.zeros(2), 1: jnp.zeros(3)})
  # Logits are stddev * N(0, 1) draws, one key per group in group order.
  keys = jax.random.split(jax.random.key(0), 2)
  np.testing.assert_allclose(arch_params[1], 1e-3 * jax.random.normal(keys[1], (3,)), rtol=1e-6)
  assert float(jnp.max(jnp.abs(arch_params[0]))) < 5e-3
  bigger = mutator.init_arch_params(jax.random.key(0), stddev=1.0)
  np.testing.assert_allclose(bigger[1] * 1e-3, arch_params[1], rtol=1e-5)
  assert not np.array_equal(arch_params[0], mutator.init_arch_params(jax.random.key(5))[0])


def test_diff_set_choices_hands_each_mutable_its_group_logits(variables):
  mutator = jm.DiffModuleMutator(custom_group=None).prepare_from_supernet(variables)
  arch_params = {0: jnp.array([0.5, -0.5]), 1: jnp.array([1.0, 2.0, 3.0])}
  choices = mutator.set_choices(arch_params)
  chex.assert_trees_all_equal(choices, {"dop": arch_params[0], "route": arch_params[1]})
  with pytest.raises(ValueError, match=r"group 1.*\(3,\)"):
    mutator.set_choices({0: arch_params[0], 1: jnp.zeros(4)})
  with pytest.raises(KeyError, match="group 1"):
    mutator.set_choices({0: arch_params[0]})


def test_diff_sample_choices_is_argmax_and_top_k(variables):
  mutator = jm.DiffModuleMutator().prepare_from_supernet(variables)
  arch_params = {0: jnp.array([0.1, 0.9]), 1: jnp.array([0.3, -1.0, 0.7])}
  for sample in (mutator.sample_choices, jax.jit(mutator.sample_choices)):
    discrete = sample(arch_params)
    assert int(discrete[0]) == 1
    assert np.asarray(discrete[1]).tolist() == [2, 0]
  assert mutator.export_fix_subnet(arch_params) == {"dop": {"chosen": "b"}, "route": {"chosen": ["e2", "e0"]}}
  with pytest.raises(ValueError, match="'argmax'"):
    mutator.sample_choices(arch_params, kind="random")


def test_diff_arch_params_are_differentiable_through_the_supernet(variables):
  mutator = jm.DiffModuleMutator().prepare_from_supernet(variables)
  one_shot = jm.OneShotModuleMutator().prepare_from_supernet(variables)
  fixed = one_shot.set_choices({0: 0, 1: 0, 2: 1})

  def loss(arch_params):
    choices = {**fixed, **mutator.set_choices(arch_params)}
    return jnp.sum(Supernet().apply(variables, X, choices) ** 2)

  grads = jax.jit(jax.grad(loss))(mutator.init_arch_params(jax.random.key(0)))
  chex.assert_tree_all_finite(grads)
  assert float(jnp.abs(grads[0]).sum()) > 0 and float(jnp.abs(grads[1]).sum()) > 0


def test_diff_mutator_has_no_max_or_min(variables):
  mutator = jm.DiffModuleMutator().prepare_from_supernet(variables)
  with pytest.raises(ValueError, match="no max choice"):
    mutator.max_choices()
  with pytest.raises(ValueError, match="no min choice"):
    mutator.min_choices()
