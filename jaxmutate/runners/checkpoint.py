"""Checkpoints of the runners' loops with orbax: a pytree state plus a step, the last K kept, resumable bit for bit.

A :class:`Checkpointer` saves any pytree (a train state with its optimiser
state, PRNG keys, a search state...) with JSON metadata (the position in the
epoch, the log so far) under ``directory/<step>``. orbax writes each step into
a temporary folder and renames it when complete, so a process killed while
saving leaves the previous checkpoints intact. Each checkpoint also records

* the *fingerprints* of the config and of the search space that wrote it:
  resuming under another config or space is a :class:`CheckpointMismatchError`,
  never a silent restart;
* the tree structure, shapes and dtypes of the state (a mismatch is the same
  error), and a SHA-256 of every array's bytes: a truncated or damaged
  checkpoint is a :class:`CheckpointCorruptError` naming the step folder.

Configs take ``checkpoint=dict(every_n_steps=N, keep=K)`` (see
:func:`checkpoint_settings`); ``jaxmutate search --resume`` resumes.

Example:
  >>> import tempfile
  >>> import jax, jax.numpy as jnp
  >>> from jaxmutate.runners.checkpoint import Checkpointer
  >>> folder = tempfile.mkdtemp()
  >>> state = {"w": jnp.arange(3.0), "key": jax.random.key(0)}
  >>> saver = Checkpointer(folder, {"config": "abc"}, every_n_steps=1, keep=2)
  >>> for step in (1, 2, 3):
  ...   _ = saver.save(step, state, {"step": step})
  >>> saver.steps()
  [2, 3]
  >>> restored = Checkpointer(folder, {"config": "abc"}, every_n_steps=1, keep=2, resume=True).restore_latest(state)
  >>> restored.step, restored.meta["step"], restored.state["w"].tolist()
  (3, 3, [0.0, 1.0, 2.0])
"""

from __future__ import annotations

import hashlib
import json
import logging
import warnings
import weakref
from collections.abc import Callable, Mapping
from pathlib import Path
from typing import Any, NamedTuple

import jax
import numpy as np

from jaxmutate.errors import (
  CheckpointCorruptError,
  CheckpointExistsError,
  CheckpointMismatchError,
  ConfigError,
  ConfigTypeError,
)
from jaxmutate.registry import check_config_keys

CHECKPOINT_KEYS = ("every_n_steps", "keep")
"""Keys of a config's ``checkpoint`` dict."""


class CheckpointSettings(NamedTuple):
  """A config's ``checkpoint`` dict, checked.

  Attributes:
    every_n_steps: save every this many training steps (``None``: only at the
      end of each phase, e.g. after supernet training).
    keep: how many of the newest checkpoints are kept per phase.

  Example:
    >>> from jaxmutate.runners.checkpoint import CheckpointSettings
    >>> CheckpointSettings(every_n_steps=100, keep=3).keep
    3
  """

  every_n_steps: int | None
  keep: int


def checkpoint_settings(config: Mapping[str, Any], runner: str) -> CheckpointSettings | None:
  """The config's ``checkpoint`` dict, checked; ``None`` when the config has none (no checkpoints).

  ``checkpoint=dict(every_n_steps=N, keep=K)``: save every ``N`` training
  steps (and always at the end of a phase) and keep the last ``K``
  (default 3) checkpoints of each phase.

  Raises:
    ConfigKeyError: an unknown key. ConfigTypeError: not a dict.
    ConfigError: ``every_n_steps`` or ``keep`` not a positive int.

  Example:
    >>> from jaxmutate.runners.checkpoint import checkpoint_settings
    >>> checkpoint_settings({"checkpoint": dict(every_n_steps=50)}, "SPOS")
    CheckpointSettings(every_n_steps=50, keep=3)
    >>> checkpoint_settings({"checkpoint": dict(every_n_steps=0)}, "SPOS")
    Traceback (most recent call last):
    ...
    jaxmutate.errors.ConfigError: SPOS: checkpoint.every_n_steps must be a positive int (or None: only at the end of a phase), got 0.
  """
  value = config.get("checkpoint")
  if value is None:
    return None
  if not isinstance(value, Mapping):
    raise ConfigTypeError(f"{runner}: config 'checkpoint' must be a dict, got {type(value).__name__}.")
  check_config_keys(value, CHECKPOINT_KEYS, f"{runner} config 'checkpoint'")
  every = value.get("every_n_steps")
  if every is not None and (not isinstance(every, int) or isinstance(every, bool) or every < 1):
    raise ConfigError(
      f"{runner}: checkpoint.every_n_steps must be a positive int (or None: only at the end of a phase), got {every!r}."
    )
  keep = value.get("keep", 3)
  if not isinstance(keep, int) or isinstance(keep, bool) or keep < 1:
    raise ConfigError(f"{runner}: checkpoint.keep must be a positive int, got {keep!r}.")
  return CheckpointSettings(every, keep)


def _canonical(value: Any) -> Any:
  """A JSON-ready form with a fixed order: dict keys as sorted strings, tuples as lists."""
  if isinstance(value, Mapping):
    return {str(k): _canonical(v) for k, v in sorted(value.items(), key=lambda item: str(item[0]))}
  if isinstance(value, (list, tuple)):
    return [_canonical(v) for v in value]
  if isinstance(value, (str, int, float, bool)) or value is None:
    return value
  return repr(value)


def _jsonable(value: Any) -> Any:
  """A JSON-ready form that keeps dict order (a resumed log reads as the uninterrupted one)."""
  if isinstance(value, Mapping):
    return {str(k): _jsonable(v) for k, v in value.items()}
  if isinstance(value, (list, tuple)):
    return [_jsonable(v) for v in value]
  if isinstance(value, (str, int, float, bool)) or value is None:
    return value
  return repr(value)


def fingerprint(value: Any) -> str:
  """A short SHA-256 of a JSON-like value (dict order does not matter; tuples equal lists).

  Example:
    >>> from jaxmutate.runners.checkpoint import fingerprint
    >>> fingerprint({"a": 1, "b": (2, 3)}) == fingerprint({"b": [2, 3], "a": 1})
    True
  """
  text = json.dumps(_canonical(value), sort_keys=True)
  return hashlib.sha256(text.encode()).hexdigest()[:16]


def run_fingerprints(config: Mapping[str, Any], seed: int, mutator: Any = None) -> dict[str, str]:
  """The fingerprints a run's checkpoints carry: its config (all but ``checkpoint``) with the seed, and its space.

  The ``checkpoint`` dict itself is left out: saving more or less often does
  not change the results, so a run may resume with other checkpoint settings.

  Args:
    config: the whole config.
    seed: the run's seed.
    mutator: the prepared mutator (its search groups and their spaces);
      ``None``: no space fingerprint.

  Example:
    >>> from jaxmutate.runners.checkpoint import run_fingerprints
    >>> a = run_fingerprints({"train_cfg": {"epochs": 2}, "checkpoint": {"keep": 1}}, seed=0)
    >>> a == run_fingerprints({"train_cfg": {"epochs": 2}}, seed=0), a == run_fingerprints({"train_cfg": {"epochs": 3}}, 0)
    (True, False)
  """
  prints = {"config": fingerprint({"config": {k: v for k, v in config.items() if k != "checkpoint"}, "seed": seed})}
  if mutator is not None:
    groups = mutator.search_groups
    prints["space"] = fingerprint([[g, list(groups[g]), repr(mutator.group_space(g))] for g in sorted(groups)])
  return prints


def _is_key(leaf: Any) -> bool:
  return isinstance(leaf, jax.Array) and jax.dtypes.issubdtype(leaf.dtype, jax.dtypes.prng_key)


def _describe(leaves: list[Any]) -> list[list[Any]]:
  """Shape and dtype of each leaf (keys by their implementation), to check a restore target against."""
  described = []
  for leaf in leaves:
    if _is_key(leaf):
      described.append(["key", list(leaf.shape), str(jax.random.key_impl(leaf))])
    else:
      described.append(["array", list(np.shape(leaf)), str(np.asarray(leaf).dtype)])
  return described


def _digest(arrays: Mapping[str, np.ndarray]) -> str:
  sha = hashlib.sha256()
  for name in sorted(arrays):
    array = np.ascontiguousarray(arrays[name])
    sha.update(f"{name}:{array.dtype}:{array.shape};".encode())
    sha.update(array.tobytes())
  return sha.hexdigest()


class Restored(NamedTuple):
  """A restored checkpoint.

  Attributes:
    step: its step.
    state: the pytree, in the structure (and on the devices) of the template.
    meta: the JSON metadata saved with it.

  Example:
    >>> from jaxmutate.runners.checkpoint import Restored
    >>> Restored(3, {"w": 1.0}, {"epoch": 0}).step
    3
  """

  step: int
  state: Any
  meta: dict[str, Any]


class Checkpointer:
  """Saves a pytree state + step every ``every_n_steps`` steps into ``directory``, keeping the last ``keep``.

  Args:
    directory: the folder of this phase's checkpoints (created on the first
      save).
    fingerprints: what identifies the run (see :func:`run_fingerprints`);
      restoring checks them.
    every_n_steps: :meth:`due` is true every this many steps (``None``:
      never; the owner still saves with ``force``).
    keep: how many checkpoints stay on disk (the newest).
    resume: whether existing checkpoints may be resumed; without it a folder
      that already holds checkpoints is an error (a run never overwrites,
      nor silently continues, another one).

  Raises:
    CheckpointExistsError: ``directory`` holds checkpoints and ``resume`` is
      false.

  Example:
    >>> import tempfile
    >>> import jax.numpy as jnp
    >>> from jaxmutate.runners.checkpoint import Checkpointer
    >>> folder = tempfile.mkdtemp()
    >>> saver = Checkpointer(folder, {"config": "abc"}, every_n_steps=2)
    >>> [saver.due(step) for step in (1, 2)], saver.save(2, {"w": jnp.ones(2)}, {"epoch": 0})
    ([False, True], True)
    >>> try:
    ...   Checkpointer(folder, {"config": "abc"}, every_n_steps=2)
    ... except Exception as error:
    ...   print(type(error).__name__)
    CheckpointExistsError
  """

  def __init__(
    self,
    directory: str | Path,
    fingerprints: Mapping[str, str],
    every_n_steps: int | None = None,
    keep: int = 3,
    resume: bool = False,
  ):
    self.directory = Path(directory).absolute()
    self.fingerprints = dict(fingerprints)
    self.every_n_steps = every_n_steps
    self.keep = keep
    self.resume = resume
    self._manager = None
    if not resume and self.steps():
      raise CheckpointExistsError(
        f"{self.directory} already holds checkpoints (steps {self.steps()}); resume them (jaxmutate search "
        "--resume) or remove the folder to start again."
      )

  def steps(self) -> list[int]:
    """The steps of the complete checkpoints on disk, oldest first (temporary, unfinished folders not counted).

    Example:
      >>> import tempfile
      >>> from jaxmutate.runners.checkpoint import Checkpointer
      >>> Checkpointer(tempfile.mkdtemp(), {}).steps()
      []
    """
    if not self.directory.is_dir():
      return []
    return sorted(int(p.name) for p in self.directory.iterdir() if p.is_dir() and p.name.isdigit())

  def _orbax(self) -> Any:
    if self._manager is None:
      import orbax.checkpoint as ocp

      # orbax logs every save at INFO and warns about its own defaults; the runners report what matters.
      logging.getLogger("absl").setLevel(logging.WARNING)
      options = ocp.CheckpointManagerOptions(max_to_keep=self.keep, enable_async_checkpointing=False, create=True)
      with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        self._manager = ocp.CheckpointManager(self.directory, options=options)
      # Close orbax's manager (its threads and event loop) with this object, or at exit before the interpreter
      # tears down, rather than leaving it to garbage collection at shutdown.
      weakref.finalize(self, self._manager.close)
    return self._manager

  def due(self, step: int) -> bool:
    """Whether ``step`` is a checkpoint step (a multiple of ``every_n_steps``).

    Example:
      >>> from jaxmutate.runners.checkpoint import Checkpointer
      >>> import tempfile
      >>> Checkpointer(tempfile.mkdtemp(), {}, every_n_steps=3).due(6)
      True
    """
    return self.every_n_steps is not None and step > 0 and step % self.every_n_steps == 0

  def save(self, step: int, state: Any, meta: Mapping[str, Any]) -> bool:
    """Writes ``state`` (any pytree of arrays and PRNG keys) and ``meta`` (JSON) as checkpoint ``step``.

    Returns:
      ``True`` (written), ``False`` when a checkpoint of that step exists already.

    Example:
      >>> import tempfile
      >>> import jax.numpy as jnp
      >>> from jaxmutate.runners.checkpoint import Checkpointer
      >>> saver = Checkpointer(tempfile.mkdtemp(), {})
      >>> saver.save(5, {"w": jnp.zeros(1)}, {}), saver.save(5, {"w": jnp.zeros(1)}, {}), saver.steps()
      (True, False, [5])
    """
    import orbax.checkpoint as ocp

    if step in self.steps():
      return False
    leaves, treedef = jax.tree.flatten(state)
    host = jax.device_get([jax.random.key_data(leaf) if _is_key(leaf) else leaf for leaf in leaves])
    arrays = {f"leaf_{i:05d}": np.asarray(leaf) for i, leaf in enumerate(host)}
    record = {
      "meta": _jsonable(dict(meta)),
      "fingerprints": self.fingerprints,
      "treedef": str(treedef),
      "leaves": _describe(leaves),
      "sha256": _digest(arrays),
    }
    with warnings.catch_warnings():
      warnings.simplefilter("ignore")
      self._orbax().save(
        step, args=ocp.args.Composite(arrays=ocp.args.StandardSave(arrays), record=ocp.args.JsonSave(record))
      )
      self._orbax().wait_until_finished()
    return True

  def restore_latest(self, template: Any) -> Restored | None:
    """The newest checkpoint in the structure of ``template``; ``None`` when there is none.

    Args:
      template: a pytree like the saved one (e.g. the freshly initialised
        state); its arrays' shardings place the restored ones.

    Raises:
      CheckpointMismatchError: the checkpoint was written by another config
        or search space, or holds a state of another structure.
      CheckpointCorruptError: the newest checkpoint is partial or damaged.

    Example:
      >>> import tempfile
      >>> import jax.numpy as jnp
      >>> from jaxmutate.runners.checkpoint import Checkpointer
      >>> Checkpointer(tempfile.mkdtemp(), {}, resume=True).restore_latest({"w": jnp.zeros(1)}) is None
      True
    """
    import orbax.checkpoint as ocp

    steps = self.steps()
    if not steps:
      return None
    step = steps[-1]
    folder = self.directory / str(step)
    hint = f"delete {folder} to resume from the checkpoint before it, or the whole folder to start again"
    try:
      with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        record = self._orbax().restore(step, args=ocp.args.Composite(record=ocp.args.JsonRestore()))["record"]
    except Exception as error:  # orbax/tensorstore raise many kinds; all mean this checkpoint is unreadable
      raise CheckpointCorruptError(
        f"checkpoint {folder} is partial or damaged ({type(error).__name__}: {error}); {hint}."
      ) from error
    if not isinstance(record, Mapping) or not {"fingerprints", "treedef", "leaves", "sha256"} <= set(record):
      raise CheckpointCorruptError(f"checkpoint {folder} has no readable record; {hint}.")
    saved = dict(record["fingerprints"])
    for name, value in self.fingerprints.items():
      if saved.get(name) != value:
        raise CheckpointMismatchError(
          f"checkpoint {folder} was written by another {name} (fingerprint {saved.get(name)!r}, this run's is "
          f"{value!r}); resume with the config, seed and search space that wrote it, or use another work dir."
        )
    leaves, treedef = jax.tree.flatten(template)
    expected = _describe(leaves)
    if record["treedef"] != str(treedef) or record["leaves"] != expected:
      raise CheckpointMismatchError(
        f"checkpoint {folder} holds a state of another structure than this run's (saved {len(record['leaves'])} "
        f"arrays, this run has {len(expected)}, or their shapes/dtypes differ); resume with the config that wrote it."
      )
    try:
      with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        restored = self._orbax().restore(step, args=ocp.args.Composite(arrays=ocp.args.StandardRestore()))["arrays"]
      arrays = {name: np.asarray(restored[name]) for name in (f"leaf_{i:05d}" for i in range(len(leaves)))}
    except Exception as error:  # as above: a missing or truncated array file
      raise CheckpointCorruptError(
        f"checkpoint {folder} is partial or damaged ({type(error).__name__}: {error}); {hint}."
      ) from error
    if _digest(arrays) != record["sha256"]:
      raise CheckpointCorruptError(f"checkpoint {folder}: its arrays do not match their saved SHA-256; {hint}.")
    values = []
    for i, leaf in enumerate(leaves):
      array = arrays[f"leaf_{i:05d}"]
      if _is_key(leaf):
        value = jax.random.wrap_key_data(array, impl=jax.random.key_impl(leaf))
        value = jax.device_put(value, leaf.sharding)
      elif isinstance(leaf, jax.Array):
        value = jax.device_put(array, leaf.sharding)
      else:
        value = array
      values.append(value)
    return Restored(step, jax.tree.unflatten(treedef, values), dict(record.get("meta") or {}))


def resumable_loop(
  step: Callable[[int, Any], Any],
  state: Any,
  num_steps: int,
  checkpointer: Checkpointer | None = None,
) -> tuple[Any, int | None]:
  """``state = step(i, state)`` for ``i`` in ``range(num_steps)``, checkpointed and resumed: any "pytree state + step" loop.

  The loop of a search whose state is a pytree (population, scores,
  candidates, keys: one generation per ``step``) or of any other pure
  iteration: with a ``checkpointer`` the state is saved after every step
  ``checkpointer.due`` names and after the last one, and a checkpointer
  that holds one resumes from it. ``step`` must be a deterministic function
  of ``(i, state)`` (keys inside the state, e.g. ``fold_in(key, i)``), so a
  resumed run ends with the bits of one never interrupted.

  Args:
    step: ``step(i, state) -> state``.
    state: the initial state (also the template of a restore).
    num_steps: how many steps in all.
    checkpointer: saves and resumes (``None``: a plain loop).

  Returns:
    ``(state, resumed_from)``: the final state, and the step the loop
    resumed from (``None``: it started from ``state``).

  Raises:
    CheckpointMismatchError, CheckpointCorruptError: as
      :meth:`Checkpointer.restore_latest`.

  Example:
    >>> import tempfile
    >>> import jax, jax.numpy as jnp
    >>> from jaxmutate.runners.checkpoint import Checkpointer, resumable_loop
    >>> def generation(i, state):  # a toy search: keep the best of fresh random scores
    ...   key, best = state
    ...   return key, jnp.maximum(best, jax.random.uniform(jax.random.fold_in(key, i), (4,)).max())
    >>> folder = tempfile.mkdtemp()
    >>> start = (jax.random.key(0), jnp.float32(0.0))
    >>> whole, _ = resumable_loop(generation, start, 6)
    >>> _ = resumable_loop(generation, start, 4, Checkpointer(folder, {}, every_n_steps=2))  # stopped after 4
    >>> resumed, resumed_from = resumable_loop(generation, start, 6, Checkpointer(folder, {}, 2, resume=True))
    >>> resumed_from, bool(resumed[1] == whole[1])
    (4, True)
  """
  first, resumed_from = 0, None
  if checkpointer is not None:
    restored = checkpointer.restore_latest(state)
    if restored is not None:
      state, first, resumed_from = restored.state, restored.step, restored.step
  for i in range(first, num_steps):
    state = step(i, state)
    if checkpointer is not None and (checkpointer.due(i + 1) or i + 1 == num_steps):
      checkpointer.save(i + 1, state, {"step": i + 1})
  return state, resumed_from


__all__ = [
  "CHECKPOINT_KEYS",
  "CheckpointSettings",
  "Checkpointer",
  "Restored",
  "checkpoint_settings",
  "fingerprint",
  "resumable_loop",
  "run_fingerprints",
]
