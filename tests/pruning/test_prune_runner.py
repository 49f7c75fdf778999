"""The Prune runner end to end (tiny network, few epochs) and its config errors."""

from __future__ import annotations

import flax.linen as nn
import jax
import jax.numpy as jnp
import numpy as np
import pytest

import jaxmutate as jm
from jaxmutate.analysis import analyze_channels, load_pruned
from jaxmutate.errors import ConfigError, ConfigKeyError, ConfigTypeError
from jaxmutate.export import load_subnet
from jaxmutate.models import PlainCNN
from jaxmutate.pruning import cost_model, mask_consumers, masked_apply
from jaxmutate.registry import load_config
from jaxmutate.runners.prune import Prune

TINY = dict(
  data=dict(type="digits", seed=0, val_fraction=0.2, test_fraction=0.2),
  train_cfg=dict(epochs=2, batch_size=128),
  prune_cfg=dict(epochs=1, batch_size=128),
  finetune_cfg=dict(epochs=1, batch_size=128),
)
ARCH = dict(type="PlainCNN", features=(8, 16), strides=(1, 2))


class ResidualCNN(nn.Module):
  """Not a PlainCNN: a residual add ties conv0 and conv2; exported as the analysis's rewritten program."""

  @nn.compact
  def __call__(self, x, train=False):
    x = nn.Conv(8, (3, 3), use_bias=False, name="conv0")(x)
    x = nn.relu(nn.BatchNorm(use_running_average=not train, name="bn0")(x))
    y = nn.relu(nn.Conv(8, (3, 3), name="conv1")(x))
    x = x + nn.Conv(8, (3, 3), name="conv2")(y)
    return nn.Dense(10, name="fc")(x.mean((1, 2)))


@pytest.mark.slow
@pytest.mark.parametrize(
  "model",
  [
    dict(
      architecture=ARCH,
      criterion="taylor",
      schedule=dict(type="ItePrune", prune_times=3),
      round_to=4,
      target_flops=0.5,
    ),
    dict(
      architecture=ResidualCNN(),
      criterion="fisher",
      schedule=dict(type="GroupFisher", interval=1),
      target_flops=0.6,
    ),
  ],
  ids=["plaincnn-iteprune-taylor", "residual-groupfisher"],
)
def test_prune_runner_reaches_the_target_and_exports(model, tmp_path):
  config = {"model": dict(type="Prune", **model), **TINY}
  result = jm.build(config["model"]).run(config, tmp_path, seed=0, progress=False)
  summary = result.summary
  assert summary["pruned"]["flops_ratio"] <= model["target_flops"] + 1e-9
  assert summary["pruned"]["params"] < summary["unpruned"]["params"]
  kept = {name: unit["kept"] for name, unit in summary["units"].items()}
  assert result.fix_subnet == {name: {"chosen": k} for name, k in kept.items()}
  assert all(k % model.get("round_to", 1) == 0 and k > 0 for k in kept.values())
  # The exported network is the masked one: same logits, same accuracy; it reloads from its file alone.
  assert summary["pruned"]["exported_max_abs_logit_diff"] < 1e-4
  assert summary["pruned"]["exported_test_accuracy"] == summary["pruned"]["test_accuracy"]
  if model["architecture"] is ARCH:
    assert summary["weights_file"] == "pruned.msgpack"
    static, variables = load_subnet(tmp_path / "pruned.msgpack")
    assert tuple(static.features) == tuple(kept.values())
    assert variables["params"]["conv0"]["kernel"].shape[-1] == kept["conv0_(0, 8)_8"]
    assert static.apply(variables, jnp.ones((2, 8, 8, 1))).shape == (2, 10)
  else:
    assert summary["weights_file"] == "pruned.jaxexport"
    network, variables = load_pruned((tmp_path / "pruned.jaxexport").read_bytes())
    assert variables["params"]["conv2"]["kernel"].shape[-1] == kept["conv0_(0, 8)_8"]
  mflops = [p["mflops"] for p in summary["pruning_path"]]
  assert mflops == sorted(mflops, reverse=True) and len(mflops) >= 2
  assert summary["pruned"]["latency_ratio"] > 0
  assert summary["plot"] is None or (tmp_path / "pruning.png").exists()


def test_the_analysis_finds_the_units_of_plain_cnn_and_costs_agree():
  model = PlainCNN(features=(4, 6), strides=(1, 2), num_classes=3)
  x = jnp.ones((1, 8, 8, 1))
  shapes = jax.eval_shape(model.init, jax.random.key(0), x)
  variables = jax.tree.map(lambda s: jnp.ones(s.shape, s.dtype), shapes)
  analysis = analyze_channels(model, variables, x)
  assert [g.name for g in analysis.groups] == ["conv0_(0, 4)_4", "conv1_(0, 6)_6"]
  assert [[s.path for s in g.slices if s.role == "input"] for g in analysis.groups] == [
    [("conv1", "kernel")],
    [("fc", "kernel")],
  ]
  costs = cost_model(analysis)
  kept = {"conv0_(0, 4)_4": 2, "conv1_(0, 6)_6": 3}
  # By hand: conv0 (8x8 positions, 3x3x1 taps), conv1 (stride 2: 4x4), fc; BatchNorm scale and bias per channel.
  assert float(costs.macs(kept)) == 64 * 9 * 1 * 2 + 16 * 9 * 2 * 3 + 3 * 3
  assert float(costs.params(kept)) == 9 * 2 + 2 * 2 + 9 * 2 * 3 + 2 * 3 + 3 * 3 + 3


def test_the_packaged_config_builds_and_checks():
  config = load_config("jaxmutate/configs/prune_digits.py")
  algorithm = jm.build(config["model"])
  assert isinstance(algorithm, Prune)
  algorithm.check_config(config)


@pytest.mark.parametrize(
  "change, error, match",
  [
    (dict(criterion="magnitude"), ConfigKeyError, "'magnitude'"),
    (dict(schedule=dict(type="Cosine")), ConfigKeyError, "'Cosine'"),
    (dict(schedule=dict(type="ItePrune", prune_time=3)), ConfigKeyError, "prune_time"),
    (dict(schedule=dict(type="GroupFisher", interval=0)), ConfigError, "interval"),
    (dict(target_flops=1.5), ConfigError, "1.5"),
    (dict(target_flops=0.0), ConfigError, "0.0"),
    (dict(ranking="loc"), ConfigError, "'loc'"),
    (dict(round_to=0), ConfigError, "round_to"),
    (dict(architecture=dict(type="Prune", architecture=ARCH)), ConfigTypeError, "Prune"),
  ],
)
def test_bad_runner_configs_name_the_value(change, error, match):
  with pytest.raises(error, match=match):
    jm.build({"type": "Prune", "architecture": ARCH, **change})


def test_round_to_larger_than_a_unit_is_named(tmp_path):
  algorithm = jm.build(dict(type="Prune", architecture=ARCH, round_to=12))
  with pytest.raises(ConfigError, match=r"round_to=12 is larger than unit 'conv0_\(0, 8\)_8' \(8 channels\)"):
    algorithm.run({"model": {}, **TINY}, tmp_path, seed=0, progress=False)
  with pytest.raises(ConfigKeyError, match="epoch"):
    algorithm.check_config({"model": {}, "finetune_cfg": dict(epoch=1)})


def test_local_ranking_and_per_unit_ratios_of_the_runner():
  model = PlainCNN(features=(8, 16), strides=(1, 2), num_classes=10)
  x = jnp.ones((1, 8, 8, 1))
  shapes = jax.eval_shape(model.init, jax.random.key(0), x)
  variables = jax.tree.map(lambda s: jnp.ones(s.shape, s.dtype), shapes)
  analysis = analyze_channels(model, variables, x)
  groups, costs = analysis.groups, cost_model(analysis)
  importance = {g.name: np.arange(g.num_channels, dtype=np.float32)[::-1] for g in groups}
  full = {g.name: np.ones(g.num_channels, np.float32) for g in groups}
  local = jm.build(dict(type="Prune", architecture=ARCH, ranking="local", round_to=2))
  target = 0.5 * costs.macs({})
  masks = local._prune_to(groups, importance, target, costs, full)
  kept = {name: int(m.sum()) for name, m in masks.items()}
  assert costs.macs(kept) <= target and all(k % 2 == 0 for k in kept.values())
  # One ratio for every unit: the kept fractions differ by rounding only.
  fractions = [kept[g.name] / g.num_channels for g in groups]
  assert max(fractions) - min(fractions) <= 2 / 8
  # The most important channels (the first ones here) are kept.
  assert masks[groups[0].name][: kept[groups[0].name]].all()
  ratios = {groups[0].name: 0.5, groups[1].name: 0.25}
  per_unit = local._prune_to(groups, importance, target, costs, full, ratios=ratios)
  assert {name: int(m.sum()) for name, m in per_unit.items()} == {groups[0].name: 4, groups[1].name: 4}


@pytest.mark.slow
def test_the_runner_trains_through_the_masked_program_which_equals_consumer_masks_on_conv_nets():
  model = PlainCNN(features=(4, 6), strides=(1, 2), num_classes=3)
  x = jax.random.normal(jax.random.key(1), (3, 8, 8, 1))
  # Random weights of the init's shapes (compiling the init takes longer than the test); variances positive.
  rng = np.random.default_rng(0)
  shapes = jax.eval_shape(model.init, jax.random.key(0), x[:1])
  variables = jax.tree.map(lambda s: jnp.asarray(0.5 + np.abs(rng.standard_normal(s.shape)), s.dtype), shapes)
  analysis = analyze_channels(model, variables, x[:1])
  masks = {g.name: (np.arange(g.num_channels) % 3 != 1).astype(np.float32) for g in analysis.groups}
  apply = jax.jit(masked_apply(model, analysis), static_argnames=("train", "mutable"))
  logits, new = apply(variables, masks, x, train=True, mutable=("batch_stats",))
  reference = jax.jit(
    lambda v, m, x: model.apply(mask_consumers(v, analysis.groups, m), x, train=True, mutable=["batch_stats"])
  )
  ref_logits, ref_new = reference(variables, masks, x)
  np.testing.assert_allclose(logits, ref_logits, rtol=1e-5, atol=1e-6)
  kept_stats = np.asarray(new["batch_stats"]["bn0"]["mean"])[masks["conv0_(0, 4)_4"] > 0]
  np.testing.assert_allclose(kept_stats, np.asarray(ref_new["batch_stats"]["bn0"]["mean"])[masks["conv0_(0, 4)_4"] > 0])
  evaluate = jax.jit(lambda v, m, x: model.apply(mask_consumers(v, analysis.groups, m), x))
  np.testing.assert_allclose(apply(variables, masks, x), evaluate(variables, masks, x), rtol=1e-5, atol=1e-6)
