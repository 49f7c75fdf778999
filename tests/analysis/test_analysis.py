"""Channel analysis: the API around the units (masks under jit/vmap, slicing, export, costs), bad input, the mutator."""

from __future__ import annotations

import subprocess
import sys
import textwrap

import flax.linen as nn
import jax
import jax.numpy as jnp
import numpy as np
import pytest
from analysis_zoo import ZOO, torchvision_resnet

import jaxmutate as jm
from jaxmutate.analysis import (
  ChannelGroup,
  ParamSlice,
  analyze_channels,
  channel_masks,
  load_pruned,
  mask_variables,
  masked_function,
  pruned_function,
  slice_variables,
)
from jaxmutate.errors import ChoiceError, ConfigError, ConfigKeyError, SearchSpaceError


class Small(nn.Module):
  @nn.compact
  def __call__(self, x):
    x = nn.relu(nn.BatchNorm(use_running_average=True, name="bn1")(nn.Conv(8, (3, 3), name="conv1")(x)))
    x = nn.LayerNorm(name="ln")(nn.Conv(8, (3, 3), name="conv2")(x) + x)
    return nn.Dense(3, name="fc")(x.mean((1, 2)))


@pytest.fixture(scope="module")
def small():
  net, x = Small(), jax.random.normal(jax.random.key(1), (2, 6, 6, 3))
  rng = np.random.default_rng(0)
  shapes = jax.eval_shape(net.init, jax.random.key(0), x)  # random variables without running init (no compiles)
  variables = jax.tree_util.tree_map(lambda s: (np.abs(rng.normal(size=s.shape)) + 0.5).astype(s.dtype), shapes)
  return net, x, variables, analyze_channels(net, variables, x)


def test_units_and_exclusions(small):
  _, _, _, analysis = small
  assert [(g.name, g.num_channels) for g in analysis.groups] == [("conv1_(0, 8)_8", 8)]
  slices = {("/".join(s.path), s.axis, s.role) for s in analysis.groups[0].slices}
  assert ("conv1/kernel", 3, "output") in slices and ("conv2/kernel", 3, "output") in slices
  assert ("conv2/kernel", 2, "input") in slices and ("fc/kernel", 0, "input") in slices
  assert ("bn1/mean", 0, "norm") in {(("/".join(s.path)), s.axis, s.role) for s in analysis.groups[0].slices}
  reasons = {e.name: e.reasons for e in analysis.excluded}
  assert reasons == {"conv1_(0, 3)_3": ("model input",), "fc_(0, 3)_3": ("reaches the model output",)}
  assert "excluded" in analysis.report()


def test_masks_under_jit_and_vmap_equal_sliced(small):
  net, x, variables, analysis = small
  name = analysis.groups[0].name
  f = jax.jit(masked_function(analysis))
  widths = jnp.arange(1, 9)
  outs = jax.vmap(lambda w: f(variables, analysis.masks({name: w}), x))(widths)  # one compile for 8 widths
  for w in (3, 8):
    kept = {name: list(range(w))}
    sliced = pruned_function(analysis, kept)(analysis.slice_variables(variables, kept), x)
    np.testing.assert_allclose(outs[w - 1], sliced, rtol=1e-4, atol=1e-4)  # other programs: other summation orders
  np.testing.assert_allclose(outs[-1], net.apply(variables, x), rtol=1e-5, atol=1e-5)
  grads = jax.grad(lambda m: f(variables, {name: m}, x).sum())(jnp.ones(8))  # importance by mask gradients
  assert grads.shape == (8,) and bool(jnp.isfinite(grads).all())


def test_costs_are_jittable_and_match_xla_without_padding():
  class Valid(nn.Module):
    @nn.compact
    def __call__(self, x):
      # No biases or activations: XLA's flops are then the multiply-adds alone.
      x = nn.Conv(16, (3, 3), padding="VALID", use_bias=False, name="conv1")(x)
      x = nn.Conv(16, (3, 3), padding="VALID", feature_group_count=16, use_bias=False, name="dw")(x)
      x = nn.Dense(32, use_bias=False, name="hidden")(x.reshape(x.shape[0], -1))
      return nn.Dense(10, use_bias=False, name="fc")(x)

  net, x = Valid(), jax.ShapeDtypeStruct((1, 10, 10, 3), jnp.float32)
  variables = jax.eval_shape(net.init, jax.random.key(0), x)
  analysis = analyze_channels(net, variables, x)
  kept = analysis.first_channels(analysis.uniform_counts(0.5))
  costs = jax.jit(analysis.costs)(analysis.kept_masks(kept))
  small = jax.eval_shape(lambda v: analysis.slice_variables(v, kept), variables)
  flops = jax.jit(pruned_function(analysis, kept)).lower(small, x).cost_analysis()["flops"]
  assert abs(flops / 2 - float(costs["macs"])) / float(costs["macs"]) < 0.01
  params = sum(int(np.prod(p.shape)) for p in jax.tree_util.tree_leaves(small["params"]))
  assert float(costs["params"]) == params


def test_slice_and_mask_by_hand():
  out = ParamSlice("params", ("a", "kernel"), 1, (0, 1, 2, 3), "output")
  nxt = ParamSlice("params", ("b", "kernel"), 0, (3, 2, 1, 0), "input")
  unit = ChannelGroup("a_(0, 4)_4", 4, (out, nxt))
  variables = {
    "params": {"a": {"kernel": np.arange(8.0).reshape(2, 4)}, "b": {"kernel": np.arange(12.0).reshape(4, 3)}}
  }
  small = slice_variables(variables, [unit], {"a_(0, 4)_4": [0, 2]})
  np.testing.assert_array_equal(small["params"]["b"]["kernel"], variables["params"]["b"]["kernel"][[1, 3]])
  masked = mask_variables(variables, [unit], channel_masks([unit], {"a_(0, 4)_4": 1}))
  np.testing.assert_array_equal(masked["params"]["b"]["kernel"][:3], 0.0)
  with pytest.raises(ConfigKeyError, match="unknown unit"):
    slice_variables(variables, [unit], {"nope": [0]})
  with pytest.raises(ChoiceError, match=r"\[0, 4\)"):
    slice_variables(variables, [unit], {"a_(0, 4)_4": [0, 4]})
  with pytest.raises(ChoiceError, match="keeps no channel"):
    slice_variables(variables, [unit], {"a_(0, 4)_4": []})


def test_bad_input(small):
  net, x, variables, analysis = small
  with pytest.raises(ConfigError, match="'conv9'.*close matches"):
    analyze_channels(net, variables, x, ignored=["conv9"])
  ignored = analyze_channels(net, variables, x, ignored=["conv2"])
  assert not ignored.groups and any("ignored ('conv2')" in r for e in ignored.excluded for r in e.reasons)
  with pytest.raises(ConfigError, match=r"ratio must be in \[0, 1\)"):
    analysis.uniform_counts(1.0)
  with pytest.raises(ConfigError, match="round_to=16 is larger than unit 'conv1_"):
    analysis.uniform_counts(0.5, round_to=16)

  class Branchy(nn.Module):
    @nn.compact
    def __call__(self, x):
      return nn.Dense(2)(x) if x.sum() > 0 else x

  with pytest.raises(ConfigError, match="does not trace"):
    analyze_channels(Branchy(), Branchy().init(jax.random.key(0), jnp.ones((1, 2))), jnp.ones((1, 2)))

  class Sorted(nn.Module):  # sorting along the channels pins them: a reason, not a silent wrong unit
    @nn.compact
    def __call__(self, x):
      return nn.Dense(2, name="fc")(jnp.sort(nn.Dense(4, name="hidden")(x), axis=-1))

  sorted_net = Sorted()
  analysis = analyze_channels(sorted_net, sorted_net.init(jax.random.key(0), jnp.ones((1, 3))), jnp.ones((1, 3)))
  assert not analysis.groups
  assert any("sorted along a channel axis" in r for e in analysis.excluded for r in e.reasons)


def test_unknown_primitive_is_conservative_or_an_error():
  dense_vars = nn.Dense(4).init(jax.random.key(0), jnp.ones((1, 3)))

  def fft_model(variables, x):
    h = nn.Dense(4).apply(variables, x)
    return jnp.fft.fft(h).real @ jnp.ones((4, 2))

  with pytest.raises(SearchSpaceError, match="primitive 'fft'"):
    analyze_channels(fft_model, dense_vars, jnp.ones((1, 3)), strict=True)
  analysis = analyze_channels(fft_model, dense_vars, jnp.ones((1, 3)))
  assert analysis.groups == () and analysis.notes[0][0] == "fft"


def test_mutator_with_channel_analyzer(small):
  net, x, variables, _ = small
  mutator = jm.OneShotChannelMutator(
    channel_unit_cfg=dict(type="OneShotMutableChannelUnit", default_args=dict(candidate_choices=[0.25, 0.5, 1.0])),
    parse_cfg=dict(type="ChannelAnalyzer", demo_input=(2, 6, 6, 3)),
  ).prepare_from_supernet(variables, model=net)
  assert [u.name for u in mutator.units] == ["conv1_(0, 8)_8"]
  f = jax.jit(masked_function(mutator.analysis))
  keys = jax.random.split(jax.random.key(0), 4)
  outs = jax.vmap(lambda k: f(variables, mutator.masks(mutator.set_choices(mutator.sample_choices(k))), x))(keys)
  assert outs.shape == (4, 2, 3)
  with pytest.raises(ConfigError, match="sample's shapes"):
    f(variables, {}, x[:1])
  smallest = mutator.masks(mutator.set_choices(mutator.min_choices()))
  assert float(smallest["conv1_(0, 8)_8"].sum()) == 2.0
  assert mutator.export_fix_subnet(mutator.min_choices()) == {"conv1_(0, 8)_8": {"chosen": 0.25}}
  with pytest.raises(ConfigError, match="needs the model"):
    jm.OneShotChannelMutator(parse_cfg=dict(type="ChannelAnalyzer")).prepare_from_supernet(variables)


@pytest.mark.slow
def test_export_reloads_in_a_fresh_process(tmp_path):
  pytest.importorskip("flatbuffers")  # jax.export's serialisation needs it
  model, shape, _ = ZOO["swin_window_attention"]
  x = jax.random.normal(jax.random.key(1), shape)
  variables = model.init(jax.random.key(0), x)
  analysis = analyze_channels(model, variables, x)
  kept = analysis.first_channels(analysis.uniform_counts(0.5))
  network, small = analysis.export(variables, kept)
  (tmp_path / "net.msgpack").write_bytes(network.to_bytes(small))
  np.save(tmp_path / "x.npy", np.asarray(x))
  expected = masked_function(analysis)(variables, analysis.kept_masks(kept), x)
  script = textwrap.dedent(
    f"""
    import numpy as np
    from jaxmutate.analysis import load_pruned
    network, variables = load_pruned(open({str(tmp_path / "net.msgpack")!r}, "rb").read())
    np.save({str(tmp_path / "y.npy")!r}, np.asarray(network.apply(variables, np.load({str(tmp_path / "x.npy")!r}))))
    """
  )
  subprocess.run([sys.executable, "-c", script], check=True, timeout=300)
  np.testing.assert_allclose(np.load(tmp_path / "y.npy"), expected, rtol=1e-4, atol=1e-5)
  with pytest.raises(jm.errors.SubnetFileError, match="not a pruned-network blob|expected format"):
    load_pruned(b"not msgpack at all")


def test_resnet18_parity_with_torch_pruning():
  """torchvision ResNet-18 at 224x224, 50% of every unit, round_to=8: Torch-Pruning's 3.06 M params, 0.487 GMACs."""
  net = torchvision_resnet(18)
  x = jax.ShapeDtypeStruct((1, 224, 224, 3), jnp.float32)  # abstract: nothing runs at 224
  variables = jax.eval_shape(net.init, jax.random.key(0), x)
  analysis = analyze_channels(net, variables, x)
  assert len(analysis.groups) == 12  # 4 residual chains + 8 block-inner convs
  before = analysis.costs()
  assert int(before["params"]) == 11_689_512 and round(float(before["macs"]) / 1e9, 2) == 1.81
  counts = analysis.uniform_counts(0.5, round_to=8)
  kept = analysis.first_channels(counts)
  after = jax.jit(analysis.costs)(analysis.kept_masks(kept))
  assert round(float(after["params"]) / 1e6, 2) == 3.06

  # Torch-Pruning's counter (ptflops rules) adds BatchNorm (2 per element), ReLU and pooling (1 per input element)
  # to the convolutions' and the classifier's MACs: computed from the pruned widths.
  def width(*path):
    return next(counts[g.name] for g in analysis.groups for sl in g.slices if sl.path == path)

  stem = width("bn1", "scale")
  bn, relu, pool = 2 * stem * 112**2, stem * 112**2, stem * 112**2  # stem BatchNorm, ReLU, max-pool input
  for stage, size in zip((1, 2, 3, 4), (56, 28, 14, 7)):
    inner, chain = width(f"layer{stage}_0", "bn1", "scale"), width(f"layer{stage}_0", "bn2", "scale")
    assert (inner, chain) == (32 * 2 ** (stage - 1), 32 * 2 ** (stage - 1))
    bn += 2 * (2 * inner + 2 * chain) * size**2 + (2 * chain * size**2 if stage > 1 else 0)
    relu += 2 * (inner + chain) * size**2
  pool += width("layer4_1", "bn2", "scale") * 7**2  # the average pool's input
  assert round((float(after["macs"]) + bn + relu + pool) / 1e9, 3) == 0.487
  # XLA's cost_analysis of the exported (rewritten) network: it skips the padding taps the counter includes, so the
  # check is the pruned/unpruned ratio.
  small = jax.eval_shape(lambda v: analysis.slice_variables(v, kept), variables)
  pruned_flops = jax.jit(pruned_function(analysis, kept)).lower(small, x).cost_analysis()["flops"]
  full_flops = jax.jit(net.apply).lower(variables, x).cost_analysis()["flops"]
  assert abs(pruned_flops / full_flops - float(after["macs"]) / float(before["macs"])) < 0.01
