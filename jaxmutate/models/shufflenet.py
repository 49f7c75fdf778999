"""The SPOS search space: a ShuffleNetV2 whose every block picks one of four."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any

import flax.linen as nn
import jax

from jaxmutate.errors import ConfigError
from jaxmutate.mutables import OneShotMutableOP
from jaxmutate.registry import MODELS

SPOS_CANDIDATES = ("shuffle_3x3", "shuffle_5x5", "shuffle_7x7", "shuffle_xception")
"""The four SPOS choice blocks, in MMRazor's order."""


def make_divisible_channels(channels: float, divisor: int = 2) -> int:
  """Rounds widths to a multiple of ``divisor`` (ShuffleNet splits channels in half)."""
  return max(divisor, int(channels + divisor / 2) // divisor * divisor)


@MODELS.register_module()
class SearchableShuffleNetV2(nn.Module):
  """SPOS's searchable ShuffleNetV2 classifier (MMRazor ``SearchableShuffleNetV2``).

  A conv-bn-relu stem, stages of :class:`~jaxmutate.OneShotMutableOP` blocks
  named ``layers.{stage}.{block}`` choosing among ``shuffle_3x3``,
  ``shuffle_5x5``, ``shuffle_7x7`` and ``shuffle_xception`` (the first block of
  a stage carries the stage's stride), a 1×1 conv-bn-relu to
  ``last_channels``, global average pooling and a Dense head.

  With ``identity_candidate=True`` every block that keeps its input's shape
  (stride 1, same width in and out) also offers ``identity`` (the block is
  skipped), so subnets differ in depth as well as in kernel, as NAS benchmark
  spaces' skip choices do; MMRazor's SPOS spaces have no such choice, so it is
  off by default. Strided and widening blocks keep the SPOS blocks only.

  Attributes:
    num_classes: output logits.
    arch_setting: ``(channels, num_blocks, stride)`` per stage, before
      ``widen_factor``. MMRazor's ImageNet setting is
      ``((64, 4, 2), (160, 4, 2), (320, 8, 2), (640, 4, 2))``; the default is a
      small one for 8×8 digits.
    stem_channels: stem width (before ``widen_factor``).
    stem_stride: stem stride (2 on ImageNet, 1 for tiny inputs).
    widen_factor: multiplies every width (rounded to even numbers).
    last_channels: width of the final 1×1 conv.
    candidate_names: which of the four SPOS blocks to offer.
    identity_candidate: also offer ``identity`` (last) at every block of
      stride 1 whose input width equals its output width.
    depthwise_implementation: how the blocks' depthwise convolutions run
      (``None`` picks by backend; see :func:`jaxmutate.ops.depthwise_conv`).

  Example:
    >>> import jax, jax.numpy as jnp
    >>> import jaxmutate as jm
    >>> net = jm.models.SearchableShuffleNetV2(arch_setting=((8, 1, 1), (16, 1, 2)), stem_channels=8, last_channels=16)
    >>> x = jnp.ones((2, 8, 8, 1))
    >>> variables = net.init(jax.random.key(0), x, None)
    >>> mutator = jm.OneShotModuleMutator().prepare_from_supernet(variables)
    >>> mutator.search_groups
    {0: ('layers.0.0',), 1: ('layers.1.0',)}
    >>> net.apply(variables, x, mutator.set_choices(mutator.sample_choices(jax.random.key(1)))).shape
    (2, 10)
  """

  num_classes: int = 10
  arch_setting: Sequence[Sequence[int]] = ((16, 2, 1), (32, 2, 2), (64, 2, 2))
  stem_channels: int = 16
  stem_stride: int = 1
  widen_factor: float = 1.0
  last_channels: int = 128
  candidate_names: Sequence[str] = SPOS_CANDIDATES
  identity_candidate: bool = False
  depthwise_implementation: str | None = None

  def _check(self) -> None:
    unknown = [name for name in self.candidate_names if name not in SPOS_CANDIDATES]
    if unknown or not self.candidate_names:
      raise ConfigError(
        f"SearchableShuffleNetV2: unknown candidate_names {unknown or list(self.candidate_names)}; choose from {SPOS_CANDIDATES}."
      )
    for position, stage in enumerate(self.arch_setting):
      if len(stage) != 3 or any(not isinstance(v, int) or v < 1 for v in stage):
        raise ConfigError(
          f"SearchableShuffleNetV2: arch_setting[{position}] must be (channels, num_blocks, stride) of positive ints, got {stage!r}."
        )
    if not isinstance(self.identity_candidate, bool):
      raise ConfigError(
        f"SearchableShuffleNetV2: identity_candidate must be True or False, got {self.identity_candidate!r}."
      )
    if not self.widen_factor > 0:
      raise ConfigError(f"SearchableShuffleNetV2: widen_factor must be > 0, got {self.widen_factor!r}.")

  def block_candidates(self, in_channels: int, out_channels: int, stride: int) -> dict[str, Any]:
    """The chosen SPOS blocks for one position, and ``identity`` where it is offered and fits."""
    from jaxmutate.ops import Identity, ShuffleBlock, ShuffleXception

    ops: dict[str, Any] = {}
    for name in self.candidate_names:
      if name == "shuffle_xception":
        ops[name] = ShuffleXception(in_channels, out_channels, stride, implementation=self.depthwise_implementation)
      else:
        kernel_size = int(name.split("_")[1][0])
        ops[name] = ShuffleBlock(
          in_channels, out_channels, kernel_size, stride, implementation=self.depthwise_implementation
        )
    if self.identity_candidate and stride == 1 and in_channels == out_channels:
      ops["identity"] = Identity()
    return ops

  @nn.compact
  def __call__(self, x: jax.Array, choices: Mapping[str, Any] | None, train: bool = False) -> jax.Array:
    self._check()
    channels = make_divisible_channels(self.stem_channels * self.widen_factor)
    x = nn.Conv(channels, (3, 3), (self.stem_stride, self.stem_stride), use_bias=False, name="stem_conv")(x)
    x = nn.BatchNorm(use_running_average=not train, momentum=0.9, epsilon=1e-5, name="stem_bn")(x)
    x = nn.relu(x)
    for stage, (stage_channels, num_blocks, stride) in enumerate(self.arch_setting):
      out_channels = make_divisible_channels(stage_channels * self.widen_factor)
      for block in range(num_blocks):
        block_stride = stride if block == 0 else 1
        ops = self.block_candidates(channels, out_channels, block_stride)
        x = OneShotMutableOP(ops, name=f"layers.{stage}.{block}")(x, choices, train=train)
        channels = out_channels
    x = nn.Conv(self.last_channels, (1, 1), use_bias=False, name="last_conv")(x)
    x = nn.BatchNorm(use_running_average=not train, momentum=0.9, epsilon=1e-5, name="last_bn")(x)
    x = nn.relu(x).mean(axis=(1, 2))
    return nn.Dense(self.num_classes, name="head")(x)
