"""When to prune and how much: MMRazor's ``ItePruneAlgorithm`` schedule and GroupFisher's one-at-a-time pruning.

Both are pure: the schedule is a function of the step, GroupFisher's state is
a pytree of accumulated importance that the caller threads through its loop.

References:
  MMRazor, ``mmrazor/models/algorithms/pruning/ite_prune_algorithm.py``.
  Liu et al., *Group Fisher Pruning for Practical Network Compression*, ICML 2021.
  https://arxiv.org/abs/2108.00708
"""

from __future__ import annotations

import dataclasses
from collections.abc import Mapping, Sequence
from typing import Any, NamedTuple

import jax
import jax.numpy as jnp
import numpy as np

from jaxmutate.analysis import ChannelGroup
from jaxmutate.errors import ConfigError, ConfigKeyError
from jaxmutate.pruning._ranking import CostFn, global_pruning

__all__ = [
  "GroupFisherState",
  "ItePruneSchedule",
  "group_fisher_accumulate",
  "group_fisher_init",
  "group_fisher_prune",
]


def _is_int(value: Any) -> bool:
  return isinstance(value, (int, np.integer)) and not isinstance(value, bool)


@dataclasses.dataclass(frozen=True)
class ItePruneSchedule:
  """MMRazor's iterative pruning schedule: ``prune_times`` prunings, one every ``step_freq`` steps.

  It prunes at the steps ``i`` with ``i % step_freq == 0`` and ``i // step_freq <
  prune_times``. At the ``t``-th of them (``t = i // step_freq + 1``) each unit's
  choice is ``supernet + (target - supernet) * t / prune_times`` with the linear
  schedule (an ``int`` choice truncated as MMRazor does), else the target at once.

  Attributes:
    target: ``{unit name: choice}``: a kept ratio in (0, 1] (MMRazor's
      ``target_pruning_ratio``, i.e. a pruning ratio ``1 - r`` in [0, 1)) or a kept
      channel count. Any key works (``{"flops": 0.5}`` schedules a FLOPs fraction).
    supernet: ``{unit name: choice}`` at the start (default 1.0 for ratios, the
      unit's count for ints; give counts with :meth:`for_groups`).
    step_freq: steps between two prunings (>= 1).
    prune_times: how many prunings (>= 1).
    linear_schedule: move linearly to the target (``False``: the target at the first pruning).

  Raises:
    ConfigError: a ratio outside (0, 1], a count outside [1, supernet], a
      ``step_freq`` or ``prune_times`` below 1. ConfigKeyError: a target unit
      the supernet does not have.

  Example:
    >>> from jaxmutate.pruning import ItePruneSchedule
    >>> schedule = ItePruneSchedule({"conv1": 0.5}, step_freq=20, prune_times=5)
    >>> [(i, round(schedule.prune_at(i)["conv1"], 3)) for i in range(100) if schedule.is_prune_time(i)]
    [(0, 0.9), (20, 0.8), (40, 0.7), (60, 0.6), (80, 0.5)]
  """

  target: Mapping[str, float | int]
  supernet: Mapping[str, float | int] | None = None
  step_freq: int = 1
  prune_times: int = 1
  linear_schedule: bool = True

  def __post_init__(self) -> None:
    for name, value in (("step_freq", self.step_freq), ("prune_times", self.prune_times)):
      if not _is_int(value) or value < 1:
        raise ConfigError(f"ItePruneSchedule: {name} must be an int >= 1, got {value!r}.")
    supernet = dict(self.supernet) if self.supernet is not None else {k: 1.0 for k in self.target}
    unknown = sorted(set(self.target) - set(supernet))
    if unknown:
      raise ConfigKeyError(f"ItePruneSchedule: unknown unit name(s) {unknown}; the units are {sorted(supernet)}.")
    for name, value in self.target.items():
      full = supernet[name]
      if _is_int(value):
        if not 1 <= value <= full:
          raise ConfigError(f"ItePruneSchedule: unit {name!r}: a kept count must be in [1, {full}], got {value}.")
      elif isinstance(value, (float, np.floating)):
        if not 0 < value <= 1:
          raise ConfigError(
            f"ItePruneSchedule: unit {name!r}: target {value!r} is a kept ratio, which must be in (0, 1] "
            f"(a pruning ratio of {1 - value:g} is outside [0, 1))."
          )
      else:
        raise ConfigError(f"ItePruneSchedule: unit {name!r}: target must be a float ratio or an int, got {value!r}.")
    object.__setattr__(self, "supernet", supernet)

  @classmethod
  def for_groups(
    cls, groups: Sequence[ChannelGroup], target: Mapping[str, float | int], **kwargs: Any
  ) -> ItePruneSchedule:
    """A schedule over ``groups``: int targets start from the unit's channel count, ratios from 1.0.

    Example:
      >>> from jaxmutate.analysis import ChannelGroup
      >>> from jaxmutate.pruning import ItePruneSchedule
      >>> unit = ChannelGroup("conv1_(0, 16)_16", 16, ())
      >>> ItePruneSchedule.for_groups([unit], {unit.name: 8}, prune_times=2).prune_at(0)
      {'conv1_(0, 16)_16': 12}
    """
    by_name = {g.name: g for g in groups}
    unknown = sorted(set(target) - set(by_name))
    if unknown:
      raise ConfigKeyError(f"ItePruneSchedule: unknown unit name(s) {unknown}; the units are {sorted(by_name)}.")
    supernet = {k: (by_name[k].num_channels if _is_int(v) else 1.0) for k, v in target.items()}
    return cls(dict(target), supernet, **kwargs)

  def is_prune_time(self, step: int) -> bool:
    """Whether the model is pruned at ``step``."""
    return step % self.step_freq == 0 and step // self.step_freq < self.prune_times

  def prune_at(self, step: int) -> dict[str, float | int]:
    """Every unit's choice after the pruning at ``step`` (which must be a prune time, or past the last)."""
    times = min(step // self.step_freq + 1, self.prune_times)
    fraction = times / self.prune_times
    out: dict[str, float | int] = {}
    assert self.supernet is not None
    for name, target in self.target.items():
      start = self.supernet[name]
      value = (target - start) * fraction + start if self.linear_schedule else target
      out[name] = int(value) if _is_int(start) else float(value)
    return out

  @property
  def last_step(self) -> int:
    """The step of the last pruning."""
    return (self.prune_times - 1) * self.step_freq


class GroupFisherState(NamedTuple):
  """GroupFisher's running sums: importance accumulated since the last pruning.

  Attributes:
    fisher: ``{unit name: float32 (num_channels,)}``.
    steps: how many batches were accumulated (int32 scalar).

  Example:
    >>> from jaxmutate.analysis import ChannelGroup, ParamSlice
    >>> from jaxmutate.pruning import group_fisher_init
    >>> unit = ChannelGroup("fc1_(0, 2)_2", 2, (ParamSlice("params", ("fc1", "kernel"), 1, (0, 1), "output"),))
    >>> state = group_fisher_init([unit])
    >>> state.fisher["fc1_(0, 2)_2"].tolist(), int(state.steps)
    ([0.0, 0.0], 0)
  """

  fisher: dict[str, jax.Array]
  steps: jax.Array


def group_fisher_init(groups: Sequence[ChannelGroup]) -> GroupFisherState:
  """Zero accumulated importance.

  Example:
    >>> from jaxmutate.analysis import ChannelGroup
    >>> from jaxmutate.pruning import group_fisher_init
    >>> state = group_fisher_init([ChannelGroup("conv1_(0, 2)_2", 2, ())])
    >>> state.fisher["conv1_(0, 2)_2"].tolist(), int(state.steps)
    ([0.0, 0.0], 0)
  """
  return GroupFisherState({g.name: jnp.zeros((g.num_channels,), jnp.float32) for g in groups}, jnp.int32(0))


def group_fisher_accumulate(state: GroupFisherState, fisher: Mapping[str, jax.Array]) -> GroupFisherState:
  """Adds one batch's :func:`fisher_importance` (jittable).

  Example:
    >>> import jax.numpy as jnp
    >>> from jaxmutate.analysis import ChannelGroup
    >>> from jaxmutate.pruning import group_fisher_accumulate, group_fisher_init
    >>> state = group_fisher_init([ChannelGroup("conv1_(0, 2)_2", 2, ())])
    >>> state = group_fisher_accumulate(state, {"conv1_(0, 2)_2": jnp.array([1.0, 2.0])})
    >>> state.fisher["conv1_(0, 2)_2"].tolist(), int(state.steps)
    ([1.0, 2.0], 1)
  """
  return GroupFisherState({k: v + fisher[k] for k, v in state.fisher.items()}, state.steps + 1)


def group_fisher_prune(
  state: GroupFisherState,
  groups: Sequence[ChannelGroup],
  masks: Mapping[str, Any],
  cost_fn: CostFn | None = None,
  round_to: int = 1,
) -> tuple[dict[str, np.ndarray], GroupFisherState, str | None]:
  """GroupFisher's ``try_prune``: removes the one channel with the least accumulated importance per cost saved.

  Only units that keep more than one quantum (``lcm(round_to, num_blocks)``
  channels; one channel by default) can lose one, and a quantum is what is
  removed. With ``cost_fn`` (e.g. a :class:`CostModel`'s ``macs``), importance
  is divided by the cost the removal saves (GroupFisher's ``"flops"``
  normalisation), else by nothing. A NaN importance skips the pruning, as
  MMRazor does. The accumulated importance is reset either way.

  Returns:
    ``(masks, state, pruned unit name or None)``.

  Example:
    >>> import jax.numpy as jnp
    >>> from jaxmutate.analysis import ChannelGroup
    >>> from jaxmutate.pruning import full_masks, group_fisher_accumulate, group_fisher_init, group_fisher_prune
    >>> units = [ChannelGroup("a_(0, 2)_2", 2, ()), ChannelGroup("b_(0, 2)_2", 2, ())]
    >>> state = group_fisher_accumulate(group_fisher_init(units), {"a_(0, 2)_2": jnp.array([3.0, 1.0]),
    ...                                                             "b_(0, 2)_2": jnp.array([2.0, 2.0])})
    >>> masks, state, pruned = group_fisher_prune(state, units, full_masks(units))
    >>> pruned, masks["a_(0, 2)_2"].tolist(), int(state.steps)
    ('a_(0, 2)_2', [1.0, 0.0], 0)
  """
  fisher = {k: np.asarray(jax.device_get(v), np.float64) for k, v in state.fisher.items()}
  reset = group_fisher_init(groups)
  current = {k: np.asarray(jax.device_get(v), np.float32) for k, v in masks.items()}
  if any(np.isnan(v).any() for v in fisher.values()):
    return current, reset, None
  kept = {g.name: int(np.count_nonzero(current.get(g.name, np.ones(g.num_channels)) > 0.5)) for g in groups}
  if cost_fn is None:
    cost_fn = lambda k: float(sum(k.values()))  # noqa: E731
  # One greedy step of global pruning.
  new = global_pruning(
    groups,
    fisher,
    target=-np.inf,
    cost_fn=cost_fn,
    max_steps=1,
    round_to=round_to,
    normalize="none",
    masks=current,
    cost_weighted=True,
  )
  pruned = next((g.name for g in groups if new[g.name].sum() < kept[g.name]), None)
  return new, reset, pruned
