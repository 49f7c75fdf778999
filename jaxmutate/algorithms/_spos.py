"""SPOS (Single Path One-Shot) as pure functions, plus the ``SPOS`` search runner.

References:
  Guo et al., *Single Path One-Shot Neural Architecture Search with Uniform
  Sampling*, ECCV 2020. https://arxiv.org/abs/1904.00420
"""

from __future__ import annotations

import time
from collections.abc import Callable, Iterable, Mapping
from pathlib import Path
from typing import Any

import flax.linen as nn
import jax
import jax.numpy as jnp
import numpy as np
import optax

from jaxmutate._typing import GroupChoices, PRNGKey
from jaxmutate.algorithms._base import SearchResult
from jaxmutate.algorithms._common import (
    TrainState,
    apply_in_train_mode,
    build_optimizer,
    classification_loss,
    evaluate_accuracy,
    init_train_state,
    recalibrate_batch_stats,
)
from jaxmutate.mutables._diff import DiffMutableModule
from jaxmutate.mutators._base import ModuleMutator
from jaxmutate.registry import MODELS, build

StepFunction = Callable[[TrainState, jax.Array, jax.Array, PRNGKey], tuple[TrainState, dict[str, jax.Array]]]


def supervised_update(
    model: nn.Module,
    optimizer: optax.GradientTransformation,
    loss_fn: Callable[[jax.Array, jax.Array], jax.Array],
    state: TrainState,
    images: jax.Array,
    labels: jax.Array,
    choices: Mapping[str, Any],
) -> tuple[TrainState, dict[str, jax.Array]]:
  """One optimiser step of the subnet ``choices`` on a labelled batch (BN in train mode).

  Example:
    >>> from jaxmutate.algorithms import classification_loss, supervised_update
    >>> import jax, jax.numpy as jnp, optax
    >>> import jaxmutate as jm
    >>> from jaxmutate.algorithms import init_train_state
    >>> net = jm.SearchableMLP(num_classes=2, width=4, num_layers=1)
    >>> x, y = jnp.ones((4, 3)), jnp.array([0, 1, 0, 1])
    >>> state, variables = init_train_state(net, optax.sgd(0.1), jax.random.key(0), x)
    >>> state, metrics = supervised_update(net, optax.sgd(0.1), classification_loss, state, x, y, {"layers.0": 0})
    >>> int(state.step), sorted(metrics), float(metrics["accuracy"])
    (1, ['accuracy', 'loss'], 0.5)
  """

  def loss_and_stats(params):
    logits, new_stats = apply_in_train_mode(model, params, state.batch_stats, images, choices)
    return loss_fn(logits, labels), (new_stats, (jnp.argmax(logits, -1) == labels).mean())

  (loss, (batch_stats, acc)), grads = jax.value_and_grad(loss_and_stats, has_aux=True)(state.params)
  updates, opt_state = optimizer.update(grads, state.opt_state, state.params)
  params = optax.apply_updates(state.params, updates)
  return TrainState(params, batch_stats, opt_state, state.step + 1), {"loss": loss, "accuracy": acc}


def make_spos_train_step(
    model: nn.Module,
    mutator: ModuleMutator,
    optimizer: optax.GradientTransformation,
    loss_fn: Callable[[jax.Array, jax.Array], jax.Array] = classification_loss,
) -> StepFunction:
  """A jitted SPOS supernet step: sample one subnet from ``key``, one update.

  The subnet is drawn uniformly (``mutator.sample_choices(key)``), so every
  step trains one path; BatchNorm runs in train mode and only the chosen
  candidates' statistics move. One compiled executable serves every subnet.

  Args:
    model: the supernet, called as ``model(x, choices, train=True)``.
    mutator: a prepared one-shot (or NAS) mutator.
    optimizer: the weight optimiser.
    loss_fn: ``loss_fn(logits, labels)``.

  Returns:
    ``step(state, images, labels, key) -> (state, {"loss", "accuracy"})``.

  Example:
    >>> import jax, jax.numpy as jnp, optax
    >>> import jaxmutate as jm
    >>> from jaxmutate.algorithms import init_train_state, make_spos_train_step
    >>> net = jm.models.SearchableConvNet(width=4, num_layers=2)
    >>> x, y = jnp.ones((8, 8, 8, 1)), jnp.zeros(8, jnp.int32)
    >>> state, variables = init_train_state(net, optax.sgd(0.1), jax.random.key(0), x)
    >>> mutator = jm.OneShotModuleMutator().prepare_from_supernet(variables)
    >>> step = make_spos_train_step(net, mutator, optax.sgd(0.1))
    >>> state, metrics = step(state, x, y, jax.random.key(1))
    >>> int(state.step)
    1
  """

  @jax.jit
  def step(state: TrainState, images: jax.Array, labels: jax.Array, key: PRNGKey):
    choices = mutator.set_choices(mutator.sample_choices(key))
    return supervised_update(model, optimizer, loss_fn, state, images, labels, choices)

  return step


def make_fixed_subnet_train_step(
    model: nn.Module,
    choices: Mapping[str, Any],
    optimizer: optax.GradientTransformation,
    loss_fn: Callable[[jax.Array, jax.Array], jax.Array] = classification_loss,
) -> Callable[[TrainState, jax.Array, jax.Array], tuple[TrainState, dict[str, jax.Array]]]:
  """A jitted step that trains one fixed subnet (retraining from scratch).

  The choices are baked in as constants, so the compiled step contains only
  the chosen candidates: it is the hand-written network.

  Example:
    >>> from jaxmutate.algorithms import make_fixed_subnet_train_step
    >>> import jax, jax.numpy as jnp, optax
    >>> import jaxmutate as jm
    >>> from jaxmutate.algorithms import init_train_state
    >>> net = jm.SearchableMLP(num_classes=2, width=4, num_layers=1)
    >>> x, y = jnp.ones((4, 3)), jnp.array([0, 1, 0, 1])
    >>> state, variables = init_train_state(net, optax.sgd(0.1), jax.random.key(0), x)
    >>> step = make_fixed_subnet_train_step(net, {"layers.0": 3}, optax.sgd(0.1))  # the "skip" subnet
    >>> for _ in range(2):
    ...   state, metrics = step(state, x, y)
    >>> int(state.step), metrics["loss"].shape
    (2, ())
  """
  static_choices = {k: np.asarray(v) for k, v in choices.items()}

  @jax.jit
  def step(state: TrainState, images: jax.Array, labels: jax.Array):
    return supervised_update(model, optimizer, loss_fn, state, images, labels, static_choices)

  return step


def make_population_scorer(
    model: nn.Module,
    mutator: ModuleMutator,
    calibration_images: jax.Array | None,
    images: jax.Array,
    labels: jax.Array,
    chunk_size: int = 25,
) -> Callable[[TrainState, dict[int, jax.Array]], np.ndarray]:
  """Rates a stacked population of subnets with one compiled ``vmap``.

  Each subnet gets its own BatchNorm statistics recalibrated on
  ``calibration_images`` (skipped when ``None``), then its top-1 accuracy on
  ``(images, labels)`` is measured. Populations of any size are scored in
  chunks of ``chunk_size`` (the last one padded), so one executable serves
  every population size.

  Returns:
    ``score(state, population) -> accuracies [P]`` (a NumPy array).

  Raises:
    ValueError: ``chunk_size`` < 1.

  Example:
    >>> from jaxmutate.algorithms import make_population_scorer
    >>> import jax, jax.numpy as jnp, optax
    >>> import jaxmutate as jm
    >>> from jaxmutate.algorithms import init_train_state
    >>> net = jm.SearchableMLP(num_classes=2, width=4, num_layers=1)
    >>> x, y = jnp.ones((4, 3)), jnp.array([0, 1, 0, 1])
    >>> state, variables = init_train_state(net, optax.sgd(0.1), jax.random.key(0), x)
    >>> mutator = jm.OneShotModuleMutator().prepare_from_supernet(variables)
    >>> score = make_population_scorer(net, mutator, None, x, y, chunk_size=2)
    >>> scores = score(state, {0: jnp.array([0, 1, 3], jnp.int32)})  # three subnets, two chunks
    >>> scores.shape, bool(((scores >= 0) & (scores <= 1)).all())
    ((3,), True)
  """
  if chunk_size < 1:
    raise ValueError(f"chunk_size must be >= 1, got {chunk_size}.")

  def score_one(state: TrainState, group_choices: GroupChoices) -> jax.Array:
    choices = mutator.set_choices(group_choices)
    batch_stats = state.batch_stats
    if calibration_images is not None:
      batch_stats = recalibrate_batch_stats(model, state.params, batch_stats, choices, calibration_images)
    return evaluate_accuracy(model, state.params, batch_stats, choices, images, labels)

  score_chunk = jax.jit(jax.vmap(score_one, in_axes=(None, 0)))

  def score(state: TrainState, population: dict[int, jax.Array]) -> np.ndarray:
    size = int(next(iter(population.values())).shape[0])
    scores = []
    for start in range(0, size, chunk_size):
      index = np.minimum(np.arange(start, start + chunk_size), size - 1)
      chunk = {g: jnp.asarray(v)[index] for g, v in population.items()}
      scores.append(np.asarray(score_chunk(state, chunk))[: min(chunk_size, size - start)])
    return np.concatenate(scores)

  return score


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
    TypeError: the mutator is not a module mutator, or manages differentiable
      mutables only.

  Example:
    >>> import jaxmutate as jm
    >>> spos = jm.build(dict(type="SPOS", architecture=dict(type="SearchableMLP"), mutator=dict(type="OneShotModuleMutator")))
    >>> type(spos.architecture).__name__
    'SearchableMLP'
  """

  def __init__(self, architecture: nn.Module | Mapping[str, Any], mutator: ModuleMutator | Mapping[str, Any]):
    self.architecture = build(architecture) if isinstance(architecture, Mapping) else architecture
    self.mutator = build(mutator) if isinstance(mutator, Mapping) else mutator
    if not isinstance(self.architecture, nn.Module):
      raise TypeError(f"SPOS: architecture must be a flax.linen.Module, got {type(self.architecture).__name__}.")
    managed = self.mutator.mutable_class_type if isinstance(self.mutator, ModuleMutator) else None
    if managed is None or managed is DiffMutableModule:
      raise TypeError(
          f"SPOS: mutator should be a OneShotModuleMutator or NasMutator, got {type(self.mutator).__name__}."
      )

  def run(self, config: dict[str, Any], work_dir: Path, seed: int, progress: bool = True) -> SearchResult:
    """Trains the supernet, searches, exports; optionally retrains the best subnet.

    Config keys read (all optional but ``model``): ``data`` (``dict(seed=0)``
    for the embedded digits), ``train_cfg`` (``epochs``, ``batch_size``,
    ``optimizer``), ``search_cfg`` (:class:`EvolutionSearchLoop` settings plus
    ``calibrate_sample_num``), ``retrain_cfg`` (``epochs``, ``optimizer``;
    ``epochs=0`` skips it), ``num_random_baseline`` (random subnets rated as a
    baseline).
    """
    from jaxmutate.data import iterate_batches, load_digits
    from jaxmutate.resources import build_resource_table, estimate_resources
    from jaxmutate.search import EvolutionSearchLoop

    work_dir = Path(work_dir)
    timings: dict[str, float] = {}
    data_cfg = dict(config.get("data", {}))
    data_cfg.pop("type", None)
    data = load_digits(**data_cfg)
    train_cfg = dict(epochs=30, batch_size=64, optimizer=dict(type="sgd", learning_rate=0.1, momentum=0.9, nesterov=True))
    train_cfg.update(config.get("train_cfg", {}))
    search_cfg = dict(config.get("search_cfg", {}))
    search_cfg.pop("type", None)
    calibrate_sample_num = int(search_cfg.pop("calibrate_sample_num", 512))
    search_cfg.pop("score_key", None)
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

    start = time.perf_counter()
    state, train_log = train_supernet(
        model, mutator, optimizer, state, data.train, train_cfg["epochs"], train_cfg["batch_size"], train_key, progress,
        iterate_batches,
    )
    timings["supernet_train_s"] = time.perf_counter() - start

    start = time.perf_counter()
    per_image = jnp.asarray(data.train.images[:1])
    table = build_resource_table(model, variables, mutator, per_image)
    timings["resource_table_s"] = time.perf_counter() - start

    calibration = jnp.asarray(data.train.images[:calibrate_sample_num]) if calibrate_sample_num > 0 else None
    val_scorer = make_population_scorer(model, mutator, calibration, jnp.asarray(data.val.images), jnp.asarray(data.val.labels))
    test_scorer = make_population_scorer(model, mutator, calibration, jnp.asarray(data.test.images), jnp.asarray(data.test.labels))
    loop = EvolutionSearchLoop(**search_cfg)
    start = time.perf_counter()
    result = loop.run(search_key, mutator, lambda population: val_scorer(state, population), table, progress)
    timings["search_s"] = time.perf_counter() - start

    best = result.best_choices
    best_population = {g: v[None] for g, v in best.items()}
    best_test = float(test_scorer(state, best_population)[0])
    random_population = jax.vmap(mutator.sample_choices)(jax.random.split(baseline_key, num_random))
    random_test = np.asarray(test_scorer(state, random_population))
    fix_subnet = mutator.export_fix_subnet(best)
    resources = estimate_resources(model, variables, mutator, best, per_image)

    summary: dict[str, Any] = {
        "algorithm": "SPOS",
        "best_val_accuracy": result.best_score,
        "best_test_accuracy": best_test,
        "random_subnets_test_accuracy": {
            "count": num_random,
            "median": float(np.median(random_test)),
            "mean": float(np.mean(random_test)),
            "max": float(np.max(random_test)),
        },
        "chance_accuracy": 1.0 / data.num_classes,
        "best_flops_M_per_image": resources["flops"],
        "best_params_M": resources["params"],
        "num_subnets_evaluated": result.num_evaluated,
        "search_history": result.history,
        "supernet_train": train_log,
        "timings_s": timings,
    }
    if retrain_cfg["epochs"] > 0:
      start = time.perf_counter()
      summary["retrain"] = retrain_subnet(
          model, mutator.set_choices(best), data, retrain_cfg, retrain_key, progress, iterate_batches
      )
      timings["retrain_s"] = time.perf_counter() - start
    return SearchResult(fix_subnet, summary)


def train_supernet(
    model: nn.Module,
    mutator: ModuleMutator,
    optimizer: optax.GradientTransformation,
    state: TrainState,
    split: Any,
    epochs: int,
    batch_size: int,
    key: PRNGKey,
    progress: bool,
    batches: Callable[..., Iterable[tuple[np.ndarray, np.ndarray]]],
) -> tuple[TrainState, list[dict[str, float]]]:
  """Runs SPOS supernet training for ``epochs``; returns the state and a log.

  Example:
    >>> from jaxmutate.algorithms import train_supernet
    >>> import jax, jax.numpy as jnp, optax
    >>> import jaxmutate as jm
    >>> from jaxmutate.algorithms import init_train_state
    >>> net = jm.SearchableMLP(num_classes=2, width=4, num_layers=1)
    >>> x, y = jnp.ones((4, 3)), jnp.array([0, 1, 0, 1])
    >>> state, variables = init_train_state(net, optax.sgd(0.1), jax.random.key(0), x)
    >>> import numpy as np
    >>> from jaxmutate.data import Dataset, Split, iterate_batches
    >>> split = Split(np.ones((8, 3), np.float32), np.arange(8, dtype=np.int32) % 2)
    >>> mutator = jm.OneShotModuleMutator().prepare_from_supernet(variables)
    >>> state, log = train_supernet(net, mutator, optax.sgd(0.1), state, split, epochs=2, batch_size=4,
    ...                             key=jax.random.key(1), progress=False, batches=iterate_batches)
    >>> int(state.step), [sorted(entry) for entry in log]
    (4, [['accuracy', 'epoch', 'loss'], ['accuracy', 'epoch', 'loss']])
  """
  step = make_spos_train_step(model, mutator, optimizer)
  return _train_loop(lambda s, x, y, k: step(s, x, y, k), state, split, epochs, batch_size, key, progress, batches, "supernet")


def _train_loop(step, state, split, epochs, batch_size, key, progress, batches, name):
  log = []
  epoch_iter = range(epochs)
  bar = None
  if progress:
    from tqdm.auto import tqdm

    bar = tqdm(epoch_iter, desc=f"train {name}", unit="epoch")
    epoch_iter = bar
  for epoch in epoch_iter:
    key, shuffle_key = jax.random.split(key)
    losses, accs = [], []
    for images, labels in batches(shuffle_key, split, batch_size):
      key, step_key = jax.random.split(key)
      state, metrics = step(state, jnp.asarray(images), jnp.asarray(labels), step_key)
      losses.append(metrics["loss"])
      accs.append(metrics["accuracy"])
    entry = {"epoch": epoch, "loss": float(np.mean(jax.device_get(losses))), "accuracy": float(np.mean(jax.device_get(accs)))}
    log.append(entry)
    if bar is not None:
      bar.set_postfix(loss=f"{entry['loss']:.3f}", acc=f"{entry['accuracy']:.3f}")
  if bar is not None:
    bar.close()
  return state, log


def retrain_subnet(
    model: nn.Module,
    choices: Mapping[str, Any],
    data: Any,
    retrain_cfg: Mapping[str, Any],
    key: PRNGKey,
    progress: bool,
    batches: Callable[..., Iterable[tuple[np.ndarray, np.ndarray]]],
) -> dict[str, Any]:
  """Trains a fixed subnet from scratch and reports its test accuracy.

  Example:
    >>> import jax, optax
    >>> import jaxmutate as jm
    >>> from jaxmutate.algorithms import retrain_subnet
    >>> import numpy as np
    >>> from jaxmutate.data import Dataset, Split, iterate_batches
    >>> split = Split(np.ones((8, 3), np.float32), np.arange(8, dtype=np.int32) % 2)
    >>> data = Dataset(split, split, split, num_classes=2)
    >>> net = jm.SearchableMLP(num_classes=2, width=4, num_layers=1)
    >>> cfg = dict(epochs=1, batch_size=4, optimizer=dict(type="sgd", learning_rate=0.1))
    >>> report = retrain_subnet(net, {"layers.0": 0}, data, cfg, jax.random.key(0), False, iterate_batches)
    >>> sorted(report), report["epochs"], len(report["log"])
    (['epochs', 'log', 'test_accuracy'], 1, 1)
  """
  init_key, train_key = jax.random.split(key)
  optimizer = build_optimizer(retrain_cfg["optimizer"])
  sample = jnp.asarray(data.train.images[: retrain_cfg["batch_size"]])
  state, _ = init_train_state(model, optimizer, init_key, sample)
  step = make_fixed_subnet_train_step(model, choices, optimizer)
  state, log = _train_loop(
      lambda s, x, y, k: step(s, x, y), state, data.train, retrain_cfg["epochs"], retrain_cfg["batch_size"], train_key, progress, batches, "subnet"
  )
  static_choices = {k: np.asarray(v) for k, v in choices.items()}
  test_accuracy = float(
      evaluate_accuracy(model, state.params, state.batch_stats, static_choices, jnp.asarray(data.test.images), jnp.asarray(data.test.labels))
  )
  return {"epochs": retrain_cfg["epochs"], "test_accuracy": test_accuracy, "log": log}
