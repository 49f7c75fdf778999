"""DynamicBatchNorm, DynamicLayerNorm and SwitchableBatchNorm against sliced flax norms."""

from __future__ import annotations

import chex
import flax.linen as nn
import jax
import jax.numpy as jnp
import pytest

from jaxmutate import errors
from jaxmutate.dynamic import DynamicBatchNorm, DynamicLayerNorm, SwitchableBatchNorm, Width

C = 6


def pad_to(y, n):
  return jnp.pad(y, [(0, 0)] * (y.ndim - 1) + [(0, n - y.shape[-1])])


def with_garbage(x, w):
  return jnp.where((jnp.arange(x.shape[-1]) >= w).reshape((1,) * (x.ndim - 1) + (-1,)), jnp.inf, x)


@pytest.fixture(scope="module")
def bn_setup():
  x = jax.random.normal(jax.random.key(0), (4, 3, 3, C)) * 2 + 1
  bn = DynamicBatchNorm(momentum=0.9)
  variables = bn.init(jax.random.key(1), x, use_running_average=False)
  variables = jax.tree.map(lambda v: v + jnp.linspace(0.1, 0.6, C), variables)  # non-trivial stats and affine
  return bn, variables, x


def sliced_bn(variables, x, w, train):
  sliced = jax.tree.map(lambda v: v[:w], variables)
  static = nn.BatchNorm(momentum=0.9, use_running_average=not train)
  if train:
    y, updates = static.apply(sliced, x[..., :w], mutable=["batch_stats"])
    return pad_to(y, C), updates["batch_stats"]
  return pad_to(static.apply(sliced, x[..., :w]), C), sliced["batch_stats"]


@pytest.mark.parametrize("train", [False, True])
def test_batch_norm_equals_nn_batch_norm_at_full_width(bn_setup, train):
  bn, variables, x = bn_setup
  static = nn.BatchNorm(momentum=0.9)
  chex.assert_trees_all_equal(
    bn.init(jax.random.key(1), x, use_running_average=False),
    static.init(jax.random.key(1), x, use_running_average=False),
  )
  got = bn.apply(variables, x, use_running_average=not train, mutable=["batch_stats"])
  expected = static.apply(variables, x, use_running_average=not train, mutable=["batch_stats"])
  chex.assert_trees_all_close(got, expected, atol=1e-6)


@pytest.mark.parametrize("train", [False, True])
def test_batch_norm_at_every_width_concrete_and_traced(bn_setup, train):
  bn, variables, x = bn_setup
  chex.clear_trace_counter()

  def run(x, w):
    return bn.apply(variables, x, w, use_running_average=not train, mutable=["batch_stats"])

  traced = jax.jit(chex.assert_max_traces(run, n=1))
  for w in (1, 3, 6):
    y_ref, stats_ref = sliced_bn(variables, x, w, train)
    for y, updates in (run(with_garbage(x, w), w), traced(with_garbage(x, w), Width(jnp.int32(w), C))):
      chex.assert_trees_all_close(y, y_ref, atol=1e-5)
      assert (y[..., w:] == 0).all()
      stats = updates["batch_stats"]
      for k in ("mean", "var"):
        chex.assert_trees_all_close(stats[k][:w], stats_ref[k], atol=1e-5)
        # Only the kept channels' running statistics change.
        chex.assert_trees_all_equal(stats[k][w:], variables["batch_stats"][k][w:])


def test_batch_norm_vmap_and_grad(bn_setup):
  bn, variables, x = bn_setup
  ys = jax.vmap(lambda w: bn.apply(variables, x, w, use_running_average=True))(jnp.array([2, 5]))
  chex.assert_trees_all_close(ys[0], sliced_bn(variables, x, 2, False)[0], atol=1e-5)

  def loss(params, w):
    y = bn.apply(
      {"params": params, "batch_stats": variables["batch_stats"]},
      x,
      w,
      use_running_average=False,
      mutable=["batch_stats"],
    )[0]
    return jnp.sum(jnp.sin(y))

  grads = jax.jit(jax.grad(loss))(variables["params"], jnp.int32(3))
  expected = jax.grad(
    lambda p: jnp.sum(
      jnp.sin(
        nn.BatchNorm(use_running_average=False).apply(
          {"params": p, "batch_stats": jax.tree.map(lambda v: v[:3], variables["batch_stats"])},
          x[..., :3],
          mutable=["batch_stats"],
        )[0]
      )
    )
  )(jax.tree.map(lambda v: v[:3], variables["params"]))
  for k in ("scale", "bias"):
    chex.assert_trees_all_close(grads[k], jnp.zeros(C).at[:3].set(expected[k]), atol=1e-5)


def test_bucketed_batch_norm_matches_the_masked_one(bn_setup):
  _, variables, x = bn_setup
  bucketed = DynamicBatchNorm(momentum=0.9, max_buckets=3)
  f = jax.jit(
    lambda w: bucketed.apply(
      variables, x, Width(w, C, candidates=(2, 4, 6)), use_running_average=False, mutable=["batch_stats"]
    )
  )
  for w in (1, 2, 5):
    y, updates = f(jnp.int32(w))
    y_ref, stats_ref = sliced_bn(variables, x, w, True)
    chex.assert_trees_all_close(y, y_ref, atol=1e-5)
    chex.assert_trees_all_close(updates["batch_stats"]["mean"][:w], stats_ref["mean"], atol=1e-5)


def test_batch_norm_with_an_order_updates_only_the_kept_channels(bn_setup):
  bn, variables, x = bn_setup
  order = jnp.array([4, 1, 0, 5, 2, 3])
  y, updates = jax.jit(
    lambda w: bn.apply(variables, x, Width(w, C, order=order), use_running_average=False, mutable=["batch_stats"])
  )(jnp.int32(2))
  full, full_updates = bn.apply(variables, x, use_running_average=False, mutable=["batch_stats"])
  kept, dropped = jnp.array([1, 4]), jnp.array([0, 2, 3, 5])
  chex.assert_trees_all_close(y[..., kept], full[..., kept], atol=1e-5)
  assert (y[..., dropped] == 0).all()
  chex.assert_trees_all_close(updates["batch_stats"]["mean"][kept], full_updates["batch_stats"]["mean"][kept])
  chex.assert_trees_all_equal(updates["batch_stats"]["mean"][dropped], variables["batch_stats"]["mean"][dropped])


def test_batch_norm_errors(bn_setup):
  bn, variables, x = bn_setup
  with pytest.raises(errors.ChoiceError, match="DynamicBatchNorm.*7.*6"):
    bn.apply(variables, x, 7, use_running_average=True)
  with pytest.raises(errors.ChoiceTypeError):
    bn.apply(variables, x, 2.0, use_running_average=True)
  with pytest.raises(errors.SearchSpaceError):
    bn.apply(variables, x, Width(2, 8), use_running_average=True)
  with pytest.raises(errors.SearchSpaceError, match="last axis"):
    DynamicBatchNorm(axis=1).init(jax.random.key(0), x, use_running_average=True)


def test_layer_norm_normalises_over_the_kept_features_only():
  x = jax.random.normal(jax.random.key(2), (3, 5, C)) * 3 + 2
  ln = DynamicLayerNorm()
  variables = jax.tree.map(lambda v: v + jnp.linspace(0.1, 0.6, C), ln.init(jax.random.key(0), x))
  chex.assert_trees_all_equal(ln.init(jax.random.key(0), x), nn.LayerNorm().init(jax.random.key(0), x))
  chex.assert_trees_all_close(ln.apply(variables, x), nn.LayerNorm().apply(variables, x), atol=1e-6)

  def sliced(w):
    return pad_to(nn.LayerNorm().apply(jax.tree.map(lambda v: v[:w], variables), x[..., :w]), C)

  traced = jax.jit(lambda x, w: ln.apply(variables, x, w))
  concrete = jax.jit(lambda x, w: ln.apply(variables, x, w), static_argnums=1)
  for w in (1, 4):
    chex.assert_trees_all_close(concrete(with_garbage(x, w), w), sliced(w), atol=1e-5)
  for w in (1, 2, 4, 6):
    chex.assert_trees_all_close(traced(with_garbage(x, w), jnp.int32(w)), sliced(w), atol=1e-5)
  ys = jax.vmap(lambda w: ln.apply(variables, x, w))(jnp.array([2, 4]))
  chex.assert_trees_all_close(ys[1], sliced(4), atol=1e-5)
  grads = jax.jit(jax.grad(lambda p: jnp.sum(ln.apply({"params": p}, x, jnp.int32(2)) ** 3)))(variables["params"])
  assert (grads["scale"][2:] == 0).all() and (grads["bias"][2:] == 0).all()
  with pytest.raises(errors.ChoiceError, match="DynamicLayerNorm"):
    ln.apply(variables, x, 0)


@pytest.fixture(scope="module")
def sbn_setup():
  x = jax.random.normal(jax.random.key(3), (8, C)) * 2 + 1
  sbn = SwitchableBatchNorm(candidates=(6, 2, 4), momentum=0.9)
  variables = sbn.init(jax.random.key(0), x, 0, use_running_average=False)
  return sbn, variables, x


def test_switchable_batch_norm_has_one_batch_norm_per_candidate(sbn_setup):
  _, variables, _ = sbn_setup
  assert sorted(variables["params"]) == ["candidate_bn_2", "candidate_bn_4", "candidate_bn_6"]
  assert variables["params"]["candidate_bn_4"]["scale"].shape == (4,)
  assert variables["batch_stats"]["candidate_bn_2"]["var"].shape == (2,)


@pytest.mark.parametrize("train", [False, True])
def test_switchable_batch_norm_uses_the_chosen_candidates_norm(sbn_setup, train):
  sbn, variables, x = sbn_setup
  variables = jax.tree.map(lambda v: v + 0.3, variables)

  def run(x, choice):
    return sbn.apply(variables, x, choice, use_running_average=not train, mutable=["batch_stats"])

  traced = jax.jit(run)
  for i, w in enumerate((2, 4, 6)):
    name = f"candidate_bn_{w}"
    static = nn.BatchNorm(momentum=0.9, use_running_average=not train)
    sub = {"params": variables["params"][name], "batch_stats": variables["batch_stats"][name]}
    y_ref, ref_updates = static.apply(sub, x[..., :w], mutable=["batch_stats"])
    for y, updates in (
      run(with_garbage(x, w), i),
      traced(with_garbage(x, w), jnp.int32(i)),
      traced(with_garbage(x, w), Width(jnp.int32(w), C, candidates=(2, 4, 6))),
    ):
      chex.assert_trees_all_close(y, pad_to(y_ref, C), atol=1e-5)
      chex.assert_trees_all_close(updates["batch_stats"][name], ref_updates["batch_stats"], atol=1e-5)
      for other in variables["batch_stats"]:
        if other != name:
          chex.assert_trees_all_equal(updates["batch_stats"][other], variables["batch_stats"][other])


def test_switchable_batch_norm_vmap_over_choices(sbn_setup):
  sbn, variables, x = sbn_setup
  ys = jax.vmap(lambda i: sbn.apply(variables, x, i, use_running_average=True))(jnp.array([0, 2]))
  chex.assert_trees_all_close(ys[0], sbn.apply(variables, x, 0, use_running_average=True), atol=1e-6)
  chex.assert_trees_all_close(ys[1], sbn.apply(variables, x, 2, use_running_average=True), atol=1e-6)


def test_switchable_batch_norm_errors(sbn_setup):
  sbn, variables, x = sbn_setup
  with pytest.raises(errors.ChoiceError, match="index 3"):
    sbn.apply(variables, x, 3, use_running_average=True)
  with pytest.raises(errors.ChoiceTypeError):
    sbn.apply(variables, x, 1.0, use_running_average=True)
  with pytest.raises(errors.ChoiceError, match="candidates"):
    sbn.apply(variables, x, Width(3, C), use_running_average=True)
  with pytest.raises(errors.SearchSpaceError, match="candidates"):
    sbn.apply(variables, x, Width(2, C, candidates=(2, 6)), use_running_average=True)
  with pytest.raises(errors.SearchSpaceError, match="outside"):
    SwitchableBatchNorm(candidates=(2, 9)).init(jax.random.key(0), x, 0, use_running_average=True)
