"""Checkpoint and resume: the library's Checkpointer, the training loop, and a run killed with SIGKILL."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time

import jax
import jax.numpy as jnp
import numpy as np
import optax
import pytest

from jaxmutate import cli, errors
from jaxmutate.data import Split
from jaxmutate.runners import train_loop
from jaxmutate.runners.checkpoint import Checkpointer, checkpoint_settings, resumable_loop, run_fingerprints
from jaxmutate.runners.support import RunSupport

SPLIT = Split(np.arange(48, dtype=np.float32).reshape(24, 2) / 48, np.arange(24, dtype=np.int32) % 3)


def sgd_step():
  """A real jitted step: a linear classifier, SGD with momentum (optimiser state to restore)."""
  optimizer = optax.sgd(0.5, momentum=0.9)

  @jax.jit
  def step(state, images, labels, key):
    params, opt_state = state

    def loss_fn(p):
      noisy = images + 0.01 * jax.random.normal(key, images.shape)  # the key matters
      logits = noisy @ p["w"] + p["b"][None]
      return optax.softmax_cross_entropy_with_integer_labels(logits, labels).mean(), logits.mean(0)

    (loss, mean_logits), grads = jax.value_and_grad(loss_fn, has_aux=True)(params)
    updates, opt_state = optimizer.update(grads, opt_state, params)
    # A vector metric too (as the slimmable step's per-width losses): checkpoints keep its per-step values.
    return (optax.apply_updates(params, updates), opt_state), {"loss": loss, "mean_logits": mean_logits}

  params = {"w": jnp.zeros((2, 3)), "b": jnp.zeros(3)}
  return step, (params, optimizer.init(params))


def test_checkpointer_keeps_the_last_k_and_restores_keys_and_structure(tmp_path):
  state = {"w": jnp.arange(3.0), "key": jax.random.key(7), "n": jnp.int32(4)}
  saver = Checkpointer(tmp_path, {"config": "a"}, every_n_steps=2, keep=2)
  assert [saver.due(s) for s in range(1, 5)] == [False, True, False, True]
  for step in (2, 4, 6):
    assert saver.save(step, state, {"step": step})
  assert saver.steps() == [4, 6]
  restored = Checkpointer(tmp_path, {"config": "a"}, resume=True).restore_latest(state)
  assert restored.step == 6 and restored.meta == {"step": 6}
  np.testing.assert_array_equal(jax.random.key_data(restored.state["key"]), jax.random.key_data(state["key"]))
  assert restored.state["n"].dtype == jnp.int32


def test_bad_checkpoints_are_named_errors_never_a_fresh_start(tmp_path):
  state = {"w": jnp.arange(3.0)}
  Checkpointer(tmp_path, {"config": "a", "space": "s"}).save(3, state, {})
  with pytest.raises(errors.CheckpointExistsError, match="--resume"):
    Checkpointer(tmp_path, {"config": "a", "space": "s"})
  # A save killed half-way leaves orbax's temporary folder, which is not a checkpoint.
  (tmp_path / "5.orbax-checkpoint-tmp-1700000000").mkdir()
  assert Checkpointer(tmp_path, {"config": "a", "space": "s"}, resume=True).restore_latest(state).step == 3
  with pytest.raises(errors.CheckpointMismatchError, match="another config"):
    Checkpointer(tmp_path, {"config": "b", "space": "s"}, resume=True).restore_latest(state)
  with pytest.raises(errors.CheckpointMismatchError, match="another space"):
    Checkpointer(tmp_path, {"config": "a", "space": "t"}, resume=True).restore_latest(state)
  with pytest.raises(errors.CheckpointMismatchError, match="structure"):
    Checkpointer(tmp_path, {"config": "a", "space": "s"}, resume=True).restore_latest({"w": jnp.arange(4.0)})
  # A truncated checkpoint: one array file of the step cut short.
  data_files = [p for p in (tmp_path / "3").rglob("*") if p.is_file() and p.parent.name == "d"]
  for path in data_files:
    path.write_bytes(path.read_bytes()[: len(path.read_bytes()) // 2])
  with pytest.raises(errors.CheckpointCorruptError, match=r"3.*partial or damaged|SHA-256"):
    Checkpointer(tmp_path, {"config": "a", "space": "s"}, resume=True).restore_latest(state)
  for path in (tmp_path / "3").rglob("*"):
    if path.is_file() and path.name != "commit_success.txt":
      path.unlink()
  with pytest.raises(errors.CheckpointCorruptError, match="partial or damaged"):
    Checkpointer(tmp_path, {"config": "a", "space": "s"}, resume=True).restore_latest(state)


def test_checkpoint_config_is_validated_and_fingerprints_ignore_it():
  assert checkpoint_settings({}, "SPOS") is None
  with pytest.raises(errors.ConfigKeyError, match="every_n_step"):
    checkpoint_settings({"checkpoint": {"every_n_step": 3}}, "SPOS")
  with pytest.raises(errors.ConfigError, match="keep"):
    checkpoint_settings({"checkpoint": {"keep": 0}}, "SPOS")
  base = {"train_cfg": {"epochs": 1}}
  assert run_fingerprints(base, 0) == run_fingerprints({**base, "checkpoint": {"keep": 9}}, 0)
  assert run_fingerprints(base, 0) != run_fingerprints(base, 1)


@pytest.mark.parametrize("stop_after", [3, 4, 7])
def test_train_loop_resumed_mid_epoch_ends_with_the_same_bits(tmp_path, stop_after):
  step, state = sgd_step()
  whole, whole_log = train_loop(step, state, SPLIT, 2, 6, jax.random.key(1), keys="split")

  class Killed(Exception):
    pass

  calls = []

  def dying(state, images, labels, key):
    if len(calls) == stop_after:
      raise Killed  # the process dies after stop_after steps
    calls.append(1)
    return step(state, images, labels, key)

  folder = tmp_path / "ck"
  with pytest.raises(Killed):
    train_loop(dying, state, SPLIT, 2, 6, jax.random.key(1), checkpointer=Checkpointer(folder, {}, every_n_steps=2))
  resumed, resumed_log = train_loop(
    step, state, SPLIT, 2, 6, jax.random.key(1), checkpointer=Checkpointer(folder, {}, every_n_steps=2, resume=True)
  )
  assert resumed_log == whole_log
  for got, want in zip(jax.tree.leaves(resumed), jax.tree.leaves(whole)):
    np.testing.assert_array_equal(np.asarray(got), np.asarray(want))


def test_a_pytree_search_state_resumes_at_its_generation(tmp_path):
  """What a search loop with a pure state checkpoints: population, scores, keys; one generation per step."""

  def generation(i, state):
    key = jax.random.fold_in(state["key"], i)
    mutants = jax.random.randint(key, state["population"].shape, 0, 4)
    scores = -jnp.abs(mutants - 2).sum(-1).astype(jnp.float32)
    better = scores > state["scores"]
    return {
      "key": state["key"],
      "population": jnp.where(better[:, None], mutants, state["population"]),
      "scores": jnp.maximum(scores, state["scores"]),
    }

  generation = jax.jit(generation)
  start = {"key": jax.random.key(3), "population": jnp.zeros((5, 3), jnp.int32), "scores": jnp.full(5, -9.0)}
  whole, _ = resumable_loop(generation, start, 7)
  resumable_loop(generation, start, 5, Checkpointer(tmp_path, {}, every_n_steps=3))  # killed after generation 5
  resumed, resumed_from = resumable_loop(generation, start, 7, Checkpointer(tmp_path, {}, 3, resume=True))
  assert resumed_from == 5
  raw = lambda x: jax.random.key_data(x) if jax.dtypes.issubdtype(x.dtype, jax.dtypes.prng_key) else x  # noqa: E731
  for got, want in zip(jax.tree.leaves(resumed), jax.tree.leaves(whole)):
    np.testing.assert_array_equal(np.asarray(raw(got)), np.asarray(raw(want)))


def test_resume_needs_the_checkpoint_dict(tmp_path):
  config = tmp_path / "plain.py"
  config.write_text(TINY.replace("checkpoint = dict(every_n_steps=20, keep=2)", ""))
  with pytest.raises(errors.ConfigError, match="checkpoint dict"):
    cli.main(["search", str(config), "--work-dir", str(tmp_path / "out"), "--no-compile-cache", "--resume"])
  support = RunSupport({"checkpoint": dict(every_n_steps=5)}, "SPOS", tmp_path, seed=0, resume=True)
  assert support.checkpointer("supernet") is not None and support.summary()["resumed_from"] == {"supernet": None}
  support.checkpointer("supernet").save(5, {"w": jnp.ones(1)}, {})
  with pytest.raises(errors.CheckpointExistsError, match="supernet already holds checkpoints"):
    RunSupport({"checkpoint": dict(every_n_steps=5)}, "SPOS", tmp_path, seed=0)  # refused before any work


TINY = """
model = dict(type='SPOS', architecture=dict(type='SearchableMLP', width=16, num_layers=2),
             mutator=dict(type='OneShotModuleMutator'))
train_cfg = dict(epochs=2, batch_size=16)
search_cfg = dict(max_epochs=8, num_candidates=8, top_k=3, num_mutation=4, num_crossover=4, calibrate_sample_num=0)
num_random_baseline = 2
checkpoint = dict(every_n_steps=20, keep=2)
"""
VARYING = ("timings_s", "wall_time_s", "checkpoints", "compilation_cache")


def _search(config, work_dir, cache, *extra):
  command = [sys.executable, "-m", "jaxmutate.cli", "search", str(config), "--work-dir", str(work_dir)]
  env = {**os.environ, "JAXMUTATE_COMPILATION_CACHE": str(cache)}
  return command + ["--no-progress", *extra], env


def _final_arrays(work_dir):
  import orbax.checkpoint as ocp

  folder = work_dir / "checkpoints" / "supernet"
  step = max(int(p.name) for p in folder.iterdir() if p.name.isdigit())
  with ocp.StandardCheckpointer() as reader:
    return step, reader.restore(folder / str(step) / "arrays")


def _kill_at_first_checkpoint(command, env, folder, what):
  """Starts the run, SIGKILLs it as soon as ``folder`` holds a checkpoint."""
  process = subprocess.Popen(command, env=env, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
  deadline = time.monotonic() + 180
  while not (folder.is_dir() and any(p.name.isdigit() for p in folder.iterdir())):
    assert process.poll() is None and time.monotonic() < deadline, f"the run ended before {what}'s first checkpoint"
    time.sleep(0.01)
  process.send_signal(signal.SIGKILL)
  process.wait()


@pytest.mark.slow
def test_a_run_killed_with_sigkill_twice_and_resumed_gives_the_same_results(tmp_path):
  # One run is killed during supernet training, resumed, killed again during the evolution search and resumed to
  # the end: it must finish with the bits of a run never interrupted.
  config = tmp_path / "tiny.py"
  config.write_text(TINY)
  cache = tmp_path / "cache"
  command, env = _search(config, tmp_path / "whole", cache)
  subprocess.run(command, env=env, check=True, capture_output=True)
  final_step, _ = _final_arrays(tmp_path / "whole")

  command, env = _search(config, tmp_path / "killed", cache)
  checkpoints = tmp_path / "killed" / "checkpoints"
  _kill_at_first_checkpoint(command, env, checkpoints / "supernet", "the supernet")
  # Saved every 20 steps, the last one at the end of training: the kill came before it.
  assert max(int(p.name) for p in (checkpoints / "supernet").iterdir() if p.name.isdigit()) < final_step
  _kill_at_first_checkpoint(command + ["--resume"], env, checkpoints / "search", "the search")
  done = subprocess.run(command + ["--resume"], env=env, capture_output=True, text=True)
  assert done.returncode == 0, done.stderr[-3000:]

  whole = json.loads((tmp_path / "whole" / "summary.json").read_text())
  resumed = json.loads((tmp_path / "killed" / "summary.json").read_text())
  resumed_from = resumed["checkpoints"]["resumed_from"]
  assert resumed_from["supernet"] is not None
  assert resumed_from["search"] is not None and resumed_from["search"] < 8, resumed_from  # killed mid-search
  assert {k: v for k, v in resumed.items() if k not in VARYING} == {k: v for k, v in whole.items() if k not in VARYING}
  (whole_step, whole_arrays), (resumed_step, resumed_arrays) = map(
    _final_arrays, (tmp_path / "whole", tmp_path / "killed")
  )
  assert whole_step == resumed_step and sorted(whole_arrays) == sorted(resumed_arrays)
  for name in whole_arrays:
    np.testing.assert_array_equal(np.asarray(resumed_arrays[name]), np.asarray(whole_arrays[name]), err_msg=name)
  assert (tmp_path / "killed" / "best_fix_subnet.yaml").read_text() == (
    tmp_path / "whole" / "best_fix_subnet.yaml"
  ).read_text()
  # Another config on these checkpoints is refused, never a fresh start.
  with pytest.raises(errors.CheckpointMismatchError, match="another config"):
    cli.run_search(config, tmp_path / "killed", 0, ["train_cfg.epochs=3"], False, compile_cache=False, resume=True)
