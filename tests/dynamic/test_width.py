"""Width: construction, normalisation of width arguments, buckets."""

from __future__ import annotations

import jax
import jax.numpy as jnp
import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from jaxmutate import errors
from jaxmutate.dynamic import Width, as_width, bucket_widths


def test_candidates_are_sorted_and_deduplicated():
  assert Width(8, 32, candidates=[32, 8, 16, 8]).candidates == (8, 16, 32)


@pytest.mark.parametrize("candidates", [(0, 8), (8, 33), (), (8.0, 16)])
def test_bad_candidates_raise_search_space_error(candidates):
  with pytest.raises(errors.SearchSpaceError):
    Width(8, 32, candidates=candidates)


@pytest.mark.parametrize("num_channels", [0, -1, 2.0, True])
def test_bad_num_channels_raise(num_channels):
  with pytest.raises(errors.SearchSpaceError):
    Width(1, num_channels)


def test_width_is_a_pytree_with_static_metadata():
  w = Width(jnp.int32(8), 32, candidates=(8, 32), unit="u")
  leaves, treedef = jax.tree.flatten(w)
  assert len(leaves) == 1
  back = jax.tree.unflatten(treedef, leaves)
  assert back.candidates == (8, 32) and back.unit == "u" and back.num_channels == 32
  sums = jax.jit(jax.vmap(lambda w: w.mask().sum()))(Width(jnp.array([1, 8, 32]), 32))
  assert sums.tolist() == [1, 8, 32]


def test_mask_with_an_order_keeps_the_first_entries_of_the_order():
  order = jnp.array([3, 0, 2, 1])
  assert Width(2, 4, order=order).mask().tolist() == [True, False, False, True]


def test_traced_mask_is_clipped_into_range():
  f = jax.jit(lambda v: Width(v, 8, candidates=(2, 4)).mask().sum())
  assert int(f(100)) == 4 and int(f(-3)) == 1


def test_as_width_accepts_ints_arrays_widths_and_none():
  assert as_width(None, 16).value == 16
  assert as_width(3, 16).value == 3
  assert as_width(np.int64(3), 16).value == 3
  assert as_width(jnp.int32(3), 16).value == 3
  assert as_width(Width(4, 16, unit="u"), 16).unit == "u"


@pytest.mark.parametrize("width", [17, 0, -2])
def test_out_of_range_width_names_the_layer_and_the_maximum(width):
  with pytest.raises(errors.ChoiceError, match=r"conv1.*16"):
    as_width(width, 16, layer="conv1")


@pytest.mark.parametrize("width", [2.0, np.float32(2.0), jnp.float32(2.0), True, "8"])
def test_non_integer_widths_raise_choice_type_error(width):
  with pytest.raises(errors.ChoiceTypeError):
    as_width(width, 16, layer="conv1")


def test_float_traced_width_raises_choice_type_error():
  with pytest.raises(errors.ChoiceTypeError):
    jax.jit(lambda v: as_width(v, 16).value)(jnp.float32(3.0))


def test_width_of_another_unit_raises_search_space_error():
  with pytest.raises(errors.SearchSpaceError, match="num_channels=32"):
    as_width(Width(8, 32), 16, layer="conv1")


def test_concrete_width_not_among_candidates_raises():
  with pytest.raises(errors.ChoiceError, match="candidates"):
    as_width(Width(12, 32, candidates=(8, 16, 32)), 32)


def test_non_scalar_width_raises():
  with pytest.raises(errors.ChoiceError, match="scalar"):
    as_width(jnp.array([1, 2]), 16)


def test_order_must_be_a_permutation():
  with pytest.raises(errors.SearchSpaceError, match="permutation"):
    as_width(Width(2, 4, order=np.array([0, 0, 1, 2])), 4)
  with pytest.raises(errors.SearchSpaceError, match="shape"):
    as_width(Width(2, 4, order=np.arange(3)), 4)


def test_bucket_widths_examples():
  assert bucket_widths(32, (8, 16, 24, 32)) == (8, 16, 24, 32)
  assert bucket_widths(32, (8, 16, 24, 32), max_buckets=2) == (8, 32)
  assert bucket_widths(32) == (8, 16, 24, 32)
  assert bucket_widths(32, max_buckets=1) == (32,)
  assert bucket_widths(12, (2, 5, 12), multiple_of=3) == (3, 6, 12)


@pytest.mark.parametrize("max_buckets", [0, 1.5, True])
def test_bad_max_buckets_raise(max_buckets):
  with pytest.raises(errors.SearchSpaceError):
    bucket_widths(8, max_buckets=max_buckets)


@settings(max_examples=100, deadline=None)
@given(
  n=st.integers(1, 96),
  data=st.data(),
  max_buckets=st.integers(1, 6),
)
def test_buckets_are_few_sorted_and_cover_every_candidate(n, data, max_buckets):
  candidates = data.draw(st.none() | st.lists(st.integers(1, n), min_size=1, max_size=12))
  buckets = bucket_widths(n, candidates, max_buckets)
  assert len(buckets) <= max_buckets
  assert list(buckets) == sorted(set(buckets))
  pool = range(1, n + 1) if candidates is None else sorted(set(candidates))
  # Every reachable width rounds up to a bucket; the largest one is a bucket.
  assert buckets[-1] == max(pool)
  if candidates is not None and max_buckets >= 2:
    assert buckets[0] == min(pool)
  assert all(any(b >= c for b in buckets) for c in pool)
