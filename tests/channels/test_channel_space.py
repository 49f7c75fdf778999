"""ChannelSpace and candidate normalisation: MMRazor's numbers, checks, subnet-file values."""

from __future__ import annotations

import jax
import jax.numpy as jnp
import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from jaxmutate.channels import ChannelSpace, make_divisible, normalize_candidates, ratio_to_number
from jaxmutate.errors import (
  ChoiceError,
  ChoiceTypeError,
  ConfigError,
  ConfigTypeError,
  SearchSpaceError,
  SubnetFileError,
)
from jaxmutate.spaces import SearchSpace


def test_mmrazor_candidate_numbers():
  assert normalize_candidates(48, (20, 30, 40), "number", divisor=8) == (24, 32, 40)
  counts = normalize_candidates(48, (0.3, 0.5, 0.7), "ratio", divisor=8)
  assert [k / 48 for k in counts] == [1 / 3, 0.5, 2 / 3]
  assert normalize_candidates(10, (), "number") == (10,)
  assert normalize_candidates(10, (), "ratio") == (10,)
  # Sorted and de-duplicated; a count rounded past the full width stops there.
  assert normalize_candidates(48, (40, 20, 21), "number", divisor=8) == (24, 40)
  assert normalize_candidates(10, (10,), "number", divisor=8) == (10,)
  # AutoSlim's MobileNetV2 space.
  assert normalize_candidates(96, [i / 12 for i in range(2, 13)], "ratio", divisor=8) == tuple(range(16, 97, 8))


def test_rounding_is_idempotent_where_mmrazors_is_not():
  # make_divisible(3, 2, min_value=3) is 4: MMRazor would turn a kept 3 into 4 on every rebuild.
  assert normalize_candidates(4, (1,), "number", divisor=2, min_value=3) == (3,)
  assert normalize_candidates(4, (3,), "number", divisor=2, min_value=3) == (3,)
  space = ChannelSpace(4, None, divisor=2, min_value=3)
  assert int(space.check(1, "u")) == 3 and int(space.load(space.export(1), "u")) == 3


def test_ratio_to_number_is_mmrazors_and_exact_for_exported_ratios():
  assert ratio_to_number(0.2, 10) == 2
  assert ratio_to_number(0.3, 48) == 14
  assert ratio_to_number(0.001, 10) == 1
  assert ratio_to_number(0.299, 10) == 2  # int(2.99), as MMRazor
  # 0.58 is exactly the ratio of 58 of 100 channels; MMRazor's int(100 * 0.58) = int(57.99999999999999) gives 57
  # (and its own export/rebuild round trip then drifts: 0.57 -> 56). Here it reads 58.
  assert ratio_to_number(0.58, 100) == 58
  for n in range(1, 200):
    for k in range(1, n + 1):
      assert ratio_to_number(k / n, n) == k


@settings(max_examples=200, deadline=None)
@given(
  n=st.integers(1, 512),
  data=st.data(),
  mode=st.sampled_from(["number", "ratio"]),
  divisor=st.integers(1, 16),
  min_value=st.integers(1, 32),
)
def test_normalisation_properties(n, data, mode, divisor, min_value):
  if mode == "number":
    choices = data.draw(st.lists(st.integers(1, n), max_size=6))
  else:
    choices = data.draw(st.lists(st.floats(1e-3, 1.0), max_size=6))
  counts = normalize_candidates(n, choices, mode, divisor, min_value)
  assert counts == tuple(sorted(set(counts))) and counts
  assert all(1 <= k <= n for k in counts)
  reachable = {min(n, make_divisible(v, divisor, min_value)) for v in range(1, n + 1)}
  assert set(counts) <= reachable
  for choice in choices:
    requested = choice if mode == "number" else ratio_to_number(choice, n)
    rounded = requested if requested in reachable else min(n, make_divisible(requested, divisor, min_value))
    assert rounded in counts
    if min_value % divisor == 0 or min_value < divisor:  # the usual arguments: MMRazor's numbers exactly
      assert min(n, make_divisible(requested, divisor, min_value)) in counts
  # Normalising the normalised list (as a round trip through init_args does) changes nothing.
  again = counts if mode == "number" else [k / n for k in counts]
  assert normalize_candidates(n, again, mode, divisor, min_value) == counts


@pytest.mark.parametrize(
  "args, error, match",
  [
    ((48, (0, 10), "number"), SearchSpaceError, r"candidate 0 is outside \(0, num_channels=48\]"),
    ((48, (49,), "number"), SearchSpaceError, "outside"),
    ((48, (0.5, 1.5), "ratio"), SearchSpaceError, r"ratio 1.5 is outside \(0, 1\]"),
    ((48, (0.0,), "ratio"), SearchSpaceError, "outside"),
    ((48, (0.5,), "number"), ConfigTypeError, "number mode"),
    ((48, (1,), "ratio"), ConfigTypeError, "ratio mode"),
    ((48, "0.5", "ratio"), ConfigTypeError, "list of numbers"),
    ((48, (0.5,), "percent"), ConfigError, "choice_mode"),
    ((0, (0.5,), "ratio"), SearchSpaceError, "num_channels"),
  ],
)
def test_normalisation_errors(args, error, match):
  with pytest.raises(error, match=match):
    normalize_candidates(*args, where="backbone.conv1_(0, 48)_48")


def test_errors_name_the_unit():
  with pytest.raises(SearchSpaceError, match="'backbone.conv1_"):
    normalize_candidates(48, (60,), "number", where="backbone.conv1_(0, 48)_48")


def test_index_space():
  space = ChannelSpace(48, (32, 24, 48), choice_mode="ratio")
  assert isinstance(space, SearchSpace) and space.ordered and not space.is_sequential
  assert space.candidates == (24, 32, 48)
  assert space.names == (0.5, 2 / 3, 1.0) and space.num_choices == 3
  assert int(space.max()) == 2 and int(space.min()) == 0
  assert space.check(1, "u") == 1 and isinstance(space.check(1, "u"), np.int32)
  assert [space.kept(i) for i in range(3)] == [24, 32, 48]
  assert [space.export(i) for i in range(3)] == [0.5, 2 / 3, 1.0]
  assert ChannelSpace(48, (24, 48)).export(0) == 24
  assert int(jax.jit(lambda i: space.check(i, "u"))(jnp.int32(9))) == 2  # traced: clipped
  assert int(jax.jit(lambda i: space.kept(space.check(i, "u")))(jnp.int32(1))) == 32
  assert ChannelSpace(48, (24, 48)) == ChannelSpace(48, [48, 24]) != ChannelSpace(48, (24, 48), choice_mode="ratio")
  assert hash(space) == hash(ChannelSpace(48, (24, 32, 48), choice_mode="ratio"))


def test_index_space_load():
  space = ChannelSpace(48, (16, 24, 32), choice_mode="ratio")
  assert int(space.load(1 / 3, "u")) == 0
  assert int(space.load(0.333333, "u")) == 0  # a ratio rounded to 6 digits
  assert int(space.load(24, "u")) == 1  # an int is a number of channels in either mode
  assert int(space.load(np.int64(32), "u")) == 2
  for bad, match in [
    (0.3, "not among the unit's candidates"),
    (20, "not among"),
    (0, r"outside \[1, num_channels=48\]"),
    (64, "outside"),
    (1.5, r"outside \(0, 1\]"),
    ("half", "number of channels"),
    (True, "number"),
  ]:
    with pytest.raises(SubnetFileError, match=match):
      space.load(bad, "backbone.conv1_(0, 48)_48")


def test_sequential_space():
  space = ChannelSpace(48, None, divisor=8)
  assert space.is_sequential and space.kept_counts == (8, 16, 24, 32, 40, 48)
  assert space.width_candidates == (8, 16, 24, 32, 40, 48)
  assert ChannelSpace(10).width_candidates is None  # every width reachable
  assert int(space.check(20, "u")) == 24  # made divisible, as MMRazor's setter
  assert int(space.max()) == 48 and int(space.min()) == 8
  assert int(jax.jit(lambda v: space.check(v, "u"))(jnp.int32(0))) == 8  # traced: clipped to 1, then rounded
  assert space.export(20) == 24 and ChannelSpace(48, None, "ratio", divisor=8).export(20) == 0.5
  assert int(space.load(0.3, "u")) == 16 and int(space.load(20, "u")) == 24  # MMRazor's unit tests
  assert int(ChannelSpace(48, None, "ratio", divisor=8).load(0.3, "u")) == 16
  # MMRazor: SequentialMutableChannelUnit(624, divisor=48, min_value=528) samples from [528, 576, 624].
  big = ChannelSpace(624, None, divisor=48, min_value=528)
  samples = jax.jit(jax.vmap(big.sample))(jax.random.split(jax.random.key(0), 2000))
  assert set(np.asarray(samples).tolist()) == {528, 576, 624}
  with pytest.raises(SubnetFileError, match="outside"):
    space.load(49, "u")
  assert "sequential" in space.describe() and "divisor=8" in space.describe()


def test_sampling_is_uniform_among_candidates():
  space = ChannelSpace(64, (16, 32, 48, 64))
  keys = jax.random.split(jax.random.key(1), 10_000)
  choices = np.asarray(jax.jit(jax.vmap(space.sample))(keys))
  counts = np.bincount(choices, minlength=4)
  assert choices.dtype == np.int32 and counts.sum() == 10_000
  assert np.all(np.abs(counts - 2500) < 200)
  seq = ChannelSpace(16)
  widths = np.asarray(jax.jit(jax.vmap(seq.sample))(keys))
  assert widths.min() >= 1 and widths.max() <= 16 and len(set(widths.tolist())) == 16


@pytest.mark.parametrize(
  "choice, error",
  [
    (3, ChoiceError),
    (-1, ChoiceError),
    (1.0, ChoiceTypeError),
    (True, ChoiceTypeError),
    (np.zeros(2, int), ChoiceError),
  ],
)
def test_index_check_errors(choice, error):
  with pytest.raises(error):
    ChannelSpace(48, (24, 32, 48)).check(choice, "u")


@pytest.mark.parametrize(
  "choice, error, match",
  [
    (49, ChoiceError, r"width 49 is outside \[1, num_channels=48\]"),
    (0, ChoiceError, "outside"),
    (0.5, ChoiceTypeError, "ratio"),
    (True, ChoiceTypeError, "int"),
    (np.zeros(2, int), ChoiceError, "scalar"),
  ],
)
def test_sequential_check_errors(choice, error, match):
  with pytest.raises(error, match=match):
    ChannelSpace(48).check(choice, "backbone.conv1_(0, 48)_48")


@pytest.mark.parametrize(
  "kwargs, error",
  [
    (dict(num_channels=8, candidates=(0, 8)), SearchSpaceError),
    (dict(num_channels=8, candidates=(9,)), SearchSpaceError),
    (dict(num_channels=8, candidates=()), SearchSpaceError),
    (dict(num_channels=8, candidates=(0.5,)), ConfigTypeError),
    (dict(num_channels=0), SearchSpaceError),
    (dict(num_channels=8, choice_mode="percent"), ConfigError),
    (dict(num_channels=8, divisor=0), ConfigError),
    (dict(num_channels=8, min_ratio=1.5), ConfigError),
  ],
)
def test_space_construction_errors(kwargs, error):
  with pytest.raises(error):
    ChannelSpace(**kwargs)
