"""The pruning library on a tiny unmodified CNN (conv -> BN -> relu -> conv -> dense) with hand-built units."""

from __future__ import annotations

import chex
import flax.linen as nn
import jax
import jax.numpy as jnp
import numpy as np
import optax
import pytest

from jaxmutate import pruning
from jaxmutate.analysis import ChannelGroup, ParamSlice, analyze_channels, pruned_function
from jaxmutate.errors import ConfigError, ConfigKeyError, ConfigTypeError


class TinyCNN(nn.Module):
  features: tuple[int, int] = (8, 12)
  num_classes: int = 3

  @nn.compact
  def __call__(self, x, train=False):
    x = nn.Conv(self.features[0], (3, 3), use_bias=False, name="conv1")(x)
    x = nn.relu(nn.BatchNorm(use_running_average=not train, name="bn1")(x))
    x = nn.relu(nn.Conv(self.features[1], (3, 3), strides=2, name="conv2")(x))
    return nn.Dense(self.num_classes, name="fc")(x.mean((1, 2)))


def tiny_groups(c1=8, c2=12):
  r1, r2 = tuple(range(c1)), tuple(range(c2))
  unit1 = ChannelGroup(
    f"conv1_(0, {c1})_{c1}",
    c1,
    (
      ParamSlice("params", ("conv1", "kernel"), 3, r1, "output"),
      ParamSlice("params", ("bn1", "scale"), 0, r1, "norm"),
      ParamSlice("params", ("bn1", "bias"), 0, r1, "norm"),
      ParamSlice("batch_stats", ("bn1", "mean"), 0, r1, "norm"),
      ParamSlice("batch_stats", ("bn1", "var"), 0, r1, "norm"),
      ParamSlice("params", ("conv2", "kernel"), 2, r1, "input"),
    ),
  )
  unit2 = ChannelGroup(
    f"conv2_(0, {c2})_{c2}",
    c2,
    (
      ParamSlice("params", ("conv2", "kernel"), 3, r2, "output"),
      ParamSlice("params", ("conv2", "bias"), 0, r2, "bias"),
      ParamSlice("params", ("fc", "kernel"), 0, r2, "input"),
    ),
  )
  return [unit1, unit2]


def slice_by_hand(variables, groups, masks):
  """The test's own slicing: every slice of a unit keeps its kept positions."""
  out = jax.tree.map(np.asarray, jax.device_get(dict(variables)))
  out = {c: jax.tree.map(lambda a: a, dict(t)) for c, t in out.items()}
  for g in groups:
    keep = np.flatnonzero(np.asarray(masks[g.name]) > 0.5)
    for s in g.slices:
      node = out[s.collection]
      for k in s.path[:-1]:
        node = node[k]
      node[s.path[-1]] = np.take(node[s.path[-1]], np.asarray(s.indices)[keep], axis=s.axis)
  return out


@pytest.fixture(scope="module")
def net():
  model = TinyCNN()
  x = jax.random.normal(jax.random.key(1), (6, 8, 8, 2))
  # Random weights of the init's shapes (compiling the init itself takes longer than everything else here).
  shapes = jax.eval_shape(model.init, jax.random.key(0), x)
  rng = np.random.default_rng(0)
  variables = jax.tree.map(lambda s: jnp.asarray(0.3 * rng.standard_normal(s.shape), s.dtype), shapes)
  # Non-trivial BatchNorm statistics and scales, so that masks and slices are really checked.
  variables = dict(variables)
  variables["batch_stats"] = {"bn1": {"mean": jnp.linspace(-0.5, 0.5, 8), "var": jnp.linspace(0.5, 2.0, 8)}}
  variables["params"] = dict(variables["params"])
  variables["params"]["bn1"] = {"scale": jnp.linspace(0.2, 1.6, 8), "bias": jnp.linspace(-0.1, 0.3, 8)}
  labels = jnp.arange(6) % 3
  return model, variables, tiny_groups(), x, labels


def loss_fn(model):
  def loss(variables, images, labels):
    logits = model.apply(variables, images)
    return optax.softmax_cross_entropy_with_integer_labels(logits, labels).mean()

  return loss


def test_magnitude_importance_matches_numpy(net):
  _, variables, groups, _, _ = net
  k1 = np.asarray(variables["params"]["conv1"]["kernel"])
  l1 = pruning.magnitude_importance(variables, groups, ord=1)
  l2 = pruning.magnitude_importance(variables, groups, ord=2, norm_scale=True)
  np.testing.assert_allclose(l1[groups[0].name], np.abs(k1).sum((0, 1, 2)), rtol=1e-6)
  scale = np.abs(np.asarray(variables["params"]["bn1"]["scale"]))
  np.testing.assert_allclose(l2[groups[0].name], np.sqrt((k1**2).sum((0, 1, 2))) * scale, rtol=1e-6)
  k2 = np.asarray(variables["params"]["conv2"]["kernel"])
  np.testing.assert_allclose(l1[groups[1].name], np.abs(k2).sum((0, 1, 2)), rtol=1e-6)


def test_taylor_importance_sums_over_every_params_slice(net):
  model, variables, groups, x, y = net
  grads = jax.jit(jax.grad(lambda p: loss_fn(model)({**variables, "params": p}, x, y)))(variables["params"])
  taylor = pruning.taylor_importance(variables, grads, groups)
  p, g = variables["params"], grads
  expected = (
    np.abs(p["conv2"]["kernel"] * g["conv2"]["kernel"]).sum((0, 1, 2))
    + np.abs(p["conv2"]["bias"] * g["conv2"]["bias"])
    + np.abs(p["fc"]["kernel"] * g["fc"]["kernel"]).sum(1)
  )
  np.testing.assert_allclose(taylor[groups[1].name], expected, rtol=1e-5)


def test_fisher_by_vmap_equals_a_loop_over_examples(net):
  model, variables, groups, x, y = net
  loss = loss_fn(model)
  chex.clear_trace_counter()
  fisher = jax.jit(lambda v, a, b: pruning.fisher_importance(loss, v, groups, a, b))(variables, x, y)
  single = jax.jit(jax.grad(lambda m, a, b: loss(pruning.mask_consumers(variables, groups, m), a, b)))
  ones = pruning.full_masks(groups)
  per_example = [single(ones, x[i : i + 1], y[i : i + 1]) for i in range(x.shape[0])]
  for g in groups:
    expected = sum(np.asarray(e[g.name]) ** 2 for e in per_example)
    np.testing.assert_allclose(fisher[g.name], expected, rtol=1e-4, atol=1e-9)
    assert float(np.max(expected)) > 0
  # The mask gradient of a unit is its activation's a * dL/da summed over positions: by the chain rule it is
  # the sum of w * dL/dw over the input slice of the consumer.
  grads = jax.jit(jax.grad(lambda p: loss({**variables, "params": p}, x[:1], y[:1])))(variables["params"])
  w, g = variables["params"]["conv2"]["kernel"], grads["conv2"]["kernel"]
  np.testing.assert_allclose(per_example[0][groups[0].name], (w * g).sum((0, 1, 3)), rtol=1e-4, atol=1e-7)


def test_masked_network_equals_sliced_network(net):
  model, variables, groups, x, _ = net
  importance = pruning.magnitude_importance(variables, groups)
  masks = pruning.local_pruning(groups, importance, prune_ratio={groups[0].name: 0.5, groups[1].name: 0.25})
  assert pruning.kept_counts(masks) == {groups[0].name: 4, groups[1].name: 9}
  masked = jax.jit(model.apply)(pruning.mask_consumers(variables, groups, masks), x)
  small = TinyCNN(features=(4, 9))
  sliced = jax.jit(small.apply)(slice_by_hand(variables, groups, masks), x)
  np.testing.assert_allclose(masked, sliced, rtol=1e-5, atol=1e-5)


def test_masks_stop_gradients_of_pruned_weights(net):
  model, variables, groups, x, y = net
  masks = {groups[0].name: jnp.asarray([1, 1, 0, 1, 0, 1, 1, 1], jnp.float32)}
  masked_loss = lambda p: loss_fn(model)(pruning.mask_consumers({**variables, "params": p}, groups, masks), x, y)  # noqa: E731
  grads = jax.jit(jax.grad(masked_loss))(variables["params"])
  pruned = np.array([2, 4])
  assert np.all(np.asarray(grads["conv1"]["kernel"])[..., pruned] == 0)
  assert np.all(np.asarray(grads["bn1"]["scale"])[pruned] == 0)
  assert np.any(np.asarray(grads["conv1"]["kernel"])[..., 0] != 0)


def analysed_costs(model, variables, x):
  """The cost model of the analysis of ``model`` on one example, and the analysis's units (the hand-built ones)."""
  analysis = analyze_channels(model, variables, x[:1])
  assert [g.name for g in analysis.groups] == [g.name for g in tiny_groups()]
  return pruning.cost_model(analysis)


def test_cost_model_matches_the_sliced_network_and_xla(net):
  model, variables, groups, x, _ = net
  costs = analysed_costs(model, variables, x)
  kept = {groups[0].name: 4, groups[1].name: 6}
  small = TinyCNN(features=(4, 6))
  small_vars = jax.eval_shape(small.init, jax.random.key(0), x)
  assert costs.params(kept) == sum(np.size(a) for a in jax.tree.leaves(small_vars["params"]))
  expected = 8 * 8 * 9 * 2 * 4 + 4 * 4 * 9 * 4 * 6 + 6 * 3  # conv1, conv2 (stride 2), fc
  assert costs.macs(kept) == expected
  flops = jax.jit(small.apply).lower(small_vars, x[:1]).compile().cost_analysis()
  flops = flops[0]["flops"] if isinstance(flops, list) else flops["flops"]
  # XLA counts 2 flops per MAC without the taps on SAME padding, plus the elementwise work: near 2 x MACs.
  assert 0.85 * 2 * expected <= flops <= 1.15 * 2 * expected
  # Jittable and vmappable in the kept counts.
  many = jax.jit(jax.vmap(lambda a, b: costs.macs({groups[0].name: a, groups[1].name: b})))(
    jnp.array([8, 4]), jnp.array([12, 6])
  )
  np.testing.assert_allclose(many, [costs.macs({}), expected])
  # The adapter is the analysis's own counter at the first-k masks.
  theirs = costs.analysis.costs(costs.analysis.masks(kept))
  assert float(theirs["macs"]) == float(costs.macs(kept)) and float(theirs["params"]) == float(costs.params(kept))
  with pytest.raises(ConfigKeyError, match="nope"):
    costs.macs({"nope": 3})
  with pytest.raises(ConfigTypeError, match="ChannelAnalysis"):
    pruning.cost_model(model)


def test_blocks_keep_the_same_positions_in_every_block():
  unit = ChannelGroup("g_(0, 8)_8", 8, (), num_blocks=2)
  importance = {unit.name: np.array([0, 5, 1, 1, 9, 0, 0, 0], np.float32)}  # positions: 9, 5, 1, 1
  masks = pruning.local_pruning([unit], importance, prune_ratio=0.5)
  assert masks[unit.name].tolist() == [1, 1, 0, 0, 1, 1, 0, 0]
  assert pruning.round_kept(3, unit) == 4 and pruning.round_kept(1, unit, round_to=3) == 6


def test_global_pruning_reaches_a_cost_target_with_round_to(net):
  model, variables, groups, x, _ = net
  costs = analysed_costs(model, variables, x)
  importance = pruning.magnitude_importance(variables, groups)
  target = 0.5 * costs.macs({})
  masks = pruning.global_pruning(groups, importance, target, cost_fn=costs.macs, round_to=4)
  kept = pruning.kept_counts(masks)
  assert costs.macs(kept) <= target
  assert all(k % 4 == 0 and k > 0 for k in kept.values())
  # Greedy: putting any quantum back would exceed the target.
  assert all(
    costs.macs({**kept, n: min(k + 4, g.num_channels)}) > target for n, k, g in zip(kept, kept.values(), groups)
  )
  # Channels pruned already stay pruned.
  again = pruning.global_pruning(groups, importance, 0.3 * costs.macs({}), cost_fn=costs.macs, round_to=4, masks=masks)
  for g in groups:
    assert np.all(again[g.name] <= masks[g.name])


def test_global_normalisation_makes_units_comparable():
  a, b = ChannelGroup("a_(0, 4)_4", 4, ()), ChannelGroup("b_(0, 4)_4", 4, ())
  importance = {a.name: np.array([100.0, 200.0, 300.0, 400.0]), b.name: np.array([1.0, 2.0, 3.0, 4.0])}
  raw = pruning.kept_counts(pruning.global_pruning([a, b], importance, 0.5, normalize="none"))
  fair = pruning.kept_counts(pruning.global_pruning([a, b], importance, 0.5, normalize="mean"))
  assert raw == {a.name: 4, b.name: 0 + 1} or raw[b.name] == 1  # b shrinks to one channel, then a
  assert fair == {a.name: 2, b.name: 2}


def test_ite_prune_schedule_is_mmrazors():
  schedule = pruning.ItePruneSchedule({"u": 0.5}, step_freq=20, prune_times=5)
  times = [i for i in range(200) if schedule.is_prune_time(i)]
  assert times == [0, 20, 40, 60, 80]
  assert [round(schedule.prune_at(i)["u"], 6) for i in (20, 40, 60, 80)] == [0.8, 0.7, 0.6, 0.5]
  counts = pruning.ItePruneSchedule({"u": 10}, {"u": 32}, step_freq=1, prune_times=3)
  assert [counts.prune_at(i)["u"] for i in range(3)] == [24, 17, 10]  # int() truncation, as MMRazor
  at_once = pruning.ItePruneSchedule({"u": 0.5}, step_freq=3, prune_times=2, linear_schedule=False)
  assert at_once.prune_at(0) == {"u": 0.5} and at_once.last_step == 3


def test_group_fisher_prunes_the_least_fisher_per_flop(net):
  model, variables, groups, x, y = net
  costs = analysed_costs(model, variables, x)
  state = pruning.group_fisher_init(groups)
  fisher = {groups[0].name: jnp.full((8,), 10.0).at[3].set(1.0), groups[1].name: jnp.full((12,), 10.0).at[5].set(2.0)}
  state = pruning.group_fisher_accumulate(state, fisher)
  masks, state, pruned = pruning.group_fisher_prune(state, groups, pruning.full_masks(groups), costs.macs)
  # conv1's channel saves more MACs per channel than conv2's (input of conv2 at full resolution ...): compare.
  d1 = costs.macs({}) - costs.macs({groups[0].name: 7})
  d2 = costs.macs({}) - costs.macs({groups[1].name: 11})
  expected = groups[0].name if 1.0 / d1 < 2.0 / d2 else groups[1].name
  assert pruned == expected
  index = 3 if expected == groups[0].name else 5
  assert masks[expected][index] == 0 and masks[expected].sum() == groups[groups[0].name != expected].num_channels - 1
  assert float(sum(v.sum() for v in state.fisher.values())) == 0
  # The last channel of a unit is never pruned; a NaN skips the step.
  one = {groups[0].name: np.eye(8, dtype=np.float32)[0], groups[1].name: np.ones(12, np.float32)}
  state = pruning.group_fisher_accumulate(state, {groups[0].name: jnp.zeros(8), groups[1].name: jnp.ones(12)})
  masks2, _, pruned2 = pruning.group_fisher_prune(state, groups, one, costs.macs)
  assert pruned2 == groups[1].name and masks2[groups[0].name].sum() == 1
  nan = pruning.group_fisher_accumulate(
    pruning.group_fisher_init(groups), {groups[0].name: jnp.full(8, jnp.nan), groups[1].name: jnp.ones(12)}
  )
  assert pruning.group_fisher_prune(nan, groups, one, costs.macs)[2] is None


def test_group_lasso_shrinks_whole_channels(net):
  _, variables, groups, _, _ = net
  params = variables["params"]
  transform = optax.chain(pruning.group_lasso(groups, strength=1.0), optax.sgd(0.05))
  state = transform.init(params)
  zero_grads = jax.tree.map(jnp.zeros_like, params)
  step = jax.jit(lambda p, s: transform.update(zero_grads, s, p))
  before = pruning.group_lasso_penalty(params, groups)
  for _ in range(5):
    updates, state = step(params, state)
    params = optax.apply_updates(params, updates)
  assert float(pruning.group_lasso_penalty(params, groups)) < float(before)
  # The step is along -w / ||w|| of each channel: the direction of every channel's weights is kept.
  k0, k1 = np.asarray(variables["params"]["conv1"]["kernel"]), np.asarray(params["conv1"]["kernel"])
  cos = (k0 * k1).sum((0, 1, 2)) / np.linalg.norm(k0.reshape(-1, 8), axis=0) / np.linalg.norm(k1.reshape(-1, 8), axis=0)
  np.testing.assert_allclose(cos, 1.0, atol=1e-5)
  with pytest.raises(ConfigError, match="-1"):
    pruning.group_lasso(groups, strength=-1)


@pytest.mark.parametrize("ratio", [-0.1, 1.0, 1.5, "half"])
def test_pruning_ratios_outside_0_1_are_errors(net, ratio):
  _, variables, groups, _, _ = net
  importance = pruning.magnitude_importance(variables, groups)
  with pytest.raises(ConfigError, match="pruning ratio.*" + str(ratio)):
    pruning.local_pruning(groups, importance, prune_ratio=ratio)


def test_bad_input_names_the_value(net):
  _, variables, groups, _, _ = net
  importance = pruning.magnitude_importance(variables, groups)
  with pytest.raises(ConfigError, match=r"round_to=16 is larger than unit 'conv1_\(0, 8\)_8' \(8 channels\)"):
    pruning.local_pruning(groups, importance, prune_ratio=0.5, round_to=16)
  with pytest.raises(ConfigError, match="round_to=16"):
    pruning.global_pruning(groups, importance, 0.5, round_to=16)
  with pytest.raises(ConfigKeyError, match="conv9"):
    pruning.local_pruning(groups, importance, prune_ratio={"conv9": 0.5})
  with pytest.raises(ConfigKeyError, match="conv9"):
    pruning.mask_consumers(variables, groups, {"conv9": jnp.ones(3)})
  with pytest.raises(ConfigKeyError, match="conv9"):
    pruning.ItePruneSchedule.for_groups(groups, {"conv9": 0.5})
  with pytest.raises(ConfigKeyError, match="'magnitude'"):
    pruning.make_importance_fn("magnitude", groups)
  with pytest.raises(ConfigError, match=r"kept ratio.*pruning ratio of 1"):
    pruning.ItePruneSchedule({"u": 0.0})
  with pytest.raises(ConfigError, match=r"\[1, 8\], got 9"):
    pruning.ItePruneSchedule.for_groups(groups, {groups[0].name: 9})
  with pytest.raises(ConfigError, match="step_freq"):
    pruning.ItePruneSchedule({"u": 0.5}, step_freq=0)
  with pytest.raises(ConfigError, match="taylor"):
    pruning.make_importance_fn("taylor", groups)


def test_make_importance_fn_runs_every_criterion_under_jit(net):
  model, variables, groups, x, y = net
  for criterion in pruning.CRITERIA:
    fn = jax.jit(pruning.make_importance_fn(criterion, groups, loss_fn(model)))
    values = fn(variables, x, y, masks=pruning.full_masks(groups))
    assert {k: v.shape for k, v in values.items()} == {g.name: (g.num_channels,) for g in groups}
    assert all(bool(jnp.all(jnp.isfinite(v))) for v in values.values())


class LayerNormMLP(nn.Module):
  """Channels that feed a LayerNorm: its statistics read them although no kernel does."""

  @nn.compact
  def __call__(self, x):
    x = nn.LayerNorm(name="ln")(nn.Dense(6, name="fc1")(x))
    return nn.Dense(3, name="fc2")(nn.gelu(x))


@pytest.mark.slow
def test_masked_apply_is_the_sliced_program_where_consumer_masks_are_not():
  model, x = LayerNormMLP(), jax.random.normal(jax.random.key(2), (4, 5))
  variables = model.init(jax.random.key(0), x[:1])
  apply = jax.jit(pruning.masked_apply(model, analyze_channels(model, variables, x[:1])))
  analysis = analyze_channels(model, variables, x)  # the sliced program is traced at the batch's shape
  (unit,) = analysis.groups
  kept = {unit.name: [0, 2, 3, 5]}
  masks = analysis.kept_masks(kept)
  sliced = pruned_function(analysis, kept)(analysis.slice_variables(variables, kept), x)
  np.testing.assert_allclose(apply(variables, masks, x), sliced, rtol=1e-5, atol=1e-6)
  # Masking only the consumers leaves the pruned channels in the LayerNorm's statistics.
  read_side = model.apply(pruning.mask_consumers(variables, analysis.groups, masks), x)
  assert float(jnp.max(jnp.abs(read_side - sliced))) > 1e-3
  # Taylor of the pruned network: the gradient of the masked program, zero on the pruned weights.
  labels = jnp.arange(4) % 3

  def masked_loss(v, m, a, b):
    return optax.softmax_cross_entropy_with_integer_labels(apply(v, m, a), b).mean()

  taylor = jax.jit(pruning.make_importance_fn("taylor", analysis.groups, masked_loss_fn=masked_loss))
  values = np.asarray(taylor(variables, x, labels, masks=masks)[unit.name])
  assert np.all(values[[1, 4]] == 0) and np.all(values[[0, 2, 3, 5]] > 0)
  with pytest.raises(ConfigTypeError, match="ChannelGroup"):
    pruning.masked_apply(model, "fc1")
  with pytest.raises(ConfigError, match="other units"):
    pruning.masked_apply(model, tiny_groups())(variables, {}, x)
