"""Search groups: which mutables share one choice (MMRazor's three passes)."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any

from jaxmutate.errors import ConfigError, ConfigTypeError, SearchSpaceError
from jaxmutate.mutables import MUTABLES_COLLECTION, MutableSpec


def normalize_custom_group(custom_group: Any) -> tuple[tuple[str, ...], ...] | None:
  """Checks ``custom_group`` is a list of lists of names and freezes it.

  Example:
    >>> normalize_custom_group([["block1", "block2"], ["expand"]])
    (('block1', 'block2'), ('expand',))
  """
  if custom_group is None:
    return None
  if isinstance(custom_group, (str, bytes)) or not isinstance(custom_group, Sequence):
    raise ConfigTypeError(f"custom_group must be a list of lists of mutable names or aliases, got {custom_group!r}.")
  frozen = []
  for position, entry in enumerate(custom_group):
    if isinstance(entry, (str, bytes)) or not isinstance(entry, Sequence):
      raise ConfigTypeError(f"custom_group[{position}] must be a list of mutable names or aliases, got {entry!r}.")
    if not entry:
      raise ConfigError(f"custom_group[{position}] is empty; every group needs at least one name or alias.")
    for key in entry:
      if not isinstance(key, str):
        raise ConfigTypeError(f"custom_group[{position}] holds {key!r}; names and aliases are strings.")
    frozen.append(tuple(entry))
  return tuple(frozen)


def collect_specs(variables: Mapping[str, Any]) -> list[tuple[str, MutableSpec]]:
  """Finds every mutable's spec in a variable tree, in definition order.

  Raises:
    TypeError: ``variables`` is not a mapping.
    ValueError: the tree has no ``mutables`` collection (it was not made by
      ``init`` of a supernet, or the collection was dropped).
  """
  if not isinstance(variables, Mapping):
    raise ConfigTypeError(
      f"prepare_from_supernet expects the variable dict from model.init, got {type(variables).__name__}."
    )
  if MUTABLES_COLLECTION not in variables:
    raise SearchSpaceError(
      f"The variables have no {MUTABLES_COLLECTION!r} collection (collections: {sorted(variables)}). "
      "Pass the whole dict returned by model.init(...), not only variables['params']."
    )
  found: list[tuple[str, MutableSpec]] = []

  def walk(node: Any, path: tuple[str, ...]) -> None:
    if isinstance(node, MutableSpec):
      found.append((".".join(path[:-1]), node))
    elif isinstance(node, Mapping):
      for key, value in node.items():
        walk(value, path + (str(key),))

  walk(variables[MUTABLES_COLLECTION], ())
  found.sort(key=lambda item: item[1].order)
  return found


def build_search_groups(
  specs: Sequence[tuple[str, MutableSpec]],
  custom_group: tuple[tuple[str, ...], ...] | None,
) -> tuple[tuple[str, ...], ...]:
  """Groups mutables: custom groups, then aliases, then singletons.

  Args:
    specs: ``(mutable name, spec)`` pairs in definition order.
    custom_group: entries of mutable names and/or aliases (an alias stands for
      all its mutables).

  Returns:
    The groups in id order, each a tuple of mutable names.

  Raises:
    ValueError: a key matching no mutable name or alias (the message lists
      them); an alias used together with one of its own mutables' names; a
      mutable landing in two groups; a group whose mutables have different
      search spaces.

  Example:
    >>> import jax, jax.numpy as jnp
    >>> import jaxmutate as jm
    >>> net = jm.SearchableMLP(num_classes=2, width=4, num_layers=3)
    >>> specs = collect_specs(net.init(jax.random.key(0), jnp.ones((1, 3)), None))
    >>> build_search_groups(specs, (("layers.0", "layers.2"),))
    (('layers.0', 'layers.2'), ('layers.1',))
  """
  names = [name for name, _ in specs]
  spec_of = dict(specs)
  alias_members: dict[str, list[str]] = {}
  for name, spec in specs:
    if spec.alias is not None:
      alias_members.setdefault(spec.alias, []).append(name)

  groups: list[tuple[str, ...]] = []
  grouped: dict[str, int] = {}
  used_aliases: set[str] = set()

  def add(group: list[str], source: str) -> None:
    for position, name in enumerate(group):
      if name in group[:position]:
        raise SearchSpaceError(
          f"Mutable {name!r} is listed twice in search group {len(groups)} (from {source}); "
          "each mutable may be listed once in custom_group, by name or through its alias."
        )
      if name in grouped:
        raise SearchSpaceError(
          f"Mutable {name!r} lands in two search groups ({grouped[name]} and {len(groups)}, from {source}); "
          "each mutable may be listed once in custom_group, by name or through its alias."
        )
    for name in group:
      grouped[name] = len(groups)
    groups.append(tuple(group))

  listed_aliases = {key for entry in (custom_group or ()) for key in entry if key in alias_members}
  listed_names = {key for entry in (custom_group or ()) for key in entry if key in spec_of and key not in alias_members}
  for alias in sorted(listed_aliases):
    mixed = sorted(set(alias_members[alias]) & listed_names)
    if mixed:
      raise SearchSpaceError(
        f"custom_group uses alias {alias!r} and also its mutable name(s) {mixed}; "
        "use either the alias or the names of its mutables, not both."
      )

  for position, entry in enumerate(custom_group or ()):
    members: list[str] = []
    for key in entry:
      if key in alias_members:
        used_aliases.add(key)
        members.extend(alias_members[key])
      elif key in spec_of:
        members.append(key)
      else:
        raise SearchSpaceError(
          f"custom_group[{position}] key {key!r} matches no mutable name or alias. "
          f"Mutable names: {names}; aliases: {sorted(alias_members)}."
        )
    add(members, f"custom_group[{position}]")

  for alias, members in alias_members.items():
    if alias in used_aliases:
      continue
    remaining = [name for name in members if name not in grouped]
    if remaining:
      add(remaining, f"alias {alias!r}")

  for name in names:
    if name not in grouped:
      add([name], "singletons")

  for group_id, group in enumerate(groups):
    first = spec_of[group[0]]
    for name in group[1:]:
      if spec_of[name].space != first.space:
        raise SearchSpaceError(
          f"Search group {group_id} mixes mutables with different search spaces: {group[0]!r} "
          f"({first.describe()}) and {name!r} ({spec_of[name].describe()}); "
          "only mutables with equal search spaces can share a choice."
        )
  return tuple(groups)
