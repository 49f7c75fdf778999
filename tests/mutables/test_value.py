"""MutableValue / OneShotMutableValue: a choice among numbers."""

from __future__ import annotations

import chex
import flax.linen as nn
import jax
import jax.numpy as jnp
import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

import jaxmutate as jm


def _spec(variables):
  return variables[jm.MUTABLES_COLLECTION]["spec"]


def test_mutable_value_keeps_the_given_order(key):
  value = jm.MutableValue([3, 6, 4])
  variables = value.init(key, None)
  assert _spec(variables).choice_names == (3, 6, 4)
  assert [int(value.apply(variables, {"": jnp.int32(i)})) for i in range(3)] == [3, 6, 4]


def test_mutable_value_init_returns_the_default(key):
  assert int(jm.MutableValue([3, 6, 4]).init_with_output(key, None)[0]) == 3
  assert int(jm.MutableValue([3, 6, 4], default_value=4).init_with_output(key, None)[0]) == 4


def test_one_shot_value_sorts_and_defaults_to_the_max(key):
  value = jm.OneShotMutableValue([6, 3, 4])
  out, variables = value.init_with_output(key, None)
  assert int(out) == 6
  assert _spec(variables).choice_names == (3, 4, 6)
  assert value.choices == (3, 4, 6)
  assert int(value.apply(variables, {"": jnp.int32(0)})) == 3
  assert int(value.apply(variables, {"": jnp.int32(2)})) == 6


def test_one_shot_value_max_and_min_are_last_and_first(key):
  spec = _spec(jm.OneShotMutableValue([0.5, 0.25, 1.0]).init(key, None))
  assert int(spec.space.max()) == 2
  assert int(spec.space.min()) == 0
  assert spec.choice_names[int(spec.space.max())] == 1.0


def test_plain_mutable_value_has_no_max_or_min(key):
  spec = _spec(jm.MutableValue([1, 2]).init(key, None))
  with pytest.raises(ValueError, match="no max choice"):
    spec.space.max()
  with pytest.raises(ValueError, match="no min choice"):
    spec.space.min()


def test_float_values_keep_their_dtype(key):
  value = jm.OneShotMutableValue([0.5, 0.25])
  variables = value.init(key, None)
  out = value.apply(variables, {"": jnp.int32(1)})
  assert jnp.issubdtype(out.dtype, jnp.floating)
  assert float(out) == 0.5


@pytest.mark.parametrize(
  "values, default, error, match",
  [
    ([], None, ValueError, "empty"),
    ([1, 2.0], None, TypeError, "one type"),
    (["a", "b"], None, TypeError, "ints or floats"),
    ([1, 1, 2], None, ValueError, "duplicates"),
    ([1, 2], 3, ValueError, "default_value 3"),
  ],
)
def test_bad_value_lists_raise(values, default, error, match, key):
  with pytest.raises(error, match=match):
    jm.MutableValue(values, default_value=default).init(key, None)


def test_missing_choice_raises_key_error_naming_the_value(key):
  class Net(nn.Module):
    @nn.compact
    def __call__(self, choices):
      return jm.OneShotMutableValue([1, 2, 3], name="expand_ratio")(choices)

  variables = Net().init(key, None)
  with pytest.raises(KeyError, match="expand_ratio"):
    Net().apply(variables, {"something_else": jnp.int32(0)})


@pytest.mark.parametrize("bad", [3, -1])
def test_concrete_out_of_range_raises_value_error(bad, key):
  value = jm.OneShotMutableValue([1, 2, 3])
  variables = value.init(key, None)
  with pytest.raises(ValueError, match="out of range"):
    value.apply(variables, {"": jnp.int32(bad)})


def test_wrong_shape_or_dtype_raises(key):
  value = jm.OneShotMutableValue([1, 2, 3])
  variables = value.init(key, None)
  with pytest.raises(ValueError, match="shape"):
    value.apply(variables, {"": jnp.zeros(2, jnp.int32)})
  with pytest.raises(TypeError, match="dtype"):
    value.apply(variables, {"": jnp.float32(0.0)})


class TestTraced(chex.TestCase):
  @chex.variants(with_jit=True, without_jit=True)
  def test_traced_choice_equals_concrete_choice(self):
    value = jm.OneShotMutableValue([8, 2, 4])
    variables = value.init(jax.random.key(0), None)
    apply = self.variant(value.apply)
    for index, expected in enumerate((2, 4, 8)):
      assert int(apply(variables, {"": jnp.int32(index)})) == expected

  def test_value_can_scale_activations_under_vmap(self):
    class Net(nn.Module):
      @nn.compact
      def __call__(self, x, choices):
        return x * jm.OneShotMutableValue([1.0, 2.0, 3.0], name="scale")(choices)

    x = jnp.ones((2, 3))
    variables = Net().init(jax.random.key(0), x, None)
    out = jax.jit(jax.vmap(lambda i: Net().apply(variables, x, {"scale": i})))(jnp.arange(3, dtype=jnp.int32))
    chex.assert_shape(out, (3, 2, 3))
    np.testing.assert_allclose(out[:, 0, 0], [1.0, 2.0, 3.0])


def test_value_group_export_and_import_use_the_values(key):
  spec = _spec(jm.OneShotMutableValue([4, 2, 8]).init(key, None))
  assert spec.space.export(jnp.int32(1)) == 4
  assert int(spec.space.load(8, "k")) == 2
  assert int(spec.space.load(8.0, "k")) == 2  # YAML may write 8.0
  for bad in (5, "8", True, None):
    with pytest.raises(ValueError, match="'k'"):
      spec.space.load(bad, "k")


@settings(max_examples=25, deadline=None)
@given(st.lists(st.integers(-50, 50), min_size=1, max_size=6, unique=True))
def test_one_shot_value_index_is_the_rank(values):
  value = jm.OneShotMutableValue(values)
  variables = value.init(jax.random.key(0), None)
  spec = _spec(variables)
  assert list(spec.choice_names) == sorted(values)
  for index, expected in enumerate(sorted(values)):
    exported = spec.space.export(jnp.int32(index))
    assert exported == expected
    assert int(spec.space.load(exported, "v")) == index


def test_numpy_scalars_become_plain_python_values(key):
  value = jm.OneShotMutableValue(list(np.array([8, 2, 4])))
  spec = _spec(value.init(key, None))
  assert spec.choice_names == (2, 4, 8)
  assert all(type(v) is int for v in spec.choice_names)
  assert type(spec.space.export(jnp.int32(0))) is int
  with pytest.raises(TypeError, match="one type"):
    jm.MutableValue([True, 2]).init(key, None)
