"""SPOS as pure functions: the train step, BN recalibration, scoring, retraining."""

import chex
import jax
import jax.numpy as jnp
import numpy as np
import optax
import pytest

import jaxmutate as jm
from jaxmutate.algorithms import (
  build_optimizer,
  classification_loss,
  evaluate_accuracy,
  init_train_state,
  make_fixed_subnet_train_step,
  make_population_scorer,
  make_spos_train_step,
  recalibrate_batch_stats,
  supervised_update,
)


@pytest.fixture(scope="module")
def setup():
  net = jm.SearchableConvNet(num_classes=3, width=4, num_layers=2)
  x = jax.random.normal(jax.random.key(0), (8, 6, 6, 1))
  y = jnp.arange(8, dtype=jnp.int32) % 3
  optimizer = optax.sgd(0.05, momentum=0.9)
  state, variables = init_train_state(net, optimizer, jax.random.key(1), x)
  mutator = jm.OneShotModuleMutator().prepare_from_supernet(variables)
  return net, x, y, optimizer, state, mutator


def test_train_step_updates_only_the_sampled_path(setup):
  net, x, y, optimizer, state, mutator = setup
  step = make_spos_train_step(net, mutator, optimizer)
  key = jax.random.key(7)
  new_state, metrics = step(state, x, y, key)
  chosen = mutator.export_fix_subnet(mutator.sample_choices(key))
  for layer in ("layers.0", "layers.1"):
    name = chosen[layer]["chosen"]
    for candidate, params in state.params[layer].items():
      moved = not all(
        np.array_equal(a, b)
        for a, b in zip(jax.tree.leaves(params), jax.tree.leaves(new_state.params[layer][candidate]))
      )
      assert moved == (candidate == name), (layer, candidate, name)
      if candidate in state.batch_stats.get(layer, {}):
        stats_moved = not all(
          np.array_equal(a, b)
          for a, b in zip(
            jax.tree.leaves(state.batch_stats[layer][candidate]),
            jax.tree.leaves(new_state.batch_stats[layer][candidate]),
          )
        )
        assert stats_moved == (candidate == name)
  assert int(new_state.step) == 1
  chex.assert_shape(metrics["loss"], ())


def test_train_step_compiles_once_for_all_subnets(setup):
  net, x, y, optimizer, state, mutator = setup
  # The loss runs in Python only while the step is traced: a second trace fails the assertion.
  loss_fn = chex.assert_max_traces(classification_loss, n=1)
  step = make_spos_train_step(net, mutator, optimizer, loss_fn)
  for i in range(4):
    state, _ = step(state, x, y, jax.random.key(i))
  assert int(state.step) == 4


def test_training_reduces_loss(setup):
  net, x, y, optimizer, state, mutator = setup
  step = make_spos_train_step(net, mutator, optimizer)
  losses = []
  for i in range(30):
    state, metrics = step(state, x, y, jax.random.key(i % 3))
    losses.append(float(metrics["loss"]))
  assert np.mean(losses[-5:]) < np.mean(losses[:5])


def test_recalibration_gives_exact_batch_statistics(setup):
  net, x, _, _, state, mutator = setup
  choices = mutator.set_choices({0: jnp.int32(1), 1: jnp.int32(3)})
  stats = recalibrate_batch_stats(net, state.params, state.batch_stats, choices, x)
  # The stem's BatchNorm sees the stem conv output of x: compare with its exact moments.
  features = net.apply(
    {"params": state.params, "batch_stats": state.batch_stats},
    x,
    choices,
    train=True,
    mutable=["batch_stats", "intermediates"],
    capture_intermediates=lambda mdl, _: mdl.name == "Conv_0" and mdl.scope.path[0] == "stem",
  )[1]
  conv_out = jax.tree.leaves(features["intermediates"])[0]
  np.testing.assert_allclose(stats["stem"]["BatchNorm_0"]["mean"], conv_out.mean((0, 1, 2)), rtol=1e-4, atol=1e-5)
  np.testing.assert_allclose(stats["stem"]["BatchNorm_0"]["var"], conv_out.var((0, 1, 2)), rtol=1e-3, atol=1e-5)
  # layers.1 chose skip (index 3): its conv candidates' statistics are untouched.
  chex.assert_trees_all_equal(stats["layers.1"], state.batch_stats["layers.1"])
  # layers.0 chose conv5 (index 1): only that candidate's statistics change.
  chex.assert_trees_all_equal(stats["layers.0"]["conv3"], state.batch_stats["layers.0"]["conv3"])
  assert not np.allclose(
    stats["layers.0"]["conv5"]["BatchNorm_0"]["mean"], state.batch_stats["layers.0"]["conv5"]["BatchNorm_0"]["mean"]
  )


def test_recalibration_vmaps_over_subnets(setup):
  net, x, _, _, state, mutator = setup
  population = jax.vmap(mutator.sample_choices)(jax.random.split(jax.random.key(2), 3))
  batched = jax.jit(
    jax.vmap(lambda gc: recalibrate_batch_stats(net, state.params, state.batch_stats, mutator.set_choices(gc), x))
  )(population)
  for i in range(3):
    one = recalibrate_batch_stats(
      net, state.params, state.batch_stats, mutator.set_choices({g: v[i] for g, v in population.items()}), x
    )
    chex.assert_trees_all_close(jax.tree.map(lambda a: a[i], batched), one, rtol=1e-5, atol=1e-6)


def test_population_scorer_matches_single_evaluation(setup):
  net, x, y, _, state, mutator = setup
  scorer = make_population_scorer(net, mutator, x, x, y, chunk_size=2)
  population = jax.vmap(mutator.sample_choices)(jax.random.split(jax.random.key(3), 3))
  scores = scorer(state, population)
  chex.assert_shape(scores, (3,))
  for i in range(3):
    choices = mutator.set_choices({g: v[i] for g, v in population.items()})
    stats = recalibrate_batch_stats(net, state.params, state.batch_stats, choices, x)
    np.testing.assert_allclose(scores[i], evaluate_accuracy(net, state.params, stats, choices, x, y), atol=1e-6)
  with pytest.raises(ValueError, match="chunk_size"):
    make_population_scorer(net, mutator, x, x, y, chunk_size=0)


def test_fixed_subnet_step_matches_the_traced_supernet_step(setup):
  net, x, y, optimizer, state, mutator = setup
  choices = mutator.set_choices({0: jnp.int32(2), 1: jnp.int32(0)})
  fixed_state, _ = make_fixed_subnet_train_step(net, choices, optimizer)(state, x, y)

  traced_step = jax.jit(
    lambda state, choices: supervised_update(net, optimizer, classification_loss, state, x, y, choices)[0]
  )
  traced_state = traced_step(state, choices)
  chex.assert_trees_all_close(fixed_state.params, traced_state.params, rtol=1e-5, atol=1e-6)
  chex.assert_trees_all_close(fixed_state.batch_stats, traced_state.batch_stats, rtol=1e-5, atol=1e-6)


def test_build_optimizer():
  schedule_opt = build_optimizer(
    dict(type="sgd", learning_rate=dict(type="cosine_decay_schedule", init_value=0.1, decay_steps=10))
  )
  params = {"w": jnp.ones(2)}
  updates, _ = schedule_opt.update({"w": jnp.ones(2)}, schedule_opt.init(params), params)
  np.testing.assert_allclose(updates["w"], -0.1)
  with pytest.raises(KeyError, match="not_an_optimizer"):
    build_optimizer(dict(type="not_an_optimizer"))
  with pytest.raises(KeyError, match="type"):
    build_optimizer(dict(learning_rate=0.1))
  assert build_optimizer(optax.adam(1e-3)) is not None


def test_spos_rejects_a_diff_mutator():
  with pytest.raises(TypeError, match="OneShotModuleMutator or NasMutator"):
    jm.SPOS(jm.SearchableMLP(), jm.DiffModuleMutator())
  with pytest.raises(TypeError, match="flax.linen.Module"):
    jm.SPOS(object(), jm.OneShotModuleMutator())


@pytest.mark.slow
def test_spos_run_end_to_end(tmp_path):
  config = dict(
    model=dict(
      type="SPOS",
      architecture=dict(type="SearchableConvNet", width=8, num_layers=2),
      mutator=dict(type="OneShotModuleMutator"),
    ),
    train_cfg=dict(epochs=3, batch_size=64, optimizer=dict(type="sgd", learning_rate=0.05, momentum=0.9)),
    search_cfg=dict(max_epochs=2, num_candidates=6, top_k=3, num_mutation=3, num_crossover=3, calibrate_sample_num=128),
    retrain_cfg=dict(epochs=2),
    num_random_baseline=4,
  )
  algorithm = jm.build(config["model"])
  result = algorithm.run(config, tmp_path, seed=0, progress=False)
  assert set(result.fix_subnet) == {"layers.0", "layers.1"}
  summary = result.summary
  assert summary["best_test_accuracy"] > summary["chance_accuracy"]
  assert summary["best_flops_M_per_image"] > 0 and summary["best_params_M"] > 0
  assert summary["retrain"]["test_accuracy"] > summary["chance_accuracy"]
  assert len(summary["search_history"]) == 2
  versus = summary["search_vs_random"]
  assert versus["requested"] == versus["found"] == 4 and versus["warning"] is None
  assert 1 <= versus["rank"] <= 5 and summary["random_subnets_test_accuracy"]["count"] == 4
  assert versus["held_out_split"] == "test" and versus["attempts"] == 4  # no constraint: every draw counts
  spread = versus["random_test_accuracy"]
  assert spread["min"] <= spread["q1"] <= spread["median"] <= spread["q3"] <= spread["max"]
  assert versus["rank_out_of"] == 5 and 0 <= versus["percentile"] <= 100
  assert versus["beats_median"] == (summary["best_test_accuracy"] > spread["median"])
  assert summary["pareto_plot"] == "pareto.png" and (tmp_path / "pareto.png").stat().st_size > 0


def _tiny_run(tmp_path, **overrides):
  config = dict(
    model=dict(
      type="SPOS",
      architecture=dict(type="SearchableMLP", width=8, num_layers=3, num_classes=10),
      mutator=dict(type="OneShotModuleMutator"),
    ),
    train_cfg=dict(epochs=1, batch_size=64),
    search_cfg=dict(max_epochs=2, num_candidates=6, top_k=3, num_mutation=3, num_crossover=3, calibrate_sample_num=0),
    num_random_baseline=6,
  )
  config.update(overrides)
  return jm.build(config["model"]).run(config, tmp_path, seed=0, progress=False).summary


@pytest.mark.slow
def test_spos_run_says_when_few_random_subnets_meet_the_constraint(tmp_path):
  # MFLOPs of this MLP: 0.00164 with every layer a Dense, 0.00014 less per skip: the bound keeps two skips or more.
  search_cfg = dict(
    max_epochs=1,
    num_candidates=3,
    top_k=1,
    num_mutation=1,
    num_crossover=1,
    calibrate_sample_num=0,
    constraints_range=dict(flops=(0.0, 0.0014)),
  )
  with pytest.warns(RuntimeWarning, match="of the 6 random subnets asked for meet"):
    summary = _tiny_run(tmp_path, search_cfg=search_cfg, random_baseline_max_attempts=8)
  versus = summary["search_vs_random"]
  assert (versus["requested"], versus["attempts"]) == (6, 8) and 1 <= versus["found"] < 6
  assert f"only {versus['found']} of the 6" in versus["warning"] and versus["rank_out_of"] == versus["found"] + 1
  spread = summary["random_subnets_test_accuracy"]
  assert spread is versus["random_test_accuracy"] and spread["count"] == versus["found"]


@pytest.mark.slow
def test_jittable_scorer_gives_the_host_scores(setup):
  # The on-device search rates with `scorer.rate`: it must give the host call's scores, bit for bit.
  net, x, y, _, state, mutator = setup
  scorer = make_population_scorer(net, mutator, x, x, y, chunk_size=3)
  population = jax.vmap(mutator.sample_choices)(jax.random.split(jax.random.key(4), 5))
  host = scorer(state, population)
  chex.assert_shape(host, (5,))
  np.testing.assert_array_equal(np.asarray(jax.jit(scorer.rate)(population, *scorer.score_args(state))), host)


@pytest.mark.slow
def test_spos_run_searches_on_device_with_the_stepwise_result(tmp_path):
  # Without `checkpoint` the runner searches in one compiled program; with it, generation by generation.
  search_cfg = dict(
    max_epochs=3, num_candidates=6, top_k=3, num_mutation=3, num_crossover=3, constraints_range=dict(flops=0.0015)
  )
  search_cfg["calibrate_sample_num"] = 0
  for name in ("device", "stepwise"):
    (tmp_path / name).mkdir()
  on_device = _tiny_run(tmp_path / "device", search_cfg=search_cfg, num_random_baseline=2)
  stepwise = _tiny_run(
    tmp_path / "stepwise", search_cfg=search_cfg, num_random_baseline=2, checkpoint=dict(every_n_steps=1000, keep=1)
  )
  for name in ("best_val_accuracy", "best_test_accuracy", "num_subnets_evaluated", "search_history"):
    assert on_device[name] == stepwise[name], name
  assert on_device["best_flops_M_per_image"] == stepwise["best_flops_M_per_image"] <= 0.0015
  assert "checkpoints" not in on_device and (tmp_path / "stepwise" / "checkpoints" / "search").is_dir()
