"""AutoSlim's channel search space: a MobileNetV2 whose every prunable width is a channel unit.

MMRazor's AutoSlim runs on mmcls' ``MobileNetV2`` (``widen_factor=1.5``) with
an ``OneShotChannelMutator`` of ``OneShotMutableChannelUnit(candidate_choices=
[i / 12 for i in range(2, 13)], choice_mode="ratio", divisor=8)``; its tracer
finds one unit per group of coupled channels. Here the units are declared
(:class:`SearchableMobileNetV2`): the stem's output, each block's expanded
(hidden) width, each stage's output (shared by every block output of the stage,
because the residual adds couple them), and the last 1x1 conv's output; the
classifier's outputs are not prunable. The layers are those of
:mod:`jaxmutate.dynamic`, which take the kept widths as inputs.

References:
  Yu & Huang, AutoSlim: Towards One-Shot Architecture Search for Channel
  Numbers, https://arxiv.org/abs/1903.11728; Sandler et al., MobileNetV2,
  https://arxiv.org/abs/1801.04381.
"""

from __future__ import annotations

import dataclasses
import types
from collections.abc import Mapping, Sequence
from typing import Any

import flax.linen as nn
import jax

from jaxmutate.channels import (
  CHOICE_MODES,
  MutableWidth,
  OneShotMutableChannelUnit,
  SlimmableChannelUnit,
  make_divisible,
  normalize_candidates,
)
from jaxmutate.dynamic import (
  DEFAULT_MAX_BUCKETS,
  DynamicBatchNorm,
  DynamicConv,
  DynamicDense,
  DynamicDepthwiseConv,
  SwitchableBatchNorm,
  Width,
  WidthLike,
  full_channels,
)
from jaxmutate.errors import ConfigError, ConfigKeyError, ConfigTypeError, SearchSpaceError, UnknownTypeError
from jaxmutate.registry import MODELS

__all__ = [
  "AUTOSLIM_CANDIDATES",
  "CHANNEL_UNIT_TYPES",
  "MOBILENET_V2_ARCH_SETTING",
  "DynamicConvBN",
  "DynamicInvertedResidual",
  "SearchableMobileNetV2",
]

AUTOSLIM_CANDIDATES = tuple(i / 12 for i in range(2, 13))
"""AutoSlim's candidate ratios ``2/12 ... 12/12`` (MMRazor's ``candidate_choices``)."""

MOBILENET_V2_ARCH_SETTING = (
  (1, 16, 1, 1),
  (6, 24, 2, 2),
  (6, 32, 3, 2),
  (6, 64, 4, 2),
  (6, 96, 3, 1),
  (6, 160, 3, 2),
  (6, 320, 1, 1),
)
"""mmcls' MobileNetV2 stages: ``(expand_ratio, channels, num_blocks, stride)``."""

CHANNEL_UNIT_TYPES = types.MappingProxyType(
  {"OneShotMutableChannelUnit": OneShotMutableChannelUnit, "SlimmableChannelUnit": SlimmableChannelUnit}
)
"""The unit kinds the searchable spaces take: one-shot (AutoSlim, BigNAS) or slimmable (switchable BatchNorm)."""

_BN_MOMENTUM = 0.9
_BN_EPSILON = 1e-5
_ACTIVATIONS = {"relu": nn.relu, "relu6": nn.relu6}


def _activation(name: str | None, where: str) -> Any:
  if name is None:
    return lambda x: x
  if name not in _ACTIVATIONS:
    raise ConfigError(f"{where}: act must be None, 'relu' or 'relu6', got {name!r}.")
  return _ACTIVATIONS[name]


def _unit_of(width: WidthLike | None) -> str | None:
  return width.unit if isinstance(width, Width) else None


def _check_same_width(a: WidthLike | None, b: WidthLike | None, where: str) -> None:
  """Raises unless ``a`` and ``b`` can be one width (a residual add couples them).

  Widths of different units, or different concrete numbers, cannot be added.
  """
  unit_a, unit_b = _unit_of(a), _unit_of(b)
  if unit_a is not None and unit_b is not None and unit_a != unit_b:
    raise SearchSpaceError(
      f"{where}: the residual add couples the input width (unit {unit_a!r}) and the output width (unit "
      f"{unit_b!r}); both sides must be the same unit."
    )
  values = [w.value if isinstance(w, Width) else w for w in (a, b)]
  if all(isinstance(v, int) for v in values) and values[0] != values[1]:
    raise SearchSpaceError(f"{where}: the residual add needs equal widths, got {values[0]} and {values[1]}.")


@MODELS.register_module()
class DynamicConvBN(nn.Module):
  """Dynamic conv (no bias) + BatchNorm + optional activation, over the kept widths (mmcv's ``ConvModule``).

  A dense ``k x k`` conv (:class:`~jaxmutate.dynamic.DynamicConv`, padding
  ``k // 2`` on every side as in PyTorch) or, with ``depthwise=True``, a
  depthwise conv (:class:`~jaxmutate.dynamic.DynamicDepthwiseConv`, computed
  with :func:`jaxmutate.ops.depthwise_conv`), then
  :class:`~jaxmutate.dynamic.DynamicBatchNorm`, or one BatchNorm per candidate
  width (:class:`~jaxmutate.dynamic.SwitchableBatchNorm`) when ``switchable``.
  Submodules ``conv`` and ``bn``; the output is zero beyond ``out_width``.

  Attributes:
    features: output channels (a depthwise conv's must equal its input's).
    kernel_size: odd kernel size.
    stride: spatial stride.
    depthwise: a depthwise conv (input and output channels are one axis).
    act: ``None``, ``"relu"`` or ``"relu6"``.
    switchable: slimmable BatchNorm (``out_width`` must be a unit's
      :class:`~jaxmutate.dynamic.Width`, which knows its candidates).
    implementation: the depthwise implementation (``None``: by backend).
    max_buckets: static widths a traced width dispatches among (see
      :func:`~jaxmutate.dynamic.bucket_widths`).

  Example:
    >>> import jax, jax.numpy as jnp
    >>> from jaxmutate.models import DynamicConvBN
    >>> layer = DynamicConvBN(8, 3, act="relu6")
    >>> x = jnp.ones((2, 8, 8, 4))
    >>> variables = jax.jit(layer.init)(jax.random.key(0), x)
    >>> sorted(variables["params"]), variables["params"]["conv"]["kernel"].shape
    (['bn', 'conv'], (3, 3, 4, 8))
    >>> y = jax.jit(lambda w: layer.apply(variables, x, out_width=w))(jnp.int32(3))
    >>> y.shape, int((abs(y).sum((0, 1, 2)) > 0).sum())
    ((2, 8, 8, 8), 3)
  """

  features: int
  kernel_size: int = 3
  stride: int = 1
  depthwise: bool = False
  act: str | None = None
  switchable: bool = False
  implementation: str | None = None
  max_buckets: int = DEFAULT_MAX_BUCKETS

  @nn.compact
  def __call__(
    self, x: jax.Array, out_width: WidthLike | None = None, in_width: WidthLike | None = None, train: bool = False
  ) -> jax.Array:
    """Applies conv, norm and activation to NHWC ``x``.

    Args:
      x: ``(N, H, W, C)``; channels beyond ``in_width`` are ignored.
      out_width: kept output channels (a :class:`~jaxmutate.dynamic.Width`,
        int or int32 scalar); ``None`` is all.
      in_width: kept input channels; a depthwise conv ignores it (its input
        width is ``out_width``).
      train: BatchNorm uses batch statistics (and updates ``batch_stats``).

    Returns:
      ``(N, H', W', features)``, zero beyond ``out_width``.
    """
    where = f"DynamicConvBN {'.'.join(self.scope.path) if self.scope else ''}".strip()
    activation = _activation(self.act, where)
    if self.switchable and (not isinstance(out_width, Width) or out_width.candidates is None):
      raise SearchSpaceError(
        f"{where}: a switchable BatchNorm needs out_width to be a unit's Width with candidates, got {out_width!r}."
      )
    padding = self.kernel_size // 2
    if self.depthwise:
      if self.features != full_channels(x, out_width):
        raise SearchSpaceError(
          f"{where}: a depthwise conv keeps its channels, features={self.features} must equal the input's "
          f"{full_channels(x, out_width)}."
        )
      y = DynamicDepthwiseConv(
        self.kernel_size,
        self.stride,
        padding=padding,
        implementation=self.implementation,
        max_buckets=self.max_buckets,
        name="conv",
      )(x, out_width)
    else:
      y = DynamicConv(
        self.features,
        self.kernel_size,
        self.stride,
        padding=padding,
        use_bias=False,
        max_buckets=self.max_buckets,
        name="conv",
      )(x, out_width=out_width, in_width=in_width)
    if self.switchable:
      y = SwitchableBatchNorm(
        out_width.candidates, use_running_average=not train, momentum=_BN_MOMENTUM, epsilon=_BN_EPSILON, name="bn"
      )(y, out_width)
    else:
      y = DynamicBatchNorm(use_running_average=not train, momentum=_BN_MOMENTUM, epsilon=_BN_EPSILON, name="bn")(
        y, out_width
      )
    return activation(y)


@MODELS.register_module()
class DynamicInvertedResidual(nn.Module):
  """MobileNetV2's inverted residual block over kept widths (mmcls ``InvertedResidual``).

  1x1 expand conv + BN + ReLU6 to ``mid_width`` (skipped when
  ``expand_ratio == 1``: the hidden width is then the input width), 3x3
  depthwise conv + BN + ReLU6 (carrying the stride), 1x1 project conv + BN to
  ``out_width``; the input is added back when ``stride == 1`` and the input
  has ``out_channels`` channels. The residual add couples the input and the
  output width: they must be the same unit, and ``x`` must be zero beyond
  ``in_width`` (as every dynamic layer's output is; the add passes it on). Submodules ``expand``,
  ``depthwise``, ``project`` (each a :class:`DynamicConvBN`), as in
  :class:`jaxmutate.ops.InvertedResidual`.

  Attributes:
    out_channels: output channels at full width.
    stride: 1 or 2.
    expand_ratio: hidden channels are ``int(round(in_channels * expand_ratio))``.
    kernel_size: odd depthwise kernel size.
    switchable: slimmable BatchNorms (see :class:`DynamicConvBN`).
    implementation: the depthwise implementation (``None``: by backend).
    max_buckets: see :class:`DynamicConvBN`.

  Example:
    >>> import jax, jax.numpy as jnp
    >>> from jaxmutate.models import DynamicInvertedResidual
    >>> block = DynamicInvertedResidual(out_channels=8, stride=1, expand_ratio=6)
    >>> x = jnp.ones((2, 8, 8, 8)).at[..., 4:].set(0.0)  # zero beyond its width, as layers output
    >>> variables = jax.jit(block.init)(jax.random.key(0), x)
    >>> variables["params"]["expand"]["conv"]["kernel"].shape
    (1, 1, 8, 48)
    >>> y = jax.jit(lambda v: block.apply(v, x, in_width=4, mid_width=16, out_width=4))(variables)
    >>> y.shape, int((abs(y).sum((0, 1, 2)) > 0).sum())
    ((2, 8, 8, 8), 4)
  """

  out_channels: int
  stride: int = 1
  expand_ratio: float = 6
  kernel_size: int = 3
  switchable: bool = False
  implementation: str | None = None
  max_buckets: int = DEFAULT_MAX_BUCKETS

  def _hidden_channels(self, in_channels: int) -> int:
    """The full hidden width for ``in_channels`` input channels (mmcls' rounding)."""
    return int(round(in_channels * self.expand_ratio))

  def _has_residual(self, in_channels: int) -> bool:
    """Whether the block adds its input back (stride 1 and as many input as output channels)."""
    return self.stride == 1 and in_channels == self.out_channels

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
      mid_width: kept hidden channels (must be ``None`` or ``in_width`` when
        ``expand_ratio == 1``).
      out_width: kept output channels; with a residual add it defaults to
        ``in_width`` and must be the same unit.
      train: BatchNorm uses batch statistics.

    Returns:
      ``(N, H / stride, W / stride, out_channels)``, zero beyond ``out_width``.

    Raises:
      SearchSpaceError: a residual add between different units or widths, or a
        separate hidden width where there is no expansion.
    """
    where = f"DynamicInvertedResidual {'.'.join(self.scope.path) if self.scope else ''}".strip()
    in_channels = full_channels(x, in_width)
    layer = dict(switchable=self.switchable, max_buckets=self.max_buckets)
    residual = self._has_residual(in_channels)
    if residual:
      out_width = in_width if out_width is None else out_width
      _check_same_width(in_width, out_width, where)
    out = x
    if self.expand_ratio != 1:
      hidden = self._hidden_channels(in_channels)
      out = DynamicConvBN(hidden, 1, act="relu6", name="expand", **layer)(out, mid_width, in_width, train=train)
    else:
      if mid_width is not None and mid_width is not in_width:
        _check_same_width(in_width, mid_width, where)
      mid_width = in_width
    out = DynamicConvBN(
      full_channels(out, mid_width),
      self.kernel_size,
      self.stride,
      depthwise=True,
      act="relu6",
      implementation=self.implementation,
      name="depthwise",
      **layer,
    )(out, mid_width, train=train)
    out = DynamicConvBN(self.out_channels, 1, name="project", **layer)(out, out_width, mid_width, train=train)
    if residual:
      out = out + x
    return out


@dataclasses.dataclass(frozen=True)
class _Block:
  """One block of the plan: its name, stride, full widths and the units of its widths."""

  name: str
  stride: int
  expand_ratio: float
  in_channels: int
  mid_channels: int
  out_channels: int
  in_unit: str
  mid_unit: str
  out_unit: str


def _check_unit_args(
  model: str,
  unit_type: Any,
  candidate_choices: Any,
  choice_mode: Any,
  divisor: Any,
  units: Mapping[str, int],
  aliases: Mapping[str, str] | None,
) -> type:
  """Checks a searchable space's unit arguments against its units; returns the unit class.

  Every unit's candidates are normalised once here, so a bad candidate names
  the unit it fails for.

  Raises:
    UnknownTypeError: ``unit_type`` is not one of :data:`CHANNEL_UNIT_TYPES`.
    ConfigError: ``choice_mode`` or ``divisor`` is invalid.
    SearchSpaceError: a ratio outside ``(0, 1]`` or a number outside a unit's
      ``(0, num_channels]``.
    ConfigTypeError: floats in number mode, ints in ratio mode, or aliases
      that are not a mapping of unit names to strings.
    ConfigKeyError: an alias for a unit the space does not have.
  """
  if isinstance(unit_type, str):
    if unit_type not in CHANNEL_UNIT_TYPES:
      raise UnknownTypeError(
        f"{model}: unknown unit_type {unit_type!r}; choose from {sorted(CHANNEL_UNIT_TYPES)} (units with "
        "candidate widths)."
      )
    cls = CHANNEL_UNIT_TYPES[unit_type]
  elif isinstance(unit_type, type) and issubclass(unit_type, OneShotMutableChannelUnit):
    cls = unit_type
  else:
    raise UnknownTypeError(
      f"{model}: unit_type must be one of {sorted(CHANNEL_UNIT_TYPES)} or a subclass of OneShotMutableChannelUnit, "
      f"got {unit_type!r}."
    )
  if choice_mode not in CHOICE_MODES:
    raise ConfigError(f"{model}: choice_mode must be one of {CHOICE_MODES}, got {choice_mode!r}.")
  if isinstance(candidate_choices, (str, bytes)) or not isinstance(candidate_choices, Sequence):
    raise ConfigTypeError(f"{model}: candidate_choices must be a list of numbers, got {candidate_choices!r}.")
  for name, channels in units.items():
    normalize_candidates(channels, tuple(candidate_choices), choice_mode, divisor, where=name)
  if aliases is not None:
    if not isinstance(aliases, Mapping):
      raise ConfigTypeError(f"{model}: aliases must map unit names to alias strings, got {aliases!r}.")
    for name, alias in aliases.items():
      if name not in units:
        raise ConfigKeyError(f"{model}: aliases names an unknown unit {name!r}; the units are {list(units)}.")
      if not isinstance(alias, str):
        raise ConfigTypeError(f"{model}: the alias of unit {name!r} must be a str, got {alias!r}.")
  return cls


def _space_unit_class(space: Any) -> type:
  """The unit class of a channel search space (``SearchableMobileNetV2``, ``SearchableResNet``), its arguments checked."""
  return _check_unit_args(
    type(space).__name__,
    space.unit_type,
    space.candidate_choices,
    space.choice_mode,
    space.divisor,
    space.channel_units(),
    space.aliases,
  )


def _setup_channel_space(space: Any) -> None:
  """What a channel search space does on construction, before any tracing.

  Config files give lists: they become tuples, so the module stays hashable
  (jit static arguments, caches). The unit arguments are checked, so a bad
  one is named now rather than deep inside ``init``.
  """
  for field in ("arch_setting", "candidate_choices"):
    value = getattr(space, field)
    if isinstance(value, list) or (isinstance(value, tuple) and any(isinstance(v, list) for v in value)):
      object.__setattr__(space, field, tuple(tuple(v) if isinstance(v, list) else v for v in value))
  _space_unit_class(space)


def _build_units(
  cls: type,
  units: Mapping[str, int],
  choices: Mapping[str, Any] | None,
  candidate_choices: Sequence[int | float],
  choice_mode: str,
  divisor: int,
  aliases: Mapping[str, str] | None,
) -> dict[str, MutableWidth]:
  """Declares every unit (in the current compact method, in order) and returns its kept width."""
  aliases = dict(aliases or {})
  return {
    name: cls(
      channels,
      candidate_choices=tuple(candidate_choices),
      choice_mode=choice_mode,
      divisor=divisor,
      alias=aliases.get(name),
      name=name,
    )(choices)
    for name, channels in units.items()
  }


def _check_number(value: Any, name: str, model: str, minimum: float = 1, integer: bool = True) -> None:
  kind = int if integer else (int, float)
  if isinstance(value, bool) or not isinstance(value, kind) or value < minimum:
    what = "an int" if integer else "a number"
    raise ConfigError(f"{model}: {name} must be {what} >= {minimum}, got {value!r}.")


@MODELS.register_module()
class SearchableMobileNetV2(nn.Module):
  """AutoSlim's MobileNetV2 channel search space (mmcls ``MobileNetV2`` + MMRazor's AutoSlim units).

  A 3x3 conv-BN-ReLU6 stem, stages of :class:`DynamicInvertedResidual`
  blocks named ``layers.{stage}.{block}`` (the first block of a stage carries
  its stride), a 1x1 conv-BN-ReLU6 to the last width, global average pooling
  and a Dense classifier. Widths follow mmcls: the stem
  ``make_divisible(stem_channels * widen_factor, 8)``, each stage
  ``make_divisible(channels * widen_factor, 8)``, the hidden width
  ``int(round(in * expand_ratio))``, the last ``int(last_channels *
  widen_factor)`` when ``widen_factor > 1`` (else ``last_channels``).

  Every prunable width is a channel unit (MMRazor's units of this network,
  in its order), declared under these names:

  - ``stem.out_channels``: the stem's output, and the hidden width of the
    first block when its ``expand_ratio`` is 1;
  - ``layers.{s}.{b}.mid_channels``: each expanding block's hidden width
    (expand conv output, depthwise conv, project conv input);
  - ``layers.{s}.out_channels``: the stage's output width, shared by every
    block output of the stage (the residual sums couple them) and the next
    stage's input; a stage whose first block already adds its input back
    shares its input's unit instead;
  - ``last.out_channels``: the last conv's output (the classifier's input).

  The classifier's outputs are not prunable. Unit arguments follow MMRazor's
  ``channel_unit_cfg``: ``unit_type`` (``"OneShotMutableChannelUnit"`` for
  AutoSlim/BigNAS, ``"SlimmableChannelUnit"`` for slimmable training, whose
  BatchNorms keep one set per candidate width), ``candidate_choices``,
  ``choice_mode`` and ``divisor``; by default AutoSlim's. Rounding to the
  divisor merges candidates of narrow units (a 16-channel unit keeps 8 or 16
  of AutoSlim's eleven ratios), so slimmable training, which needs the same
  number of candidates in every unit, wants candidates every unit keeps
  apart, e.g. ``(0.5, 1.0)``. The defaults are a small space for 8x8 digits
  (three stages, stem stride 1);
  ``SearchableMobileNetV2(widen_factor=1.5, arch_setting=MOBILENET_V2_ARCH_SETTING,
  stem_stride=2)`` is MMRazor's AutoSlim supernet (25 units).

  Attributes:
    num_classes: output logits.
    arch_setting: ``(expand_ratio, channels, num_blocks, stride)`` per stage,
      before ``widen_factor`` (:data:`MOBILENET_V2_ARCH_SETTING` is mmcls').
    widen_factor: width multiplier.
    stem_channels: the stem's width before ``widen_factor`` (32 in mmcls).
    stem_stride: 2 on ImageNet, 1 for tiny inputs.
    last_channels: the last conv's width (1280 in mmcls).
    unit_type: ``"OneShotMutableChannelUnit"``, ``"SlimmableChannelUnit"``
      or a subclass of :class:`~jaxmutate.channels.OneShotMutableChannelUnit`.
    candidate_choices: every unit's candidates (ratios in ratio mode).
    choice_mode: ``"ratio"`` or ``"number"``.
    divisor: kept widths are made divisible by it.
    aliases: ``{unit name: alias}``; units sharing an alias share a search group.
    depthwise_implementation: see :func:`jaxmutate.ops.depthwise_conv`.
    max_buckets: static widths a traced width dispatches among, per layer axis.

  Raises:
    ConfigError, SearchSpaceError, ConfigTypeError, UnknownTypeError,
      ConfigKeyError: on construction, for bad arguments (see
      :meth:`channel_units` for the unit names ``aliases`` may use).

  Example:
    >>> import jax, jax.numpy as jnp
    >>> import jaxmutate as jm
    >>> net = jm.models.SearchableMobileNetV2(arch_setting=((1, 16, 1, 1), (6, 24, 2, 2)), last_channels=64)
    >>> net.channel_units()
    {'stem.out_channels': 32, 'layers.0.out_channels': 16, 'layers.1.0.mid_channels': 96, 'layers.1.out_channels': 24, 'layers.1.1.mid_channels': 144, 'last.out_channels': 64}
    >>> x = jnp.ones((2, 8, 8, 1))
    >>> variables = jm.init_supernet(net, jax.random.key(0), x)  # a jitted init
    >>> mutator = jm.NasMutator().prepare_from_supernet(variables)
    >>> len(mutator.search_groups)
    6
    >>> forward = jax.jit(lambda gc: net.apply(variables, x, mutator.set_choices(gc)))
    >>> forward(mutator.sample_choices(jax.random.key(1))).shape
    (2, 10)
  """

  num_classes: int = 10
  arch_setting: Sequence[Sequence[int | float]] = ((1, 16, 1, 1), (6, 24, 2, 2), (6, 32, 2, 2))
  widen_factor: float = 1.0
  stem_channels: int = 32
  stem_stride: int = 1
  last_channels: int = 1280
  unit_type: str | type = "OneShotMutableChannelUnit"
  candidate_choices: Sequence[int | float] = AUTOSLIM_CANDIDATES
  choice_mode: str = "ratio"
  divisor: int = 8
  aliases: Mapping[str, str] | None = None
  depthwise_implementation: str | None = None
  max_buckets: int = DEFAULT_MAX_BUCKETS

  def __post_init__(self) -> None:
    _setup_channel_space(self)
    super().__post_init__()

  def _unit_class(self) -> type:
    return _space_unit_class(self)

  def _plan(self) -> tuple[int, list[_Block], int]:
    """(stem width, blocks, last width): the architecture at full width, with each width's unit."""
    model = type(self).__name__
    if isinstance(self.widen_factor, bool) or not isinstance(self.widen_factor, (int, float)) or self.widen_factor <= 0:
      raise ConfigError(f"{model}: widen_factor must be a number > 0, got {self.widen_factor!r}.")
    _check_number(self.stem_channels, "stem_channels", model)
    _check_number(self.last_channels, "last_channels", model)
    _check_number(self.num_classes, "num_classes", model)
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
      ok = isinstance(stage, Sequence) and len(stage) == 4
      if ok:
        t, c, n, stride = stage
        ok = (
          not isinstance(t, bool)
          and isinstance(t, (int, float))
          and t > 0
          and all(isinstance(v, int) and not isinstance(v, bool) for v in (c, n, stride))
          and c >= 1
          and n >= 1
          and stride in (1, 2)
        )
      if not ok:
        raise ConfigError(
          f"{model}: arch_setting[{s}] must be (expand_ratio > 0, channels >= 1, num_blocks >= 1, stride 1 or 2), "
          f"got {stage!r}."
        )
      out = make_divisible(c * self.widen_factor, 8)
      # A first block with a residual add shares its input's unit; otherwise the stage has its own.
      stage_unit = unit if (stride == 1 and channels == out) else f"layers.{s}.out_channels"
      for b in range(n):
        mid = int(round(channels * t))
        if mid < 1:
          raise ConfigError(f"{model}: arch_setting[{s}] gives block {b} no hidden channels ({channels} * {t}).")
        mid_unit = unit if t == 1 else f"layers.{s}.{b}.mid_channels"
        blocks.append(
          _Block(f"layers.{s}.{b}", stride if b == 0 else 1, t, channels, mid, out, unit, mid_unit, stage_unit)
        )
        channels, unit = out, stage_unit
    last = int(self.last_channels * self.widen_factor) if self.widen_factor > 1 else self.last_channels
    return stem, blocks, last

  def channel_units(self) -> dict[str, int]:
    """Every unit's name and full width, in declaration order (MMRazor's unit order).

    Example:
      >>> from jaxmutate.models import MOBILENET_V2_ARCH_SETTING, SearchableMobileNetV2
      >>> units = SearchableMobileNetV2(widen_factor=1.5, arch_setting=MOBILENET_V2_ARCH_SETTING).channel_units()
      >>> len(units), units["stem.out_channels"], units["layers.1.0.mid_channels"], units["last.out_channels"]
      (25, 48, 144, 1920)
    """
    stem, blocks, last = self._plan()
    units = {"stem.out_channels": stem}
    for block in blocks:
      units.setdefault(block.mid_unit, block.mid_channels)
      units.setdefault(block.out_unit, block.out_channels)
    units["last.out_channels"] = last
    return units

  @nn.compact
  def __call__(self, x: jax.Array, choices: Mapping[str, Any] | None, train: bool = False) -> jax.Array:
    """Logits of NHWC images ``x`` for the widths in ``choices`` (``None`` at ``init``: full width).

    Args:
      x: ``(N, H, W, C)`` images.
      choices: unit name → choice (an index into its candidates), as
        ``mutator.set_choices`` gives; ``None`` at ``init``.
      train: BatchNorm uses (and updates) batch statistics.

    Returns:
      ``(N, num_classes)`` logits.
    """
    cls = self._unit_class()
    stem, blocks, last = self._plan()
    widths = _build_units(
      cls, self.channel_units(), choices, self.candidate_choices, self.choice_mode, self.divisor, self.aliases
    )
    switchable = issubclass(cls, SlimmableChannelUnit)
    layer = dict(switchable=switchable, max_buckets=self.max_buckets)
    x = DynamicConvBN(stem, 3, self.stem_stride, act="relu6", name="stem", **layer)(
      x, widths["stem.out_channels"], train=train
    )
    for block in blocks:
      x = DynamicInvertedResidual(
        block.out_channels,
        block.stride,
        block.expand_ratio,
        implementation=self.depthwise_implementation,
        name=block.name,
        **layer,
      )(x, widths[block.in_unit], widths[block.mid_unit], widths[block.out_unit], train=train)
    width = widths["last.out_channels"]
    x = DynamicConvBN(last, 1, act="relu6", name="last", **layer)(x, width, widths[blocks[-1].out_unit], train=train)
    return DynamicDense(self.num_classes, max_buckets=self.max_buckets, name="head")(
      x.mean(axis=(1, 2)), in_width=width
    )
