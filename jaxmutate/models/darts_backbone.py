"""The DARTS supernet: a searchable cell backbone (MMRazor's ``DartsBackbone``).

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
vector per alias and the exported subnet has MMRazor's keys. The network an
exported subnet derives is in :mod:`jaxmutate.models.darts_discrete`.

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

from jaxmutate.errors import ConfigError, ConfigTypeError, SearchSpaceError
from jaxmutate.models.darts import DARTS_OPS, _check_op_names, _preprocess, _Stem, darts_op, edge_id, node_id
from jaxmutate.mutables import ChoiceRoute, DiffChoiceRoute, DiffMutableModule, DiffMutableOP
from jaxmutate.registry import MODELS


def _mutable_class_and_kwargs(
  owner: str, what: str, cfg: Any, default: type, base: type
) -> tuple[type, dict[str, Any]]:
  """``mutable_cfg``/``route_cfg`` → (class, extra fields).

  The config may be ``None`` (the default class), a dict ``type=...`` plus
  fields, or a module instance already built from such a dict by
  :func:`jaxmutate.build` (its fields are reused).
  """
  if cfg is None:
    return default, {}
  if isinstance(cfg, nn.Module):
    fields = {
      f.name: getattr(cfg, f.name) for f in dataclasses.fields(cfg) if f.init and f.name not in ("parent", "name")
    }
    cls, kwargs = type(cfg), {k: v for k, v in fields.items() if k not in ("candidates", "edges", "alias")}
  elif isinstance(cfg, Mapping):
    kwargs = dict(cfg)
    cls = kwargs.pop("type", default)
    if isinstance(cls, str):
      cls = MODELS.get(cls)
    for reserved in ("candidates", "edges", "alias"):
      if reserved in kwargs:
        raise ConfigError(f"{owner}: {what} may not set {reserved!r}; the backbone fills it in.")
  else:
    raise ConfigTypeError(f"{owner}: {what} must be None, a config dict or a built mutable, got {cfg!r}.")
  if not isinstance(cls, type) or not issubclass(cls, base):
    raise ConfigTypeError(f"{owner}: {what} must build a {base.__name__} (or a subclass), got {cls!r}.")
  return cls, kwargs


class DartsCell(nn.Module):
  """A searchable DARTS cell: _preprocess both inputs, ``num_nodes`` nodes, concat.

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

  Example:
    >>> import jax, jax.numpy as jnp
    >>> from jaxmutate.models.darts_backbone import DartsCell
    >>> cell = DartsCell(num_nodes=2, channels=4, in_channels=(3, 3), reduction=False, prev_reduction=False,
    ...                  op_names=("zero", "skip_connect"))
    >>> s = jnp.ones((1, 4, 4, 3))
    >>> out, variables = cell.init_with_output(jax.random.key(0), s, s, None)  # every op of every edge
    >>> out.shape, sorted(variables["mutables"])  # two nodes of 4 channels, concatenated
    ((1, 4, 4, 8), ['normal_n2', 'normal_n3'])
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


def _layout(
  owner: str,
  base_channels: int,
  num_layers: int,
  num_nodes: int,
  stem_multiplier: int,
  reduction_layers: Sequence[int] | None,
) -> tuple[int, ...]:
  for name, value in (
    ("base_channels", base_channels),
    ("num_layers", num_layers),
    ("num_nodes", num_nodes),
    ("stem_multiplier", stem_multiplier),
  ):
    if isinstance(value, bool) or not isinstance(value, int) or value < 1:
      raise ConfigError(f"{owner}: {name} must be an int >= 1, got {value!r}.")
  if reduction_layers is None:
    return tuple(sorted({num_layers // 3, 2 * num_layers // 3}))
  layers = tuple(reduction_layers)
  bad = [i for i in layers if isinstance(i, bool) or not isinstance(i, int) or not 0 <= i < num_layers]
  if bad:
    raise ConfigError(
      f"{owner}: reduction_layers {list(layers)} must be cell indices in [0, {num_layers}); bad: {bad}."
    )
  return tuple(sorted(set(layers)))


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
    ConfigError: (a ``ValueError``) when built, unknown operation names or a
      bad layout; ``ConfigTypeError`` (a ``TypeError``) for configs of the
      wrong type.
    SearchSpaceError: (a ``ValueError``) a route ``num_chosen`` larger than a
      node's number of edges (the message names the route).

  Example:
    >>> import jax, jax.numpy as jnp
    >>> import jaxmutate as jm
    >>> from jaxmutate.models import DartsBackbone
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
      raise SearchSpaceError(
        f"{owner}: route_cfg num_chosen={num_chosen} is larger than the number of edges of the first node "
        f"of every cell ('normal_n2'/'reduce_n2' has 2 input edges)."
      )
    if self.num_classes is not None and (
      isinstance(self.num_classes, bool) or not isinstance(self.num_classes, int) or self.num_classes < 1
    ):
      raise ConfigError(f"{owner}: num_classes must be None or an int >= 1, got {self.num_classes!r}.")
    _layout(owner, self.base_channels, self.num_layers, self.num_nodes, self.stem_multiplier, self.reduction_layers)
    super().__post_init__()

  def cell_layout(self) -> list[dict[str, Any]]:
    """Per cell: ``channels``, ``in_channels``, ``reduction``, ``prev_reduction``."""
    reductions = _layout(
      "DartsBackbone", self.base_channels, self.num_layers, self.num_nodes, self.stem_multiplier, self.reduction_layers
    )
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
  def __call__(
    self, x: jax.Array, choices: Mapping[str, Any] | None = None, train: bool = False, tau: Any = None
  ) -> jax.Array:
    owner = "DartsBackbone"
    op_names = _check_op_names(owner, self.op_names)
    mutable_class, mutable_kwargs = _mutable_class_and_kwargs(
      owner, "mutable_cfg", self.mutable_cfg, DiffMutableOP, DiffMutableModule
    )
    route_class, route_kwargs = _mutable_class_and_kwargs(
      owner, "route_cfg", self.route_cfg, DiffChoiceRoute, ChoiceRoute
    )
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


__all__ = ["DartsBackbone", "DartsCell"]
