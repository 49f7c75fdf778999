"""What a run needs besides its algorithm: checkpoints per phase, a device mesh, the non-finite-loss policy.

The runners read three config entries through this module:
``checkpoint=dict(every_n_steps=N, keep=K)`` (:class:`RunSupport`,
:mod:`jaxmutate.runners.checkpoint`; every runner: SPOS, AutoSlim,
SlimmableNetwork, DARTS, DSNAS, Prune), ``sharding=dict(population=P, data=D)``
(:func:`sharding_mesh`, :mod:`jaxmutate.sharding`) and
``train_cfg.on_nonfinite`` (:func:`nonfinite_policy`; these two: SPOS, AutoSlim,
SlimmableNetwork).
"""

from __future__ import annotations

from collections.abc import Mapping
from pathlib import Path
from typing import Any

import jax
import numpy as np

from jaxmutate.errors import ConfigError, ConfigTypeError, ShardingError
from jaxmutate.registry import check_config_keys
from jaxmutate.runners.checkpoint import Checkpointer, checkpoint_settings, run_fingerprints
from jaxmutate.sharding import make_mesh, replicate, shard_batch

SHARDING_KEYS = ("population", "data")
"""Keys of a config's ``sharding`` dict: devices along the mesh's population and data axes."""
NONFINITE_KEY = "on_nonfinite"
"""The training sections' key that says what a non-finite loss does: ``"raise"`` (default) or ``"skip"``."""
RUN_CONFIG_KEYS = ("checkpoint", "sharding")
"""Top-level keys of the runners that checkpoint and shard (SPOS, AutoSlim, SlimmableNetwork)."""


class RunSupport:
  """What a run needs besides its algorithm: its checkpointers (one per phase) and its device mesh.

  Built from the config's ``checkpoint`` dict (:func:`~jaxmutate.runners.checkpoint.checkpoint_settings`;
  none: no checkpoints) and ``sharding`` dict (``dict(population=P, data=D)``:
  a :func:`~jaxmutate.sharding.make_mesh` mesh; none: one device, no mesh).
  Checkpoints live in ``work_dir/checkpoints/<phase>``.

  Args:
    config: the whole config.
    runner: the runner's name, for messages.
    work_dir: the run's folder.
    seed: the run's seed (part of the config fingerprint).
    resume: resume from the checkpoints in ``work_dir`` (without it, existing
      checkpoints are an error).

  Raises:
    ConfigError: ``resume`` without a ``checkpoint`` dict; a bad ``sharding``
      dict (ConfigKeyError for an unknown key). ShardingError: a mesh larger
      than the devices. CheckpointExistsError: ``work_dir`` holds checkpoints
      and ``resume`` is false.

  Example:
    >>> import tempfile
    >>> from jaxmutate.runners.support import RunSupport
    >>> support = RunSupport({"checkpoint": dict(every_n_steps=10)}, "SPOS", tempfile.mkdtemp(), seed=0)
    >>> support.checkpointer("supernet").every_n_steps, support.mesh is None
    (10, True)
  """

  def __init__(self, config: Mapping[str, Any], runner: str, work_dir: str | Path, seed: int, resume: bool = False):
    self.config = config
    self.runner = runner
    self.work_dir = Path(work_dir)
    self.seed = seed
    self.resume = resume
    self.settings = checkpoint_settings(config, runner)
    if resume and self.settings is None:
      raise ConfigError(
        f"{runner}: resuming needs the config's checkpoint dict (e.g. checkpoint=dict(every_n_steps=100, keep=3)), "
        "the one of the run that wrote the checkpoints."
      )
    self.mesh = sharding_mesh(config, runner)
    self.resumed_from: dict[str, int | None] = {}
    if self.settings is not None and not resume:
      # Before any work: a folder that holds another run's checkpoints is refused up front.
      root = self.work_dir / "checkpoints"
      for phase in sorted(p.name for p in root.iterdir() if p.is_dir()) if root.is_dir() else ():
        Checkpointer(root / phase, {}, resume=False)

  def checkpointer(self, phase: str, mutator: Any = None, every_n_steps: int | None = None) -> Checkpointer | None:
    """The checkpointer of ``phase`` (``None`` without a ``checkpoint`` dict); ``mutator`` adds the space's fingerprint.

    ``every_n_steps`` overrides the config's for this phase (the search saves
    every generation: one generation rates a whole population, worth far more
    than the save).

    Example:
      >>> import tempfile
      >>> from jaxmutate.runners.support import RunSupport
      >>> RunSupport({}, "SPOS", tempfile.mkdtemp(), seed=0).checkpointer("supernet") is None
      True
    """
    if self.settings is None:
      return None
    saver = Checkpointer(
      self.work_dir / "checkpoints" / phase,
      run_fingerprints(self.config, self.seed, mutator),
      every_n_steps if every_n_steps is not None else self.settings.every_n_steps,
      self.settings.keep,
      self.resume,
    )
    steps = saver.steps()
    self.resumed_from[phase] = steps[-1] if steps else None
    return saver

  def replicate(self, tree: Any) -> Any:
    """``tree`` on every device of the mesh (unchanged without one).

    Example:
      >>> import tempfile
      >>> from jaxmutate.runners.support import RunSupport
      >>> RunSupport({}, "SPOS", tempfile.mkdtemp(), seed=0).replicate({"w": 1.0})
      {'w': 1.0}
    """
    return tree if self.mesh is None else replicate(self.mesh, tree)

  def place_batch(self, batch_size: int, section: str = "train_cfg") -> Any:
    """The ``place_batch`` of :func:`~jaxmutate.runners.train_loop`: split over the data axis (``None`` without a mesh).

    With several processes (``jax.distributed.initialize``) every process
    draws the same global batch of ``batch_size`` images and passes its own
    contiguous slice, so the global batch is the one a single process trains on.

    Raises:
      ShardingError: the mesh's data axis does not divide ``batch_size``.

    Example:
      >>> import tempfile
      >>> from jaxmutate.runners.support import RunSupport
      >>> support = RunSupport({"sharding": dict(population=1, data=1)}, "SPOS", tempfile.mkdtemp(), seed=0)
      >>> images, labels = support.place_batch(4)(np.ones((4, 2)), np.zeros(4))
      >>> images.shape
      (4, 2)
    """
    if self.mesh is None:
      return None
    mesh = self.mesh
    processes, me = jax.process_count(), jax.process_index()
    ways = int(np.lcm(mesh.shape["data"], processes))
    if batch_size % ways:
      raise ShardingError(
        f"{self.runner}: {section}.batch_size {batch_size} is not a multiple of the mesh's data axis "
        f"({mesh.shape['data']} devices) and of the {processes} processes; sharding={dict(self.config['sharding'])}."
      )
    share = batch_size // processes

    def place(images: np.ndarray, labels: np.ndarray) -> tuple[jax.Array, jax.Array]:
      # Every process draws the same global batch; each hands over its own slice, in process order.
      mine = slice(me * share, (me + 1) * share)
      return shard_batch(mesh, (np.asarray(images)[mine], np.asarray(labels)[mine]))

    return place

  def summary(self) -> dict[str, Any] | None:
    """What ``summary.json`` says of the checkpoints: their folder and the step each phase resumed from.

    Example:
      >>> import tempfile
      >>> from jaxmutate.runners.support import RunSupport
      >>> RunSupport({}, "SPOS", tempfile.mkdtemp(), seed=0).summary() is None
      True
    """
    if self.settings is None:
      return None
    return {
      "dir": str(self.work_dir / "checkpoints"),
      "every_n_steps": self.settings.every_n_steps,
      "keep": self.settings.keep,
      "resumed_from": dict(self.resumed_from),
    }


def sharding_mesh(config: Mapping[str, Any], runner: str) -> Any:
  """The mesh of the config's ``sharding=dict(population=P, data=D)`` (``None`` without the dict).

  Raises:
    ConfigKeyError: an unknown key. ConfigTypeError: not a dict.
    ShardingError: (a ``ConfigError``) a size below 1 or more devices than there are.

  Example:
    >>> from jaxmutate.runners.support import sharding_mesh
    >>> dict(sharding_mesh({"sharding": dict(population=1, data=1)}, "SPOS").shape)
    {'population': 1, 'data': 1}
  """
  value = config.get("sharding")
  if value is None:
    return None
  if not isinstance(value, Mapping):
    raise ConfigTypeError(f"{runner}: config 'sharding' must be a dict, got {type(value).__name__}.")
  check_config_keys(value, SHARDING_KEYS, f"{runner} config 'sharding'")
  try:
    return make_mesh(population=value.get("population", 1), data=value.get("data"))
  except ShardingError as error:
    raise ShardingError(f"{runner}: config sharding={dict(value)}: {error}") from error


def nonfinite_policy(section: Mapping[str, Any], name: str, runner: str) -> str:
  """A training section's ``on_nonfinite`` (default ``"raise"``), checked.

  Raises:
    ConfigError: neither ``"raise"`` nor ``"skip"``.

  Example:
    >>> from jaxmutate.runners.support import nonfinite_policy
    >>> nonfinite_policy({"on_nonfinite": "skip"}, "train_cfg", "SPOS")
    'skip'
  """
  value = section.get(NONFINITE_KEY, "raise")
  if value not in ("raise", "skip"):
    raise ConfigError(f"{runner}: {name}.on_nonfinite must be 'raise' or 'skip', got {value!r}.")
  return value


__all__ = ["NONFINITE_KEY", "RUN_CONFIG_KEYS", "SHARDING_KEYS", "RunSupport", "nonfinite_policy", "sharding_mesh"]
