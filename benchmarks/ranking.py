"""How well does the SPOS supernet rank subnets? Kendall tau / Spearman rho against stand-alone training.

The demo space (``jaxmutate/configs/spos_digits.py``: its architecture, data,
training recipe) is trained once as a SPOS supernet; ``--num-subnets``
distinct random subnets are then

* rated with the supernet's weights after BatchNorm recalibration (what the
  evolution search ranks by: validation accuracy, the search's own scorer
  :func:`jaxmutate.algorithms.make_population_scorer`), and
* trained stand-alone from scratch, all with the same budget (epochs, batch
  size, optimiser, data order), and rated on the held-out test split.

Stand-alone training runs every subnet at once: one supernet copy per subnet,
initialised from its own key, trained with its own (traced) choices under one
``jax.vmap``, so a single compiled step serves the whole population.

The figures are Kendall's tau-b and Spearman's rho between the two scores,
with percentile bootstrap 95% confidence intervals (subnets resampled with
replacement), over every subnet and over those meeting the demo's FLOPs
constraint.

Usage::

  PYTHONPATH=. python benchmarks/ranking.py          # the default run (about 10 minutes on 2 CPU cores)
  PYTHONPATH=. python benchmarks/ranking.py --quick  # a smoke run (a minute)

Writes ``benchmarks/results/ranking.json`` (``--out`` to change; ``--quick``
writes JSON only with ``--out``).
"""

from __future__ import annotations

import argparse
import json
import time
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

import flax.linen as nn
import jax
import jax.numpy as jnp
import numpy as np
from machine import machine_info

import jaxmutate as jm
from jaxmutate.algorithms import (
  TrainState,
  build_optimizer,
  classification_loss,
  evaluate_accuracy,
  init_train_state,
  make_population_scorer,
  supervised_update,
)
from jaxmutate.data import Split, iterate_batches
from jaxmutate.mutators import ModuleMutator
from jaxmutate.runners import load_data, train_supernet
from jaxmutate.search import admissible, sample_constrained

CONFIG = Path(__file__).resolve().parents[1] / "jaxmutate" / "configs" / "spos_digits.py"


def _ranks(values: np.ndarray) -> np.ndarray:
  """Ranks along the last axis, ties averaged (1-based), for rows of scores."""
  order = np.argsort(values, axis=-1, kind="stable")
  ranks = np.empty_like(values, dtype=np.float64)
  np.put_along_axis(ranks, order, np.arange(1, values.shape[-1] + 1, dtype=np.float64)[None].repeat(len(values), 0), -1)
  for row in range(len(values)):  # average the ranks of tied values
    _, inverse, counts = np.unique(values[row], return_inverse=True, return_counts=True)
    if (counts > 1).any():
      sums = np.bincount(inverse, weights=ranks[row])
      ranks[row] = (sums / counts)[inverse]
  return ranks


def kendall_tau(x: np.ndarray, y: np.ndarray) -> np.ndarray:
  """Kendall's tau-b of paired scores, for rows ``[B, N]`` at once (NaN where one side is constant)."""
  x, y = np.atleast_2d(x), np.atleast_2d(y)
  dx = np.sign(x[:, :, None] - x[:, None, :])
  dy = np.sign(y[:, :, None] - y[:, None, :])
  upper = np.triu(np.ones(x.shape[1:] * 2, bool), 1)
  concordance = (dx * dy)[:, upper].sum(-1)
  pairs_x = (dx != 0)[:, upper].sum(-1)
  pairs_y = (dy != 0)[:, upper].sum(-1)
  with np.errstate(invalid="ignore", divide="ignore"):
    return concordance / np.sqrt(pairs_x * pairs_y)


def spearman_rho(x: np.ndarray, y: np.ndarray) -> np.ndarray:
  """Spearman's rho (Pearson correlation of tie-averaged ranks), for rows ``[B, N]`` at once."""
  rx, ry = _ranks(np.atleast_2d(x)), _ranks(np.atleast_2d(y))
  rx -= rx.mean(-1, keepdims=True)
  ry -= ry.mean(-1, keepdims=True)
  with np.errstate(invalid="ignore", divide="ignore"):
    return (rx * ry).sum(-1) / np.sqrt((rx * rx).sum(-1) * (ry * ry).sum(-1))


def rank_correlation(
  supernet: Sequence[float], standalone: Sequence[float], num_bootstrap: int = 2000, seed: int = 0
) -> dict[str, Any]:
  """Kendall tau and Spearman rho with percentile-bootstrap 95% intervals (pairs resampled)."""
  x, y = np.asarray(supernet, np.float64), np.asarray(standalone, np.float64)
  if x.shape != y.shape or x.ndim != 1 or len(x) < 3:
    raise ValueError(
      f"rank_correlation: two equally long score lists of >= 3 subnets needed, got {x.shape}, {y.shape}."
    )
  index = np.random.default_rng(seed).integers(0, len(x), (num_bootstrap, len(x)))
  report: dict[str, Any] = {"num_subnets": len(x), "num_bootstrap": num_bootstrap}
  for name, statistic in (("kendall_tau", kendall_tau), ("spearman_rho", spearman_rho)):
    samples = statistic(x[index], y[index])
    samples = samples[np.isfinite(samples)]  # a resample of tied scores only has no ranking
    low, high = np.quantile(samples, [0.025, 0.975]) if samples.size else (np.nan, np.nan)
    report[name] = {"value": float(statistic(x, y)[0]), "ci95": [float(low), float(high)]}
  return report


def train_standalone(
  model: nn.Module,
  mutator: ModuleMutator,
  population: Mapping[int, np.ndarray],
  train: Split,
  test: Split,
  epochs: int,
  batch_size: int,
  optimizer_cfg: Mapping[str, Any],
  key: jax.Array,
) -> np.ndarray:
  """Trains every subnet of ``population`` from scratch at once (one vmapped step); test accuracies ``[P]``.

  Each subnet is a copy of the supernet with its own initialisation, trained
  only on its own path (the choices are traced values, so one compile serves
  every member); all see the same batches in the same order.
  """
  size = len(next(iter(population.values())))
  optimizer = build_optimizer(dict(optimizer_cfg))
  init_key, data_key = jax.random.split(key)
  sample = jnp.asarray(train.images[:batch_size])

  def fresh(k: jax.Array) -> TrainState:
    variables = model.init(k, sample, None)
    params = variables["params"]
    return TrainState(params, variables.get("batch_stats", {}), optimizer.init(params), jnp.int32(0))

  states = jax.jit(jax.vmap(fresh))(jax.random.split(init_key, size))
  choices = jax.vmap(mutator.set_choices)({g: jnp.asarray(v) for g, v in population.items()})

  @jax.jit
  def step(states: TrainState, images: jax.Array, labels: jax.Array) -> TrainState:
    update = lambda state, c: supervised_update(model, optimizer, classification_loss, state, images, labels, c)[0]
    return jax.vmap(update)(states, choices)

  for epoch_key in jax.random.split(data_key, epochs):
    for images, labels in iterate_batches(epoch_key, train, batch_size):
      states = step(states, jnp.asarray(images), jnp.asarray(labels))

  @jax.jit
  def accuracy(state: TrainState, c: Mapping[str, jax.Array]) -> jax.Array:
    return evaluate_accuracy(
      model, state.params, state.batch_stats, c, jnp.asarray(test.images), jnp.asarray(test.labels)
    )

  return np.asarray(jax.vmap(accuracy)(states, choices))


def run(
  config: Mapping[str, Any],
  num_subnets: int,
  supernet_epochs: int,
  standalone_epochs: int,
  seed: int,
  num_bootstrap: int = 2000,
) -> dict[str, Any]:
  """The benchmark: supernet training, scoring, stand-alone training, correlations."""
  timings: dict[str, float] = {}
  data = load_data(config, "ranking")
  model = jm.build(config["model"]["architecture"])
  train_cfg = config["train_cfg"]
  batch_size = int(train_cfg["batch_size"])
  optimizer_cfg = _with_decay_steps(train_cfg["optimizer"], supernet_epochs * (len(data.train) // batch_size))
  optimizer = build_optimizer(optimizer_cfg)
  key = jax.random.key(seed)
  init_key, train_key, sample_key, standalone_key = jax.random.split(key, 4)
  state, variables = init_train_state(model, optimizer, init_key, jnp.asarray(data.train.images[:batch_size]))
  mutator = jm.build(config["model"]["mutator"]).prepare_from_supernet(variables)

  start = time.perf_counter()
  state, log = train_supernet(model, mutator, optimizer, state, data.train, supernet_epochs, batch_size, train_key)
  timings["supernet_train_s"] = time.perf_counter() - start

  population = sample_constrained(sample_key, mutator, num_subnets, distinct=True).population
  table = jm.build_resource_table(model, variables, mutator, jnp.asarray(data.train.images[:1]))
  constraints = config["search_cfg"].get("constraints_range")
  within = admissible(population, table, constraints)
  calibration = jnp.asarray(data.train.images[: int(config["search_cfg"].get("calibrate_sample_num", 512))])
  start = time.perf_counter()
  supernet_val = make_population_scorer(
    model, mutator, calibration, jnp.asarray(data.val.images), jnp.asarray(data.val.labels)
  )(state, population)
  supernet_test = make_population_scorer(
    model, mutator, calibration, jnp.asarray(data.test.images), jnp.asarray(data.test.labels)
  )(state, population)
  timings["supernet_score_s"] = time.perf_counter() - start

  start = time.perf_counter()
  standalone_cfg = _with_decay_steps(train_cfg["optimizer"], standalone_epochs * (len(data.train) // batch_size))
  standalone = train_standalone(
    model, mutator, population, data.train, data.test, standalone_epochs, batch_size, standalone_cfg, standalone_key
  )
  timings["standalone_train_s"] = time.perf_counter() - start

  results: dict[str, Any] = {
    "all_subnets": {
      "supernet_val_vs_standalone_test": rank_correlation(supernet_val, standalone, num_bootstrap, seed),
      "supernet_test_vs_standalone_test": rank_correlation(supernet_test, standalone, num_bootstrap, seed),
    }
  }
  if within.sum() >= 5:
    results["within_constraint"] = {
      "constraints_range": {k: list(v) if isinstance(v, tuple) else v for k, v in (constraints or {}).items()},
      "supernet_val_vs_standalone_test": rank_correlation(
        supernet_val[within], standalone[within], num_bootstrap, seed
      ),
    }
  flops = np.asarray(table(population)["flops"])
  return {
    "config": str(config.get("_path", CONFIG)),
    "seed": seed,
    "num_subnets": num_subnets,
    "supernet_epochs": supernet_epochs,
    "standalone_epochs": standalone_epochs,
    "batch_size": batch_size,
    "supernet_final_train": log[-1] if log else None,
    "correlations": results,
    "subnets": [
      {
        "choices": {mutator.group_key(g): int(population[g][i]) for g in population},
        "mflops": float(flops[i]),
        "within_constraint": bool(within[i]),
        "supernet_val_accuracy": float(supernet_val[i]),
        "supernet_test_accuracy": float(supernet_test[i]),
        "standalone_test_accuracy": float(standalone[i]),
      }
      for i in range(num_subnets)
    ],
    "timings_s": timings,
    "machine": machine_info(),
  }


def _with_decay_steps(optimizer_cfg: Mapping[str, Any], steps: int) -> dict[str, Any]:
  """The config's optimiser with a decay schedule's length set to ``steps`` (the run's own length)."""
  cfg = dict(optimizer_cfg)
  schedule = cfg.get("learning_rate")
  if isinstance(schedule, Mapping) and "decay_steps" in schedule:
    cfg["learning_rate"] = {**schedule, "decay_steps": max(1, steps)}
  return cfg


def main(argv: Sequence[str] | None = None) -> dict[str, Any]:
  parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
  parser.add_argument("--quick", action="store_true", help="a smoke run: few subnets and epochs")
  parser.add_argument("--num-subnets", type=int, default=None, help="subnets trained stand-alone (default 20)")
  parser.add_argument("--supernet-epochs", type=int, default=None, help="default: the config's train_cfg.epochs")
  parser.add_argument("--standalone-epochs", type=int, default=None, help="default 20")
  parser.add_argument("--seed", type=int, default=0)
  parser.add_argument("--config", default=str(CONFIG))
  parser.add_argument("--out", default=None, help="JSON output (default benchmarks/results/ranking.json)")
  args = parser.parse_args(argv)
  config = jm.load_config(args.config)
  config["_path"] = args.config
  quick = dict(num_subnets=6, supernet_epochs=2, standalone_epochs=2) if args.quick else {}
  num_subnets = args.num_subnets or quick.get("num_subnets", 20)
  supernet_epochs = args.supernet_epochs or quick.get("supernet_epochs", int(config["train_cfg"]["epochs"]))
  standalone_epochs = args.standalone_epochs or quick.get("standalone_epochs", 20)
  start = time.perf_counter()
  report = run(config, num_subnets, supernet_epochs, standalone_epochs, args.seed, 200 if args.quick else 2000)
  report["wall_time_s"] = time.perf_counter() - start
  for scope, figures in report["correlations"].items():
    for name, entry in figures.items():
      if isinstance(entry, dict) and "kendall_tau" in entry:
        tau, rho = entry["kendall_tau"], entry["spearman_rho"]
        print(
          f"{scope:18s} {name:34s} n={entry['num_subnets']:3d}  tau {tau['value']:+.3f} "
          f"[{tau['ci95'][0]:+.2f}, {tau['ci95'][1]:+.2f}]  rho {rho['value']:+.3f} [{rho['ci95'][0]:+.2f}, {rho['ci95'][1]:+.2f}]"
        )
  print(f"wall time {report['wall_time_s']:.0f} s: {json.dumps({k: round(v) for k, v in report['timings_s'].items()})}")
  out = args.out or (None if args.quick else str(Path(__file__).with_name("results") / "ranking.json"))
  if out:
    Path(out).write_text(json.dumps(report, indent=2) + "\n")
    print(f"wrote {out}")
  return report


if __name__ == "__main__":
  main()
