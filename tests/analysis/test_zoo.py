"""The coverage sweep: unmodified Flax models analysed, pruned by 50% per unit, run masked and sliced, oracle-checked.

For every model of ``analysis_zoo.ZOO``: the units found (names and sizes), the exact kernel shapes after
keeping the first half of every unit, the masked network (traced masks) equal to the sliced, rewritten
program, and a ``jax.jvp`` oracle per unit: with a channel removed (its slices zeroed), perturbing the
channel's consumer slices changes nothing (every producer of the channel is in the unit), while perturbing its
producer slices in the intact network changes the output (the slices matter); for networks without
channel-reading ops (norms over channels, attention), also: with the channel's consumers cut, perturbing its
producers changes nothing (every consumer is in the unit).
"""

from __future__ import annotations

import jax
import jax.numpy as jnp
import numpy as np
import pytest
from analysis_zoo import ZOO

from jaxmutate.analysis import analyze_channels, masked_function, pruned_function

# name: ({unit: channels}, {kernel: shape after keeping the first half of every unit})
EXPECTED = {
  "resnet_basic": (
    {
      "conv1_(0, 8)_8": 8,
      "layer1_0.conv1_(0, 8)_8": 8,
      "layer2_0.conv1_(0, 16)_16": 16,
      "layer2_0.conv2_(0, 16)_16": 16,
    },
    {
      "conv1/kernel": (7, 7, 3, 4),
      "fc/kernel": (8, 10),
      "layer1_0/conv1/kernel": (3, 3, 4, 4),
      "layer1_0/conv2/kernel": (3, 3, 4, 4),
      "layer2_0/conv1/kernel": (3, 3, 4, 8),
      "layer2_0/conv2/kernel": (3, 3, 8, 8),
      "layer2_0/downsample_0/kernel": (1, 1, 4, 8),
    },
  ),
  "resnet_bottleneck": (
    {
      "conv1_(0, 8)_8": 8,
      "layer1_0.conv1_(0, 4)_4": 4,
      "layer1_0.conv2_(0, 4)_4": 4,
      "layer1_0.conv3_(0, 16)_16": 16,
      "layer2_0.conv1_(0, 8)_8": 8,
      "layer2_0.conv2_(0, 8)_8": 8,
      "layer2_0.conv3_(0, 32)_32": 32,
    },
    {
      "conv1/kernel": (7, 7, 3, 4),
      "fc/kernel": (16, 10),
      "layer1_0/conv1/kernel": (1, 1, 4, 2),
      "layer1_0/conv2/kernel": (3, 3, 2, 2),
      "layer1_0/conv3/kernel": (1, 1, 2, 8),
      "layer1_0/downsample_0/kernel": (1, 1, 4, 8),
      "layer2_0/conv1/kernel": (1, 1, 8, 4),
      "layer2_0/conv2/kernel": (3, 3, 4, 4),
      "layer2_0/conv3/kernel": (1, 1, 4, 16),
      "layer2_0/downsample_0/kernel": (1, 1, 8, 16),
    },
  ),
  "mobilenet_v2": (
    {
      "stem_(0, 8)_8": 8,
      "b1.expand_(0, 32)_32": 32,
      "b1.project_(0, 16)_16": 16,
      "b2.expand_(0, 64)_64": 64,
      "last_(0, 32)_32": 32,
    },
    {
      "b0/dw/kernel": (3, 3, 1, 4),
      "b0/project/kernel": (1, 1, 4, 4),
      "b1/dw/kernel": (3, 3, 1, 16),
      "b1/expand/kernel": (1, 1, 4, 16),
      "b1/project/kernel": (1, 1, 16, 8),
      "b2/dw/kernel": (3, 3, 1, 32),
      "b2/expand/kernel": (1, 1, 8, 32),
      "b2/project/kernel": (1, 1, 32, 8),
      "fc/kernel": (16, 10),
      "last/kernel": (1, 1, 8, 16),
      "stem/kernel": (3, 3, 3, 4),
    },
  ),
  "shufflenet_v2": (
    {
      "stem_(0, 8)_8": 8,
      "s0.b1_pw_(0, 2)_2": 2,
      "s0.b1_pw_(2, 4)_2": 2,
      "s0.b1_pw_(4, 8)_4": 4,
      "s0.b2_pw1_(0, 8)_8": 8,
      "s1.b2_pw1_(0, 8)_8": 8,
      "s2.b2_pw1_(0, 8)_8": 8,
      "last_(0, 32)_32": 32,
    },
    {
      "fc/kernel": (16, 10),
      "last/kernel": (1, 1, 8, 16),
      "s0/b1_dw/kernel": (3, 3, 1, 4),
      "s0/b1_pw/kernel": (1, 1, 4, 4),
      "s0/b2_dw/kernel": (3, 3, 1, 4),
      "s0/b2_pw1/kernel": (1, 1, 4, 4),
      "s0/b2_pw2/kernel": (1, 1, 4, 4),
      "s1/b2_dw/kernel": (3, 3, 1, 4),
      "s1/b2_pw1/kernel": (1, 1, 4, 4),
      "s1/b2_pw2/kernel": (1, 1, 4, 4),
      "s2/b2_dw/kernel": (3, 3, 1, 4),
      "s2/b2_pw1/kernel": (1, 1, 4, 4),
      "s2/b2_pw2/kernel": (1, 1, 4, 4),
      "stem/kernel": (3, 3, 3, 4),
    },
  ),
  "densenet": (
    {
      "stem_(0, 8)_8": 8,
      "d0_conv1_(0, 8)_8": 8,
      "d0_conv2_(0, 4)_4": 4,
      "d1_conv1_(0, 8)_8": 8,
      "d1_conv2_(0, 4)_4": 4,
      "d2_conv1_(0, 8)_8": 8,
      "d2_conv2_(0, 4)_4": 4,
    },
    {
      "d0_conv1/kernel": (1, 1, 4, 4),
      "d0_conv2/kernel": (3, 3, 4, 2),
      "d1_conv1/kernel": (1, 1, 6, 4),
      "d1_conv2/kernel": (3, 3, 4, 2),
      "d2_conv1/kernel": (1, 1, 8, 4),
      "d2_conv2/kernel": (3, 3, 4, 2),
      "fc/kernel": (10, 10),
      "stem/kernel": (3, 3, 3, 4),
    },
  ),
  "vgg": (
    {"conv0_(0, 8)_8": 8, "conv1_(0, 8)_8": 8, "conv2_(0, 16)_16": 16, "conv3_(0, 16)_16": 16, "fc1_(0, 32)_32": 32},
    {
      "conv0/kernel": (3, 3, 3, 4),
      "conv1/kernel": (3, 3, 4, 4),
      "conv2/kernel": (3, 3, 4, 8),
      "conv3/kernel": (3, 3, 8, 8),
      "fc1/kernel": (32, 16),
      "fc2/kernel": (16, 10),
    },
  ),
  "efficientnet_se": (
    {
      "stem_(0, 8)_8": 8,
      "b0.se_reduce_(0, 2)_2": 2,
      "b1.expand_(0, 32)_32": 32,
      "b1.se_reduce_(0, 2)_2": 2,
      "b1.project_(0, 16)_16": 16,
      "b2.expand_(0, 64)_64": 64,
      "b2.se_reduce_(0, 4)_4": 4,
    },
    {
      "b0/dw/kernel": (3, 3, 1, 4),
      "b0/project/kernel": (1, 1, 4, 4),
      "b0/se_expand/kernel": (1, 1, 1, 4),
      "b0/se_reduce/kernel": (1, 1, 4, 1),
      "b1/dw/kernel": (3, 3, 1, 16),
      "b1/expand/kernel": (1, 1, 4, 16),
      "b1/project/kernel": (1, 1, 16, 8),
      "b1/se_expand/kernel": (1, 1, 1, 16),
      "b1/se_reduce/kernel": (1, 1, 16, 1),
      "b2/dw/kernel": (3, 3, 1, 32),
      "b2/expand/kernel": (1, 1, 8, 32),
      "b2/project/kernel": (1, 1, 32, 8),
      "b2/se_expand/kernel": (1, 1, 2, 32),
      "b2/se_reduce/kernel": (1, 1, 32, 2),
      "fc/kernel": (8, 10),
      "stem/kernel": (3, 3, 3, 4),
    },
  ),
  "vit": (
    {
      "patch_embed_(0, 16)_16": 16,
      "block0_attn.qkv_(0, 8)_8": 8,
      "block0_mlp.fc1_(0, 32)_32": 32,
      "block1_attn.qkv_(0, 8)_8": 8,
      "block1_mlp.fc1_(0, 32)_32": 32,
    },
    {
      "block0_attn/proj/kernel": (8, 8),
      "block0_attn/qkv/kernel": (8, 24),
      "block0_mlp/fc1/kernel": (8, 16),
      "block0_mlp/fc2/kernel": (16, 8),
      "block1_attn/proj/kernel": (8, 8),
      "block1_attn/qkv/kernel": (8, 24),
      "block1_mlp/fc1/kernel": (8, 16),
      "block1_mlp/fc2/kernel": (16, 8),
      "head/kernel": (8, 10),
      "patch_embed/kernel": (4, 4, 3, 8),
    },
  ),
  "swin_window_attention": (
    {
      "patch_embed_(0, 16)_16": 16,
      "block0.attn.qkv_(0, 8)_8": 8,
      "block0.mlp.fc1_(0, 32)_32": 32,
      "block1.attn.qkv_(0, 8)_8": 8,
      "block1.mlp.fc1_(0, 32)_32": 32,
    },
    {
      "block0/attn/proj/kernel": (8, 8),
      "block0/attn/qkv/kernel": (8, 24),
      "block0/mlp/fc1/kernel": (8, 16),
      "block0/mlp/fc2/kernel": (16, 8),
      "block1/attn/proj/kernel": (8, 8),
      "block1/attn/qkv/kernel": (8, 24),
      "block1/mlp/fc1/kernel": (8, 16),
      "block1/mlp/fc2/kernel": (16, 8),
      "head/kernel": (8, 10),
      "patch_embed/kernel": (2, 2, 3, 8),
    },
  ),
  "unet": (
    {
      "enc1_conv1_(0, 8)_8": 8,
      "enc1_conv2_(0, 8)_8": 8,
      "enc2_conv1_(0, 16)_16": 16,
      "enc2_conv2_(0, 16)_16": 16,
      "mid_conv1_(0, 16)_16": 16,
      "mid_conv2_(0, 16)_16": 16,
      "up2_(0, 16)_16": 16,
      "dec2_conv1_(0, 16)_16": 16,
      "dec2_conv2_(0, 16)_16": 16,
      "up1_(0, 8)_8": 8,
      "dec1_conv1_(0, 8)_8": 8,
      "dec1_conv2_(0, 8)_8": 8,
    },
    {
      "dec1_conv1/kernel": (3, 3, 8, 4),
      "dec1_conv2/kernel": (3, 3, 4, 4),
      "dec2_conv1/kernel": (3, 3, 16, 8),
      "dec2_conv2/kernel": (3, 3, 8, 8),
      "enc1_conv1/kernel": (3, 3, 3, 4),
      "enc1_conv2/kernel": (3, 3, 4, 4),
      "enc2_conv1/kernel": (3, 3, 4, 8),
      "enc2_conv2/kernel": (3, 3, 8, 8),
      "head/kernel": (1, 1, 4, 2),
      "mid_conv1/kernel": (3, 3, 8, 8),
      "mid_conv2/kernel": (3, 3, 8, 8),
      "up1/kernel": (2, 2, 8, 4),
      "up2/kernel": (2, 2, 8, 8),
    },
  ),
  "mlp_mixer": (
    {
      "stem_(0, 16)_16": 16,
      "mixer0.token_fc1_(0, 8)_8": 8,
      "mixer0.channel_fc1_(0, 32)_32": 32,
      "mixer1.token_fc1_(0, 8)_8": 8,
      "mixer1.channel_fc1_(0, 32)_32": 32,
    },
    {
      "head/kernel": (8, 10),
      "mixer0/channel_fc1/kernel": (8, 16),
      "mixer0/channel_fc2/kernel": (16, 8),
      "mixer0/token_fc1/kernel": (16, 4),
      "mixer0/token_fc2/kernel": (4, 16),
      "mixer1/channel_fc1/kernel": (8, 16),
      "mixer1/channel_fc2/kernel": (16, 8),
      "mixer1/token_fc1/kernel": (16, 4),
      "mixer1/token_fc2/kernel": (4, 16),
      "stem/kernel": (2, 2, 3, 8),
    },
  ),
  "gru": (
    {"embed_(0, 8)_8": 8, "GRUCell_0.ir_(0, 16)_16": 16},
    {
      "GRUCell_0/hn/kernel": (8, 8),
      "GRUCell_0/hr/kernel": (8, 8),
      "GRUCell_0/hz/kernel": (8, 8),
      "GRUCell_0/in/kernel": (4, 8),
      "GRUCell_0/ir/kernel": (4, 8),
      "GRUCell_0/iz/kernel": (4, 8),
      "embed/kernel": (3, 4),
      "head/kernel": (8, 4),
    },
  ),
  "lstm": (
    {"embed_(0, 8)_8": 8, "OptimizedLSTMCell_0.hf_(0, 12)_12": 12},
    {
      "OptimizedLSTMCell_0/hf/kernel": (6, 6),
      "OptimizedLSTMCell_0/hg/kernel": (6, 6),
      "OptimizedLSTMCell_0/hi/kernel": (6, 6),
      "OptimizedLSTMCell_0/ho/kernel": (6, 6),
      "OptimizedLSTMCell_0/if/kernel": (4, 6),
      "OptimizedLSTMCell_0/ig/kernel": (4, 6),
      "OptimizedLSTMCell_0/ii/kernel": (4, 6),
      "OptimizedLSTMCell_0/io/kernel": (4, 6),
      "embed/kernel": (3, 4),
      "head/kernel": (6, 4),
    },
  ),
  "flax_attention": (
    {
      "embed_(0, 16)_16": 16,
      "attn.query_(0, 2)_2": 2,
      "attn.query_(0, 8)_8": 8,
      "attn.value_(0, 8)_8": 8,
      "mlp.fc1_(0, 32)_32": 32,
    },
    {
      "attn/key/kernel": (8, 1, 4),
      "attn/out/kernel": (1, 4, 8),
      "attn/query/kernel": (8, 1, 4),
      "attn/value/kernel": (8, 1, 4),
      "embed/kernel": (3, 8),
      "head/kernel": (8, 4),
      "mlp/fc1/kernel": (8, 16),
      "mlp/fc2/kernel": (16, 8),
    },
  ),
  "resnext_grouped": (
    {"stem_(0, 16)_16": 16, "conv1_(0, 4)_4": 4, "conv2_(0, 4)_4": 4},
    {
      "conv1/kernel": (1, 1, 8, 8),
      "conv2/kernel": (3, 3, 2, 8),
      "conv3/kernel": (1, 1, 8, 8),
      "fc/kernel": (8, 10),
      "stem/kernel": (3, 3, 3, 8),
    },
  ),
  "remat_groupnorm": (
    {"stem_(0, 4)_4": 4, "block0.conv1_(0, 4)_4": 4, "block1.conv1_(0, 4)_4": 4},
    {
      "block0/conv1/kernel": (3, 3, 8, 8),
      "block0/conv2/kernel": (3, 3, 8, 8),
      "block1/conv1/kernel": (3, 3, 8, 8),
      "block1/conv2/kernel": (3, 3, 8, 8),
      "fc/kernel": (8, 10),
      "stem/kernel": (3, 3, 3, 8),
    },
  ),
  "text_embedding": (
    {"embed_(0, 16)_16": 16, "fc1_(0, 16)_16": 16, "fc1_(16, 32)_16": 16},
    {
      "embed/embedding": (50, 8),
      "fc1/kernel": (8, 16),
      "fc2/kernel": (16, 8),
      "fc3/kernel": (16, 8),
      "head/kernel": (8, 3),
    },
  ),
}
# Models whose pruned channels still get values (token-mixing biases broadcast along channels): oracle A skipped.
WRITES_PRUNED = {"mlp_mixer"}
# Models without ops that read every channel (norms over channels, attention, mixing): oracle B applies.
CHANNELWISE = {
  "resnet_basic",
  "resnet_bottleneck",
  "mobilenet_v2",
  "shufflenet_v2",
  "densenet",
  "vgg",
  "efficientnet_se",
  "unet",
  "resnext_grouped",
  "text_embedding",
  "gru",
  "lstm",
}


def sample(shape, dtype, rng):
  if dtype == jnp.int32:
    return rng.integers(0, 50, shape).astype(np.int32)
  return rng.normal(size=shape).astype(np.float32)


def random_variables(model, x, rng):
  """Random variables without running ``init`` (no compile): positive BatchNorm variances."""

  def fill(path, leaf):
    value = rng.normal(size=leaf.shape).astype(leaf.dtype) * 0.5
    return np.abs(value) + 0.5 if getattr(path[-1], "key", None) == "var" else value

  return jax.tree_util.tree_map_with_path(fill, jax.eval_shape(model.init, jax.random.key(0), x))


def _leaf(tree, s):
  node = tree[s.collection]
  for k in s.path:
    node = node[k]
  return node


def channel_tangent(variables, group, channel, roles, rng):
  """Zeros except random values at ``channel``'s positions (an index or a list) of the unit's slices with those roles."""
  tangent = jax.tree_util.tree_map(np.zeros_like, variables)
  for s in group.slices:
    if s.collection == "params" and s.role in roles:
      leaf = _leaf(tangent, s)
      index = [slice(None)] * leaf.ndim
      index[s.axis] = np.asarray(s.indices)[channel]
      leaf[tuple(index)] = rng.normal(size=leaf[tuple(index)].shape) + 2.0
  return tangent


def stack(trees):
  return jax.tree_util.tree_map(lambda *xs: np.stack(xs), *trees)


def changed_kernels(before, after):
  flat = jax.tree_util.tree_flatten_with_path(after["params"])[0]
  old = {tuple(k.key for k in p): leaf.shape for p, leaf in jax.tree_util.tree_flatten_with_path(before["params"])[0]}
  return {
    "/".join(k.key for k in p): tuple(leaf.shape)
    for p, leaf in flat
    if tuple(leaf.shape) != old[tuple(k.key for k in p)] and p[-1].key in ("kernel", "embedding")
  }


FAST = {"resnet_basic", "shufflenet_v2", "swin_window_attention"}  # the rest compile several seconds each


@pytest.mark.parametrize("name", [n if n in FAST else pytest.param(n, marks=pytest.mark.slow) for n in sorted(ZOO)])
def test_unmodified_model(name):
  model, shape, dtype = ZOO[name]
  units, kernels = EXPECTED[name]
  check_unmodified_model(
    model, shape, dtype, units, kernels, writes_pruned=name in WRITES_PRUNED, channelwise=name in CHANNELWISE
  )


def check_unmodified_model(model, shape, dtype, units, kernels, *, writes_pruned=False, channelwise=False):
  """Analyses ``model``, checks its units and pruned kernels against the expected ones, masked == sliced, the oracle.

  ``units`` and ``kernels`` are either the expected dicts or functions of the analysis/variables that check them.
  """
  rng = np.random.default_rng(0)
  x = sample(shape, dtype, rng)
  variables = random_variables(model, x, rng)
  analysis = analyze_channels(model, variables, x)
  found = {g.name: g.num_channels for g in analysis.groups}
  if callable(units):
    units(found)
  else:
    assert found == units, analysis.report()
  kept = analysis.first_channels(analysis.uniform_counts(0.5))
  small = analysis.slice_variables(variables, kept)
  if callable(kernels):
    kernels(variables, small)
  else:
    assert changed_kernels(variables, small) == kernels
  masks = analysis.kept_masks(kept)

  # Per unit, its last channel: removed (all its slices masked), consumers cut, and the tangents.
  removed, cut, t_in, t_out, t_all = [], [], [], [], []
  for g in analysis.groups:
    c = g.num_channels - 1
    mask = np.ones(g.num_channels, np.float32)
    mask[c] = 0.0
    removed.append(analysis.mask_variables(variables, {g.name: mask}))
    consumers = channel_tangent(variables, g, c, ("input",), rng)
    cut.append(jax.tree_util.tree_map(lambda v, t: np.where(t != 0, 0.0, v).astype(v.dtype), variables, consumers))
    t_in.append(consumers)
    producers = ("output", "bias", "norm", "other")
    t_out.append(channel_tangent(variables, g, c, producers, rng))
    t_all.append(channel_tangent(variables, g, list(range(g.num_channels)), producers, rng))
  removed, cut, t_in, t_out, t_all = stack(removed), stack(cut), stack(t_in), stack(t_out), stack(t_all)
  forward = lambda v: model.apply(v, x)
  jvp = jax.vmap(lambda v, t: jax.jvp(forward, (v,), (t,))[1])
  masked_fn, sliced_fn = masked_function(analysis), pruned_function(analysis, kept)
  n = len(found)
  full = jax.tree_util.tree_map(lambda v: np.broadcast_to(v, (n, *v.shape)), variables)
  # One batch of jvps: [removed channel, consumer tangents], [intact, all producers], [consumers cut, producers].
  points = jax.tree_util.tree_map(lambda *xs: np.concatenate(xs), removed, full, cut)
  tangents = jax.tree_util.tree_map(lambda *xs: np.concatenate(xs), t_in, t_all, t_out)

  @jax.jit
  def run(variables, masks, small, points, tangents):
    return masked_fn(variables, masks, x), sliced_fn(small, x), jvp(points, tangents)

  masked, sliced, effects = run(variables, masks, small, points, tangents)
  effects = jnp.abs(effects).reshape(3, n, -1).max(2)
  producers_complete, matters, consumers_complete = effects
  np.testing.assert_allclose(masked, sliced, rtol=1e-4, atol=1e-4 * float(jnp.abs(masked).max()))
  assert sliced.shape == masked.shape
  assert bool((matters > 0).all()), dict(zip(found, matters.tolist()))
  if not writes_pruned:
    assert bool((producers_complete <= 1e-5 * matters).all()), dict(zip(found, producers_complete.tolist()))
  if channelwise:
    assert bool((consumers_complete <= 1e-5 * matters).all()), dict(zip(found, consumers_complete.tolist()))
  return analysis
