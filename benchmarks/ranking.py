"""How well does the SPOS supernet rank subnets? Kendall tau / Spearman rho against stand-alone training.

An SPOS config's space (``--config``; by default the demo's,
``jaxmutate/configs/spos_digits.py``: its architecture, data, training recipe)
is trained once as a SPOS supernet; ``--num-subnets`` distinct random subnets
(``--num-within`` of them drawn under the config's FLOPs constraint, the rest
from the whole space) are then

* rated with the supernet's weights after BatchNorm recalibration: validation
  accuracy (what the evolution search ranks by, the search's own scorer
  :func:`jaxmutate.algorithms.make_population_scorer`) and validation
  cross-entropy loss, and
* trained stand-alone from scratch ``--seeds`` times each (own initialisation
  and own data order per seed), all with the same budget (epochs, batch size,
  optimiser), and rated by cross-entropy loss and accuracy on the validation
  and test splits together (stand-alone training never selects on either),
  averaged over the seeds.

Stand-alone training runs every (subnet, seed) copy at once: one supernet
copy each, trained with its own (traced) choices and its own batches under one
``jax.vmap``, so a single compiled step serves the whole population.

The figures are Kendall's tau-b and Spearman's rho with percentile bootstrap
95% confidence intervals (subnets resampled with replacement), for every
(supernet signal, stand-alone signal) pair, over every subnet and over those
meeting the config's FLOPs constraint. Every signal is oriented "higher is
better" (losses enter negated), so a positive tau means agreement. The
primary pair is named before the run, on the command line
(``--primary-supernet-epochs``, ``--primary-signal``, ``--primary-truth``;
by default the first supernet's search score against the stand-alone
held-out loss averaged over seeds, over all subnets) and recorded in the
JSON with the command line; the rest are secondary. ``--seed N`` is the
root of every random draw (the supernets' initialisation and batches, the
subnet draw, the stand-alone initialisations and batches, the bootstrap),
so another N replicates the measurement with fresh seeds; the data split
stays the config's.
The seed-to-seed tau of the stand-alone rankings (two single seeds) is the
noise floor of the "truth": no proxy can be expected to agree with one seed's
ranking better than another seed does.

Usage::

  PYTHONPATH=. python benchmarks/ranking.py          # the default run (about 30 minutes on a busy 2-core machine)
  PYTHONPATH=. python benchmarks/ranking.py --quick  # a smoke run (a few minutes)
  PYTHONPATH=. python benchmarks/ranking.py --supernet-epochs 40 120  # extra rows: a longer-trained supernet
  # a space whose subnets differ in depth and reach (about 17 minutes with --supernet-epochs 40 80):
  PYTHONPATH=. python benchmarks/ranking.py --config jaxmutate/configs/spos_depth_digits.py
  # a replication with fresh seeds and the primary pair named before the run:
  PYTHONPATH=. python benchmarks/ranking.py --config jaxmutate/configs/spos_depth_digits.py --supernet-epochs 80 \
    --seed 1 --primary-supernet-epochs 80 --primary-signal search_score --primary-truth heldout_loss \
    --out benchmarks/results/ranking_spos_depth_digits_seed1.json

Writes ``benchmarks/results/ranking.json`` for the demo's config and
``benchmarks/results/ranking_<config name>.json`` for another (``--out`` to
change; ``--quick`` writes JSON only with ``--out``).
"""

from __future__ import annotations

import argparse
import itertools
import json
import os
import sys
import time
from collections.abc import Callable, Mapping, Sequence
from pathlib import Path
from typing import Any

import flax.linen as nn
import jax
import jax.numpy as jnp
import numpy as np
import optax
from machine import machine_info

import jaxmutate as jm
from jaxmutate.algorithms import (
  TrainState,
  build_optimizer,
  classification_loss,
  init_train_state,
  recalibrate_batch_stats,
  supervised_update,
)
from jaxmutate.data import Split, iterate_batches
from jaxmutate.errors import ConfigError
from jaxmutate.mutators import ModuleMutator
from jaxmutate.runners import load_data, train_supernet
from jaxmutate.search import admissible, sample_constrained

CONFIG = Path(__file__).resolve().parents[1] / "jaxmutate" / "configs" / "spos_digits.py"
# Compiling the vmapped supernet init takes minutes with XLA's CPU backend optimisation and about a sixth of that at
# level 0; init runs once, so its speed does not matter. (The train step is not compiled so: at level 0 it compiled
# about 20% faster but ran 2.6x slower, measured on this machine with 60 copies.)
FAST_COMPILE = {"xla_backend_optimization_level": 0}
# Command-line names of the signals a primary pair can name, and their keys in the report.
SUPERNET_SIGNALS = {"search_score": "supernet_search_score", "val_loss": "supernet_val_neg_loss"}
STANDALONE_SIGNALS = {"heldout_loss": "standalone_heldout_neg_loss", "heldout_accuracy": "standalone_heldout_accuracy"}


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


def _logits_scores(logits: jax.Array, labels: jax.Array) -> dict[str, jax.Array]:
  """Mean cross-entropy and top-1 accuracy of one subnet's logits."""
  return {"loss": classification_loss(logits, labels), "accuracy": (jnp.argmax(logits, -1) == labels).mean()}


def score_with_supernet(
  model: nn.Module,
  mutator: ModuleMutator,
  state: TrainState,
  population: Mapping[int, np.ndarray],
  calibration_images: jax.Array,
  splits: Mapping[str, Split],
) -> dict[str, dict[str, np.ndarray]]:
  """Each subnet's loss and accuracy on each of ``splits`` with the supernet's weights (one vmapped call).

  Every subnet's BatchNorm statistics are recalibrated on
  ``calibration_images`` first, exactly as the search's scorer
  (:func:`jaxmutate.algorithms.make_population_scorer`) does, so the
  accuracies are the search's own scores; recalibrating once and evaluating
  every split from it saves a compile and a recalibration per split.

  Returns:
    ``{split name: {"loss": [P], "accuracy": [P]}}``.
  """

  def one(group_choices: Mapping[int, jax.Array]) -> dict[str, dict[str, jax.Array]]:
    choices = mutator.set_choices(group_choices)
    stats = recalibrate_batch_stats(model, state.params, state.batch_stats, choices, calibration_images)
    variables = {"params": state.params, "batch_stats": stats}
    return {
      name: _logits_scores(model.apply(variables, jnp.asarray(split.images), choices, train=False), split.labels)
      for name, split in splits.items()
    }

  scores = jax.jit(jax.vmap(one))({g: jnp.asarray(v) for g, v in population.items()})
  return jax.tree.map(np.asarray, scores)


def train_standalone(
  model: nn.Module,
  mutator: ModuleMutator,
  population: Mapping[int, np.ndarray],
  train: Split,
  heldout: Split,
  epochs: int,
  batch_size: int,
  optimizer_cfg: Mapping[str, Any],
  key: jax.Array,
  num_seeds: int = 1,
) -> dict[str, np.ndarray]:
  """Trains every subnet of ``population`` from scratch ``num_seeds`` times, all at once; held-out scores.

  Each (seed, subnet) copy is a copy of the supernet with its own
  initialisation, trained only on its own path (the choices are traced
  values, so one compile serves every copy). The copies of one seed see the
  same batches in the same order; each seed has its own order.

  Returns:
    ``{"loss": [num_seeds, P], "accuracy": [num_seeds, P]}`` on ``heldout``
    (cross-entropy and top-1 accuracy, BatchNorm in inference mode).
  """
  size = len(next(iter(population.values())))
  copies = num_seeds * size
  optimizer = build_optimizer(dict(optimizer_cfg))
  init_key, data_key = jax.random.split(key)
  sample = jnp.asarray(train.images[:batch_size])

  def fresh(k: jax.Array) -> TrainState:
    variables = model.init(k, sample, None)
    params = variables["params"]
    return TrainState(params, variables.get("batch_stats", {}), optimizer.init(params), jnp.int32(0))

  states = jax.jit(jax.vmap(fresh), compiler_options=FAST_COMPILE)(jax.random.split(init_key, copies))
  # Copy c is subnet c % size of seed c // size.
  choices = jax.vmap(mutator.set_choices)(
    {g: jnp.asarray(np.tile(np.asarray(v), num_seeds)) for g, v in population.items()}
  )

  def update(state: TrainState, c: Mapping[str, jax.Array], images: jax.Array, labels: jax.Array) -> TrainState:
    return supervised_update(model, optimizer, classification_loss, state, images, labels, c)[0]

  def step(states: TrainState, images: jax.Array, labels: jax.Array) -> TrainState:
    # images: [num_seeds, batch, ...], one batch per seed, repeated for that seed's copies.
    return jax.vmap(update)(states, choices, jnp.repeat(images, size, 0), jnp.repeat(labels, size, 0))

  step = jax.jit(step)
  seed_keys = jax.random.split(data_key, num_seeds)
  for epoch in range(epochs):
    epoch_keys = [jax.random.fold_in(k, epoch) for k in seed_keys]
    for batches in zip(*(iterate_batches(k, train, batch_size) for k in epoch_keys), strict=True):
      states = step(
        states, jnp.asarray(np.stack([b[0] for b in batches])), jnp.asarray(np.stack([b[1] for b in batches]))
      )

  @jax.jit
  def evaluate(states: TrainState, c: Mapping[str, jax.Array]) -> dict[str, jax.Array]:
    def one(state: TrainState, c: Mapping[str, jax.Array]) -> dict[str, jax.Array]:
      variables = {"params": state.params, "batch_stats": state.batch_stats}
      return _logits_scores(model.apply(variables, jnp.asarray(heldout.images), c, train=False), heldout.labels)

    return jax.vmap(one)(states, c)

  scores = []
  for s in range(num_seeds):  # one seed's copies at a time keeps the evaluation's activations small
    part = slice(s * size, (s + 1) * size)
    scores.append(evaluate(jax.tree.map(lambda a: a[part], states), jax.tree.map(lambda a: a[part], choices)))
  return {name: np.stack([np.asarray(s[name]) for s in scores]) for name in ("loss", "accuracy")}


def seed_agreement(standalone: Mapping[str, np.ndarray], num_bootstrap: int, seed: int) -> dict[str, Any]:
  """Tau/rho between every two seeds' stand-alone rankings: how far the stand-alone "truth" is from noise."""
  report: dict[str, Any] = {}
  for name, values in (("heldout_neg_loss", -standalone["loss"]), ("heldout_accuracy", standalone["accuracy"])):
    pairs = {
      f"seed{a}_vs_seed{b}": rank_correlation(values[a], values[b], num_bootstrap, seed)
      for a, b in itertools.combinations(range(len(values)), 2)
    }
    report[name] = {
      "pairs": pairs,
      "mean_kendall_tau": float(np.mean([p["kendall_tau"]["value"] for p in pairs.values()])),
      "mean_spearman_rho": float(np.mean([p["spearman_rho"]["value"] for p in pairs.values()])),
    }
  return report


def draw_population(
  key: jax.Array, mutator: ModuleMutator, table: Any, num_subnets: int, num_within: int, constraints: Any
) -> dict[int, np.ndarray]:
  """``num_within`` distinct subnets meeting ``constraints``, then distinct random ones up to ``num_subnets``."""
  within_key, free_key = jax.random.split(key)
  population = {g: np.zeros((0,), np.int32) for g in mutator.search_groups}
  if num_within:
    found = sample_constrained(within_key, mutator, num_within, table, constraints, distinct=True)
    if found.num_found < num_within:
      raise ConfigError(
        f"draw_population: only {found.num_found} of --num-within {num_within} subnets meet {constraints} "
        f"in {found.num_attempts} draws."
      )
    population = {g: np.asarray(v) for g, v in found.population.items()}
  free = sample_constrained(free_key, mutator, 4 * num_subnets, distinct=True).population
  seen = {tuple(int(population[g][i]) for g in population) for i in range(num_within)}
  rows = []
  for i in range(len(next(iter(free.values())))):
    row = tuple(int(free[g][i]) for g in population)
    if row not in seen and len(rows) < num_subnets - num_within:
      seen.add(row)
      rows.append(i)
  if len(rows) < num_subnets - num_within:
    raise ConfigError(f"draw_population: the space has too few distinct subnets for --num-subnets {num_subnets}.")
  return {g: np.concatenate([population[g], np.asarray(free[g])[rows]]).astype(np.int32) for g in population}


def correlations(
  supernet: Mapping[str, np.ndarray],
  standalone: Mapping[str, np.ndarray],
  within: np.ndarray,
  num_bootstrap: int,
  seed: int,
) -> dict[str, Any]:
  """Every (supernet signal, stand-alone signal) pair's tau/rho, over all subnets and within the constraint."""
  scopes = {"all_subnets": np.ones_like(within)}
  if within.sum() >= 5:
    scopes["within_constraint"] = within
  report: dict[str, Any] = {}
  for scope, mask in scopes.items():
    report[scope] = {
      f"{a}__vs__{b}": rank_correlation(x[mask], y[mask], num_bootstrap, seed)
      for a, x in supernet.items()
      for b, y in standalone.items()
    }
  return report


def run(
  config: Mapping[str, Any],
  num_subnets: int,
  supernet_epochs: Sequence[int],
  standalone_epochs: int,
  seed: int,
  num_seeds: int = 3,
  num_within: int | None = None,
  num_bootstrap: int = 2000,
  on_progress: Callable[[dict[str, Any]], None] | None = None,
  primary_supernet_epochs: int | None = None,
  primary_signal: str = "search_score",
  primary_truth: str = "heldout_loss",
) -> dict[str, Any]:
  """The benchmark: stand-alone training over seeds, then per supernet length training, scoring, correlations.

  The primary pair is ``primary_signal`` (a key of ``SUPERNET_SIGNALS``) of
  the ``primary_supernet_epochs`` supernet (one of ``supernet_epochs``; by
  default the first) against ``primary_truth`` (a key of
  ``STANDALONE_SIGNALS``), over all subnets. ``on_progress(report)`` receives
  the report so far after each supernet (the primary one first), so a long
  extra row cannot cost the primary figures.
  """
  primary_epochs = supernet_epochs[0] if primary_supernet_epochs is None else primary_supernet_epochs
  if primary_epochs not in supernet_epochs:
    raise ConfigError(
      f"run: primary_supernet_epochs {primary_epochs} is not one of the supernet epochs {list(supernet_epochs)}."
    )
  if primary_signal not in SUPERNET_SIGNALS:
    raise ConfigError(f"run: primary_signal {primary_signal!r} is not one of {sorted(SUPERNET_SIGNALS)}.")
  if primary_truth not in STANDALONE_SIGNALS:
    raise ConfigError(f"run: primary_truth {primary_truth!r} is not one of {sorted(STANDALONE_SIGNALS)}.")
  # The primary supernet trains first, so its figures are written before any secondary one.
  supernet_epochs = [primary_epochs] + [e for e in supernet_epochs if e != primary_epochs]
  primary_name = f"{SUPERNET_SIGNALS[primary_signal]}__vs__{STANDALONE_SIGNALS[primary_truth]}"
  timings: dict[str, float] = {}
  load = {"start": os.getloadavg()}
  data = load_data(config, "ranking")
  model = jm.build(config["model"]["architecture"])
  train_cfg = config["train_cfg"]
  batch_size = int(train_cfg["batch_size"])
  steps_per_epoch = len(data.train) // batch_size
  key = jax.random.key(seed)
  init_key, train_key, sample_key, standalone_key = jax.random.split(key, 4)
  sample_images = jnp.asarray(data.train.images[:batch_size])
  state0, variables = init_train_state(model, optax.identity(), init_key, sample_images)
  mutator = jm.build(config["model"]["mutator"]).prepare_from_supernet(variables)
  table = jm.build_resource_table(model, variables, mutator, jnp.asarray(data.train.images[:1]))
  constraints = config["search_cfg"].get("constraints_range")
  num_within = num_subnets // 2 if num_within is None else num_within
  population = draw_population(sample_key, mutator, table, num_subnets, num_within if constraints else 0, constraints)
  within = np.asarray(admissible(population, table, constraints))
  heldout = Split(
    np.concatenate([data.val.images, data.test.images]), np.concatenate([data.val.labels, data.test.labels])
  )
  calibration = jnp.asarray(data.train.images[: int(config["search_cfg"].get("calibrate_sample_num", 512))])

  start = time.perf_counter()
  standalone_cfg = _with_decay_steps(train_cfg["optimizer"], standalone_epochs * steps_per_epoch)
  standalone = train_standalone(
    model,
    mutator,
    population,
    data.train,
    heldout,
    standalone_epochs,
    batch_size,
    standalone_cfg,
    standalone_key,
    num_seeds,
  )
  timings["standalone_train_s"] = time.perf_counter() - start
  print(
    f"stand-alone training ({num_seeds} seeds x {num_subnets} subnets) took {timings['standalone_train_s']:.0f} s",
    flush=True,
  )

  truth = {
    "standalone_heldout_neg_loss": -standalone["loss"].mean(0),
    "standalone_heldout_accuracy": standalone["accuracy"].mean(0),
  }

  def report() -> dict[str, Any]:
    results: dict[str, Any] = {}
    for epochs, entry in supernet_runs.items():
      signals = {
        "supernet_search_score": entry["scores"]["val"]["accuracy"],
        "supernet_val_neg_loss": -entry["scores"]["val"]["loss"],
      }
      results[f"supernet_{epochs}ep"] = correlations(signals, truth, within, num_bootstrap, seed)
    flops = np.asarray(table(population)["flops"])
    return {
      "config": str(config.get("_path", CONFIG)),
      "seed": seed,
      "num_subnets": num_subnets,
      "num_drawn_within_constraint": num_within if constraints else 0,
      "num_within_constraint": int(within.sum()),
      "constraints_range": {k: list(v) if isinstance(v, tuple) else v for k, v in (constraints or {}).items()},
      "supernet_epochs": list(supernet_epochs),
      "supernet_epochs_done": list(supernet_runs),
      "standalone_epochs": standalone_epochs,
      "standalone_seeds": num_seeds,
      "batch_size": batch_size,
      "heldout_images": len(heldout),
      "primary_pair": {
        "supernet": SUPERNET_SIGNALS[primary_signal],
        "standalone": STANDALONE_SIGNALS[primary_truth],
        "supernet_epochs": primary_epochs,
        "scope": "all_subnets",
        "name": primary_name,
      },
      "primary": results[f"supernet_{primary_epochs}ep"]["all_subnets"][primary_name],
      "supernet_final_train": {str(e): r["final_train"] for e, r in supernet_runs.items()},
      "correlations": results,
      "seed_agreement": seed_agreement(standalone, num_bootstrap, seed),
      "subnets": [
        {
          "choices": {mutator.group_key(g): int(population[g][i]) for g in population},
          "mflops": float(flops[i]),
          "within_constraint": bool(within[i]),
          "supernet": {
            str(e): {
              f"{split}_{metric}": float(r["scores"][split][metric][i])
              for split in ("val", "test")
              for metric in ("accuracy", "loss")
            }
            for e, r in supernet_runs.items()
          },
          "standalone_heldout_loss": [float(v) for v in standalone["loss"][:, i]],
          "standalone_heldout_accuracy": [float(v) for v in standalone["accuracy"][:, i]],
        }
        for i in range(num_subnets)
      ],
      "timings_s": timings,
      "load_average_1_5_15": load,
      "machine": machine_info(),
    }

  supernet_runs: dict[int, dict[str, Any]] = {}
  for epochs in supernet_epochs:
    optimizer = build_optimizer(_with_decay_steps(train_cfg["optimizer"], epochs * steps_per_epoch))
    state = TrainState(state0.params, state0.batch_stats, optimizer.init(state0.params), jnp.int32(0))
    start = time.perf_counter()
    state, log = train_supernet(model, mutator, optimizer, state, data.train, epochs, batch_size, train_key)
    timings[f"supernet_{epochs}ep_train_s"] = time.perf_counter() - start
    start = time.perf_counter()
    scores = score_with_supernet(model, mutator, state, population, calibration, {"val": data.val, "test": data.test})
    timings[f"supernet_{epochs}ep_score_s"] = time.perf_counter() - start
    supernet_runs[epochs] = {"final_train": log[-1] if log else None, "scores": scores}
    load[f"after_supernet_{epochs}ep"] = os.getloadavg()
    if on_progress is not None:
      on_progress(report())

  return report()


def _with_decay_steps(optimizer_cfg: Mapping[str, Any], steps: int) -> dict[str, Any]:
  """The config's optimiser with a decay schedule's length set to ``steps`` (the run's own length)."""
  cfg = dict(optimizer_cfg)
  schedule = cfg.get("learning_rate")
  if isinstance(schedule, Mapping) and "decay_steps" in schedule:
    cfg["learning_rate"] = {**schedule, "decay_steps": max(1, steps)}
  return cfg


def default_output_name(config_path: str | Path) -> str:
  """``ranking.json`` for the demo's config, ``ranking_<config file stem>.json`` for any other.

  Example:
    >>> default_output_name("jaxmutate/configs/spos_depth_digits.py")
    'ranking_spos_depth_digits.json'
  """
  path = Path(config_path)
  return "ranking.json" if path.resolve() == CONFIG else f"ranking_{path.stem}.json"


def _print_report(report: Mapping[str, Any]) -> None:
  primary = report["primary_pair"]
  primary_key = (f"supernet_{primary['supernet_epochs']}ep", primary["scope"], primary["name"])
  for run_name, scopes in report["correlations"].items():
    for scope, figures in scopes.items():
      for name, entry in figures.items():
        tau, rho = entry["kendall_tau"], entry["spearman_rho"]
        mark = "*" if (run_name, scope, name) == primary_key else " "
        print(
          f"{mark}{run_name:14s} {scope:17s} {name:64s} n={entry['num_subnets']:3d}  tau {tau['value']:+.3f} "
          f"[{tau['ci95'][0]:+.2f}, {tau['ci95'][1]:+.2f}]  rho {rho['value']:+.3f} [{rho['ci95'][0]:+.2f}, {rho['ci95'][1]:+.2f}]"
        )
  for name, entry in report["seed_agreement"].items():
    taus = ", ".join(f"{k} {v['kendall_tau']['value']:+.3f}" for k, v in entry["pairs"].items())
    print(f" seed agreement {name}: {taus} (mean tau {entry['mean_kendall_tau']:+.3f})")


def main(argv: Sequence[str] | None = None) -> dict[str, Any]:
  parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
  parser.add_argument("--quick", action="store_true", help="a smoke run: few subnets and epochs")
  parser.add_argument("--num-subnets", type=int, default=None, help="subnets trained stand-alone (default 20)")
  parser.add_argument(
    "--num-within", type=int, default=None, help="of them drawn under the config's FLOPs constraint (default half)"
  )
  parser.add_argument(
    "--supernet-epochs",
    type=int,
    nargs="+",
    default=None,
    help="default: the config's train_cfg.epochs; several values train one supernet each (the first is primary)",
  )
  parser.add_argument("--standalone-epochs", type=int, default=None, help="default 20")
  parser.add_argument("--seeds", type=int, default=None, help="stand-alone trainings per subnet (default 3)")
  parser.add_argument(
    "--seed",
    type=int,
    default=0,
    help="root of every random draw: supernets, subnet draw, stand-alone trainings, bootstrap (default 0)",
  )
  parser.add_argument(
    "--primary-supernet-epochs",
    type=int,
    default=None,
    help="the primary pair's supernet, one of --supernet-epochs (default: the first)",
  )
  parser.add_argument(
    "--primary-signal",
    choices=sorted(SUPERNET_SIGNALS),
    default="search_score",
    help="the primary pair's supernet signal (default search_score: val accuracy after BN recalibration)",
  )
  parser.add_argument(
    "--primary-truth",
    choices=sorted(STANDALONE_SIGNALS),
    default="heldout_loss",
    help="the primary pair's stand-alone signal, averaged over seeds (default heldout_loss)",
  )
  parser.add_argument("--config", default=str(CONFIG), help="an SPOS config (default: the demo's, spos_digits.py)")
  parser.add_argument(
    "--out",
    default=None,
    help="JSON output (default benchmarks/results/ranking.json, ranking_<config>.json for others)",
  )
  args = parser.parse_args(argv)
  command_line = list(sys.argv[1:] if argv is None else argv)
  config = jm.load_config(args.config)
  config["_path"] = args.config
  quick = dict(num_subnets=6, supernet_epochs=[2], standalone_epochs=2, seeds=2) if args.quick else {}
  num_subnets = args.num_subnets or quick.get("num_subnets", 20)
  supernet_epochs = args.supernet_epochs or quick.get("supernet_epochs", [int(config["train_cfg"]["epochs"])])
  standalone_epochs = args.standalone_epochs or quick.get("standalone_epochs", 20)
  num_seeds = args.seeds or quick.get("seeds", 3)
  out = args.out or (
    None if args.quick else str(Path(__file__).with_name("results") / default_output_name(args.config))
  )
  start = time.perf_counter()

  def write(report: dict[str, Any]) -> None:
    report["command_line"] = command_line
    report["wall_time_s"] = time.perf_counter() - start
    if out:
      Path(out).write_text(json.dumps(report, indent=2) + "\n")
      print(f"wrote {out} (supernets done: {report['supernet_epochs_done']})", flush=True)

  report = run(
    config,
    num_subnets,
    supernet_epochs,
    standalone_epochs,
    args.seed,
    num_seeds,
    args.num_within,
    200 if args.quick else 2000,
    on_progress=write,
    primary_supernet_epochs=args.primary_supernet_epochs,
    primary_signal=args.primary_signal,
    primary_truth=args.primary_truth,
  )
  report["command_line"] = command_line
  report["wall_time_s"] = time.perf_counter() - start
  _print_report(report)
  print(f"wall time {report['wall_time_s']:.0f} s: {json.dumps({k: round(v) for k, v in report['timings_s'].items()})}")
  print(f"load average {report['load_average_1_5_15']}")
  return report


if __name__ == "__main__":
  main()
