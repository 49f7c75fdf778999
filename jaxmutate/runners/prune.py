"""The pruning runner: train an unmodified network, prune it to a FLOPs target, fine-tune, export.

The steps are the pure functions of :mod:`jaxmutate.pruning` (importance,
ranking, :class:`~jaxmutate.pruning.ItePruneSchedule`, GroupFisher, masks,
costs); this module adds the data, the loops, progress bars and the files:
``DIR/pruned.msgpack`` (the smaller network and its sliced weights;
:func:`~jaxmutate.export.load_subnet` reloads it), ``DIR/pruning.png``
(accuracy against FLOPs during pruning) and the summary. FLOPs are ``2 * MACs``
per image.

During pruning the network is trained and evaluated with masks through
:func:`~jaxmutate.pruning.masked_apply` (the analysis's masked program, equal
to the sliced one that is exported, also where channels feed a LayerNorm), so one compiled step serves every pruning
state; costs are the analysis's counter (:func:`~jaxmutate.pruning.cost_model`);
the export slices the weights and builds the network at its new widths.

References:
  MMRazor's ``ItePruneAlgorithm`` and ``GroupFisherAlgorithm``.
  Liu et al., *Group Fisher Pruning for Practical Network Compression*, ICML 2021.
  https://arxiv.org/abs/2108.00708
"""

from __future__ import annotations

import math
import time
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

import flax.linen as nn
import jax
import jax.numpy as jnp
import numpy as np
import optax

from jaxmutate.algorithms import TrainState, accuracy, build_optimizer, classification_loss
from jaxmutate.analysis import ChannelAnalysis, ChannelGroup, analyze_channels, load_pruned
from jaxmutate.data import iterate_batches
from jaxmutate.errors import ConfigError, ConfigKeyError, ConfigTypeError
from jaxmutate.export import load_subnet, save_subnet
from jaxmutate.models import PlainCNN
from jaxmutate.pruning import (
  GroupFisherState,
  ItePruneSchedule,
  check_criterion,
  cost_model,
  full_masks,
  global_pruning,
  group_fisher_accumulate,
  group_fisher_init,
  group_fisher_prune,
  group_lasso,
  kept_counts,
  kept_indices,
  local_pruning,
  make_importance_fn,
  masked_apply,
)
from jaxmutate.registry import MODELS, check_config_keys, split_scope
from jaxmutate.runners._base import SearchResult, build_part, check_run_config, load_data
from jaxmutate.runners._loop import _BatchReader, train_loop
from jaxmutate.runners.checkpoint import checkpoint_settings, resumable_loop
from jaxmutate.runners.support import RunSupport

__all__ = ["Prune", "plot_pruning"]

_PHASE_KEYS = ("epochs", "batch_size", "optimizer")
_SCHEDULE_KEYS = {
  "ItePrune": ("type", "step_freq", "prune_times", "linear_schedule", "target_pruning_ratio"),
  "GroupFisher": ("type", "interval"),
}


def _positive_int(value: Any, where: str, minimum: int = 1) -> int:
  if isinstance(value, bool) or not isinstance(value, (int, np.integer)) or value < minimum:
    raise ConfigError(f"{where} must be an int >= {minimum}, got {value!r}.")
  return int(value)


@MODELS.register_module()
class Prune:
  """Structured pruning of an unmodified network to a FLOPs target, then fine-tuning and export.

  Built from ``dict(type="Prune", architecture=dict(type="PlainCNN", ...), ...)``.
  :meth:`run` trains the network (``train_cfg``), prunes it while training
  (``prune_cfg``) with the chosen criterion and schedule until its FLOPs are
  ``target_flops`` of the original, fine-tunes it (``finetune_cfg``) and
  exports the smaller network.

  Attributes:
    architecture: the network (a :class:`PlainCNN` or its config).
    criterion: importance, one of :data:`jaxmutate.pruning.CRITERIA`
      (``"l1"``, ``"l2"``, ``"l1_bn"``, ``"l2_bn"``, ``"taylor"``, ``"fisher"``);
      data-dependent ones are summed over the batches since the last pruning.
    schedule: ``dict(type="ItePrune", prune_times=5, step_freq=None,
      linear_schedule=True, target_pruning_ratio=None)`` (MMRazor's schedule over
      the FLOPs fraction, or over per-unit kept ratios when
      ``target_pruning_ratio`` is given; ``step_freq`` defaults to the pruning
      phase's steps divided by ``prune_times``) or ``dict(type="GroupFisher",
      interval=2)`` (one channel every ``interval`` steps, the least important per
      FLOP saved, until the target).
    target_flops: the FLOPs to reach, a fraction of the unpruned network's, in (0, 1].
    ranking: ``"global"`` (across units, normalised) or ``"local"`` (one pruning
      ratio for every unit, the largest that reaches the FLOPs step).
    normalize: global ranking's normalisation (:data:`jaxmutate.pruning.NORMALIZATIONS`).
    round_to: kept counts are multiples of it.
    group_lasso: strength of a group-lasso penalty on the units during pruning (0: none).
    ignored: module or leaf paths whose channels stay (``"conv0"``, ``"fc.kernel"``), as
      :func:`~jaxmutate.analysis.analyze_channels` takes them.

  Raises:
    ConfigError: a bad value (named). ConfigKeyError: an unknown criterion,
      schedule type or schedule key.

  Example:
    >>> import jaxmutate as jm
    >>> from jaxmutate.runners.prune import Prune
    >>> algorithm = jm.build(dict(type="Prune", architecture=dict(type="PlainCNN"), criterion="taylor"))
    >>> algorithm.criterion, algorithm.schedule["type"]
    ('taylor', 'ItePrune')
  """

  name = "Prune"
  RAW_CONFIG_ARGS = ("schedule",)  # a dict(type="ItePrune"/"GroupFisher") read here, not a registered type

  def __init__(
    self,
    architecture: nn.Module | Mapping[str, Any],
    criterion: str = "taylor",
    schedule: Mapping[str, Any] | None = None,
    target_flops: float = 0.5,
    ranking: str = "global",
    normalize: str = "mean",
    round_to: int = 1,
    group_lasso: float = 0.0,
    ignored: Sequence[str] = (),
  ):
    self.architecture = build_part(architecture, nn.Module, "Prune", "architecture")
    self.criterion = check_criterion(criterion)
    schedule = dict(schedule or {"type": "ItePrune"})
    kind = split_scope(str(schedule.get("type", "ItePrune")))[1]
    if kind not in _SCHEDULE_KEYS:
      raise ConfigKeyError(
        f"Prune: unknown schedule type {schedule.get('type')!r}; expected one of {list(_SCHEDULE_KEYS)}."
      )
    check_config_keys(schedule, _SCHEDULE_KEYS[kind], "Prune schedule")
    schedule["type"] = kind
    if kind == "ItePrune":
      schedule.setdefault("prune_times", 5)
      _positive_int(schedule["prune_times"], "Prune: schedule.prune_times")
      if schedule.get("step_freq") is not None:
        _positive_int(schedule["step_freq"], "Prune: schedule.step_freq")
    else:
      schedule.setdefault("interval", 2)
      _positive_int(schedule["interval"], "Prune: schedule.interval")
    self.schedule = schedule
    if isinstance(target_flops, bool) or not isinstance(target_flops, (int, float)) or not 0 < target_flops <= 1:
      raise ConfigError(
        f"Prune: target_flops is the fraction of the unpruned FLOPs to keep, in (0, 1]; got {target_flops!r} "
        "(a pruning ratio must lie in [0, 1))."
      )
    self.target_flops = float(target_flops)
    if ranking not in ("global", "local"):
      raise ConfigError(f"Prune: ranking must be 'global' or 'local', got {ranking!r}.")
    self.ranking, self.normalize = ranking, normalize
    self.round_to = _positive_int(round_to, "Prune: round_to")
    if isinstance(group_lasso, bool) or not isinstance(group_lasso, (int, float)) or group_lasso < 0:
      raise ConfigError(f"Prune: group_lasso must be a number >= 0, got {group_lasso!r}.")
    self.group_lasso = float(group_lasso)
    if isinstance(ignored, str) or not all(isinstance(name, str) for name in ignored):
      raise ConfigTypeError(f"Prune: ignored must be a list of module or leaf paths, got {ignored!r}.")
    self.ignored = tuple(ignored)

  sections = {"train_cfg": _PHASE_KEYS, "prune_cfg": _PHASE_KEYS, "finetune_cfg": _PHASE_KEYS}

  def check_config(self, config: Mapping[str, Any]) -> None:
    """Validates the keys and values ``run`` reads; an unknown or misspelt key is an error.

    Example:
      >>> import jaxmutate as jm
      >>> from jaxmutate.runners.prune import Prune
      >>> algorithm = jm.build(dict(type="Prune", architecture=dict(type="PlainCNN")))
      >>> algorithm.check_config({"model": {}, "prune_cfg": dict(epoch=3)})
      Traceback (most recent call last):
      ...
      jaxmutate.errors.ConfigKeyError: Prune config 'prune_cfg': unknown key 'epoch' (did you mean 'epochs'?); expected keys: ['batch_size', 'epochs', 'optimizer'].
    """
    self._read_config(config)

  def _read_config(self, config: Mapping[str, Any]) -> dict[str, dict[str, Any]]:
    check_run_config(config, self.name, self.sections, ("checkpoint",))
    checkpoint_settings(config, self.name)
    default_opt = dict(type="sgd", learning_rate=0.05, momentum=0.9, nesterov=True)
    phases = {}
    for key, epochs in (("train_cfg", 15), ("prune_cfg", 4), ("finetune_cfg", 4)):
      phase = dict(epochs=epochs, batch_size=64, optimizer=default_opt)
      phase.update(config.get(key) or {})
      _positive_int(phase["epochs"], f"{self.name}: {key}.epochs", minimum=0 if key != "prune_cfg" else 1)
      _positive_int(phase["batch_size"], f"{self.name}: {key}.batch_size")
      phases[key] = phase
    return phases

  # Pieces ------------------------------------------------------------------

  def _functions(self, analysis: ChannelAnalysis) -> dict[str, Any]:
    model = self.architecture
    groups = analysis.groups
    # The masked program of the analysis, re-analysed for each batch shape and for training mode.
    masked = masked_apply(model, analysis, self.ignored)

    def eval_loss(variables: Any, images: jax.Array, labels: jax.Array) -> jax.Array:
      return classification_loss(model.apply(variables, images), labels)

    def masked_loss(variables: Any, masks: Any, images: jax.Array, labels: jax.Array) -> jax.Array:
      return classification_loss(masked(variables, masks, images), labels)

    def make_step(optimizer: optax.GradientTransformation) -> Any:
      def loss(params: Any, batch_stats: Any, masks: Any, images: jax.Array, labels: jax.Array) -> Any:
        variables = {"params": params, "batch_stats": batch_stats}
        logits, new = masked(variables, masks, images, train=True, mutable=["batch_stats"])
        return classification_loss(logits, labels), (new.get("batch_stats", {}), accuracy(logits, labels))

      @jax.jit
      def step(state: TrainState, masks: Any, images: jax.Array, labels: jax.Array) -> Any:
        (value, (batch_stats, acc)), grads = jax.value_and_grad(loss, has_aux=True)(
          state.params, state.batch_stats, masks, images, labels
        )
        updates, opt_state = optimizer.update(grads, state.opt_state, state.params)
        new = TrainState(optax.apply_updates(state.params, updates), batch_stats, opt_state, state.step + 1)
        return new, {"loss": value, "accuracy": acc}

      return step

    @jax.jit
    def evaluate(variables: Any, masks: Any, images: jax.Array, labels: jax.Array) -> jax.Array:
      return accuracy(masked(variables, masks, images), labels)

    # Fisher masks the consumers itself (GroupFisher's activation mask) on the unmasked loss; Taylor differentiates
    # the loss of the pruned network.
    importance = jax.jit(make_importance_fn(self.criterion, groups, eval_loss, masked_loss))
    return {
      "make_step": make_step,
      "evaluate": evaluate,
      "importance": importance,
      "logits": jax.jit(lambda v, m, x: masked(v, m, x)),
    }

  def _prune_to(
    self, groups: Sequence[ChannelGroup], importance: Any, target: float, costs: Any, masks: Any, ratios: Any = None
  ) -> dict[str, np.ndarray]:
    """Masks that meet ``target`` MACs (or per-unit kept ``ratios``), pruning only channels kept now."""
    if ratios is not None:
      prune_ratio = {name: 1.0 - float(r) for name, r in ratios.items()}
      return local_pruning(groups, importance, prune_ratio, self.round_to, masks)
    if self.ranking == "global":
      return global_pruning(groups, importance, target, costs.macs, self.round_to, self.normalize, masks)
    # Local: the smallest uniform ratio whose masks meet the target (bisection; MACs fall as the ratio grows).
    low, high = 0.0, 1.0 - 1e-6
    best = local_pruning(groups, importance, high, self.round_to, masks)
    for _ in range(30):
      mid = (low + high) / 2
      trial = local_pruning(groups, importance, mid, self.round_to, masks)
      if costs.macs(kept_counts(trial)) <= target:
        best, high = trial, mid
      else:
        low = mid
    return best

  # Run ---------------------------------------------------------------------

  def run(
    self, config: dict[str, Any], work_dir: Path, seed: int, progress: bool = True, resume: bool = False
  ) -> SearchResult:
    """Trains, prunes to ``target_flops``, fine-tunes, exports and reports.

    Config keys (all optional but ``model``): ``data``, ``train_cfg``,
    ``prune_cfg`` and ``finetune_cfg`` (each ``epochs``, ``batch_size``,
    ``optimizer``), ``checkpoint`` (``dict(every_n_steps=N, keep=K)``: the
    training, the pruning (weights, optimiser state, masks, the importance
    accumulated since the last pruning, the step and the pruning path so far)
    and the fine-tuning save a checkpoint every ``N`` steps and at their end
    into ``work_dir/checkpoints/{train,prune,finetune}``; ``resume=True``
    continues from them with the same results as a run never interrupted,
    see :class:`~jaxmutate.runners.support.RunSupport` for the errors). An
    unknown key is an error.
    """
    work_dir = Path(work_dir)
    phases = self._read_config(config)
    support = RunSupport(config, self.name, work_dir, seed, resume)
    data = load_data(config, self.name)
    model = self.architecture
    init_key, train_key, prune_key, finetune_key = jax.random.split(jax.random.key(seed), 4)
    sample = jnp.asarray(data.train.images[:1])
    # XLA spends most of an init's compile optimising the initialisers; it runs once, so skip that.
    init = jax.jit(model.init).lower(init_key, sample)
    variables = init.compile(compiler_options={"xla_backend_optimization_level": 0})(init_key, sample)
    outputs = jax.eval_shape(model.apply, variables, sample).shape[-1]
    if outputs != data.num_classes:
      raise ConfigError(f"Prune: the architecture has {outputs} outputs, the data {data.num_classes} classes.")
    start = time.perf_counter()
    analysis = analyze_channels(model, variables, sample, ignored=self.ignored)
    groups = analysis.groups
    if not groups:
      raise ConfigError(f"Prune: the analysis found no prunable channel unit in {type(model).__name__}.")
    for group in groups:
      if self.round_to > group.num_channels:
        raise ConfigError(
          f"Prune: round_to={self.round_to} is larger than unit {group.name!r} ({group.num_channels} channels)."
        )
    analysis_s = time.perf_counter() - start
    # The analysis's sample is one image: its costs are per image.
    costs = cost_model(analysis)
    full_macs, full_params = float(costs.macs({})), float(costs.params({}))
    target = self.target_flops * full_macs
    fns = self._functions(analysis)
    val = (jnp.asarray(data.val.images), jnp.asarray(data.val.labels))
    test = (jnp.asarray(data.test.images), jnp.asarray(data.test.labels))
    timings: dict[str, float] = {"analysis_s": analysis_s}
    masks = {k: np.asarray(v) for k, v in full_masks(groups).items()}

    def new_state(variables: Mapping[str, Any], phase: Mapping[str, Any], extra: Any = None) -> tuple[TrainState, Any]:
      optimizer = build_optimizer(phase["optimizer"])
      if extra is not None:
        optimizer = optax.chain(extra, optimizer)
      params = variables["params"]
      state = TrainState(params, variables.get("batch_stats", {}), optimizer.init(params), jnp.int32(0))
      return state, fns["make_step"](optimizer)

    # 1. Train the unpruned network.
    start = time.perf_counter()
    state, step = new_state(variables, phases["train_cfg"])
    state, train_log = train_loop(
      lambda s, x, y, k: step(s, masks, x, y),
      state,
      data.train,
      phases["train_cfg"]["epochs"],
      phases["train_cfg"]["batch_size"],
      train_key,
      progress=progress,
      desc="train",
      checkpointer=support.checkpointer("train"),
    )
    timings["train_s"] = time.perf_counter() - start
    unpruned_val = float(fns["evaluate"](state.variables, masks, *val))
    unpruned_test = float(fns["evaluate"](state.variables, masks, *test))

    # 2. Prune while training.
    start = time.perf_counter()
    phase = phases["prune_cfg"]
    extra = group_lasso(groups, self.group_lasso) if self.group_lasso > 0 else None
    state, step = new_state(state.variables, phase, extra)
    steps_per_epoch = len(data.train.images) // phase["batch_size"]
    total_steps = phase["epochs"] * steps_per_epoch
    schedule = None
    if self.schedule["type"] == "ItePrune":
      ratios = self.schedule.get("target_pruning_ratio")
      step_freq = self.schedule.get("step_freq") or max(1, total_steps // self.schedule["prune_times"])
      target_map = dict(ratios) if ratios else {"flops": self.target_flops}
      if ratios:
        schedule = ItePruneSchedule.for_groups(
          groups,
          target_map,
          step_freq=step_freq,
          prune_times=self.schedule["prune_times"],
          linear_schedule=self.schedule.get("linear_schedule", True),
        )
      else:
        schedule = ItePruneSchedule(
          target_map,
          {"flops": 1.0},
          step_freq=step_freq,
          prune_times=self.schedule["prune_times"],
          linear_schedule=self.schedule.get("linear_schedule", True),
        )
    data_dependent = self.criterion in ("taylor", "fisher")

    def ordered(masks: Mapping[str, Any], fisher_state: GroupFisherState) -> tuple[dict[str, Any], GroupFisherState]:
      # In the units' order: a restored dict is sorted by name, and the pruning path logs kept counts in order.
      masks = {g.name: np.asarray(masks[g.name], np.float32) for g in groups}
      return masks, GroupFisherState({g.name: fisher_state.fisher[g.name] for g in groups}, fisher_state.steps)

    masks, fisher_state = ordered(masks, group_fisher_init(groups))
    path = [self._record(0, masks, costs, fns, state, val)]
    # The whole pruning phase as one pytree, so resumable_loop checkpoints and resumes it: the train state, the
    # masks, the importance accumulated since the last pruning, and the pruning path so far (after which steps
    # a pruning happened, the masked network's validation accuracy and the kept counts then).
    carry: dict[str, Any] = {
      "train": state,
      "masks": masks,
      "fisher": fisher_state,
      "pruned": np.zeros(total_steps + 1, bool),
      "val_accuracy": np.zeros(total_steps + 1, np.float32),
      "kept": np.zeros((total_steps + 1, len(groups)), np.int64),
    }
    prune_batch = phase["batch_size"]
    batches = _BatchReader(lambda e: iterate_batches(jax.random.fold_in(prune_key, e), data.train, prune_batch))
    bar = None
    if progress:
      from tqdm.auto import tqdm

      bar = tqdm(total=total_steps, desc=f"prune ({self.schedule['type']}, {self.criterion})", unit="step")

    def prune_step(global_step: int, carry: dict[str, Any]) -> dict[str, Any]:
      state = carry["train"]
      masks, fisher_state = ordered(carry["masks"], carry["fisher"])
      images, labels = batches(*divmod(global_step, steps_per_epoch))
      x, y = jnp.asarray(images), jnp.asarray(labels)
      if data_dependent:
        fisher_state = group_fisher_accumulate(fisher_state, fns["importance"](state.variables, x, y, masks=masks))
      pruned_now = False
      if schedule is not None and schedule.is_prune_time(global_step):
        importance = fisher_state.fisher if data_dependent else fns["importance"](state.variables, masks=masks)
        choice = schedule.prune_at(global_step)
        if "flops" in choice:
          masks = self._prune_to(groups, importance, float(choice["flops"]) * full_macs, costs, masks)
        else:
          masks = self._prune_to(groups, importance, target, costs, masks, ratios=choice)
        fisher_state, pruned_now = group_fisher_init(groups), True
      elif schedule is None and (global_step + 1) % self.schedule["interval"] == 0:
        if float(costs.macs(kept_counts(masks))) > target:
          if not data_dependent:
            fisher_state = group_fisher_accumulate(
              group_fisher_init(groups), fns["importance"](state.variables, masks=masks)
            )
          masks, fisher_state, pruned = group_fisher_prune(fisher_state, groups, masks, costs.macs, self.round_to)
          pruned_now = pruned is not None
      masks, fisher_state = ordered(masks, fisher_state)
      state, metrics = step(state, masks, x, y)
      carry = {**carry, "train": state, "masks": masks, "fisher": fisher_state}
      if pruned_now:
        at = global_step + 1
        record = self._record(at, masks, costs, fns, state, val)
        carry["pruned"] = _with(carry["pruned"], at, True)
        carry["val_accuracy"] = _with(carry["val_accuracy"], at, record["val_accuracy"])
        carry["kept"] = _with(carry["kept"], at, [record["kept"][g.name] for g in groups])
      if bar is not None:
        bar.n = global_step
        bar.update(1)
        bar.set_postfix(mflops=f"{2 * float(costs.macs(kept_counts(masks))) / 1e6:.3f}")
      return carry

    carry, _ = resumable_loop(prune_step, carry, total_steps, support.checkpointer("prune"))
    if bar is not None:
      bar.close()
    state = carry["train"]
    masks, fisher_state = ordered(carry["masks"], carry["fisher"])
    global_step = total_steps
    for at in np.flatnonzero(carry["pruned"]):
      kept_then = {g.name: int(carry["kept"][at, j]) for j, g in enumerate(groups)}
      path.append(
        {
          "step": int(at),
          "mflops": 2 * float(costs.macs(kept_then)) / 1e6,
          "val_accuracy": float(carry["val_accuracy"][at]),
          "kept": kept_then,
        }
      )
    reached = float(costs.macs(kept_counts(masks))) <= target * (1 + 1e-9)
    if not reached:
      # The schedule ran out of steps (GroupFisher with too few of them): prune the rest at once.
      importance = fisher_state.fisher if data_dependent else fns["importance"](state.variables, masks=masks)
      masks = global_pruning(groups, importance, target, costs.macs, self.round_to, self.normalize, masks)
      masks, fisher_state = ordered(masks, fisher_state)
      path.append(self._record(global_step, masks, costs, fns, state, val))
    timings["prune_s"] = time.perf_counter() - start
    pruned_val = float(fns["evaluate"](state.variables, masks, *val))

    # 3. Fine-tune the pruned network (still masked: the same compiled step).
    start = time.perf_counter()
    phase = phases["finetune_cfg"]
    state, step = new_state(state.variables, phase)
    state, finetune_log = train_loop(
      lambda s, x, y, k: step(s, masks, x, y),
      state,
      data.train,
      phase["epochs"],
      phase["batch_size"],
      finetune_key,
      progress=progress,
      desc="fine-tune",
      checkpointer=support.checkpointer("finetune"),
    )
    timings["finetune_s"] = time.perf_counter() - start
    finetuned_val = float(fns["evaluate"](state.variables, masks, *val))
    finetuned_test = float(fns["evaluate"](state.variables, masks, *test))

    # 4. Export: sliced weights and a network that runs them, reloaded from its file and checked.
    start = time.perf_counter()
    kept = kept_counts(masks)
    exported = self._export(work_dir, analysis, state.variables, kept_indices(masks), test[0])
    masked_logits = fns["logits"](state.variables, masks, test[0])
    exported_logits = exported["logits"]
    exported_test = float(accuracy(exported_logits, test[1]))
    max_diff = float(jnp.max(jnp.abs(exported_logits - masked_logits)))
    latency = _latency_ratio(lambda x: model.apply(state.variables, x), exported["apply"], test[0])
    timings["export_s"] = time.perf_counter() - start

    pruned_macs = float(costs.macs(kept))
    pruned_params = float(costs.params(kept))
    real_params = int(sum(np.size(a) for a in jax.tree.leaves(exported["variables"]["params"])))
    plotted = plot_pruning(work_dir / "pruning.png", path, finetuned_val, 2 * pruned_macs / 1e6)
    summary: dict[str, Any] = {
      "algorithm": "Prune",
      "criterion": self.criterion,
      "schedule": dict(self.schedule),
      "ranking": self.ranking,
      "round_to": self.round_to,
      "target_flops": self.target_flops,
      "reached_by_schedule": reached,
      "units": {g.name: {"num_channels": g.num_channels, "kept": kept[g.name]} for g in groups},
      "excluded_units": [{"name": e.name, "reasons": list(e.reasons)} for e in analysis.excluded],
      "unpruned": {
        "mflops": 2 * full_macs / 1e6,
        "params": int(full_params),
        "val_accuracy": unpruned_val,
        "test_accuracy": unpruned_test,
      },
      "pruned": {
        "mflops": 2 * pruned_macs / 1e6,
        "params": real_params,
        "flops_ratio": pruned_macs / full_macs,
        "params_ratio": pruned_params / full_params,
        "val_accuracy_before_finetune": pruned_val,
        "val_accuracy": finetuned_val,
        "test_accuracy": finetuned_test,
        "exported_test_accuracy": exported_test,
        "exported_max_abs_logit_diff": max_diff,
        "latency_ratio": latency,
      },
      "best_test_accuracy": finetuned_test,
      "best_mflops": 2 * pruned_macs / 1e6,
      "pruning_path": path,
      "weights_file": exported["file"],
      "plot": "pruning.png" if plotted else None,
      "chance_accuracy": 1.0 / data.num_classes,
      "train": train_log,
      "finetune": finetune_log,
      "timings_s": timings,
    }
    if support.summary() is not None:
      summary["checkpoints"] = support.summary()
    fix_subnet = {g.name: {"chosen": kept[g.name]} for g in groups}
    return SearchResult(fix_subnet, summary)

  def _export(
    self, work_dir: Path, analysis: ChannelAnalysis, variables: Any, kept: Mapping[str, Sequence[int]], images: Any
  ) -> dict[str, Any]:
    """Writes the pruned network and reloads it: a :class:`PlainCNN` (any module with a ``features`` field of one
    width per unit, in order) as the same module at its new widths (``pruned.msgpack``, :func:`load_subnet`), any
    other module as the rewritten program of the analysis (``pruned.jaxexport``, ``jaxmutate.analysis.load_pruned``),
    exported for batches of ``len(images)``."""
    model = self.architecture
    groups = analysis.groups
    small_variables = analysis.slice_variables(variables, kept)
    features = getattr(model, "features", None)
    if isinstance(model, PlainCNN) and features is not None and len(features) == len(groups):
      small_model = model.clone(features=tuple(len(kept[g.name]) for g in groups))
      path = save_subnet(work_dir / "pruned.msgpack", small_model, small_variables)
      loaded_model, loaded = load_subnet(path)
      apply = lambda x: loaded_model.apply(loaded, x)  # noqa: E731
    else:
      batch_analysis = analyze_channels(model, variables, images, ignored=self.ignored)
      network, small_variables = batch_analysis.export(variables, kept)
      path = work_dir / "pruned.jaxexport"
      path.parent.mkdir(parents=True, exist_ok=True)
      path.write_bytes(network.to_bytes(small_variables))
      loaded_network, loaded = load_pruned(path.read_bytes())
      apply = lambda x: loaded_network.apply(loaded, x)  # noqa: E731
    return {"file": path.name, "variables": loaded, "apply": apply, "logits": jax.jit(apply)(images)}

  def _record(self, step: int, masks: Any, costs: Any, fns: Any, state: TrainState, val: Any) -> dict[str, Any]:
    kept = kept_counts(masks)
    return {
      "step": step,
      "mflops": 2 * float(costs.macs(kept)) / 1e6,
      "val_accuracy": float(fns["evaluate"](state.variables, masks, *val)),
      "kept": kept,
    }


def _with(buffer: np.ndarray, row: int, value: Any) -> np.ndarray:
  """A copy of ``buffer`` with ``buffer[row] = value`` (a checkpointed state's leaves are never changed in place)."""
  buffer = buffer.copy()
  buffer[row] = value
  return buffer


def _latency_ratio(full: Any, small: Any, images: jax.Array) -> float:
  """Median time of the exported network over the unpruned one's, on the same batch (both jitted)."""

  def median_time(fn: Any) -> float:
    jax.block_until_ready(fn(images))
    times = []
    for _ in range(7):
      start = time.perf_counter()
      jax.block_until_ready(fn(images))
      times.append(time.perf_counter() - start)
    return float(np.median(times))

  base = median_time(jax.jit(full))
  return median_time(jax.jit(small)) / base if base > 0 else math.nan


def plot_pruning(
  path: str | Path, pruning_path: Sequence[Mapping[str, Any]], final_accuracy: float, final_mflops: float
) -> bool:
  """Plots validation accuracy against MFLOPs at every pruning, and the fine-tuned network's.

  Returns:
    Whether a plot was written (``False`` without matplotlib or points).

  Example:
    >>> import pathlib, tempfile
    >>> from jaxmutate.runners.prune import plot_pruning
    >>> with tempfile.TemporaryDirectory() as folder:
    ...   plot_pruning(pathlib.Path(folder) / "pruning.png", [{"mflops": 1.0, "val_accuracy": 0.9}], 0.9, 0.5)
    True
  """
  if not pruning_path:
    return False
  try:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
  except ImportError:
    return False
  fig, ax = plt.subplots(figsize=(5.5, 4))
  ax.plot(
    [p["mflops"] for p in pruning_path],
    [p["val_accuracy"] for p in pruning_path],
    ".-",
    label="during pruning (val, before fine-tuning)",
  )
  ax.plot([final_mflops], [final_accuracy], "o", markersize=8, label="pruned + fine-tuned (val)")
  ax.set_xlabel("MFLOPs per image (2 x MACs)")
  ax.set_ylabel("accuracy")
  ax.invert_xaxis()
  ax.grid(alpha=0.3)
  ax.legend(fontsize=8)
  fig.tight_layout()
  fig.savefig(path, dpi=90)
  plt.close(fig)
  return True
