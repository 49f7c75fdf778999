"""Latency as a third resource: each candidate timed on the running machine, fitted into a cost table.

The timing is application side (it reads a clock); the table it fills is the
library's :class:`~jaxmutate.resources.ResourceTable` (via
:func:`~jaxmutate.resources.fit_resource_table`), so a latency budget is
checked like a FLOPs budget, jitted over a whole population, and
:meth:`~jaxmutate.resources.ResourceTable.expected` gives the expected
latency under softmax or Gumbel weights for a differentiable penalty.

Latency is noisy, unlike FLOPs: every figure is the median of ``repeats``
timed calls after ``warmup`` untimed ones, on whatever else the machine is
running at the time, and an additive table ignores effects between layers
(caches, fusion, the dispatch of a traced choice). Build the table on a quiet
machine, check it with ``table.max_error(..., measure=latency_measure(...))``,
and compare subnets by clear margins only.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Mapping
from typing import Any

import flax.linen as nn
import jax
import jax.numpy as jnp
import numpy as np

from jaxmutate.errors import ConfigError
from jaxmutate.mutators import ModuleMutator
from jaxmutate.resources import ResourceTable, fit_resource_table, index_group_sizes


def median_latency_ms(
  fn: Callable[[], Any], warmup: int = 2, repeats: int = 7, clock: Callable[[], float] = time.perf_counter
) -> float:
  """The median wall time of ``fn()`` in milliseconds, after ``warmup`` untimed calls.

  ``fn`` must block until its result is ready (``jax.block_until_ready``).

  Raises:
    ConfigError: (a ``ValueError``) ``warmup < 0`` or ``repeats < 1``.

  Example:
    >>> from jaxmutate.runners.latency import median_latency_ms
    >>> ticks = iter([0.0, 0.001, 0.001, 0.004, 0.004, 0.006])  # a fake clock: calls of 1, 3 and 2 ms
    >>> median_latency_ms(lambda: None, warmup=1, repeats=3, clock=lambda: next(ticks))
    2.0
  """
  if not (isinstance(warmup, int) and warmup >= 0):
    raise ConfigError(f"median_latency_ms: warmup must be an int >= 0, got {warmup!r}.")
  if not (isinstance(repeats, int) and repeats >= 1):
    raise ConfigError(f"median_latency_ms: repeats must be an int >= 1, got {repeats!r}.")
  for _ in range(warmup):
    fn()
  times = []
  for _ in range(repeats):
    start = clock()
    fn()
    times.append(clock() - start)
  return float(np.median(times) * 1e3)


def latency_measure(
  model: nn.Module,
  variables: Mapping[str, Any],
  mutator: ModuleMutator,
  sample_input: jax.Array,
  warmup: int = 2,
  repeats: int = 7,
  compile_per_subnet: bool = False,
) -> Callable[[Mapping[int, Any]], dict[str, float]]:
  """``measure(group_choices) -> {"latency": ms}``: the inference forward of one subnet, timed.

  Args:
    model, variables, mutator: the supernet, its variables and prepared mutator.
    sample_input: the batch to time (its size is part of the figure).
    warmup, repeats: untimed calls, then timed calls whose median is kept.
    compile_per_subnet: time each subnet's own program (concrete choices: one
      compile per subnet, the hand-written network); by default one program
      with traced choices serves every subnet (each call runs the chosen
      candidates only, through a switch).

  Example:
    >>> import jax, jax.numpy as jnp
    >>> import jaxmutate as jm
    >>> from jaxmutate.runners.latency import latency_measure
    >>> net = jm.models.SearchableConvNet(width=4, num_layers=1)
    >>> x = jnp.ones((1, 8, 8, 1))
    >>> variables = jm.init_supernet(net, jax.random.key(0), x)
    >>> mutator = jm.OneShotModuleMutator().prepare_from_supernet(variables)
    >>> ms = latency_measure(net, variables, mutator, x, repeats=3)({0: jnp.int32(3)})["latency"]
    >>> ms > 0
    True
  """
  apply_variables = {k: v for k, v in variables.items() if k in ("params", "batch_stats")}

  def forward(v: Any, x: jax.Array, choices: Any) -> Any:
    return model.apply(v, x, choices, train=False)

  traced = jax.jit(forward)

  def measure(group_choices: Mapping[int, Any]) -> dict[str, float]:
    if compile_per_subnet:
      choices = {k: np.asarray(v) for k, v in mutator.set_choices(group_choices).items()}
      compiled = jax.jit(lambda v, x: forward(v, x, choices))

      def call() -> Any:
        return jax.block_until_ready(compiled(apply_variables, sample_input))
    else:
      choices = mutator.set_choices({g: jnp.asarray(c) for g, c in group_choices.items()})

      def call() -> Any:
        return jax.block_until_ready(traced(apply_variables, sample_input, choices))

    return {"latency": median_latency_ms(call, warmup, repeats)}

  return measure


def build_latency_table(
  model: nn.Module,
  variables: Mapping[str, Any],
  mutator: ModuleMutator,
  sample_input: jax.Array,
  *,
  warmup: int = 2,
  repeats: int = 7,
  compile_per_subnet: bool = False,
  interactions: str = "none",
  fixed: Mapping[int, Any] | None = None,
) -> ResourceTable:
  """A ``("latency",)`` :class:`~jaxmutate.resources.ResourceTable` in milliseconds, measured here and now.

  Each candidate of each group is timed in the default subnet (every other
  group at index 0): ``1 + Σ (C_g − 1)`` timings (``interactions`` as in
  :func:`~jaxmutate.resources.fit_resource_table`). Noisy: see the module docs.

  Raises:
    SearchSpaceError: a route group not held in ``fixed``.

  Example:
    >>> import jax, jax.numpy as jnp
    >>> import jaxmutate as jm
    >>> from jaxmutate.runners.latency import build_latency_table
    >>> net = jm.models.SearchableConvNet(width=4, num_layers=2)
    >>> x = jnp.ones((1, 8, 8, 1))
    >>> variables = jm.init_supernet(net, jax.random.key(0), x)
    >>> mutator = jm.OneShotModuleMutator().prepare_from_supernet(variables)
    >>> table = build_latency_table(net, variables, mutator, x, repeats=3)
    >>> table.names, table.deltas["latency"][0].shape, table.base["latency"] > 0
    (('latency',), (4,), True)
  """
  fixed = dict(fixed or {})
  sizes = index_group_sizes(mutator, fixed, "build_latency_table")
  measure = latency_measure(model, variables, mutator, sample_input, warmup, repeats, compile_per_subnet)
  return fit_resource_table(measure, sizes, interactions=interactions, fixed=fixed)


__all__ = ["build_latency_table", "latency_measure", "median_latency_ms"]
