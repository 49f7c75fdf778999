"""Channel mutators: MMRazor's ``ChannelMutator`` branch over declared channel units.

A supernet declares its channel units (:mod:`jaxmutate.channels`) and passes
their widths to the layers of :mod:`jaxmutate.dynamic`; at ``init`` the units
record their search spaces and the layers record which units they follow.
``prepare_from_supernet`` reads both: the units (MMRazor's ``units``), their
related channels and names, and search groups (``custom_group`` and aliases,
as for module mutators). Choices are then sampled, set and exported exactly
like module mutables' (see :class:`~jaxmutate.ModuleMutator`).

Config layout (MMRazor's, accepted by :func:`jaxmutate.build` and written by
:meth:`ChannelMutator.config_template`)::

  dict(type="OneShotChannelMutator",
       channel_unit_cfg=dict(type="OneShotMutableChannelUnit",
                             default_args=dict(candidate_choices=[...], choice_mode="ratio", divisor=8),
                             units={unit name: dict(init_args=..., choice=..., channels=...)} or "units.yaml"),
       parse_cfg=dict(type="Predefined"))

``parse_cfg`` types: ``"Predefined"`` (the default: the units the supernet
declares; ``units`` entries, if any, set initial choices), ``"Config"``
(the same, but ``units`` must list every declared unit, as a pruning config
does) and MMRazor's ``"ChannelAnalyzer"``: the units of an unmodified model,
found by tracing it (:func:`jaxmutate.analysis.analyze_channels`);
``prepare_from_supernet(variables, model=..., sample_input=...)`` (or
``parse_cfg=dict(type="ChannelAnalyzer", demo_input=shape or array,
ignored=[...])``) runs the analysis, each unit becomes a unit of
``channel_unit_cfg``'s type with ``default_args``, and :meth:`ChannelMutator.masks`
turns choices into channel masks for ``analysis.mask_variables``. For declared units,
``default_args`` cannot change them: they are checked against every unit
(a mismatch is an error naming the unit), never silently ignored.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Mapping
from pathlib import Path
from typing import Any, ClassVar

import flax.struct
import jax
import jax.numpy as jnp
import numpy as np
from flax.core import FrozenDict

from jaxmutate.channels import MutableChannelUnit, OneShotMutableChannelUnit, SlimmableChannelUnit, UnitChannels
from jaxmutate.errors import ConfigError, ConfigKeyError, ConfigTypeError, SearchSpaceError, SubnetFileError
from jaxmutate.mutables import MUTABLES_COLLECTION, MutableSpec
from jaxmutate.mutators._base import ModuleMutator
from jaxmutate.mutators._units import ChannelUnitInfo, is_channel_unit
from jaxmutate.registry import MODELS, check_config_keys, split_scope
from jaxmutate.typing import GroupChoices, PRNGKey, Variables

__all__ = ["ChannelMutator", "OneShotChannelMutator", "PARSE_TYPES", "SlimmableChannelMutator"]

PARSE_TYPES = ("Predefined", "Config", "ChannelAnalyzer")
"""The ``parse_cfg`` types this release understands (see the module docs)."""

_UNIT_CFG_KEYS = ("type", "default_args", "units")
_UNIT_ENTRY_KEYS = ("init_args", "choice", "channels")
# Keys MMRazor's parse configs carry; accepted so that its files load, checked by type.
_PARSE_KEYS = ("type", "_scope_", "from_cfg", "demo_input", "tracer_type", "ignored", "model")


def _freeze(value: Any) -> Any:
  if isinstance(value, Mapping):
    return FrozenDict({k: _freeze(v) for k, v in value.items()})
  if isinstance(value, (list, tuple)):
    return tuple(_freeze(v) for v in value)
  return value


def _thaw(value: Any) -> Any:
  if isinstance(value, Mapping):
    return {k: _thaw(v) for k, v in value.items()}
  if isinstance(value, tuple):
    return [_thaw(v) for v in value]
  return value


def _unit_arg_names(unit_type: type) -> tuple[str, ...]:
  return tuple(f.name for f in dataclasses.fields(unit_type) if f.name not in ("parent", "name", "alias"))


def _resolve_unit_type(value: Any, base: type, where: str) -> type:
  if isinstance(value, type):
    unit_type = value
  elif isinstance(value, str):
    unit_type = _unit_class(value)
  else:
    raise ConfigTypeError(f"{where}: the unit type must be a class or a registered name, got {value!r}.")
  if not (isinstance(unit_type, type) and issubclass(unit_type, MutableChannelUnit)):
    raise ConfigTypeError(f"{where}: {value!r} is not a channel unit type (a MutableChannelUnit subclass).")
  if not issubclass(unit_type, base):
    raise ConfigTypeError(f"{where}: this mutator manages {base.__name__} units; {unit_type.__name__} is not one.")
  return unit_type


def _unit_class(name: str) -> type:
  # The base class is not registered (it cannot be built), but it names "any unit".
  return MutableChannelUnit if split_scope(name)[1] == MutableChannelUnit.__name__ else MODELS.get(name)


def _same_init_args(declared: Mapping[str, Any], requested: Mapping[str, Any], unit_type: type, where: str) -> None:
  """Checks that ``requested`` init args describe the declared unit (after MMRazor's normalisation)."""
  merged = {**declared, **requested}
  try:
    rebuilt = unit_type(**merged).init_args
  except (TypeError, ValueError) as error:
    raise SearchSpaceError(f"{where}: the config's arguments {dict(requested)} do not build a unit: {error}") from None
  differing = sorted(k for k in rebuilt if rebuilt[k] != declared.get(k))
  if differing:
    detail = ", ".join(f"{k}: supernet {declared.get(k)!r}, config {rebuilt[k]!r}" for k in differing)
    raise SearchSpaceError(
      f"{where}: the config does not match the unit the supernet declares ({detail}); units are declared in the "
      "model, so change them there (or drop the key from the config)."
    )


@MODELS.register_module()
class ChannelMutator(ModuleMutator):
  """The channel-mutator base (MMRazor's ``ChannelMutator``): prepares, groups, samples and exports channel units.

  Attributes:
    channel_unit_cfg: the unit type this mutator manages (a class, a
      registered name, or MMRazor's ``dict(type=..., default_args=...,
      units=...)``; ``units`` may be a YAML/JSON file path). Units of other
      types are ignored.
    parse_cfg: ``dict(type="Predefined")`` (default), ``dict(type="Config")`` or
      ``dict(type="ChannelAnalyzer", demo_input=..., ignored=...)`` (units of an
      unmodified model, found by tracing it).
    analysis: (``ChannelAnalyzer``, after preparation) the
      :class:`~jaxmutate.analysis.ChannelAnalysis` the units come from.
    custom_group: lists of unit names (module paths or MMRazor names) and/or
      aliases that share one choice.

  ``sample_choices(key, kind)`` accepts ``"random"``, ``"max"`` and ``"min"``
  (MMRazor's base accepts only random). Differences from MMRazor, for
  immutability: choices are returned, never stored; ``set_choices`` needs every
  group (a partial update is ``{**old, **new}``); ``current_choices()`` are the
  choices the config's ``units`` give (the max where they give none).

  Example:
    >>> import jax, jax.numpy as jnp, flax.linen as nn
    >>> import jaxmutate as jm
    >>> from jaxmutate import dynamic
    >>> from jaxmutate.channels import OneShotMutableChannelUnit
    >>> class Net(nn.Module):
    ...   @nn.compact
    ...   def __call__(self, x, choices):
    ...     w = OneShotMutableChannelUnit(16, (0.25, 0.5, 1.0), name="unit")(choices)
    ...     x = dynamic.DynamicConv(16, 3, name="conv1")(x, out_width=w)
    ...     return dynamic.DynamicDense(10, name="fc")(x.mean((1, 2)), in_width=w)
    >>> net, x = Net(), jnp.ones((2, 8, 8, 1))
    >>> variables = net.init(jax.random.key(0), x, None)
    >>> mutator = jm.ChannelMutator().prepare_from_supernet(variables)
    >>> [unit.name for unit in mutator.units]
    ['conv1_(0, 16)_16']
    >>> mutator.export_fix_subnet(mutator.min_choices())
    {'conv1_(0, 16)_16': {'chosen': 0.25}}
    >>> sample = jax.jit(jax.vmap(lambda k: mutator.set_choices(mutator.sample_choices(k))))
    >>> sample(jax.random.split(jax.random.key(1), 10_000))["unit"].shape
    (10000,)
  """

  RAW_CONFIG_ARGS: ClassVar[tuple[str, ...]] = ("channel_unit_cfg", "parse_cfg")
  mutable_class_type: ClassVar[type] = MutableChannelUnit
  default_unit_type: ClassVar[type] = MutableChannelUnit

  channel_unit_cfg: Any = flax.struct.field(pytree_node=False, default=None)
  parse_cfg: Any = flax.struct.field(pytree_node=False, default=None)
  initial: tuple[tuple[int, int], ...] | None = flax.struct.field(pytree_node=False, default=None)
  analysis: Any = flax.struct.field(pytree_node=False, default=None)

  def __post_init__(self) -> None:
    super().__post_init__()
    object.__setattr__(self, "channel_unit_cfg", self._normalize_unit_cfg(self.channel_unit_cfg))
    object.__setattr__(self, "parse_cfg", self._normalize_parse_cfg(self.parse_cfg))

  # Configuration ---------------------------------------------------------

  def _normalize_unit_cfg(self, cfg: Any) -> FrozenDict:
    where = f"{type(self).__name__}: channel_unit_cfg"
    if cfg is None or isinstance(cfg, (str, type)):
      cfg = {"type": self.default_unit_type if cfg is None else cfg}
    if not isinstance(cfg, Mapping):
      raise ConfigTypeError(
        f"{where} must be a unit type or a dict(type=..., default_args=..., units=...), got {cfg!r}."
      )
    check_config_keys(cfg, _UNIT_CFG_KEYS, where)
    unit_type = _resolve_unit_type(cfg.get("type", self.default_unit_type), self.mutable_class_type, where)
    default_args = cfg.get("default_args") or {}
    if not isinstance(default_args, Mapping):
      raise ConfigTypeError(f"{where}.default_args must be a dict of unit arguments, got {default_args!r}.")
    check_config_keys(default_args, _unit_arg_names(unit_type), f"{where}.default_args ({unit_type.__name__})")
    units = cfg.get("units")
    if isinstance(units, (str, Path)):
      from jaxmutate.subnet import read_mapping_file

      units = read_mapping_file(units, f"{where}.units file")
    if units is not None:
      if not isinstance(units, Mapping):
        raise ConfigTypeError(f"{where}.units must map unit names to dict(choice=..., ...), got {units!r}.")
      for name, entry in units.items():
        if not isinstance(entry, Mapping):
          raise ConfigTypeError(f"{where}.units[{name!r}] must be a dict(choice=..., init_args=...), got {entry!r}.")
        check_config_keys(entry, _UNIT_ENTRY_KEYS, f"{where}.units[{name!r}]")
        if "choice" not in entry:
          raise ConfigKeyError(f"{where}.units[{name!r}] has no 'choice'.")
    frozen = {"type": unit_type.__name__, "default_args": default_args}
    if units is not None:
      frozen["units"] = units
    return _freeze(frozen)

  def _normalize_parse_cfg(self, cfg: Any) -> FrozenDict:
    where = f"{type(self).__name__}: parse_cfg"
    if cfg is None:
      cfg = {"type": "Predefined"}
    if isinstance(cfg, str):
      cfg = {"type": cfg}
    if not isinstance(cfg, Mapping):
      raise ConfigTypeError(f"{where} must be a dict(type=...), got {cfg!r}.")
    check_config_keys(cfg, _PARSE_KEYS, where)
    kind = cfg.get("type", "Predefined")
    if not isinstance(kind, str):
      raise ConfigTypeError(f"{where}: type must be a str, got {kind!r}.")
    _, kind = split_scope(kind)
    if kind != "ChannelAnalyzer" and any(k in cfg for k in ("ignored", "model")):
      raise ConfigKeyError(f"{where}: 'ignored' and 'model' belong to type 'ChannelAnalyzer', not {kind!r}.")
    if kind not in PARSE_TYPES:
      raise ConfigError(f"{where}: unknown type {kind!r}; expected one of {list(PARSE_TYPES)}.")
    return _freeze({**cfg, "type": kind})

  @property
  def unit_type(self) -> type:
    """The channel-unit class this mutator manages (from ``channel_unit_cfg``)."""
    return _unit_class(self.channel_unit_cfg["type"])

  def _managed_types(self) -> tuple[type, ...]:
    return (self.unit_type,)

  def _manages(self, spec: MutableSpec) -> bool:
    return is_channel_unit(spec) and issubclass(spec.mutable_type, self.unit_type)

  # Preparation -----------------------------------------------------------

  def prepare_from_supernet(
    self, variables: Variables, model: Any = None, sample_input: Any = None, **apply_kwargs: Any
  ) -> ChannelMutator:
    """Finds the declared units, their related channels and groups; checks the config against them.

    With ``parse_cfg`` type ``"ChannelAnalyzer"`` the units are found by
    tracing ``model.apply(variables, sample_input, **apply_kwargs)`` (the
    model and the input may also come from ``parse_cfg``'s ``model`` and
    ``demo_input``, a shape or an array); each becomes a unit of the managed
    type built with ``default_args``.

    Example:
      >>> import jax, jax.numpy as jnp, flax.linen as nn
      >>> import jaxmutate as jm
      >>> class Net(nn.Module):  # an unmodified model: no units declared
      ...   @nn.compact
      ...   def __call__(self, x):
      ...     return nn.Dense(2, name="fc")(nn.relu(nn.Dense(16, name="hidden")(x)))
      >>> net, x = Net(), jnp.ones((1, 4))
      >>> variables = net.init(jax.random.key(0), x)
      >>> mutator = jm.OneShotChannelMutator(
      ...   channel_unit_cfg=dict(type="OneShotMutableChannelUnit", default_args=dict(candidate_choices=[0.5, 1.0])),
      ...   parse_cfg=dict(type="ChannelAnalyzer"),
      ... ).prepare_from_supernet(variables, model=net, sample_input=x)
      >>> [unit.name for unit in mutator.units]
      ['hidden_(0, 16)_16']
      >>> masks = mutator.masks(mutator.set_choices(mutator.min_choices()))
      >>> masks["hidden_(0, 16)_16"].sum()
      Array(8., dtype=float32)

    Raises:
      SearchSpaceError: no unit of the managed type; ``default_args`` or a
        ``units`` entry's ``init_args``/``channels`` that do not match the
        declared unit; layers coupled in one unit with different widths;
        invalid groups (see :class:`~jaxmutate.ModuleMutator`).
      ConfigKeyError: a ``units`` entry naming no unit; (``parse_cfg`` type
        ``"Config"``) a declared unit missing from ``units``.
      SubnetFileError: a ``units`` choice that is not among the unit's
        candidates, or two units of one group with different choices.
    """
    if self.parse_cfg["type"] == "ChannelAnalyzer":
      return self._prepare_by_analysis(variables, model, sample_input, apply_kwargs)
    prepared = super().prepare_from_supernet(variables)
    default_args = _thaw(self.channel_unit_cfg["default_args"])
    for info in prepared.units:
      if default_args:
        _same_init_args(info.init_args, default_args, info.unit_type, f"Channel unit {info.name!r}")
    initial = prepared._initial_choices()
    return prepared.replace(initial=initial)

  def _prepare_by_analysis(
    self, variables: Variables, model: Any, sample_input: Any, apply_kwargs: Mapping[str, Any]
  ) -> ChannelMutator:
    from jaxmutate.analysis import analyze_channels

    where = f"{type(self).__name__}: parse_cfg type 'ChannelAnalyzer'"
    model = self.parse_cfg.get("model") if model is None else model
    if model is None:
      raise ConfigError(f"{where} needs the model: prepare_from_supernet(variables, model=..., sample_input=...).")
    if sample_input is None:
      demo = self.parse_cfg.get("demo_input")
      if demo is None:
        raise ConfigError(f"{where} needs a sample input: sample_input=... or parse_cfg demo_input=(shape).")
      is_shape = isinstance(demo, (tuple, list)) and all(isinstance(d, int) for d in demo)
      sample_input = jnp.zeros(tuple(demo), jnp.float32) if is_shape else jnp.asarray(demo)
    analysis = analyze_channels(
      model, variables, sample_input, ignored=tuple(self.parse_cfg.get("ignored") or ()), **apply_kwargs
    )
    if not analysis.groups:
      raise SearchSpaceError(f"{where}: the analysis found no prunable unit.\n{analysis.report()}")
    unit_type = self.unit_type
    if unit_type is MutableChannelUnit:
      unit_type = (
        self.default_unit_type if self.default_unit_type is not MutableChannelUnit else OneShotMutableChannelUnit
      )
    default_args = _thaw(self.channel_unit_cfg["default_args"])
    specs = {}
    for order, group in enumerate(analysis.groups):
      try:
        unit = unit_type(group.num_channels, **default_args)
      except (TypeError, ValueError) as error:
        raise SearchSpaceError(
          f"{where}: default_args {default_args} do not build a {unit_type.__name__} of {group.num_channels} "
          f"channels for unit {group.name!r}: {error}"
        ) from None
      spec = unit.init(jax.random.key(0), None)[MUTABLES_COLLECTION]["spec"]
      specs[group.name] = {"spec": dataclasses.replace(spec, order=order)}
    prepared = ModuleMutator.prepare_from_supernet(self, {MUTABLES_COLLECTION: specs})
    prepared = prepared.replace(analysis=analysis)
    return prepared.replace(initial=prepared._initial_choices())

  def masks(self, choices: Mapping[str, Any]) -> dict[str, jax.Array]:
    """Channel masks of the analysed units for ``choices`` (from :meth:`set_choices`); traceable.

    Raises:
      ConfigError: the mutator was not prepared with ``parse_cfg`` type ``"ChannelAnalyzer"``.
    """
    if self.analysis is None:
      raise ConfigError(
        f"{type(self).__name__}.masks needs units from parse_cfg type 'ChannelAnalyzer'; declared units give "
        "their widths to the dynamic layers directly."
      )
    spaces = self.name_to_spec
    return self.analysis.masks({name: spaces[name].space.kept(choices[name]) for name in self.analysis.group_names})

  def _initial_choices(self) -> tuple[tuple[int, int], ...] | None:
    units_cfg = self.channel_unit_cfg.get("units")
    if units_cfg is None:
      if self.parse_cfg["type"] == "Config":
        raise ConfigKeyError(f"{type(self).__name__}: parse_cfg type 'Config' needs channel_unit_cfg.units.")
      return None
    by_key = {}
    for info in self.units:
      by_key[info.name] = info
      by_key[info.mutable_name] = info
    group_of = {name: g for g, names in self.search_groups.items() for name in names}
    chosen: dict[int, tuple[str, int]] = {}
    listed = set()
    for key, entry in units_cfg.items():
      if key not in by_key:
        known = [info.name for info in self.units]
        raise ConfigKeyError(f"channel_unit_cfg.units names unknown unit {key!r}; the supernet's units are {known}.")
      info = by_key[key]
      listed.add(info.mutable_name)
      where = f"channel_unit_cfg.units[{key!r}]"
      if "init_args" in entry:
        _same_init_args(info.init_args, _thaw(entry["init_args"]), info.unit_type, where)
      if "channels" in entry:
        channels = UnitChannels.from_config(_thaw(entry["channels"]), info.num_channels)
        recorded = info.channels
        if set(channels.output_related) != set(recorded.output_related) or set(channels.input_related) != set(
          recorded.input_related
        ):
          raise SearchSpaceError(
            f"{where}: its channels {channels.config_template()} are not the ones the supernet's layers relate to "
            f"the unit ({recorded.config_template()})."
          )
      group = group_of[info.mutable_name]
      value = int(info.space.load(_thaw(entry["choice"]), key))
      if group in chosen and chosen[group][1] != value:
        raise SubnetFileError(
          f"channel_unit_cfg.units: {chosen[group][0]!r} and {key!r} share search group {group} but have "
          "different choices."
        )
      chosen[group] = (key, value)
    if self.parse_cfg["type"] == "Config":
      missing = [info.name for info in self.units if info.mutable_name not in listed]
      if missing:
        raise ConfigKeyError(
          f"parse_cfg type 'Config': channel_unit_cfg.units does not list the supernet's unit(s) {missing}."
        )
    return tuple((g, value) for g, (_, value) in sorted(chosen.items()))

  # Units -----------------------------------------------------------------

  @property
  def units(self) -> tuple[ChannelUnitInfo, ...]:
    """Every managed unit (MMRazor's ``units``), in definition order.

    Raises:
      NotPreparedError: before ``prepare_from_supernet``.
    """
    self._require_prepared()
    relations = dict(self.unit_channels or ())
    infos = []
    for name, spec in self.specs:
      channels = relations.get(name, UnitChannels())
      infos.append(
        ChannelUnitInfo(
          name=self.display_name(name),
          mutable_name=name,
          unit_type=spec.mutable_type,
          space=spec.space,
          alias=spec.alias,
          init_args={k: list(v) if isinstance(v, tuple) else v for k, v in (spec.init_args or ())},
          channels=channels,
        )
      )
    return tuple(infos)

  @property
  def mutable_units(self) -> tuple[ChannelUnitInfo, ...]:
    """The units that can be pruned (MMRazor's ``mutable_units``; see :attr:`ChannelUnitInfo.is_mutable`)."""
    return tuple(info for info in self.units if info.is_mutable)

  def current_choices(self) -> GroupChoices:
    """The group choices of the config's ``units`` entries; the max for groups they do not set."""
    chosen = dict(self.initial or ())
    maximum = self.max_choices()
    return {g: jnp.int32(chosen[g]) if g in chosen else maximum[g] for g in self.search_groups}

  def config_template(
    self,
    only_mutable_units: bool = False,
    with_unit_init_args: bool = False,
    with_channels: bool = False,
    group_choices: GroupChoices | None = None,
  ) -> dict[str, Any]:
    """MMRazor's mutator config: ``dict(type, channel_unit_cfg=dict(type, default_args, units), parse_cfg)``.

    ``jm.build`` turns it back into a mutator that, prepared on the same
    supernet, has the same groups and these choices as its
    :meth:`current_choices`. Pruning subnets are exported in this layout too;
    :meth:`load_fix_subnet` reads its ``units`` part.

    Args:
      only_mutable_units: list only :attr:`mutable_units`.
      with_unit_init_args: add each unit's ``init_args``.
      with_channels: add each unit's related channels.
      group_choices: the choices to write (concrete); default
        :meth:`current_choices`.

    Returns:
      Plain Python (YAML/JSON-serialisable).

    Example:
      >>> import jax, jax.numpy as jnp, flax.linen as nn
      >>> import jaxmutate as jm
      >>> from jaxmutate import dynamic
      >>> from jaxmutate.channels import OneShotMutableChannelUnit
      >>> class Net(nn.Module):
      ...   @nn.compact
      ...   def __call__(self, x, choices):
      ...     w = OneShotMutableChannelUnit(8, (0.5, 1.0), name="unit")(choices)
      ...     x = dynamic.DynamicConv(8, 3, name="conv1")(x, out_width=w)
      ...     return dynamic.DynamicDense(2, name="fc")(x.mean((1, 2)), in_width=w)
      >>> variables = Net().init(jax.random.key(0), jnp.ones((1, 4, 4, 1)), None)
      >>> mutator = jm.OneShotChannelMutator().prepare_from_supernet(variables)
      >>> template = mutator.config_template(group_choices=mutator.min_choices())
      >>> template["channel_unit_cfg"]["units"]
      {'conv1_(0, 8)_8': {'choice': 0.5}}
      >>> rebuilt = jm.build(template).prepare_from_supernet(variables)
      >>> mutator.export_fix_subnet(rebuilt.current_choices())
      {'conv1_(0, 8)_8': {'chosen': 0.5}}
    """
    checked = self.check_group_choices(self.current_choices() if group_choices is None else group_choices)
    group_of = {name: g for g, names in self.search_groups.items() for name in names}
    units: dict[str, Any] = {}
    for info in self.mutable_units if only_mutable_units else self.units:
      entry: dict[str, Any] = {}
      if with_unit_init_args:
        entry["init_args"] = dict(info.init_args)
      if with_channels:
        entry["channels"] = info.channels.config_template()
      entry["choice"] = info.space.export(checked[group_of[info.mutable_name]])
      units[info.name] = entry
    template: dict[str, Any] = {
      "type": type(self).__name__,
      "channel_unit_cfg": {
        "type": self.channel_unit_cfg["type"],
        "default_args": _thaw(self.channel_unit_cfg["default_args"]),
        "units": units,
      },
      "parse_cfg": _thaw(self.parse_cfg),
    }
    if self.custom_group is not None:
      template["custom_group"] = [list(entry) for entry in self.custom_group]
    return template


@MODELS.register_module()
class OneShotChannelMutator(ChannelMutator):
  """Samples among the candidate widths of one-shot units: max, min or uniform (AutoSlim, BigNAS).

  Manages :class:`~jaxmutate.channels.OneShotMutableChannelUnit` (and its
  subclass, the slimmable unit) by default. See :class:`ChannelMutator`.

  Example:
    >>> import jax, jax.numpy as jnp, flax.linen as nn
    >>> import jaxmutate as jm
    >>> from jaxmutate import dynamic
    >>> from jaxmutate.channels import OneShotMutableChannelUnit
    >>> class Net(nn.Module):
    ...   @nn.compact
    ...   def __call__(self, x, choices):
    ...     w = OneShotMutableChannelUnit(16, (0.25, 0.5, 1.0), divisor=4, name="unit")(choices)
    ...     x = dynamic.DynamicConv(16, 3, name="conv")(x, out_width=w)
    ...     return dynamic.DynamicDense(2, name="fc")(x.mean((1, 2)), in_width=w)
    >>> variables = Net().init(jax.random.key(0), jnp.ones((1, 4, 4, 1)), None)
    >>> mutator = jm.OneShotChannelMutator().prepare_from_supernet(variables)
    >>> mutator.max_choices(), mutator.min_choices()
    ({0: Array(2, dtype=int32)}, {0: Array(0, dtype=int32)})
  """

  mutable_class_type: ClassVar[type] = OneShotMutableChannelUnit
  default_unit_type: ClassVar[type] = OneShotMutableChannelUnit


@MODELS.register_module()
class SlimmableChannelMutator(ChannelMutator):
  """Slimmable networks: subnet *i* takes candidate *i* of every unit.

  Every search group must have the same number of candidates (checked at
  ``prepare_from_supernet``). ``sample_choices(key)`` draws one of the
  predefined :attr:`subnets` uniformly (MMRazor raises; its algorithm trains
  every subnet, which :attr:`subnets` lists); ``"max"``/``"min"`` are the
  widest/narrowest subnet.

  Example:
    >>> import jax, jax.numpy as jnp, flax.linen as nn
    >>> import jaxmutate as jm
    >>> from jaxmutate import dynamic
    >>> from jaxmutate.channels import SlimmableChannelUnit
    >>> class Net(nn.Module):
    ...   @nn.compact
    ...   def __call__(self, x, choices):
    ...     w1 = SlimmableChannelUnit(8, (4, 8), name="u1")(choices)
    ...     w2 = SlimmableChannelUnit(16, (8, 16), name="u2")(choices)
    ...     x = nn.relu(dynamic.DynamicConv(8, 3, name="conv1")(x, out_width=w1))
    ...     x = dynamic.DynamicConv(16, 3, name="conv2")(x, in_width=w1, out_width=w2)
    ...     return dynamic.DynamicDense(2, name="fc")(x.mean((1, 2)), in_width=w2)
    >>> variables = Net().init(jax.random.key(0), jnp.ones((1, 4, 4, 1)), None)
    >>> mutator = jm.SlimmableChannelMutator().prepare_from_supernet(variables)
    >>> [mutator.export_fix_subnet(s) for s in mutator.subnets]
    [{'conv1_(0, 8)_8': {'chosen': 4}, 'conv2_(0, 16)_16': {'chosen': 8}}, {'conv1_(0, 8)_8': {'chosen': 8}, 'conv2_(0, 16)_16': {'chosen': 16}}]
  """

  mutable_class_type: ClassVar[type] = SlimmableChannelUnit
  default_unit_type: ClassVar[type] = SlimmableChannelUnit

  def prepare_from_supernet(self, variables: Variables) -> SlimmableChannelMutator:
    """As :meth:`ChannelMutator.prepare_from_supernet`; also checks that the units line up into subnets.

    Raises:
      SearchSpaceError: groups with different numbers of candidates (naming
        them), or a sequential unit.
    """
    prepared = super().prepare_from_supernet(variables)
    prepared._num_subnets()
    return prepared

  def _num_subnets(self) -> int:
    counts = {}
    for group in self.search_groups:
      space = self.group_space(group)
      if space.candidates is None:
        raise SearchSpaceError(f"SlimmableChannelMutator: unit {self.group_key(group)!r} has no candidate list.")
      counts[self.group_key(group)] = len(space.candidates)
    if len(set(counts.values())) > 1:
      raise SearchSpaceError(
        "SlimmableChannelMutator: every unit must have the same number of candidates (subnet i takes candidate i "
        f"of every unit), got {counts}."
      )
    return next(iter(counts.values()))

  @property
  def subnets(self) -> tuple[GroupChoices, ...]:
    """The predefined subnets, narrowest first: ``({group: i for every group} for every i)``."""
    return tuple({g: np.int32(i) for g in self.search_groups} for i in range(self._num_subnets()))

  def sample_choices(self, key: PRNGKey, kind: str = "random") -> GroupChoices:
    """One of the predefined subnets: uniform (``"random"``), the widest (``"max"``) or the narrowest (``"min"``).

    Works under ``jit``/``vmap``: a traced draw gives every group the same traced index.

    Raises:
      ConfigError: an unknown ``kind``.
    """
    if kind not in ("random", "max", "min"):
      raise ConfigError(f"sample_choices: kind must be 'random', 'max' or 'min', got {kind!r}.")
    count = self._num_subnets()
    if kind == "random":
      index = jax.random.randint(key, (), 0, count, dtype=jnp.int32)
    else:
      index = jnp.int32(count - 1 if kind == "max" else 0)
    return {g: index for g in self.search_groups}
