"""The one supervised training loop of the runners: epochs of shuffled batches, a progress bar, a log.

The loop can save checkpoints every N steps and resume from them bit for bit
(:class:`~jaxmutate.runners.checkpoint.Checkpointer`), place each batch on a
device mesh (data parallelism, :mod:`jaxmutate.sharding`), and stops with a
:class:`~jaxmutate.errors.NonFiniteLossError` (or skips the step) when the
loss is NaN or infinite.
"""

from __future__ import annotations

import itertools
from collections.abc import Callable, Iterable, Mapping, Sequence
from typing import Any, Literal, TypeVar

import jax
import jax.numpy as jnp
import numpy as np

from jaxmutate.data import Split, iterate_batches
from jaxmutate.errors import ConfigError, NonFiniteLossError
from jaxmutate.runners.checkpoint import Checkpointer
from jaxmutate.typing import PRNGKey

State = TypeVar("State")
Step = Callable[[State, jax.Array, jax.Array, PRNGKey], tuple[State, Mapping[str, jax.Array]]]
"""``step(state, images, labels, key) -> (state, metrics)``: one jitted update."""
Batches = Callable[[PRNGKey, Split, int], Iterable[tuple[np.ndarray, np.ndarray]]]
"""``batches(shuffle_key, split, batch_size)`` yields ``(images, labels)`` (see ``iterate_batches``)."""
PlaceBatch = Callable[[np.ndarray, np.ndarray], tuple[jax.Array, jax.Array]]
"""``place(images, labels) -> (images, labels)`` on the devices (e.g. split over a mesh's data axis)."""
NONFINITE_POLICIES = ("raise", "skip")
"""What a training loop does when its loss is NaN or infinite."""


def train_loop(
  step: Step,
  state: State,
  split: Split,
  epochs: int,
  batch_size: int,
  key: PRNGKey,
  *,
  keys: Literal["split", "fold_in"] = "split",
  batches: Batches = iterate_batches,
  metrics: Sequence[str] | None = None,
  progress: bool = False,
  desc: str = "train",
  checkpointer: Checkpointer | None = None,
  on_nonfinite: Literal["raise", "skip"] = "raise",
  finite_metric: str = "loss",
  describe_step: Callable[[PRNGKey], Any] | None = None,
  place_batch: PlaceBatch | None = None,
) -> tuple[State, list[dict[str, float]]]:
  """Runs ``step`` over ``epochs`` shuffled passes of ``split``; returns the state and a per-epoch log.

  How ``key`` becomes the shuffle key of each epoch and the key of each step
  is fixed by ``keys``, so a run is reproducible from its seed:

  * ``"split"``: a chain; each epoch ``key, shuffle = split(key)``, then each
    step ``key, step_key = split(key)`` (SPOS supernet and subnet training).
  * ``"fold_in"``: epoch ``e`` shuffles with ``fold_in(key, e)``, step ``i``
    of it gets ``fold_in(fold_in(key, e), i)`` (DARTS retraining).

  **Checkpoints.** With a ``checkpointer`` the loop saves the state, the key
  chain, the epoch's shuffle key, the position in the epoch and the log so
  far every ``checkpointer.every_n_steps`` steps and once at the end; when
  the checkpointer holds a checkpoint (a resumed run) the loop starts from
  it, skipping the batches of the epoch already done, so a run killed at any
  point and resumed ends with the same bits as one never interrupted.

  **Non-finite loss.** The ``finite_metric`` of every step is checked when
  the loop reads the metrics anyway (at the end of each epoch and before a
  checkpoint, so no step waits for the device and no checkpoint holds a
  broken state). ``on_nonfinite="raise"`` stops with a
  :class:`~jaxmutate.errors.NonFiniteLossError` naming the first bad step
  and (with ``describe_step``) its subnet; ``"skip"`` keeps the state from
  before each bad step (a ``where`` inside the jitted step), leaves it out of
  the epoch's means and counts it in the log's ``nonfinite_skipped``.

  Args:
    step: ``step(state, images, labels, key) -> (state, metrics)``; the
      metrics are scalars (e.g. ``{"loss", "accuracy"}``).
    state: the initial state (any pytree the step takes).
    split: the training images and labels.
    epochs: number of passes (0: the state comes back unchanged).
    batch_size: images per step.
    key: PRNG key of the shuffles and the steps.
    keys: ``"split"`` or ``"fold_in"``, see above.
    batches: the batch iterator (default :func:`jaxmutate.data.iterate_batches`).
    metrics: the metrics to log, in this order (default: every metric the
      step returns, in its order; a jitted step returns them sorted by name).
    progress: show a tqdm bar over the epochs with the last epoch's metrics.
    desc: the bar's label.
    checkpointer: saves and resumes the loop (``None``: no checkpoints).
    on_nonfinite: ``"raise"`` or ``"skip"``, see above.
    finite_metric: the metric checked (a step that does not return it is
      not checked with ``"raise"``; ``"skip"`` needs it).
    describe_step: ``step_key ->`` what the error message shows of the bad
      step (the runners: the subnet it trained).
    place_batch: puts a batch on the devices (default ``jnp.asarray``; e.g.
      :func:`jaxmutate.sharding.shard_batch` over a mesh).

  Returns:
    ``(state, log)``: ``log[e]`` is ``{"epoch": e, name: mean over the
    epoch's steps, ...}`` for each logged metric.

  Raises:
    ConfigError: (a ``ValueError``) ``keys`` is neither ``"split"`` nor
      ``"fold_in"``, ``on_nonfinite`` neither ``"raise"`` nor ``"skip"``, or
      ``"skip"`` with a step that does not return ``finite_metric``.
    NonFiniteLossError: (a ``FloatingPointError``) with ``"raise"``, a step's
      ``finite_metric`` was NaN or infinite.

  Example:
    >>> import jax, jax.numpy as jnp, numpy as np
    >>> from jaxmutate.data import Split
    >>> from jaxmutate.runners import train_loop
    >>> split = Split(np.ones((8, 3), np.float32), np.arange(8, dtype=np.int32) % 2)
    >>> def step(total, images, labels, key):  # counts the images it sees
    ...   return total + images.shape[0], {"batch": jnp.float32(images.shape[0])}
    >>> total, log = train_loop(step, 0, split, epochs=2, batch_size=4, key=jax.random.key(0))
    >>> total, log
    (16, [{'epoch': 0, 'batch': 4.0}, {'epoch': 1, 'batch': 4.0}])
    >>> def diverging(w, images, labels, key):  # the loss overflows at the second step
    ...   return w * 1e30, {"loss": w * 1e30}
    >>> try:
    ...   train_loop(diverging, jnp.float32(1.0), split, epochs=2, batch_size=4, key=jax.random.key(0))
    ... except FloatingPointError as error:
    ...   print(error)
    train: loss is inf at step 1 (epoch 0, batch 1); lower the learning rate, or set on_nonfinite='skip' to skip such steps.
  """
  if keys not in ("split", "fold_in"):
    raise ConfigError(f"train_loop: keys must be 'split' or 'fold_in', got {keys!r}.")
  if on_nonfinite not in NONFINITE_POLICIES:
    raise ConfigError(f"train_loop: on_nonfinite must be 'raise' or 'skip', got {on_nonfinite!r}.")
  skip = on_nonfinite == "skip"
  run_step = _skipping(step, finite_metric) if skip else step
  place = place_batch or (lambda images, labels: (jnp.asarray(images), jnp.asarray(labels)))

  log: list[dict[str, Any]] = []
  global_step = 0
  resume_at: dict[str, Any] | None = None
  shuffle_key = key
  if checkpointer is not None:
    restored = checkpointer.restore_latest({"state": state, "key": key, "shuffle_key": key})
    if restored is not None:
      state, key, shuffle_key = restored.state["state"], restored.state["key"], restored.state["shuffle_key"]
      resume_at = restored.meta
      global_step = int(resume_at["step"])
      log = [dict(entry) for entry in resume_at["log"]]
  first_epoch = int(resume_at["epoch"]) if resume_at is not None else 0

  epoch_iter: Iterable[int] = range(first_epoch, epochs)
  bar = None
  if progress:
    from tqdm.auto import tqdm

    bar = tqdm(epoch_iter, desc=desc, unit="epoch", initial=first_epoch, total=epochs)
    epoch_iter = bar
  for epoch in epoch_iter:
    values: dict[str, list[Any]] = {}
    # (step, batch, step key, finite_metric) of the steps not checked yet; with "skip": whether each step applied.
    pending: list[tuple[int, int, PRNGKey, jax.Array]] = []
    finite: list[Any] = []
    first_index = 0
    if resume_at is not None and int(resume_at["epoch"]) == epoch:
      first_index = int(resume_at["index"])
      values = {
        name: [np.asarray(v, resume_at["dtypes"][name]) for v in vs] for name, vs in resume_at["values"].items()
      }
      finite = [np.asarray(v) for v in resume_at["finite"]]
    elif keys == "split":
      key, shuffle_key = jax.random.split(key)
    else:
      shuffle_key = jax.random.fold_in(key, epoch)
    resume_at = None
    batch_iter = itertools.islice(enumerate(batches(shuffle_key, split, batch_size)), first_index, None)
    for index, (images, labels) in batch_iter:
      if keys == "split":
        key, step_key = jax.random.split(key)
      else:
        step_key = jax.random.fold_in(shuffle_key, index)
      images, labels = place(images, labels)
      if skip:
        state, step_metrics, ok = run_step(state, images, labels, step_key)
        finite.append(ok)
      else:
        state, step_metrics = run_step(state, images, labels, step_key)
        if finite_metric in step_metrics:
          pending.append((global_step, index, step_key, step_metrics[finite_metric]))
      for name in step_metrics if metrics is None else metrics:
        values.setdefault(name, []).append(step_metrics[name])
      global_step += 1
      if checkpointer is not None and checkpointer.due(global_step):
        if not skip:
          _check_finite(pending, epoch, finite_metric, desc, describe_step)
        _save(checkpointer, global_step, state, key, shuffle_key, epoch, index + 1, log, values, finite)
    if not skip:
      _check_finite(pending, epoch, finite_metric, desc, describe_step)
    # One device-to-host copy per epoch, not per step: steps stay asynchronous.
    entry: dict[str, Any] = {"epoch": epoch}
    kept = np.asarray(jax.device_get(finite), bool) if skip else None
    for name, v in values.items():
      host = np.asarray(jax.device_get(v))
      host = host[kept] if kept is not None else host
      entry[name] = float(np.mean(host)) if host.size else float("nan")
    if skip:
      entry["nonfinite_skipped"] = int((~kept).sum())
    log.append(entry)
    if bar is not None:
      bar.set_postfix({name: f"{value:.3f}" for name, value in entry.items() if name != "epoch"})
  if bar is not None:
    bar.close()
  if checkpointer is not None:
    _save(checkpointer, global_step, state, key, shuffle_key, epochs, 0, log, {}, [])
  return state, log


class _BatchReader:
  """Batch ``index`` of pass ``p`` of a batch iterator: read in order, restarted mid-pass when a loop resumes.

  The step loops that checkpoint through ``resumable_loop`` number their
  steps globally; this maps a step back to its batch without keeping a
  pass's batches in memory: consecutive reads advance one iterator, any other
  read (the first one after a resume) starts the pass again and skips to
  ``index``. ``make(p)`` returns the iterator of pass ``p``, e.g.
  ``iterate_batches(fold_in(key, p), split, batch_size)``; e.g. with
  ``make = lambda p: iter(range(10 * p, 10 * p + 3))`` the reads ``(0, 0),
  (0, 1), (1, 2), (2, 0)`` give ``0, 1, 12, 20``.
  """

  def __init__(self, make: Callable[[int], Iterable[Any]]):
    self.make = make
    self._next: tuple[int, int] | None = None
    self._batches: Any = None

  def __call__(self, p: int, index: int) -> Any:
    if self._next != (p, index):
      self._batches = itertools.islice(iter(self.make(p)), index, None)
    self._next = (p, index + 1)
    return next(self._batches)


def _skipping(step: Step, metric: str) -> Callable[..., tuple[Any, Mapping[str, jax.Array], jax.Array]]:
  """``step`` that keeps the old state when its ``metric`` is not finite, and says whether it applied."""

  @jax.jit
  def guarded(state, images, labels, key):
    new_state, step_metrics = step(state, images, labels, key)
    if metric not in step_metrics:
      raise ConfigError(
        f"train_loop: on_nonfinite='skip' checks the metric {metric!r}, but the step returns only "
        f"{sorted(step_metrics)}; pass finite_metric=."
      )
    ok = jnp.isfinite(step_metrics[metric])
    return jax.tree.map(lambda new, old: jnp.where(ok, new, old), new_state, state), step_metrics, ok

  return guarded


def _check_finite(
  pending: list[tuple[int, int, PRNGKey, jax.Array]],
  epoch: int,
  metric: str,
  desc: str,
  describe_step: Callable[[PRNGKey], Any] | None,
) -> None:
  """Raises for the first non-finite value among the pending steps, then forgets them (they are checked)."""
  if not pending:
    return
  host = np.asarray(jax.device_get([value for *_, value in pending]), np.float64)
  bad = np.flatnonzero(~np.isfinite(host))
  if bad.size:
    global_step, index, step_key, _ = pending[int(bad[0])]
    subnet = f", training subnet {describe_step(step_key)}" if describe_step is not None else ""
    raise NonFiniteLossError(
      f"{desc}: {metric} is {host[bad[0]]} at step {global_step} (epoch {epoch}, batch {index}){subnet}; "
      "lower the learning rate, or set on_nonfinite='skip' to skip such steps."
    )
  pending.clear()


def _save(
  checkpointer: Checkpointer,
  global_step: int,
  state: Any,
  key: PRNGKey,
  shuffle_key: PRNGKey,
  epoch: int,
  index: int,
  log: list[dict[str, Any]],
  values: Mapping[str, list[Any]],
  finite: list[Any],
) -> None:
  """One checkpoint: the arrays in the state tree, the position and the epoch's metrics so far as JSON."""
  host = {name: np.asarray(jax.device_get(v)) for name, v in values.items()}
  meta = {
    "step": global_step,
    "epoch": epoch,
    "index": index,
    "log": log,
    # float(float32) is exact, so the epoch means of a resumed run are those of an uninterrupted one.
    "values": {name: v.tolist() for name, v in host.items()},
    "dtypes": {name: str(v.dtype) for name, v in host.items()},
    "finite": [bool(x) for x in jax.device_get(finite)],
  }
  checkpointer.save(global_step, {"state": state, "key": key, "shuffle_key": shuffle_key}, meta)
