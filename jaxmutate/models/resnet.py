"""A small ResNet channel search space: basic blocks whose residual sums share one unit per stage.

Residual adds couple channels: a stage's projection shortcut, every block's
output and the stage's output must keep the same channels, so they are one
channel unit; each block's inner width (its first conv's output) is a unit of
its own. Same unit arguments as :class:`~jaxmutate.models.SearchableMobileNetV2`.

References:
  He et al., Deep Residual Learning for Image Recognition,
  https://arxiv.org/abs/1512.03385 (basic blocks, projection shortcuts).
"""

from __future__ import annotations

import dataclasses
from collections.abc import Mapping, Sequence
from typing import Any

import flax.linen as nn
import jax

from jaxmutate.channels import SlimmableChannelUnit, make_divisible
from jaxmutate.dynamic import DEFAULT_MAX_BUCKETS, DynamicDense, WidthLike, full_channels
from jaxmutate.errors import ConfigError, ConfigTypeError
from jaxmutate.models.mobilenet_v2 import (
  AUTOSLIM_CANDIDATES,
  DynamicConvBN,
  _build_units,
  _check_same_width,
  _setup_channel_space,
  _space_unit_class,
)
from jaxmutate.registry import MODELS

__all__ = ["DynamicBasicBlock", "SearchableResNet"]


@MODELS.register_module()
class DynamicBasicBlock(nn.Module):
  """ResNet's basic block over kept widths: two 3x3 conv-BN, a shortcut, ReLU after the sum.

  ``conv1`` (3x3, carrying the stride) + BN + ReLU to ``mid_width``,
  ``conv2`` (3x3) + BN to ``out_width``; the shortcut is the input itself, or a
  1x1 conv-BN projection (``shortcut``, carrying the stride) when the block
  strides or changes the channel count. The sum is ``out_width`` wide: an
  identity shortcut makes the input width the same unit, and ``x`` must then
  be zero beyond ``in_width`` (as every dynamic layer's output is). Submodules are
  :class:`~jaxmutate.models.DynamicConvBN`.

  Attributes:
    out_channels: output channels at full width.
    stride: spatial stride of the block.
    switchable: slimmable BatchNorms (see :class:`~jaxmutate.models.DynamicConvBN`).
    max_buckets: see :class:`~jaxmutate.models.DynamicConvBN`.

  Example:
    >>> import jax, jax.numpy as jnp
    >>> from jaxmutate.models import DynamicBasicBlock
    >>> block = DynamicBasicBlock(out_channels=8, stride=2)
    >>> x = jnp.ones((2, 8, 8, 4))
    >>> variables = jax.jit(block.init)(jax.random.key(0), x)
    >>> sorted(variables["params"])
    ['conv1', 'conv2', 'shortcut']
    >>> jax.jit(lambda v: block.apply(v, x, in_width=2, mid_width=4, out_width=8))(variables).shape
    (2, 4, 4, 8)
  """

  out_channels: int
  stride: int = 1
  switchable: bool = False
  max_buckets: int = DEFAULT_MAX_BUCKETS

  def _has_projection(self, in_channels: int) -> bool:
    """Whether the shortcut is a 1x1 conv-BN (the block strides or changes the width)."""
    return self.stride != 1 or in_channels != self.out_channels

  @nn.compact
  def __call__(
    self,
    x: jax.Array,
    in_width: WidthLike | None = None,
    mid_width: WidthLike | None = None,
    out_width: WidthLike | None = None,
    train: bool = False,
  ) -> jax.Array:
    """Applies the block to NHWC ``x``.

    Args:
      x: ``(N, H, W, in_channels)``, zero beyond ``in_width``.
      in_width: kept input channels; ``None`` is all.
      mid_width: kept inner channels (``conv1``'s output).
      out_width: kept output channels; with an identity shortcut it defaults
        to ``in_width`` and must be the same unit.
      train: BatchNorm uses batch statistics.

    Returns:
      ``(N, H / stride, W / stride, out_channels)``, zero beyond ``out_width``.

    Raises:
      SearchSpaceError: an identity shortcut between different units or widths.
    """
    where = f"DynamicBasicBlock {'.'.join(self.scope.path) if self.scope else ''}".strip()
    layer = dict(switchable=self.switchable, max_buckets=self.max_buckets)
    if self._has_projection(full_channels(x, in_width)):
      shortcut = DynamicConvBN(self.out_channels, 1, self.stride, name="shortcut", **layer)(
        x, out_width, in_width, train=train
      )
    else:
      out_width = in_width if out_width is None else out_width
      _check_same_width(in_width, out_width, where)
      shortcut = x
    # A basic block's inner width is its output width at full width.
    y = DynamicConvBN(self.out_channels, 3, self.stride, act="relu", name="conv1", **layer)(
      x, mid_width, in_width, train=train
    )
    y = DynamicConvBN(self.out_channels, 3, name="conv2", **layer)(y, out_width, mid_width, train=train)
    return nn.relu(y + shortcut)


@dataclasses.dataclass(frozen=True)
class _Block:
  """One block of the plan: its name, stride, full widths and the units of its widths."""

  name: str
  stride: int
  out_channels: int
  in_unit: str
  mid_unit: str
  out_unit: str


@MODELS.register_module()
class SearchableResNet(nn.Module):
  """A small searchable ResNet (basic blocks): channel units with one unit per residual sum.

  A 3x3 conv-BN-ReLU stem, stages of :class:`DynamicBasicBlock` named
  ``layers.{stage}.{block}`` (the first block of a stage carries its stride
  and, when it strides or changes the width, a 1x1 projection shortcut),
  global average pooling and a Dense classifier. Widths are
  ``make_divisible(channels * widen_factor, 8)``.

  Channel units, in declaration order:

  - ``stem.out_channels``: the stem's output (and the first stage's width when
    that stage has identity shortcuts only);
  - ``layers.{s}.{b}.mid_channels``: each block's inner width;
  - ``layers.{s}.out_channels``: ONE unit for the stage's residual sum: the
    projection shortcut's output, every block's output and the stage's
    output (the next stage's input).

  The classifier's outputs are not prunable. Unit arguments are those of
  :class:`~jaxmutate.models.SearchableMobileNetV2` (AutoSlim's by default).

  Attributes:
    num_classes: output logits.
    arch_setting: ``(channels, num_blocks, stride)`` per stage, before
      ``widen_factor``.
    widen_factor: width multiplier.
    stem_channels: the stem's width before ``widen_factor``.
    stem_stride: 1 for tiny inputs, 2 for large ones.
    unit_type, candidate_choices, choice_mode, divisor, aliases, max_buckets:
      as in :class:`~jaxmutate.models.SearchableMobileNetV2`.

  Raises:
    ConfigError, SearchSpaceError, ConfigTypeError, UnknownTypeError,
      ConfigKeyError: on construction, for bad arguments.

  Example:
    >>> import jax, jax.numpy as jnp
    >>> import jaxmutate as jm
    >>> net = jm.models.SearchableResNet(arch_setting=((8, 1, 1), (16, 2, 2)), stem_channels=8)
    >>> net.channel_units()
    {'stem.out_channels': 8, 'layers.0.0.mid_channels': 8, 'layers.1.0.mid_channels': 16, 'layers.1.out_channels': 16, 'layers.1.1.mid_channels': 16}
    >>> x = jnp.ones((2, 8, 8, 1))
    >>> variables = jm.init_supernet(net, jax.random.key(0), x)  # a jitted init
    >>> mutator = jm.NasMutator().prepare_from_supernet(variables)
    >>> forward = jax.jit(lambda gc: net.apply(variables, x, mutator.set_choices(gc)))
    >>> forward(mutator.sample_choices(jax.random.key(1))).shape
    (2, 10)
  """

  num_classes: int = 10
  arch_setting: Sequence[Sequence[int]] = ((16, 2, 1), (32, 2, 2), (64, 2, 2))
  widen_factor: float = 1.0
  stem_channels: int = 16
  stem_stride: int = 1
  unit_type: str | type = "OneShotMutableChannelUnit"
  candidate_choices: Sequence[int | float] = AUTOSLIM_CANDIDATES
  choice_mode: str = "ratio"
  divisor: int = 8
  aliases: Mapping[str, str] | None = None
  max_buckets: int = DEFAULT_MAX_BUCKETS

  def __post_init__(self) -> None:
    _setup_channel_space(self)
    super().__post_init__()

  def _unit_class(self) -> type:
    return _space_unit_class(self)

  def _plan(self) -> tuple[int, list[_Block]]:
    """(stem width, blocks): the architecture at full width, with each width's unit."""
    model = type(self).__name__
    if isinstance(self.widen_factor, bool) or not isinstance(self.widen_factor, (int, float)) or self.widen_factor <= 0:
      raise ConfigError(f"{model}: widen_factor must be a number > 0, got {self.widen_factor!r}.")
    for name in ("stem_channels", "num_classes"):
      value = getattr(self, name)
      if isinstance(value, bool) or not isinstance(value, int) or value < 1:
        raise ConfigError(f"{model}: {name} must be an int >= 1, got {value!r}.")
    if self.stem_stride not in (1, 2) or isinstance(self.stem_stride, bool):
      raise ConfigError(f"{model}: stem_stride must be 1 or 2, got {self.stem_stride!r}.")
    if isinstance(self.arch_setting, (str, bytes)) or not isinstance(self.arch_setting, Sequence):
      raise ConfigTypeError(f"{model}: arch_setting must be a list of stages, got {self.arch_setting!r}.")
    if not self.arch_setting:
      raise ConfigError(f"{model}: arch_setting must have at least one stage.")
    stem = make_divisible(self.stem_channels * self.widen_factor, 8)
    channels, unit = stem, "stem.out_channels"
    blocks: list[_Block] = []
    for s, stage in enumerate(self.arch_setting):
      ok = isinstance(stage, Sequence) and len(stage) == 3
      if ok:
        c, n, stride = stage
        ok = all(isinstance(v, int) and not isinstance(v, bool) for v in stage) and c >= 1 and n >= 1 and stride >= 1
      if not ok:
        raise ConfigError(
          f"{model}: arch_setting[{s}] must be (channels >= 1, num_blocks >= 1, stride >= 1) of ints, got {stage!r}."
        )
      out = make_divisible(c * self.widen_factor, 8)
      # Identity shortcuts only: the stage keeps its input's unit; a projection starts the stage's own.
      stage_unit = unit if (stride == 1 and channels == out) else f"layers.{s}.out_channels"
      for b in range(n):
        blocks.append(
          _Block(f"layers.{s}.{b}", stride if b == 0 else 1, out, unit, f"layers.{s}.{b}.mid_channels", stage_unit)
        )
        channels, unit = out, stage_unit
    return stem, blocks

  def channel_units(self) -> dict[str, int]:
    """Every unit's name and full width, in declaration order.

    Example:
      >>> from jaxmutate.models import SearchableResNet
      >>> units = SearchableResNet().channel_units()
      >>> len(units), [name for name in units if name.endswith("out_channels")]
      (9, ['stem.out_channels', 'layers.1.out_channels', 'layers.2.out_channels'])
    """
    stem, blocks = self._plan()
    units = {"stem.out_channels": stem}
    for block in blocks:
      units.setdefault(block.mid_unit, block.out_channels)
      units.setdefault(block.out_unit, block.out_channels)
    return units

  @nn.compact
  def __call__(self, x: jax.Array, choices: Mapping[str, Any] | None, train: bool = False) -> jax.Array:
    """Logits of NHWC images ``x`` for the widths in ``choices`` (``None`` at ``init``: full width).

    Args:
      x: ``(N, H, W, C)`` images.
      choices: unit name → choice, as ``mutator.set_choices`` gives; ``None``
        at ``init``.
      train: BatchNorm uses (and updates) batch statistics.

    Returns:
      ``(N, num_classes)`` logits.
    """
    cls = self._unit_class()
    stem, blocks = self._plan()
    widths = _build_units(
      cls, self.channel_units(), choices, self.candidate_choices, self.choice_mode, self.divisor, self.aliases
    )
    layer = dict(switchable=issubclass(cls, SlimmableChannelUnit), max_buckets=self.max_buckets)
    x = DynamicConvBN(stem, 3, self.stem_stride, act="relu", name="stem", **layer)(
      x, widths["stem.out_channels"], train=train
    )
    for block in blocks:
      x = DynamicBasicBlock(block.out_channels, block.stride, name=block.name, **layer)(
        x, widths[block.in_unit], widths[block.mid_unit], widths[block.out_unit], train=train
      )
    width = widths[blocks[-1].out_unit]
    return DynamicDense(self.num_classes, max_buckets=self.max_buckets, name="head")(
      x.mean(axis=(1, 2)), in_width=width
    )
