"""MMRazor compatibility: MMRazor's type names and scopes, and a report on MMRazor configs.

Importing this module makes MMRazor configs resolve in jaxmutate's registry:
the scopes ``mmrazor``, ``mmcls``, ``mmpretrain`` and ``mmengine`` become known
(``type="mmrazor.SPOS"``, ``"mmrazor::SPOS"``, ``_scope_="mmrazor"``), MMRazor
names that differ from jaxmutate's resolve as aliases (:data:`TYPE_MAP`), and
the MMRazor/mmcls/mmengine types with no jaxmutate equivalent raise with the
reason (:data:`IGNORED_TYPES`).

:func:`convert_mmrazor_config` turns a config loaded with
:func:`jaxmutate.load_config` from MMRazor's layout (an mmcls
``ImageClassifier`` around a searchable backbone, ``train_cfg`` holding the
search loop, ``sub_model`` for subnets) into jaxmutate's (``model``,
``search_cfg``, ``train_cfg``, ``fix_subnet``) and returns a
:class:`MMRazorReport` of what was mapped, what was ignored and why, and what
is unknown. :func:`mmrazor_report` returns the report alone.

Example:
  >>> import jaxmutate as jm
  >>> import jaxmutate.mmrazor_compat
  >>> mutator = jm.build(dict(_scope_="mmrazor", type="mmrazor::NasMutator"))
  >>> type(mutator).__name__
  'NasMutator'
"""

from __future__ import annotations

import copy
import dataclasses
import inspect
from collections.abc import Mapping
from typing import Any

from jaxmutate.errors import ConfigTypeError
from jaxmutate.registry import MODELS, SCOPE_KEY, register_scope, split_scope

MMRAZOR_SCOPES = ("mmrazor", "mmcls", "mmpretrain", "mmengine")
"""Scopes of MMRazor configs; all resolve in jaxmutate's registries."""

TYPE_MAP: dict[str, str] = {
  # algorithms
  "SPOS": "SPOS",
  "Darts": "DARTS",
  "Dsnas": "DSNAS",
  "DSNAS": "DSNAS",
  "DARTS": "DARTS",
  # mutators (the rc0-rc2 module/value mutators are kept by jaxmutate)
  "NasMutator": "NasMutator",
  "OneShotModuleMutator": "OneShotModuleMutator",
  "DiffModuleMutator": "DiffModuleMutator",
  # mutables
  "OneShotMutableOP": "OneShotMutableOP",
  "OneShotProbMutableOP": "OneShotProbMutableOP",
  "OneHotMutableOP": "OneHotMutableOP",
  "DiffMutableOP": "DiffMutableOP",
  "GumbelMutableOP": "GumbelMutableOP",
  "DiffChoiceRoute": "DiffChoiceRoute",
  "GumbelChoiceRoute": "GumbelChoiceRoute",
  "MutableValue": "MutableValue",
  "OneShotMutableValue": "OneShotMutableValue",
  # searchable backbones and their candidate ops
  "SearchableShuffleNetV2": "SearchableShuffleNetV2",
  "DartsBackbone": "DartsBackbone",
  "ShuffleBlock": "ShuffleBlock",
  "ShuffleXception": "ShuffleXception",
  "DartsZero": "DartsZero",
  "DartsSkipConnect": "DartsSkipConnect",
  "DartsPoolBN": "DartsPoolBN",
  "DartsSepConv": "DartsSepConv",
  "DartsDilConv": "DartsDilConv",
  "Identity": "Identity",
  # search loops
  "EvolutionSearchLoop": "EvolutionSearchLoop",
  "AutoSlimGreedySearchLoop": "AutoSlimGreedySearchLoop",
  # channels: algorithms, mutators, units, dynamic layers and searchable backbones
  "AutoSlim": "AutoSlim",
  "SlimmableNetwork": "SlimmableNetwork",
  "ChannelMutator": "ChannelMutator",
  "OneShotChannelMutator": "OneShotChannelMutator",
  "SlimmableChannelMutator": "SlimmableChannelMutator",
  "SequentialMutableChannelUnit": "SequentialMutableChannelUnit",
  "OneShotMutableChannelUnit": "OneShotMutableChannelUnit",
  "SlimmableChannelUnit": "SlimmableChannelUnit",
  "L1MutableChannelUnit": "L1MutableChannelUnit",
  "DynamicConv2d": "DynamicConv",
  "DynamicLinear": "DynamicDense",
  "DynamicBatchNorm2d": "DynamicBatchNorm",
  "DynamicLayerNorm": "DynamicLayerNorm",
  "SwitchableBatchNorm2d": "SwitchableBatchNorm",
  "SearchableMobileNetV2": "SearchableMobileNetV2",
}
"""MMRazor type name → the jaxmutate ``MODELS`` name it builds."""

_PIPELINE = (
  "image pipelines (decoding, resizing, augmentation) are not part of jaxmutate: data sets hold decoded "
  "arrays (jaxmutate.data.NpzDataset, ImageFolder)"
)
_CLASSIFIER = (
  "jaxmutate's searchable models carry their own pooling and classifier head: the converted model is the "
  "backbone, with the head's num_classes"
)
_RUNNER = "runner plumbing (the jaxmutate runners train, log and checkpoint themselves)"

IGNORED_TYPES: dict[str, str] = {
  **{
    name: _CLASSIFIER
    for name in (
      "ImageClassifier",
      "GlobalAveragePooling",
      "LinearClsHead",
      "ClsHead",
      "DartsSubnetClsHead",
      "StackedLinearClsHead",
    )
  },
  **{name: "the runners train with softmax cross-entropy" for name in ("CrossEntropyLoss", "LabelSmoothLoss")},
  **{
    name: "normalisation follows from the data (jaxmutate.data.Normalization)"
    for name in ("ImgDataPreprocessor", "ClsDataPreprocessor")
  },
  **{
    name: _PIPELINE
    for name in (
      "LoadImageFromFile",
      "RandomResizedCrop",
      "ColorJitter",
      "RandomFlip",
      "PackClsInputs",
      "PackInputs",
      "ResizeEdge",
      "CenterCrop",
      "RandomCrop",
      "Cutout",
      "AutoAugment",
      "RandAugment",
      "Lighting",
      "Resize",
      "Normalize",
    )
  },
  **{
    name: "name the data with data=dict(type='NpzDataset' | 'ImageFolder' | ...) (jaxmutate.data)"
    for name in ("ImageNet", "CIFAR10", "CIFAR100", "CustomDataset", "DefaultSampler", "InfiniteSampler")
  },
  "Accuracy": "the runners score top-1 accuracy",
  **{
    name: "optimisers are optax functions named in train_cfg.optimizer"
    for name in ("OptimWrapper", "AmpOptimWrapper", "OptimWrapperDict", "SGD", "Adam", "AdamW")
  },
  **{
    name: "learning-rate schedules are optax schedules in train_cfg.optimizer.learning_rate"
    for name in ("PolyLR", "CosineAnnealingLR", "LinearLR", "MultiStepLR", "StepLR", "ConstantLR")
  },
  **{
    name: _RUNNER
    for name in (
      "DumpSubnetHook",
      "EMAHook",
      "CheckpointHook",
      "LoggerHook",
      "IterTimerHook",
      "ParamSchedulerHook",
      "DistSamplerSeedHook",
      "VisualizationHook",
      "EpochBasedTrainLoop",
      "IterBasedTrainLoop",
      "ValLoop",
      "TestLoop",
      "SubnetValLoop",
      "DartsEpochBasedTrainLoop",
      "DartsIterBasedTrainLoop",
      "LocalVisBackend",
      "ClsVisualizer",
      "UniversalVisualizer",
      "LogProcessor",
    )
  },
  **{
    name: "jaxmutate has no distributed model wrappers (jax shards with jit/vmap)"
    for name in ("DartsDDP", "MMDistributedDataParallel", "MMDataParallel")
  },
  "Pretrained": "PyTorch checkpoints do not load into Flax variables",
  "sub_model": "converted: the supernet becomes model, the subnet file becomes fix_subnet",
  "ResourceEstimator": "jaxmutate counts FLOPs and params exactly (jaxmutate.resources)",
}
"""MMRazor/mmcls/mmengine types with no jaxmutate equivalent → why."""

TOP_LEVEL_KEYS: dict[str, str] = {
  **{
    k: "data loaders: name the data with data=dict(type='NpzDataset' | 'ImageFolder' | ...)"
    for k in ("train_dataloader", "val_dataloader", "test_dataloader", "dataset_type", "data_root")
  },
  **{k: _PIPELINE for k in ("train_pipeline", "test_pipeline", "val_pipeline")},
  **{
    k: "normalisation follows from the data (jaxmutate.data.Normalization)"
    for k in ("preprocess_cfg", "data_preprocessor")
  },
  **{k: "the runners score top-1 accuracy" for k in ("val_evaluator", "test_evaluator")},
  "optim_wrapper": "set train_cfg.optimizer (an optax function by name, e.g. dict(type='sgd', learning_rate=0.1))",
  "paramwise_cfg": "set train_cfg.optimizer (an optax function by name)",
  "param_scheduler": "set train_cfg.optimizer.learning_rate to an optax schedule",
  "auto_scale_lr": "set train_cfg.optimizer.learning_rate for your batch size",
  **{k: "validation and testing run inside the runners" for k in ("val_cfg", "test_cfg")},
  **{
    k: _RUNNER
    for k in (
      "default_hooks",
      "custom_hooks",
      "env_cfg",
      "log_level",
      "log_processor",
      "visualizer",
      "vis_backends",
      "load_from",
      "resume",
      "launcher",
      "work_dir",
    )
  },
  "randomness": "pass --seed to jaxmutate search",
  "default_scope": "accepted: every scope resolves in jaxmutate's registry",
  **{
    k: "jaxmutate has no distributed model wrappers"
    for k in ("model_wrapper_cfg", "find_unused_parameters", "find_unused_parameter")
  },
  "norm_cfg": "a helper variable of the config; the backbone's own norm settings are converted",
  "custom_imports": "kept: the modules are imported by load_config and build",
}
"""Top-level keys of mmengine/MMRazor configs that jaxmutate does not read → why."""

_MAPPED_TOP_LEVEL = ("model", "train_cfg", "custom_imports")


def _register() -> None:
  for scope in MMRAZOR_SCOPES:
    register_scope(scope)
  for mmrazor_name, name in TYPE_MAP.items():
    if mmrazor_name != name and mmrazor_name not in MODELS.names:
      MODELS.register_alias(mmrazor_name, name)
  for name, reason in IGNORED_TYPES.items():
    if name not in MODELS.names:
      MODELS.register_unsupported(name, reason)


_register()


@dataclasses.dataclass(frozen=True)
class ReportEntry:
  """One line of a :class:`MMRazorReport`.

  Attributes:
    path: the dotted config key, e.g. ``"model.architecture.backbone"``.
    source: what the MMRazor config has there (a type or a key).
    target: the jaxmutate type or key it became, or ``None``.
    reason: why it was ignored or how it was mapped.

  Example:
    >>> from jaxmutate.mmrazor_compat import ReportEntry
    >>> str(ReportEntry("model", "mmrazor.SPOS", "SPOS"))
    'model: mmrazor.SPOS -> SPOS'
  """

  path: str
  source: str
  target: str | None = None
  reason: str = ""

  def __str__(self) -> str:
    arrow = f" -> {self.target}" if self.target else ""
    why = f" ({self.reason})" if self.reason else ""
    return f"{self.path}: {self.source}{arrow}{why}"


@dataclasses.dataclass
class MMRazorReport:
  """What a conversion of an MMRazor config mapped, ignored and did not know.

  Attributes:
    mapped: types and keys that have a jaxmutate equivalent.
    ignored: types, keys and arguments left out, each with the reason.
    unknown: types and top-level keys neither mapped nor known to be
      ignorable: check them by hand.

  Example:
    >>> from jaxmutate.mmrazor_compat import mmrazor_report
    >>> model = dict(type="mmrazor.SPOS", architecture=dict(type="mmrazor.SearchableShuffleNetV2"),
    ...              mutator=dict(type="mmrazor.NasMutator"))
    >>> report = mmrazor_report(dict(model=model, log_level="INFO"))
    >>> [str(e) for e in report.mapped][:2]
    ['model: mmrazor.SPOS -> SPOS', 'model.architecture: mmrazor.SearchableShuffleNetV2 -> SearchableShuffleNetV2']
    >>> report.ok, len(report.ignored)
    (True, 1)
  """

  mapped: list[ReportEntry] = dataclasses.field(default_factory=list)
  ignored: list[ReportEntry] = dataclasses.field(default_factory=list)
  unknown: list[ReportEntry] = dataclasses.field(default_factory=list)

  @property
  def ok(self) -> bool:
    """True when nothing is unknown."""
    return not self.unknown

  def __str__(self) -> str:
    lines = []
    for title, entries in (("mapped", self.mapped), ("ignored", self.ignored), ("unknown", self.unknown)):
      lines.append(f"{title} ({len(entries)}):")
      lines.extend(f"  {entry}" for entry in entries)
    return "\n".join(lines)


def _resolve(type_name: Any) -> str | None:
  if not isinstance(type_name, str):
    return None
  try:
    resolved = MODELS.resolve_name(type_name)
  except KeyError:
    return None
  # A module may register MMRazor's name itself (Darts); report jaxmutate's.
  canonical = TYPE_MAP.get(resolved, resolved)
  return canonical if canonical in MODELS.names else resolved


def _bare(type_name: Any) -> str:
  return split_scope(type_name)[1] if isinstance(type_name, str) else getattr(type_name, "__name__", repr(type_name))


def _accepted_args(name: str) -> set[str] | None:
  target = MODELS.get(name)
  if dataclasses.is_dataclass(target):
    return {f.name for f in dataclasses.fields(target) if f.init and f.name not in ("parent", "name")}
  try:
    parameters = inspect.signature(target).parameters
  except (TypeError, ValueError):
    return None
  if any(p.kind is p.VAR_KEYWORD for p in parameters.values()):
    return None
  return set(parameters)


class _Converter:
  def __init__(self) -> None:
    self.report = MMRazorReport()

  def mapped(self, path: str, source: str, target: str | None, reason: str = "") -> None:
    self.report.mapped.append(ReportEntry(path, source, target, reason))

  def ignored(self, path: str, source: str, reason: str) -> None:
    self.report.ignored.append(ReportEntry(path, source, None, reason))

  def unknown(self, path: str, source: str, reason: str) -> None:
    self.report.unknown.append(ReportEntry(path, source, None, reason))

  # Generic walk: map every typed dict, drop arguments the target does not take.
  def generic(self, cfg: Mapping[str, Any], path: str) -> dict[str, Any] | None:
    type_name = cfg.get("type")
    resolved = _resolve(type_name)
    if resolved is None:
      reason = MODELS.unsupported_reason(type_name) if isinstance(type_name, str) else None
      if reason is not None:
        self.ignored(path, str(type_name), reason)
      else:
        self.unknown(path, str(type_name), "no jaxmutate equivalent is known")
      return None
    self.mapped(path, str(type_name), resolved)
    accepted = _accepted_args(resolved)
    out: dict[str, Any] = {"type": resolved}
    for key, value in cfg.items():
      if key in ("type", SCOPE_KEY):
        continue
      if accepted is not None and key not in accepted:
        self.ignored(f"{path}.{key}", key, f"{resolved} has no argument {key!r}")
        continue
      out[key] = self.value(value, f"{path}.{key}")
    return out

  def value(self, value: Any, path: str) -> Any:
    if isinstance(value, Mapping) and "type" in value:
      return self.generic(value, path)
    if isinstance(value, Mapping):
      return {k: self.value(v, f"{path}.{k}") for k, v in value.items() if k != SCOPE_KEY}
    if isinstance(value, (list, tuple)):
      return type(value)(self.value(v, f"{path}.{i}") for i, v in enumerate(value))
    return value

  def drop(self, cfg: Mapping[str, Any], keep: set[str], path: str, target: str, reasons: Mapping[str, str]) -> None:
    for key in cfg:
      if key not in keep and key not in ("type", SCOPE_KEY):
        self.ignored(f"{path}.{key}", key, reasons.get(key, f"{target} has no argument {key!r}"))

  # Searchable backbones: MMRazor's arguments differ from jaxmutate's.
  def shufflenet(self, cfg: Mapping[str, Any], path: str, num_classes: int | None) -> dict[str, Any]:
    self.mapped(path, str(cfg["type"]), "SearchableShuffleNetV2")
    out: dict[str, Any] = {"type": "SearchableShuffleNetV2"}
    stages, candidates = [], None
    for index, stage in enumerate(cfg.get("arch_setting", ())):
      channels, num_blocks = int(stage[0]), int(stage[1])
      stages.append((channels, num_blocks, 2))  # MMRazor's first block of every stage has stride 2
      mutable = stage[2] if len(stage) > 2 else None
      if isinstance(mutable, Mapping):
        mutable_type = _bare(mutable.get("type"))
        if mutable_type != "OneShotMutableOP" and index == 0:
          self.ignored(
            f"{path}.arch_setting.{index}.2.type",
            str(mutable.get("type")),
            "jaxmutate's SearchableShuffleNetV2 uses OneShotMutableOP blocks",
          )
        names = tuple(mutable.get("candidates", {}))
        if candidates is None and names:
          candidates = names
    if stages:
      out["arch_setting"] = tuple(stages)
      self.mapped(f"{path}.arch_setting", "[channels, num_blocks, mutable_cfg]", "(channels, num_blocks, stride=2)")
    if candidates is not None:
      out["candidate_names"] = candidates
    out["stem_channels"] = 16 * int(cfg.get("stem_multiplier", 1))
    out["stem_stride"] = 2
    out["last_channels"] = 1024 if cfg.get("with_last_layer", True) else out["arch_setting"][-1][0]
    self.mapped(
      f"{path}.stem_multiplier",
      "stem_multiplier",
      "stem_channels, stem_stride=2",
      "MMRazor's stem also max-pools (total stride 4); jaxmutate's stem conv has stride 2 and no pooling",
    )
    handled = {"arch_setting", "stem_multiplier", "widen_factor", "with_last_layer"}
    return self.finish_backbone(cfg, out, path, num_classes, handled)

  def darts(self, cfg: Mapping[str, Any], path: str, num_classes: int | None) -> dict[str, Any]:
    self.mapped(path, str(cfg["type"]), "DartsBackbone")
    out: dict[str, Any] = {"type": "DartsBackbone"}
    for key in ("base_channels", "num_layers", "num_nodes", "stem_multiplier"):
      if key in cfg:
        out[key] = cfg[key]
    mutable = cfg.get("mutable_cfg")
    if isinstance(mutable, Mapping):
      if mutable.get("candidates"):
        out["op_names"] = tuple(mutable["candidates"])
        self.mapped(f"{path}.mutable_cfg.candidates", "candidates", "op_names")
      mutable_type = _resolve(mutable.get("type"))
      if mutable_type is not None and mutable_type != "DiffMutableOP":
        rest = {k: v for k, v in mutable.items() if k not in ("type", "candidates", SCOPE_KEY, "alias")}
        out["mutable_cfg"] = {"type": mutable_type, **rest}
    route = cfg.get("route_cfg")
    if isinstance(route, Mapping):
      route_type = _resolve(route.get("type")) or "DiffChoiceRoute"
      kept = {k: v for k, v in route.items() if k in ("num_chosen",)}
      out["route_cfg"] = {"type": route_type, **kept}
      for key in route:
        if key not in ("type", "num_chosen", SCOPE_KEY):
          self.ignored(
            f"{path}.route_cfg.{key}",
            key,
            "jaxmutate's routes always have architecture logits"
            if key == "with_arch_param"
            else f"{route_type} has no argument {key!r}",
          )
    norm = cfg.get("norm_cfg")
    if isinstance(norm, Mapping) and "affine" in norm:
      out["affine"] = bool(norm["affine"])
      self.mapped(f"{path}.norm_cfg.affine", "norm_cfg.affine", "affine")
    handled = {"base_channels", "num_layers", "num_nodes", "stem_multiplier", "mutable_cfg", "route_cfg", "norm_cfg"}
    return self.finish_backbone(cfg, out, path, num_classes, handled)

  def mobilenet_v2(self, cfg: Mapping[str, Any], path: str, num_classes: int | None) -> dict[str, Any]:
    # MMRazor's channel algorithms trace mmcls's plain MobileNetV2 into channel units (ChannelAnalyzer);
    # jaxmutate's SearchableMobileNetV2 is that network with the same units declared.
    self.mapped(
      path,
      str(cfg["type"]),
      "SearchableMobileNetV2",
      "mmcls's MobileNetV2 with its channel units declared (MMRazor finds them by tracing)",
    )
    out: dict[str, Any] = {"type": "SearchableMobileNetV2", **_MMCLS_MOBILENET_V2}
    self.mapped(
      f"{path}.arch_setting",
      "mmcls MobileNetV2 layout",
      "arch_setting, stem_channels=32, stem_stride=2, last_channels=1280",
      "mmcls's seven ImageNet stages; shrink arch_setting for small images",
    )
    return self.finish_backbone(cfg, out, path, num_classes, {"widen_factor"})

  def finish_backbone(
    self, cfg: Mapping[str, Any], out: dict[str, Any], path: str, num_classes: int | None, handled: set[str]
  ) -> dict[str, Any]:
    """The backbone keys every conversion shares (``widen_factor`` where handled, ``num_classes``); the rest reported."""
    if "widen_factor" in handled and "widen_factor" in cfg:
      out["widen_factor"] = float(cfg["widen_factor"])
    if num_classes is not None:
      out["num_classes"] = int(num_classes)
    self.drop(cfg, handled, path, out["type"], _BACKBONE_REASONS)
    return out

  def channel_algorithm(self, cfg: Mapping[str, Any], resolved: str) -> dict[str, Any]:
    """AutoSlim / SlimmableNetwork: the unit settings move from the mutator onto the searchable backbone."""
    self.mapped("model", str(cfg["type"]), resolved)
    out: dict[str, Any] = {
      "type": resolved,
      "architecture": self.architecture(cfg.get("architecture"), "model.architecture"),
    }
    mutator = cfg.get("mutator")
    if isinstance(mutator, Mapping):
      out["mutator"] = self.channel_mutator(mutator, out["architecture"])
    accepted = _accepted_args(resolved) or set()
    for key, value in cfg.items():
      if key in ("type", "architecture", "mutator", SCOPE_KEY):
        continue
      if key == "distiller":
        self.distiller(value)
      elif key in accepted:
        out[key] = self.value(value, f"model.{key}")
      else:
        self.ignored(f"model.{key}", key, _ALGORITHM_REASONS.get(key, f"{resolved} has no argument {key!r}"))
    return out

  def channel_mutator(self, cfg: Mapping[str, Any], architecture: Any) -> dict[str, Any] | None:
    out = self.generic({k: v for k, v in cfg.items() if k not in ("channel_unit_cfg", "parse_cfg")}, "model.mutator")
    if out is None:
      return None
    unit_cfg = cfg.get("channel_unit_cfg")
    if isinstance(unit_cfg, Mapping):
      unit_type = _resolve(unit_cfg.get("type"))
      kept: dict[str, Any] = {}
      if unit_type is not None:
        kept["type"] = unit_type
        self.mapped("model.mutator.channel_unit_cfg", str(unit_cfg.get("type")), unit_type)
      args = unit_cfg.get("default_args")
      if isinstance(args, Mapping) and args:
        kept["default_args"] = copy.deepcopy(dict(args))
      for key in unit_cfg:
        if key == "units":
          kept["units"] = copy.deepcopy(unit_cfg["units"])
          self.mapped("model.mutator.channel_unit_cfg.units", "units", "channel_unit_cfg.units")
        elif key not in ("type", "default_args", SCOPE_KEY):
          self.ignored(f"model.mutator.channel_unit_cfg.{key}", key, f"channel_unit_cfg has no key {key!r}")
      out["channel_unit_cfg"] = kept
      # jaxmutate's backbone declares its units: it takes the unit kind and arguments the mutator checks.
      if isinstance(architecture, dict) and architecture.get("type") == "SearchableMobileNetV2":
        if unit_type is not None:
          architecture["unit_type"] = unit_type
        for key in ("candidate_choices", "choice_mode", "divisor"):
          if isinstance(args, Mapping) and key in args:
            value = args[key]
            architecture[key] = tuple(value) if isinstance(value, list) else value
            self.mapped(
              f"model.mutator.channel_unit_cfg.default_args.{key}",
              key,
              f"model.architecture.{key}",
              "the searchable backbone declares its units with these arguments; the mutator checks them",
            )
    parse = cfg.get("parse_cfg")
    if parse is not None:
      kind = _bare(parse.get("type")) if isinstance(parse, Mapping) else _bare(parse)
      if kind == "ChannelAnalyzer":
        self.ignored(
          "model.mutator.parse_cfg",
          "ChannelAnalyzer",
          "jaxmutate's searchable backbones declare their channel units (parse_cfg Predefined); tracing an "
          "unmodified model into units is not available yet (issue #10)",
        )
      else:
        out["parse_cfg"] = copy.deepcopy(parse)
    return out

  def distiller(self, cfg: Any) -> None:
    losses = cfg.get("distill_losses", {}) if isinstance(cfg, Mapping) else {}
    kl = [v for v in losses.values() if isinstance(v, Mapping) and _bare(v.get("type")) == "KLDivergence"]
    if len(kl) == 1 and len(losses) == 1 and kl[0].get("tau", 1) == 1 and kl[0].get("loss_weight", 1) == 1:
      self.mapped(
        "model.distiller",
        str(cfg.get("type")),
        "AutoSlim in-place distillation",
        "the sandwich step distils every smaller subnet from the max subnet's logits (KL, tau 1, weight 1), "
        "as MMRazor's KLDivergence between the fc recorders does",
      )
      return
    self.ignored(
      "model.distiller",
      str(cfg.get("type") if isinstance(cfg, Mapping) else cfg),
      "the AutoSlim runner distils with one KL divergence at tau 1 and weight 1 (these losses differ: "
      f"{ {k: dict(v) if isinstance(v, Mapping) else v for k, v in losses.items()} }); for others call "
      "jaxmutate.algorithms.make_sandwich_train_step(distill_fn=...) in your own loop",
    )

  def backbone(self, cfg: Any, path: str, num_classes: int | None) -> Any:
    if not isinstance(cfg, Mapping) or "type" not in cfg:
      self.unknown(path, repr(cfg), "expected a backbone config dict")
      return cfg
    resolved = _resolve(cfg["type"])
    if resolved is None and _bare(cfg["type"]) == "MobileNetV2":
      return self.mobilenet_v2(cfg, path, num_classes)
    if resolved == "SearchableShuffleNetV2":
      return self.shufflenet(cfg, path, num_classes)
    if resolved == "DartsBackbone":
      return self.darts(cfg, path, num_classes)
    out = self.generic(cfg, path)
    takes_num_classes = out is not None and "num_classes" in (_accepted_args(out["type"]) or {"num_classes"})
    if out is not None and num_classes is not None and takes_num_classes:
      out["num_classes"] = int(num_classes)
    return out

  def architecture(self, cfg: Any, path: str) -> Any:
    if isinstance(cfg, Mapping) and _bare(cfg.get("type")) == "ImageClassifier":
      self.mapped(path, str(cfg["type"]), None, IGNORED_TYPES["ImageClassifier"])
      head = cfg.get("head") if isinstance(cfg.get("head"), Mapping) else {}
      num_classes = head.get("num_classes")
      for key in cfg:
        if key in ("neck", "head", "data_preprocessor", "init_cfg", "train_cfg"):
          what = cfg[key].get("type", key) if isinstance(cfg[key], Mapping) else key
          reason = f"its num_classes={num_classes} goes to the backbone; " if key == "head" and num_classes else ""
          self.ignored(f"{path}.{key}", str(what), reason + (MODELS.unsupported_reason(str(what)) or _CLASSIFIER))
        elif key not in ("type", "backbone", SCOPE_KEY):
          self.ignored(f"{path}.{key}", key, "ImageClassifier plumbing")
      return self.backbone(cfg.get("backbone"), f"{path}.backbone", num_classes)
    return self.backbone(cfg, path, None)

  def model(self, cfg: Any) -> tuple[Any, str | None]:
    """Returns the converted model and the fix_subnet path of a sub_model."""
    if not isinstance(cfg, Mapping) or "type" not in cfg:
      self.unknown("model", repr(cfg), "expected dict(type=..., ...)")
      return cfg, None
    kind = _bare(cfg["type"])
    if kind == "sub_model":
      self.mapped("model", str(cfg["type"]), None, IGNORED_TYPES["sub_model"])
      for key in cfg:
        if key == "init_cfg":
          self.ignored("model.init_cfg", "init_cfg", IGNORED_TYPES["Pretrained"])
        elif key not in ("type", "cfg", "fix_subnet", SCOPE_KEY):
          self.ignored(
            f"model.{key}",
            key,
            "read with jaxmutate.subnet (prefix/extra_prefix of load_fix_subnet)"
            if key in ("prefix", "extra_prefix", "mode")
            else "sub_model argument",
          )
      inner = cfg.get("cfg")
      if isinstance(inner, Mapping) and _resolve(inner.get("type")) in _ALGORITHMS:
        converted, _ = self.model(inner)
      else:
        converted = self.architecture(inner, "model.cfg")
      return converted, cfg.get("fix_subnet")
    resolved = _resolve(cfg["type"])
    if resolved in ("AutoSlim", "SlimmableNetwork"):
      return self.channel_algorithm(cfg, resolved), None
    if resolved not in ("SPOS", "DARTS"):
      return self.architecture(cfg, "model"), None
    self.mapped("model", str(cfg["type"]), resolved)
    out: dict[str, Any] = {
      "type": resolved,
      "architecture": self.architecture(cfg.get("architecture"), "model.architecture"),
    }
    mutator = cfg.get("mutator")
    if isinstance(mutator, Mapping):
      mutator_type = _resolve(mutator.get("type"))
      if resolved == "DARTS" and mutator_type == "NasMutator":
        # MMRazor's NasMutator manages differentiable mutables too; jaxmutate's
        # DARTS runner takes the differentiable mutator.
        self.mapped("model.mutator", str(mutator["type"]), "DiffModuleMutator", "DARTS searches with DiffModuleMutator")
        rest = {k: v for k, v in mutator.items() if k not in ("type", SCOPE_KEY)}
        out["mutator"] = {"type": "DiffModuleMutator", **rest}
      else:
        out["mutator"] = self.generic(mutator, "model.mutator")
    accepted = _accepted_args(resolved)
    for key, value in cfg.items():
      if key in ("type", "architecture", "mutator", SCOPE_KEY):
        continue
      if accepted is not None and key not in accepted:
        reason = {
          "norm_training": "BatchNorm mode is explicit in jaxmutate (train=True/False)",
          "data_preprocessor": "normalisation follows from the data (jaxmutate.data.Normalization)",
          "init_cfg": IGNORED_TYPES["Pretrained"],
        }.get(key, f"{resolved} has no argument {key!r}")
        self.ignored(f"model.{key}", key, reason)
      else:
        out[key] = self.value(value, f"model.{key}")
    return out, None

  def search_loop(self, key: str, cfg: Mapping[str, Any]) -> dict[str, Any]:
    """MMRazor's ``AutoSlimGreedySearchLoop`` (a ``test_cfg`` or ``train_cfg``) → ``search_cfg``."""
    self.mapped(key, str(cfg["type"]), "search_cfg.type=AutoSlimGreedySearchLoop")
    out: dict[str, Any] = {"type": "AutoSlimGreedySearchLoop"}
    for name, value in cfg.items():
      if name in ("type", SCOPE_KEY):
        continue
      if name == "target_flops":
        out["target_flops"] = tuple(float(v) for v in value)
        out["relative"] = False
        self.mapped(
          f"{key}.target_flops",
          name,
          "search_cfg.target_flops (relative=False)",
          "absolute MFLOPs per image of your input size, not MMRazor's 224x224: rescale them, or give "
          "fractions of the max subnet with relative=True",
        )
      elif name == "score_key":
        self.ignored(f"{key}.score_key", name, "the runners score top-1 accuracy (or score_key='loss')")
      else:
        self.ignored(
          f"{key}.{name}",
          name,
          {
            "dataloader": "the search scores on the data set's val split",
            "evaluator": "the runners score top-1 accuracy",
            "estimator_cfg": IGNORED_TYPES["ResourceEstimator"],
            "resume_from": _RUNNER,
          }.get(name, f"AutoSlimGreedySearchLoop has no argument {name!r}"),
        )
    return out

  def val_cfg(self, key: str, cfg: Any, out: dict[str, Any]) -> None:
    """``val_cfg``/``test_cfg``: a search loop, a ``SubnetValLoop``'s BatchNorm calibration, or runner plumbing."""
    kind = _bare(cfg.get("type")) if isinstance(cfg, Mapping) else None
    if kind == "AutoSlimGreedySearchLoop":
      out["search_cfg"] = self.search_loop(key, cfg)
      return
    if kind == "SubnetValLoop" and "calibrate_sample_num" in cfg:
      out["calibrate_sample_num"] = int(cfg["calibrate_sample_num"])
      self.mapped(
        f"{key}.calibrate_sample_num",
        "calibrate_sample_num",
        "calibrate_sample_num",
        "every rated subnet's BatchNorm statistics are recalibrated on this many training images",
      )
      for name in cfg:
        if name not in ("type", "calibrate_sample_num", SCOPE_KEY):
          self.ignored(f"{key}.{name}", name, TOP_LEVEL_KEYS[key])
      return
    source = cfg.get("type", key) if isinstance(cfg, Mapping) else key
    self.ignored(key, str(source), TOP_LEVEL_KEYS[key])

  def train_cfg(self, cfg: Any) -> tuple[str, dict[str, Any]] | None:
    if cfg is None:
      self.ignored("train_cfg", "None", "no training in this config (a search or test config)")
      return None
    if isinstance(cfg, Mapping) and _resolve(cfg.get("type")) == "AutoSlimGreedySearchLoop":
      return "search_cfg", self.search_loop("train_cfg", cfg)
    if not isinstance(cfg, Mapping):
      self.unknown("train_cfg", repr(cfg), "expected a dict")
      return None
    if _resolve(cfg.get("type")) == "EvolutionSearchLoop":
      self.mapped("train_cfg", str(cfg["type"]), "search_cfg.type=EvolutionSearchLoop")
      accepted = (_accepted_args("EvolutionSearchLoop") or set()) | {"calibrate_sample_num"}
      out: dict[str, Any] = {"type": "EvolutionSearchLoop"}
      for key, value in cfg.items():
        if key in ("type", SCOPE_KEY):
          continue
        if key in accepted:
          out[key] = copy.deepcopy(value)
          if key == "constraints_range":
            self.mapped(
              "train_cfg.constraints_range",
              key,
              "search_cfg.constraints_range",
              "jaxmutate's units: MFLOPs/M params per image of your input size, not MMRazor's 224x224",
            )
        else:
          reason = {
            "dataloader": "the search scores on the data set's val split",
            "evaluator": "the runners score top-1 accuracy",
            "score_key": "the runners score top-1 accuracy",
            "estimator_cfg": IGNORED_TYPES["ResourceEstimator"],
            "max_keep_ckpts": _RUNNER,
            "resume_from": _RUNNER,
          }.get(key, f"EvolutionSearchLoop has no argument {key!r}")
          self.ignored(f"train_cfg.{key}", key, reason)
      return "search_cfg", out
    out = {}
    for key, value in cfg.items():
      if key == "max_epochs":
        out["epochs"] = value
        self.mapped("train_cfg.max_epochs", "max_epochs", "train_cfg.epochs")
      elif key == "type":
        self.ignored("train_cfg.type", str(value), MODELS.unsupported_reason(str(value)) or _RUNNER)
      else:
        self.ignored(f"train_cfg.{key}", key, _RUNNER)
    return "train_cfg", out


_ALGORITHMS = ("SPOS", "DARTS", "DSNAS", "AutoSlim", "SlimmableNetwork")

_MMCLS_MOBILENET_V2 = dict(
  arch_setting=(
    (1, 16, 1, 1),
    (6, 24, 2, 2),
    (6, 32, 3, 2),
    (6, 64, 4, 2),
    (6, 96, 3, 1),
    (6, 160, 3, 2),
    (6, 320, 1, 1),
  ),
  stem_channels=32,
  stem_stride=2,
  last_channels=1280,
)
"""mmcls's ``MobileNetV2`` (expand ratio, channels, blocks, stride per stage), in SearchableMobileNetV2's terms."""

_HELPER_VARIABLES = (
  "supernet",
  "nas_backbone",
  "subnet_backbone",
  "mutable_cfg",
  "route_cfg",
  "arch_setting",
  "num_random_samples",
  "max_epochs",
)
"""Top-level variables MMRazor configs define to build their model or loops from."""

_ALGORITHM_REASONS = {
  "norm_training": "BatchNorm mode is explicit in jaxmutate (train=True/False); subnets are rated with BatchNorm "
  "statistics recalibrated per subnet (calibrate_sample_num), which is what norm_training is for",
  "bn_training_mode": "BatchNorm mode is explicit in jaxmutate (train=True/False); subnets are rated with BatchNorm "
  "statistics recalibrated per subnet (calibrate_sample_num)",
  "data_preprocessor": "normalisation follows from the data (jaxmutate.data.Normalization)",
  "init_cfg": "PyTorch checkpoints do not load into Flax variables",
}

_BACKBONE_REASONS = {
  "out_indices": "the model returns logits (or the last feature map)",
  "frozen_stages": "freeze parameters with optax.masked in the optimizer",
  "norm_eval": "BatchNorm mode is explicit in jaxmutate (train=True/False)",
  "with_cp": "use jax.checkpoint / the ops' deferred BatchNorm instead",
  "conv_cfg": "jaxmutate's blocks fix their convolutions",
  "norm_cfg": "jaxmutate's blocks fix their normalisation",
  "act_cfg": "jaxmutate's blocks fix their activations",
  "init_cfg": "Flax initialisers are fixed by the modules",
  "in_channels": "input channels follow from the data",
  "adjust_channels": "not supported by jaxmutate's SearchableShuffleNetV2",
  "auxliary": "jaxmutate's DARTS networks have no auxiliary head",
  "aux_channels": "jaxmutate's DARTS networks have no auxiliary head",
  "aux_out_channels": "jaxmutate's DARTS networks have no auxiliary head",
}


def convert_mmrazor_config(cfg: Mapping[str, Any]) -> tuple[dict[str, Any], MMRazorReport]:
  """Converts a config in MMRazor's layout into jaxmutate's, with a report.

  ``cfg`` is what :func:`jaxmutate.load_config` returns for an MMRazor config
  file (its ``_base_`` chain resolved). The result holds:

  - ``model``: the algorithm (``SPOS``/``DARTS``) with MMRazor names mapped,
    the mmcls ``ImageClassifier`` replaced by its backbone (given the head's
    ``num_classes``), the backbones' arguments translated
    (``SearchableShuffleNetV2``'s ``[channels, blocks, mutable_cfg]`` stages,
    ``DartsBackbone``'s candidate dict → ``op_names``), and ``NasMutator``
    under DARTS → ``DiffModuleMutator``; for a ``sub_model`` the supernet.
  - ``search_cfg``: from an ``EvolutionSearchLoop`` ``train_cfg``.
  - ``train_cfg``: ``epochs`` from an epoch-based ``train_cfg``, and
    ``batch_size`` from ``train_dataloader.batch_size``.
  - ``fix_subnet``: the subnet file of a ``sub_model``.
  - ``custom_imports``: kept.

  Everything else is reported, not converted: data pipelines, loaders,
  optimisers, schedules, hooks, runtime settings.

  Args:
    cfg: the loaded MMRazor config.

  Returns:
    ``(converted config, report)``. Check ``report.ok`` (nothing unknown) and
    read ``report.ignored`` before running.

  Raises:
    ConfigTypeError: ``cfg`` is not a dict.

  Example:
    >>> import jaxmutate as jm
    >>> from jaxmutate.mmrazor_compat import convert_mmrazor_config
    >>> cfg = dict(model=dict(type="mmrazor.SPOS", mutator=dict(type="mmrazor.NasMutator"),
    ...                       architecture=dict(_scope_="mmcls", type="ImageClassifier",
    ...                                         backbone=dict(type="mmrazor.SearchableShuffleNetV2", widen_factor=1.0,
    ...                                                       arch_setting=[[16, 1, dict(type="OneShotMutableOP")]]),
    ...                                         head=dict(type="LinearClsHead", num_classes=10, in_channels=1024))),
    ...            train_cfg=dict(type="mmrazor.EvolutionSearchLoop", max_epochs=2, num_candidates=4,
    ...                           score_key="accuracy/top1"))
    >>> converted, report = convert_mmrazor_config(cfg)
    >>> converted["model"]["architecture"]["arch_setting"], converted["model"]["architecture"]["num_classes"]
    (((16, 1, 2),), 10)
    >>> converted["search_cfg"]
    {'type': 'EvolutionSearchLoop', 'max_epochs': 2, 'num_candidates': 4}
    >>> type(jm.build(converted["model"])).__name__, report.ok
    ('SPOS', True)
  """
  if not isinstance(cfg, Mapping):
    raise ConfigTypeError(f"convert_mmrazor_config takes a config dict, got {type(cfg).__name__}.")
  converter = _Converter()
  out: dict[str, Any] = {}
  if "model" in cfg:
    out["model"], fix_subnet = converter.model(cfg["model"])
    if fix_subnet is not None:
      out["fix_subnet"] = fix_subnet
      converter.mapped("model.fix_subnet", "fix_subnet", "fix_subnet", "load it with jaxmutate.read_fix_subnet")
  if "train_cfg" in cfg:
    converted = converter.train_cfg(cfg["train_cfg"])
    if converted is not None:
      key, value = converted
      if value:
        out[key] = value
  loader = cfg.get("train_dataloader")
  if isinstance(loader, Mapping) and "batch_size" in loader:
    out.setdefault("train_cfg", {})["batch_size"] = loader["batch_size"]
    converter.mapped("train_dataloader.batch_size", "batch_size", "train_cfg.batch_size")
  if "custom_imports" in cfg:
    out["custom_imports"] = copy.deepcopy(cfg["custom_imports"])
  for key, value in cfg.items():
    if key in _MAPPED_TOP_LEVEL:
      continue
    if key in ("val_cfg", "test_cfg"):
      converter.val_cfg(key, value, out)
    elif key in TOP_LEVEL_KEYS:
      source = value.get("type", key) if isinstance(value, Mapping) else key
      converter.ignored(key, str(source), TOP_LEVEL_KEYS[key])
    elif key in _HELPER_VARIABLES:
      converter.ignored(key, key, "a helper variable of the config; what the model uses of it is converted")
    else:
      converter.unknown(key, key, "a top-level key jaxmutate does not know")
  return out, converter.report


def mmrazor_report(cfg: Mapping[str, Any]) -> MMRazorReport:
  """The report of :func:`convert_mmrazor_config` alone: what maps, what is ignored and why.

  Example:
    >>> from jaxmutate.mmrazor_compat import mmrazor_report
    >>> print(mmrazor_report(dict(model=dict(type="mmrazor.sub_model", cfg=dict(type="DartsBackbone"),
    ...                                      fix_subnet="subnet.yaml"))))  # doctest: +NORMALIZE_WHITESPACE
    mapped (3):
      model: mmrazor.sub_model (converted: the supernet becomes model, the subnet file becomes fix_subnet)
      model.cfg: DartsBackbone -> DartsBackbone
      model.fix_subnet: fix_subnet -> fix_subnet (load it with jaxmutate.read_fix_subnet)
    ignored (0):
    unknown (0):
  """
  return convert_mmrazor_config(cfg)[1]


def mmrazor_type(name: str) -> str | None:
  """The jaxmutate ``MODELS`` name an MMRazor type (scope prefix allowed) builds, or ``None``.

  Example:
    >>> from jaxmutate.mmrazor_compat import mmrazor_type
    >>> mmrazor_type("mmrazor.Darts"), mmrazor_type("mmcls::ImageClassifier")
    ('DARTS', None)
  """
  return _resolve(name)


__all__ = [
  "convert_mmrazor_config",
  "IGNORED_TYPES",
  "MMRAZOR_SCOPES",
  "mmrazor_report",
  "mmrazor_type",
  "MMRazorReport",
  "ReportEntry",
  "TOP_LEVEL_KEYS",
  "TYPE_MAP",
]
