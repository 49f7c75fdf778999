"""The derived DARTS network: an exported subnet as a plain Flax module.

:func:`derive_discrete_network` turns an exported subnet of a
:class:`~jaxmutate.models.DartsBackbone` into :class:`DartsDiscreteNetwork`,
a plain Flax module that runs only the chosen operations on the chosen inputs
(no mixtures, no zero ops); :func:`darts_genotype` reads the kept edges of
one cell type from the subnet. Module names match the supernet's, so
:func:`~jaxmutate.models.discrete_network_variables` copies its weights.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any

import flax.linen as nn
import jax
import jax.numpy as jnp

from jaxmutate.errors import SubnetEntryMissingError, SubnetFileError, SubnetFileTypeError
from jaxmutate.models.darts import _check_op_names, _preprocess, _Stem, darts_op, edge_id, node_id
from jaxmutate.models.darts_backbone import DartsBackbone
from jaxmutate.registry import MODELS


class _DiscreteEdge(nn.Module):
  """One kept edge: its chosen operation, under the same names as in the supernet."""

  op_name: str
  channels: int
  stride: int
  affine: bool = False
  implementation: str | None = None

  @nn.compact
  def __call__(self, x: jax.Array, train: bool = False) -> jax.Array:
    op = darts_op(self.op_name, self.channels, self.stride, self.affine, self.implementation, name=self.op_name)
    return op(x, train=train)


class _DiscreteNode(nn.Module):
  """A node summing its kept edges ``((edge alias, input index, op name), ...)``."""

  edges: tuple[tuple[str, int, str], ...]
  channels: int
  reduction: bool
  affine: bool = False
  implementation: str | None = None

  @nn.compact
  def __call__(self, states: Sequence[jax.Array], train: bool = False) -> jax.Array:
    total = None
    for alias, j, op_name in self.edges:
      if op_name == "zero":
        continue
      stride = 2 if self.reduction and j < 2 else 1
      out = _DiscreteEdge(op_name, self.channels, stride, self.affine, self.implementation, name=alias)(
        states[j], train=train
      )
      total = out if total is None else total + out
    if total is None:
      # Every kept edge chose "zero": the node is zeros of the node's shape.
      j = self.edges[0][1]
      stride = 2 if self.reduction and j < 2 else 1
      return states[j][:, ::stride, ::stride, :] * jnp.zeros((), states[j].dtype)
    return total


class _DiscreteCell(nn.Module):
  nodes: tuple[tuple[tuple[str, int, str], ...], ...]
  channels: int
  in_channels: tuple[int, int]
  reduction: bool
  prev_reduction: bool
  affine: bool = False
  implementation: str | None = None

  @nn.compact
  def __call__(self, s0: jax.Array, s1: jax.Array, train: bool = False) -> jax.Array:
    c = self.channels
    states = [
      _preprocess(s0, self.in_channels[0], c, self.prev_reduction, self.affine, "preproc0", train),
      _preprocess(s1, self.in_channels[1], c, False, self.affine, "preproc1", train),
    ]
    for node, edges in enumerate(self.nodes, start=2):
      states.append(
        _DiscreteNode(edges, c, self.reduction, self.affine, self.implementation, name=node_id(self.reduction, node))(
          states, train=train
        )
      )
    return jnp.concatenate(states[2:], axis=-1)


@MODELS.register_module()
class DartsDiscreteNetwork(nn.Module):
  """A derived DARTS network: only the chosen operations on the chosen inputs.

  Made by :func:`derive_discrete_network`. Module names match the supernet
  (``cell0/normal_n2/normal_n2_p0/sep_conv_3x3/...``), so
  :func:`discrete_network_variables` copies the supernet's weights by path.
  Called as ``net.apply(variables, x, train=False)``.

  Attributes:
    normal_genotype, reduce_genotype: per node, the kept edges as
      ``(edge alias, input index, operation name)``, in input order.
    cells: per cell, ``(channels, in_channels, reduction, prev_reduction)``.
    stem_channels: output channels of the stem.
    num_classes: classifier outputs, or ``None`` for the feature map.
    affine: BatchNorm learns scale and bias.
    depthwise_implementation: depthwise convolution implementation.

  Example:
    >>> import jax, jax.numpy as jnp
    >>> import jaxmutate as jm
    >>> from jaxmutate.models import DartsBackbone, derive_discrete_network
    >>> net = DartsBackbone(base_channels=2, num_layers=1, num_nodes=2, num_classes=10,
    ...                     op_names=("zero", "skip_connect", "avg_pool_3x3"))
    >>> variables = jm.init_supernet(net, jax.random.key(0), jnp.ones((2, 8, 8, 1)))
    >>> mutator = jm.DiffModuleMutator().prepare_from_supernet(variables)
    >>> fix_subnet = mutator.export_fix_subnet(mutator.sample_choices(mutator.init_arch_params(jax.random.key(1))))
    >>> discrete = derive_discrete_network(net, fix_subnet)
    >>> [len(edges) for edges in discrete.reduce_genotype]
    [2, 2]
  """

  normal_genotype: tuple[tuple[tuple[str, int, str], ...], ...]
  reduce_genotype: tuple[tuple[tuple[str, int, str], ...], ...]
  cells: tuple[tuple[int, tuple[int, int], bool, bool], ...]
  stem_channels: int
  num_classes: int | None = None
  affine: bool = False
  depthwise_implementation: str | None = None

  @nn.compact
  def __call__(self, x: jax.Array, train: bool = False) -> jax.Array:
    s0 = s1 = _Stem(self.stem_channels, self.affine, name="stem")(x, train=train)
    for i, (channels, in_channels, reduction, prev_reduction) in enumerate(self.cells):
      genotype = self.reduce_genotype if reduction else self.normal_genotype
      out = _DiscreteCell(
        genotype,
        channels,
        in_channels,
        reduction,
        prev_reduction,
        self.affine,
        self.depthwise_implementation,
        name=f"cell{i}",
      )(s0, s1, train=train)
      s0, s1 = s1, out
    if self.num_classes is None:
      return s1
    return nn.Dense(self.num_classes, name="head")(s1.mean(axis=(1, 2)))


def _chosen(fix_subnet: Mapping[str, Any], key: str) -> Any:
  if key not in fix_subnet:
    raise SubnetEntryMissingError(
      f"The subnet has no entry {key!r} (a DartsBackbone alias); it has {sorted(fix_subnet)[:12]}..."
    )
  entry = fix_subnet[key]
  if not isinstance(entry, Mapping) or "chosen" not in entry:
    raise SubnetFileTypeError(f"Subnet entry {key!r} must be {{'chosen': ...}}, got {entry!r}.")
  return entry["chosen"]


def darts_genotype(
  backbone: DartsBackbone, fix_subnet: Mapping[str, Any], reduction: bool
) -> tuple[tuple[tuple[str, int, str], ...], ...]:
  """The kept edges of each node of one cell type, read from an exported subnet.

  Args:
    backbone: the supernet the subnet was exported from.
    fix_subnet: ``{alias: {"chosen": ...}}`` (routes: lists of edge aliases;
      ops: an operation name, or a one-element list as in MMRazor's files).
    reduction: the reduction cells' genotype instead of the normal cells'.

  Returns:
    Per node, ``((edge alias, input index, operation name), ...)`` sorted by
    input index.

  Raises:
    SubnetEntryMissingError: (a ``KeyError``) a missing entry.
    SubnetFileTypeError: (a ``TypeError``) an entry that is not ``{"chosen": ...}``.
    SubnetFileError: (a ``ValueError``) an unknown edge or operation.

  Example:
    >>> from jaxmutate.models import darts_genotype
    >>> from jaxmutate.models import DartsBackbone
    >>> net = DartsBackbone(base_channels=2, num_layers=1, num_nodes=1, num_classes=3,
    ...                     op_names=("zero", "skip_connect"))
    >>> fix_subnet = {"reduce_n2": {"chosen": ["reduce_n2_p0", "reduce_n2_p1"]},
    ...               "reduce_n2_p0": {"chosen": "skip_connect"}, "reduce_n2_p1": {"chosen": ["zero"]}}
    >>> darts_genotype(net, fix_subnet, reduction=True)  # one node, two kept edges
    ((('reduce_n2_p0', 0, 'skip_connect'), ('reduce_n2_p1', 1, 'zero')),)
  """
  op_names = _check_op_names("darts_genotype", backbone.op_names)
  nodes = []
  for node in range(2, backbone.num_nodes + 2):
    route_key = node_id(reduction, node)
    edges_chosen = _chosen(fix_subnet, route_key)
    if isinstance(edges_chosen, str) or not isinstance(edges_chosen, Sequence):
      raise SubnetFileError(f"Subnet entry {route_key!r}: chosen must be a list of edge names, got {edges_chosen!r}.")
    valid = [edge_id(reduction, node, j) for j in range(node)]
    kept = []
    for alias in edges_chosen:
      if alias not in valid:
        raise SubnetFileError(f"Subnet entry {route_key!r}: unknown edge {alias!r}; edges are {valid}.")
      op = _chosen(fix_subnet, alias)
      if isinstance(op, (list, tuple)) and len(op) == 1:
        op = op[0]
      if op not in op_names:
        raise SubnetFileError(
          f"Subnet entry {alias!r}: unknown operation {op!r}; the backbone's operations are {list(op_names)}."
        )
      kept.append((alias, valid.index(alias), op))
    nodes.append(tuple(sorted(kept, key=lambda e: e[1])))
  return tuple(nodes)


def derive_discrete_network(backbone: DartsBackbone, fix_subnet: Mapping[str, Any]) -> DartsDiscreteNetwork:
  """The standalone network of an exported DARTS subnet.

  Its output equals the supernet's when the supernet's mutables take weights
  directly (``direct_weights=True``) with weight 1 on every chosen op and
  chosen edge: a node sums its kept edges, an edge runs its chosen op, and a
  ``zero`` op is dropped.

  Args:
    backbone: the :class:`DartsBackbone` searched.
    fix_subnet: what ``DiffModuleMutator.export_fix_subnet`` wrote.

  Returns:
    A :class:`DartsDiscreteNetwork`.

  Raises:
    SubnetFileError: (or its ``KeyError``/``TypeError`` subclasses) see
      :func:`darts_genotype`.

  Example:
    >>> from jaxmutate.models import derive_discrete_network
    >>> from jaxmutate.models import DartsBackbone
    >>> net = DartsBackbone(base_channels=2, num_layers=1, num_nodes=1, num_classes=3,
    ...                     op_names=("zero", "skip_connect"))
    >>> fix_subnet = {"reduce_n2": {"chosen": ["reduce_n2_p0", "reduce_n2_p1"]},
    ...               "reduce_n2_p0": {"chosen": "skip_connect"}, "reduce_n2_p1": {"chosen": ["zero"]}}
    >>> network = derive_discrete_network(net, fix_subnet)
    >>> network.cells, network.stem_channels, network.num_classes
    (((4, (6, 6), True, False),), 6, 3)
  """
  layout = backbone.cell_layout()
  return DartsDiscreteNetwork(
    normal_genotype=darts_genotype(backbone, fix_subnet, reduction=False)
    if any(not c["reduction"] for c in layout)
    else (),
    reduce_genotype=darts_genotype(backbone, fix_subnet, reduction=True) if any(c["reduction"] for c in layout) else (),
    cells=tuple((c["channels"], tuple(c["in_channels"]), c["reduction"], c["prev_reduction"]) for c in layout),
    stem_channels=backbone.stem_multiplier * backbone.base_channels,
    num_classes=backbone.num_classes,
    affine=backbone.affine,
    depthwise_implementation=backbone.depthwise_implementation,
  )


__all__ = ["DartsDiscreteNetwork", "darts_genotype", "derive_discrete_network"]
