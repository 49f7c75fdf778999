"""Pruned programs equal the Flax model re-built at the pruned widths: channel-count literals follow the widths.

A mean over channels divides by a literal (the unpruned channel count) and an
attention scale is ``head_dim ** -0.5`` from a trace-time shape. The masked
program (:func:`masked_function`) and the rewritten one
(:func:`pruned_function`, :func:`export_pruned`) must both use the kept count,
so that they equal ``Model(features=smaller).apply(slice_variables(...))``.
"""

from __future__ import annotations

import flax.linen as nn
import jax
import jax.numpy as jnp
import numpy as np
from analysis_zoo import FlaxTransformer, MLPMixer, NormStatsNet, RematGroupNormNet, ViT

from jaxmutate.analysis import analyze_channels, export_pruned, masked_function


def _check(model, rebuilt, shape, kept_of=None, tol=2e-5):
  x = jax.random.normal(jax.random.key(1), shape)
  variables = model.init(jax.random.key(0), x)
  analysis = analyze_channels(model, variables, x)
  assert analysis.groups, analysis.report()
  kept = kept_of(analysis) if kept_of else analysis.first_channels(analysis.uniform_counts(0.5))
  small = analysis.slice_variables(variables, kept)
  expected = rebuilt.apply(small, x)
  masked = jax.jit(masked_function(analysis))(variables, analysis.kept_masks(kept), x)
  network, exported_small = export_pruned(analysis, variables, kept)
  exported = network.apply(exported_small, x)
  full = model.apply(variables, x)
  assert not np.allclose(full, expected, atol=1e-3)  # the pruning changes the output: the check has teeth
  for name, got in (("masked", masked), ("exported", exported)):
    np.testing.assert_allclose(got, expected, rtol=tol, atol=tol, err_msg=name)
  return analysis


def test_layernorm_mlp_divides_by_the_kept_count():
  model = nn.Sequential([nn.Dense(4), nn.LayerNorm(), nn.Dense(2)])
  rebuilt = nn.Sequential([nn.Dense(2), nn.LayerNorm(), nn.Dense(2)])
  _check(model, rebuilt, (1, 3), lambda a: {a.groups[0].name: [0, 1]})


def test_layernorm_mlp_non_contiguous_kept_channels():
  model = nn.Sequential([nn.Dense(6), nn.LayerNorm(use_fast_variance=False), nn.Dense(2)])
  rebuilt = nn.Sequential([nn.Dense(3), nn.LayerNorm(use_fast_variance=False), nn.Dense(2)])
  _check(model, rebuilt, (2, 3), lambda a: {a.groups[0].name: [1, 3, 4]})


def test_masked_count_is_traced_one_compile_for_every_width():
  model = nn.Sequential([nn.Dense(6), nn.LayerNorm(), nn.Dense(2)])
  x = jax.random.normal(jax.random.key(1), (1, 3))
  variables = model.init(jax.random.key(0), x)
  analysis = analyze_channels(model, variables, x)
  name = analysis.groups[0].name
  f = jax.jit(masked_function(analysis))
  outs = jax.vmap(lambda w: f(variables, analysis.masks({name: w}), x))(jnp.arange(1, 7))
  for width in range(1, 7):
    kept = {name: list(range(width))}
    rebuilt = nn.Sequential([nn.Dense(width), nn.LayerNorm(), nn.Dense(2)])
    np.testing.assert_allclose(outs[width - 1], rebuilt.apply(analysis.slice_variables(variables, kept), x), atol=2e-5)


def test_vit_block_attention_scale_and_layernorm():
  _check(ViT(dim=16, depth=1), ViT(dim=8, depth=1), (1, 8, 8, 3))


def test_mlp_mixer():
  _check(MLPMixer(depth=1), MLPMixer(dim=8, tokens_hidden=4, channels_hidden=16, depth=1), (1, 4, 4, 3))


def test_groupnorm_group_mean():
  _check(RematGroupNormNet(width=16), RematGroupNormNet(width=8), (1, 4, 4, 3))


def test_rmsnorm_and_jnp_mean_var():
  _check(NormStatsNet(hidden=8, width=6), NormStatsNet(hidden=4, width=3), (2, 5))


def test_flax_attention_uses_the_pruned_head_size():
  # Flax's dot_product_attention scales by 1/sqrt(query.shape[-1]) at trace time: a re-built model uses the new size.
  _check(FlaxTransformer(), FlaxTransformer(dim=8, heads=1, qkv_features=4), (1, 4, 3))


def test_vit_keeping_a_quarter():
  model = ViT(dim=16, depth=1)
  x = jax.random.normal(jax.random.key(1), (1, 8, 8, 3))
  analysis = analyze_channels(model, model.init(jax.random.key(0), x), x)
  counts = analysis.uniform_counts(0.75)
  dim = {g.name: counts[g.name] for g in analysis.groups}["patch_embed_(0, 16)_16"]
  _check(model, ViT(dim=dim, depth=1), x.shape, lambda a: a.first_channels(counts))
