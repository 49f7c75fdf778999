"""The DARTS operation set and the parts both DARTS networks share.

:data:`DARTS_OPS` and :func:`darts_op` build the candidate operations of an
edge; :func:`node_id` and :func:`edge_id` give the names (and aliases) of a
cell's nodes and edges. The stem and the cell-input preprocessing here are
used by the supernet (:mod:`jaxmutate.models.darts_backbone`) and the derived
network (:mod:`jaxmutate.models.darts_discrete`) alike, under the same module
names, so weights copy between them by path
(:mod:`jaxmutate.models.darts_weights`).

References:
  Liu et al., DARTS: Differentiable Architecture Search, ICLR 2019,
  https://arxiv.org/abs/1806.09055
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import flax.linen as nn
import jax

from jaxmutate.errors import ConfigError, ConfigTypeError
from jaxmutate.ops import DartsDilConv, DartsPoolBN, DartsSepConv, DartsSkipConnect, DartsZero, Identity, batch_norm

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
  op_name: str,
  channels: int,
  stride: int,
  affine: bool = False,
  implementation: str | None = None,
  **module_kwargs: Any,
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
    ConfigError: (a ``ValueError``) an unknown ``op_name`` (the message lists
      the known ones).

  Example:
    >>> import jax, jax.numpy as jnp
    >>> from jaxmutate.models import darts_op
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
    return DartsSepConv(
      kernel_size=int(op_name[-1]), stride=stride, affine=affine, implementation=implementation, **common
    )
  if op_name in ("dil_conv_3x3", "dil_conv_5x5"):
    return DartsDilConv(
      kernel_size=int(op_name[-1]), stride=stride, dilation=2, affine=affine, implementation=implementation, **common
    )
  raise ConfigError(f"Unknown DARTS operation {op_name!r}; known operations are {list(DARTS_OPS)}.")


def _check_op_names(owner: str, op_names: Sequence[str]) -> tuple[str, ...]:
  if isinstance(op_names, str) or not isinstance(op_names, Sequence) or not op_names:
    raise ConfigTypeError(
      f"{owner}: op_names must be a non-empty list of operation names from {list(DARTS_OPS)}, got {op_names!r}."
    )
  unknown = [name for name in op_names if name not in DARTS_OPS]
  if unknown:
    raise ConfigError(
      f"{owner}: unknown operation name(s) {unknown} in op_names; known operations are {list(DARTS_OPS)}."
    )
  if len(set(op_names)) != len(op_names):
    raise ConfigError(f"{owner}: op_names has duplicates: {list(op_names)}.")
  return tuple(op_names)


class _ReLUConvBN(nn.Module):
  """ReLU → 1x1 conv → BN: a cell's input preprocessing (MMRazor's StandardConv)."""

  features: int
  affine: bool = False

  @nn.compact
  def __call__(self, x: jax.Array, train: bool = False) -> jax.Array:
    x = nn.Conv(self.features, (1, 1), use_bias=False, name="conv")(nn.relu(x))
    return batch_norm(train, affine=self.affine, name="bn")(x)


def _preprocess(
  x: jax.Array, in_channels: int, channels: int, reduce: bool, affine: bool, name: str, train: bool
) -> jax.Array:
  if reduce:
    # FactorizedReduce: the input comes from before the previous (reduction) cell.
    return DartsSkipConnect(in_channels=in_channels, out_channels=channels, stride=2, affine=affine, name=name)(
      x, train=train
    )
  return _ReLUConvBN(channels, affine, name=name)(x, train=train)


def node_id(reduction: bool, node: int) -> str:
  """The alias of a node's route: ``normal_n{node}`` or ``reduce_n{node}``.

  Example:
    >>> from jaxmutate.models.darts import node_id
    >>> node_id(False, 2), node_id(True, 3)
    ('normal_n2', 'reduce_n3')
  """
  return f"{'reduce' if reduction else 'normal'}_n{node}"


def edge_id(reduction: bool, node: int, edge: int) -> str:
  """The alias of an edge's operation: ``normal_n{node}_p{edge}``.

  Example:
    >>> from jaxmutate.models.darts import edge_id
    >>> edge_id(False, 2, 0), edge_id(True, 3, 2)
    ('normal_n2_p0', 'reduce_n3_p2')
  """
  return f"{node_id(reduction, node)}_p{edge}"


class _Stem(nn.Module):
  features: int
  affine: bool = False

  @nn.compact
  def __call__(self, x: jax.Array, train: bool = False) -> jax.Array:
    x = nn.Conv(self.features, (3, 3), padding=1, use_bias=False, name="conv")(x)
    return batch_norm(train, affine=self.affine, name="bn")(x)


__all__ = ["DARTS_OPS", "darts_op", "edge_id", "node_id"]
