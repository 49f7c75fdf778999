"""The mutator contract and the module-mutator machinery shared by NAS mutators."""

from __future__ import annotations

import abc
import re
from collections.abc import Mapping
from pathlib import Path
from typing import Any, ClassVar

import flax.struct
import jax
import jax.numpy as jnp
import numpy as np

from jaxmutate.channels import UnitChannels
from jaxmutate.errors import (
  ChoiceError,
  ChoiceTypeError,
  ConfigError,
  ConfigTypeError,
  MissingChoiceError,
  NotPreparedError,
  SearchSpaceError,
  SubnetEntryMissingError,
  SubnetFileError,
  SubnetFileTypeError,
  TracedChoiceError,
)
from jaxmutate.mutables import MutableSpec
from jaxmutate.mutators._grouping import build_search_groups, collect_specs, normalize_custom_group
from jaxmutate.mutators._units import collect_layer_channels, relate_units, unit_display_name, units_as_fix_subnet
from jaxmutate.spaces import EdgeSubsetSpace, SearchSpace, is_traced
from jaxmutate.typing import Choices, FixSubnet, GroupChoices, PRNGKey, Variables


class BaseMutator(flax.struct.PyTreeNode, abc.ABC):
  """The mutator contract: immutable, prepared from a supernet's variables.

  A mutator holds only static metadata (it is a pytree without leaves), so it
  can be passed to and closed over by jitted functions freely.

  Example:
    >>> import jax
    >>> import jaxmutate as jm
    >>> issubclass(jm.NasMutator, jm.BaseMutator)
    True
    >>> jax.tree.leaves(jm.NasMutator())
    []
  """

  @abc.abstractmethod
  def prepare_from_supernet(self, variables: Variables) -> BaseMutator:
    """Returns a prepared copy that knows the supernet's search groups."""

  @property
  @abc.abstractmethod
  def search_groups(self) -> dict[int, tuple[str, ...]]:
    """Group id → names of the mutables that share that group's choice."""

  @abc.abstractmethod
  def group_space(self, group: int) -> SearchSpace:
    """The :class:`~jaxmutate.spaces.SearchSpace` of ``group``'s choice."""

  @abc.abstractmethod
  def sample_choices(self, key: PRNGKey, kind: str = "random") -> GroupChoices:
    """One discrete choice per search group: ``kind`` is ``"random"``, ``"max"`` or ``"min"``.

    Differentiable mutators also accept their architecture parameters in
    place of ``key`` and then return the subnet those select (SPEC's
    ``DiffModuleMutator.sample_choices(arch_params)``, also available as
    ``derive_choices``).
    """

  @abc.abstractmethod
  def set_choices(self, group_choices: Any) -> Choices:
    """Expands group choices into ``{mutable name: choice}`` for ``model.apply``."""


class ModuleMutator(BaseMutator):
  """Base of NAS mutators over module and value mutables.

  Subclasses set :attr:`mutable_class_type`; mutables of other types are
  ignored. ``prepare_from_supernet`` reads the specs that mutables record at
  ``init`` and groups them (custom groups, then aliases, then singletons).

  Attributes:
    custom_group: lists of mutable names and/or aliases that share a choice.
    unordered: what max/min subnets do with groups whose choices have no
      order (op candidates, routes): ``"error"`` (default) raises;
      ``"random"`` draws them from the key, so a space of ops and widths has
      max/min subnets (widest widths, largest values, random ops: the
      BigNAS sandwich over such a space).

  Example:
    >>> import jax, jax.numpy as jnp, flax.linen as nn
    >>> import jaxmutate as jm
    >>> class ValueMutator(jm.ModuleMutator):
    ...   mutable_class_type = jm.OneShotMutableValue
    >>> class Net(nn.Module):
    ...   @nn.compact
    ...   def __call__(self, x, choices):
    ...     x = x * jm.OneShotMutableValue([1, 2, 4], alias="ratio", name="r0")(choices)
    ...     return x * jm.OneShotMutableValue([1, 2, 4], alias="ratio", name="r1")(choices)
    >>> variables = Net().init(jax.random.key(0), jnp.ones(2), None)
    >>> mutator = ValueMutator().prepare_from_supernet(variables)
    >>> mutator.search_groups
    {0: ('r0', 'r1')}
    >>> group_choices = mutator.max_choices()
    >>> mutator.export_fix_subnet(group_choices)
    {'ratio': {'chosen': 4}}
    >>> Net().apply(variables, jnp.ones(2), mutator.set_choices(group_choices))
    Array([16., 16.], dtype=float32)
    >>> mutator.load_fix_subnet({"ratio": {"chosen": 2}})
    {0: Array(1, dtype=int32)}
  """

  custom_group: tuple[tuple[str, ...], ...] | None = flax.struct.field(pytree_node=False, default=None)
  specs: tuple[tuple[str, MutableSpec], ...] | None = flax.struct.field(pytree_node=False, default=None)
  groups: tuple[tuple[str, ...], ...] | None = flax.struct.field(pytree_node=False, default=None)
  unit_channels: tuple[tuple[str, UnitChannels], ...] | None = flax.struct.field(pytree_node=False, default=None)
  unordered: str = flax.struct.field(pytree_node=False, default="error")

  mutable_class_type: ClassVar[type | tuple[type, ...]]

  def __post_init__(self) -> None:
    object.__setattr__(self, "custom_group", normalize_custom_group(self.custom_group))
    if self.unordered not in ("error", "random"):
      raise ConfigError(f"{type(self).__name__}: unordered must be 'error' or 'random', got {self.unordered!r}.")
    if not hasattr(type(self), "mutable_class_type"):
      raise ConfigTypeError(f"{type(self).__name__} must define mutable_class_type (the mutables it manages).")

  # Preparation -----------------------------------------------------------

  def prepare_from_supernet(self, variables: Variables) -> ModuleMutator:
    """Finds this mutator's mutables in ``variables`` and builds search groups.

    Args:
      variables: the dict returned by ``model.init(key, x, None)`` (it must
        keep the ``mutables`` collection).

    Returns:
      A new, prepared mutator; ``self`` is unchanged.

    Raises:
      SearchSpaceError: no mutable of the managed type was found, or the
        grouping is invalid (see :func:`build_search_groups`).
    """
    found = collect_specs(variables)
    specs = tuple((name, spec) for name, spec in found if self._manages(spec))
    if not specs:
      managed = self._managed_types()
      present = sorted({spec.mutable_type.__name__ for _, spec in found})
      raise SearchSpaceError(
        f"{type(self).__name__} found no mutable of type {[m.__name__ for m in managed]} in the supernet "
        f"(it has {present or 'no mutables'})."
      )
    relations = relate_units(specs, collect_layer_channels(variables))
    display = {name: unit_display_name(name, spec, relations[name]) for name, spec in specs if name in relations}
    groups = build_search_groups(specs, _translate_unit_names(self.custom_group, display))
    return self.replace(specs=specs, groups=groups, unit_channels=tuple(relations.items()))

  def _managed_types(self) -> tuple[type, ...]:
    managed = self.mutable_class_type
    return managed if isinstance(managed, tuple) else (managed,)

  def _manages(self, spec: MutableSpec) -> bool:
    """Whether this mutator manages the mutable of ``spec`` (by default: its type is ``mutable_class_type``)."""
    return issubclass(spec.mutable_type, self._managed_types())

  def _require_prepared(self) -> tuple[tuple[str, ...], ...]:
    if self.groups is None:
      name = type(self).__name__
      raise NotPreparedError(
        f"{name} is not prepared: call {name}.prepare_from_supernet(variables) and keep the mutator it returns."
      )
    return self.groups

  @property
  def search_groups(self) -> dict[int, tuple[str, ...]]:
    """Group id → mutable names, ids counting from 0 in grouping order.

    Raises:
      NotPreparedError: (a ``RuntimeError``) before ``prepare_from_supernet``.
    """
    return dict(enumerate(self._require_prepared()))

  @property
  def name_to_spec(self) -> dict[str, MutableSpec]:
    """Mutable name → its :class:`MutableSpec`."""
    self._require_prepared()
    return dict(self.specs)

  def display_name(self, name: str) -> str:
    """The name subnet files use for mutable ``name``: MMRazor's unit name for a channel unit, else ``name``."""
    self._require_prepared()
    relations = dict(self.unit_channels or ())
    if name in relations:
      return unit_display_name(name, self.name_to_spec[name], relations[name])
    return name

  def group_spec(self, group: int) -> MutableSpec:
    """The spec shared by the mutables of ``group`` (its first member's)."""
    return self.name_to_spec[self.search_groups[group][0]]

  def group_space(self, group: int) -> SearchSpace:
    """The search space shared by the mutables of ``group``."""
    return self.group_spec(group).space

  def group_key(self, group: int) -> str:
    """A readable key for ``group``: its alias, or its first mutable's name."""
    spec = self.group_spec(group)
    return spec.alias if spec.alias is not None else self.display_name(self.search_groups[group][0])

  # Choices ---------------------------------------------------------------

  def _sample_group(self, group: int, key: PRNGKey, kind: str) -> jax.Array:
    space = self.group_space(group)
    if kind == "random" or (self.unordered == "random" and not space.ordered):
      return space.sample(key)
    try:
      return space.max() if kind == "max" else space.min()
    except SearchSpaceError as error:
      raise SearchSpaceError(
        f"sample_choices(kind={kind!r}): group {group} ({self.group_key(group)!r}): {error} Give the mutator "
        "unordered='random' to draw such groups at random in max/min subnets (a sandwich over ops and widths)."
      ) from None

  def sample_choices(self, key: PRNGKey, kind: str = "random") -> GroupChoices:
    """Draws one choice per search group.

    Keys: ``key`` is split into one key per group, in group order. Works under
    ``jit`` and ``vmap`` (over keys).

    Args:
      key: a PRNG key.
      kind: ``"random"`` (uniform, or ``choice_probs``), ``"max"`` or ``"min"``
        (only where every group's space is ordered, e.g. sorted values).

    Returns:
      ``{group id: int32 choice}``.

    Raises:
      ConfigError: an unknown ``kind``.
      SearchSpaceError: max/min for a group whose space has no order.
    """
    if kind not in ("random", "max", "min"):
      raise ConfigError(f"sample_choices: kind must be 'random', 'max' or 'min', got {kind!r}.")
    groups = self.search_groups
    keys = jax.random.split(key, len(groups))
    return {g: self._sample_group(g, keys[g], kind) for g in groups}

  def max_choices(self) -> GroupChoices:
    """The largest choice of every group (ordered spaces only, e.g. sorted values)."""
    return self.sample_choices(jax.random.key(0), kind="max")

  def min_choices(self) -> GroupChoices:
    """The smallest choice of every group (ordered spaces only, e.g. sorted values)."""
    return self.sample_choices(jax.random.key(0), kind="min")

  def check_group_choices(self, group_choices: Mapping[int, Any]) -> GroupChoices:
    """Validates group choices: every id present, none unknown, right shapes.

    Concrete choices are range-checked; traced ones are clipped into range
    (see :mod:`jaxmutate.spaces`).

    Raises:
      ChoiceTypeError: not a mapping, or a choice of the wrong dtype.
      MissingChoiceError: (a ``KeyError``) a group id is missing.
      ChoiceError: an unknown group id, or a choice of the wrong shape or, when
        concrete, out of range.
    """
    groups = self.search_groups
    if not isinstance(group_choices, Mapping):
      raise ChoiceTypeError(f"Group choices must be a dict of group id -> choice, got {type(group_choices).__name__}.")
    unknown = sorted((k for k in group_choices if k not in groups), key=str)
    if unknown:
      raise ChoiceError(f"Unknown search group id(s) {unknown}; this mutator has groups {sorted(groups)}.")
    missing = [g for g in groups if g not in group_choices]
    if missing:
      raise MissingChoiceError(
        f"Missing choice for search group {missing[0]} ({self.group_key(missing[0])!r}); "
        f"every group of {sorted(groups)} needs one."
      )
    checked = {}
    for g in groups:
      space = self.group_space(g)
      try:
        checked[g] = space.check(group_choices[g], f"group {g}")
      except ChoiceError as error:
        raise type(error)(f"{error} (group {self.group_key(g)!r}, search space {space.describe()})") from None
    return checked

  def set_choices(self, group_choices: Mapping[int, Any]) -> Choices:
    """Expands group choices into per-mutable choices (the subnet).

    Works under ``jit`` and ``vmap``.

    Args:
      group_choices: ``{group id: choice}`` for every group.

    Returns:
      ``{mutable name: choice}``, ready for ``model.apply(variables, x, choices)``.

    Raises:
      MissingChoiceError: a group id is missing. ChoiceError: an unknown id or
        a bad choice.
    """
    checked = self.check_group_choices(group_choices)
    choices = {}
    for group, names in self.search_groups.items():
      value = self.group_space(group).member_choice(checked[group])
      for name in names:
        choices[name] = value
    return choices

  # Subnet files ----------------------------------------------------------

  def _export_keys(self, group: int) -> list[str]:
    """The subnet-file keys of ``group``: the alias of every alias whose mutables
    all lie in this group, and the mutable name otherwise.

    An alias split over several groups (``custom_group`` listing some of its
    mutables by name) cannot be a key: each group would write the same key.
    """
    groups = self.search_groups
    group_of = {name: g for g, names in groups.items() for name in names}
    alias_groups: dict[str, set[int]] = {}
    for name, spec in self.specs:
      if spec.alias is not None:
        alias_groups.setdefault(spec.alias, set()).add(group_of[name])
    keys: list[str] = []
    for name in groups[group]:
      alias = self.name_to_spec[name].alias
      key = alias if alias is not None and alias_groups[alias] == {group} else self.display_name(name)
      if key not in keys:
        keys.append(key)
    return keys

  def _subnet_by_export_key(self, fix_subnet: Mapping[str, Any]) -> dict[str, Any]:
    """Renames entries keyed by a channel unit's mutable name to its file name (both are accepted)."""
    renamed: dict[str, Any] = {}
    for key, entry in fix_subnet.items():
      name = key
      if self.unit_channels and key in dict(self.unit_channels) and self.name_to_spec[key].alias is None:
        name = self.display_name(key)
        if name != key and name in fix_subnet:
          raise SubnetFileError(f"Subnet names unit {name!r} twice: as {name!r} and by its module path {key!r}.")
      renamed[name] = entry
    return renamed

  def export_fix_subnet(self, group_choices: Mapping[int, Any]) -> FixSubnet:
    """Writes a subnet in MMRazor's layout: ``{alias or name: {"chosen": v}}``.

    Ops give candidate names, values their value, routes a list of edge names.
    The result is plain Python (YAML/JSON-serialisable). Choices must be
    concrete (not traced).

    Raises:
      TracedChoiceError: (a ``TypeError``) a choice is traced (call outside ``jit``).
    """
    checked = self.check_group_choices(group_choices)
    for group in self.search_groups:
      if is_traced(checked[group]):
        raise TracedChoiceError(
          f"export_fix_subnet needs concrete choices, but group {group} ({self.group_key(group)!r}) is traced; "
          "call it outside jit/vmap."
        )
    routes = {g: self.group_space(g).derive(checked[g]) for g in self._route_groups()}
    unused = self._unused_groups(routes)
    fix_subnet: FixSubnet = {}
    for group in self.search_groups:
      if group in unused:
        continue
      chosen = self.group_space(group).export(checked[group])
      for key in self._export_keys(group):
        fix_subnet[key] = {"chosen": chosen}
    return fix_subnet

  # Routes: mutables inside edges a route does not keep ----------------------

  def _route_groups(self) -> list[int]:
    """Groups whose choice selects route edges (:class:`~jaxmutate.spaces.EdgeSubsetSpace`)."""
    return [g for g in self.search_groups if isinstance(self.group_space(g), EdgeSubsetSpace)]

  def _unused_groups(self, route_choices: Mapping[int, Any]) -> set[int]:
    """Groups all of whose mutables sit inside route edges that ``route_choices`` does not keep.

    A route's edge ``e`` is the module ``<route name>.<e>``; a mutable is unused when
    an enclosing route drops the edge holding it, or the enclosing route is unused
    itself. Fixing a route removes its other edges in MMRazor, so its subnet files
    omit these mutables; they leave the network's output unchanged.
    """
    groups = self.search_groups
    group_of = {name: g for g, names in groups.items() for name in names}
    edges = [
      (name, index, f"{name}.{edge}")
      for name, spec in self.specs
      if isinstance(spec.space, EdgeSubsetSpace)
      for index, edge in enumerate(spec.space.candidates)
    ]
    kept = {g: {int(i) for i in np.asarray(c).reshape(-1).tolist()} for g, c in route_choices.items()}
    enclosing = {
      name: [(route, index) for route, index, path in edges if name == path or name.startswith(path + ".")]
      for name in group_of
    }
    unused: set[str] = set()
    changed = True
    while changed:  # nested routes: an unused route makes everything in its edges unused
      changed = False
      for name, around in enclosing.items():
        if name in unused:
          continue
        if any(route in unused or index not in kept.get(group_of[route], {index}) for route, index in around):
          unused.add(name)
          changed = True
    return {g for g, names in groups.items() if all(name in unused for name in names)}

  def load_fix_subnet(
    self, fix_subnet: Mapping[str, Any] | str | Path, prefix: str = "", extra_prefix: str = ""
  ) -> GroupChoices:
    """Reads a subnet (a dict or a YAML/JSON file path) back into group choices.

    MMRazor writes the names of a classifier's backbone with a ``backbone.``
    prefix (``backbone.layers.0.0``); ``prefix`` is removed from the start of
    every key that has it (a real prefix, not MMRazor's ``str.lstrip``
    character set), then ``extra_prefix`` is prepended, as in MMRazor's
    ``load_fix_subnet``. When no key matches as written, the file is read
    the first of these ways under which every key matches: without a leading
    ``backbone.`` (the layout MMRazor's SPOS and DARTS files use for a bare
    backbone), or with MMRazor 0.x's ShuffleNet names (``stage_0_block_1`` is
    ``layers.0.1``). A file may be in any layout :func:`~jaxmutate.subnet.as_fix_subnet`
    reads (MMRazor 1.x, the plain ``{name: value}`` of older files,
    ``{chosen, meta}`` entries).

    A mutable inside a route edge the subnet does not keep needs no entry
    (MMRazor's DARTS files list only the kept edges' operations, because
    fixing a route removes its other edges); it gets a valid choice that
    does not change the network. A missing entry for a mutable that is
    used is an error.

    Example:
      >>> import jax, jax.numpy as jnp
      >>> import jaxmutate as jm
      >>> net = jm.SearchableMLP(num_classes=2, width=4, num_layers=1)
      >>> mutator = jm.OneShotModuleMutator().prepare_from_supernet(net.init(jax.random.key(0), jnp.ones((1, 3)), None))
      >>> fix_subnet = {"backbone.layers.0": {"chosen": mutator.group_space(0).names[0]}}
      >>> mutator.load_fix_subnet(fix_subnet) == mutator.load_fix_subnet(fix_subnet, prefix="backbone.")
      True

    Raises:
      SubnetFileTypeError: (a ``TypeError``) ``fix_subnet`` (or an entry of it)
        is not a mapping.
      SubnetEntryMissingError: (a ``KeyError``) an entry for some used
        mutable or alias is missing.
      SubnetFileError: (a ``ValueError``) an unknown entry, a value not among
        the candidates, or two entries of one group that disagree. Messages
        name the file when ``fix_subnet`` is a path.
    """
    from jaxmutate.subnet import read_fix_subnet

    where = "Subnet"
    if isinstance(fix_subnet, (str, Path)):
      where = f"Subnet file {str(fix_subnet)!r}"
      fix_subnet = read_fix_subnet(fix_subnet)
    if not isinstance(fix_subnet, Mapping):
      raise SubnetFileTypeError(
        f"load_fix_subnet expects a mapping of name -> {{'chosen': value}}, got {type(fix_subnet).__name__}."
      )
    expected = [key for group in self.search_groups for key in self._export_keys(group)]
    fix_subnet = _renamed(fix_subnet, prefix, extra_prefix)
    if not prefix and fix_subnet and not any(key in expected for key in fix_subnet):
      for rename in _FALLBACK_RENAMES:
        renamed = {rename(key): entry for key, entry in fix_subnet.items()}
        if all(key in expected for key in renamed):
          fix_subnet = renamed
          break
    fix_subnet = self._subnet_by_export_key(units_as_fix_subnet(fix_subnet))
    unknown = [key for key in fix_subnet if key not in expected]
    if unknown:
      hint = ""
      if len(unknown) == len(fix_subnet):
        hint = (
          " None of its keys names a mutable of this supernet, even after removing a leading 'backbone.' and "
          "reading MMRazor 0.x names: pass prefix=/extra_prefix= if the file was written for a model that nests "
          "this one differently."
        )
      raise SubnetFileError(f"{where} has unknown entries {unknown}; expected keys {expected}.{hint}")
    group_choices: GroupChoices = {}
    missing: dict[int, str] = {}
    for group in self.search_groups:
      space = self.group_space(group)
      values = []
      for key in self._export_keys(group):
        if key not in fix_subnet:
          missing.setdefault(group, key)
          continue
        entry = fix_subnet[key]
        if not isinstance(entry, Mapping) or "chosen" not in entry:
          raise SubnetFileTypeError(f"{where} entry {key!r} must be a mapping with a 'chosen' key, got {entry!r}.")
        try:
          values.append((key, space.load(entry["chosen"], key)))
        except SubnetFileError as error:
          raise type(error)(str(error) if where == "Subnet" else f"{where}: {error}") from None
      if not values:
        continue
      first_key, first = values[0]
      for key, value in values[1:]:
        if not bool(jnp.all(value == first)):
          raise SubnetFileError(f"{where} entries {first_key!r} and {key!r} share search group {group} but disagree.")
      group_choices[group] = first
    if missing:
      routes = {g: c for g, c in group_choices.items() if g in self._route_groups()}
      unused = self._unused_groups(routes)
      for group, key in missing.items():
        if group not in unused:
          raise SubnetEntryMissingError(f"{where} has no entry for {key!r} (search group {group}).")
        # Any valid choice: nothing of it runs, because its route edge is not kept.
        group_choices.setdefault(group, self.group_space(group).sample(jax.random.key(0)))
    return {group: group_choices[group] for group in self.search_groups}


def _translate_unit_names(
  custom_group: tuple[tuple[str, ...], ...] | None, display: Mapping[str, str]
) -> tuple[tuple[str, ...], ...] | None:
  """Lets ``custom_group`` name channel units by their MMRazor names as well as their module paths."""
  if custom_group is None:
    return None
  by_display = {shown: name for name, shown in display.items() if shown != name}
  return tuple(tuple(by_display.get(key, key) for key in entry) for entry in custom_group)


def _mmrazor0_name(key: str, root: str) -> str:
  """MMRazor 0.x's ShuffleNet names (``stage_0_block_1``) as module paths (``layers.0.1``)."""
  match = re.fullmatch(r"(?:backbone\.)?stage_(\d+)_block_(\d+)", key)
  return f"{root}layers.{match.group(1)}.{match.group(2)}" if match else key


_FALLBACK_RENAMES = (
  lambda key: key.removeprefix("backbone."),
  lambda key: _mmrazor0_name(key, ""),
  lambda key: _mmrazor0_name(key, "backbone."),
)
"""Readings of a subnet file tried in turn when none of its keys matches as written."""


def _renamed(fix_subnet: Mapping[str, Any], prefix: str, extra_prefix: str) -> dict[str, Any]:
  """Keys with ``prefix`` removed where they start with it, then ``extra_prefix`` prepended."""
  if not isinstance(prefix, str) or not isinstance(extra_prefix, str):
    raise ConfigTypeError(
      f"load_fix_subnet: prefix and extra_prefix must be strings, got {prefix!r}, {extra_prefix!r}."
    )
  if not prefix and not extra_prefix:
    return dict(fix_subnet)
  return {
    extra_prefix + (str(k)[len(prefix) :] if prefix and str(k).startswith(prefix) else str(k)): v
    for k, v in fix_subnet.items()
  }
