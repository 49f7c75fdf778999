"""SearchableResNet: one unit per residual sum, widths that match a static ResNet, jit/vmap/grad, errors."""

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
from jaxmutate.channels import make_divisible, slimmable_subnets
from jaxmutate.errors import ConfigError, ConfigKeyError, ConfigTypeError, SearchSpaceError, UnknownTypeError
from jaxmutate.models import DynamicBasicBlock, SearchableResNet

# Stage 0 has identity shortcuts only (it shares the stem's unit); stage 1 a projection and two blocks.
SMALL = dict(arch_setting=((16, 1, 1), (32, 2, 2)), stem_channels=16, max_buckets=2)


class StaticConvBN(nn.Module):
  features: int
  kernel_size: int = 3
  stride: int = 1
  act: bool = True

  @nn.compact
  def __call__(self, x):
    k = self.kernel_size
    x = nn.Conv(self.features, (k, k), self.stride, k // 2, use_bias=False, name="conv")(x)
    x = nn.BatchNorm(use_running_average=True, momentum=0.9, epsilon=1e-5, name="bn")(x)
    return nn.relu(x) if self.act else x


class StaticResNet(nn.Module):
  """The ResNet at given widths, in flax layers named like the supernet's."""

  widths: dict[str, int]
  arch_setting: Any
  stem_channels: int = 16

  @nn.compact
  def __call__(self, x):
    w = self.widths
    full, unit = make_divisible(self.stem_channels, 8), "stem.out_channels"
    x = StaticConvBN(w[unit], name="stem")(x)
    for s, (c, n, stride) in enumerate(self.arch_setting):
      out = make_divisible(c, 8)
      out_unit = unit if (stride == 1 and full == out) else f"layers.{s}.out_channels"
      for b in range(n):
        block, block_stride = f"layers.{s}.{b}", (stride if b == 0 else 1)
        shortcut = x
        if block_stride != 1 or full != out:
          shortcut = StaticConvBN(w[out_unit], 1, block_stride, act=False, name=f"{block}.shortcut")(x)
        h = StaticConvBN(w[f"{block}.mid_channels"], 3, block_stride, name=f"{block}.conv1")(x)
        h = StaticConvBN(w[out_unit], 3, act=False, name=f"{block}.conv2")(h)
        x = nn.relu(h + shortcut)
        full, unit = out, out_unit
    return nn.Dense(10, name="head")(x.mean((1, 2)))


def nest(tree: dict) -> dict:
  """Supernet variables keyed like the static net's (``layers.1.0`` / ``conv1`` -> ``layers.1.0.conv1``)."""
  out = {}
  for collection, modules in tree.items():
    flat = {}
    for name, sub in modules.items():
      if name.startswith("layers."):
        flat.update({f"{name}.{child}": leaves for child, leaves in sub.items()})
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
  return {name: int(variables["mutables"][name]["spec"].space.kept(int(c))) for name, c in choices.items()}


def randomized(variables: dict, seed: int) -> dict:
  """Non-trivial parameters and BatchNorm statistics; NumPy draws compile nothing."""
  rng = np.random.default_rng(seed)

  def stats(path, s):
    return rng.normal(0, 0.2, s.shape) if path[-1].key == "mean" else rng.uniform(0.5, 1.5, s.shape)

  return {
    "params": jax.tree.map(lambda p: jnp.asarray(p + 0.1 * rng.normal(size=p.shape), jnp.float32), variables["params"]),
    "batch_stats": jax.tree.map(
      lambda s: jnp.asarray(s, jnp.float32), jax.tree_util.tree_map_with_path(stats, variables["batch_stats"])
    ),
  }


def count(tree: Any) -> int:
  return sum(int(np.prod(leaf.shape)) for leaf in jax.tree.leaves(tree))


@pytest.fixture(scope="module")
def small():
  net = SearchableResNet(**SMALL)
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
  static = StaticResNet(widths, net.arch_setting, net.stem_channels)
  return static, jax.jit(static.apply)(sliced(static, variables, x), x)


def test_default_digits_space_units_and_params(key):
  net = SearchableResNet()
  units = net.channel_units()
  assert units == {
    "stem.out_channels": 16,
    "layers.0.0.mid_channels": 16,
    "layers.0.1.mid_channels": 16,
    "layers.1.0.mid_channels": 32,
    "layers.1.out_channels": 32,
    "layers.1.1.mid_channels": 32,
    "layers.2.0.mid_channels": 64,
    "layers.2.out_channels": 64,
    "layers.2.1.mid_channels": 64,
  }
  x = jnp.ones((2, 8, 8, 1))
  variables = jax.eval_shape(lambda: net.init(key, x, None))
  mutator = jm.NasMutator().prepare_from_supernet(variables)
  assert list(mutator.search_groups.values()) == [(name,) for name in units]
  assert count(variables["params"]) == 174970
  spaces = {name: variables["mutables"][name]["spec"].space for name in units}
  assert spaces["stem.out_channels"].kept_counts == (8, 16)
  assert spaces["layers.2.out_channels"].kept_counts == (16, 24, 32, 40, 48, 56, 64)
  widths = {name: space.kept_counts[0] for name, space in spaces.items()}
  assert count(jax.eval_shape(StaticResNet(widths, net.arch_setting).init, key, x)["params"]) == 13426
  assert count(jax.eval_shape(StaticResNet(units, net.arch_setting).init, key, x)["params"]) == 174970


def test_full_width_is_the_static_network(small):
  net, x, variables, mutator, forward = small
  widths = net.channel_units()
  static, expected = static_output(net, variables, x, widths)
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
  for group_choices in (mutator.min_choices(), mutator.sample_choices(jax.random.key(5))):
    choices = {k: np.asarray(v) for k, v in mutator.set_choices(group_choices).items()}
    widths = kept_widths(variables, choices)
    assert any(widths[n] < c for n, c in net.channel_units().items())
    _, expected = static_output(net, variables, x, widths)
    traced = forward(variables, group_choices)
    chex.assert_trees_all_close(traced, expected, atol=1e-5)
    concrete = jax.jit(lambda v: net.apply(v, x, choices))(variables)  # traces to the sliced layers only
    chex.assert_trees_all_close(concrete, traced, atol=1e-5)


def test_jit_and_vmap_over_widths_compile_once(small):
  net, x, variables, mutator, forward = small
  population = jax.vmap(mutator.sample_choices)(jax.random.split(jax.random.key(6), 4))
  members = [{g: v[i] for g, v in population.items()} for i in range(4)]
  # forward is wrapped in chex.assert_max_traces(n=1): six width configurations, one trace.
  singles = [forward(variables, gc) for gc in members + [mutator.max_choices(), mutator.min_choices()]]
  assert not np.allclose(singles[-1], singles[-2])
  batched = jax.jit(jax.vmap(lambda gc: net.apply(variables, x, mutator.set_choices(gc))))(population)
  chex.assert_trees_all_close(batched, jnp.stack(singles[:4]), atol=1e-5)


def test_grad_through_traced_widths(small):
  net, x, variables, mutator, _ = small
  labels = jnp.arange(x.shape[0]) % 10

  @jax.jit
  def grads(params, gc):
    def loss(params):
      logits, updates = net.apply(
        {**variables, "params": params}, x, mutator.set_choices(gc), train=True, mutable=["batch_stats"]
      )
      return optax.softmax_cross_entropy_with_integer_labels(logits, labels).mean()

    return jax.grad(loss)(params)

  g = grads(variables["params"], mutator.min_choices())
  assert all(bool(jnp.isfinite(leaf).all()) for leaf in jax.tree.leaves(g))
  kept = kept_widths(variables, mutator.set_choices(mutator.min_choices()))["layers.1.out_channels"]
  # The shared unit cuts the projection shortcut and every block's conv2 alike.
  for kernel in (g["layers.1.0"]["shortcut"]["conv"]["kernel"], g["layers.1.1"]["conv2"]["conv"]["kernel"]):
    assert bool((kernel[..., kept:] == 0).all()) and bool((kernel[..., :kept] != 0).any())
  assert bool((g["head"]["kernel"][kept:] == 0).all())


def test_residual_sum_shares_one_unit(small):
  net, x, variables, mutator, _ = small
  names = [name for group in mutator.search_groups.values() for name in group]
  assert names == [
    "stem.out_channels",
    "layers.0.0.mid_channels",
    "layers.1.0.mid_channels",
    "layers.1.out_channels",
    "layers.1.1.mid_channels",
  ]
  # The identity-shortcut stage has no unit of its own: its block writes the stem's width.
  group = {group[0]: g for g, group in mutator.search_groups.items()}
  choices = mutator.set_choices(
    {**mutator.max_choices(), group["stem.out_channels"]: 0, group["layers.1.out_channels"]: 1}
  )
  kept = kept_widths(variables, choices)
  assert (kept["stem.out_channels"], kept["layers.1.out_channels"]) == (8, 16)
  _, state = jax.jit(
    lambda v: net.apply(v, x, choices, capture_intermediates=lambda m, _: isinstance(m, DynamicBasicBlock))
  )(variables)
  nonzero = lambda y: int((jnp.abs(y).sum((0, 1, 2)) > 0).sum())
  outputs = {
    block: state["intermediates"][block]["__call__"][0] for block in ("layers.0.0", "layers.1.0", "layers.1.1")
  }
  assert nonzero(outputs["layers.0.0"]) == 8
  assert nonzero(outputs["layers.1.0"]) == nonzero(outputs["layers.1.1"]) == 16


def test_identity_shortcut_rejects_two_units(key):
  block = DynamicBasicBlock(out_channels=8)
  x = jnp.zeros((1, 4, 4, 8))
  with pytest.raises(SearchSpaceError, match="'a'.*'b'"):
    block.init(key, x, in_width=jm.dynamic.Width(8, 8, unit="a"), out_width=jm.dynamic.Width(8, 8, unit="b"))


def test_alias_and_custom_group(key):
  x = jnp.ones((2, 8, 8, 1))
  shared = {"layers.1.0.mid_channels": "mid32", "layers.1.1.mid_channels": "mid32"}
  aliased = jax.eval_shape(lambda: SearchableResNet(**SMALL, aliases=shared).init(key, x, None))
  mutator = jm.NasMutator().prepare_from_supernet(aliased)
  assert mutator.search_groups[0] == ("layers.1.0.mid_channels", "layers.1.1.mid_channels")
  fix_subnet = mutator.export_fix_subnet(mutator.max_choices())
  assert "mid32" in fix_subnet and len(fix_subnet) == 4  # the alias stands for both units
  choices = mutator.set_choices({**mutator.max_choices(), 0: jnp.int32(2)})
  assert int(choices["layers.1.0.mid_channels"]) == int(choices["layers.1.1.mid_channels"]) == 2
  plain = jax.eval_shape(lambda: SearchableResNet(**SMALL).init(key, x, None))
  custom = jm.NasMutator(custom_group=[["layers.1.out_channels", "layers.1.1.mid_channels"]])
  assert custom.prepare_from_supernet(plain).search_groups[0] == ("layers.1.out_channels", "layers.1.1.mid_channels")
  with pytest.raises(ValueError, match="search spaces"):  # 16 and 32 channels
    jm.NasMutator(custom_group=[["stem.out_channels", "layers.1.out_channels"]]).prepare_from_supernet(plain)


def test_slimmable_units(key):
  net = SearchableResNet(
    arch_setting=((16, 1, 2),), unit_type="SlimmableChannelUnit", candidate_choices=(0.5, 1.0), max_buckets=1
  )
  x = jnp.ones((2, 8, 8, 1))
  variables = jm.init_supernet(net, key, x)
  assert sorted(variables["params"]["layers.0.0"]["shortcut"]["bn"]) == ["candidate_bn_16", "candidate_bn_8"]
  mutator = jm.NasMutator().prepare_from_supernet(variables)
  spaces = {group[0]: variables["mutables"][group[0]]["spec"].space for group in mutator.search_groups.values()}
  stacked = {name: jnp.stack([s[name] for s in slimmable_subnets(spaces)]) for name in spaces}
  logits, updates = jax.jit(jax.vmap(lambda c: net.apply(variables, x, c, train=True, mutable=["batch_stats"])))(
    stacked
  )
  assert logits.shape == (2, 2, 10) and not np.allclose(logits[0], logits[1])
  bn = updates["batch_stats"]["layers.0.0"]["conv2"]["bn"]
  assert bool((bn["candidate_bn_16"]["mean"][0] == 0).all()) and bool((bn["candidate_bn_8"]["mean"][1] == 0).all())


def test_registered_and_built_from_config():
  net = jm.build(
    dict(type="SearchableResNet", arch_setting=[[8, 1, 1]], stem_channels=8, unit_type="SlimmableChannelUnit")
  )
  assert isinstance(net, SearchableResNet) and list(net.channel_units()) == [
    "stem.out_channels",
    "layers.0.0.mid_channels",
  ]
  assert jm.build(dict(type="DynamicBasicBlock", out_channels=4)).out_channels == 4


@pytest.mark.parametrize(
  ("kwargs", "error", "match"),
  [
    (dict(candidate_choices=(1.5,)), SearchSpaceError, r"'stem.out_channels'.*ratio 1.5 is outside \(0, 1\]"),
    (dict(candidate_choices=(0.0, 1.0)), SearchSpaceError, "ratio 0.0"),
    (dict(candidate_choices=(8, 32), choice_mode="number"), SearchSpaceError, "candidate 32 is outside"),
    (dict(unit_type="L1MutableChannelUnit"), UnknownTypeError, "L1MutableChannelUnit"),
    (dict(choice_mode="ratios"), ConfigError, "choice_mode"),
    (dict(aliases={"layers.9.out_channels": "a"}), ConfigKeyError, "layers.9.out_channels"),
    (dict(aliases=["stem.out_channels"]), ConfigTypeError, "aliases"),
    (dict(arch_setting=((16, 0, 1),)), ConfigError, r"arch_setting\[0\]"),
    (dict(arch_setting="16-2-1"), ConfigTypeError, "arch_setting"),
    (dict(widen_factor=-1.0), ConfigError, "widen_factor"),
    (dict(stem_channels=0), ConfigError, "stem_channels"),
  ],
)
def test_bad_arguments_raise_named_errors(kwargs, error, match):
  with pytest.raises(error, match=match):
    SearchableResNet(**kwargs)
