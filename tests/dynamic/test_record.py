"""Dynamic layers record, at init, which units' channels their axes carry (LayerChannels in ``mutables``)."""

from __future__ import annotations

import flax.linen as nn
import jax
import jax.numpy as jnp
import pytest

import jaxmutate as jm
from jaxmutate import dynamic
from jaxmutate.channels import MutableWidth, OneShotMutableChannelUnit, SlimmableChannelUnit, Value, concat, divide
from jaxmutate.dynamic import CHANNELS_KEY, LayerChannels, Width, width_spans
from jaxmutate.mutables import MUTABLES_COLLECTION

X = jnp.ones((2, 8, 8, 3))


class Net(nn.Module):
  """Every layer kind and every kind of width: unit, expanded, divided, product, concat, plain, none."""

  @nn.compact
  def __call__(self, x, choices):
    u1 = OneShotMutableChannelUnit(8, (0.5, 1.0), name="u1")(choices)
    u2 = OneShotMutableChannelUnit(4, (0.5, 1.0), name="u2")(choices)
    s = SlimmableChannelUnit(8, (4, 8), name="s")(choices)
    expand = Value.of(jm.OneShotMutableValue([1, 2], name="expand"), choices)
    h = dynamic.DynamicConv(8, 3, name="conv1")(x, out_width=u1)
    h = dynamic.DynamicBatchNorm(use_running_average=True, name="bn1")(h, u1)
    h = dynamic.DynamicDepthwiseConv(3, name="dw")(h, u1)
    wide = dynamic.DynamicConv(16, 1, name="expand_conv")(h, out_width=u1 * 2, in_width=u1)
    prod = dynamic.DynamicConv(8, 1, name="prod_conv")(h, out_width=u2 * expand, in_width=u1)
    g = dynamic.DynamicConv(4, 1, name="conv2")(wide, out_width=u2, in_width=u1 * 2)
    g = dynamic.DynamicLayerNorm(name="ln")(g, u2)
    cat = jnp.concatenate([h, g], axis=-1)
    f = dynamic.DynamicDense(4, name="fc1")(cat.mean((1, 2)), out_width=divide(u1, 2, 2), in_width=concat([u1, u2]))
    t = dynamic.DynamicConv(8, 1, name="slim")(x, out_width=s)
    t = dynamic.SwitchableBatchNorm((4, 8), use_running_average=True, name="sbn")(t, s)
    plain = dynamic.DynamicDense(5, name="plain")(f, out_width=Width(3, 5, unit="label"), in_width=2)
    none = dynamic.DynamicDense(5, name="none")(plain, out_width=3, in_width=Width(4, 5))
    return none, prod, t


@pytest.fixture(scope="module")
def records():
  variables = jax.jit(Net().init)(jax.random.key(0), X, None)
  found, orders = {}, {}

  def walk(node):
    if isinstance(node, LayerChannels):
      found[node.path] = node.replace(order=0)  # compared below without their definition order
      orders[node.path] = node.order
    elif isinstance(node, dict):
      for value in node.values():
        walk(value)

  walk(variables[MUTABLES_COLLECTION])
  return variables, found, orders


def test_records_keep_definition_order_through_a_jitted_init(records):
  _, _, orders = records
  # The jitted init returns the dicts sorted by key ("bn1" < "conv1"); the order field keeps the call order.
  assert orders["conv1"] < orders["bn1"] < orders["dw"] < orders["fc1"]


def test_every_layer_given_a_unit_records_its_spans(records):
  _, found, _ = records
  assert found["conv1"] == LayerChannels("conv1", "DynamicConv", output=(("u1", 0, 8),), input=())
  assert found["bn1"] == LayerChannels("bn1", "DynamicBatchNorm", output=(("u1", 0, 8),), input=(("u1", 0, 8),))
  assert found["dw"] == LayerChannels("dw", "DynamicDepthwiseConv", output=(("u1", 0, 8),), input=(("u1", 0, 8),))
  assert found["expand_conv"].output == (("u1", 0, 16),) and found["expand_conv"].input == (("u1", 0, 8),)
  assert found["prod_conv"].output == (("u2", 0, 8),)  # the value mutable is not a channel source
  assert found["conv2"].input == (("u1", 0, 16),) and found["conv2"].output == (("u2", 0, 4),)
  assert found["ln"] == LayerChannels("ln", "DynamicLayerNorm", output=(("u2", 0, 4),), input=(("u2", 0, 4),))
  assert found["fc1"].input == (("u1", 0, 8), ("u2", 8, 12))  # one span per concatenated part
  assert found["fc1"].output == (("u1", 0, 4),)
  assert found["fc1"].units == ("u1", "u2")
  assert found["sbn"] == LayerChannels("sbn", "SwitchableBatchNorm", output=(("s", 0, 8),), input=(("s", 0, 8),))
  assert found["plain"] == LayerChannels("plain", "DynamicDense", output=(("label", 0, 5),), input=())
  assert "none" not in found  # no width names a unit


def test_records_are_static_and_sit_under_the_layer_path(records):
  variables, _, _ = records
  assert jax.tree.leaves(variables[MUTABLES_COLLECTION]) == []
  assert isinstance(variables[MUTABLES_COLLECTION]["conv1"][CHANNELS_KEY], LayerChannels)
  # The collection passes through jit unchanged (no arrays).
  out = jax.jit(lambda v: Net().apply(v, X, {"u1": 0, "u2": 1, "s": 0, "expand": 1}))(variables)
  assert out[0].shape == (2, 5)


def test_a_layer_called_twice_records_once_and_layers_in_candidates_record_their_path():
  class Shared(nn.Module):
    @nn.compact
    def __call__(self, x, choices):
      u = OneShotMutableChannelUnit(3, (1, 3), choice_mode="number", name="u")(choices)
      dense = dynamic.DynamicDense(3, name="shared")
      x = dense(dense(x, out_width=u), out_width=u, in_width=u)
      ops = {"a": dynamic.DynamicDense(3), "b": dynamic.DynamicDense(3, use_bias=False)}
      return jm.OneShotMutableOP(ops, name="op")(x, choices)

  variables = Shared().init(jax.random.key(0), jnp.ones((1, 3)), None)
  records = variables[MUTABLES_COLLECTION]
  assert records["shared"][CHANNELS_KEY].replace(order=0) == LayerChannels(
    "shared", "DynamicDense", output=(("u", 0, 3),)
  )
  assert "a" not in records["op"]  # the candidates got no unit
  assert set(records["op"]) == {"spec"}

  class Labelled(nn.Module):
    @nn.compact
    def __call__(self, x):
      return dynamic.DynamicLayerNorm(name="norm")(x, Width(2, 3, unit="unit"))

  op = jm.OneShotMutableOP({"c": Labelled(), "d": Labelled()}, name="op")
  variables = op.init(jax.random.key(0), jnp.ones((1, 3)), None)
  assert variables[MUTABLES_COLLECTION]["c"]["norm"][CHANNELS_KEY].path == "c.norm"


def test_nothing_is_recorded_outside_init_or_in_static_mode():
  conv = dynamic.DynamicConv(4, 1)
  width = Width(2, 4, unit="u")
  variables = conv.init(jax.random.key(0), X, out_width=width)
  assert variables[MUTABLES_COLLECTION][CHANNELS_KEY].output == (("u", 0, 4),)
  _, state = conv.apply(variables, X, out_width=width, mutable=[MUTABLES_COLLECTION])
  assert state[MUTABLES_COLLECTION] == variables[MUTABLES_COLLECTION]
  with dynamic.static_mode():
    static = conv.init(jax.random.key(0), X, out_width=width)
  assert MUTABLES_COLLECTION not in static


def test_width_spans():
  u = MutableWidth(4, 8, candidates=(4, 8), unit="u", sources=("u",))
  v = MutableWidth(2, 4, unit="v", sources=("v",))
  assert width_spans(u, 8) == (("u", 0, 8),)
  assert width_spans(u * 2, 16) == (("u", 0, 16),)
  assert width_spans(divide(u, 2, 2), 4) == (("u", 0, 4),)
  assert width_spans(u * Value(2, (1, 2), sources=("expand",)), 16) == (("u", 0, 16),)
  assert width_spans(concat([u, v, u]), 20) == (("u", 0, 8), ("v", 8, 12), ("u", 12, 20))
  assert width_spans(jnp.int32(3), 8) == width_spans(None, 8) == width_spans(Width(3, 8), 8) == ()
