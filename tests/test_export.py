"""export_subnet: a static network with the sliced supernet weights; save_subnet/load_subnet in a fresh process."""

from __future__ import annotations

import importlib
import math
import subprocess
import sys

import chex
import flax.linen as nn
import jax
import jax.extend
import jax.numpy as jnp
import numpy as np
import optax
import pytest

import jaxmutate as jm
from jaxmutate import dynamic
from jaxmutate.channels import (
  L1MutableChannelUnit,
  OneShotMutableChannelUnit,
  SlimmableChannelUnit,
  Value,
  concat,
  l1_channel_order,
)
from jaxmutate.errors import (
  ChoiceTypeError,
  ConfigError,
  ConfigTypeError,
  MissingChoiceError,
  SearchSpaceError,
  SubnetFileError,
  TracedChoiceError,
)
from jaxmutate.export import FixedChoices, FixedSubnet, export_subnet, load_subnet, module_config, save_subnet

X = jax.random.normal(jax.random.key(1), (2, 8, 8, 3))


class ResNet(nn.Module):
  """A stem op choice, a unit shared by a residual add, a second unit after a strided conv."""

  @nn.compact
  def __call__(self, x, choices, train=False):
    ura = not train
    stem = {"k1": nn.Conv(6, (1, 1)), "k3": nn.Conv(6, (3, 3))}
    x = jm.OneShotMutableOP(stem, name="stem")(x, choices)
    u1 = OneShotMutableChannelUnit(8, (0.25, 0.5, 1.0), name="u1")(choices)
    u2 = OneShotMutableChannelUnit(16, (0.25, 0.5, 0.75, 1.0), name="u2")(choices)
    h = dynamic.DynamicConv(8, 3, use_bias=False, name="conv1")(x, out_width=u1)
    h = nn.relu(dynamic.DynamicBatchNorm(use_running_average=ura, name="bn1")(h, u1))
    r = dynamic.DynamicConv(8, 3, use_bias=False, name="conv2")(h, out_width=u1, in_width=u1)
    h = h + nn.relu(dynamic.DynamicBatchNorm(use_running_average=ura, name="bn2")(r, u1))
    h = dynamic.DynamicConv(16, 3, strides=2, name="conv3")(h, out_width=u2, in_width=u1)
    h = nn.relu(dynamic.DynamicBatchNorm(use_running_average=ura, name="bn3")(h, u2))
    return dynamic.DynamicDense(10, name="fc")(h.mean((1, 2)), in_width=u2)


def with_stats(variables):
  """Variables with non-trivial BatchNorm statistics, so that slicing them matters."""
  stats = variables["batch_stats"]
  leaves, treedef = jax.tree.flatten(stats)
  keys = jax.random.split(jax.random.key(7), len(leaves))
  noisy = [jnp.abs(leaf + jax.random.normal(k, leaf.shape)) + 0.1 for leaf, k in zip(leaves, keys)]
  return {**variables, "batch_stats": jax.tree.unflatten(treedef, noisy)}


def count(tree):
  return sum(int(np.size(leaf)) for leaf in jax.tree.leaves(tree))


def resnet_params(stem, k1, k2):
  stem_params = (1 if stem == "k1" else 9) * 3 * 6 + 6
  return stem_params + 9 * 6 * k1 + 2 * k1 + 9 * k1 * k1 + 2 * k1 + 9 * k1 * k2 + k2 + 2 * k2 + k2 * 10 + 10


@pytest.fixture(scope="module")
def resnet():
  net = ResNet()
  variables = with_stats(net.init(jax.random.key(0), X, None))
  return net, variables


CHOICES = {"stem": np.int32(1), "u1": np.int32(1), "u2": np.int32(2)}  # k3, 4 of 8, 12 of 16


@pytest.fixture(scope="module")
def exported(resnet):
  net, variables = resnet
  return export_subnet(net, variables, CHOICES, X)


def test_parameters_are_the_sliced_supernet_parameters(resnet, exported):
  net, variables = resnet
  static, static_variables = exported
  params = static_variables["params"]
  assert count(params) == resnet_params("k3", 4, 12) < count(variables["params"])
  assert set(params["stem"]) == {"k3"}  # only the chosen candidate
  assert "mutables" not in static_variables
  supernet = variables["params"]
  np.testing.assert_array_equal(params["conv1"]["kernel"], supernet["conv1"]["kernel"][..., :4])
  np.testing.assert_array_equal(params["conv3"]["kernel"], supernet["conv3"]["kernel"][..., :4, :12])
  np.testing.assert_array_equal(params["fc"]["kernel"], supernet["fc"]["kernel"][:12])
  np.testing.assert_array_equal(
    static_variables["batch_stats"]["bn3"]["var"], variables["batch_stats"]["bn3"]["var"][:12]
  )
  costs = dynamic.dynamic_costs(static, static_variables, X)
  assert int(costs["params"]) == resnet_params("k3", 4, 12) - (9 * 3 * 6 + 6)  # the stem's nn.Conv is not dynamic


def test_output_equals_the_supernet_output(resnet, exported):
  net, variables = resnet
  static, static_variables = exported
  expected = net.apply(variables, X, CHOICES)
  chex.assert_trees_all_close(static.apply(static_variables, X), expected, atol=1e-5, rtol=1e-5)
  traced = jax.jit(lambda c: net.apply(variables, X, c))({k: jnp.int32(v) for k, v in CHOICES.items()})
  chex.assert_trees_all_close(jax.jit(static.apply)(static_variables, X), traced, atol=1e-5, rtol=1e-5)


def test_static_network_has_only_kept_size_convolutions(exported):
  static, static_variables = exported
  jaxpr = jax.make_jaxpr(lambda v, x: static.apply(v, x))(static_variables, X)
  kernels, primitives = [], set()

  def walk(jaxpr):
    for eqn in jaxpr.eqns:
      primitives.add(eqn.primitive.name)
      if eqn.primitive.name == "conv_general_dilated":
        kernels.append(tuple(eqn.invars[1].aval.shape))
      for sub in jax.extend.core.jaxprs_in_params(eqn.params):
        walk(sub)

  walk(jaxpr.jaxpr)
  assert kernels == [(3, 3, 3, 6), (3, 3, 6, 4), (3, 3, 4, 4), (3, 3, 4, 12)]
  assert not primitives & {"slice", "gather", "dynamic_slice", "pad", "select_n", "cond"}


def test_static_network_trains_on_its_own(exported):
  static, static_variables = exported
  labels = jnp.array([1, 7])
  optimizer = optax.sgd(0.1)

  def loss_fn(params, batch_stats):
    logits, updates = static.apply(
      {"params": params, "batch_stats": batch_stats}, X, train=True, mutable=["batch_stats"]
    )
    return optax.softmax_cross_entropy_with_integer_labels(logits, labels).mean(), updates["batch_stats"]

  @jax.jit
  def step(params, batch_stats, opt_state):
    (loss, batch_stats), grads = jax.value_and_grad(loss_fn, has_aux=True)(params, batch_stats)
    updates, opt_state = optimizer.update(grads, opt_state)
    return optax.apply_updates(params, updates), batch_stats, opt_state, loss, grads

  params, batch_stats = static_variables["params"], static_variables["batch_stats"]
  opt_state = optimizer.init(params)
  losses = []
  for _ in range(5):
    params, batch_stats, opt_state, loss, grads = step(params, batch_stats, opt_state)
    losses.append(float(loss))
  chex.assert_trees_all_equal_shapes(grads, static_variables["params"])
  assert all(float(jnp.abs(g).sum()) > 0 for g in jax.tree.leaves(grads))
  assert losses[-1] < losses[0]
  chex.assert_trees_all_equal_shapes(batch_stats, static_variables["batch_stats"])
  assert not np.allclose(batch_stats["bn1"]["mean"], static_variables["batch_stats"]["bn1"]["mean"])


def test_static_network_initialises_with_the_subnet_shapes(exported):
  static, static_variables = exported
  fresh = jax.eval_shape(static.init, jax.random.key(3), X)
  chex.assert_trees_all_equal_shapes_and_dtypes(fresh["params"], static_variables["params"])
  chex.assert_trees_all_equal_shapes_and_dtypes(fresh["batch_stats"], static_variables["batch_stats"])


def test_every_width_configuration_matches(resnet):
  net, variables = resnet
  for stem, u1, u2 in [(0, 0, 0), (1, 2, 3), (0, 2, 1)]:
    choices = {"stem": np.int32(stem), "u1": np.int32(u1), "u2": np.int32(u2)}
    static, static_variables = export_subnet(net, variables, choices, X)
    k1, k2 = (2, 4, 8)[u1], (4, 8, 12, 16)[u2]
    assert count(static_variables["params"]) == resnet_params(("k1", "k3")[stem], k1, k2)
    chex.assert_trees_all_close(
      static.apply(static_variables, X), net.apply(variables, X, choices), atol=1e-5, rtol=1e-5
    )


class L1Net(nn.Module):
  @nn.compact
  def __call__(self, x, choices, order=None):
    u = L1MutableChannelUnit(8, name="u")(choices, order=order)
    h = nn.relu(dynamic.DynamicConv(8, 3, name="conv")(x, out_width=u))
    h = dynamic.DynamicBatchNorm(use_running_average=True, name="bn")(h, u)
    return dynamic.DynamicDense(4, name="fc")(h.mean((1, 2)), in_width=u)


def test_l1_unit_gathers_the_kept_channels():
  net = L1Net()
  variables = with_stats(net.init(jax.random.key(0), X, None))
  kernel = variables["params"]["conv"]["kernel"]
  order = l1_channel_order(kernel)
  choices = {"u": np.int32(3)}
  static, static_variables = export_subnet(net, variables, choices, X, order=order)
  kept = np.asarray(order[:3])
  assert sorted(kept.tolist()) != [0, 1, 2]  # not a prefix
  np.testing.assert_array_equal(static_variables["params"]["conv"]["kernel"], kernel[..., kept])
  np.testing.assert_array_equal(static_variables["params"]["fc"]["kernel"], variables["params"]["fc"]["kernel"][kept])
  np.testing.assert_array_equal(
    static_variables["batch_stats"]["bn"]["mean"], variables["batch_stats"]["bn"]["mean"][kept]
  )
  expected = net.apply(variables, X, choices, order=order)
  chex.assert_trees_all_close(static.apply(static_variables, X), expected, atol=1e-5, rtol=1e-5)


class L1InsideNet(nn.Module):
  """The order computed inside the model from the conv's weights, skipped in the static network."""

  @nn.compact
  def __call__(self, x, choices):
    conv = dynamic.DynamicConv(8, 1, use_bias=False, name="conv")
    skip = self.is_initializing() or dynamic.is_static_mode()
    width = L1MutableChannelUnit(8, name="u")(
      choices, order=None if skip else l1_channel_order(conv.variables["params"]["kernel"])
    )
    return dynamic.DynamicDense(3, name="fc")(conv(x, out_width=width).mean((1, 2)), in_width=width)


def test_l1_order_computed_inside_the_model():
  net = L1InsideNet()
  variables = net.init(jax.random.key(2), X, None)
  static, static_variables = export_subnet(net, variables, {"u": 5}, X)
  kept = np.asarray(l1_channel_order(variables["params"]["conv"]["kernel"])[:5])
  np.testing.assert_array_equal(
    static_variables["params"]["conv"]["kernel"], variables["params"]["conv"]["kernel"][..., kept]
  )
  chex.assert_trees_all_close(static.apply(static_variables, X), net.apply(variables, X, {"u": 5}), atol=1e-5)


class SlimmableNet(nn.Module):
  @nn.compact
  def __call__(self, x, choices, train=False):
    u = SlimmableChannelUnit(8, (2, 4, 8), name="u")(choices)
    h = dynamic.DynamicConv(8, 3, name="conv")(x, out_width=u)
    h = dynamic.SwitchableBatchNorm((2, 4, 8), use_running_average=not train, name="sbn")(h, u)
    return dynamic.DynamicDense(3, name="fc")(nn.relu(h).mean((1, 2)), in_width=u)


def test_switchable_batch_norm_keeps_the_chosen_candidate():
  net = SlimmableNet()
  variables = with_stats(net.init(jax.random.key(0), X, None))
  choices = {"u": np.int32(1)}
  static, static_variables = export_subnet(net, variables, choices, X)
  assert set(static_variables["params"]["sbn"]) == {"candidate_bn_4"}
  chex.assert_trees_all_equal(
    static_variables["batch_stats"]["sbn"]["candidate_bn_4"], variables["batch_stats"]["sbn"]["candidate_bn_4"]
  )
  chex.assert_trees_all_equal(
    static_variables["params"]["sbn"]["candidate_bn_4"], variables["params"]["sbn"]["candidate_bn_4"]
  )
  chex.assert_trees_all_close(static.apply(static_variables, X), net.apply(variables, X, choices), atol=1e-5, rtol=1e-5)
  assert count(static_variables["params"]) == 9 * 3 * 4 + 4 + 2 * 4 + 4 * 3 + 3


class DerivedNet(nn.Module):
  """A live width x value product, a concatenation of two units, a route and a value mutable."""

  @nn.compact
  def __call__(self, x, choices):
    a = OneShotMutableChannelUnit(4, (0.5, 1.0), name="a")(choices)
    b = OneShotMutableChannelUnit(6, (0.5, 1.0), name="b")(choices)
    expand = Value.of(jm.OneShotMutableValue([1, 2], name="expand"), choices)
    ha = dynamic.DynamicConv(4, 3, name="conv_a")(x, out_width=a)
    hb = dynamic.DynamicConv(6, 1, name="conv_b")(x, out_width=b)
    wide = a * expand
    ha = dynamic.DynamicConv(8, 1, name="expand_conv")(ha, out_width=wide, in_width=a)
    ha = dynamic.DynamicConv(4, 1, name="project")(ha, out_width=a, in_width=wide)
    h = jnp.concatenate([ha, hb], axis=-1).mean((1, 2))
    h = dynamic.DynamicDense(5, name="fc")(h, in_width=concat([a, b]))
    edges = {"e0": nn.Dense(5), "e1": nn.Dense(5, use_bias=False), "e2": nn.Dense(5)}
    return jm.DiffChoiceRoute(edges, num_chosen=2, name="route")([h, h, h], choices)


def test_derived_widths_values_and_routes_are_fixed():
  net = DerivedNet()
  variables = net.init(jax.random.key(0), X, None)
  choices = {"a": np.int32(0), "b": np.int32(0), "expand": np.int32(1), "route": np.array([0, 2], np.int32)}
  static, static_variables = export_subnet(net, variables, choices, X)
  params = static_variables["params"]
  assert params["expand_conv"]["kernel"].shape == (1, 1, 2, 4)  # 2 channels x 2
  assert params["project"]["kernel"].shape == (1, 1, 4, 2)
  kept = np.r_[0:2, 4:7]  # a keeps 2 of 4, b keeps 3 of 6: the concatenation's kept features
  np.testing.assert_array_equal(params["fc"]["kernel"], variables["params"]["fc"]["kernel"][kept])
  assert set(params["route"]) == {"e0", "e2"}
  chex.assert_trees_all_close(static.apply(static_variables, X), net.apply(variables, X, choices), atol=1e-5, rtol=1e-5)


def test_mutables_in_a_fixed_subnet_create_only_the_chosen_candidates():
  op = jm.OneShotMutableOP({"small": nn.Dense(2), "big": nn.Dense(2, use_bias=False)})
  x = jnp.ones((1, 3))
  variables = op.init(jax.random.key(0), x, FixedChoices({"": np.int32(1)}))
  assert set(variables) == {"params"} and set(variables["params"]) == {"big"}
  diff = jm.DiffMutableOP({"a": nn.Dense(2), "b": nn.Dense(2)})
  assert set(diff.init(jax.random.key(0), x, FixedChoices({"": np.int32(0)}))["params"]) == {"a"}
  # Logits are no discrete choice: the mixture keeps every candidate.
  assert set(diff.init(jax.random.key(0), x, FixedChoices({"": np.zeros(2, np.float32)}))["params"]) == {"a", "b"}
  value = jm.OneShotMutableValue([2, 4])
  assert value.init(jax.random.key(0), FixedChoices({"": np.int32(0)})) == {}


def test_choices_are_frozen_into_the_module():
  subnet = FixedSubnet(ResNet(), {"u2": jnp.int32(3), "u1": np.int32(0), "route": np.array([0, 2])})
  assert subnet.choices == (("route", (0, 2)), ("u1", 0), ("u2", 3))
  assert hash(subnet.choices) == hash((("route", (0, 2)), ("u1", 0), ("u2", 3)))


def test_save_and_load_round_trip(tmp_path, exported):
  static, static_variables = exported
  with pytest.raises(ConfigError, match=r"not registered in jaxmutate.MODELS.*register_module"):
    save_subnet(tmp_path / "resnet.msgpack", static, static_variables)  # ResNet is not registered
  with pytest.raises(ConfigError, match="kernel_init holds .*cannot store"):
    save_subnet(tmp_path / "dense.msgpack", dynamic.DynamicDense(4, kernel_init=nn.initializers.zeros), {})
  assert module_config(dynamic.DynamicDense(4, use_bias=False)) == {
    "type": "DynamicDense",
    "features": 4,
    "use_bias": False,
  }


MODEL_SOURCE = """
import flax.linen as nn
import jaxmutate as jm
from jaxmutate import dynamic
from jaxmutate.channels import OneShotMutableChannelUnit


@jm.MODELS.register_module()
class ExportTestNet(nn.Module):
  width: int = 8
  kernel_size: tuple = (3, 3)

  @nn.compact
  def __call__(self, x, choices, train=False):
    x = jm.OneShotMutableOP({"k1": nn.Conv(6, (1, 1)), "k3": nn.Conv(6, (3, 3))}, name="stem")(x, choices)
    u = OneShotMutableChannelUnit(self.width, (0.5, 1.0), name="u")(choices)
    x = dynamic.DynamicConv(self.width, self.kernel_size, name="conv")(x, out_width=u)
    x = nn.relu(dynamic.DynamicBatchNorm(use_running_average=not train, name="bn")(x, u))
    return dynamic.DynamicDense(4, name="fc")(x.mean((1, 2)), in_width=u)
"""

RELOAD_SCRIPT = """
import sys
import numpy as np
import jax
from jaxmutate.export import load_subnet

model, variables = load_subnet(sys.argv[1])
x = np.load(sys.argv[2])
np.save(sys.argv[3], np.asarray(jax.jit(model.apply)(variables, x)))
print(sum(np.size(leaf) for leaf in jax.tree.leaves(variables["params"])))
"""


def test_reload_in_a_fresh_process_without_the_supernet(tmp_path):
  (tmp_path / "export_test_model.py").write_text(MODEL_SOURCE)
  sys.path.insert(0, str(tmp_path))
  try:
    net = importlib.import_module("export_test_model").ExportTestNet(width=8, kernel_size=(3, 1))
  finally:
    sys.path.remove(str(tmp_path))
  variables = with_stats(net.init(jax.random.key(0), X, None))
  choices = {"stem": np.int32(0), "u": np.int32(0)}
  static, static_variables = export_subnet(net, variables, choices, X)
  path = save_subnet(tmp_path / "subnet" / "net.msgpack", static, static_variables)
  assert path.stat().st_size < 4 * count(variables["params"])  # the sliced weights only
  np.save(tmp_path / "x.npy", np.asarray(X))
  (tmp_path / "reload.py").write_text(RELOAD_SCRIPT)
  result = subprocess.run(
    [sys.executable, str(tmp_path / "reload.py"), str(path), str(tmp_path / "x.npy"), str(tmp_path / "y.npy")],
    capture_output=True,
    text=True,
    env={"PYTHONPATH": str(tmp_path), "JAX_PLATFORMS": "cpu", "PATH": "/usr/bin:/bin"},
    timeout=120,
  )
  assert result.returncode == 0, result.stderr
  assert int(result.stdout.split()[-1]) == count(static_variables["params"])
  np.testing.assert_allclose(np.load(tmp_path / "y.npy"), net.apply(variables, X, choices), atol=1e-5, rtol=1e-5)
  # In this process too: the same module and variables.
  model, loaded = load_subnet(path)
  assert model == static and model.supernet == net
  chex.assert_trees_all_equal(loaded, static_variables)


def test_errors(resnet, tmp_path):
  net, variables = resnet
  with pytest.raises(TracedChoiceError, match="'u1'"):
    jax.jit(lambda u1: export_subnet(net, variables, {**CHOICES, "u1": u1}, X))(jnp.int32(1))
  with pytest.raises(ChoiceTypeError, match="set_choices"):
    export_subnet(net, variables, {0: 1}, X)
  with pytest.raises(MissingChoiceError, match="'u2'"):
    export_subnet(net, variables, {"stem": 0, "u1": 0}, X)
  with pytest.raises(ConfigTypeError, match="example of its inputs"):
    export_subnet(net, variables, CHOICES)
  with pytest.raises(ConfigTypeError, match="Flax module"):
    export_subnet(lambda x: x, variables, CHOICES, X)
  with pytest.raises(FileNotFoundError):
    load_subnet(tmp_path / "missing.msgpack")
  (tmp_path / "other.msgpack").write_bytes(b"\x81\xa6format\xa5other")
  with pytest.raises(SubnetFileError, match="not a jaxmutate subnet file"):
    load_subnet(tmp_path / "other.msgpack")


class StaticHead(nn.Module):
  @nn.compact
  def __call__(self, x, choices):
    u = OneShotMutableChannelUnit(8, (0.5, 1.0), name="u")(choices)
    x = dynamic.DynamicConv(8, 3, name="conv")(x, out_width=u)
    return nn.Dense(3, name="head")(x.mean((1, 2)))  # not a dynamic layer: it cannot follow the width


def test_a_static_layer_consuming_pruned_channels_is_an_error():
  net = StaticHead()
  variables = net.init(jax.random.key(0), X, None)
  with pytest.raises(SearchSpaceError, match=r"params 'head/kernel' has shape \(4, 3\).*\(8, 3\).*dynamic layer"):
    export_subnet(net, variables, {"u": 0}, X)
  static, static_variables = export_subnet(net, variables, {"u": 1}, X)  # the full width is fine
  assert math.prod(static_variables["params"]["head"]["kernel"].shape) == 24


class Expanding(nn.Module):
  """A hidden width sized from the input's channel count (MobileNet's expand ratio)."""

  use_full_channels: bool = True

  @nn.compact
  def __call__(self, x, choices):
    u = OneShotMutableChannelUnit(8, (0.5, 1.0), name="u")(choices)
    x = dynamic.DynamicConv(8, 1, name="conv")(x, out_width=u)
    channels = dynamic.full_channels(x, u) if self.use_full_channels else x.shape[-1]
    x = dynamic.DynamicConv(2 * channels, 1, name="expand")(x, out_width=u * 2, in_width=u)
    return dynamic.DynamicDense(3, name="fc")(x.mean((1, 2)), in_width=u * 2)


def test_modules_sized_from_their_input_read_the_full_channel_count():
  choices = {"u": np.int32(0)}
  good = Expanding()
  variables = good.init(jax.random.key(0), X, None)
  static, static_variables = export_subnet(good, variables, choices, X)
  assert static_variables["params"]["expand"]["kernel"].shape == (1, 1, 4, 8)
  chex.assert_trees_all_close(static.apply(static_variables, X), good.apply(variables, X, choices), atol=1e-5)
  with pytest.raises(SearchSpaceError, match=r"num_channels=16.*8 channels.*full_channels\(x, width\)"):
    export_subnet(Expanding(use_full_channels=False), variables, choices, X)
