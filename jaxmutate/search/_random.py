"""Random subnets under a resource constraint, and where a searched subnet ranks among them.

A search is worth what it buys over drawing subnets at random from the same
admissible set: :func:`sample_constrained` draws uniformly among the subnets
that meet ``constraints_range`` (rejection sampling with an attempt cap), and
:func:`rank_against` places a searched subnet's score among theirs.
"""

from __future__ import annotations

import functools
from collections.abc import Mapping, Sequence
from typing import Any, NamedTuple

import jax
import numpy as np

from jaxmutate.errors import ConfigError, SearchError
from jaxmutate.mutators import ModuleMutator
from jaxmutate.search._evolution import Population, ResourceFunction, admissible, member_keys
from jaxmutate.typing import PRNGKey


class ConstrainedSample(NamedTuple):
  """What :func:`sample_constrained` found.

  Attributes:
    population: the admissible subnets, stacked ``{group id: [num_found, ...]}``,
      in the order they were drawn.
    num_requested: how many were asked for.
    num_found: how many met the constraints (``<= num_requested``).
    num_attempts: how many random subnets were drawn to find them (at most
      the attempt cap).
    max_attempts: the attempt cap.

  Example:
    >>> import jax.numpy as jnp
    >>> from jaxmutate.search import ConstrainedSample
    >>> sample = ConstrainedSample({0: jnp.array([1, 1])}, num_requested=3, num_found=2, num_attempts=30,
    ...                            max_attempts=30)
    >>> sample.complete, sample.acceptance_rate
    (False, 0.0667)
  """

  population: Population
  num_requested: int
  num_found: int
  num_attempts: int
  max_attempts: int

  @property
  def complete(self) -> bool:
    """Whether as many admissible subnets were found as asked for."""
    return self.num_found >= self.num_requested

  @property
  def acceptance_rate(self) -> float:
    """Admissible draws per draw (rounded to 4 digits), 0 before any draw."""
    return round(self.num_found / self.num_attempts, 4) if self.num_attempts else 0.0


@functools.partial(jax.jit, static_argnums=2)
def _draw(mutator: ModuleMutator, key: PRNGKey, size: int) -> Population:
  # A module-level jit: the mutator is a pytree whose structure keys the cache,
  # so repeated calls with the same mutator and batch size compile once.
  return jax.vmap(mutator.sample_choices)(jax.random.split(key, size))


def sample_constrained(
  key: PRNGKey,
  mutator: ModuleMutator,
  num: int,
  resource_fn: ResourceFunction | None = None,
  constraints_range: Mapping[str, Any] | None = None,
  max_attempts: int | None = None,
  batch_size: int | None = None,
  distinct: bool = False,
) -> ConstrainedSample:
  """Draws up to ``num`` random subnets that meet ``constraints_range`` (rejection sampling).

  Subnets are drawn with ``mutator.sample_choices`` in vectorised batches (one
  jitted ``vmap`` per batch size), checked with ``resource_fn`` and kept in
  draw order until ``num`` are found or ``max_attempts`` subnets were drawn,
  whichever comes first. What comes back is uniform over the admissible part
  of the mutator's distribution; it can be short (fewer than ``num``, even
  none) when the constraint is rarely met: check ``num_found``.

  Args:
    key: PRNG key; the result is a deterministic function of it.
    mutator: a prepared mutator.
    num: subnets wanted (>= 0).
    resource_fn: ``population -> {name: [P]}``; needed with ``constraints_range``.
    constraints_range: resource name -> ``(low, high)`` or an upper bound;
      ``None`` accepts every subnet.
    max_attempts: the cap on draws; default ``100 * num``.
    batch_size: draws per vectorised batch; default ``max(num, 64)``.
    distinct: keep only the first draw of each subnet.

  Returns:
    A :class:`ConstrainedSample`.

  Raises:
    ConfigError: ``num < 0``, ``max_attempts < num`` or ``batch_size < 1``,
      or a bad constraint (as :func:`admissible`).

  Example:
    >>> import jax, jax.numpy as jnp
    >>> import jaxmutate as jm
    >>> from jaxmutate.search import sample_constrained
    >>> net = jm.models.SearchableMLP(num_classes=2, width=4, num_layers=2)
    >>> mutator = jm.OneShotModuleMutator().prepare_from_supernet(net.init(jax.random.key(0), jnp.ones((1, 3)), None))
    >>> cost = lambda population: {"ops": sum(population.values()).astype(jnp.float32)}
    >>> sample = sample_constrained(jax.random.key(1), mutator, 5, cost, {"ops": (0, 1)})
    >>> sample.num_found, bool((cost(sample.population)["ops"] <= 1).all())
    (5, True)
    >>> sample_constrained(jax.random.key(1), mutator, 5, cost, {"ops": (-2, -1)}, max_attempts=50).num_found
    0
  """
  if not isinstance(num, int) or num < 0:
    raise ConfigError(f"sample_constrained: num must be an int >= 0, got {num!r}.")
  max_attempts = 100 * num if max_attempts is None else max_attempts
  if not isinstance(max_attempts, int) or max_attempts < num:
    raise ConfigError(f"sample_constrained: max_attempts must be an int >= num ({num}), got {max_attempts!r}.")
  batch_size = max(num, 64) if batch_size is None else batch_size
  if not isinstance(batch_size, int) or batch_size < 1:
    raise ConfigError(f"sample_constrained: batch_size must be an int >= 1, got {batch_size!r}.")
  kept: list[Population] = []
  seen: set[bytes] = set()
  found = attempts = 0
  while found < num and attempts < max_attempts:
    key, batch_key = jax.random.split(key)
    size = min(batch_size, max_attempts - attempts)
    drawn = {g: np.asarray(v) for g, v in _draw(mutator, batch_key, size).items()}
    keep = admissible(drawn, resource_fn, constraints_range)
    chosen: list[int] = []
    used = size
    for i, identity in enumerate(member_keys(drawn)):
      if keep[i] and not (distinct and identity in seen):
        seen.add(identity)
        chosen.append(i)
        if found + len(chosen) == num:
          used = i + 1  # the draws after the last one needed do not count as attempts
          break
    attempts += used
    found += len(chosen)
    if chosen:
      kept.append({g: v[np.asarray(chosen)] for g, v in drawn.items()})
  if kept:
    population = {g: np.concatenate([p[g] for p in kept]) for g in kept[0]}
  else:
    population = {g: np.zeros((0,) + tuple(v.shape[1:]), v.dtype) for g, v in _draw(mutator, key, 1).items()}
  return ConstrainedSample(population, num, found, attempts, max_attempts)


class RankReport(NamedTuple):
  """Where one score ranks among baseline scores (higher is better).

  Attributes:
    score: the score placed.
    count: baseline scores (> 0).
    median, q1, q3, min, max, mean: the baseline's spread (``q1``/``q3``: the
      25th/75th percentiles, linear interpolation).
    rank: ``1 +`` the number of baseline scores strictly above ``score``
      (1 is best; ties share the better rank).
    percentile: the percentage of baseline scores below ``score``, ties
      counted half (100: above all of them).
    beats_median: ``score > median``.

  Example:
    >>> from jaxmutate.search import rank_against
    >>> report = rank_against(0.9, [0.7, 0.8, 0.9, 0.95])
    >>> report.rank, report.percentile, report.beats_median
    (2, 62.5, True)
  """

  score: float
  count: int
  median: float
  q1: float
  q3: float
  min: float
  max: float
  mean: float
  rank: int
  percentile: float
  beats_median: bool

  def as_dict(self) -> dict[str, Any]:
    """The report as a plain JSON-ready dict."""
    return dict(self._asdict())


def rank_against(score: float, baseline: Sequence[float] | np.ndarray) -> RankReport:
  """Places ``score`` among ``baseline`` scores: their spread, its rank and percentile.

  Args:
    score: e.g. the searched subnet's held-out accuracy.
    baseline: e.g. the held-out accuracies of random subnets that meet the
      same constraint.

  Returns:
    A :class:`RankReport`.

  Raises:
    SearchError: ``baseline`` is empty: there is nothing to compare with
      (a comparison against no subnet is never made silently).
    ConfigError: ``score`` or a baseline score is not finite.

  Example:
    >>> from jaxmutate.search import rank_against
    >>> report = rank_against(0.92, [0.6, 0.7, 0.8, 0.9, 0.95])
    >>> report.median, report.rank, report.percentile
    (0.8, 2, 80.0)
  """
  values = np.asarray(baseline, np.float64).reshape(-1)
  if values.size == 0:
    raise SearchError("rank_against: the baseline is empty (no random subnet to compare with); nothing to rank.")
  if not np.isfinite(score) or not np.isfinite(values).all():
    raise ConfigError(f"rank_against: scores must be finite, got score {score!r} and baseline {values.tolist()!r}.")
  score = float(score)
  above = int((values > score).sum())
  below = int((values < score).sum())
  ties = values.size - above - below
  median = float(np.median(values))
  return RankReport(
    score=score,
    count=int(values.size),
    median=median,
    q1=float(np.quantile(values, 0.25)),
    q3=float(np.quantile(values, 0.75)),
    min=float(values.min()),
    max=float(values.max()),
    mean=float(values.mean()),
    rank=1 + above,
    percentile=round(100.0 * (below + 0.5 * ties) / values.size, 2),
    beats_median=score > median,
  )
