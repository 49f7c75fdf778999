"""DARTS: exact second-order hypergradient, isolated steps, bad input, the runner."""

import json
from pathlib import Path

import flax.linen as nn
import jax
import jax.numpy as jnp
import numpy as np
import optax
import pytest

import jaxmutate as jm
from jaxmutate.algorithms import (
  arch_gradient,
  check_arch_params,
  derive_group_choices,
  init_darts_state,
  make_darts_steps,
  supernet_loss,
)
from jaxmutate.data import load_digits
from jaxmutate.runners import DARTS
from jaxmutate.spaces import EdgeSubsetSpace


class Block(nn.Module):
  """Dense → BatchNorm → tanh (curvature and BatchNorm in the hypergradient)."""

  features: int = 6

  @nn.compact
  def __call__(self, x, train=False):
    x = nn.Dense(self.features)(x)
    x = nn.BatchNorm(use_running_average=not train, momentum=0.9)(x)
    return jnp.tanh(x)


class Lin(nn.Module):
  """A Dense layer taking the ``train`` keyword every candidate receives."""

  features: int = 6

  @nn.compact
  def __call__(self, x, train=False):
    return nn.Dense(self.features)(x)


class TinyNet(nn.Module):
  """Two mixed ops and a route over their outputs, then a classifier."""

  @nn.compact
  def __call__(self, x, choices, train=False):
    h1 = jm.DiffMutableOP(
      {"block": Block(), "dense": Lin(), "tanh": lambda x, train=False: jnp.tanh(x[:, :6])}, name="op1"
    )(x, choices, train=train)
    h2 = jm.DiffMutableOP({"block": Block(), "sin": lambda x, train=False: jnp.sin(x)}, name="op2")(
      h1, choices, train=train
    )
    h = jm.DiffChoiceRoute({"p0": Lin(), "p1": Block()}, num_chosen=1, name="route")([h1, h2], choices, train=train)
    return nn.Dense(3, name="head")(h)


def batches(seed, n=16, d=8):
  kx, ky = jax.random.split(jax.random.key(seed))
  return jax.random.normal(kx, (n, d)), jax.random.randint(ky, (n,), 0, 3)


def setup(dtype=jnp.float32):
  net = TinyNet()
  train, val = batches(1), batches(2)
  variables = net.init(jax.random.key(0), train[0], None)
  mutator = jm.DiffModuleMutator().prepare_from_supernet(variables)
  cast = lambda tree: jax.tree.map(lambda a: a.astype(dtype), tree)
  alpha = {
    g: jax.random.normal(jax.random.key(10 + g), a.shape, dtype)
    for g, a in mutator.init_arch_params(jax.random.key(3)).items()
  }
  train = (train[0].astype(dtype), train[1])
  val = (val[0].astype(dtype), val[1])
  return net, mutator, cast(variables["params"]), cast(variables["batch_stats"]), alpha, train, val


@pytest.mark.slow
def test_zero_unroll_is_the_first_order_gradient():
  net, mutator, params, stats, alpha, train, val = setup()
  key = jax.random.key(4)
  gradient = jax.jit(
    lambda a, xi: arch_gradient(net, mutator, params, stats, a, train, val, key, unroll_lr=xi)[1], static_argnums=1
  )
  grads = gradient(alpha, 0.0)
  direct = jax.jit(jax.grad(lambda a: supernet_loss(net, mutator, params, stats, a, val, jax.random.split(key)[1])[0]))(
    alpha
  )
  for g in alpha:
    np.testing.assert_allclose(grads[g], direct[g], rtol=1e-6)
  second = gradient(alpha, 0.5)
  assert any(not np.allclose(second[g], grads[g], rtol=1e-3) for g in alpha)  # the unroll matters


@pytest.mark.slow
def test_second_order_matches_finite_differences():
  with jax.enable_x64(True):
    net, mutator, params, stats, alpha, train, val = setup(jnp.float64)
    key, xi = jax.random.key(4), 0.3
    train_key, val_key = jax.random.split(key)
    _, exact, _ = jax.jit(lambda a: arch_gradient(net, mutator, params, stats, a, train, val, key, unroll_lr=xi))(alpha)

    def loss(w, a, batch, k):
      return supernet_loss(net, mutator, w, stats, a, batch, k)[0]

    # (1) Central differences of the unrolled objective F(α) = L_val(w − ξ∇w L_train(w, α), α).
    def unrolled(a):
      w_prime = jax.tree.map(lambda w, g: w - xi * g, params, jax.grad(loss)(params, a, train, train_key))
      return loss(w_prime, a, val, val_key)

    unrolled = jax.jit(unrolled)
    direction = {g: jax.random.normal(jax.random.key(20 + g), a.shape, jnp.float64) for g, a in alpha.items()}
    eps = 1e-5
    shift = lambda s: {g: alpha[g] + s * direction[g] for g in alpha}
    numeric = (unrolled(shift(eps)) - unrolled(shift(-eps))) / (2 * eps)
    analytic = sum(jnp.vdot(exact[g], direction[g]) for g in alpha)
    np.testing.assert_allclose(analytic, numeric, rtol=1e-6)

    # (2) The DARTS paper's (and MMRazor's) finite-difference Hessian-vector product.
    loss = jax.jit(loss)
    w_prime = jax.tree.map(lambda w, g: w - xi * g, params, jax.grad(loss)(params, alpha, train, train_key))
    d_alpha = jax.grad(loss, argnums=1)(w_prime, alpha, val, val_key)
    d_w = jax.grad(loss)(w_prime, alpha, val, val_key)
    norm = jnp.sqrt(sum(jnp.vdot(v, v) for v in jax.tree.leaves(d_w)))
    r = 0.01 / norm
    w_plus = jax.tree.map(lambda w, d: w + r * d, params, d_w)
    w_minus = jax.tree.map(lambda w, d: w - r * d, params, d_w)
    g_plus = jax.grad(loss, argnums=1)(w_plus, alpha, train, train_key)
    g_minus = jax.grad(loss, argnums=1)(w_minus, alpha, train, train_key)
    approx = {g: d_alpha[g] - xi * (g_plus[g] - g_minus[g]) / (2 * r) for g in alpha}
    for g in alpha:
      # That estimate carries an O(r²) error (r = 0.01 / |∇w′ L_val|).
      np.testing.assert_allclose(exact[g], approx[g], rtol=1e-3, atol=1e-7)


@pytest.mark.slow
def test_steps_update_only_their_own_pytree():
  net, mutator, _, _, _, train, val = setup()
  weight_opt, arch_opt = optax.sgd(0.1, momentum=0.9), optax.adam(0.01, b1=0.5)
  state, mutator, _ = init_darts_state(net, mutator, weight_opt, arch_opt, jax.random.key(0), train[0])
  steps = make_darts_steps(net, mutator, weight_opt, arch_opt, unroll=True, unroll_lr=0.1)
  same = lambda a, b: all(np.array_equal(x, y) for x, y in zip(jax.tree.leaves(a), jax.tree.leaves(b)))

  after_arch, metrics = steps.arch_step(state, train, val, jax.random.key(1))
  assert not same(after_arch.arch_params, state.arch_params) and not same(
    after_arch.arch_opt_state, state.arch_opt_state
  )
  assert same(after_arch.params, state.params) and same(after_arch.batch_stats, state.batch_stats)
  assert same(after_arch.weight_opt_state, state.weight_opt_state) and int(after_arch.step) == 0
  assert set(metrics) == {"val_loss", "val_accuracy"}

  after_weight, metrics = steps.weight_step(state, train, jax.random.key(1))
  assert not same(after_weight.params, state.params) and not same(after_weight.batch_stats, state.batch_stats)
  assert same(after_weight.arch_params, state.arch_params) and same(after_weight.arch_opt_state, state.arch_opt_state)
  assert int(after_weight.step) == 1 and set(metrics) == {"train_loss", "train_accuracy"}

  # The optimiser states hold their own pytree only.
  assert jax.tree.structure(state.arch_opt_state) == jax.tree.structure(arch_opt.init(state.arch_params))
  assert jax.tree.structure(state.weight_opt_state) == jax.tree.structure(weight_opt.init(state.params))

  both, metrics = steps.search_step(state, train, val, jax.random.key(1))
  assert int(both.step) == 1 and len(metrics) == 4
  losses = []
  for i in range(15):
    state, metrics = steps.search_step(state, train, val, jax.random.key(i))
    losses.append(float(metrics["train_loss"]))
  assert losses[-1] < losses[0]


def test_bad_arch_params_name_the_group():
  net, mutator, _, _, alpha, train, val = setup()
  with pytest.raises(KeyError, match="Missing choice for search group 1 \\('op2'\\)"):
    check_arch_params(mutator, {g: a for g, a in alpha.items() if g != 1})
  with pytest.raises(
    ValueError, match="Mutable 'group 0' expects architecture logits of shape \\(3,\\), got shape \\(2,\\)"
  ):
    check_arch_params(mutator, {**alpha, 0: jnp.zeros(2)})
  with pytest.raises(ValueError, match="Unknown search group id"):
    check_arch_params(mutator, {**alpha, 7: jnp.zeros(2)})
  weight_opt, arch_opt = optax.sgd(0.1), optax.adam(0.01)
  state, mutator, _ = init_darts_state(net, mutator, weight_opt, arch_opt, jax.random.key(0), train[0])
  steps = make_darts_steps(net, mutator, weight_opt, arch_opt)
  with pytest.raises(ValueError, match="expects architecture logits of shape \\(2,\\)"):
    steps.arch_step(state._replace(arch_params={**state.arch_params, 1: jnp.zeros(5)}), train, val, jax.random.key(0))
  with pytest.raises(jm.errors.NotPreparedError, match="prepared mutator"):
    make_darts_steps(net, jm.DiffModuleMutator(), weight_opt, arch_opt)


def test_derivation_skips_zero_ops():
  net = jm.models.DartsBackbone(base_channels=4, num_layers=1, num_nodes=2, reduction_layers=())
  variables = jax.eval_shape(lambda: net.init(jax.random.key(0), jnp.ones((2, 8, 8, 1)), None))
  mutator = jm.DiffModuleMutator().prepare_from_supernet(variables)
  alpha = mutator.init_arch_params(jax.random.key(0))
  zero_wins = {
    g: (a.at[0].set(10.0) if not isinstance(mutator.group_space(g), EdgeSubsetSpace) else a) for g, a in alpha.items()
  }
  plain = mutator.export_fix_subnet(mutator.sample_choices(zero_wins))
  derived = mutator.export_fix_subnet(derive_group_choices(mutator, zero_wins))
  ops = [k for k in plain if "_p" in k]
  assert {plain[k]["chosen"] for k in ops} == {"zero"}
  assert "zero" not in {derived[k]["chosen"] for k in ops}


@pytest.mark.slow
def test_gdas_step_anneals_without_recompiling_and_rejects_bad_temperatures():
  net = jm.models.DartsBackbone(
    base_channels=4,
    num_layers=1,
    num_nodes=2,
    num_classes=10,
    reduction_layers=(),
    op_names=("zero", "skip_connect", "avg_pool_3x3"),
    mutable_cfg=dict(type="GumbelMutableOP", hard=True),
  )
  x = jax.random.uniform(jax.random.key(0), (8, 8, 8, 1))
  y = jnp.arange(8) % 10
  weight_opt, arch_opt = optax.sgd(0.05), optax.adam(0.01)
  state, mutator, _ = init_darts_state(net, jm.DiffModuleMutator(), weight_opt, arch_opt, jax.random.key(0), x)
  steps = make_darts_steps(net, mutator, weight_opt, arch_opt)
  schedule = jm.mutables.gumbel_temperature_schedule(10.0, 0.1, transition_steps=3)
  before = state.arch_params
  for i in range(3):
    state, _ = steps.search_step(state, (x, y), (x, y), jax.random.key(i), float(schedule(i)))
  assert any(not np.allclose(state.arch_params[g], before[g]) for g in before)  # gradients reach the logits
  with pytest.raises(ValueError, match="tau must be > 0"):
    steps.search_step(state, (x, y), (x, y), jax.random.key(0), 0.0)
  with pytest.raises(ValueError, match="tau must be > 0"):
    steps.weight_step(state, (x, y), jax.random.key(0), -1.0)


@pytest.mark.slow
def test_darts_runner_searches_exports_and_derives(tmp_path: Path):
  config = dict(
    model=dict(
      type="DARTS",
      architecture=dict(
        type="DartsBackbone",
        base_channels=4,
        num_layers=2,
        num_nodes=2,
        stem_multiplier=1,
        num_classes=10,
        reduction_layers=[1],
        op_names=["zero", "skip_connect", "max_pool_3x3", "sep_conv_3x3"],
      ),
      mutator=dict(type="DiffModuleMutator"),
      unroll=False,
    ),
    data=dict(seed=0, val_fraction=0.6, test_fraction=0.2),
    train_cfg=dict(epochs=2, batch_size=128),
    retrain_cfg=dict(epochs=1, batch_size=128),
  )
  algorithm = jm.build(config["model"])
  assert isinstance(algorithm, DARTS) and isinstance(algorithm, jm.runners.SearchAlgorithm)
  result = algorithm.run(config, tmp_path, seed=0, progress=False)
  fix_subnet = result.fix_subnet
  assert fix_subnet["normal_n3"]["chosen"][0].startswith("normal_n3_p") and len(fix_subnet["normal_n3"]["chosen"]) == 2
  assert fix_subnet["reduce_n2_p0"]["chosen"] in ("skip_connect", "max_pool_3x3", "sep_conv_3x3")
  jm.save_fix_subnet(fix_subnet, tmp_path / "best_fix_subnet.yaml")
  assert jm.read_fix_subnet(tmp_path / "best_fix_subnet.yaml") == fix_subnet
  summary = result.summary
  json.dumps(summary)
  assert summary["steps"] == 2 * (len(load_digits(0, 0.6, 0.2).train) // 128)
  for key in ("supernet_val_accuracy", "derived_val_accuracy_inherited", "derived_test_accuracy_retrained"):
    assert 0.0 <= summary[key] <= 1.0
  assert summary["derived_num_params"] < summary["supernet_num_params"]
  log = json.loads((tmp_path / "arch_weights.json").read_text())
  assert len(log["history"]) == 3 and "normal_n2_p0" in log["choice_names"]
  assert abs(sum(log["history"][-1]["weights"]["normal_n2"]) - 1) < 1e-4
  assert (tmp_path / "arch_weights.png").stat().st_size > 0


def test_unknown_operation_in_config_is_named():
  with pytest.raises(ValueError, match="'dil_conv_7x7'"):
    jm.build(dict(type="DARTS", architecture=dict(type="DartsBackbone", op_names=["sep_conv_3x3", "dil_conv_7x7"])))
  with pytest.raises(TypeError, match="DiffModuleMutator"):
    DARTS(architecture=jm.models.DartsBackbone(), mutator=jm.OneShotModuleMutator())


def test_configs_build():
  for name in ("darts_digits", "darts_digits_unrolled", "gdas_digits"):
    path = Path(jm.__file__).with_name("configs") / f"{name}.py"
    config = jm.load_config(path)
    algorithm = jm.build(config["model"])
    assert isinstance(algorithm, DARTS)
    assert algorithm.unroll == (name == "darts_digits_unrolled")
