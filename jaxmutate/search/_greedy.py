"""AutoSlim's greedy slimming search over width configurations (MMRazor's ``AutoSlimGreedySearchLoop``).

Widths move in *bins*: the positions of each search group's choice among its
ordered candidates (an index into a one-shot or slimmable unit's sorted
candidates, a kept count of a sequential unit, an index into sorted values).
The search starts from the max subnet and, for each target cost in
descending order, repeatedly lowers one group by one bin, the one whose
lowering scores best, until the cost is at most the target; the next target
continues from there. Every trial of a step (one per group) is rated in one
call of the score function, always on a population of the same size, so one
compiled scorer serves the whole search.
"""

from __future__ import annotations

import dataclasses
import math
from collections.abc import Callable, Mapping, Sequence
from typing import Any, NamedTuple

import jax
import jax.numpy as jnp
import numpy as np

from jaxmutate.channels import ChannelSpace
from jaxmutate.errors import ConfigError, ConfigTypeError, SearchError, SearchSpaceError
from jaxmutate.registry import MODELS
from jaxmutate.spaces import ValueSpace

Population = dict[int, jax.Array]
"""Stacked group choices: ``{group id: int32[P]}``."""
ScoreFunction = Callable[[Population], Any]
"""Rates a population: returns scores of shape ``[P]`` (higher is better)."""
CostFunction = Callable[[Mapping[int, jax.Array]], jax.Array]
"""``cost_fn(group_choices) -> scalar``: jit- and vmap-able (e.g. analytic FLOPs)."""


class GreedyStep(NamedTuple):
  """One point of the slimming path: a subnet the search moved to.

  Attributes:
    group_choices: the subnet, ``{group id: np.int32}`` (concrete).
    cost: its cost (``cost_fn``).
    score: its score (``score_fn``).
    shrunk_group: the group lowered by one bin to reach it (``None`` for
      the starting max subnet).

  Example:
    >>> import numpy as np
    >>> from jaxmutate.search import GreedyStep
    >>> GreedyStep({0: np.int32(1)}, 12.0, 0.9, 0).shrunk_group
    0
  """

  group_choices: dict[int, np.int32]
  cost: float
  score: float
  shrunk_group: int | None


class GreedySubnet(NamedTuple):
  """The subnet a greedy search found for one target.

  Attributes:
    target: the target cost (absolute, in the units of ``cost_fn``).
    group_choices: the subnet, ``{group id: np.int32}`` (concrete).
    cost: its cost, at most ``target``.
    score: its score.

  Example:
    >>> import numpy as np
    >>> from jaxmutate.search import GreedySubnet
    >>> subnet = GreedySubnet(20.0, {0: np.int32(0)}, 16.0, 0.8)
    >>> subnet.cost <= subnet.target
    True
  """

  target: float
  group_choices: dict[int, np.int32]
  cost: float
  score: float


class GreedySearchResult(NamedTuple):
  """What a greedy slimming search found.

  Attributes:
    subnets: one :class:`GreedySubnet` per target, largest target first.
    path: every subnet the search moved to, the max subnet first (the
      accuracy–cost Pareto path the search traces).
    max_cost: the max subnet's cost.
    min_cost: the min subnet's cost.
    num_evaluated: subnets rated (trials and the start; padding excluded).

  Example:
    >>> import numpy as np
    >>> from jaxmutate.search import GreedySearchResult, GreedyStep, GreedySubnet
    >>> start = GreedyStep({0: np.int32(1)}, 10.0, 0.9, None)
    >>> result = GreedySearchResult((GreedySubnet(10.0, start.group_choices, 10.0, 0.9),), (start,), 10.0, 5.0, 1)
    >>> result.subnets[0].score == result.path[0].score
    True
  """

  subnets: tuple[GreedySubnet, ...]
  path: tuple[GreedyStep, ...]
  max_cost: float
  min_cost: float
  num_evaluated: int


def _bins(space: Any, group: int, label: str) -> np.ndarray:
  """The group choices of ``space`` in ascending order (its bins)."""
  if isinstance(space, ChannelSpace):
    if space.is_sequential:
      return np.asarray(space.kept_counts, np.int32)
    return np.arange(len(space.candidates), dtype=np.int32)
  if isinstance(space, ValueSpace) and space.ordered:
    return np.arange(len(space.values), dtype=np.int32)
  describe = space.describe() if hasattr(space, "describe") else repr(space)
  raise SearchSpaceError(
    f"AutoSlimGreedySearchLoop: group {group} ({label!r}) has search space {describe}, which has no ordered "
    "candidates; greedy slimming needs channel units (one-shot, slimmable, sequential) or sorted values."
  )


def _group_label(mutator: Any, group: int) -> str:
  key = getattr(mutator, "group_key", None)
  if callable(key):
    return key(group)
  return ", ".join(mutator.search_groups[group])


def _plain(group_choices: Mapping[int, Any]) -> dict[int, np.int32]:
  return {g: np.int32(v) for g, v in group_choices.items()}


@MODELS.register_module()
@dataclasses.dataclass(frozen=True)
class AutoSlimGreedySearchLoop:
  """Settings of AutoSlim's greedy slimming search; :meth:`run` performs it.

  MMRazor's loop: start from the max subnet; for each target (descending),
  while the cost is above it, try lowering every group by one bin, rate the
  trials and keep the best; the subnet reached at each target is its result
  and the next target continues from it. Differences: all trials of a step
  are rated in one call (one compiled scorer, see the module docs); ties in
  score go to the trial that saves the most cost, then to the lower group
  id (MMRazor keeps the last group in name order); a target below the min
  subnet's cost is an error before searching (MMRazor fails once every unit
  is at its minimum).

  Attributes:
    target_flops: the target costs, in the units of the ``cost_fn`` given to
      :meth:`run` (MMRazor's name; any cost works). Absolute values, or
      fractions of the max subnet's cost with ``relative=True``.
    relative: read ``target_flops`` as fractions in ``(0, 1]`` of the max
      subnet's cost.

  Raises:
    ConfigError: (a ``ValueError``) no targets, a target that is not a
      finite number > 0, a fraction above 1 with ``relative=True``.
    ConfigTypeError: ``target_flops`` is not a sequence of numbers.

  Example:
    >>> import jax, jax.numpy as jnp, flax.linen as nn
    >>> import jaxmutate as jm
    >>> from jaxmutate.channels import OneShotMutableChannelUnit
    >>> from jaxmutate.search import AutoSlimGreedySearchLoop
    >>> class Net(nn.Module):  # two units and no layers: only the search matters here
    ...   @nn.compact
    ...   def __call__(self, choices):
    ...     return [OneShotMutableChannelUnit(8, (0.25, 0.5, 1.0), name=f"u{i}")(choices) for i in range(2)]
    >>> mutator = jm.NasMutator().prepare_from_supernet(Net().init(jax.random.key(0), None))
    >>> widths = jnp.array([2.0, 4.0, 8.0])
    >>> cost = lambda gc: widths[gc[0]] * 10 + widths[gc[1]]  # group 0 is the costly one
    >>> score = lambda pop: -(widths[pop[0]] == 2.0).astype(jnp.float32)  # shrinking group 0 to 2 hurts
    >>> loop = AutoSlimGreedySearchLoop(target_flops=(0.5,), relative=True)
    >>> result = loop.run(mutator, score, cost)
    >>> [(int(s.group_choices[0]), int(s.group_choices[1]), s.cost) for s in result.path]
    [(2, 2, 88.0), (1, 2, 48.0), (1, 1, 44.0)]
    >>> result.subnets[0].cost <= 0.5 * result.max_cost
    True
  """

  target_flops: Sequence[float] = ()
  relative: bool = False

  def __post_init__(self) -> None:
    targets = self.target_flops
    if isinstance(targets, (int, float)) and not isinstance(targets, bool):
      targets = (targets,)
    if isinstance(targets, (str, bytes)) or not isinstance(targets, Sequence):
      raise ConfigTypeError(
        f"AutoSlimGreedySearchLoop: target_flops must be a sequence of numbers, got {self.target_flops!r}."
      )
    if not targets:
      raise ConfigError("AutoSlimGreedySearchLoop: target_flops is empty; give at least one target cost.")
    for t in targets:
      if isinstance(t, bool) or not isinstance(t, (int, float, np.integer, np.floating)) or not math.isfinite(t):
        raise ConfigError(f"AutoSlimGreedySearchLoop: target {t!r} in target_flops is not a finite number.")
      if t <= 0:
        raise ConfigError(f"AutoSlimGreedySearchLoop: target {t!r} in target_flops must be > 0.")
      if self.relative and t > 1:
        raise ConfigError(
          f"AutoSlimGreedySearchLoop: with relative=True targets are fractions of the max cost in (0, 1], got {t!r}."
        )
    object.__setattr__(self, "target_flops", tuple(sorted({float(t) for t in targets}, reverse=True)))

  def run(
    self,
    mutator: Any,
    score_fn: ScoreFunction,
    cost_fn: CostFunction,
    on_step: Callable[[dict[str, Any]], None] | None = None,
  ) -> GreedySearchResult:
    """Runs the search (deterministic: no randomness is involved).

    Args:
      mutator: a prepared mutator with ``search_groups`` and
        ``group_space(group)`` whose spaces are ordered (channel units,
        sorted values).
      score_fn: rates a stacked population ``{group id: int32[G]}`` (``G``
        the number of groups, at least 2, in every call) and returns ``[G]`` scores, higher
        is better: e.g. ``lambda population: scorer(state, population)`` with
        :func:`jaxmutate.algorithms.make_calibrated_scorer`.
      cost_fn: ``cost_fn(group_choices) -> scalar``, jit- and vmap-able; it
        is vmapped over each population.
      on_step: called with ``{"step", "target", "cost", "score",
        "shrunk_group"}`` for the start and every accepted step: where an
        application shows progress; the library prints nothing.

    Returns:
      A :class:`GreedySearchResult`.

    Raises:
      SearchSpaceError: a group whose space has no ordered candidates, or a
        mutator without groups.
      ConfigError: a target below the min subnet's cost (with both numbers),
        or a score function that does not return one score per member.
      SearchError: (a ``RuntimeError``) no group can be lowered while the
        cost is still above the target (a cost that does not fall with the
        widths).
    """
    groups = list(mutator.search_groups)
    if not groups:
      raise SearchSpaceError("AutoSlimGreedySearchLoop: the mutator has no search groups to slim.")
    labels = {g: _group_label(mutator, g) for g in groups}
    bins = {g: _bins(mutator.group_space(g), g, labels[g]) for g in groups}
    # Two members at least: the start rates the max and the min subnet together.
    size = max(len(groups), 2)
    costs_of = jax.jit(jax.vmap(cost_fn))

    def population(configs: list[dict[int, int]]) -> Population:
      # Padding with the first member keeps every call the same size: one compile.
      padded = configs + [configs[0]] * (size - len(configs))
      return {g: jnp.asarray([bins[g][c[g]] for c in padded], jnp.int32) for g in groups}

    def evaluate(configs: list[dict[int, int]]) -> tuple[np.ndarray, np.ndarray]:
      members = population(configs)
      scores = np.asarray(score_fn(members), np.float64).reshape(-1)
      if scores.shape[0] != size:
        raise ConfigError(
          f"AutoSlimGreedySearchLoop: score_fn returned {scores.shape[0]} scores for a population of {size}."
        )
      costs = np.asarray(costs_of(members), np.float64).reshape(-1)
      return scores[: len(configs)], costs[: len(configs)]

    def choices_of(position: dict[int, int]) -> dict[int, np.int32]:
      return _plain({g: bins[g][position[g]] for g in groups})

    top = {g: len(bins[g]) - 1 for g in groups}
    bottom = {g: 0 for g in groups}
    start_scores, start_costs = evaluate([top, bottom])
    max_cost, min_cost = float(start_costs[0]), float(start_costs[1])
    targets = [t * max_cost if self.relative else t for t in self.target_flops]
    too_low = [t for t in targets if t < min_cost]
    if too_low:
      given = ", ".join(f"{t:g}" for t in too_low)
      raise ConfigError(
        f"AutoSlimGreedySearchLoop: target(s) {given} are below the min subnet's cost {min_cost:g} "
        f"(the max subnet costs {max_cost:g}); no subnet of this space can reach them."
      )

    position = dict(top)
    cost, score = max_cost, float(start_scores[0])
    path = [GreedyStep(choices_of(position), cost, score, None)]
    num_evaluated = 1
    results = []

    def report(target: float) -> None:
      if on_step is not None:
        step = path[-1]
        on_step(
          {
            "step": len(path) - 1,
            "target": target,
            "cost": step.cost,
            "score": step.score,
            "shrunk_group": step.shrunk_group,
          }
        )

    report(targets[0])
    for target in targets:
      while cost > target:
        movable = [g for g in groups if position[g] > 0]
        if not movable:
          raise SearchError(
            f"AutoSlimGreedySearchLoop: every group is at its smallest width but the cost {cost:g} is still above "
            f"the target {target:g}; does cost_fn fall with the widths?"
          )
        trials = [{**position, g: position[g] - 1} for g in movable]
        scores, costs = evaluate(trials)
        num_evaluated += len(trials)
        # Best score; ties: the larger saving, then the lower group id.
        best = min(range(len(trials)), key=lambda i: (-scores[i], costs[i], movable[i]))
        position = trials[best]
        cost, score = float(costs[best]), float(scores[best])
        path.append(GreedyStep(choices_of(position), cost, score, movable[best]))
        report(target)
      results.append(GreedySubnet(float(target), choices_of(position), cost, score))
    return GreedySearchResult(tuple(results), tuple(path), max_cost, min_cost, num_evaluated)
