"""The DARTS search space: a searchable cell backbone and its derived network.

:class:`DartsBackbone` follows MMRazor's ``DartsBackbone``: a stem, then
``num_layers`` cells (reduction cells at 1/3 and 2/3 of the depth double the
channels and halve the resolution), each cell a DAG of ``num_nodes`` nodes.
Node ``n`` (numbered from 2, as in DARTS) reads every earlier state (the two
cell inputs and the earlier nodes) through one edge each; every edge is a
differentiable operation over the DARTS operation set, and the node's inputs
are a :class:`~jaxmutate.mutables.DiffChoiceRoute` that keeps the top 2 edges
when the architecture is derived.

Architecture parameters are shared by cell type through aliases, as in
MMRazor's config: the op of edge ``p0`` of node 2 in every normal cell has the
alias ``normal_n2_p0``, the node's route ``normal_n2`` (``reduce_...`` in
reduction cells), so a :class:`~jaxmutate.DiffModuleMutator` makes one logit
vector per alias and the exported subnet has MMRazor's keys.

:func:`derive_discrete_network` turns an exported subnet into
:class:`DartsDiscreteNetwork`, a plain Flax module that runs only the chosen
operations on the chosen inputs (no mixtures, no zero ops), and
:func:`discrete_network_variables` copies the supernet's weights into it.

References:
  Liu et al., DARTS: Differentiable Architecture Search, ICLR 2019,
  https://arxiv.org/abs/1806.09055
"""

from __future__ import annotations

import dataclasses
from collections.abc import Mapping, Sequence
from typing import Any

import flax.linen as nn
import jax
import jax.numpy as jnp

from jaxmutate.mutables._diff import ChoiceRoute, DiffChoiceRoute, DiffMutableModule, DiffMutableOP
from jaxmutate.ops import DartsDilConv, DartsPoolBN, DartsSepConv, DartsSkipConnect, DartsZero, Identity
from jaxmutate.ops._common import batch_norm
from jaxmutate.registry import MODELS

DARTS_OPS: tuple[str, ...] = (
    "zero",
    "skip_connect",
    "max_pool_3x3",
    "avg_pool_3x3",
    "sep_conv_3x3",
    "sep_conv_5x5",
    "dil_conv_3x3",
    "dil_conv_5x5",
)
"""The DARTS operation set, in MMRazor's ``darts_supernet.py`` order."""


def darts_op(
    op_name: str, channels: int, stride: int, affine: bool = False, implementation: str | None = None, **module_kwargs: Any
) -> nn.Module:
  """Builds one DARTS operation by name (``channels`` in and out).

  Args:
    op_name: one of :data:`DARTS_OPS`.
    channels: input and output channels.
    stride: 1, or 2 on the input edges of a reduction cell.
    affine: BatchNorm with learned scale and bias (DARTS searches without).
    implementation: depthwise convolution implementation of the conv ops
      (``None``: by backend, see :func:`jaxmutate.ops.default_implementation`).
    **module_kwargs: passed to the module (e.g. ``name``, ``parent``).

  Returns:
    The Flax module, called as ``op(x, train=...)``.

  Raises:
    ValueError: an unknown ``op_name`` (the message lists the known ones).

  Example:
    >>> import jax, jax.numpy as jnp
    >>> from jaxmutate.models.darts import darts_op
    >>> op = darts_op("sep_conv_3x3", channels=4, stride=2)
    >>> x = jnp.ones((2, 8, 8, 4))
    >>> op.apply(op.init(jax.random.key(0), x), x).shape
    (2, 4, 4, 4)
  """
  common = dict(in_channels=channels, out_channels=channels, **module_kwargs)
  if op_name == "zero":
    return DartsZero(stride=stride, **common)
  if op_name == "skip_connect":
    if stride == 1:
      return Identity(**common)
    return DartsSkipConnect(stride=stride, affine=affine, **common)
  if op_name in ("max_pool_3x3", "avg_pool_3x3"):
    return DartsPoolBN(pool_type=op_name[:3], kernel_size=3, stride=stride, affine=affine, **common)
  if op_name in ("sep_conv_3x3", "sep_conv_5x5"):
    return DartsSepConv(kernel_size=int(op_name[-1]), stride=stride, affine=affine, implementation=implementation, **common)
  if op_name in ("dil_conv_3x3", "dil_conv_5x5"):
    return DartsDilConv(
        kernel_size=int(op_name[-1]), stride=stride, dilation=2, affine=affine, implementation=implementation, **common
    )
  raise ValueError(f"Unknown DARTS operation {op_name!r}; known operations are {list(DARTS_OPS)}.")


def _check_op_names(owner: str, op_names: Sequence[str]) -> tuple[str, ...]:
  if isinstance(op_names, str) or not isinstance(op_names, Sequence) or not op_names:
    raise TypeError(f"{owner}: op_names must be a non-empty list of operation names from {list(DARTS_OPS)}, got {op_names!r}.")
  unknown = [name for name in op_names if name not in DARTS_OPS]
  if unknown:
    raise ValueError(f"{owner}: unknown operation name(s) {unknown} in op_names; known operations are {list(DARTS_OPS)}.")
  if len(set(op_names)) != len(op_names):
    raise ValueError(f"{owner}: op_names has duplicates: {list(op_names)}.")
  return tuple(op_names)


def _mutable_class_and_kwargs(owner: str, what: str, cfg: Any, default: type, base: type) -> tuple[type, dict[str, Any]]:
  """``mutable_cfg``/``route_cfg`` → (class, extra fields).

  The config may be ``None`` (the default class), a dict ``type=...`` plus
  fields, or a module instance already built from such a dict by
  :func:`jaxmutate.build` (its fields are reused).
  """
  if cfg is None:
    return default, {}
  if isinstance(cfg, nn.Module):
    fields = {f.name: getattr(cfg, f.name) for f in dataclasses.fields(cfg) if f.init and f.name not in ("parent", "name")}
    cls, kwargs = type(cfg), {k: v for k, v in fields.items() if k not in ("candidates", "edges", "alias")}
  elif isinstance(cfg, Mapping):
    kwargs = dict(cfg)
    cls = kwargs.pop("type", default)
    if isinstance(cls, str):
      cls = MODELS.get(cls)
    for reserved in ("candidates", "edges", "alias"):
      if reserved in kwargs:
        raise ValueError(f"{owner}: {what} may not set {reserved!r}; the backbone fills it in.")
  else:
    raise TypeError(f"{owner}: {what} must be None, a config dict or a built mutable, got {cfg!r}.")
  if not isinstance(cls, type) or not issubclass(cls, base):
    raise TypeError(f"{owner}: {what} must build a {base.__name__} (or a subclass), got {cls!r}.")
  return cls, kwargs


class _ReLUConvBN(nn.Module):
  """ReLU → 1x1 conv → BN: a cell's input preprocessing (MMRazor's StandardConv)."""

  features: int
  affine: bool = False

  @nn.compact
  def __call__(self, x: jax.Array, train: bool = False) -> jax.Array:
    x = nn.Conv(self.features, (1, 1), use_bias=False, name="conv")(nn.relu(x))
    return batch_norm(train, affine=self.affine, name="bn")(x)


def _preprocess(x: jax.Array, in_channels: int, channels: int, reduce: bool, affine: bool, name: str, train: bool) -> jax.Array:
  if reduce:
    # FactorizedReduce: the input comes from before the previous (reduction) cell.
    return DartsSkipConnect(in_channels=in_channels, out_channels=channels, stride=2, affine=affine, name=name)(x, train=train)
  return _ReLUConvBN(channels, affine, name=name)(x, train=train)


def node_id(reduction: bool, node: int) -> str:
  """The alias of a node's route: ``normal_n{node}`` or ``reduce_n{node}``."""
  return f"{'reduce' if reduction else 'normal'}_n{node}"


def edge_id(reduction: bool, node: int, edge: int) -> str:
  """The alias of an edge's operation: ``normal_n{node}_p{edge}``."""
  return f"{node_id(reduction, node)}_p{edge}"


class DartsCell(nn.Module):
  """A searchable DARTS cell: preprocess both inputs, ``num_nodes`` nodes, concat.

  Node ``n`` (2 … ``num_nodes + 1``) is a route named and aliased
  ``normal_n{n}`` / ``reduce_n{n}`` over ``n`` edges ``..._p{j}``, each a
  differentiable op over ``op_names`` applied to state ``j`` (stride 2 from the
  two cell inputs in a reduction cell). The output concatenates the nodes.

  Attributes:
    num_nodes: intermediate nodes.
    channels: channels of every node.
    in_channels: channels of the two inputs ``(s0, s1)``.
    reduction: halve the resolution.
    prev_reduction: the previous cell reduced, so ``s0`` has twice ``s1``'s size.
    op_names: candidate operations of every edge.
    mutable_class, mutable_kwargs: the edge op mutable and its extra fields.
    route_class, route_kwargs: the node route mutable and its extra fields.
    affine: BatchNorm learns scale and bias.
    implementation: depthwise convolution implementation (``None``: by backend).
  """

  num_nodes: int
  channels: int
  in_channels: tuple[int, int]
  reduction: bool
  prev_reduction: bool
  op_names: tuple[str, ...]
  mutable_class: type = DiffMutableOP
  mutable_kwargs: Mapping[str, Any] = dataclasses.field(default_factory=dict)
  route_class: type = DiffChoiceRoute
  route_kwargs: Mapping[str, Any] = dataclasses.field(default_factory=dict)
  affine: bool = False
  implementation: str | None = None

  @nn.compact
  def __call__(self, s0: jax.Array, s1: jax.Array, choices: Any, train: bool = False, tau: Any = None) -> jax.Array:
    c = self.channels
    states = [
        _preprocess(s0, self.in_channels[0], c, self.prev_reduction, self.affine, "preproc0", train),
        _preprocess(s1, self.in_channels[1], c, False, self.affine, "preproc1", train),
    ]
    extra = {} if tau is None else {"tau": tau}
    for node in range(2, self.num_nodes + 2):
      edges = {}
      for j in range(node):
        stride = 2 if self.reduction and j < 2 else 1
        alias = edge_id(self.reduction, node, j)
        candidates = {
            op: darts_op(op, c, stride, self.affine, self.implementation, parent=None) for op in self.op_names
        }
        edges[alias] = self.mutable_class(candidates=candidates, alias=alias, **self.mutable_kwargs, parent=None)
      route_alias = node_id(self.reduction, node)
      route = self.route_class(edges=edges, alias=route_alias, **self.route_kwargs, name=route_alias)
      states.append(route(states, choices, train=train, **extra))
    return jnp.concatenate(states[2:], axis=-1)


def _layout(owner: str, base_channels: int, num_layers: int, num_nodes: int, stem_multiplier: int, reduction_layers: Sequence[int] | None) -> tuple[int, ...]:
  for name, value in (("base_channels", base_channels), ("num_layers", num_layers), ("num_nodes", num_nodes), ("stem_multiplier", stem_multiplier)):
    if isinstance(value, bool) or not isinstance(value, int) or value < 1:
      raise ValueError(f"{owner}: {name} must be an int >= 1, got {value!r}.")
  if reduction_layers is None:
    return tuple(sorted({num_layers // 3, 2 * num_layers // 3}))
  layers = tuple(reduction_layers)
  bad = [i for i in layers if isinstance(i, bool) or not isinstance(i, int) or not 0 <= i < num_layers]
  if bad:
    raise ValueError(f"{owner}: reduction_layers {list(layers)} must be cell indices in [0, {num_layers}); bad: {bad}.")
  return tuple(sorted(set(layers)))


class _Stem(nn.Module):
  features: int
  affine: bool = False

  @nn.compact
  def __call__(self, x: jax.Array, train: bool = False) -> jax.Array:
    x = nn.Conv(self.features, (3, 3), padding=1, use_bias=False, name="conv")(x)
    return batch_norm(train, affine=self.affine, name="bn")(x)


@MODELS.register_module()
class DartsBackbone(nn.Module):
  """The DARTS supernet (MMRazor's ``DartsBackbone``), optionally with a classifier head.

  ``model.apply(variables, x, choices, train=False, tau=None)`` with NHWC
  images; ``choices`` comes from ``DiffModuleMutator.set_choices(arch_params)``
  (``None`` at ``init``). ``tau`` is the Gumbel temperature handed to every
  mutable (used by Gumbel mutables only). Returns class logits when
  ``num_classes`` is set, else the last cell's feature map.

  Attributes:
    base_channels: channels of the first cells' nodes (``C``, 16 in DARTS).
    num_layers: number of cells (8 in the DARTS search).
    num_nodes: intermediate nodes per cell (4 in DARTS).
    stem_multiplier: the stem outputs ``stem_multiplier · C`` channels.
    num_classes: adds global average pooling and a Dense classifier.
    op_names: the candidate operations of every edge (a subset of
      :data:`DARTS_OPS`, in logit order).
    mutable_cfg: the edge mutable: ``None`` (``DiffMutableOP``) or
      ``dict(type="GumbelMutableOP", tau=1.0, hard=True)`` and so on (the
      backbone fills in ``candidates`` and ``alias``).
    route_cfg: the node route: ``None`` (``DiffChoiceRoute``, top 2) or
      ``dict(type="DiffChoiceRoute", num_chosen=2, direct_weights=False)``.
    reduction_layers: indices of reduction cells (default
      ``{num_layers // 3, 2 · num_layers // 3}``).
    affine: BatchNorm learns scale and bias (DARTS searches with ``False``).
    depthwise_implementation: ``"shifted"`` or ``"xla"`` depthwise convs
      (``None``: by backend; see :func:`jaxmutate.ops.depthwise_conv`).

  Raises:
    ValueError: at init, unknown operation names, a bad layout or a route
      ``num_chosen`` larger than a node's number of edges (the message names
      the route).

  Example:
    >>> import jax, jax.numpy as jnp
    >>> import jaxmutate as jm
    >>> from jaxmutate.models.darts import DartsBackbone
    >>> net = DartsBackbone(base_channels=2, num_layers=1, num_nodes=2, num_classes=10,
    ...                     op_names=("zero", "skip_connect", "avg_pool_3x3"))
    >>> x = jnp.ones((2, 8, 8, 1))
    >>> variables = jm.init_supernet(net, jax.random.key(0), x)
    >>> mutator = jm.DiffModuleMutator().prepare_from_supernet(variables)
    >>> mutator.group_key(0), len(mutator.search_groups)
    ('reduce_n2', 7)
    >>> arch_params = mutator.init_arch_params(jax.random.key(1))
    >>> net.apply(variables, x, mutator.set_choices(arch_params)).shape
    (2, 10)
  """

  base_channels: int = 16
  num_layers: int = 8
  num_nodes: int = 4
  stem_multiplier: int = 3
  num_classes: int | None = None
  op_names: Sequence[str] = DARTS_OPS
  mutable_cfg: Any = None
  route_cfg: Any = None
  reduction_layers: Sequence[int] | None = None
  affine: bool = False
  depthwise_implementation: str | None = None

  def __post_init__(self) -> None:
    # Validate the search space when the backbone is built (e.g. by jm.build
    # from a config), not only at the first init.
    owner = "DartsBackbone"
    _check_op_names(owner, self.op_names)
    _mutable_class_and_kwargs(owner, "mutable_cfg", self.mutable_cfg, DiffMutableOP, DiffMutableModule)
    _, route_kwargs = _mutable_class_and_kwargs(owner, "route_cfg", self.route_cfg, DiffChoiceRoute, ChoiceRoute)
    num_chosen = route_kwargs.get("num_chosen", 2)
    if isinstance(num_chosen, int) and num_chosen > 2:
      raise ValueError(
          f"{owner}: route_cfg num_chosen={num_chosen} is larger than the number of edges of the first node "
          f"of every cell ('normal_n2'/'reduce_n2' has 2 input edges)."
      )
    if self.num_classes is not None and (isinstance(self.num_classes, bool) or not isinstance(self.num_classes, int) or self.num_classes < 1):
      raise ValueError(f"{owner}: num_classes must be None or an int >= 1, got {self.num_classes!r}.")
    _layout(owner, self.base_channels, self.num_layers, self.num_nodes, self.stem_multiplier, self.reduction_layers)
    super().__post_init__()

  def cell_layout(self) -> list[dict[str, Any]]:
    """Per cell: ``channels``, ``in_channels``, ``reduction``, ``prev_reduction``."""
    reductions = _layout("DartsBackbone", self.base_channels, self.num_layers, self.num_nodes, self.stem_multiplier, self.reduction_layers)
    c_stem = self.stem_multiplier * self.base_channels
    c_pp, c_p, c = c_stem, c_stem, self.base_channels
    layout, prev_reduction = [], False
    for i in range(self.num_layers):
      reduction = i in reductions
      if reduction:
        c *= 2
      layout.append(dict(channels=c, in_channels=(c_pp, c_p), reduction=reduction, prev_reduction=prev_reduction))
      c_pp, c_p, prev_reduction = c_p, c * self.num_nodes, reduction
    return layout

  @nn.compact
  def __call__(self, x: jax.Array, choices: Mapping[str, Any] | None = None, train: bool = False, tau: Any = None) -> jax.Array:
    owner = "DartsBackbone"
    op_names = _check_op_names(owner, self.op_names)
    mutable_class, mutable_kwargs = _mutable_class_and_kwargs(owner, "mutable_cfg", self.mutable_cfg, DiffMutableOP, DiffMutableModule)
    route_class, route_kwargs = _mutable_class_and_kwargs(owner, "route_cfg", self.route_cfg, DiffChoiceRoute, ChoiceRoute)
    s0 = s1 = _Stem(self.stem_multiplier * self.base_channels, self.affine, name="stem")(x, train=train)
    for i, cell in enumerate(self.cell_layout()):
      out = DartsCell(
          num_nodes=self.num_nodes,
          op_names=op_names,
          mutable_class=mutable_class,
          mutable_kwargs=mutable_kwargs,
          route_class=route_class,
          route_kwargs=route_kwargs,
          affine=self.affine,
          implementation=self.depthwise_implementation,
          name=f"cell{i}",
          **cell,
      )(s0, s1, choices, train=train, tau=tau)
      s0, s1 = s1, out
    if self.num_classes is None:
      return s1
    return nn.Dense(self.num_classes, name="head")(s1.mean(axis=(1, 2)))


# The derived, discrete network ---------------------------------------------------


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
      out = _DiscreteEdge(op_name, self.channels, stride, self.affine, self.implementation, name=alias)(states[j], train=train)
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
      states.append(_DiscreteNode(edges, c, self.reduction, self.affine, self.implementation, name=node_id(self.reduction, node))(states, train=train))
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
    >>> from jaxmutate.models.darts import DartsBackbone, derive_discrete_network
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
          genotype, channels, in_channels, reduction, prev_reduction, self.affine, self.depthwise_implementation, name=f"cell{i}"
      )(s0, s1, train=train)
      s0, s1 = s1, out
    if self.num_classes is None:
      return s1
    return nn.Dense(self.num_classes, name="head")(s1.mean(axis=(1, 2)))


def _chosen(fix_subnet: Mapping[str, Any], key: str) -> Any:
  if key not in fix_subnet:
    raise KeyError(f"The subnet has no entry {key!r} (a DartsBackbone alias); it has {sorted(fix_subnet)[:12]}...")
  entry = fix_subnet[key]
  if not isinstance(entry, Mapping) or "chosen" not in entry:
    raise TypeError(f"Subnet entry {key!r} must be {{'chosen': ...}}, got {entry!r}.")
  return entry["chosen"]


def darts_genotype(backbone: DartsBackbone, fix_subnet: Mapping[str, Any], reduction: bool) -> tuple[tuple[tuple[str, int, str], ...], ...]:
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
    KeyError: a missing entry. ValueError: an unknown edge or operation.

  Example:
    >>> from jaxmutate.models import darts_genotype
    >>> from jaxmutate.models.darts import DartsBackbone
    >>> net = DartsBackbone(base_channels=2, num_layers=1, num_nodes=1, num_classes=3, op_names=("zero", "skip_connect"))
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
      raise ValueError(f"Subnet entry {route_key!r}: chosen must be a list of edge names, got {edges_chosen!r}.")
    valid = [edge_id(reduction, node, j) for j in range(node)]
    kept = []
    for alias in edges_chosen:
      if alias not in valid:
        raise ValueError(f"Subnet entry {route_key!r}: unknown edge {alias!r}; edges are {valid}.")
      op = _chosen(fix_subnet, alias)
      if isinstance(op, (list, tuple)) and len(op) == 1:
        op = op[0]
      if op not in op_names:
        raise ValueError(f"Subnet entry {alias!r}: unknown operation {op!r}; the backbone's operations are {list(op_names)}.")
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
    KeyError / ValueError: see :func:`darts_genotype`.

  Example:
    >>> from jaxmutate.models import derive_discrete_network
    >>> from jaxmutate.models.darts import DartsBackbone
    >>> net = DartsBackbone(base_channels=2, num_layers=1, num_nodes=1, num_classes=3, op_names=("zero", "skip_connect"))
    >>> fix_subnet = {"reduce_n2": {"chosen": ["reduce_n2_p0", "reduce_n2_p1"]},
    ...               "reduce_n2_p0": {"chosen": "skip_connect"}, "reduce_n2_p1": {"chosen": ["zero"]}}
    >>> network = derive_discrete_network(net, fix_subnet)
    >>> network.cells, network.stem_channels, network.num_classes
    (((4, (6, 6), True, False),), 6, 3)
  """
  layout = backbone.cell_layout()
  return DartsDiscreteNetwork(
      normal_genotype=darts_genotype(backbone, fix_subnet, reduction=False) if any(not c["reduction"] for c in layout) else (),
      reduce_genotype=darts_genotype(backbone, fix_subnet, reduction=True) if any(c["reduction"] for c in layout) else (),
      cells=tuple((c["channels"], tuple(c["in_channels"]), c["reduction"], c["prev_reduction"]) for c in layout),
      stem_channels=backbone.stem_multiplier * backbone.base_channels,
      num_classes=backbone.num_classes,
      affine=backbone.affine,
      depthwise_implementation=backbone.depthwise_implementation,
  )


def discrete_network_variables(network: nn.Module, supernet_variables: Mapping[str, Any], sample_input: jax.Array) -> dict[str, Any]:
  """The supernet's weights for a derived network, copied by module path.

  Args:
    network: the derived network (module names match the supernet's).
    supernet_variables: the supernet's variables (``params``, ``batch_stats``).
    sample_input: an input batch (only its shape is used).

  Returns:
    ``{"params": ..., "batch_stats": ...}`` for ``network.apply``.

  Raises:
    KeyError: a variable of the derived network has no counterpart (naming
      its path).

  Example:
    >>> import jax, jax.numpy as jnp
    >>> from jaxmutate.models import derive_discrete_network, discrete_network_variables
    >>> from jaxmutate.models.darts import DartsBackbone
    >>> net = DartsBackbone(base_channels=2, num_layers=1, num_nodes=1, num_classes=3, op_names=("zero", "skip_connect"))
    >>> fix_subnet = {"reduce_n2": {"chosen": ["reduce_n2_p0", "reduce_n2_p1"]},
    ...               "reduce_n2_p0": {"chosen": "skip_connect"}, "reduce_n2_p1": {"chosen": ["zero"]}}
    >>> x = jnp.ones((2, 8, 8, 1))
    >>> supernet_variables = net.init(jax.random.key(0), x, None)
    >>> network = derive_discrete_network(net, fix_subnet)
    >>> variables = discrete_network_variables(network, supernet_variables, x)
    >>> sorted(variables["params"]["cell0"]["reduce_n2"]), network.apply(variables, x).shape  # "zero" has no weights
    (['reduce_n2_p0'], (2, 3))
  """
  shapes = jax.eval_shape(lambda: network.init(jax.random.key(0), sample_input))

  def pick(tree: Any, source: Any, path: tuple[str, ...]) -> Any:
    if isinstance(tree, Mapping):
      if not isinstance(source, Mapping):
        raise KeyError(f"Supernet variables have no subtree {'/'.join(path)!r}.")
      out = {}
      for key, value in tree.items():
        if key not in source:
          raise KeyError(f"Supernet variables have no entry {'/'.join(path + (key,))!r} for the derived network.")
        out[key] = pick(value, source[key], path + (key,))
      return out
    if tuple(tree.shape) != tuple(jnp.shape(source)):
      raise ValueError(f"Variable {'/'.join(path)!r}: derived shape {tree.shape} but supernet shape {jnp.shape(source)}.")
    return source

  return {col: pick(tree, supernet_variables.get(col, {}), (col,)) for col, tree in shapes.items()}
