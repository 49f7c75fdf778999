"""DerivedMutable arithmetic on widths and values: MMRazor's numbers, concrete and traced alike."""

from __future__ import annotations

import flax.linen as nn
import jax
import jax.numpy as jnp
import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

import jaxmutate as jm
from jaxmutate import dynamic
from jaxmutate.channels import (
  DerivedMutable,
  MutableWidth,
  OneShotMutableChannelUnit,
  SequentialMutableChannelUnit,
  Value,
  concat,
  divide,
  expand,
  make_divisible,
  product,
  same,
)
from jaxmutate.errors import ChoiceError, ConfigError, ConfigTypeError, SearchSpaceError


def channel(num_channels, value=None, name="c", candidates=None):
  """MMRazor's SquentialMutableChannel(num_channels) set to ``value`` (the full width by default)."""
  return MutableWidth(num_channels if value is None else value, num_channels, candidates, unit=name, sources=(name,))


def assert_same(a, b):
  """Two widths with the same static fields and the same leaves (== would compare order arrays elementwise)."""
  assert jax.tree.structure(a) == jax.tree.structure(b)
  for x, y in zip(jax.tree.leaves(a), jax.tree.leaves(b)):
    np.testing.assert_array_equal(x, y)


def np_mask(width):
  """The kept channels computed with NumPy from ``value`` and ``order`` (no per-shape jnp dispatch)."""
  kept = np.zeros(width.num_channels, int)
  order = np.arange(width.num_channels) if width.order is None else np.asarray(width.order)
  kept[order[: int(width.value)]] = 1
  return kept.tolist()


def mask(width):
  return np.asarray(width.mask()).astype(int).tolist()


# MMRazor's test numbers (tests/test_models/test_mutables/test_derived_mutable.py and
# test_mutable_channel/test_sequential_mutable_channel.py).


def test_mul_float():
  assert (channel(10) * 0.5).value == 5
  assert (channel(10, 5) * 0.5).value == 2
  assert (channel(10) * 0.5).num_channels == 5


def test_expand():
  derived = channel(3, 1) * 3
  assert isinstance(derived, DerivedMutable) and derived.sources == ("c",) and derived.derivation == "expand"
  assert derived.value == 3 and mask(derived) == [1, 1, 1, 0, 0, 0, 0, 0, 0]
  derived = channel(3, 2) * 3
  assert derived.value == 6 and mask(derived) == [1, 1, 1, 1, 1, 1, 0, 0, 0]
  assert (3 * channel(3, 2)).value == 6
  assert_same(channel(3, 2).derive_expand_mutable(3), derived)


def test_divide():
  derived = channel(128, 128) // 8
  assert derived.sources == ("c",) and derived.value == 16 and mask(derived) == [1] * 16
  assert (channel(128, 120) // 8).value == 16
  assert (channel(128, 120) // 8.9).value == 16  # a float ratio counts as int(ratio), divisor 8
  assert (channel(128, 120) // (4, 16)).value == 32
  assert divide(channel(96, 96), 4, 8).value == 24  # MobileNet's SE channels: expand // (4, 8)
  assert_same(channel(128, 120).derive_divide_mutable(8), channel(128, 120) // 8)


@pytest.mark.parametrize("chosen", [112, 120, 128])
def test_value_divide(chosen):
  mv = Value(chosen, (112, 120, 128), sources=("mv",))
  derived = mv // 8
  assert isinstance(derived, Value) and derived.sources == ("mv",) and derived.value == 16
  assert derived.candidates == (16,)


@pytest.mark.parametrize("expand_ratio", [1, 2, 3])
def test_value_expand(expand_ratio):
  for chosen in (3, 5, 7):
    derived = Value(chosen, (3, 5, 7), sources=("mv",)) * expand_ratio
    assert derived.value == chosen * expand_ratio and derived.derivation == "expand"
  assert (Value(3, (2, 3, 4), sources=("mv",)) * 2).value == 6
  assert (Value(4, (2, 3, 4), sources=("mv",)) * 2).value == 8


def test_same():
  derived = same(channel(3, 2))
  assert derived.sources == ("c",) and derived.value == 2 and mask(derived) == [1, 1, 0]
  assert_same(channel(3, 2).derive_same_mutable(), derived)
  ordered = MutableWidth(2, 3, unit="l1", sources=("l1",), order=np.array([2, 0, 1]))
  assert mask(same(ordered)) == [1, 0, 1]  # the same channels


def test_concat():
  mc1, mc2 = channel(3, 1, "mc1"), channel(4, 4, "mc2")
  derived = concat([mc1, mc2])
  assert derived.sources == ("mc1", "mc2") and derived.value == 5
  assert mask(derived) == [1, 0, 0, 1, 1, 1, 1]
  derived = concat([mc1, channel(4, 1, "mc2")])
  assert derived.value == 2 and mask(derived) == [1, 0, 0, 1, 0, 0, 0]
  assert derived.spans == (("mc1", 0, 3), ("mc2", 3, 7)) and derived.unit == "concat(mc1, mc2)"
  assert_same(MutableWidth.derive_concat_mutable([mc1, mc2]), concat([mc1, mc2]))
  # All but the last part full: a prefix, and no order.
  assert concat([channel(3, 3, "a"), channel(4, 2, "b")]).order is None
  with pytest.raises(ConfigTypeError, match="channel width"):
    concat([mc1, Value(1, (1, 2, 3), sources=("mv",))])


def test_nested():
  source_a, source_b = channel(2, 1, "a"), channel(3, 3, "b")
  derived_c = source_a * 1
  derived_d = concat([source_b, derived_c])
  derived_e = concat([derived_c, derived_d])
  assert derived_c.sources == ("a",) and set(derived_d.sources) == set(derived_e.sources) == {"a", "b"}
  assert derived_c.value == 1 and mask(derived_c) == [1, 0]
  assert derived_d.value == 4 and mask(derived_d) == [1, 1, 1, 1, 0]
  assert derived_e.value == 5 and mask(derived_e) == [1, 0, 1, 1, 1, 1, 0]
  assert derived_e.spans == (("a", 0, 2), ("b", 2, 5), ("a", 5, 7))


def test_live_product():
  mv = Value(3, (1, 2, 3), sources=("mv",))
  derived1, derived2 = channel(2) * mv, mv * channel(2)
  assert derived1.value == derived2.value == 6 and derived1.num_channels == 6
  assert derived1.sources == ("c", "mv") and derived1.derivation == "product" and derived1.unit == "c"
  low = mv.replace(value=1)
  assert (channel(2) * low).value == (low * channel(2)).value == 2
  assert mask(channel(2) * low) == mask(low * channel(2)) == [1, 1, 0, 0, 0, 0]
  assert product(channel(4, candidates=(2, 4)), Value(6, (3, 6), sources=("e",))).candidates == (6, 12, 24)
  assert_same(expand(channel(2), mv), derived1)  # a Value as the expand ratio is the live product


def test_live_product_in_a_supernet(key):
  class Block(nn.Module):
    @nn.compact
    def __call__(self, x, choices):
      width = OneShotMutableChannelUnit(8, (4, 8), choice_mode="number", name="unit")(choices)
      ratio = Value.of(jm.OneShotMutableValue([3, 6], name="expand"), choices)
      hidden = width * ratio
      x = dynamic.DynamicConv(8, 1, name="conv")(x, out_width=width)
      x = dynamic.DynamicConv(hidden.num_channels, 1, name="expand_conv")(x, in_width=width, out_width=hidden)
      return x, hidden

  block, x = Block(), jnp.ones((1, 2, 2, 3))
  variables = block.init(key, x, None)
  assert variables["params"]["expand_conv"]["kernel"].shape[-1] == 48
  run = jax.jit(jax.vmap(lambda c: block.apply(variables, x, c)))
  choices = {"unit": jnp.array([0, 0, 1, 1]), "expand": jnp.array([0, 1, 0, 1])}
  y, hidden = run(choices)
  assert hidden.value.tolist() == [12, 24, 24, 48] and hidden.candidates == (12, 24, 48)
  for i in range(4):
    yi, hi = block.apply(variables, x, {k: int(v[i]) for k, v in choices.items()})
    assert hi.value == int(hidden.value[i])
    np.testing.assert_allclose(y[i], yi, rtol=1e-5, atol=1e-5)


def _derivations():
  value = Value(6, (2, 4, 6), sources=("e",))
  return {
    "expand 0.5": lambda w: expand(w, 0.5),
    "expand 1.5": lambda w: w * 1.5,
    "expand 3": lambda w: 3 * w,
    "divide 8": lambda w: w // 8,
    "divide 3, 4": lambda w: w // (3, 4),
    "divide 1.5, 8": lambda w: divide(w, 1.5, 8),
    "same": same,
    "product": lambda w: w * value.replace(value=4),
    "concat": lambda w: concat([w, channel(5, 3, "other"), w]),
    "nested": lambda w: concat([w * 2, w // 2]) // 4,
  }


@pytest.mark.parametrize("name", list(_derivations()))
@pytest.mark.parametrize("candidates", [None, (3, 7, 12, 20)], ids=["sequential", "one-shot"])
def test_traced_values_equal_concrete_values(name, candidates):
  derive = _derivations()[name]
  source = channel(20, 20, "src", candidates)
  counts = candidates or range(1, 21)
  traced, masks = jax.jit(jax.vmap(lambda v: (lambda d: (d, d.mask()))(derive(source.replace(value=v)))))(
    jnp.asarray(list(counts), jnp.int32)
  )
  for i, k in enumerate(counts):
    concrete = derive(source.replace(value=k))
    assert int(traced.value[i]) == concrete.value, (name, k)
    assert concrete.value in (concrete.candidates or range(1, concrete.num_channels + 1))
    assert 1 <= concrete.value <= concrete.num_channels
    np.testing.assert_array_equal(masks[i], np.asarray(concrete.mask()))
  assert traced.candidates == derive(source).candidates and traced.num_channels == derive(source).num_channels


@settings(max_examples=25, deadline=None)
@given(
  n=st.integers(1, 64),
  ratio=st.one_of(st.integers(1, 4), st.floats(0.05, 4.0)),
  divisor=st.integers(1, 16),
  data=st.data(),
)
def test_derived_numbers_are_mmrazors(n, ratio, divisor, data):
  k = data.draw(st.integers(1, n))
  source = channel(n, k)
  if int(n * ratio) >= 1:
    expanded = expand(source, ratio)
    assert expanded.value == max(1, int(k * ratio)) and expanded.num_channels == int(n * ratio)
  divided = divide(source, ratio, divisor)
  assert divided.value == min(divided.num_channels, make_divisible(k // ratio, divisor))
  assert divided.num_channels == make_divisible(n // ratio, divisor)
  m = data.draw(st.integers(1, n))
  joined = concat([source, channel(n, m, "d")])
  assert joined.value == k + m and np_mask(joined) == [1] * k + [0] * (n - k) + [1] * m + [0] * (n - m)


def test_ten_thousand_derived_widths_in_one_call(key):
  class Net(nn.Module):
    @nn.compact
    def __call__(self, choices):
      a = SequentialMutableChannelUnit(64, divisor=8, name="a")(choices)
      b = OneShotMutableChannelUnit(32, (0.25, 0.5, 1.0), name="b")(choices)
      ratio = Value.of(jm.OneShotMutableValue([2, 4, 6], name="ratio"), choices)
      joined = concat([a, b])
      return joined.value, joined.mask().sum(), (a * ratio).value, (joined // 8).value

  net = Net()
  variables = net.init(key, None)
  mutator_free = {"a": jm.channels.ChannelSpace(64, None, divisor=8), "b": jm.channels.ChannelSpace(32, (8, 16, 32))}

  def run(k):
    ka, kb, kr = jax.random.split(k, 3)
    choices = {"a": mutator_free["a"].sample(ka), "b": mutator_free["b"].sample(kb)}
    choices["ratio"] = jax.random.randint(kr, (), 0, 3)
    return choices, net.apply(variables, choices)

  choices, (joined, kept, hidden, divided) = jax.jit(jax.vmap(run))(jax.random.split(key, 10_000))
  a = np.asarray(choices["a"])
  b = np.asarray([8, 16, 32])[np.asarray(choices["b"])]
  ratio = np.asarray([2, 4, 6])[np.asarray(choices["ratio"])]
  np.testing.assert_array_equal(joined, a + b)
  np.testing.assert_array_equal(kept, a + b)
  np.testing.assert_array_equal(hidden, a * ratio)
  np.testing.assert_array_equal(divided, [make_divisible(int(v) // 8, 8) for v in a + b])


def test_value_of_reads_a_value_mutable(key):
  class Net(nn.Module):
    @nn.compact
    def __call__(self, choices):
      return Value.of(jm.OneShotMutableValue([6, 3], name="r"), choices)

  value, _ = Net().init_with_output(key, None)
  assert value.candidates == (3, 6) and value.sources == ("r",) and int(value.value) == 6
  with pytest.raises(ConfigTypeError, match="value mutable"):
    Value.of(nn.Dense(2), None)


def test_errors():
  with pytest.raises(SearchSpaceError, match="cannot find the source"):
    expand(dynamic.Width(3, 4), 2)
  with pytest.raises(SearchSpaceError, match="cannot find the source"):
    concat([channel(3), dynamic.Width(2, 4)])
  with pytest.raises(SearchSpaceError, match="at least 1"):
    channel(1) * 0.5
  with pytest.raises(ConfigError, match="> 0"):
    channel(8) * -1
  with pytest.raises(ConfigTypeError, match="Value.of"):
    channel(8) * jnp.float32(2)
  with pytest.raises(ConfigTypeError, match="Unsupported"):
    channel(8) // "2"
  with pytest.raises(ConfigTypeError, match="pair"):
    channel(8) // (1, 2, 3)
  with pytest.raises(ConfigTypeError, match="not supported"):
    channel(8) // Value(2, (2, 4))
  with pytest.raises(ConfigTypeError, match="must be a Value"):
    product(channel(8), 2)
  with pytest.raises(SearchSpaceError, match="> 0"):
    product(channel(8), Value(1, (0, 1)))
  with pytest.raises(SearchSpaceError, match="candidates"):
    Value(1, ())
  with pytest.raises(ConfigError, match="non-empty list"):
    concat([])
  with pytest.raises(ConfigError, match="divisor"):
    divide(channel(8), 2, 0)
  # A width larger than its unit, or not among its candidates.
  with pytest.raises(ChoiceError, match=r"width 9 is outside \[1, num_channels=8\] \(unit 'c'\)"):
    channel(8, 9) * 2
  with pytest.raises(ChoiceError, match="not among"):
    channel(8, 3, candidates=(4, 8)) // 2
  with pytest.raises(ChoiceError, match="not among the value's candidates"):
    channel(8) * Value(5, (2, 4))
  with pytest.raises(ChoiceError, match="jax.vmap"):
    concat([channel(3, jnp.array([1, 2])), channel(3)])
