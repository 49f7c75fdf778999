"""DSNAS: the jitted search step (stages, FLOPs loss above a target), the fixed-subnet finetune, the runner."""

import json

import flax.linen as nn
import jax
import jax.numpy as jnp
import numpy as np
import optax
import pytest

import jaxmutate as jm
from jaxmutate.algorithms import fix_dsnas_subnet, init_darts_state, make_dsnas_steps
from jaxmutate.resources import build_resource_table
from jaxmutate.runners.dsnas import DSNAS


class OneHotNet(nn.Module):
  """Two one-hot edges choosing a 5x5 conv, a 3x3 conv or a skip."""

  @nn.compact
  def __call__(self, x, choices, train=False):
    x = nn.Conv(4, (3, 3), name="stem")(x)
    for i in range(2):
      ops = {"conv5": nn.Conv(4, (5, 5)), "conv3": nn.Conv(4, (3, 3)), "skip": lambda h: h}
      x = nn.relu(jm.OneHotMutableOP(ops, name=f"edge{i}")(x, choices))
    return nn.Dense(3, name="head")(x.mean((1, 2)))


@pytest.fixture(scope="module")
def space():
  net = OneHotNet()
  images = jax.random.normal(jax.random.key(0), (8, 6, 6, 1))
  labels = jnp.arange(8) % 3
  fast = {"xla_backend_optimization_level": 0}
  state, mutator, variables = init_darts_state(
    net, jm.DiffModuleMutator(), optax.sgd(0.05), optax.adam(0.2), jax.random.key(1), images, fast
  )
  table = build_resource_table(net, variables, mutator, images[:1])
  steps = make_dsnas_steps(
    net,
    mutator,
    optax.sgd(0.05),
    optax.adam(0.2),
    cost_table=table,
    flops_target=1e-6,
    flops_loss_coef=5.0,
    compiler_options=fast,
  )
  return net, (images, labels), state, mutator, table, steps


def test_search_step_stages_and_flops_loss(space):
  _, batch, state, mutator, table, steps = space
  pretrained, _ = steps.search_step(state, batch, jax.random.key(2), False)
  for g in state.arch_params:  # pretraining leaves the logits alone, trains the weights
    np.testing.assert_array_equal(pretrained.arch_params[g], state.arch_params[g])
  assert not np.allclose(pretrained.params["stem"]["kernel"], state.params["stem"]["kernel"])
  searched = state
  for i in range(12):
    searched, metrics = steps.search_step(searched, batch, jax.random.fold_in(jax.random.key(3), i), True)
  assert sorted(metrics) == ["accuracy", "argmax_flops", "expected_flops", "flops_loss", "loss"]
  assert float(metrics["flops_loss"]) > 0  # the argmax subnet is above the (tiny) target
  before = float(jm.algorithms.expected_cost(table, state.arch_params)["flops"])
  after = float(jm.algorithms.expected_cost(table, searched.arch_params)["flops"])
  assert after < 0.8 * before, (before, after)
  fixed = fix_dsnas_subnet(mutator, searched.arch_params)
  assert [mutator.group_spec(g).choice_names[int(c)] for g, c in sorted(fixed.items())] == ["skip", "skip"]


def test_finetune_trains_the_fixed_subnet_only(space):
  _, batch, state, mutator, _, steps = space
  fixed = {0: np.int32(1), 1: np.int32(0)}  # edge0: conv3, edge1: conv5 (groups follow definition order)
  step = steps.make_finetune_step(fixed)
  tuned, metrics = step(state, batch)
  tuned, metrics = step(tuned, batch)
  assert int(tuned.step) == int(state.step) + 2 and sorted(metrics) == ["accuracy", "loss"]
  names = [mutator.search_groups[g][0] for g in (0, 1)]
  changed = {
    (name, candidate): not np.allclose(tuned.params[name][candidate]["kernel"], state.params[name][candidate]["kernel"])
    for name in names
    for candidate in ("conv5", "conv3")
  }
  assert changed == {
    (names[0], "conv3"): True,
    (names[0], "conv5"): False,
    (names[1], "conv5"): True,
    (names[1], "conv3"): False,
  }
  for g in state.arch_params:
    np.testing.assert_array_equal(tuned.arch_params[g], state.arch_params[g])


def test_bad_input_names_what_was_expected(space):
  _, batch, _, mutator, table, _ = space
  softmax_op = jm.DiffMutableOP({"a": nn.Dense(2), "b": nn.Dense(2)})
  diff = jm.DiffModuleMutator().prepare_from_supernet(softmax_op.init(jax.random.key(0), jnp.ones((1, 2)), None))
  with pytest.raises(ValueError, match="OneHotMutableOP"):
    make_dsnas_steps(softmax_op, diff, optax.sgd(0.1), optax.adam(0.1))
  with pytest.raises(ValueError, match="cost_table and flops_target go together"):
    make_dsnas_steps(OneHotNet(), mutator, optax.sgd(0.1), optax.adam(0.1), flops_target=1.0)
  with pytest.raises(ValueError, match="flops_target must be > 0"):
    make_dsnas_steps(OneHotNet(), mutator, optax.sgd(0.1), optax.adam(0.1), cost_table=table, flops_target=0.0)
  with pytest.raises(RuntimeError, match="prepared"):
    make_dsnas_steps(OneHotNet(), jm.DiffModuleMutator(), optax.sgd(0.1), optax.adam(0.1))
  arch = dict(type="DartsBackbone", num_classes=10, mutable_cfg=dict(type="OneHotMutableOP"))
  with pytest.raises(ValueError, match="pretrain_epochs=3 must be < finetune_epochs=3"):
    DSNAS(arch, pretrain_epochs=3, finetune_epochs=3)
  with pytest.raises(ValueError, match="flops_constraints"):
    DSNAS(arch, finetune_epochs=2, flops_constraints=-1.0)
  runner = DSNAS(arch, finetune_epochs=2)
  with pytest.raises(ValueError, match="epochs must be an int >= finetune_epochs=2"):
    runner.check_config({"model": {}, "train_cfg": dict(epochs=1)})
  with pytest.raises(KeyError, match="arch_optimiser"):
    runner.check_config({"model": {}, "train_cfg": dict(epochs=2, arch_optimiser={})})
  assert jm.MODELS.get("DSNAS") is DSNAS and jm.MODELS.get("Dsnas") is DSNAS


@pytest.mark.slow
def test_runner_fixes_the_architecture_at_finetune_epochs(tmp_path):
  arch = dict(
    type="DartsBackbone",
    base_channels=2,
    num_layers=1,
    num_nodes=1,
    num_classes=10,
    op_names=("zero", "skip_connect", "sep_conv_3x3"),
    mutable_cfg=dict(type="OneHotMutableOP"),
  )
  runner = DSNAS(arch, pretrain_epochs=0, finetune_epochs=1, flops_constraints=1e-3)
  data = dict(type="digits", seed=0, val_fraction=0.2, test_fraction=0.2)
  config = {"model": {}, "data": data, "train_cfg": dict(epochs=2, batch_size=256)}
  result = runner.run(config, tmp_path, seed=0, progress=False)
  summary = result.summary
  assert summary["finetuned"] and summary["steps"] == 2 * (len(jm.data.load_digits(0, 0.2, 0.2).train) // 256)
  assert 0.0 <= summary["fixed_subnet_test_accuracy"] <= 1.0 and summary["fixed_subnet_mflops"] > 0
  history = json.loads((tmp_path / "arch_weights.json").read_text())["history"]
  assert [entry.get("stage") for entry in history] == [None, "search", "finetune"]
  assert all(set(v) == {"chosen"} for v in result.fix_subnet.values())


@pytest.mark.parametrize("name", ["dsnas_digits.py", "darts_flops_digits.py"])
def test_packaged_cost_aware_configs_check(name, capsys):
  from jaxmutate import cli

  assert cli.main(["check", f"configs/{name}"]) == 0
  assert capsys.readouterr().out.rstrip().endswith("config.")
