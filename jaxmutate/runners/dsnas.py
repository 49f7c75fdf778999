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
from jaxmutate.runners.darts import darts_cost_table
from jaxmutate.runners.plots import plot_arch_weights

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
    check_run_config(config, "DSNAS", {"train_cfg": TRAIN_KEYS})
    epochs = (config.get("train_cfg") or {}).get("epochs", self.finetune_epochs)
    if not (isinstance(epochs, int) and epochs >= self.finetune_epochs):
      raise ConfigError(
        f"DSNAS: train_cfg.epochs must be an int >= finetune_epochs={self.finetune_epochs} (the epoch the "
        f"architecture is fixed at), got {epochs!r}."
      )

  def run(self, config: dict[str, Any], work_dir: Path, seed: int, progress: bool = True) -> SearchResult:
    """Pretrains, searches, fixes the subnet at ``finetune_epochs`` and finetunes it.

    Config keys (all optional but ``model``): ``data``, ``train_cfg``
    (``epochs`` in all, ``batch_size``, ``optimizer`` for the weights,
    ``arch_optimizer`` for the logits, ``fast_compile``: XLA optimisation
    level 0). Writes ``arch_weights.json`` (softmax weights per epoch, the
    expected FLOPs) and, with matplotlib, ``arch_weights.png``. The summary
    holds the fixed subnet's validation/test accuracy (its own BatchNorm
    statistics, from the finetune), its exact FLOPs and parameters, the
    stages, and timings.
    """
    work_dir = Path(work_dir)
    self.check_config(config)
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

    def log_entry(epoch: int) -> dict[str, Any]:
      entry: dict[str, Any] = {"epoch": epoch, "step": int(state.step)}
      entry["weights"] = arch_weights_table(mutator, state.arch_params)
      if table is not None:
        entry["expected_flops"] = float(expected_cost(table, state.arch_params)["flops"])
      return entry

    log: dict[str, Any] = {
      "choice_names": {mutator.group_key(g): list(mutator.group_spec(g).choice_names) for g in mutator.search_groups},
      "history": [log_entry(0)],
    }
    steps_per_epoch = len(data.train) // batch_size
    bar = None
    if progress:
      from tqdm.auto import tqdm

      bar = tqdm(total=epochs * steps_per_epoch, desc="DSNAS", unit="step")
    group_choices = None
    finetune = None
    epoch_metrics: list[dict[str, float]] = []
    stage_start = time.perf_counter()
    for epoch in range(epochs):
      if epoch == self.finetune_epochs:
        timings["search_s"] = time.perf_counter() - stage_start
        stage_start = time.perf_counter()
        group_choices = fix_dsnas_subnet(mutator, state.arch_params, ("zero",) if self.exclude_zero else ())
        finetune = steps.make_finetune_step(group_choices)
      update_arch = epoch >= self.pretrain_epochs
      sums: dict[str, float] = {}
      for images, labels in iterate_batches(jax.random.fold_in(train_key, epoch), data.train, batch_size):
        batch = (jnp.asarray(images), jnp.asarray(labels))
        if finetune is None:
          state, metrics = steps.search_step(state, batch, jax.random.fold_in(step_key, int(state.step)), update_arch)
        else:
          state, metrics = finetune(state, batch)
        metrics = jax.device_get(metrics)
        for name, value in metrics.items():
          sums[name] = sums.get(name, 0.0) + float(value)
        if bar is not None:
          bar.update(1)
          bar.set_postfix(epoch=epoch + 1, acc=f"{float(metrics['accuracy']):.2f}")
      stage = "pretrain" if epoch < self.pretrain_epochs else ("search" if finetune is None else "finetune")
      epoch_metrics.append({"stage": stage, **{k: v / max(steps_per_epoch, 1) for k, v in sums.items()}})
      log["history"].append({**log_entry(epoch + 1), **epoch_metrics[-1]})
    if bar is not None:
      bar.close()
    timings["search_s" if finetune is None else "finetune_s"] = time.perf_counter() - stage_start
    if group_choices is None:  # epochs == finetune_epochs: fixed at the end, nothing left to finetune
      group_choices = fix_dsnas_subnet(mutator, state.arch_params, ("zero",) if self.exclude_zero else ())

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
      "finetuned": finetune is not None,
      "fixed_subnet_mflops": resources["flops"],
      "fixed_subnet_mparams": resources["params"],
      "final_epoch": epoch_metrics[-1] if epoch_metrics else {},
      "arch_weights_plot": plotted,
      "timings": {k: round(v, 4) for k, v in timings.items()},
    }
    return SearchResult(mutator.export_fix_subnet(group_choices), summary)


MODELS.register_module(name="Dsnas", module=DSNAS)

__all__ = ["DSNAS"]
