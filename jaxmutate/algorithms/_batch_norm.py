"""Running a supernet with batch statistics, and re-estimating a subnet's BatchNorm statistics."""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

import flax.linen as nn
import jax
import jax.numpy as jnp

from jaxmutate.typing import Choices


def apply_in_train_mode(
  model: nn.Module,
  params: Any,
  batch_stats: Any,
  images: jax.Array,
  choices: Choices,
  rngs: Mapping[str, jax.Array] | None = None,
) -> tuple[jax.Array, Any]:
  """Runs the model with batch statistics; returns logits and the updated BN stats.

  Example:
    >>> import jax, jax.numpy as jnp
    >>> import jaxmutate as jm
    >>> from jaxmutate.algorithms import apply_in_train_mode
    >>> net = jm.SearchableConvNet(num_classes=3, width=4, num_layers=1)
    >>> x = jax.random.normal(jax.random.key(0), (2, 8, 8, 1))
    >>> variables = jm.init_supernet(net, jax.random.key(1), x)
    >>> logits, stats = apply_in_train_mode(net, variables["params"], variables["batch_stats"], x, {"layers.0": 0})
    >>> logits.shape, bool((stats["stem"]["BatchNorm_0"]["mean"] != 0).any())
    ((2, 3), True)
  """
  logits, updates = model.apply(
    {"params": params, "batch_stats": batch_stats}, images, choices, train=True, mutable=["batch_stats"], rngs=rngs
  )
  return logits, updates.get("batch_stats", {})


def recalibrate_batch_stats(
  model: nn.Module, params: Any, batch_stats: Any, choices: Choices, images: jax.Array
) -> Any:
  """Replaces the chosen subnet's BatchNorm statistics by their exact values on ``images``.

  Weight-sharing training leaves running statistics that mix every subnet
  that was sampled; SPOS re-estimates them per subnet before evaluating it
  (MMRazor's ``CalibrateBNMixin``). This computes the statistics of ``images``
  (one batch) exactly, for any BatchNorm whose update is an exponential moving
  average ``new = m·old + (1−m)·batch``: running from ``old = 0`` gives
  ``(1−m)·batch``, and the momentum ``m`` is read off two tiny runs from 0 and
  1. Statistics of candidates the subnet does not use are left unchanged.
  Works under ``jit`` and ``vmap`` (over ``choices``).

  Args:
    model: the supernet.
    params: its ``params``.
    batch_stats: its current ``batch_stats``.
    choices: the subnet.
    images: calibration images (e.g. a few hundred training images).

  Returns:
    The recalibrated ``batch_stats``.

  Example:
    >>> import jax, jax.numpy as jnp
    >>> import jaxmutate as jm
    >>> from jaxmutate.algorithms import recalibrate_batch_stats
    >>> net = jm.models.SearchableConvNet(width=4, num_layers=1)
    >>> x = jax.random.normal(jax.random.key(0), (16, 8, 8, 1))
    >>> variables = jm.init_supernet(net, jax.random.key(1), x)
    >>> choices = {"layers.0": jnp.int32(0)}
    >>> stats = recalibrate_batch_stats(net, variables["params"], variables["batch_stats"], choices, x)
    >>> bool(jnp.allclose(stats["stem"]["BatchNorm_0"]["mean"], 0.0))
    False
  """
  if not jax.tree.leaves(batch_stats):
    return batch_stats

  def stats_from(start: Any, x: jax.Array) -> Any:
    return apply_in_train_mode(model, params, start, x, choices)[1]

  zeros = jax.tree.map(jnp.zeros_like, batch_stats)
  ones = jax.tree.map(jnp.ones_like, batch_stats)
  scaled_batch_stats = stats_from(zeros, images)
  probe = images[:2]
  momentum = jax.tree.map(lambda a, b: a - b, stats_from(ones, probe), stats_from(zeros, probe))

  def solve(old, scaled, m):
    # m == 1 means this statistic was not updated: its module did not run.
    updated = m < 1 - 1e-6
    return jnp.where(updated, scaled / jnp.where(updated, 1 - m, 1.0), old)

  return jax.tree.map(solve, batch_stats, scaled_batch_stats, momentum)
