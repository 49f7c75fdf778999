"""Width-search runners: AutoSlim (sandwich training + greedy slimming) and slimmable networks.

The steps are the pure functions of :mod:`jaxmutate.algorithms`
(:func:`~jaxmutate.algorithms.make_sandwich_train_step`,
:func:`~jaxmutate.algorithms.make_slimmable_train_step`,
:func:`~jaxmutate.algorithms.make_calibrated_scorer`) and
:class:`~jaxmutate.search.AutoSlimGreedySearchLoop`; costs are the dynamic
layers' MACs (:func:`~jaxmutate.dynamic.dynamic_costs`), a jitted function of
the widths. This module adds the data, the loops, progress bars and the files:
for every subnet found, ``DIR/subnet_<MFLOPs>.yaml`` (MMRazor's subnet
layout) and ``DIR/subnet_<MFLOPs>.msgpack`` (the exported static network with
its sliced weights, :func:`~jaxmutate.export.load_subnet` reloads it), plus
``DIR/pareto.png``. FLOPs are reported as ``2 * MACs`` per image.

References:
  Yu and Huang, *AutoSlim: Towards One-Shot Architecture Search for Channel
  Numbers*, 2019. https://arxiv.org/abs/1903.11728
  Yu et al., *Slimmable Neural Networks*, ICLR 2019.
  https://arxiv.org/abs/1812.08928
"""

from __future__ import annotations

import time
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

import flax.linen as nn
import jax
import jax.numpy as jnp
import numpy as np

from jaxmutate.algorithms import (
  TrainState,
  build_optimizer,
  calibrate_batch_stats,
  init_train_state,
  make_calibrated_scorer,
  make_sandwich_train_step,
  make_slimmable_train_step,
)
from jaxmutate.data import Dataset
from jaxmutate.dynamic import dynamic_costs
from jaxmutate.errors import ConfigError, ConfigTypeError
from jaxmutate.export import export_subnet, save_subnet
from jaxmutate.mutators import ChannelMutator, ModuleMutator
from jaxmutate.registry import MODELS, build
from jaxmutate.runners._base import (
  SCORE_KEYS,
  SearchResult,
  check_run_config,
  check_score_key,
  check_search_type,
  load_data,
)
from jaxmutate.runners._loop import train_loop
from jaxmutate.runners.checkpoint import checkpoint_settings
from jaxmutate.runners.spos import retrain_subnet
from jaxmutate.runners.support import RUN_CONFIG_KEYS, RunSupport, nonfinite_policy, sharding_mesh
from jaxmutate.search import AutoSlimGreedySearchLoop
from jaxmutate.subnet import save_fix_subnet
from jaxmutate.typing import GroupChoices

__all__ = ["AutoSlim", "SlimmableNetwork", "plot_width_search"]

_TRAIN_KEYS = ("epochs", "batch_size", "optimizer", "on_nonfinite")
_SEARCH_KEYS = ("type", "target_flops", "relative", "score_key")
_SCORE_KEYS = (*SCORE_KEYS, "loss")


def _as_module(value: Any, runner: str) -> nn.Module:
  module = build(value) if isinstance(value, Mapping) else value
  if not isinstance(module, nn.Module):
    raise ConfigTypeError(
      f"{runner}: architecture must be a flax.linen.Module (or its config dict), got {type(module).__name__}."
    )
  return module


def _positive_int(value: Any, where: str, minimum: int = 1) -> int:
  if isinstance(value, bool) or not isinstance(value, (int, np.integer)) or value < minimum:
    raise ConfigError(f"{where} must be an int >= {minimum}, got {value!r}.")
  return int(value)


class _WidthRunner:
  """What AutoSlim and slimmable training share: config, training, scoring, export and the report."""

  name = "width search"

  def __init__(self, architecture: nn.Module | Mapping[str, Any], mutator: Any):
    self.architecture = _as_module(architecture, self.name)
    self.mutator = build(mutator) if isinstance(mutator, Mapping) else mutator
    if not isinstance(self.mutator, ModuleMutator):
      raise ConfigTypeError(
        f"{self.name}: mutator should be a channel mutator (e.g. OneShotChannelMutator) or NasMutator, got "
        f"{type(self.mutator).__name__}."
      )

  # Configuration -----------------------------------------------------------

  sections: dict[str, tuple[str, ...]] = {"train_cfg": _TRAIN_KEYS, "retrain_cfg": _TRAIN_KEYS}

  def check_config(self, config: Mapping[str, Any]) -> None:
    """Validates the keys ``run`` reads; an unknown or misspelt key is an error.

    Example:
      >>> import jaxmutate as jm
      >>> algorithm = jm.build(dict(type="AutoSlim", architecture=dict(type="SearchableMobileNetV2"),
      ...                           mutator=dict(type="OneShotChannelMutator")))
      >>> algorithm.check_config({"model": {}, "search_cfg": dict(target_flops=(0.5,), relative=True)})
    """
    self._read_config(config)

  def _read_config(self, config: Mapping[str, Any]) -> dict[str, Any]:
    check_run_config(config, self.name, self.sections, ("calibrate_sample_num", *RUN_CONFIG_KEYS))
    train = dict(epochs=20, batch_size=64, optimizer=dict(type="sgd", learning_rate=0.1, momentum=0.9, nesterov=True))
    train.update(config.get("train_cfg") or {})
    retrain = dict(epochs=0, batch_size=train["batch_size"], optimizer=train["optimizer"])
    retrain.update(config.get("retrain_cfg") or {})
    for where, cfg in (("train_cfg", train), ("retrain_cfg", retrain)):
      _positive_int(cfg["epochs"], f"{self.name}: {where}.epochs", minimum=0)
      _positive_int(cfg["batch_size"], f"{self.name}: {where}.batch_size")
      nonfinite_policy(cfg, where, self.name)
    checkpoint_settings(config, self.name)
    sharding_mesh(config, self.name)
    calibrate = _positive_int(config.get("calibrate_sample_num", 512), f"{self.name}: calibrate_sample_num", 0)
    return dict(train=train, retrain=retrain, calibrate=calibrate)

  # Pieces --------------------------------------------------------------------

  def _train(
    self,
    support: RunSupport,
    mutator: Any,
    step: Any,
    state: TrainState,
    data: Dataset,
    train: Mapping[str, Any],
    key: jax.Array,
    progress: bool,
    desc: str,
    describe: str,
    metrics: Sequence[str] | None = None,
  ) -> tuple[TrainState, list[dict[str, float]]]:
    """Supernet training in the shared loop: checkpoints, data parallelism and the non-finite check of ``support``."""
    return train_loop(
      step,
      support.replicate(state),
      data.train,
      train["epochs"],
      train["batch_size"],
      key,
      metrics=metrics,
      progress=progress,
      desc=desc,
      checkpointer=support.checkpointer("supernet", mutator),
      on_nonfinite=nonfinite_policy(train, "train_cfg", self.name),
      describe_step=lambda _: describe,
      place_batch=support.place_batch(train["batch_size"]),
    )

  def _calibrate(self, params: Any, batch_stats: Any, choices: Any, calibration: jax.Array) -> Any:
    # One jitted function per runner: every export of a run reuses its compile.
    if getattr(self, "_calibrate_fn", None) is None:
      model = self.architecture
      self._calibrate_fn = jax.jit(lambda p, b, c, x: calibrate_batch_stats(model, p, b, c, x))
    return self._calibrate_fn(params, batch_stats, choices, calibration)

  def _init(self, data: Dataset, train: Mapping[str, Any], key: jax.Array) -> tuple[Any, TrainState, Any, Any]:
    optimizer = build_optimizer(train["optimizer"])
    sample = jnp.asarray(data.train.images[: train["batch_size"]])
    state, variables = init_train_state(self.architecture, optimizer, key, sample)
    mutator = self.mutator.prepare_from_supernet(variables)
    return optimizer, state, variables, mutator

  def _cost_fn(self, state: TrainState, variables: Mapping[str, Any], mutator: Any, data: Dataset) -> Any:
    model = self.architecture
    image = jnp.asarray(data.train.images[:1])
    supernet = {**variables, "params": state.params, "batch_stats": state.batch_stats}

    def mflops(group_choices: GroupChoices) -> jax.Array:
      macs = dynamic_costs(model, supernet, image, mutator.set_choices(group_choices))["macs"]
      return 2.0 * macs / 1e6

    return mflops

  def _calibration(self, data: Dataset, calibrate: int, batch_size: int) -> jax.Array | None:
    """``calibrate`` training images as stacked batches ``[N, B, ...]`` (``None`` for 0: keep the running statistics)."""
    if calibrate <= 0:
      return None
    count = max(1, min(calibrate, len(data.train.images)) // batch_size)
    images = np.asarray(data.train.images[: count * batch_size])
    return jnp.asarray(images.reshape((count, batch_size) + images.shape[1:]))

  def _scorers(
    self, mutator: Any, data: Dataset, calibration: jax.Array | None, val_metric: str = "accuracy"
  ) -> tuple[Any, Any]:
    val = make_calibrated_scorer(
      self.architecture,
      mutator,
      calibration,
      jnp.asarray(data.val.images),
      jnp.asarray(data.val.labels),
      metric=val_metric,
    )
    test = make_calibrated_scorer(
      self.architecture, mutator, calibration, jnp.asarray(data.test.images), jnp.asarray(data.test.labels)
    )
    return val, test

  def _export(
    self,
    work_dir: Path,
    label: str,
    mutator: Any,
    group_choices: GroupChoices,
    state: TrainState,
    variables: Mapping[str, Any],
    data: Dataset,
    calibration: jax.Array | None,
  ) -> dict[str, Any]:
    """Writes the subnet file and the static network with its sliced weights and, with calibration images,
    the BatchNorm statistics recalibrated for this subnet (the ones it was rated with)."""
    fix_subnet = mutator.export_fix_subnet(group_choices)
    save_fix_subnet(fix_subnet, work_dir / f"subnet_{label}.yaml")
    choices = {k: np.asarray(v) for k, v in mutator.set_choices(group_choices).items()}
    batch_stats = state.batch_stats
    if calibration is not None and jax.tree.leaves(batch_stats):
      batch_stats = self._calibrate(state.params, batch_stats, choices, calibration)
    supernet = {**variables, "params": state.params, "batch_stats": batch_stats}
    static_model, static_variables = export_subnet(
      self.architecture, supernet, choices, jnp.asarray(data.train.images[:1])
    )
    save_subnet(work_dir / f"subnet_{label}.msgpack", static_model, static_variables)
    params = int(sum(np.size(leaf) for leaf in jax.tree.leaves(static_variables.get("params", {}))))
    return {"subnet_file": f"subnet_{label}.yaml", "weights_file": f"subnet_{label}.msgpack", "params": params}


def _population(configs: Sequence[GroupChoices]) -> dict[int, jax.Array]:
  groups = list(configs[0])
  return {g: jnp.asarray([int(c[g]) for c in configs], jnp.int32) for g in groups}


def _uniform_configs(mutator: Any) -> list[GroupChoices]:
  """The uniformly width-scaled networks: for each ratio ``r`` a unit can keep, every group keeps its widest
  candidate of at most ``r`` of its channels (its narrowest when none is that narrow), duplicates dropped.

  Units round their candidates differently (a 16-channel unit with divisor 8 keeps 8 or 16), so a common
  ratio, not a common candidate index, is what "uniform width" means.
  """
  groups = list(mutator.search_groups)
  kept = {g: np.asarray(mutator.group_space(g).kept_counts, np.float64) for g in groups}
  fractions = {g: kept[g] / mutator.group_space(g).num_channels for g in groups}
  ratios = sorted({float(r) for g in groups for r in fractions[g]})
  configs: list[GroupChoices] = []
  seen = set()
  for r in ratios:
    config = {}
    for g in groups:
      within = np.nonzero(fractions[g] <= r + 1e-9)[0]
      index = int(within[-1]) if within.size else 0
      config[g] = mutator.group_space(g).load(int(kept[g][index]), mutator.group_key(g))
    signature = tuple(int(v) for v in config.values())
    if signature not in seen:
      seen.add(signature)
      configs.append({g: np.int32(v) for g, v in config.items()})
  return configs


@MODELS.register_module()
class AutoSlim(_WidthRunner):
  """AutoSlim: train a slimmable supernet with the sandwich rule, then slim it greedily to FLOPs targets.

  Built from a config's ``model`` dict, e.g. ``dict(type="AutoSlim",
  architecture=dict(type="SearchableMobileNetV2", ...),
  mutator=dict(type="OneShotChannelMutator"), num_random_samples=2)``.

  Attributes:
    architecture: the supernet (a Flax module, or a config dict).
    mutator: a channel mutator (or its config dict), unprepared.
    num_random_samples: random subnets per sandwich step (MMRazor's 2).
    hard_loss_weight: weight of the students' CE loss beside their
      distillation loss (MMRazor's AutoSlim config: 1; BigNAS: 0).

  Example:
    >>> import jaxmutate as jm
    >>> algorithm = jm.build(dict(type="AutoSlim", architecture=dict(type="SearchableMobileNetV2"),
    ...                           mutator=dict(type="OneShotChannelMutator")))
    >>> type(algorithm.architecture).__name__, algorithm.num_random_samples
    ('SearchableMobileNetV2', 2)
  """

  name = "AutoSlim"
  sections = {"train_cfg": _TRAIN_KEYS, "retrain_cfg": _TRAIN_KEYS, "search_cfg": _SEARCH_KEYS}

  def _read_config(self, config: Mapping[str, Any]) -> dict[str, Any]:
    cfg = super()._read_config(config)
    self._search_loop(config)
    return cfg

  def _search_loop(self, config: Mapping[str, Any]) -> tuple[AutoSlimGreedySearchLoop, str]:
    search_cfg = dict(type="AutoSlimGreedySearchLoop", target_flops=(0.75, 0.5, 0.3), relative=True)
    search_cfg.update(config.get("search_cfg") or {})
    check_search_type(search_cfg, "AutoSlimGreedySearchLoop", self.name)
    score_key = check_score_key(search_cfg, self.name, _SCORE_KEYS)
    search_cfg.pop("type")
    search_cfg.pop("score_key", None)
    return AutoSlimGreedySearchLoop(**search_cfg), score_key

  def __init__(
    self,
    architecture: nn.Module | Mapping[str, Any],
    mutator: Any,
    num_random_samples: int = 2,
    hard_loss_weight: float = 1.0,
  ):
    super().__init__(architecture, mutator)
    self.num_random_samples = _positive_int(num_random_samples, "AutoSlim: num_random_samples", 0)
    self.hard_loss_weight = float(hard_loss_weight)

  def run(
    self, config: dict[str, Any], work_dir: Path, seed: int, progress: bool = True, resume: bool = False
  ) -> SearchResult:
    """Trains the supernet (sandwich rule), slims it to every target, exports and reports.

    Config keys (all optional but ``model``): ``data``, ``train_cfg``
    (``epochs``, ``batch_size``, ``optimizer``, ``on_nonfinite``: ``"raise"``
    or ``"skip"``, as :class:`~jaxmutate.runners.SPOS`), ``checkpoint``
    (``dict(every_n_steps=N, keep=K)``: supernet training is checkpointed and
    ``resume=True`` continues it; the greedy search reruns, deterministically),
    ``sharding`` (``dict(population=P, data=D)``: data-parallel supernet
    training over ``D`` devices), ``search_cfg``
    (``type="AutoSlimGreedySearchLoop"``, ``target_flops``, ``relative``,
    ``score_key``), ``calibrate_sample_num`` (training images for the
    BatchNorm recalibration of every rated subnet), ``retrain_cfg``
    (``epochs`` > 0 retrains each found subnet and its uniform-width
    counterpart from scratch). An unknown key is an error.
    """
    work_dir = Path(work_dir)
    cfg = self._read_config(config)
    loop, score_key = self._search_loop(config)
    support = RunSupport(config, self.name, work_dir, seed, resume)

    timings: dict[str, float] = {}
    data = load_data(config, self.name)
    train = cfg["train"]
    init_key, train_key, retrain_key = jax.random.split(jax.random.key(seed), 3)
    optimizer, state, variables, mutator = self._init(data, train, init_key)

    start = time.perf_counter()
    step = make_sandwich_train_step(
      self.architecture, mutator, optimizer, self.num_random_samples, hard_loss_weight=self.hard_loss_weight
    )
    state, train_log = self._train(
      support,
      mutator,
      step,
      state,
      data,
      train,
      train_key,
      progress,
      "train supernet (sandwich)",
      f"the sandwich of this step (the max, the min and {self.num_random_samples} random subnets of its key)",
      metrics=("loss", "max_loss", "min_loss", "accuracy", "min_accuracy"),
    )
    timings["supernet_train_s"] = time.perf_counter() - start

    cost_fn = self._cost_fn(state, variables, mutator, data)
    calibration = self._calibration(data, cfg["calibrate"], train["batch_size"])
    val_metric = "loss" if score_key == "loss" else "accuracy"
    val_scorer, test_scorer = self._scorers(mutator, data, calibration, val_metric)
    start = time.perf_counter()
    result = _greedy_search(loop, mutator, lambda population: val_scorer(state, population), cost_fn, progress)
    timings["search_s"] = time.perf_counter() - start

    # Held-out comparison: every found subnet against the uniformly width-scaled network of at most its cost.
    uniform = _uniform_configs(mutator)
    costs_of = jax.jit(jax.vmap(cost_fn))
    found = [s.group_choices for s in result.subnets]
    # One population, so the test scorer compiles once (it compiles per population size).
    everything = _population(found + uniform)
    uniform_costs = np.asarray(costs_of(everything))[len(found) :]
    scores = np.asarray(test_scorer(state, everything))
    found_test, uniform_test = scores[: len(found)], scores[len(found) :]

    start = time.perf_counter()
    reports = []
    for subnet, test_accuracy in zip(result.subnets, found_test):
      label = f"{subnet.cost:.3f}MFLOPs"
      report: dict[str, Any] = {
        "target_mflops": subnet.target,
        "mflops": subnet.cost,
        "val_score": subnet.score,
        "test_accuracy": float(test_accuracy),
        "fix_subnet": mutator.export_fix_subnet(subnet.group_choices),
      }
      report.update(self._export(work_dir, label, mutator, subnet.group_choices, state, variables, data, calibration))
      within = [i for i, c in enumerate(uniform_costs) if c <= subnet.cost + 1e-6]
      if within:
        i = max(within, key=lambda j: uniform_costs[j])
        report["uniform_width"] = {
          "index": i,
          "mflops": float(uniform_costs[i]),
          "test_accuracy": float(uniform_test[i]),
          "fix_subnet": mutator.export_fix_subnet(uniform[i]),
        }
      if cfg["retrain"]["epochs"] > 0:
        report["retrain"] = self._retrain_pair(
          mutator, subnet.group_choices, uniform, within, uniform_costs, data, cfg, retrain_key, progress
        )
      reports.append(report)
    timings["export_and_retrain_s"] = time.perf_counter() - start

    path = [{"mflops": p.cost, "val_score": p.score, "shrunk_group": p.shrunk_group} for p in result.path]
    plotted = plot_width_search(
      work_dir / "pareto.png",
      path,
      reports,
      [{"mflops": float(c), "test_accuracy": float(a)} for c, a in zip(uniform_costs, uniform_test)],
    )
    summary: dict[str, Any] = {
      "algorithm": "AutoSlim",
      "max_mflops": result.max_cost,
      "min_mflops": result.min_cost,
      "best_test_accuracy": reports[0]["test_accuracy"],
      "best_mflops": reports[0]["mflops"],
      "best_params_M": reports[0]["params"] / 1e6,
      "subnets": reports,
      "uniform_width_networks": [
        {"index": i, "mflops": float(c), "test_accuracy": float(a), "fix_subnet": mutator.export_fix_subnet(u)}
        for i, (u, c, a) in enumerate(zip(uniform, uniform_costs, uniform_test))
      ],
      "slimming_path": path,
      "num_subnets_evaluated": result.num_evaluated,
      "chance_accuracy": 1.0 / data.num_classes,
      "supernet_train": train_log,
      "plot": "pareto.png" if plotted else None,
      "timings_s": timings,
    }
    if support.summary() is not None:
      summary["checkpoints"] = support.summary()
    return SearchResult(reports[0]["fix_subnet"], summary)

  def _retrain_pair(
    self,
    mutator: Any,
    group_choices: GroupChoices,
    uniform: list[GroupChoices],
    within: list[int],
    uniform_costs: np.ndarray,
    data: Dataset,
    cfg: Mapping[str, Any],
    key: jax.Array,
    progress: bool,
  ) -> dict[str, Any]:
    """Retrains the found subnet and its uniform-width counterpart from scratch with the same budget and key."""
    found = retrain_subnet(self.architecture, mutator.set_choices(group_choices), data, cfg["retrain"], key, progress)
    report = {"found_test_accuracy": found["test_accuracy"], "epochs": found["epochs"]}
    if within:
      i = max(within, key=lambda j: uniform_costs[j])
      same = retrain_subnet(self.architecture, mutator.set_choices(uniform[i]), data, cfg["retrain"], key, progress)
      report["uniform_width_test_accuracy"] = same["test_accuracy"]
    return report


def _greedy_search(loop: AutoSlimGreedySearchLoop, mutator: Any, score_fn: Any, cost_fn: Any, progress: bool) -> Any:
  """``loop.run`` with a progress bar over the accepted steps when ``progress``."""
  if not progress:
    return loop.run(mutator, score_fn, cost_fn)
  from tqdm.auto import tqdm

  with tqdm(desc="greedy slimming", unit="step") as bar:

    def on_step(record: Mapping[str, Any]) -> None:
      bar.update(1)
      bar.set_postfix(mflops=f"{record['cost']:.3f}", score=f"{record['score']:.4f}")

    return loop.run(mutator, score_fn, cost_fn, on_step=on_step)


@MODELS.register_module()
class SlimmableNetwork(_WidthRunner):
  """Slimmable training: every predefined subnet each step; then each subnet is rated, exported and reported.

  Built from ``dict(type="SlimmableNetwork", architecture=...,
  mutator=dict(type="SlimmableChannelMutator"))``.

  Attributes:
    architecture: the supernet (slimmable units: one BatchNorm per width).
    mutator: a :class:`~jaxmutate.SlimmableChannelMutator` (or its config).
    deploy_index: the subnet ``run`` returns as the best (``-1``: the widest),
      MMRazor's ``deploy_index``.

  Example:
    >>> import jaxmutate as jm
    >>> algorithm = jm.build(dict(type="SlimmableNetwork",
    ...                           architecture=dict(type="SearchableMobileNetV2", unit_type="SlimmableChannelUnit"),
    ...                           mutator=dict(type="SlimmableChannelMutator")))
    >>> algorithm.deploy_index
    -1
  """

  name = "SlimmableNetwork"

  def check_config(self, config: Mapping[str, Any]) -> None:
    """As :meth:`AutoSlim.check_config`; a ``search_cfg`` is an error (the subnets are predefined).

    Example:
      >>> import jaxmutate as jm
      >>> algorithm = jm.build(dict(type="SlimmableNetwork",
      ...                           architecture=dict(type="SearchableMobileNetV2", unit_type="SlimmableChannelUnit"),
      ...                           mutator=dict(type="SlimmableChannelMutator")))
      >>> algorithm.check_config({"model": {}, "search_cfg": dict(target_flops=(0.5,))})
      Traceback (most recent call last):
      ...
      jaxmutate.errors.ConfigError: SlimmableNetwork: the subnets are predefined, so the config takes no search_cfg.
    """
    if config.get("search_cfg"):
      raise ConfigError("SlimmableNetwork: the subnets are predefined, so the config takes no search_cfg.")
    super().check_config(config)

  def __init__(self, architecture: nn.Module | Mapping[str, Any], mutator: Any, deploy_index: int = -1):
    super().__init__(architecture, mutator)
    if not isinstance(self.mutator, ChannelMutator):
      raise ConfigTypeError(
        f"SlimmableNetwork: mutator should be a SlimmableChannelMutator, got {type(self.mutator).__name__}."
      )
    if isinstance(deploy_index, bool) or not isinstance(deploy_index, int):
      raise ConfigTypeError(f"SlimmableNetwork: deploy_index must be an int, got {deploy_index!r}.")
    self.deploy_index = deploy_index

  def run(
    self, config: dict[str, Any], work_dir: Path, seed: int, progress: bool = True, resume: bool = False
  ) -> SearchResult:
    """Trains every predefined subnet together, then rates and exports each one.

    Config keys: ``data``, ``train_cfg``, ``calibrate_sample_num``,
    ``retrain_cfg``, ``checkpoint``, ``sharding`` (as :class:`AutoSlim`; no
    ``search_cfg``: the subnets are predefined).
    """
    work_dir = Path(work_dir)
    self.check_config(config)
    cfg = self._read_config(config)
    support = RunSupport(config, self.name, work_dir, seed, resume)
    data = load_data(config, self.name)
    train = cfg["train"]
    init_key, train_key, retrain_key = jax.random.split(jax.random.key(seed), 3)
    optimizer, state, variables, mutator = self._init(data, train, init_key)
    if not hasattr(mutator, "subnets"):
      raise ConfigTypeError(f"SlimmableNetwork: mutator {type(mutator).__name__} has no predefined subnets.")
    subnets = list(mutator.subnets)
    if not -len(subnets) <= self.deploy_index < len(subnets):
      raise ConfigError(f"SlimmableNetwork: deploy_index {self.deploy_index} is outside the {len(subnets)} subnets.")
    timings: dict[str, float] = {}
    start = time.perf_counter()
    step = make_slimmable_train_step(self.architecture, mutator, optimizer, subnets)
    state, train_log = self._train(
      support,
      mutator,
      lambda s, x, y, k: step(s, x, y),
      state,
      data,
      train,
      train_key,
      progress,
      "train slimmable",
      f"every one of the {len(subnets)} predefined subnets",
    )
    timings["train_s"] = time.perf_counter() - start
    cost_fn = self._cost_fn(state, variables, mutator, data)
    calibration = self._calibration(data, cfg["calibrate"], train["batch_size"])
    _, test_scorer = self._scorers(mutator, data, calibration)
    population = _population(subnets)
    costs = np.asarray(jax.jit(jax.vmap(cost_fn))(population))
    test = np.asarray(test_scorer(state, population))
    reports = []
    for i, group_choices in enumerate(subnets):
      label = f"{costs[i]:.3f}MFLOPs"
      report = {"index": i, "mflops": float(costs[i]), "test_accuracy": float(test[i])}
      report["fix_subnet"] = mutator.export_fix_subnet(group_choices)
      report.update(self._export(work_dir, label, mutator, group_choices, state, variables, data, calibration))
      if cfg["retrain"]["epochs"] > 0:
        retrained = retrain_subnet(
          self.architecture, mutator.set_choices(group_choices), data, cfg["retrain"], retrain_key, progress
        )
        report["retrain_test_accuracy"] = retrained["test_accuracy"]
      reports.append(report)
    deployed = reports[self.deploy_index]
    plotted = plot_width_search(work_dir / "pareto.png", [], reports, [])
    summary = {
      "algorithm": "SlimmableNetwork",
      "best_test_accuracy": deployed["test_accuracy"],
      "best_mflops": deployed["mflops"],
      "best_params_M": deployed["params"] / 1e6,
      "subnets": reports,
      "chance_accuracy": 1.0 / data.num_classes,
      "train": train_log,
      "plot": "pareto.png" if plotted else None,
      "timings_s": timings,
    }
    if support.summary() is not None:
      summary["checkpoints"] = support.summary()
    return SearchResult(deployed["fix_subnet"], summary)


def plot_width_search(
  path: str | Path,
  slimming_path: Sequence[Mapping[str, Any]],
  subnets: Sequence[Mapping[str, Any]],
  uniform: Sequence[Mapping[str, Any]],
) -> bool:
  """Plots accuracy against MFLOPs: the slimming path, the found subnets and the uniform-width networks.

  Args:
    path: the PNG to write.
    slimming_path: ``[{"mflops", "val_score"}]`` (the greedy path; may be empty).
    subnets: ``[{"mflops", "test_accuracy"}]`` (the found or predefined subnets).
    uniform: ``[{"mflops", "test_accuracy"}]`` (uniformly width-scaled networks).

  Returns:
    Whether a plot was written (``False`` without matplotlib or points).

  Example:
    >>> import pathlib, tempfile
    >>> from jaxmutate.runners import plot_width_search
    >>> with tempfile.TemporaryDirectory() as folder:
    ...   plot_width_search(pathlib.Path(folder) / "pareto.png", [], [{"mflops": 1.0, "test_accuracy": 0.9}], [])
    True
  """
  if not (slimming_path or subnets or uniform):
    return False
  try:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
  except ImportError:
    return False
  fig, ax = plt.subplots(figsize=(5.5, 4))
  if slimming_path:
    ax.plot(
      [p["mflops"] for p in slimming_path],
      [p["val_score"] for p in slimming_path],
      ".-",
      color="0.6",
      label="slimming path (val)",
    )
  if uniform:
    ax.plot([u["mflops"] for u in uniform], [u["test_accuracy"] for u in uniform], "s--", label="uniform width (test)")
  if subnets:
    ax.plot(
      [s["mflops"] for s in subnets],
      [s["test_accuracy"] for s in subnets],
      "o",
      markersize=8,
      label="found subnets (test)",
    )
  ax.set_xlabel("MFLOPs per image (2 x MACs of the dynamic layers)")
  ax.set_ylabel("accuracy")
  ax.grid(alpha=0.3)
  ax.legend(fontsize=8)
  fig.tight_layout()
  fig.savefig(path, dpi=90)
  plt.close(fig)
  return True
