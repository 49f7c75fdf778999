"""The DARTS runner: search on the digits, write the architecture weights, derive and retrain the network.

The steps it runs are the pure functions of :mod:`jaxmutate.algorithms`
(:func:`~jaxmutate.algorithms.make_darts_steps`,
:func:`~jaxmutate.algorithms.derive_group_choices`, ...); this module adds
the data, the search loop, the timings, the files and the plot.

References:
  Liu et al., DARTS: Differentiable Architecture Search, ICLR 2019,
  https://arxiv.org/abs/1806.09055.
  Dong & Yang, Searching for a Robust Neural Architecture in Four GPU Hours
  (GDAS), CVPR 2019, https://arxiv.org/abs/1910.04465.
"""

from __future__ import annotations

import dataclasses
import json
import time
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
  accuracy,
  add_cost_penalty,
  arch_weights_table,
  cost_penalty,
  derive_group_choices,
  expected_cost,
  init_darts_state,
  make_darts_steps,
  make_fixed_subnet_train_step,
  make_weight_optimizer,
  recalibrate_batch_stats,
  uses_temperature,
)
from jaxmutate.data import Dataset, iterate_batches
from jaxmutate.errors import ConfigError, ConfigTypeError
from jaxmutate.models import DartsBackbone, DartsDiscreteNetwork, derive_discrete_network, discrete_network_variables
from jaxmutate.mutables import GUMBEL_RNG, gumbel_temperature_schedule
from jaxmutate.mutators import DiffModuleMutator
from jaxmutate.registry import MODELS, check_config_keys
from jaxmutate.resources import ResourceTable, build_resource_table, estimate_resources
from jaxmutate.runners._base import SearchResult, build_part, check_run_config, load_data
from jaxmutate.runners._loop import _BatchReader, train_loop
from jaxmutate.runners.checkpoint import Checkpointer, checkpoint_settings, resumable_loop
from jaxmutate.runners.plots import plot_arch_weights
from jaxmutate.runners.support import RunSupport
from jaxmutate.spaces import EdgeSubsetSpace
from jaxmutate.typing import PRNGKey


@MODELS.register_module()
class DARTS:
  """The DARTS search runner the CLI builds from ``model = dict(type="DARTS", ...)``.

  Args:
    architecture: the supernet (a built module or a config dict), e.g.
      ``dict(type="DartsBackbone", num_classes=10, ...)``; it must return
      class logits.
    mutator: a ``DiffModuleMutator`` (or its config dict); default one.
    unroll: exact second-order architecture gradient (MMRazor's ``unroll``).
    unroll_lr: ``ξ``; ``None`` uses the weight optimiser's learning rate
      (when it is a number), else 0.025.
    exclude_zero: never derive the ``zero`` op for an edge (DARTS paper).
    flops_penalty: ``dict(weight=..., target=0.0, resource="flops")``: add
      ``weight · max(0, E[FLOPs] − target) / scale`` to the architecture loss,
      ``E`` the expected MFLOPs per image of the op choices under
      ``softmax(α)`` (:func:`~jaxmutate.algorithms.cost_penalty`; ``scale`` is
      the target, or with target 0 the uniform expectation). The cost table
      is measured with XLA after init, with every route running all its edges
      (:func:`~jaxmutate.build_resource_table` with the routes fixed); for
      GDAS's hard Gumbel samples the softmax expectation is exact.

  Raises:
    ConfigTypeError: (a ``TypeError``) ``architecture`` is not a Flax module
      or ``mutator`` not a ``DiffModuleMutator``.
    ConfigError: (a ``ValueError``) ``unroll_lr`` < 0; ``flops_penalty`` with
      an unknown key (a ``ConfigKeyError``), no ``weight``, a negative weight or
      target.

  Example:
    >>> import jaxmutate as jm
    >>> algo = jm.build(dict(type="DARTS", architecture=dict(type="DartsBackbone", num_classes=10),
    ...                      mutator=dict(type="DiffModuleMutator"), unroll=True))
    >>> type(algo).__name__, algo.unroll
    ('DARTS', True)
  """

  def __init__(
    self,
    architecture: nn.Module | Mapping[str, Any],
    mutator: DiffModuleMutator | Mapping[str, Any] | None = None,
    unroll: bool = False,
    unroll_lr: float | None = None,
    exclude_zero: bool = True,
    flops_penalty: Mapping[str, Any] | None = None,
  ):
    architecture = build_part(architecture, nn.Module, "DARTS", "architecture")
    mutator = build_part(mutator, DiffModuleMutator, "DARTS", "mutator", default=DiffModuleMutator)
    if unroll_lr is not None and not unroll_lr >= 0:
      raise ConfigError(f"DARTS unroll_lr must be >= 0, got {unroll_lr!r}.")
    self.architecture = architecture
    self.mutator = mutator
    self.unroll = bool(unroll)
    self.unroll_lr = unroll_lr
    self.exclude_zero = bool(exclude_zero)
    self.flops_penalty = _check_flops_penalty(flops_penalty)

  def check_config(self, config: Mapping[str, Any]) -> None:
    """Validates the keys :meth:`run` reads; an unknown or misspelt key is an error (DARTS has no ``search_cfg``).

    Raises:
      ConfigKeyError: an unknown key (top level or in ``train_cfg``/``retrain_cfg``).

    Example:
      >>> import jaxmutate as jm
      >>> darts = jm.build(dict(type="DARTS", architecture=dict(type="DartsBackbone", num_classes=10),
      ...                       mutator=dict(type="DiffModuleMutator")))
      >>> darts.check_config({"model": {}, "train_cfg": dict(epochs=1, arch_optimizer=dict(type="adam"))})
    """
    sections = {
      "train_cfg": ("epochs", "batch_size", "optimizer", "arch_optimizer", "tau_schedule", "fast_compile"),
      "retrain_cfg": ("epochs", "batch_size", "optimizer"),
    }
    check_run_config(config, "DARTS", sections, ("checkpoint",))
    checkpoint_settings(config, "DARTS")

  def run(
    self, config: dict[str, Any], work_dir: Path, seed: int, progress: bool = True, resume: bool = False
  ) -> SearchResult:
    """Searches on the config's data, derives and (optionally) retrains the subnet.

    Config keys (all optional but ``model``): ``data`` (a data set config for
    :func:`load_data`; the digits by default), ``train_cfg`` (``epochs``, ``batch_size``, ``optimizer``: the
    weight optimiser with ``weight_decay``/``clip_grad_norm``,
    ``arch_optimizer``, ``tau_schedule``: arguments of
    :func:`~jaxmutate.mutables.gumbel_temperature_schedule` without
    ``transition_steps``, ``fast_compile``: XLA optimisation level 0, which
    compiles the large supernet several times faster on CPU), ``retrain_cfg``
    (``epochs``, ``optimizer``; ``epochs=0`` skips it), ``checkpoint``
    (``dict(every_n_steps=N, keep=K)``: the search, i.e. weights,
    architecture logits, both optimiser states and the step, with the
    epoch's metric sums and the log so far, and the derived network's
    retraining save a checkpoint every ``N`` steps and at their end into
    ``work_dir/checkpoints/search`` and ``.../retrain``; ``resume=True``
    continues from them with the same results as a run never interrupted,
    see :class:`~jaxmutate.runners.support.RunSupport` for the errors).

    Writes ``arch_weights.json`` (softmax weights per group per epoch) and,
    with matplotlib, ``arch_weights.png`` into ``work_dir``. The summary holds
    the supernet's validation accuracy, the derived network's accuracy with
    the inherited weights (BatchNorm statistics re-estimated on 512 training
    images) and after the retrain, parameter counts and timings.
    """
    work_dir = Path(work_dir)
    self.check_config(config)
    support = RunSupport(config, "DARTS", work_dir, seed, resume)
    work_dir.mkdir(parents=True, exist_ok=True)
    timings: dict[str, float] = {}
    data = load_data(config, "DARTS")
    train_cfg = dict(
      epochs=10,
      batch_size=64,
      optimizer=dict(type="sgd", learning_rate=0.05, momentum=0.9, weight_decay=3e-4, clip_grad_norm=5.0),
      arch_optimizer=dict(type="adam", learning_rate=3e-3, b1=0.5, b2=0.999, weight_decay=1e-3),
      tau_schedule=dict(init_value=10.0, end_value=0.1),
      fast_compile=True,
    )
    train_cfg.update(config.get("train_cfg", {}))
    retrain_cfg = dict(
      epochs=0, batch_size=train_cfg["batch_size"], optimizer=dict(type="sgd", learning_rate=0.05, momentum=0.9)
    )
    retrain_cfg.update(config.get("retrain_cfg", {}))
    epochs, batch_size = int(train_cfg["epochs"]), int(train_cfg["batch_size"])
    if epochs < 1 or batch_size < 1:
      raise ConfigError(f"train_cfg epochs and batch_size must be >= 1, got epochs={epochs}, batch_size={batch_size}.")
    compiler_options = {"xla_backend_optimization_level": 0} if train_cfg["fast_compile"] else None

    weight_optimizer = make_weight_optimizer(train_cfg["optimizer"])
    arch_optimizer = make_weight_optimizer(train_cfg["arch_optimizer"])
    unroll_lr = self.unroll_lr
    if unroll_lr is None:
      lr = train_cfg["optimizer"].get("learning_rate") if isinstance(train_cfg["optimizer"], Mapping) else None
      unroll_lr = float(lr) if isinstance(lr, (int, float)) else 0.025
    unroll_wd = (
      float(train_cfg["optimizer"].get("weight_decay", 0.0)) if isinstance(train_cfg["optimizer"], Mapping) else 0.0
    )

    key = jax.random.key(seed)
    init_key, train_key, val_key, step_key, retrain_key = jax.random.split(key, 5)
    model = self.architecture
    sample = jnp.asarray(data.train.images[:batch_size])
    start = time.perf_counter()
    state, mutator, variables = init_darts_state(
      model, self.mutator, weight_optimizer, arch_optimizer, init_key, sample, compiler_options
    )
    timings["init_s"] = time.perf_counter() - start
    table = None
    if self.flops_penalty is not None:
      start = time.perf_counter()
      table = darts_cost_table(model, variables, mutator, sample[:1])
      timings["cost_table_s"] = time.perf_counter() - start
      penalty = cost_penalty(table, self.flops_penalty["target"], self.flops_penalty["resource"])
      arch_optimizer = optax.chain(add_cost_penalty(penalty, self.flops_penalty["weight"]), arch_optimizer)
      state = state._replace(arch_opt_state=arch_optimizer.init(state.arch_params))
    out_shape = jax.eval_shape(
      lambda: model.apply(variables, sample[:2], mutator.set_choices(state.arch_params), rngs={GUMBEL_RNG: init_key})
    )
    if getattr(out_shape, "shape", None) != (2, data.num_classes):
      raise ConfigError(
        f"DARTS needs an architecture that outputs class logits of shape (batch, {data.num_classes}); got "
        f"{getattr(out_shape, 'shape', out_shape)} (set num_classes={data.num_classes} on the backbone)."
      )
    steps = make_darts_steps(
      model,
      mutator,
      weight_optimizer,
      arch_optimizer,
      unroll=self.unroll,
      unroll_lr=unroll_lr,
      unroll_weight_decay=unroll_wd,
      compiler_options=compiler_options,
    )
    steps_per_epoch = len(data.train) // batch_size
    total_steps = epochs * steps_per_epoch
    with_tau = uses_temperature(mutator)
    tau_schedule = (
      gumbel_temperature_schedule(transition_steps=max(total_steps, 1), **train_cfg["tau_schedule"])
      if with_tau
      else None
    )

    def cost_entry(arch_params: Any) -> dict[str, float]:
      if table is None:
        return {}
      resource = self.flops_penalty["resource"]
      return {f"expected_{resource}": float(expected_cost(table, arch_params)[resource])}

    # The metrics' names from a trace of the same step (no compiler options: the trace nests its jit).
    probe_steps = make_darts_steps(
      model,
      mutator,
      weight_optimizer,
      arch_optimizer,
      unroll=self.unroll,
      unroll_lr=unroll_lr,
      unroll_weight_decay=unroll_wd,
    )
    probe = (jnp.asarray(data.train.images[:batch_size]), jnp.asarray(data.train.labels[:batch_size]))
    tau_first = float(tau_schedule(0)) if with_tau else None
    names = _metric_names(lambda: probe_steps.search_step(state, probe, probe, step_key, tau_first))
    # The whole search as one pytree, so resumable_loop checkpoints and resumes it: the DARTS state, the
    # metric sums of every epoch (float64 on the host, added in step order as floats: a resumed run's means are
    # an uninterrupted run's) and the architecture logits and step count at the end of every epoch (the log).
    # Sorted by group, the order of a restored dict: a resumed run logs the groups in the same order.
    carry = _epoch_log_carry("darts", state, epochs, len(names))
    train_batches = _BatchReader(lambda e: iterate_batches(jax.random.fold_in(train_key, e), data.train, batch_size))
    # Validation batches: one shuffled pass after another, pass p shuffled with val_keys[p].
    val_keys = jax.random.split(val_key, 10 * epochs + 10)
    val_per_pass = max(len(data.val) // batch_size, 1)
    val_batches = _BatchReader(
      lambda p: iterate_batches(
        val_keys[p] if p < len(val_keys) else jax.random.fold_in(val_key, p), data.val, batch_size
      )
    )
    step_times: list[float] = []
    bar = None
    if progress:
      from tqdm.auto import tqdm

      bar = tqdm(total=total_steps, desc="DARTS search" + (" (2nd order)" if self.unroll else ""), unit="step")

    def search_step(i: int, carry: dict[str, Any]) -> dict[str, Any]:
      epoch, index = divmod(i, steps_per_epoch)
      images, labels = train_batches(epoch, index)
      val_images, val_labels = val_batches(*divmod(i, val_per_pass))
      darts = carry["darts"]
      tau = float(tau_schedule(int(darts.step))) if with_tau else None
      start = time.perf_counter()
      darts, metrics = steps.search_step(
        darts,
        (jnp.asarray(images), jnp.asarray(labels)),
        (jnp.asarray(val_images), jnp.asarray(val_labels)),
        jax.random.fold_in(step_key, int(darts.step)),
        tau,
      )
      metrics = jax.device_get(metrics)
      step_times.append(time.perf_counter() - start)
      sums = carry["sums"].copy()
      sums[epoch] += np.array([float(metrics[name]) for name in names])
      carry = {**carry, "darts": darts, "sums": sums}
      if index + 1 == steps_per_epoch:
        carry["arch"] = {g: _with_row(buffer, epoch + 1, darts.arch_params[g]) for g, buffer in carry["arch"].items()}
        carry["steps"] = _with_row(carry["steps"], epoch + 1, int(darts.step))
      if bar is not None:
        bar.n = i
        bar.update(1)
        bar.set_postfix(
          epoch=epoch + 1,
          train_acc=f"{float(metrics['train_accuracy']):.2f}",
          val_acc=f"{float(metrics['val_accuracy']):.2f}",
        )
      return carry

    search_start = time.perf_counter()
    carry, _ = resumable_loop(search_step, carry, total_steps, support.checkpointer("search", mutator))
    if bar is not None:
      bar.close()
    state = carry["darts"]
    timings["search_s"] = time.perf_counter() - search_start
    if step_times:  # none when the run resumed from the search's last checkpoint
      timings["first_step_s (compile)"] = step_times[0]
      timings["median_step_s"] = float(np.median(step_times[1:])) if len(step_times) > 1 else step_times[0]

    def arch_at(epoch: int) -> dict[Any, np.ndarray]:
      return {g: buffer[epoch] for g, buffer in carry["arch"].items()}

    log: dict[str, Any] = {
      "choice_names": {mutator.group_key(g): list(mutator.group_spec(g).choice_names) for g in mutator.search_groups},
      "history": [{"epoch": 0, "step": int(carry["steps"][0]), "weights": arch_weights_table(mutator, arch_at(0))}],
    }
    log["history"][0].update(cost_entry(arch_at(0)))
    epoch_metrics: list[dict[str, float]] = []
    for epoch in range(epochs):
      averages = {name: float(carry["sums"][epoch, j]) / steps_per_epoch for j, name in enumerate(names)}
      if with_tau:
        averages["tau"] = float(tau_schedule(int(carry["steps"][epoch + 1])))
      epoch_metrics.append(averages)
      log["history"].append(
        {
          "epoch": epoch + 1,
          "step": int(carry["steps"][epoch + 1]),
          "weights": arch_weights_table(mutator, arch_at(epoch + 1)),
          **averages,
          **cost_entry(arch_at(epoch + 1)),
        }
      )

    (work_dir / "arch_weights.json").write_text(json.dumps(log, indent=1))
    plotted = plot_arch_weights(work_dir / "arch_weights.png", log)

    # Supernet accuracy with its softmax mixtures, inference-mode BatchNorm.
    val_images, val_labels = jnp.asarray(data.val.images), jnp.asarray(data.val.labels)
    test_images, test_labels = jnp.asarray(data.test.images), jnp.asarray(data.test.labels)
    extra = {"tau": jnp.float32(train_cfg["tau_schedule"].get("end_value", 1.0))} if with_tau else {}
    supernet_logits = jax.jit(
      lambda p, b, a, x: model.apply(
        {"params": p, "batch_stats": b}, x, mutator.set_choices(a), train=False, rngs={GUMBEL_RNG: init_key}, **extra
      ),
      compiler_options=compiler_options,
    )(state.params, state.batch_stats, state.arch_params, val_images)
    supernet_val = float(accuracy(supernet_logits, val_labels))

    group_choices = derive_group_choices(mutator, state.arch_params, ("zero",) if self.exclude_zero else ())
    fix_subnet = mutator.export_fix_subnet(group_choices)
    summary: dict[str, Any] = {
      "algorithm": ("GDAS-style hard Gumbel" if with_tau else "DARTS")
      + (" (second order, exact)" if self.unroll else " (first order)"),
      "gumbel": with_tau,
      "epochs": epochs,
      "steps": int(state.step),
      "num_search_groups": len(mutator.search_groups),
      "supernet_val_accuracy": supernet_val,
      "final_epoch": epoch_metrics[-1],
      "arch_weights_plot": plotted,
    }
    if table is not None:
      resource = self.flops_penalty["resource"]
      exact = estimate_resources(model, variables, mutator, group_choices, sample[:1])
      summary["flops_penalty"] = {
        **self.flops_penalty,
        f"expected_{resource}_first": log["history"][0][f"expected_{resource}"],
        f"expected_{resource}_last": log["history"][-1][f"expected_{resource}"],
        # The table prices every edge's op (routes run all edges); the derived
        # network keeps num_chosen edges per node: XLA's count of it is exact.
        f"derived_{resource}_table": float(table(group_choices)[resource]),
        "derived_exact": exact,
      }
    if isinstance(model, DartsBackbone):
      network = derive_discrete_network(model, fix_subnet)
      sub_vars = discrete_network_variables(network, {"params": state.params, "batch_stats": state.batch_stats}, sample)
      summary["derived_num_params"] = int(sum(np.size(x) for x in jax.tree.leaves(sub_vars["params"])))
      summary["supernet_num_params"] = int(sum(np.size(x) for x in jax.tree.leaves(state.params)))
      predict = jax.jit(lambda v, x: network.apply(v, x, train=False), compiler_options=compiler_options)
      # The supernet's running BatchNorm statistics describe mixtures, not the
      # discrete network: re-estimate them (exactly, on training images) first.
      calibration = jnp.asarray(data.train.images[:512])
      sub_vars["batch_stats"] = jax.jit(
        lambda v, x: recalibrate_batch_stats(_WithChoices(**_fields(network)), v["params"], v["batch_stats"], {}, x),
        compiler_options=compiler_options,
      )(sub_vars, calibration)
      summary["derived_val_accuracy_inherited"] = float(accuracy(predict(sub_vars, val_images), val_labels))
      if int(retrain_cfg["epochs"]) > 0:
        start = time.perf_counter()
        sub_vars = retrain_derived_network(
          network,
          sub_vars,
          data,
          retrain_cfg,
          retrain_key,
          progress,
          compiler_options,
          checkpointer=support.checkpointer("retrain", mutator),
        )
        timings["retrain_s"] = time.perf_counter() - start
        summary["retrain_epochs"] = int(retrain_cfg["epochs"])
        summary["derived_val_accuracy_retrained"] = float(accuracy(predict(sub_vars, val_images), val_labels))
        summary["derived_test_accuracy_retrained"] = float(accuracy(predict(sub_vars, test_images), test_labels))
    summary["timings"] = {k: round(v, 4) for k, v in timings.items()}
    if support.summary() is not None:
      summary["checkpoints"] = support.summary()
    return SearchResult(fix_subnet, summary)


FLOPS_PENALTY_KEYS = ("weight", "target", "resource")


def _check_flops_penalty(cfg: Mapping[str, Any] | None) -> dict[str, Any] | None:
  if cfg is None:
    return None
  if not isinstance(cfg, Mapping):
    raise ConfigTypeError(f"flops_penalty must be a dict(weight=..., target=...), got {cfg!r}.")
  check_config_keys(cfg, FLOPS_PENALTY_KEYS, "flops_penalty")
  if "weight" not in cfg:
    raise ConfigError(f"flops_penalty needs a weight (>= 0), got {dict(cfg)!r}.")
  weight, target = cfg["weight"], cfg.get("target", 0.0)
  if not isinstance(weight, (int, float)) or not weight >= 0:
    raise ConfigError(f"flops_penalty weight must be a number >= 0, got {weight!r}.")
  if not isinstance(target, (int, float)) or not target >= 0:
    raise ConfigError(f"flops_penalty target must be a number >= 0 (MFLOPs per image), got {target!r}.")
  resource = cfg.get("resource", "flops")
  if resource not in ("flops", "params"):
    raise ConfigError(f"flops_penalty resource must be 'flops' or 'params', got {resource!r}.")
  return {"weight": float(weight), "target": float(target), "resource": resource}


def darts_cost_table(
  model: nn.Module, variables: Mapping[str, Any], mutator: DiffModuleMutator, sample_input: jax.Array
) -> ResourceTable:
  """The cost table of a DARTS supernet's op groups, every route running all of its edges.

  Routes choose sets of edges, which a per-group table cannot index, so they
  are held at a mixture (zero logits: every edge runs) and every edge's op is
  priced: the table's FLOPs of a derived network count the dropped edges too,
  an upper bound that falls with every op it makes cheaper.

  Example:
    >>> import jax, jax.numpy as jnp
    >>> import jaxmutate as jm
    >>> from jaxmutate.runners.darts import darts_cost_table
    >>> net = jm.DartsBackbone(base_channels=2, num_layers=1, num_nodes=1, num_classes=3,
    ...                        op_names=("zero", "sep_conv_3x3"))
    >>> x = jnp.ones((1, 8, 8, 1))
    >>> variables = jm.init_supernet(net, jax.random.key(0), x)
    >>> mutator = jm.DiffModuleMutator().prepare_from_supernet(variables)
    >>> table = darts_cost_table(net, variables, mutator, x)
    >>> table.groups, bool(table.deltas["flops"][1][1] > 0)  # group 0 is the route
    ((1, 2), True)
  """
  routes = {
    g: jnp.zeros(mutator.group_spec(g).num_choices, jnp.float32)
    for g in mutator.search_groups
    if isinstance(mutator.group_space(g), EdgeSubsetSpace)
  }
  return build_resource_table(model, variables, mutator, sample_input, interactions="none", fixed=routes)


def _metric_names(step: Callable[[], tuple[Any, Mapping[str, Any]]]) -> list[str]:
  """The names of the metrics ``step()`` returns, in their order, from a trace of it (nothing runs).

  The step must come from steps built without ``compiler_options``: a trace
  nests the step's ``jax.jit``, and XLA options are for a top-level one only.
  """
  return list(jax.eval_shape(step)[1])


def _epoch_log_carry(name: str, state: Any, epochs: int, num_metrics: int) -> dict[str, Any]:
  """The resumable state of an epoch-logged architecture search: ``{name: state}``, per-epoch metric sums, and
  the architecture logits and step count at the start and the end of every epoch (rows filled by
  :func:`_with_row`), the groups sorted as a restored dict's are."""
  host_arch = {g: np.asarray(jax.device_get(a)) for g, a in sorted(state.arch_params.items())}
  return {
    name: state,
    "sums": np.zeros((epochs, num_metrics)),
    "arch": {g: np.zeros((epochs + 1, *a.shape), a.dtype) + a for g, a in host_arch.items()},
    "steps": np.full(epochs + 1, int(state.step), np.int64),
  }


def _with_row(buffer: np.ndarray, row: int, value: Any) -> np.ndarray:
  """A copy of ``buffer`` with ``buffer[row] = value`` (a search state's leaves are never changed in place)."""
  buffer = buffer.copy()
  buffer[row] = np.asarray(jax.device_get(value))
  return buffer


class _WithChoices(DartsDiscreteNetwork):
  """The derived network with the supernet call signature ``(x, choices, train)``."""

  def __call__(self, x: jax.Array, choices: Any = None, train: bool = False) -> jax.Array:  # type: ignore[override]
    del choices
    return super().__call__(x, train=train)


def _fields(module: nn.Module) -> dict[str, Any]:
  return {
    f.name: getattr(module, f.name) for f in dataclasses.fields(module) if f.init and f.name not in ("parent", "name")
  }


def retrain_derived_network(
  network: DartsDiscreteNetwork,
  variables: Mapping[str, Any],
  data: Dataset,
  retrain_cfg: Mapping[str, Any],
  key: PRNGKey,
  progress: bool = False,
  compiler_options: Mapping[str, Any] | None = None,
  checkpointer: Checkpointer | None = None,
) -> dict[str, Any]:
  """Fine-tunes a derived DARTS network from its inherited weights on ``data.train``.

  The step is :func:`~jaxmutate.algorithms.make_fixed_subnet_train_step` of
  the network; it runs in the shared :func:`~jaxmutate.runners.train_loop`
  (``keys="fold_in"``: epoch ``e`` shuffles with ``fold_in(key, e)``).

  Args:
    network: the derived network (:func:`~jaxmutate.models.derive_discrete_network`).
    variables: its ``params`` and ``batch_stats`` (e.g. inherited with
      :func:`~jaxmutate.models.discrete_network_variables`).
    data: the data set.
    retrain_cfg: ``epochs``, ``batch_size``, ``optimizer`` (with
      ``weight_decay``/``clip_grad_norm``, see
      :func:`~jaxmutate.algorithms.make_weight_optimizer`).
    key: PRNG key of the shuffles.
    progress: show a progress bar.
    compiler_options: XLA options of the jitted step.
    checkpointer: saves the retraining every ``checkpointer.every_n_steps``
      steps and resumes from its latest checkpoint
      (:func:`~jaxmutate.runners.train_loop`'s); ``None``: no checkpoints.

  Returns:
    The fine-tuned ``{"params": ..., "batch_stats": ...}``.

  Example:
    >>> import jax, jax.numpy as jnp, numpy as np
    >>> import jaxmutate as jm
    >>> from jaxmutate.data import Dataset, Split
    >>> from jaxmutate.runners.darts import retrain_derived_network
    >>> net = jm.DartsBackbone(base_channels=2, num_layers=1, num_nodes=1, num_classes=2,
    ...                        op_names=("zero", "skip_connect"))
    >>> fix_subnet = {"reduce_n2": {"chosen": ["reduce_n2_p0", "reduce_n2_p1"]},
    ...               "reduce_n2_p0": {"chosen": "skip_connect"}, "reduce_n2_p1": {"chosen": "zero"}}
    >>> network = jm.models.derive_discrete_network(net, fix_subnet)
    >>> split = Split(np.ones((8, 4, 4, 1), np.float32), np.arange(8, dtype=np.int32) % 2)
    >>> variables = network.init(jax.random.key(0), split.images[:4])
    >>> cfg = dict(epochs=1, batch_size=4, optimizer=dict(type="sgd", learning_rate=0.1))
    >>> tuned = retrain_derived_network(network, variables, Dataset(split, split, split, 2), cfg, jax.random.key(1))
    >>> bool((tuned["params"]["head"]["bias"] != variables["params"]["head"]["bias"]).any())
    True
  """
  optimizer = make_weight_optimizer(retrain_cfg["optimizer"])
  params, batch_stats = variables["params"], variables.get("batch_stats", {})
  state = TrainState(params, batch_stats, optimizer.init(params), jnp.int32(0))
  step = make_fixed_subnet_train_step(
    _WithChoices(**_fields(network)), {}, optimizer, compiler_options=compiler_options
  )
  state, _ = train_loop(
    lambda s, x, y, k: step(s, x, y),
    state,
    data.train,
    int(retrain_cfg["epochs"]),
    int(retrain_cfg["batch_size"]),
    key,
    keys="fold_in",
    progress=progress,
    desc="retrain derived network",
    checkpointer=checkpointer,
  )
  return {"params": state.params, "batch_stats": state.batch_stats}


MODELS.register_module(name="Darts", module=DARTS)

__all__ = ["DARTS", "darts_cost_table", "retrain_derived_network"]
