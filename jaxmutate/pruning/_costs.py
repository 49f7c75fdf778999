"""What a pruned network costs, as a function of the units' kept counts: a thin adapter over the analysis's counter.

:meth:`jaxmutate.analysis.ChannelAnalysis.costs` counts MACs (every ``conv`` and
``dot_general`` of the traced program, so also ``nn.DenseGeneral`` with several
output axes and bare ``einsum``) and parameters as multilinear functions of the
channel masks. Ranking (:func:`~jaxmutate.pruning.global_pruning`,
:func:`~jaxmutate.pruning.group_fisher_prune`) asks "what would the network cost
with ``k`` channels of this unit?"; :class:`CostModel` answers by evaluating that
counter at the masks keeping the first ``k`` channels of each unit. Which
channels are kept does not change the count where a unit's channels stay
together on every axis (each axis holds all of a unit's channels or none),
which holds for every unit the analysis forms except split parts of a tensor;
for the exact cost of particular masks call ``analysis.costs(masks)``.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

import jax

from jaxmutate.analysis import ChannelAnalysis
from jaxmutate.errors import ConfigKeyError, ConfigTypeError

__all__ = ["CostModel", "cost_model"]


class CostModel:
  """MACs and parameters of an analysed network from ``{unit name: kept count}``; jittable and vmappable.

  Build it with :func:`cost_model`. ``macs(kept)`` and ``params(kept)`` take
  kept counts as Python numbers or traced arrays (missing units: kept whole)
  and return ``float32`` scalars; they are ``analysis.costs`` at
  ``analysis.masks(kept)``, compiled once. Costs are those of the analysis's
  sample: analyse a batch of one for costs per example.

  Attributes:
    analysis: the :class:`~jaxmutate.analysis.ChannelAnalysis` counted.
    units: ``{unit name: num_channels}``.

  Example:
    >>> import jax, jax.numpy as jnp, flax.linen as nn
    >>> from jaxmutate.analysis import analyze_channels
    >>> from jaxmutate.pruning import cost_model
    >>> net, x = nn.Sequential([nn.Dense(4), nn.relu, nn.Dense(2)]), jnp.ones((1, 3))
    >>> costs = cost_model(analyze_channels(net, net.init(jax.random.key(0), x), x))
    >>> name = next(iter(costs.units))
    >>> float(costs.macs({})), float(costs.macs({name: 2})), float(costs.params({name: 2}))
    (20.0, 10.0, 14.0)
  """

  def __init__(self, analysis: ChannelAnalysis):
    self.analysis = analysis
    self.units = {g.name: g.num_channels for g in analysis.groups}
    self._costs = jax.jit(lambda kept: analysis.costs(analysis.masks(kept)))

  def __call__(self, kept: Mapping[str, Any]) -> dict[str, jax.Array]:
    """``{"macs": ..., "params": ...}`` with ``kept`` channels per unit."""
    self._check(kept)
    return self._costs(dict(kept))

  def macs(self, kept: Mapping[str, Any]) -> jax.Array:
    """MACs (of the analysis's sample) with ``kept`` channels per unit."""
    return self(kept)["macs"]

  def params(self, kept: Mapping[str, Any]) -> jax.Array:
    """Parameters (of the ``params`` collection) with ``kept`` channels per unit."""
    return self(kept)["params"]

  def _check(self, kept: Mapping[str, Any]) -> None:
    unknown = sorted(set(kept) - set(self.units))
    if unknown:
      raise ConfigKeyError(f"CostModel: unknown unit name(s) {unknown}; the units are {sorted(self.units)}.")


def cost_model(analysis: ChannelAnalysis) -> CostModel:
  """The :class:`CostModel` of an analysed network: its costs as functions of the units' kept counts.

  Args:
    analysis: from :func:`~jaxmutate.analysis.analyze_channels` (a sample of one
      example gives costs per example).

  Raises:
    ConfigTypeError: ``analysis`` is not a ``ChannelAnalysis``.

  Example:
    >>> import jax, jax.numpy as jnp, flax.linen as nn
    >>> from jaxmutate.analysis import analyze_channels
    >>> from jaxmutate.pruning import cost_model
    >>> net, x = nn.Conv(8, (3, 3)), jnp.ones((1, 6, 6, 2))
    >>> float(cost_model(analyze_channels(net, net.init(jax.random.key(0), x), x)).macs({}))  # 6*6 * 3*3*2*8
    5184.0
  """
  if not isinstance(analysis, ChannelAnalysis):
    raise ConfigTypeError(
      f"cost_model: expected a ChannelAnalysis (from jaxmutate.analysis.analyze_channels), got "
      f"{type(analysis).__name__}; the costs come from the analysed program."
    )
  return CostModel(analysis)
