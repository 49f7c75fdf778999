"""The evolution search resumed mid-search: in process (a scorer that dies) and a SPOS run killed with SIGKILL."""

from __future__ import annotations

import functools
import json
import os
import signal
import subprocess
import sys
import time

import jax
import jax.numpy as jnp
import numpy as np
import pytest

import jaxmutate as jm
from jaxmutate.runners.checkpoint import Checkpointer, resumable_loop

FAST = {"xla_backend_optimization_level": 0, "xla_llvm_disable_expensive_passes": True}
LOOP = jm.EvolutionSearchLoop(
  max_epochs=5, num_candidates=8, top_k=3, num_mutation=4, num_crossover=4, constraints_range=dict(skips=(0, 2))
)


@pytest.fixture(scope="module")
def mutator():
  net = jm.SearchableMLP(num_classes=2, width=4, num_layers=4)
  return jm.OneShotModuleMutator().prepare_from_supernet(net.init(jax.random.key(0), jnp.ones((1, 3)), None))


def resources(population):
  return {"skips": sum((v == 3).astype(jnp.float32) for v in population.values())}


def score(population):
  # Distinct float32 scores, NaN in one corner (dropped and counted), as a validation accuracy would be.
  values = sum(jnp.asarray(v, jnp.float32) * 10.0**g for g, v in population.items()) / 7.0
  return np.asarray(jnp.where((population[0] == 2) & (population[1] == 1), jnp.nan, values))


def assert_same(got, want):
  assert got.history == want.history
  assert got.top_k_scores == want.top_k_scores and got.best_score == want.best_score
  assert {g: np.asarray(v).tolist() for g, v in got.top_k.items()} == {
    g: np.asarray(v).tolist() for g, v in want.top_k.items()
  }
  assert (got.num_evaluated, got.num_nonfinite) == (want.num_evaluated, want.num_nonfinite)


@pytest.mark.slow
def test_a_search_killed_between_generations_resumes_with_the_same_bits(tmp_path, mutator):
  dies_after = 2
  whole, whole_state = LOOP.run_stepwise(jax.random.key(4), mutator, score, resources, compiler_options=FAST)
  # The stepwise search is the host loop's, draw for draw.
  assert_same(whole, LOOP.run(jax.random.key(4), mutator, score, resources))
  assert whole.num_nonfinite > 0

  class Killed(Exception):
    pass

  calls = []

  def dying(population):
    if len(calls) == dies_after:
      raise Killed  # the process dies while rating generation `dies_after`
    calls.append(1)
    return score(population)

  folder = tmp_path / "search"
  drive = functools.partial(resumable_loop, checkpointer=Checkpointer(folder, {"space": "s"}, every_n_steps=1))
  with pytest.raises(Killed):
    LOOP.run_stepwise(jax.random.key(4), mutator, dying, resources, driver=drive, compiler_options=FAST)
  assert Checkpointer(folder, {}, resume=True).steps()[-1] == dies_after
  rated_again = []

  def counting(population):
    rated_again.append(len(population[0]))
    return score(population)

  saver = Checkpointer(folder, {"space": "s"}, every_n_steps=1, resume=True)
  resumed, resumed_state = LOOP.run_stepwise(
    jax.random.key(4),
    mutator,
    counting,
    resources,
    driver=functools.partial(resumable_loop, checkpointer=saver),
    compiler_options=FAST,
  )
  assert len(rated_again) == LOOP.max_epochs - dies_after  # the finished generations are not run again
  assert_same(resumed, whole)
  raw = lambda x: jax.random.key_data(x) if jax.dtypes.issubdtype(x.dtype, jax.dtypes.prng_key) else x  # noqa: E731
  for got, want in zip(jax.tree.leaves(resumed_state), jax.tree.leaves(whole_state)):
    np.testing.assert_array_equal(np.asarray(raw(got)), np.asarray(raw(want)))
  population, scores = LOOP.rated(resumed_state)
  assert len(scores) == whole.num_evaluated
  np.testing.assert_array_equal(scores, score(population))
  # Another search space on these checkpoints is refused, never a fresh start.
  with pytest.raises(jm.errors.CheckpointMismatchError, match="another space"):
    LOOP.run_stepwise(
      jax.random.key(4),
      mutator,
      score,
      resources,
      driver=functools.partial(resumable_loop, checkpointer=Checkpointer(folder, {"space": "t"}, resume=True)),
      compiler_options=FAST,
    )


@pytest.mark.slow
def test_stepwise_search_errors_come_after_the_first_generation(mutator):
  rated = []

  def nan(population):
    rated.append(1)
    return np.full(population[0].shape, np.nan, np.float32)

  with pytest.raises(jm.errors.SearchError, match="non-finite"):
    LOOP.run_stepwise(jax.random.key(0), mutator, nan, resources, compiler_options=FAST)
  assert len(rated) == 1  # raised at once, not after every generation
  impossible = jm.EvolutionSearchLoop(
    max_epochs=2, num_candidates=8, top_k=3, num_mutation=4, num_crossover=4, constraints_range=dict(skips=(-2, -1))
  )
  with pytest.raises(jm.errors.SearchError, match="constraints_range"):
    impossible.run_stepwise(jax.random.key(0), mutator, score, resources, compiler_options=FAST)


TINY = """
model = dict(type='SPOS', architecture=dict(type='SearchableMLP', width=16, num_layers=3),
             mutator=dict(type='OneShotModuleMutator'))
train_cfg = dict(epochs=1, batch_size=32)
search_cfg = dict(max_epochs=8, num_candidates=8, top_k=3, num_mutation=4, num_crossover=4, calibrate_sample_num=0)
num_random_baseline = 0
checkpoint = dict(every_n_steps=1000, keep=2)
"""
VARYING = ("timings_s", "wall_time_s", "checkpoints", "compilation_cache")


def _command(config, work_dir, cache, *extra):
  command = [sys.executable, "-m", "jaxmutate.cli", "search", str(config), "--work-dir", str(work_dir), "--no-progress"]
  return command + list(extra), {**os.environ, "JAXMUTATE_COMPILATION_CACHE": str(cache)}


@pytest.mark.slow
def test_a_spos_run_killed_during_the_search_resumes_at_its_generation(tmp_path):
  config = tmp_path / "tiny.py"
  config.write_text(TINY)
  cache = tmp_path / "cache"
  command, env = _command(config, tmp_path / "whole", cache)
  subprocess.run(command, env=env, check=True, capture_output=True)

  command, env = _command(config, tmp_path / "killed", cache)
  process = subprocess.Popen(command, env=env, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
  checkpoints = tmp_path / "killed" / "checkpoints" / "search"
  deadline = time.monotonic() + 180
  while not (checkpoints.is_dir() and any(p.name.isdigit() for p in checkpoints.iterdir())):
    assert process.poll() is None and time.monotonic() < deadline, "the run ended before the search's first checkpoint"
    time.sleep(0.01)
  process.send_signal(signal.SIGKILL)
  process.wait()
  done = subprocess.run(command + ["--resume"], env=env, capture_output=True, text=True)
  assert done.returncode == 0, done.stderr[-3000:]

  whole = json.loads((tmp_path / "whole" / "summary.json").read_text())
  resumed = json.loads((tmp_path / "killed" / "summary.json").read_text())
  resumed_from = resumed["checkpoints"]["resumed_from"]
  assert resumed_from["supernet"] is not None  # training finished before the kill
  assert resumed_from["search"] is not None and resumed_from["search"] < 8, resumed_from  # killed mid-search
  assert {k: v for k, v in resumed.items() if k not in VARYING} == {k: v for k, v in whole.items() if k not in VARYING}
  assert (tmp_path / "killed" / "best_fix_subnet.yaml").read_text() == (
    tmp_path / "whole" / "best_fix_subnet.yaml"
  ).read_text()
