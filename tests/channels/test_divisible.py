"""make_divisible and its jnp twin: MMRazor's numbers, for Python and traced values alike."""

from __future__ import annotations

import jax
import jax.numpy as jnp
import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from jaxmutate.channels import make_divisible, make_divisible_jnp
from jaxmutate.errors import ConfigError, ConfigTypeError


def _mmrazor(value, divisor, min_value=None, min_ratio=0.9):
  """MMRazor's make_divisible as its source writes it (min_value raised to the divisor)."""
  if min_value is None or min_value < divisor:
    min_value = divisor
  new_value = max(min_value, int(value + divisor / 2) // divisor * divisor)
  if new_value < min_ratio * value:
    new_value += divisor
  return new_value


@pytest.mark.parametrize("value, expected", [(20, 24), (30, 32), (40, 40), (3, 8)])
def test_spec_examples(value, expected):
  assert make_divisible(value, 8) == expected


def test_min_value_and_min_ratio():
  assert make_divisible(624, 48, min_value=528) == 624
  assert make_divisible(100, 48, min_value=528) == 528
  assert make_divisible(14, 8, min_value=1) == 16  # min_value below the divisor counts as the divisor
  assert make_divisible(10, 8, min_ratio=0.9) == 16  # 8 < 0.9 * 10: one divisor more
  assert make_divisible(10, 8, min_ratio=0.5) == 8
  assert make_divisible(7, 1) == 7
  assert make_divisible(14.4, 1) == 14
  assert isinstance(make_divisible(80.0, 8), int)


def test_float64_ties_are_mmrazors():
  # 0.07 * 100 is 7.000000000000001 in float64: MMRazor adds a divisor there.
  assert make_divisible(100, 7, min_ratio=0.07) == _mmrazor(100, 7, min_ratio=0.07)
  assert make_divisible(10, 9, min_ratio=0.9) == 9  # 0.9 * 10 is exactly 9.0: no extra divisor


@settings(max_examples=300, deadline=None)
@given(
  value=st.one_of(st.integers(0, 5000), st.floats(0, 5000, allow_nan=False)),
  divisor=st.integers(1, 64),
  min_value=st.one_of(st.none(), st.integers(1, 128)),
  min_ratio=st.floats(0, 1),
)
def test_matches_mmrazor(value, divisor, min_value, min_ratio):
  result = make_divisible(value, divisor, min_value, min_ratio)
  assert result == _mmrazor(value, divisor, min_value, min_ratio)
  floor = max(divisor, min_value or 0)
  assert result % divisor == 0 or result in (floor, floor + divisor)  # only the floor may be off the grid
  assert result >= floor
  assert result >= min_ratio * value - 1e-9


@settings(max_examples=20, deadline=None)
@given(
  divisor=st.integers(1, 32),
  min_value=st.one_of(st.none(), st.integers(1, 64)),
  min_ratio=st.sampled_from([0.0, 0.07, 0.5, 0.75, 0.8, 0.9, 0.95, 1.0]),
)
def test_jnp_twin_gives_the_same_numbers_under_jit(divisor, min_value, min_ratio):
  values = np.arange(0, 513)
  fn = jax.jit(lambda v: make_divisible_jnp(v, divisor, min_value, min_ratio, max_value=512))
  expected = [make_divisible(int(v), divisor, min_value, min_ratio) for v in values]
  assert fn(jnp.asarray(values, jnp.int32)).tolist() == expected


def test_jnp_twin_vmaps_and_clips():
  fn = jax.vmap(lambda v: make_divisible_jnp(v, 8, max_value=64))
  assert fn(jnp.array([20, 30, 40, 3])).tolist() == [24, 32, 40, 8]
  # Out of the table's range: clipped into [0, max_value] first.
  assert make_divisible_jnp(jnp.array([-5, 1000]), 8, max_value=64).tolist() == [8, 64]
  assert make_divisible_jnp(20, 8, max_value=64).dtype == jnp.int32


def test_errors():
  with pytest.raises(ConfigError, match="divisor"):
    make_divisible(10, 0)
  with pytest.raises(ConfigTypeError, match="divisor"):
    make_divisible(10, 2.5)
  with pytest.raises(ConfigTypeError, match="min_value"):
    make_divisible(10, 8, min_value=1.5)
  with pytest.raises(ConfigTypeError, match="int channel counts"):
    make_divisible_jnp(jnp.float32(3.0), 8, max_value=8)
  with pytest.raises(ConfigTypeError, match="max_value"):
    make_divisible_jnp(3, 8, max_value=-1)
