"""A non-finite training loss stops the run naming the step and the subnet, or is skipped when the config says so."""

from __future__ import annotations

import flax.linen as nn
import jax
import jax.numpy as jnp
import numpy as np
import optax
import pytest

import jaxmutate as jm
from jaxmutate import errors
from jaxmutate.algorithms import init_train_state
from jaxmutate.data import Split
from jaxmutate.runners import train_loop, train_supernet
from jaxmutate.runners.checkpoint import Checkpointer

SPLIT = Split(np.ones((16, 3), np.float32), np.arange(16, dtype=np.int32) % 2)


@jax.jit
def counting_step(count, images, labels, key):
  """Counts applied steps; its loss is NaN at the fourth step (count 3) and finite otherwise."""
  loss = jnp.where(count == 3, jnp.nan, 1.0 + count)
  return count + 1, {"loss": loss, "accuracy": jnp.float32(0.5)}


def test_raise_names_the_first_bad_step_and_its_subnet():
  with pytest.raises(errors.NonFiniteLossError, match=r"loss is nan at step 3 \(epoch 1, batch 1\), training subnet S"):
    train_loop(counting_step, jnp.int32(0), SPLIT, 3, 8, jax.random.key(0), describe_step=lambda key: "S")


def test_the_check_comes_before_a_checkpoint_so_none_holds_a_broken_state(tmp_path):
  saver = Checkpointer(tmp_path, {}, every_n_steps=4)
  with pytest.raises(FloatingPointError, match="step 3"):
    train_loop(counting_step, jnp.int32(0), SPLIT, 3, 8, jax.random.key(0), checkpointer=saver)
  assert saver.steps() == []


def test_skip_keeps_the_state_and_leaves_the_step_out_of_the_means():
  count, log = train_loop(counting_step, jnp.int32(0), SPLIT, 3, 8, jax.random.key(0), on_nonfinite="skip")
  # The bad step is not applied, so the count stays at 3 and every later step is bad too.
  assert int(count) == 3
  assert [entry["nonfinite_skipped"] for entry in log] == [0, 1, 2]
  assert log[0]["loss"] == 1.5 and log[1]["loss"] == 3.0  # (1 + 2) / 2, then only the good step (1 + 2)
  assert np.isnan(log[2]["loss"])  # no step of the epoch was applied
  with pytest.raises(errors.ConfigError, match="on_nonfinite"):
    train_loop(counting_step, jnp.int32(0), SPLIT, 1, 8, jax.random.key(0), on_nonfinite="ignore")
  with pytest.raises(errors.ConfigError, match="'score'"):
    train_loop(counting_step, jnp.int32(0), SPLIT, 1, 8, jax.random.key(0), on_nonfinite="skip", finite_metric="score")


class Diverging(nn.Module):
  """One layer whose "log" candidate makes the loss NaN (the log of a negative number)."""

  @nn.compact
  def __call__(self, x, choices, train=False):
    ops = {"dense": nn.Dense(4), "log": lambda x: jnp.log(-1.0 - jnp.abs(x))}
    x = jm.OneShotMutableOP(ops, name="layer")(nn.Dense(4)(x), choices)
    return nn.Dense(2)(x)


def test_spos_supernet_names_the_subnet_or_skips_it():
  net = Diverging()
  optimizer = optax.sgd(0.1)
  state, variables = init_train_state(net, optimizer, jax.random.key(0), jnp.ones((8, 3)))
  mutator = jm.OneShotModuleMutator().prepare_from_supernet(variables)
  with pytest.raises(errors.NonFiniteLossError, match=r"train supernet: loss is nan at step \d+ .*\{'layer': 'log'\}"):
    train_supernet(net, mutator, optimizer, state, SPLIT, 4, 8, jax.random.key(1))
  skipped, log = train_supernet(net, mutator, optimizer, state, SPLIT, 4, 8, jax.random.key(1), on_nonfinite="skip")
  assert all(np.isfinite(np.asarray(leaf)).all() for leaf in jax.tree.leaves(skipped.params))
  assert sum(entry["nonfinite_skipped"] for entry in log) > 0
  assert int(skipped.step) == 8 - sum(entry["nonfinite_skipped"] for entry in log)


def test_the_config_key_is_checked():
  spos = jm.build(
    dict(type="SPOS", architecture=dict(type="SearchableMLP", width=4), mutator=dict(type="OneShotModuleMutator"))
  )
  spos.check_config({"model": {}, "train_cfg": {"on_nonfinite": "skip"}})
  with pytest.raises(errors.ConfigError, match=r"train_cfg.on_nonfinite must be 'raise' or 'skip', got 'warn'"):
    spos.check_config({"model": {}, "train_cfg": {"on_nonfinite": "warn"}})
