"""Time per generation: MMRazor's evolution search on device (one jitted ``lax.scan``) against the host loop.

The demo space (``jaxmutate/configs/spos_digits.py``: its ShuffleNetV2
supernet, its ``search_cfg``: population 50, top-k 10, 25 mutants and 25
children per generation, the FLOPs constraint checked with the
``ResourceTable``) is searched twice from the same key with the same score
function:

* **host**: :meth:`jaxmutate.search.EvolutionSearchLoop.run`, today's loop
  (sampling jitted, everything else in Python, scores cached per subnet);
* **device**: :meth:`~jaxmutate.search.EvolutionSearchLoop.run_on_device`'s
  program (``make_search_fn(loop.as_strategy(...))``): sampling, constraint
  checks, de-duplication, the score cache, top-k and breeding inside one
  compiled ``lax.scan`` over generations.

Both runs must give the same result (history, top-k, scores, number
evaluated); the script checks it and prints the ratio of the per-generation
times, each measured after a warm-up run (compilation excluded; compile
times are reported separately). Two score functions:

* ``synthetic``: a fixed random additive table plus pairwise terms over the
  groups' choices (jittable, microseconds per subnet): the loop's own
  overhead;
* ``calibrated``: the search's real scorer, BatchNorm recalibration on 512
  training images and top-1 accuracy on the validation split (the supernet
  is freshly initialised: the timing does not depend on the weights), from
  :func:`~jaxmutate.algorithms.make_population_scorer`. The host loop calls
  it from the host (chunks of 25, only subnets it has not rated before, the
  padding of a chunk not rated); the device loop uses its jittable form
  (``scorer.rate``, the same per-subnet program, so the same scores) with
  ``chunk_size`` (``--chunk-size``, default 1: only the new subnets, one at
  a time, as the SPOS runner does; ``--chunk-size 0`` rates all 50 slots
  every generation). Both rate subnets one after the other inside the
  compiled call (``lax.map``): on CPU that is faster per subnet than a
  ``vmap``, whose batched choice makes every switch loop over the members
  anyway.

For reference the calibrated section also times the host loop with the
scorer it had before (``previous_host_*``: a ``vmap`` over subnets in
chunks of 25, padding rated too) and gives ``speedup_vs_previous_host``.

Timing: each loop's wall time from call to result on the host (the device
run ends with ``jax.block_until_ready``; the host loop's scores are NumPy
arrays, so it waits for every call), the best of the timed runs.

Usage::

  PYTHONPATH=. python benchmarks/search_loop.py            # both scorers (about 30 minutes on a busy 2-core machine)
  PYTHONPATH=. python benchmarks/search_loop.py --quick    # synthetic only, JSON only with --out

Writes ``benchmarks/results/search_loop.json`` (``--out`` to change).
"""

from __future__ import annotations

import argparse
import json
import os
import time
from pathlib import Path
from typing import Any

import jax
import jax.numpy as jnp
import numpy as np
import optax
from machine import machine_info

import jaxmutate as jm
from jaxmutate.algorithms import evaluate_accuracy, init_train_state, make_population_scorer, recalibrate_batch_stats
from jaxmutate.runners import load_data
from jaxmutate.search import make_search_fn

CONFIG = Path(__file__).resolve().parents[1] / "jaxmutate" / "configs" / "spos_digits.py"
FAST = {"xla_backend_optimization_level": 0, "xla_llvm_disable_expensive_passes": True}


def synthetic_scorer(mutator: Any, key: jax.Array) -> Any:
  """A cheap jittable landscape: additive per-choice values plus pairwise terms between neighbouring groups."""
  groups = sorted(mutator.search_groups)
  sizes = {g: mutator.group_space(g).num_choices for g in groups}
  keys = jax.random.split(key, 2 * len(groups))
  unary = {g: jax.random.uniform(keys[i], (sizes[g],)) for i, g in enumerate(groups)}
  pair = {g: 0.3 * jax.random.normal(keys[len(groups) + i], (sizes[g], sizes[g])) for i, g in enumerate(groups)}

  def score(population: dict[int, jax.Array]) -> jax.Array:
    total = sum(unary[g][population[g]] for g in groups)
    for a, b in zip(groups, groups[1:]):
      total = total + pair[a][population[a], population[b] % sizes[a]]
    return jnp.round(total.astype(jnp.float32), 4)  # MMRazor rounds scores too; ties are broken by position

  return score


def chunked_host(score: Any, chunk: int = 25) -> Any:
  """The host loop's way to call a jitted scorer: fixed-size chunks (one executable for every pool size)."""
  jitted = jax.jit(score)

  def run(population: dict[int, jax.Array]) -> np.ndarray:
    size = int(next(iter(population.values())).shape[0])
    out = []
    for start in range(0, size, chunk):
      index = np.minimum(np.arange(start, start + chunk), size - 1)
      out.append(np.asarray(jitted({g: jnp.asarray(v)[index] for g, v in population.items()}))[: size - start])
    return np.concatenate(out)

  return run


def same_result(host: Any, device: Any) -> bool:
  from jaxmutate.search._evolution import member_keys  # a benchmark may compare identities the library's way

  return (
    host.history == device.history
    and host.top_k_scores == device.top_k_scores
    and member_keys(host.top_k) == member_keys(device.top_k)
    and host.num_evaluated == device.num_evaluated
  )


def time_pair(
  loop: Any,
  mutator: Any,
  table: Any,
  host_score: Any,
  device_score: Any,
  score_args: tuple,
  repeats: int,
  unoptimised: bool = True,
  chunk_size: int | None = None,
) -> dict[str, Any]:
  """Warm-up runs, then the best of ``repeats`` timed runs of each loop from the same key."""
  search = make_search_fn(loop.as_strategy(mutator, table), device_score, loop.max_epochs, chunk_size=chunk_size)
  start = time.perf_counter()
  compiled = search.lower(jax.random.key(0), *score_args).compile()
  device_compile = time.perf_counter() - start
  start = time.perf_counter()
  host_warm = loop.run(jax.random.key(0), mutator, host_score, table)
  host_first = time.perf_counter() - start
  device_warm = loop.result_of(*compiled(jax.random.key(0), *score_args))
  checks = [same_result(host_warm, device_warm)]
  host_times, device_times, host_results = [], [], []
  for r in range(repeats):
    key = jax.random.key(1 + r)
    start = time.perf_counter()
    host = loop.run(key, mutator, host_score, table)
    host_times.append(time.perf_counter() - start)
    host_results.append(host)
    start = time.perf_counter()
    out = jax.block_until_ready(compiled(key, *score_args))
    device_times.append(time.perf_counter() - start)
    checks.append(same_result(host, loop.result_of(*out)))
  host_gen = min(host_times) / loop.max_epochs
  device_gen = min(device_times) / loop.max_epochs
  result = {
    "host_s_per_generation": host_gen,
    "device_s_per_generation": device_gen,
    "speedup": host_gen / device_gen,
    "host_runs_s": host_times,
    "device_runs_s": device_times,
    "host_first_run_s (compiles included)": host_first,
    "device_compile_s": device_compile,
    "device_chunk_size": chunk_size,
    "num_evaluated_per_run": host.num_evaluated,
    "best_score": host.best_score,
  }
  if not unoptimised:
    result["same_results"] = all(checks)
    return result
  # The search's own kernels need no LLVM optimisation: compiled without it, the program builds faster.
  fast = make_search_fn(loop.as_strategy(mutator, table), device_score, loop.max_epochs, compiler_options=FAST)
  start = time.perf_counter()
  fast_compiled = fast.lower(jax.random.key(0), *score_args).compile()
  fast_compile = time.perf_counter() - start
  fast_times = []
  for r in range(repeats):
    start = time.perf_counter()
    out = jax.block_until_ready(fast_compiled(jax.random.key(1 + r), *score_args))
    fast_times.append(time.perf_counter() - start)
    checks.append(same_result(host_results[r], loop.result_of(*out)))
  result["device_unoptimised_compile_s"] = fast_compile
  result["device_unoptimised_s_per_generation"] = min(fast_times) / loop.max_epochs
  result["same_results"] = all(checks)
  return result


def previous_host(
  loop: Any, mutator: Any, table: Any, model: Any, calibration: Any, data: Any, state: Any, repeats: int
) -> dict[str, Any]:
  """The host loop with the scorer it had before: a ``vmap`` over subnets, chunks of 25 (padding rated too)."""
  images, labels = jnp.asarray(data.val.images), jnp.asarray(data.val.labels)

  def vmapped(population: dict[int, jax.Array]) -> jax.Array:
    def one(group_choices: dict[int, jax.Array]) -> jax.Array:
      choices = mutator.set_choices(group_choices)
      stats = recalibrate_batch_stats(model, state.params, state.batch_stats, choices, calibration)
      return evaluate_accuracy(model, state.params, stats, choices, images, labels)

    return jax.vmap(one)(population)

  score = chunked_host(vmapped)
  reference = loop.run(jax.random.key(0), mutator, score, table)  # warm-up (compiles)
  times = []
  for r in range(repeats):
    start = time.perf_counter()
    loop.run(jax.random.key(1 + r), mutator, score, table)
    times.append(time.perf_counter() - start)
  return {
    "previous_host_s_per_generation": min(times) / loop.max_epochs,
    "previous_host_runs_s": times,
    "previous_host_best_score": reference.best_score,
  }


def main() -> dict[str, Any]:
  parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
  parser.add_argument("--quick", action="store_true", help="synthetic scorer only")
  parser.add_argument("--repeats", type=int, default=3)
  parser.add_argument("--out", default=None)
  parser.add_argument(
    "--chunk-size",
    type=int,
    default=1,
    help="calibrated scorer on device: rate only new subnets, this many at a time (0: every slot)",
  )
  args = parser.parse_args()
  jm.runtime.configure_allocator()
  config = jm.load_config(str(CONFIG))
  data = load_data(config, "search_loop")
  model = jm.build(config["model"]["architecture"])
  images = jnp.asarray(data.train.images[:64])
  state, variables = init_train_state(model, optax.identity(), jax.random.key(0), images)
  mutator = jm.build(config["model"]["mutator"]).prepare_from_supernet(variables)
  table = jm.build_resource_table(model, variables, mutator, jnp.asarray(data.train.images[:1]))
  search_cfg = {k: v for k, v in config["search_cfg"].items() if k not in ("type", "calibrate_sample_num")}
  loop = jm.EvolutionSearchLoop(**search_cfg)
  load = {"start": os.getloadavg()}
  report: dict[str, Any] = {
    "config": str(CONFIG.relative_to(CONFIG.parents[2])),
    "search_cfg": {k: (list(v) if isinstance(v, tuple) else v) for k, v in search_cfg.items()},
    "num_groups": len(mutator.search_groups),
    "device_population_slots": loop.as_strategy(mutator, table).population_size,
    "machine": machine_info(),
  }

  synthetic = synthetic_scorer(mutator, jax.random.key(42))
  report["synthetic"] = time_pair(loop, mutator, table, chunked_host(synthetic), synthetic, (), args.repeats)
  print(json.dumps({"synthetic": report["synthetic"]}, indent=2), flush=True)

  if not args.quick:
    calibration = jnp.asarray(data.train.images[: int(config["search_cfg"].get("calibrate_sample_num", 512))])
    scorer = make_population_scorer(model, mutator, calibration, data.val.images, data.val.labels)

    report["calibrated"] = time_pair(
      loop,
      mutator,
      table,
      lambda population: scorer(state, population),
      scorer.rate,
      scorer.score_args(state),
      max(1, args.repeats - 1),
      unoptimised=False,  # the scorer needs LLVM's optimisations
      chunk_size=args.chunk_size or None,
    )
    report["calibrated"].update(
      previous_host(loop, mutator, table, model, calibration, data, state, max(1, args.repeats - 1))
    )
    report["calibrated"]["speedup_vs_previous_host"] = (
      report["calibrated"]["previous_host_s_per_generation"] / report["calibrated"]["device_s_per_generation"]
    )
    print(json.dumps({"calibrated": report["calibrated"]}, indent=2), flush=True)
  load["end"] = os.getloadavg()
  report["load_average_1_5_15"] = load
  for name in ("synthetic", "calibrated"):
    if name in report:
      r = report[name]
      print(
        f"{name}: host {1e3 * r['host_s_per_generation']:.1f} ms/gen, device {1e3 * r['device_s_per_generation']:.1f}"
        f" ms/gen, {r['speedup']:.1f}x, same results: {r['same_results']}"
      )
  if "calibrated" in report:
    r = report["calibrated"]
    print(
      f"calibrated, the host loop with the previous vmapped scorer: {1e3 * r['previous_host_s_per_generation']:.1f}"
      f" ms/gen, device {r['speedup_vs_previous_host']:.1f}x faster"
    )
  out = args.out or (None if args.quick else str(Path(__file__).with_name("results") / "search_loop.json"))
  if out:
    Path(out).write_text(json.dumps(report, indent=2, default=float) + "\n")
    print(f"wrote {out}")
  return report


if __name__ == "__main__":
  main()
