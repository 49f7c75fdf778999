"""SearchableMobileNetV2: AutoSlim's units, widths that match a static network, jit/vmap/grad, coupling, errors."""

from __future__ import annotations

from typing import Any

import chex
import flax.linen as nn
import jax
import jax.numpy as jnp
import numpy as np
import optax
import pytest

import jaxmutate as jm
from jaxmutate.channels import SlimmableChannelUnit, make_divisible, slimmable_subnets
from jaxmutate.errors import ConfigError, ConfigKeyError, ConfigTypeError, SearchSpaceError, UnknownTypeError
from jaxmutate.models import (
  AUTOSLIM_CANDIDATES,
  MOBILENET_V2_ARCH_SETTING,
  DynamicConvBN,
  DynamicInvertedResidual,
  SearchableMobileNetV2,
)

# Two stages: a stem-width hidden layer (expand ratio 1) and a stage of two blocks coupled by a residual add.
# XLA's depthwise conv compiles faster; the fast CPU path is tested in tests/ops and the doctests.
SMALL = dict(
  arch_setting=((1, 16, 1, 1), (6, 24, 2, 2)), last_channels=32, max_buckets=2, depthwise_implementation="xla"
)


# A static MobileNetV2 of flax layers at given widths, named like the supernet, to check it against.
class StaticConvBN(nn.Module):
  features: int
  kernel_size: int = 1
  stride: int = 1
  groups: int = 1
  act: bool = True

  @nn.compact
  def __call__(self, x):
    k, pad = self.kernel_size, self.kernel_size // 2
    x = nn.Conv(self.features, (k, k), self.stride, pad, feature_group_count=self.groups, use_bias=False, name="conv")(
      x
    )
    x = nn.BatchNorm(use_running_average=True, momentum=0.9, epsilon=1e-5, name="bn")(x)
    return nn.relu6(x) if self.act else x


class StaticMobileNetV2(nn.Module):
  widths: dict[str, int]
  arch_setting: Any
  stem_channels: int = 32
  last_channels: int = 1280

  @nn.compact
  def __call__(self, x):
    w = self.widths
    stem = make_divisible(self.stem_channels, 8)
    x = StaticConvBN(w["stem.out_channels"], 3, name="stem")(x)
    full, unit = stem, "stem.out_channels"
    for s, (t, c, n, stride) in enumerate(self.arch_setting):
      out = make_divisible(c, 8)
      out_unit = unit if (stride == 1 and full == out) else f"layers.{s}.out_channels"
      for b in range(n):
        block_stride = stride if b == 0 else 1
        inp, h = x, x
        mid = w[unit]
        if t != 1:
          mid = w[f"layers.{s}.{b}.mid_channels"]
          h = StaticConvBN(mid, name=f"layers.{s}.{b}.expand")(h)
        h = StaticConvBN(mid, 3, block_stride, groups=mid, name=f"layers.{s}.{b}.depthwise")(h)
        h = StaticConvBN(w[out_unit], act=False, name=f"layers.{s}.{b}.project")(h)
        x = h + inp if (block_stride == 1 and full == out) else h
        full, unit = out, out_unit
    x = StaticConvBN(w["last.out_channels"], name="last")(x)
    return nn.Dense(10, name="head")(x.mean((1, 2)))


def nest(tree: dict) -> dict:
  """Supernet variables keyed like the static net's (``layers.1.0`` / ``expand`` -> ``layers.1.0.expand``)."""
  out = {}
  for collection, modules in tree.items():
    flat = {}
    for name, sub in modules.items():
      if name.startswith("layers."):
        for child, leaves in sub.items():
          flat[f"{name}.{child}"] = leaves
      else:
        flat[name] = sub
    out[collection] = flat
  return out


def sliced(static: nn.Module, variables: dict, x: jax.Array) -> dict:
  """The supernet's variables cut to the static net's shapes (kept channels are prefixes)."""
  shapes = jax.eval_shape(static.init, jax.random.key(0), x)
  full = nest({k: variables[k] for k in ("params", "batch_stats")})
  return jax.tree.map(lambda s, v: v[tuple(slice(0, d) for d in s.shape)], shapes, full)


def kept_widths(variables: dict, choices: dict) -> dict[str, int]:
  """Unit name -> kept channels of concrete choices."""
  return {name: int(variables["mutables"][name]["spec"].space.kept(int(c))) for name, c in choices.items()}


def randomized(variables: dict, seed: int) -> dict:
  """Non-trivial parameters and BatchNorm statistics (so that a wrong slice shows); NumPy draws compile nothing."""
  rng = np.random.default_rng(seed)

  def stats(path, s):
    return rng.normal(0, 0.2, s.shape) if path[-1].key == "mean" else rng.uniform(0.5, 1.5, s.shape)

  return {
    "params": jax.tree.map(lambda p: jnp.asarray(p + 0.1 * rng.normal(size=p.shape), jnp.float32), variables["params"]),
    "batch_stats": jax.tree.map(
      lambda s: jnp.asarray(s, jnp.float32), jax.tree_util.tree_map_with_path(stats, variables["batch_stats"])
    ),
  }


@pytest.fixture(scope="module")
def small():
  net = SearchableMobileNetV2(**SMALL)
  x = jax.random.normal(jax.random.key(1), (4, 8, 8, 1))
  variables = jm.init_supernet(net, jax.random.key(0), x)
  variables = {**variables, **randomized(variables, seed=2)}
  mutator = jm.NasMutator().prepare_from_supernet(variables)
  # Every test that runs a traced subnet shares this one compile: switching widths never retraces.
  # chex counts traces per function id; a fresh counter keeps an earlier test's collected lambda out of it.
  chex.clear_trace_counter()
  forward = jax.jit(chex.assert_max_traces(lambda v, gc: net.apply(v, x, mutator.set_choices(gc)), n=1))
  return net, x, variables, mutator, forward


def static_output(net, variables, x, widths):
  static = StaticMobileNetV2(widths, net.arch_setting, net.stem_channels, net.last_channels)
  return static, jax.jit(static.apply)(sliced(static, variables, x), x)


def test_default_digits_space_units_and_params(key):
  net = SearchableMobileNetV2()
  units = net.channel_units()
  assert list(units) == [
    "stem.out_channels",
    "layers.0.out_channels",
    "layers.1.0.mid_channels",
    "layers.1.out_channels",
    "layers.1.1.mid_channels",
    "layers.2.0.mid_channels",
    "layers.2.out_channels",
    "layers.2.1.mid_channels",
    "last.out_channels",
  ]
  x = jnp.ones((2, 8, 8, 1))
  variables = jax.eval_shape(lambda: net.init(key, x, None))
  mutator = jm.NasMutator().prepare_from_supernet(variables)
  assert [names for names in mutator.search_groups.values()] == [(name,) for name in units]
  count = lambda tree: sum(int(np.prod(leaf.shape)) for leaf in jax.tree.leaves(tree))
  assert count(variables["params"]) == 96394
  # The min subnet: every unit at its smallest candidate; its static network's parameter count.
  spaces = {name: variables["mutables"][name]["spec"].space for name in units}
  assert spaces["stem.out_channels"].kept_counts == (8, 16, 24, 32)
  assert spaces["layers.1.out_channels"].kept_counts == (8, 16, 24)
  widths = {name: space.kept_counts[0] for name, space in spaces.items()}
  assert widths == {
    "stem.out_channels": 8,
    "layers.0.out_channels": 8,
    "layers.1.0.mid_channels": 16,
    "layers.1.out_channels": 8,
    "layers.1.1.mid_channels": 24,
    "layers.2.0.mid_channels": 24,
    "layers.2.out_channels": 8,
    "layers.2.1.mid_channels": 32,
    "last.out_channels": 216,
  }
  assert count(jax.eval_shape(StaticMobileNetV2(widths, net.arch_setting).init, key, x)["params"]) == 7434
  full = StaticMobileNetV2(dict(units), net.arch_setting)
  assert count(jax.eval_shape(full.init, key, x)["params"]) == count(variables["params"])


def test_mmrazor_autoslim_space_at_32x32(key):
  net = SearchableMobileNetV2(widen_factor=1.0, arch_setting=MOBILENET_V2_ARCH_SETTING)
  variables = jax.eval_shape(lambda: net.init(key, jnp.ones((1, 32, 32, 3)), None))
  mutator = jm.NasMutator().prepare_from_supernet(variables)
  assert len(mutator.search_groups) == 25
  space = lambda name: variables["mutables"][name]["spec"].space
  assert space("stem.out_channels").kept_counts == (8, 16, 24, 32)
  assert space("layers.1.0.mid_channels").kept_counts == tuple(range(16, 97, 8))
  assert space("last.out_channels").kept_counts[-1] == 1280
  assert len(space("last.out_channels").kept_counts) == 11
  assert variables["params"]["head"]["kernel"].shape == (1280, 10)
  # MMRazor's AutoSlim supernet (widen 1.5): the units of its MBV2_slimmable_config.json, in its order.
  wide = SearchableMobileNetV2(widen_factor=1.5, arch_setting=MOBILENET_V2_ARCH_SETTING).channel_units()
  mmrazor = [48, 24, 144, 40, 240, 240, 48, 288, 288, 288, 96, 576, 576, 576, 576, 144, 864, 864, 864, 240]
  assert list(wide.values()) == mmrazor + [1440, 1440, 1440, 480, 1920]
  assert list(wide)[:4] == [
    "stem.out_channels",
    "layers.0.out_channels",
    "layers.1.0.mid_channels",
    "layers.1.out_channels",
  ]


def test_full_width_is_the_static_network(small):
  net, x, variables, mutator, forward = small
  widths = net.channel_units()
  static, expected = static_output(net, variables, x, widths)
  # Same parameters, same shapes: the supernet at full width is this network.
  chex.assert_trees_all_equal_shapes(
    nest({"params": variables["params"]})["params"], jax.eval_shape(static.init, jax.random.key(0), x)["params"]
  )
  max_choices = mutator.set_choices(mutator.max_choices())
  assert kept_widths(variables, max_choices) == widths
  concrete = {k: np.asarray(v) for k, v in max_choices.items()}
  chex.assert_trees_all_close(jax.jit(lambda v: net.apply(v, x, concrete))(variables), expected, atol=1e-5)
  chex.assert_trees_all_close(forward(variables, mutator.max_choices()), expected, atol=1e-5)


def test_sampled_and_min_widths_match_the_static_subnet(small):
  net, x, variables, mutator, forward = small
  for group_choices in (mutator.min_choices(), mutator.sample_choices(jax.random.key(3))):
    choices = {k: np.asarray(v) for k, v in mutator.set_choices(group_choices).items()}
    _, expected = static_output(net, variables, x, kept_widths(variables, choices))
    traced = forward(variables, group_choices)
    chex.assert_trees_all_close(traced, expected, atol=1e-5)
    concrete = jax.jit(lambda v: net.apply(v, x, choices))(variables)  # traces to the sliced layers only
    chex.assert_trees_all_close(concrete, traced, atol=1e-5)
  assert kept_widths(variables, mutator.set_choices(mutator.min_choices()))["layers.1.1.mid_channels"] == 24


def test_jit_and_vmap_over_widths_compile_once(small):
  net, x, variables, mutator, forward = small
  population = jax.vmap(mutator.sample_choices)(jax.random.split(jax.random.key(4), 3))
  members = [{g: v[i] for g, v in population.items()} for i in range(3)]
  # forward is wrapped in chex.assert_max_traces(n=1): five width configurations, one trace.
  singles = [forward(variables, gc) for gc in members + [mutator.max_choices(), mutator.min_choices()]]
  assert not np.allclose(singles[-1], singles[-2])
  batched = jax.jit(jax.vmap(lambda gc: net.apply(variables, x, mutator.set_choices(gc))))(population)
  chex.assert_trees_all_close(batched, jnp.stack(singles[:3]), atol=1e-5)


def test_grad_through_traced_widths(small):
  net, x, variables, mutator, _ = small
  labels = jnp.arange(x.shape[0]) % 10

  @jax.jit
  def grads(params, gc):
    def loss(params):
      logits, updates = net.apply(
        {**variables, "params": params}, x, mutator.set_choices(gc), train=True, mutable=["batch_stats"]
      )
      return optax.softmax_cross_entropy_with_integer_labels(logits, labels).mean(), updates

    return jax.grad(loss, has_aux=True)(params)

  g, updates = grads(variables["params"], mutator.min_choices())
  assert all(bool(jnp.isfinite(leaf).all()) for leaf in jax.tree.leaves(g))
  kept = kept_widths(variables, mutator.set_choices(mutator.min_choices()))["stem.out_channels"]
  stem = g["stem"]["conv"]["kernel"]
  assert bool((stem[..., kept:] == 0).all()) and bool((stem[..., :kept] != 0).any())
  # Only the kept channels' running statistics move.
  mean = updates["batch_stats"]["stem"]["bn"]["mean"]
  chex.assert_trees_all_equal(mean[kept:], variables["batch_stats"]["stem"]["bn"]["mean"][kept:])


def test_residual_sum_shares_one_unit(small):
  net, x, variables, mutator, _ = small
  groups = [name for names in mutator.search_groups.values() for name in names]
  assert groups.count("layers.1.out_channels") == 1
  assert not any(name.startswith("layers.1.1.out") or name.startswith("layers.1.0.out") for name in groups)
  # Both blocks of the stage write exactly the shared unit's kept channels.
  group = next(g for g, names in mutator.search_groups.items() if names == ("layers.1.out_channels",))
  choices = mutator.set_choices({**mutator.max_choices(), group: jnp.int32(0)})
  kept = kept_widths(variables, choices)["layers.1.out_channels"]
  assert kept < net.channel_units()["layers.1.out_channels"]
  _, state = jax.jit(
    lambda v: net.apply(v, x, choices, capture_intermediates=lambda m, _: isinstance(m, DynamicInvertedResidual))
  )(variables)
  for block in ("layers.1.0", "layers.1.1"):
    y = state["intermediates"][block]["__call__"][0]
    assert int((jnp.abs(y).sum((0, 1, 2)) > 0).sum()) == kept


def test_residual_add_rejects_two_units(key):
  block = DynamicInvertedResidual(out_channels=8, stride=1, expand_ratio=1)
  x = jnp.zeros((1, 4, 4, 8))
  a = jm.dynamic.Width(8, 8, unit="a")
  b = jm.dynamic.Width(8, 8, unit="b")
  with pytest.raises(SearchSpaceError, match="'a'.*'b'"):
    block.init(key, x, in_width=a, out_width=b)
  with pytest.raises(SearchSpaceError, match="equal widths"):
    block.init(key, x, in_width=4, out_width=8)


def test_alias_and_custom_group(key):
  # stem and last have 32 channels: the same search space, so they may share a group.
  x = jnp.ones((2, 8, 8, 1))
  aliased = SearchableMobileNetV2(**SMALL, aliases={"stem.out_channels": "w32", "last.out_channels": "w32"})
  variables = jax.eval_shape(lambda: aliased.init(key, x, None))
  mutator = jm.NasMutator().prepare_from_supernet(variables)
  assert mutator.search_groups[0] == ("stem.out_channels", "last.out_channels")
  assert len(mutator.search_groups) == 5
  choices = mutator.set_choices({**mutator.max_choices(), 0: jnp.int32(1)})
  assert int(choices["stem.out_channels"]) == int(choices["last.out_channels"]) == 1
  assert "w32" in mutator.export_fix_subnet(mutator.max_choices())
  plain = jax.eval_shape(lambda: SearchableMobileNetV2(**SMALL).init(key, x, None))
  custom = jm.NasMutator(custom_group=[["layers.0.out_channels", "layers.1.out_channels"]])
  with pytest.raises(ValueError, match="search spaces"):  # 16 and 24 channels: different spaces
    custom.prepare_from_supernet(plain)
  custom = jm.NasMutator(custom_group=[["last.out_channels", "stem.out_channels"]]).prepare_from_supernet(plain)
  assert custom.search_groups[0] == ("last.out_channels", "stem.out_channels")


def test_slimmable_units_use_switchable_batch_norm(key):
  net = SearchableMobileNetV2(
    arch_setting=((1, 16, 1, 1),), last_channels=16, unit_type="SlimmableChannelUnit", candidate_choices=(0.5, 1.0)
  )
  x = jnp.ones((2, 8, 8, 1))
  variables = jm.init_supernet(net, key, x)
  assert sorted(variables["params"]["stem"]["bn"]) == ["candidate_bn_16", "candidate_bn_32"]
  mutator = jm.NasMutator().prepare_from_supernet(variables)
  spaces = {
    name: variables["mutables"][name]["spec"].space for names in mutator.search_groups.values() for name in names
  }
  assert all(issubclass(variables["mutables"][n]["spec"].mutable_type, SlimmableChannelUnit) for n in spaces)
  subnets = slimmable_subnets(spaces)
  stacked = {name: jnp.stack([s[name] for s in subnets]) for name in spaces}
  step = jax.jit(jax.vmap(lambda c: net.apply(variables, x, c, train=True, mutable=["batch_stats"])))
  logits, updates = step(stacked)
  assert logits.shape == (2, 2, 10)
  bn = updates["batch_stats"]["stem"]["bn"]
  # Subnet 0 updates only the narrow candidate's statistics, subnet 1 only the full one's.
  assert bool((bn["candidate_bn_32"]["mean"][0] == 0).all()) and bool((bn["candidate_bn_16"]["mean"][1] == 0).all())
  assert bool((bn["candidate_bn_16"]["mean"][0] != 0).any())


def test_registered_and_built_from_config():
  net = jm.build(dict(type="SearchableMobileNetV2", arch_setting=[[1, 16, 1, 1]], candidate_choices=[0.5, 1.0]))
  # Config lists become tuples: the module stays hashable (jit static arguments).
  assert isinstance(net, SearchableMobileNetV2) and net.candidate_choices == (0.5, 1.0)
  assert net.arch_setting == ((1, 16, 1, 1),) and hash(net) == hash(net.clone())
  assert jm.build(dict(type="DynamicConvBN", features=4)).features == 4
  assert len(AUTOSLIM_CANDIDATES) == 11 and AUTOSLIM_CANDIDATES[0] == 2 / 12


@pytest.mark.parametrize(
  ("kwargs", "error", "match"),
  [
    (dict(candidate_choices=(0.5, 1.5)), SearchSpaceError, r"'stem.out_channels'.*ratio 1.5 is outside \(0, 1\]"),
    (dict(candidate_choices=(1, 2)), ConfigTypeError, "ratio mode"),
    (dict(candidate_choices=(8, 64), choice_mode="number"), SearchSpaceError, "candidate 64 is outside"),
    (dict(candidate_choices=0.5), ConfigTypeError, "candidate_choices"),
    (dict(unit_type="SequentialMutableChannelUnit"), UnknownTypeError, "SequentialMutableChannelUnit"),
    (dict(unit_type=int), UnknownTypeError, "unit_type"),
    (dict(choice_mode="percent"), ConfigError, "choice_mode"),
    (dict(divisor=0), ConfigError, "divisor"),
    (dict(aliases={"stem": "a"}), ConfigKeyError, "unknown unit 'stem'"),
    (dict(aliases={"stem.out_channels": 3}), ConfigTypeError, "alias"),
    (dict(arch_setting=((6, 16, 1),)), ConfigError, r"arch_setting\[0\]"),
    (dict(arch_setting=((6, 16, 1, 3),)), ConfigError, r"arch_setting\[0\]"),
    (dict(arch_setting=()), ConfigError, "at least one stage"),
    (dict(widen_factor=0), ConfigError, "widen_factor"),
    (dict(stem_stride=4), ConfigError, "stem_stride"),
  ],
)
def test_bad_arguments_raise_named_errors(kwargs, error, match):
  with pytest.raises(error, match=match):
    SearchableMobileNetV2(**kwargs)


def test_layer_errors(key):
  x = jnp.ones((1, 4, 4, 8))
  with pytest.raises(SearchSpaceError, match="switchable BatchNorm needs"):
    DynamicConvBN(8, switchable=True).init(key, x, out_width=4)
  with pytest.raises(SearchSpaceError, match="depthwise"):
    DynamicConvBN(4, depthwise=True).init(key, x)
  with pytest.raises(ConfigError, match="act"):
    DynamicConvBN(4, act="gelu").init(key, x)
