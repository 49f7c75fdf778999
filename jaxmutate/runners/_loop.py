"""The one supervised training loop of the runners: epochs of shuffled batches, a progress bar, a log."""

from __future__ import annotations

from collections.abc import Callable, Iterable, Mapping, Sequence
from typing import Any, Literal, TypeVar

import jax
import jax.numpy as jnp
import numpy as np

from jaxmutate.data import Split, iterate_batches
from jaxmutate.errors import ConfigError
from jaxmutate.typing import PRNGKey

State = TypeVar("State")
Step = Callable[[State, jax.Array, jax.Array, PRNGKey], tuple[State, Mapping[str, jax.Array]]]
"""``step(state, images, labels, key) -> (state, metrics)``: one jitted update."""
Batches = Callable[[PRNGKey, Split, int], Iterable[tuple[np.ndarray, np.ndarray]]]
"""``batches(shuffle_key, split, batch_size)`` yields ``(images, labels)`` (see ``iterate_batches``)."""


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
) -> tuple[State, list[dict[str, float]]]:
  """Runs ``step`` over ``epochs`` shuffled passes of ``split``; returns the state and a per-epoch log.

  How ``key`` becomes the shuffle key of each epoch and the key of each step
  is fixed by ``keys``, so a run is reproducible from its seed:

  * ``"split"``: a chain; each epoch ``key, shuffle = split(key)``, then each
    step ``key, step_key = split(key)`` (SPOS supernet and subnet training).
  * ``"fold_in"``: epoch ``e`` shuffles with ``fold_in(key, e)``, step ``i``
    of it gets ``fold_in(fold_in(key, e), i)`` (DARTS retraining).

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

  Returns:
    ``(state, log)``: ``log[e]`` is ``{"epoch": e, name: mean over the
    epoch's steps, ...}`` for each logged metric.

  Raises:
    ConfigError: (a ``ValueError``) ``keys`` is neither ``"split"`` nor
      ``"fold_in"``.

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
  """
  if keys not in ("split", "fold_in"):
    raise ConfigError(f"train_loop: keys must be 'split' or 'fold_in', got {keys!r}.")
  log: list[dict[str, float]] = []
  epoch_iter: Iterable[int] = range(epochs)
  bar = None
  if progress:
    from tqdm.auto import tqdm

    bar = tqdm(epoch_iter, desc=desc, unit="epoch")
    epoch_iter = bar
  for epoch in epoch_iter:
    if keys == "split":
      key, shuffle_key = jax.random.split(key)
    else:
      shuffle_key = jax.random.fold_in(key, epoch)
    values: dict[str, list[jax.Array]] = {}
    for index, (images, labels) in enumerate(batches(shuffle_key, split, batch_size)):
      if keys == "split":
        key, step_key = jax.random.split(key)
      else:
        step_key = jax.random.fold_in(shuffle_key, index)
      state, step_metrics = step(state, jnp.asarray(images), jnp.asarray(labels), step_key)
      for name in step_metrics if metrics is None else metrics:
        values.setdefault(name, []).append(step_metrics[name])
    # One device-to-host copy per epoch, not per step: steps stay asynchronous.
    entry: dict[str, Any] = {"epoch": epoch}
    entry.update({name: float(np.mean(jax.device_get(v))) for name, v in values.items()})
    log.append(entry)
    if bar is not None:
      bar.set_postfix({name: f"{value:.3f}" for name, value in entry.items() if name != "epoch"})
  if bar is not None:
    bar.close()
  return state, log
