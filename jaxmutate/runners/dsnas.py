"""The DSNAS runner: pretrain, search (weights and one-hot sampled ops together), fix the subnet, finetune it.

The steps are the pure functions of :mod:`jaxmutate.algorithms`
(:func:`~jaxmutate.algorithms.make_dsnas_steps`,
:func:`~jaxmutate.algorithms.fix_dsnas_subnet`); this module adds the data,
the epochs and their stages, the timings and the files. Like MMRazor's
``DSNAS`` there is no separate retraining: the subnet fixed at
``finetune_epochs`` keeps the supernet's weights and trains on.

References:
  Hu et al., DSNAS: Direct Neural Architecture Search without Parameter
  Retraining, CVPR 2020, https://arxiv.org/abs/2002.09128.
"""

from __future__ import annotations

import json
import time
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import flax.linen as nn
import jax
import jax.numpy as jnp
import numpy as np

from jaxmutate.algorithms import (
  accuracy,
  arch_weights_table,
  expected_cost,
  fix_dsnas_subnet,
  init_darts_state,
  make_dsnas_steps,
  make_weight_optimizer,
)
from jaxmutate.data import iterate_batches
from jaxmutate.errors import ConfigError
from jaxmutate.mutables import GUMBEL_RNG
from jaxmutate.mutators import DiffModuleMutator
from jaxmutate.registry import MODELS
from jaxmutate.resources import estimate_resources
from jaxmutate.runners._base import SearchResult, build_part, check_run_config, load_data
from jaxmutate.runners._loop import _BatchReader
from jaxmutate.runners.checkpoint import checkpoint_settings, resumable_loop
from jaxmutate.runners.darts import _epoch_log_carry, _metric_names, _with_row, darts_cost_table
from jaxmutate.runners.plots import plot_arch_weights
from jaxmutate.runners.support import RunSupport

TRAIN_KEYS = ("epochs", "batch_size", "optimizer", "arch_optimizer", "fast_compile")


@MODELS.register_module()
class DSNAS:
  """The DSNAS runner the CLI builds from ``model = dict(type="DSNAS", ...)`` (MMRazor's ``Dsnas``).

  Epochs ``[0, pretrain_epochs)`` train the weights only (ops still sampled
  from ``softmax(α)``), ``[pretrain_epochs, finetune_epochs)`` train weights
  and logits on the same batches, and from ``finetune_epochs`` on the argmax
  subnet is fixed and finetuned (a compiled step of that subnet alone).

  Args:
    architecture: the supernet (a module or config dict) whose op mutables
      are ``OneHotMutableOP``, e.g. ``dict(type="DartsBackbone",
      mutable_cfg=dict(type="OneHotMutableOP"), ...)``; it must return logits.
    mutator: a ``DiffModuleMutator`` (or its config); default one.
    pretrain_epochs: supernet-only epochs, >= 0.
    finetune_epochs: the epoch the architecture is fixed at, > pretrain_epochs.
    flops_constraints: MFLOPs per image (MMRazor's name); when the argmax
      subnet costs at least this, the FLOPs loss is on. ``None``: no FLOPs loss.
    flops_loss_coef: its weight (unit-free: ``coef · E[FLOPs] / target``).
    exclude_zero: never fix the ``zero`` op for an edge.

  Raises:
    ConfigTypeError: (a ``TypeError``) ``architecture`` is not a Flax module or
      ``mutator`` not a ``DiffModuleMutator``.
    ConfigError: (a ``ValueError``) ``pretrain_epochs >= finetune_epochs``, a
      negative epoch count, ``flops_constraints <= 0`` or a negative coefficient.

  Example:
    >>> import jaxmutate as jm
    >>> import jaxmutate.runners  # registers the runners
    >>> algo = jm.build(dict(type="DSNAS", architecture=dict(type="DartsBackbone", num_classes=10,
    ...                      mutable_cfg=dict(type="OneHotMutableOP")), finetune_epochs=3))
    >>> type(algo).__name__, algo.pretrain_epochs, algo.finetune_epochs
    ('DSNAS', 0, 3)
  """

  def __init__(
    self,
    architecture: nn.Module | Mapping[str, Any],
    mutator: DiffModuleMutator | Mapping[str, Any] | None = None,
    pretrain_epochs: int = 0,
    finetune_epochs: int = 80,
    flops_constraints: float | None = None,
    flops_loss_coef: float = 1.0,
    exclude_zero: bool = True,
  ):
    architecture = build_part(architecture, nn.Module, "DSNAS", "architecture")
    mutator = build_part(mutator, DiffModuleMutator, "DSNAS", "mutator", default=DiffModuleMutator)
    if not (isinstance(pretrain_epochs, int) and pretrain_epochs >= 0):
      raise ConfigError(f"DSNAS pretrain_epochs must be an int >= 0, got {pretrain_epochs!r}.")
    if not (isinstance(finetune_epochs, int) and finetune_epochs > pretrain_epochs):
      raise ConfigError(
        f"DSNAS: pretraining must end before finetuning starts: pretrain_epochs={pretrain_epochs!r} must be < "
        f"finetune_epochs={finetune_epochs!r} (ints)."
      )
    if flops_constraints is not None and not (isinstance(flops_constraints, (int, float)) and flops_constraints > 0):
      raise ConfigError(f"DSNAS flops_constraints must be > 0 (MFLOPs per image) or None, got {flops_constraints!r}.")
    if not flops_loss_coef >= 0:
      raise ConfigError(f"DSNAS flops_loss_coef must be >= 0, got {flops_loss_coef!r}.")
    self.architecture = architecture
    self.mutator = mutator
    self.pretrain_epochs = int(pretrain_epochs)
    self.finetune_epochs = int(finetune_epochs)
    self.flops_constraints = None if flops_constraints is None else float(flops_constraints)
    self.flops_loss_coef = float(flops_loss_coef)
    self.exclude_zero = bool(exclude_zero)

  def check_config(self, config: Mapping[str, Any]) -> None:
    """Validates the keys :meth:`run` reads, and that the search reaches ``finetune_epochs``.

    Raises:
      ConfigKeyError: an unknown key (top level or in ``train_cfg``).
      ConfigError: ``train_cfg.epochs`` < ``finetune_epochs`` (the architecture would never be fixed).

    Example:
      >>> import jaxmutate as jm
      >>> import jaxmutate.runners
      >>> dsnas = jm.build(dict(type="DSNAS", architecture=dict(type="DartsBackbone", num_classes=10,
      ...                       mutable_cfg=dict(type="OneHotMutableOP")), finetune_epochs=3))
      >>> dsnas.check_config({"model": {}, "train_cfg": dict(epochs=4)})
    """
    check_run_config(config, "DSNAS", {"train_cfg": TRAIN_KEYS}, ("checkpoint",))
    checkpoint_settings(config, "DSNAS")
    epochs = (config.get("train_cfg") or {}).get("epochs", self.finetune_epochs)
    if not (isinstance(epochs, int) and epochs >= self.finetune_epochs):
      raise ConfigError(
        f"DSNAS: train_cfg.epochs must be an int >= finetune_epochs={self.finetune_epochs} (the epoch the "
        f"architecture is fixed at), got {epochs!r}."
      )

  def run(
    self, config: dict[str, Any], work_dir: Path, seed: int, progress: bool = True, resume: bool = False
  ) -> SearchResult:
    """Pretrains, searches, fixes the subnet at ``finetune_epochs`` and finetunes it.

    Config keys (all optional but ``model``): ``data``, ``train_cfg``
    (``epochs`` in all, ``batch_size``, ``optimizer`` for the weights,
    ``arch_optimizer`` for the logits, ``fast_compile``: XLA optimisation
    level 0), ``checkpoint`` (``dict(every_n_steps=N, keep=K)``: the
    pretraining, search and finetune epochs, i.e. weights, logits, both
    optimiser states and the step, with the epochs' metric sums and the log
    so far, save a checkpoint every ``N`` steps and at their end into
    ``work_dir/checkpoints/dsnas``; ``resume=True`` continues from them with
    the same results as a run never interrupted, see
    :class:`~jaxmutate.runners.support.RunSupport` for the errors). Writes
    ``arch_weights.json`` (softmax weights per epoch, the expected FLOPs) and,
    with matplotlib, ``arch_weights.png``. The summary
    holds the fixed subnet's validation/test accuracy (its own BatchNorm
    statistics, from the finetune), its exact FLOPs and parameters, the
    stages, and timings.
    """
    work_dir = Path(work_dir)
    self.check_config(config)
    support = RunSupport(config, "DSNAS", work_dir, seed, resume)
    work_dir.mkdir(parents=True, exist_ok=True)
    timings: dict[str, float] = {}
    data = load_data(config, "DSNAS")
    train_cfg = dict(
      epochs=self.finetune_epochs,
      batch_size=64,
      optimizer=dict(type="sgd", learning_rate=0.05, momentum=0.9, weight_decay=3e-4, clip_grad_norm=5.0),
      arch_optimizer=dict(type="adam", learning_rate=1e-3, b1=0.5, b2=0.999),
      fast_compile=True,
    )
    train_cfg.update(config.get("train_cfg", {}))
    epochs, batch_size = int(train_cfg["epochs"]), int(train_cfg["batch_size"])
    if batch_size < 1:
      raise ConfigError(f"DSNAS train_cfg batch_size must be >= 1, got {batch_size}.")
    compiler_options = {"xla_backend_optimization_level": 0} if train_cfg["fast_compile"] else None
    weight_optimizer = make_weight_optimizer(train_cfg["optimizer"])
    arch_optimizer = make_weight_optimizer(train_cfg["arch_optimizer"])

    init_key, train_key, step_key = jax.random.split(jax.random.key(seed), 3)
    model = self.architecture
    sample = jnp.asarray(data.train.images[:batch_size])
    start = time.perf_counter()
    state, mutator, variables = init_darts_state(
      model, self.mutator, weight_optimizer, arch_optimizer, init_key, sample, compiler_options
    )
    timings["init_s"] = time.perf_counter() - start
    out_shape = jax.eval_shape(
      lambda: model.apply(variables, sample[:2], mutator.set_choices(state.arch_params), rngs={GUMBEL_RNG: init_key})
    )
    if getattr(out_shape, "shape", None) != (2, data.num_classes):
      raise ConfigError(
        f"DSNAS needs an architecture that outputs class logits of shape (batch, {data.num_classes}); got "
        f"{getattr(out_shape, 'shape', out_shape)} (set num_classes={data.num_classes} on the backbone)."
      )
    table = None
    if self.flops_constraints is not None:
      start = time.perf_counter()
      table = darts_cost_table(model, variables, mutator, sample[:1])
      timings["cost_table_s"] = time.perf_counter() - start
    steps = make_dsnas_steps(
      model,
      mutator,
      weight_optimizer,
      arch_optimizer,
      cost_table=table,
      flops_target=self.flops_constraints,
      flops_loss_coef=self.flops_loss_coef,
      compiler_options=compiler_options,
    )

    exclude = ("zero",) if self.exclude_zero else ()
    steps_per_epoch = len(data.train) // batch_size
    probe = (jnp.asarray(data.train.images[:batch_size]), jnp.asarray(data.train.labels[:batch_size]))
    # The metrics' names of both stages from traces of the same steps (no compiler options: a trace nests a jit).
    probe_steps = make_dsnas_steps(
      model,
      mutator,
      weight_optimizer,
      arch_optimizer,
      cost_table=table,
      flops_target=self.flops_constraints,
      flops_loss_coef=self.flops_loss_coef,
    )
    search_names = _metric_names(lambda: probe_steps.search_step(state, probe, step_key, True))
    finetune_names = []
    if epochs > self.finetune_epochs:
      probe_finetune = probe_steps.make_finetune_step(fix_dsnas_subnet(mutator, state.arch_params, exclude))
      finetune_names = _metric_names(lambda: probe_finetune(state, probe))
    columns = {name: j for j, name in enumerate(dict.fromkeys(search_names + finetune_names))}
    # The whole run as one pytree, so resumable_loop checkpoints and resumes it: the DARTS state, the metric
    # sums of every epoch (float64, added in step order as floats: a resumed run's means are an uninterrupted
    # run's) and the logits and step count at the end of every epoch (the log; the fixed subnet is the argmax
    # of the logits at the end of epoch finetune_epochs - 1).
    # Sorted by group, the order of a restored dict: a resumed run logs the groups in the same order.
    carry = _epoch_log_carry("dsnas", state, epochs, len(columns))
    train_batches = _BatchReader(lambda e: iterate_batches(jax.random.fold_in(train_key, e), data.train, batch_size))

    def arch_at(epoch: int) -> dict[Any, np.ndarray]:
      return {g: buffer[epoch] for g, buffer in carry["arch"].items()}

    bar = None
    if progress:
      from tqdm.auto import tqdm

      bar = tqdm(total=epochs * steps_per_epoch, desc="DSNAS", unit="step")
    finetune = None
    stage_start = time.perf_counter()

    def dsnas_step(i: int, carry: dict[str, Any]) -> dict[str, Any]:
      nonlocal finetune, stage_start
      epoch, index = divmod(i, steps_per_epoch)
      if epoch >= self.finetune_epochs and finetune is None:
        timings["search_s"] = time.perf_counter() - stage_start
        stage_start = time.perf_counter()
        fixed = {g: buffer[self.finetune_epochs] for g, buffer in carry["arch"].items()}
        finetune = steps.make_finetune_step(fix_dsnas_subnet(mutator, fixed, exclude))
      images, labels = train_batches(epoch, index)
      batch = (jnp.asarray(images), jnp.asarray(labels))
      state = carry["dsnas"]
      if epoch < self.finetune_epochs:
        update_arch = epoch >= self.pretrain_epochs
        state, metrics = steps.search_step(state, batch, jax.random.fold_in(step_key, int(state.step)), update_arch)
      else:
        state, metrics = finetune(state, batch)
      metrics = jax.device_get(metrics)
      sums = carry["sums"].copy()
      for name, value in metrics.items():
        sums[epoch, columns[name]] += float(value)
      carry = {**carry, "dsnas": state, "sums": sums}
      if index + 1 == steps_per_epoch:
        carry["arch"] = {g: _with_row(buffer, epoch + 1, state.arch_params[g]) for g, buffer in carry["arch"].items()}
        carry["steps"] = _with_row(carry["steps"], epoch + 1, int(state.step))
      if bar is not None:
        bar.n = i
        bar.update(1)
        bar.set_postfix(epoch=epoch + 1, acc=f"{float(metrics['accuracy']):.2f}")
      return carry

    carry, _ = resumable_loop(dsnas_step, carry, epochs * steps_per_epoch, support.checkpointer("dsnas", mutator))
    if bar is not None:
      bar.close()
    state = carry["dsnas"]
    timings["search_s" if finetune is None else "finetune_s"] = time.perf_counter() - stage_start
    finetuned = epochs > self.finetune_epochs
    group_choices = fix_dsnas_subnet(mutator, arch_at(self.finetune_epochs), exclude)

    def log_entry(epoch: int) -> dict[str, Any]:
      entry: dict[str, Any] = {"epoch": epoch, "step": int(carry["steps"][epoch])}
      entry["weights"] = arch_weights_table(mutator, arch_at(epoch))
      if table is not None:
        entry["expected_flops"] = float(expected_cost(table, arch_at(epoch))["flops"])
      return entry

    log: dict[str, Any] = {
      "choice_names": {mutator.group_key(g): list(mutator.group_spec(g).choice_names) for g in mutator.search_groups},
      "history": [log_entry(0)],
    }
    epoch_metrics: list[dict[str, Any]] = []
    for epoch in range(epochs):
      stage = "pretrain" if epoch < self.pretrain_epochs else ("search" if epoch < self.finetune_epochs else "finetune")
      names = search_names if epoch < self.finetune_epochs else finetune_names
      averages = {name: float(carry["sums"][epoch, columns[name]]) / max(steps_per_epoch, 1) for name in names}
      epoch_metrics.append({"stage": stage, **averages})
      log["history"].append({**log_entry(epoch + 1), **epoch_metrics[-1]})

    (work_dir / "arch_weights.json").write_text(json.dumps(log, indent=1))
    plotted = plot_arch_weights(work_dir / "arch_weights.png", log)
    choices = {k: np.asarray(v) for k, v in mutator.set_choices(group_choices).items()}
    predict = jax.jit(
      lambda p, b, x: model.apply({"params": p, "batch_stats": b}, x, choices, train=False),
      compiler_options=compiler_options,
    )

    def rate(split: Any) -> float:
      logits = predict(state.params, state.batch_stats, jnp.asarray(split.images))
      return float(accuracy(logits, jnp.asarray(split.labels)))

    resources = estimate_resources(model, variables, mutator, group_choices, sample[:1])
    summary: dict[str, Any] = {
      "algorithm": "DSNAS",
      "epochs": epochs,
      "pretrain_epochs": self.pretrain_epochs,
      "finetune_epochs": self.finetune_epochs,
      "steps": int(state.step),
      "num_search_groups": len(mutator.search_groups),
      "flops_constraints": self.flops_constraints,
      "fixed_subnet_val_accuracy": rate(data.val),
      "fixed_subnet_test_accuracy": rate(data.test),
      # Inherited BatchNorm statistics: the finetune's own when it ran, else the supernet's.
      "finetuned": finetuned,
      "fixed_subnet_mflops": resources["flops"],
      "fixed_subnet_mparams": resources["params"],
      "final_epoch": epoch_metrics[-1] if epoch_metrics else {},
      "arch_weights_plot": plotted,
      "timings": {k: round(v, 4) for k, v in timings.items()},
    }
    if support.summary() is not None:
      summary["checkpoints"] = support.summary()
    return SearchResult(mutator.export_fix_subnet(group_choices), summary)


MODELS.register_module(name="Dsnas", module=DSNAS)

__all__ = ["DSNAS"]
