"""From importance to masks: local (per unit) and global (across units) ranking, with ``round_to``.

Channels of a unit with ``num_blocks > 1`` (groups of a grouped convolution,
attention heads) are ranked by *position within a block*: a position's
importance is the sum over the blocks, and keeping it keeps it in every block,
so kept counts are multiples of ``num_blocks``. With ``round_to`` they are also
multiples of ``round_to`` (rounded up, never 0), or the whole unit.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Mapping, Sequence
from typing import Any

import jax
import numpy as np

from jaxmutate.analysis import ChannelGroup
from jaxmutate.errors import ConfigError, ConfigKeyError

__all__ = ["NORMALIZATIONS", "global_pruning", "local_pruning", "round_kept"]

NORMALIZATIONS = ("mean", "max", "sum", "none")
"""How :func:`global_pruning` makes units' importances comparable: divide each unit's by its mean, max or sum."""

CostFn = Callable[[Mapping[str, int]], float]
"""``cost_fn({unit name: kept count}) -> cost`` (MACs, FLOPs, parameters, channels)."""


def _is_int(value: Any) -> bool:
  return isinstance(value, (int, np.integer)) and not isinstance(value, bool)


def _step(group: ChannelGroup, round_to: int) -> int:
  """The quantum of a unit's kept counts: a multiple of its blocks and of ``round_to``."""
  if not _is_int(round_to) or round_to < 1:
    raise ConfigError(f"round_to must be an int >= 1, got {round_to!r}.")
  if round_to > group.num_channels:
    raise ConfigError(
      f"round_to={round_to} is larger than unit {group.name!r} ({group.num_channels} channels); "
      "use a smaller round_to or exclude the unit."
    )
  return math.lcm(round_to, group.num_blocks)


def round_kept(kept: float, group: ChannelGroup, round_to: int = 1) -> int:
  """A kept count made valid for ``group``: rounded up to a multiple of ``lcm(round_to, num_blocks)``.

  Never 0 (at least one quantum) and never more than the unit (the whole
  unit is always valid, also when its size is not a multiple).

  Raises:
    ConfigError: ``round_to`` is not a positive int or is larger than the unit.

  Example:
    >>> from jaxmutate.analysis import ChannelGroup
    >>> from jaxmutate.pruning import round_kept
    >>> unit = ChannelGroup("conv1_(0, 20)_20", 20, ())
    >>> round_kept(9.5, unit, round_to=8), round_kept(0, unit, round_to=8), round_kept(17, unit, round_to=8)
    (16, 8, 20)
  """
  step = _step(group, round_to)
  rounded = max(step, math.ceil(float(kept) / step - 1e-9) * step)
  return int(min(rounded, group.num_channels))


def _position_scores(group: ChannelGroup, scores: Any) -> np.ndarray:
  values = np.asarray(jax.device_get(scores), np.float64).reshape(-1)
  if values.shape[0] != group.num_channels:
    raise ConfigError(
      f"unit {group.name!r}: importance has {values.shape[0]} entries, the unit has {group.num_channels} channels."
    )
  return values.reshape(group.num_blocks, -1).sum(0)


def _mask_of(group: ChannelGroup, kept_positions: np.ndarray) -> np.ndarray:
  per_block = np.zeros((group.num_channels // group.num_blocks,), np.float32)
  per_block[kept_positions] = 1.0
  return np.tile(per_block, group.num_blocks)


def _current_positions(group: ChannelGroup, masks: Mapping[str, Any] | None) -> np.ndarray:
  """Positions (within a block) the unit keeps now."""
  size = group.num_channels // group.num_blocks
  if masks is None or group.name not in masks:
    return np.arange(size)
  mask = np.asarray(jax.device_get(masks[group.name])).reshape(group.num_blocks, size)
  return np.flatnonzero(mask[0] > 0.5)


def _check_names(groups: Sequence[ChannelGroup], names: Any, what: str) -> dict[str, ChannelGroup]:
  by_name = {g.name: g for g in groups}
  unknown = sorted(set(names) - set(by_name))
  if unknown:
    raise ConfigKeyError(f"{what}: unknown unit name(s) {unknown}; the units are {sorted(by_name)}.")
  return by_name


def check_prune_ratio(ratio: Any, where: str) -> float:
  """A pruning ratio (the fraction of channels removed), which must be a number in [0, 1).

  Example:
    >>> from jaxmutate.pruning import check_prune_ratio
    >>> check_prune_ratio(0.5, "conv1")
    0.5
    >>> check_prune_ratio(1.0, "conv1")
    Traceback (most recent call last):
    ...
    jaxmutate.errors.ConfigError: conv1: a pruning ratio must be a number in [0, 1), got 1.0.
  """
  if isinstance(ratio, bool) or not isinstance(ratio, (int, float, np.floating, np.integer)) or not 0 <= ratio < 1:
    raise ConfigError(f"{where}: a pruning ratio must be a number in [0, 1), got {ratio!r}.")
  return float(ratio)


def local_pruning(
  groups: Sequence[ChannelGroup],
  importance: Mapping[str, Any],
  prune_ratio: float | Mapping[str, float] = 0.5,
  round_to: int = 1,
  masks: Mapping[str, Any] | None = None,
) -> dict[str, np.ndarray]:
  """Per unit, keeps its most important channels: ``round_kept((1 - ratio) * num_channels)`` of them.

  Args:
    groups: the units.
    importance: ``{name: (num_channels,)}``.
    prune_ratio: the fraction of each unit's channels to remove, in [0, 1); one
      for all units or ``{unit name: ratio}`` (units not named are kept whole).
    round_to: kept counts are multiples of it (see :func:`round_kept`).
    masks: the current masks: channels pruned already stay pruned (kept counts
      never exceed what a unit keeps now).

  Returns:
    ``{name: float32 (num_channels,)}`` masks.

  Raises:
    ConfigError: a ratio outside [0, 1), a ``round_to`` larger than a unit.
    ConfigKeyError: a ratio for a unit that does not exist.

  Example:
    >>> import numpy as np
    >>> from jaxmutate.analysis import ChannelGroup
    >>> from jaxmutate.pruning import local_pruning
    >>> unit = ChannelGroup("conv1_(0, 4)_4", 4, ())
    >>> local_pruning([unit], {unit.name: np.array([0.3, 0.1, 0.9, 0.5])}, prune_ratio=0.5)[unit.name].tolist()
    [0.0, 0.0, 1.0, 1.0]
  """
  if isinstance(prune_ratio, Mapping):
    _check_names(groups, prune_ratio, "local_pruning")
    ratios = {name: check_prune_ratio(r, f"local_pruning unit {name!r}") for name, r in prune_ratio.items()}
  else:
    ratio = check_prune_ratio(prune_ratio, "local_pruning")
    ratios = {g.name: ratio for g in groups}
  out = {}
  for group in groups:
    current = _current_positions(group, masks)
    if group.name not in ratios:
      out[group.name] = _mask_of(group, current)
      continue
    kept = round_kept((1.0 - ratios[group.name]) * group.num_channels, group, round_to)
    positions = min(kept // group.num_blocks, len(current))
    scores = _position_scores(group, importance[group.name])[current]
    best = current[np.argsort(-scores, kind="stable")[:positions]]
    out[group.name] = _mask_of(group, np.sort(best))
  return out


def _normalized(values: np.ndarray, normalize: str) -> np.ndarray:
  if normalize == "none":
    return values
  scale = {"mean": np.mean, "max": np.max, "sum": np.sum}[normalize](np.abs(values))
  return values / scale if scale > 0 else values


def global_pruning(
  groups: Sequence[ChannelGroup],
  importance: Mapping[str, Any],
  target: float,
  cost_fn: CostFn | None = None,
  round_to: int = 1,
  normalize: str = "mean",
  masks: Mapping[str, Any] | None = None,
  cost_weighted: bool = False,
  max_steps: int | None = None,
) -> dict[str, np.ndarray]:
  """Removes the least important channels across all units until ``cost_fn(kept) <= target``.

  Each unit's importances are normalised (``normalize``) so that units are
  comparable; then, greedily, the unit whose next quantum (the channels down to
  the next valid kept count, see :func:`round_kept`) has the lowest summed
  importance loses it, until the cost meets the target or no unit can shrink.
  Last, the most important of the quanta removed that still fit under the
  target are put back (the greedy removal overshoots by up to one quantum).

  Args:
    groups: the units.
    importance: ``{name: (num_channels,)}``.
    target: the cost to reach; without ``cost_fn`` the fraction of all channels
      to keep, in (0, 1].
    cost_fn: ``cost_fn({name: kept}) -> cost`` (e.g. a :class:`CostModel`'s ``macs``).
    round_to: kept counts are multiples of it.
    normalize: one of :data:`NORMALIZATIONS`.
    masks: the current masks (pruned channels stay pruned).
    cost_weighted: rank a quantum by importance per unit of cost it saves
      (GroupFisher's normalisation by FLOPs).
    max_steps: remove at most this many quanta (``None``: until the target).

  Returns:
    ``{name: float32 (num_channels,)}`` masks.

  Raises:
    ConfigError: a bad ``normalize``, a ``round_to`` larger than a unit, a
      channel fraction outside (0, 1].

  Example:
    >>> import numpy as np
    >>> from jaxmutate.analysis import ChannelGroup
    >>> from jaxmutate.pruning import global_pruning
    >>> a, b = ChannelGroup("a_(0, 4)_4", 4, ()), ChannelGroup("b_(0, 2)_2", 2, ())
    >>> importance = {a.name: np.array([4.0, 3.0, 2.0, 1.0]), b.name: np.array([1.0, 1.0])}
    >>> masks = global_pruning([a, b], importance, target=0.5)  # keep 3 of the 6 channels
    >>> masks[a.name].tolist(), masks[b.name].tolist()
    ([1.0, 1.0, 0.0, 0.0], [1.0, 0.0])
  """
  if normalize not in NORMALIZATIONS:
    raise ConfigError(f"global_pruning: normalize must be one of {list(NORMALIZATIONS)}, got {normalize!r}.")
  groups = list(groups)
  if cost_fn is None:
    if isinstance(target, bool) or not isinstance(target, (int, float, np.floating)) or not 0 < target <= 1:
      raise ConfigError(f"global_pruning: without a cost_fn, target is the kept fraction, in (0, 1]; got {target!r}.")
    total = sum(g.num_channels for g in groups)
    cost_fn = lambda kept: sum(kept.values()) / total  # noqa: E731
  steps = {g.name: _step(g, round_to) for g in groups}
  positions = {g.name: _current_positions(g, masks) for g in groups}
  scores = {g.name: _normalized(_position_scores(g, importance[g.name]), normalize) for g in groups}
  # Kept positions of each unit, least important first: pruning pops from the front.
  # Ties: the later position goes first, as local_pruning keeps the earlier one.
  order = {
    g.name: list(positions[g.name][np.lexsort((-positions[g.name], scores[g.name][positions[g.name]]))]) for g in groups
  }
  kept = {g.name: len(positions[g.name]) * g.num_blocks for g in groups}
  by_name = {g.name: g for g in groups}

  def next_kept(name: str) -> int:
    step = steps[name]
    return (kept[name] - 1) // step * step

  removed: dict[str, list[tuple[list[int], int]]] = {name: [] for name in kept}
  cost = cost_fn(kept)
  steps_taken = 0
  while cost > target and (max_steps is None or steps_taken < max_steps):
    steps_taken += 1
    best, best_score = None, None
    for name in kept:
      smaller = next_kept(name)
      if smaller < steps[name]:
        continue
      count = (kept[name] - smaller) // by_name[name].num_blocks
      score = float(scores[name][order[name][:count]].sum())
      if cost_weighted:
        saved = cost - cost_fn({**kept, name: smaller})
        score = score / saved if saved > 0 else np.inf
      if best_score is None or score < best_score:
        best, best_score = name, score
    if best is None:
      break
    smaller = next_kept(best)
    count = (kept[best] - smaller) // by_name[best].num_blocks
    removed[best].append((order[best][:count], kept[best]))
    del order[best][:count]
    kept[best] = smaller
    cost = cost_fn(kept)
  if max_steps is None:
    # Greedy removal overshoots by up to one quantum: put back the most important removed quanta that still fit.
    while True:
      fits = []
      for name, stack in removed.items():
        if stack:
          positions, before = stack[-1]
          if cost_fn({**kept, name: before}) <= target:
            fits.append((float(scores[name][positions].sum()), name))
      if not fits:
        break
      _, name = max(fits)
      positions, kept[name] = removed[name].pop()
      order[name] = list(positions) + order[name]
      cost = cost_fn(kept)
  return {g.name: _mask_of(g, np.sort(np.asarray(order[g.name], np.int64))) for g in groups}
