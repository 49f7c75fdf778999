"""The SPOS runner: train a supernet, search it by evolution, export, optionally retrain.

The steps it runs are the pure functions of :mod:`jaxmutate.algorithms`
(:func:`~jaxmutate.algorithms.make_spos_train_step`,
:func:`~jaxmutate.algorithms.make_population_scorer`, ...); this module adds
the data, the training loops and the timings.

References:
  Guo et al., *Single Path One-Shot Neural Architecture Search with Uniform
  Sampling*, ECCV 2020. https://arxiv.org/abs/1904.00420
"""

from __future__ import annotations

import dataclasses
import functools
import time
import warnings
from collections.abc import Callable, Mapping
from pathlib import Path
from typing import Any

import flax.linen as nn
import jax
import jax.numpy as jnp
import numpy as np
import optax

from jaxmutate.algorithms import (
  TrainState,
  build_optimizer,
  evaluate_accuracy,
  init_train_state,
  make_fixed_subnet_train_step,
  make_population_scorer,
  make_spos_train_step,
  recalibrate_batch_stats,
)
from jaxmutate.data import Dataset, Split, iterate_batches
from jaxmutate.errors import ConfigError, ConfigTypeError
from jaxmutate.mutables import DiffMutableModule
from jaxmutate.mutators import ModuleMutator
from jaxmutate.registry import MODELS, build
from jaxmutate.resources import build_resource_table, estimate_resources
from jaxmutate.runners._base import (
  SearchResult,
  build_part,
  check_run_config,
  check_score_key,
  check_search_type,
  load_data,
)
from jaxmutate.runners._loop import Batches, PlaceBatch, train_loop
from jaxmutate.runners.checkpoint import Checkpointer, checkpoint_settings, resumable_loop
from jaxmutate.runners.plots import plot_pareto
from jaxmutate.runners.support import RUN_CONFIG_KEYS, RunSupport, nonfinite_policy, sharding_mesh
from jaxmutate.search import (
  EvolutionResult,
  EvolutionSearchLoop,
  EvolutionState,
  make_search_fn,
  rank_against,
  sample_constrained,
)
from jaxmutate.sharding import pad_population, replicate, shard_population
from jaxmutate.typing import GroupChoices, PRNGKey

_LOGGED = ("loss", "accuracy")
"""The per-epoch figures of the training logs in ``summary.json``, in their order there."""


@MODELS.register_module()
class SPOS:
  """The SPOS algorithm: uniform single-path supernet training + evolution search.

  Built from a config's ``model`` dict, e.g. ``dict(type="SPOS",
  architecture=dict(type="SearchableShuffleNetV2", ...),
  mutator=dict(type="OneShotModuleMutator"))``; :meth:`run` performs the whole
  job the ``jaxmutate search`` command runs.

  Attributes:
    architecture: the supernet (a Flax module, or a config dict).
    mutator: a one-shot or NAS mutator (or a config dict), unprepared.

  Raises:
    ConfigTypeError: (a ``TypeError``) the architecture is not a Flax module,
      or the mutator is not a module mutator or manages differentiable
      mutables only.

  Example:
    >>> import jaxmutate as jm
    >>> spos = jm.build(dict(type="SPOS", architecture=dict(type="SearchableMLP"),
    ...                      mutator=dict(type="OneShotModuleMutator")))
    >>> type(spos.architecture).__name__
    'SearchableMLP'
  """

  def __init__(self, architecture: nn.Module | Mapping[str, Any], mutator: ModuleMutator | Mapping[str, Any]):
    self.architecture = build_part(architecture, nn.Module, "SPOS", "architecture")
    self.mutator = build(mutator) if isinstance(mutator, Mapping) else mutator
    managed = self.mutator.mutable_class_type if isinstance(self.mutator, ModuleMutator) else None
    if managed is None or managed is DiffMutableModule:
      raise ConfigTypeError(
        f"SPOS: mutator should be a OneShotModuleMutator or NasMutator, got {type(self.mutator).__name__}."
      )

  def check_config(self, config: Mapping[str, Any]) -> None:
    """Validates the keys :meth:`run` reads (see there); an unknown or misspelt key is an error.

    Raises:
      ConfigKeyError: an unknown key (top level or in a section).
      ConfigError: ``search_cfg.type`` other than ``EvolutionSearchLoop``, or
        a ``score_key`` other than top-1 accuracy.

    Example:
      >>> import jaxmutate as jm
      >>> spos = jm.build(dict(type="SPOS", architecture=dict(type="SearchableMLP"),
      ...                      mutator=dict(type="OneShotModuleMutator")))
      >>> spos.check_config({"model": {}, "search_cfg": dict(type="EvolutionSearchLoop", top_k=5)})
      >>> spos.check_config({"model": {}, "search_cfg": dict(topk=5)})
      Traceback (most recent call last):
      ...
      jaxmutate.errors.ConfigKeyError: SPOS config 'search_cfg': unknown key 'topk' (did you mean 'top_k'?); expected keys: [...].
    """
    loop_keys = tuple(f.name for f in dataclasses.fields(EvolutionSearchLoop))
    sections = {
      "train_cfg": ("epochs", "batch_size", "optimizer", "on_nonfinite"),
      "search_cfg": ("type", "calibrate_sample_num", "score_key") + loop_keys,
      "retrain_cfg": ("epochs", "batch_size", "optimizer", "on_nonfinite"),
    }
    check_run_config(
      config, "SPOS", sections, ("num_random_baseline", "random_baseline_max_attempts", *RUN_CONFIG_KEYS)
    )
    search_cfg = config.get("search_cfg") or {}
    check_search_type(search_cfg, "EvolutionSearchLoop", "SPOS")
    check_score_key(search_cfg, "SPOS")
    for name in ("train_cfg", "retrain_cfg"):
      nonfinite_policy(config.get(name) or {}, name, "SPOS")
    checkpoint_settings(config, "SPOS")
    sharding_mesh(config, "SPOS")

  def run(
    self, config: dict[str, Any], work_dir: Path, seed: int, progress: bool = True, resume: bool = False
  ) -> SearchResult:
    """Trains the supernet, searches, exports; optionally retrains the best subnet.

    Config keys read (all optional but ``model``): ``data`` (a data set config
    for :func:`load_data`; the embedded digits by default), ``train_cfg`` (``epochs``, ``batch_size``,
    ``optimizer``), ``search_cfg`` (:class:`EvolutionSearchLoop` settings plus
    ``calibrate_sample_num``), ``retrain_cfg`` (``epochs``, ``optimizer``;
    ``epochs=0`` skips it), ``num_random_baseline`` (random subnets that meet
    ``search_cfg.constraints_range``, rated on the test split as a baseline:
    see :func:`compare_with_random`), ``random_baseline_max_attempts`` (the
    cap on their draws, default ``100 * num_random_baseline``),
    ``train_cfg.on_nonfinite`` / ``retrain_cfg.on_nonfinite`` (``"raise"``, the
    default: a NaN or infinite loss stops the run naming the step and the
    subnet; ``"skip"``: such steps are skipped and counted), ``checkpoint``
    (``dict(every_n_steps=N, keep=K)``: supernet training and retraining
    save a checkpoint every ``N`` steps and at their end into
    ``work_dir/checkpoints``; ``resume=True`` continues from them, with the
    same results as a run never interrupted; the evolution search saves its
    state, :meth:`~jaxmutate.search.EvolutionSearchLoop.run_stepwise`'s, after
    every generation into ``work_dir/checkpoints/search``, so a run killed
    during the search resumes at its last finished generation), ``sharding``
    (``dict(population=P, data=D)``: supernet training and retraining split
    each batch over ``D`` devices, scoring splits each population over ``P``;
    see :mod:`jaxmutate.sharding`). Without ``checkpoint`` and ``sharding``
    the evolution search runs on device, the whole of it one compiled
    program (:func:`~jaxmutate.search.make_search_fn` with the scorer's
    jittable ``rate``), with the same result as the generation-by-generation
    search the other cases run.

    Besides the returned summary it writes ``work_dir/pareto.png`` (with
    matplotlib): accuracy against FLOPs of every subnet the search rated,
    the random ones and the searched one.
    """
    work_dir = Path(work_dir)
    self.check_config(config)
    support = RunSupport(config, "SPOS", work_dir, seed, resume)
    timings: dict[str, float] = {}
    data = load_data(config, "SPOS")
    train_cfg = dict(
      epochs=30, batch_size=64, optimizer=dict(type="sgd", learning_rate=0.1, momentum=0.9, nesterov=True)
    )
    train_cfg.update(config.get("train_cfg", {}))
    search_cfg = dict(config.get("search_cfg") or {})
    search_cfg.pop("type", None)
    calibrate_sample_num = int(search_cfg.pop("calibrate_sample_num", 512))
    search_cfg.pop("score_key", None)  # checked: top-1 accuracy is what the scorer computes
    retrain_cfg = dict(epochs=0, batch_size=train_cfg["batch_size"], optimizer=train_cfg["optimizer"])
    retrain_cfg.update(config.get("retrain_cfg", {}))
    num_random = int(config.get("num_random_baseline", 20))

    key = jax.random.key(seed)
    init_key, train_key, search_key, baseline_key, retrain_key = jax.random.split(key, 5)
    model = self.architecture
    sample = jnp.asarray(data.train.images[: train_cfg["batch_size"]])
    optimizer = build_optimizer(train_cfg["optimizer"])
    state, variables = init_train_state(model, optimizer, init_key, sample)
    mutator = self.mutator.prepare_from_supernet(variables)
    state = support.replicate(state)

    start = time.perf_counter()
    state, train_log = train_supernet(
      model,
      mutator,
      optimizer,
      state,
      data.train,
      train_cfg["epochs"],
      train_cfg["batch_size"],
      train_key,
      progress,
      iterate_batches,
      checkpointer=support.checkpointer("supernet", mutator),
      on_nonfinite=nonfinite_policy(train_cfg, "train_cfg", "SPOS"),
      place_batch=support.place_batch(train_cfg["batch_size"]),
    )
    timings["supernet_train_s"] = time.perf_counter() - start

    start = time.perf_counter()
    per_image = jnp.asarray(data.train.images[:1])
    table = build_resource_table(model, variables, mutator, per_image)
    timings["resource_table_s"] = time.perf_counter() - start

    calibration = jnp.asarray(data.train.images[:calibrate_sample_num]) if calibrate_sample_num > 0 else None
    val_scorer = make_sharded_population_scorer(
      model, mutator, calibration, jnp.asarray(data.val.images), jnp.asarray(data.val.labels), support.mesh
    )
    test_scorer = make_sharded_population_scorer(
      model, mutator, calibration, jnp.asarray(data.test.images), jnp.asarray(data.test.labels), support.mesh
    )
    loop = EvolutionSearchLoop(**search_cfg)
    start = time.perf_counter()
    search_checkpointer = support.checkpointer("search", mutator, every_n_steps=1)
    if search_checkpointer is None and support.mesh is None:
      # Nothing to save between generations: the whole search is one compiled program (the same result).
      result, search_state = _search_on_device(loop, search_key, mutator, val_scorer, state, table, progress)
    else:
      result, search_state = _search(
        loop,
        search_key,
        mutator,
        lambda population: val_scorer(state, population),
        table,
        progress,
        search_checkpointer,
      )
    rated, rated_scores = loop.rated(search_state)
    timings["search_s"] = time.perf_counter() - start

    best = result.best_choices
    best_population = {g: v[None] for g, v in best.items()}
    best_test = float(test_scorer(state, best_population)[0])
    start = time.perf_counter()
    baseline = compare_with_random(
      baseline_key,
      mutator,
      best_test,
      lambda population: test_scorer(state, population),
      table,
      loop.constraints_range,
      num_random,
      max_attempts=config.get("random_baseline_max_attempts"),
    )
    timings["random_baseline_s"] = time.perf_counter() - start
    fix_subnet = mutator.export_fix_subnet(best)
    resources = estimate_resources(model, variables, mutator, best, per_image)
    random_population = baseline.pop("population")
    plotted = plot_pareto(
      work_dir / "pareto.png",
      flops=np.asarray(table(rated)["flops"]) if len(rated_scores) else np.zeros(0),
      val_accuracy=rated_scores,
      searched=(resources["flops"], result.best_score, best_test),
      random_flops=np.asarray(table(random_population)["flops"]) if baseline["found"] else np.zeros(0),
      random_val_accuracy=val_scorer(state, random_population) if baseline["found"] else np.zeros(0),
      random_test_accuracy=np.asarray(baseline.pop("random_test_accuracies")),
      constraints_range=loop.constraints_range,
    )

    summary: dict[str, Any] = {
      "algorithm": "SPOS",
      "best_val_accuracy": result.best_score,
      "best_test_accuracy": best_test,
      # The constrained random subnets' spread (None when none met the constraint).
      "random_subnets_test_accuracy": baseline["random_test_accuracy"],
      "search_vs_random": baseline,
      "chance_accuracy": 1.0 / data.num_classes,
      "best_flops_M_per_image": resources["flops"],
      "best_params_M": resources["params"],
      "num_subnets_evaluated": result.num_evaluated,
      # NaN/inf validation scores: counted, never ranked, never in the top-k.
      "num_nonfinite_scores": result.num_nonfinite,
      "search_history": result.history,
      "pareto_plot": "pareto.png" if plotted else None,
      "supernet_train": train_log,
      "timings_s": timings,
    }
    if retrain_cfg["epochs"] > 0:
      start = time.perf_counter()
      summary["retrain"] = retrain_subnet(
        model,
        mutator.set_choices(best),
        data,
        retrain_cfg,
        retrain_key,
        progress,
        iterate_batches,
        checkpointer=support.checkpointer("retrain", mutator),
        place_batch=support.place_batch(retrain_cfg["batch_size"], "retrain_cfg"),
        replicate=support.replicate,
      )
      timings["retrain_s"] = time.perf_counter() - start
    if support.summary() is not None:
      summary["checkpoints"] = support.summary()
    return SearchResult(fix_subnet, summary)


def compare_with_random(
  key: PRNGKey,
  mutator: ModuleMutator,
  searched_score: float,
  score_fn: Callable[[dict[int, Any]], np.ndarray],
  resource_fn: Any,
  constraints_range: Mapping[str, Any] | None,
  num: int,
  max_attempts: int | None = None,
) -> dict[str, Any]:
  """Rates random subnets that meet the search's constraint and ranks the searched subnet among them.

  The random subnets are drawn by rejection sampling
  (:func:`~jaxmutate.search.sample_constrained`, at most ``max_attempts``
  draws, default ``100 * num``) and rated with ``score_fn`` (the runner
  passes held-out test accuracy, a split the search never saw). When fewer
  than ``num`` meet the constraint the report says so in ``warning`` and a
  ``RuntimeWarning`` is issued; when none does, there is no comparison
  (``rank`` and the spread are ``None``), never one against an empty set.

  Args:
    key: PRNG key of the draws.
    mutator: the prepared mutator.
    searched_score: the searched subnet's score on the same data.
    score_fn: rates a stacked population, ``[P]`` scores.
    resource_fn: ``population -> {name: [P]}`` (the resource table).
    constraints_range: the search's constraint (``None``: every subnet).
    num: random subnets asked for.
    max_attempts: the cap on draws.

  Returns:
    A JSON-ready dict: ``requested``, ``found``, ``attempts``,
    ``max_attempts``, ``acceptance_rate``, ``constraints_range``,
    ``searched_test_accuracy``, ``random_test_accuracy`` (``count``,
    ``median``, ``q1``, ``q3``, ``min``, ``max``, ``mean``; ``None`` without
    random subnets), ``rank`` (1 = above every random subnet; among
    ``found + 1``), ``percentile`` (share of random subnets below, ties
    half), ``beats_median``, ``warning`` (``None`` when all were found), and
    two entries the runner pops: ``population`` (the random subnets) and
    ``random_test_accuracies`` (their scores).

  Example:
    >>> import warnings
    >>> import jax, jax.numpy as jnp
    >>> import jaxmutate as jm
    >>> from jaxmutate.runners.spos import compare_with_random
    >>> net = jm.models.SearchableMLP(num_classes=2, width=4, num_layers=2)
    >>> mutator = jm.OneShotModuleMutator().prepare_from_supernet(net.init(jax.random.key(0), jnp.ones((1, 3)), None))
    >>> cost = lambda population: {"ops": sum(population.values()).astype(jnp.float32)}
    >>> accuracy = lambda population: 0.5 + 0.1 * jnp.asarray(population[0], jnp.float32)
    >>> report = compare_with_random(jax.random.key(1), mutator, 0.75, accuracy, cost, {"ops": 2}, 10)
    >>> report["found"], report["rank"], report["beats_median"], report["warning"]
    (10, 1, True, None)
    >>> with warnings.catch_warnings(record=True):
    ...   report = compare_with_random(jax.random.key(1), mutator, 0.75, accuracy, cost, {"ops": -1}, 10)
    >>> report["found"], report["attempts"], report["rank"], report["warning"]
    (0, 1000, None, "no random subnet out of 1000 drawn meets constraints_range {'ops': -1}: nothing to compare with")
  """
  constraints = dict(constraints_range or {})
  sample = sample_constrained(key, mutator, num, resource_fn, constraints, max_attempts)
  report: dict[str, Any] = {
    "held_out_split": "test",
    "constraints_range": {
      name: list(bounds) if isinstance(bounds, tuple) else bounds for name, bounds in constraints.items()
    },
    "requested": sample.num_requested,
    "found": sample.num_found,
    "attempts": sample.num_attempts,
    "max_attempts": sample.max_attempts,
    "acceptance_rate": sample.acceptance_rate,
    "searched_test_accuracy": float(searched_score),
    "random_test_accuracy": None,
    "rank": None,
    "rank_out_of": sample.num_found + 1,
    "percentile": None,
    "beats_median": None,
    "warning": None,
    "population": sample.population,
    "random_test_accuracies": [],
  }
  if sample.num_found == 0:
    if num > 0:
      report["warning"] = (
        f"no random subnet out of {sample.num_attempts} drawn meets constraints_range {constraints}: nothing to compare with"
      )
  else:
    scores = np.asarray(score_fn(sample.population), np.float64)
    ranked = rank_against(searched_score, scores)
    report.update(
      random_test_accuracy={
        "count": ranked.count,
        **{name: getattr(ranked, name) for name in ("median", "q1", "q3", "min", "max", "mean")},
      },
      rank=ranked.rank,
      percentile=ranked.percentile,
      beats_median=ranked.beats_median,
      random_test_accuracies=scores.tolist(),
    )
    if not sample.complete:
      report["warning"] = (
        f"only {sample.num_found} of the {num} random subnets asked for meet constraints_range {constraints} "
        f"({sample.num_attempts} drawn): the comparison rests on {sample.num_found}"
      )
  if report["warning"]:
    warnings.warn(f"SPOS random baseline: {report['warning']}.", RuntimeWarning, stacklevel=2)
  return report


# The search's own kernels (sampling, dedup, top-k) are small: LLVM's optimisations only cost compile time.
_SEARCH_COMPILER_OPTIONS = {"xla_backend_optimization_level": 0, "xla_llvm_disable_expensive_passes": True}


def _search(
  loop: EvolutionSearchLoop,
  key: PRNGKey,
  mutator: ModuleMutator,
  score_fn: Callable[[dict[int, jax.Array]], np.ndarray],
  resource_fn: Any,
  progress: bool,
  checkpointer: Checkpointer | None = None,
) -> tuple[EvolutionResult, EvolutionState]:
  """``loop.run_stepwise`` (checkpointed every generation, resumed), with a progress bar when ``progress``."""
  driver = None if checkpointer is None else functools.partial(resumable_loop, checkpointer=checkpointer)
  if not progress:
    return loop.run_stepwise(
      key, mutator, score_fn, resource_fn, driver=driver, compiler_options=_SEARCH_COMPILER_OPTIONS
    )
  from tqdm.auto import tqdm

  with tqdm(total=loop.max_epochs, desc="evolution search", unit="gen") as bar:

    def on_generation(record: Mapping[str, Any]) -> None:
      bar.n = record["epoch"] + 1  # a resumed search starts past the generations it restored
      bar.set_postfix(best=f"{record['best_score']:.4f}", pool=record["pool_size"])

    return loop.run_stepwise(
      key,
      mutator,
      score_fn,
      resource_fn,
      on_generation=on_generation,
      driver=driver,
      compiler_options=_SEARCH_COMPILER_OPTIONS,
    )


def _search_on_device(
  loop: EvolutionSearchLoop,
  key: PRNGKey,
  mutator: ModuleMutator,
  scorer: Any,
  state: TrainState,
  resource_fn: Any,
  progress: bool,
) -> tuple[EvolutionResult, EvolutionState]:
  """The search as one jitted ``lax.scan`` (:func:`~jaxmutate.search.make_search_fn`): ``loop.run``'s result.

  ``scorer`` is a :func:`~jaxmutate.algorithms.make_population_scorer` scorer: its ``rate`` is the same
  per-subnet program as its host calls, so the scores (and the search) equal :func:`_search`'s. Only new
  subnets are rated, one at a time (``chunk_size=1``): rated one after the other anyway, no slot is padding.
  """
  search = make_search_fn(loop.as_strategy(mutator, resource_fn), scorer.rate, loop.max_epochs, chunk_size=1)
  if not progress:
    return _device_result(loop, search(key, *scorer.score_args(state)))
  from tqdm.auto import tqdm

  with tqdm(total=loop.max_epochs, desc="evolution search (one compiled program)", unit="gen") as bar:
    result, search_state = _device_result(loop, search(key, *scorer.score_args(state)))
    bar.n = loop.max_epochs
    bar.set_postfix(best=f"{result.best_score:.4f}", pool=result.history[-1]["pool_size"])
  return result, search_state


def _device_result(loop: EvolutionSearchLoop, out: tuple[Any, Any]) -> tuple[EvolutionResult, EvolutionState]:
  state, history = jax.device_get(out)
  return loop.result_of(state, history), state


def train_supernet(
  model: nn.Module,
  mutator: ModuleMutator,
  optimizer: optax.GradientTransformation,
  state: TrainState,
  split: Split,
  epochs: int,
  batch_size: int,
  key: PRNGKey,
  progress: bool = False,
  batches: Batches = iterate_batches,
  *,
  checkpointer: Checkpointer | None = None,
  on_nonfinite: str = "raise",
  place_batch: PlaceBatch | None = None,
) -> tuple[TrainState, list[dict[str, float]]]:
  """Runs SPOS supernet training for ``epochs``; returns the state and a log.

  Every step trains one uniformly sampled subnet
  (:func:`~jaxmutate.algorithms.make_spos_train_step`) in the shared
  :func:`~jaxmutate.runners.train_loop` (``keys="split"``), which also
  checkpoints and resumes (``checkpointer``), splits batches over devices
  (``place_batch``) and checks the loss (``on_nonfinite``; a
  :class:`~jaxmutate.errors.NonFiniteLossError` names the step and the
  subnet it trained, in ``{mutable name: choice}`` form).

  Returns:
    ``(state, log)``: ``log[e]`` is ``{"epoch", "loss", "accuracy"}``, the
    means over epoch ``e``'s steps.

  Example:
    >>> import jax, jax.numpy as jnp, numpy as np, optax
    >>> import jaxmutate as jm
    >>> from jaxmutate.algorithms import init_train_state
    >>> from jaxmutate.data import Split
    >>> from jaxmutate.runners import train_supernet
    >>> net = jm.SearchableMLP(num_classes=2, width=4, num_layers=1)
    >>> state, variables = init_train_state(net, optax.sgd(0.1), jax.random.key(0), jnp.ones((4, 3)))
    >>> split = Split(np.ones((8, 3), np.float32), np.arange(8, dtype=np.int32) % 2)
    >>> mutator = jm.OneShotModuleMutator().prepare_from_supernet(variables)
    >>> state, log = train_supernet(net, mutator, optax.sgd(0.1), state, split, epochs=2, batch_size=4,
    ...                             key=jax.random.key(1))
    >>> int(state.step), [sorted(entry) for entry in log]
    (4, [['accuracy', 'epoch', 'loss'], ['accuracy', 'epoch', 'loss']])
  """
  step = make_spos_train_step(model, mutator, optimizer)

  def subnet(step_key: PRNGKey) -> dict[str, Any]:
    exported = mutator.export_fix_subnet(jax.device_get(mutator.sample_choices(step_key)))
    return {name: entry["chosen"] for name, entry in exported.items()}

  return train_loop(
    step,
    state,
    split,
    epochs,
    batch_size,
    key,
    batches=batches,
    metrics=_LOGGED,
    progress=progress,
    desc="train supernet",
    checkpointer=checkpointer,
    on_nonfinite=on_nonfinite,
    describe_step=subnet,
    place_batch=place_batch,
  )


def retrain_subnet(
  model: nn.Module,
  choices: Mapping[str, Any],
  data: Dataset,
  retrain_cfg: Mapping[str, Any],
  key: PRNGKey,
  progress: bool = False,
  batches: Batches = iterate_batches,
  *,
  checkpointer: Checkpointer | None = None,
  place_batch: PlaceBatch | None = None,
  replicate: Callable[[Any], Any] | None = None,
) -> dict[str, Any]:
  """Trains a fixed subnet from scratch and reports its test accuracy.

  The subnet's compiled step holds only its chosen candidates
  (:func:`~jaxmutate.algorithms.make_fixed_subnet_train_step`); it runs in
  the shared :func:`~jaxmutate.runners.train_loop` (``keys="split"``).

  Args:
    model: the supernet.
    choices: the subnet (``mutator.set_choices(group_choices)``), concrete.
    data: the data set (trains on ``train``, reports on ``test``).
    retrain_cfg: ``epochs``, ``batch_size``, ``optimizer`` (an optax config),
      optionally ``on_nonfinite`` (``"raise"`` or ``"skip"``).
    key: PRNG key, split into the init and the training keys.
    progress: show a progress bar.
    batches: the batch iterator.
    checkpointer: checkpoints and resumes the training loop.
    place_batch: puts each batch on the devices (data parallelism).
    replicate: puts the initial state on the devices (with ``place_batch``).

  Returns:
    ``{"epochs", "test_accuracy", "log"}`` (``log`` as :func:`train_supernet`'s).

  Example:
    >>> import jax, numpy as np
    >>> import jaxmutate as jm
    >>> from jaxmutate.data import Dataset, Split
    >>> from jaxmutate.runners import retrain_subnet
    >>> split = Split(np.ones((8, 3), np.float32), np.arange(8, dtype=np.int32) % 2)
    >>> data = Dataset(split, split, split, num_classes=2)
    >>> net = jm.SearchableMLP(num_classes=2, width=4, num_layers=1)
    >>> cfg = dict(epochs=1, batch_size=4, optimizer=dict(type="sgd", learning_rate=0.1))
    >>> report = retrain_subnet(net, {"layers.0": 0}, data, cfg, jax.random.key(0))
    >>> sorted(report), report["epochs"], len(report["log"])
    (['epochs', 'log', 'test_accuracy'], 1, 1)
  """
  init_key, train_key = jax.random.split(key)
  optimizer = build_optimizer(retrain_cfg["optimizer"])
  sample = jnp.asarray(data.train.images[: retrain_cfg["batch_size"]])
  state, _ = init_train_state(model, optimizer, init_key, sample)
  if replicate is not None:
    state = replicate(state)
  step = make_fixed_subnet_train_step(model, choices, optimizer)
  state, log = train_loop(
    lambda s, x, y, k: step(s, x, y),
    state,
    data.train,
    retrain_cfg["epochs"],
    retrain_cfg["batch_size"],
    train_key,
    batches=batches,
    metrics=_LOGGED,
    progress=progress,
    desc="train subnet",
    checkpointer=checkpointer,
    on_nonfinite=retrain_cfg.get("on_nonfinite", "raise"),
    describe_step=lambda _: {k: np.asarray(v).tolist() for k, v in choices.items()},
    place_batch=place_batch,
  )
  static_choices = {k: np.asarray(v) for k, v in choices.items()}
  test_accuracy = float(
    evaluate_accuracy(
      model,
      state.params,
      state.batch_stats,
      static_choices,
      jnp.asarray(data.test.images),
      jnp.asarray(data.test.labels),
    )
  )
  return {"epochs": retrain_cfg["epochs"], "test_accuracy": test_accuracy, "log": log}


def make_sharded_population_scorer(
  model: nn.Module,
  mutator: ModuleMutator,
  calibration_images: jax.Array | None,
  images: jax.Array,
  labels: jax.Array,
  mesh: Any = None,
  chunk_size: int = 25,
) -> Callable[[TrainState, dict[int, jax.Array]], np.ndarray]:
  """:func:`~jaxmutate.algorithms.make_population_scorer` with each chunk split over a mesh's ``population`` axis.

  Without a mesh it is ``make_population_scorer`` itself. With one, the
  chunk size is rounded up to a multiple of the ``population`` axis, each
  chunk (the last padded with copies of the last subnet) is placed with
  :func:`~jaxmutate.sharding.shard_population` and the state and data are
  replicated, so every device rates its own slice of the population in the
  same compiled ``vmap``: each subnet gets the same score as on one device
  (up to float reassociation).

  Returns:
    ``score(state, population) -> accuracies [P]`` (a NumPy array).

  Raises:
    ConfigError: ``chunk_size`` < 1.

  Example:
    >>> import jax, jax.numpy as jnp, optax
    >>> import jaxmutate as jm
    >>> from jaxmutate.algorithms import init_train_state
    >>> from jaxmutate.runners.spos import make_sharded_population_scorer
    >>> from jaxmutate.sharding import make_mesh
    >>> net = jm.SearchableMLP(num_classes=2, width=4, num_layers=1)
    >>> x, y = jnp.ones((4, 3)), jnp.array([0, 1, 0, 1])
    >>> state, variables = init_train_state(net, optax.sgd(0.1), jax.random.key(0), x)
    >>> mutator = jm.OneShotModuleMutator().prepare_from_supernet(variables)
    >>> score = make_sharded_population_scorer(net, mutator, None, x, y, make_mesh(population=1), chunk_size=2)
    >>> score(state, {0: jnp.array([0, 1, 3], jnp.int32)}).shape
    (3,)
  """
  if mesh is None:
    return make_population_scorer(model, mutator, calibration_images, images, labels, chunk_size)
  if not isinstance(chunk_size, int) or chunk_size < 1:
    raise ConfigError(f"make_sharded_population_scorer: chunk_size must be an int >= 1, got {chunk_size!r}.")
  ways = mesh.shape["population"]
  chunk = -(-chunk_size // ways) * ways
  calibration = None if calibration_images is None else replicate(mesh, calibration_images)
  images, labels = replicate(mesh, (images, labels))

  def score_one(state: TrainState, group_choices: GroupChoices, images, labels, calibration) -> jax.Array:
    choices = mutator.set_choices(group_choices)
    batch_stats = state.batch_stats
    if calibration is not None:
      batch_stats = recalibrate_batch_stats(model, state.params, batch_stats, choices, calibration)
    return evaluate_accuracy(model, state.params, batch_stats, choices, images, labels)

  score_chunk = jax.jit(jax.vmap(score_one, in_axes=(None, 0, None, None, None)))

  def score(state: TrainState, population: dict[int, jax.Array]) -> np.ndarray:
    state = replicate(mesh, state)
    size = int(next(iter(population.values())).shape[0])
    scores = []
    for start in range(0, size, chunk):
      part = {g: np.asarray(v)[start : start + chunk] for g, v in population.items()}
      padded, count = pad_population(part, chunk)
      rated = score_chunk(state, shard_population(mesh, padded), images, labels, calibration)
      scores.append(np.asarray(rated)[:count])
    return np.concatenate(scores)

  return score


__all__ = ["SPOS", "compare_with_random", "make_sharded_population_scorer", "retrain_subnet", "train_supernet"]
