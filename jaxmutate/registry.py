"""A registry of buildable classes and the config layer on top of it.

Configs are plain Python dicts in MMRazor's layout: ``dict(type="Name", **kwargs)``.
:func:`build` looks ``type`` up in a :class:`Registry` (``MODELS`` by default),
builds nested config dicts first and passes the rest as keyword arguments.
:func:`load_config` reads config files written for mmengine/MMRazor: ``_base_``
inheritance, ``_delete_``, ``{{_base_.x}}`` and ``_base_.x`` references,
``_scope_`` and ``custom_imports``.

Two registries live here: ``MODELS`` (mutables, mutators, supernets,
algorithms, search loops) and ``DATASETS`` (the data set builders of
:mod:`jaxmutate.data` and user ones).

Example:
  >>> import jaxmutate as jm
  >>> mutator = jm.build(dict(type="jaxmutate.OneShotModuleMutator"))
  >>> type(mutator).__name__
  'OneShotModuleMutator'
"""

from __future__ import annotations

import ast
import copy
import difflib
import importlib
import os
import re
import types
import uuid
import warnings
from collections.abc import Callable, Mapping, Sequence
from pathlib import Path
from typing import Any, TypeVar

from jaxmutate.errors import ConfigError, ConfigKeyError, ConfigTypeError, JaxMutateError, UnknownTypeError

SCOPE = "jaxmutate"
BASE_KEY = "_base_"
DELETE_KEY = "_delete_"
SCOPE_KEY = "_scope_"

_T = TypeVar("_T")

# Scopes (``type="scope.Name"``, ``"scope::Name"``, ``_scope_="scope"``) that
# resolve in jaxmutate's registries besides jaxmutate's own; other projects'
# compatibility modules add theirs with register_scope.
_FOREIGN_SCOPES: set[str] = set()


def register_scope(scope: str) -> None:
  """Makes ``scope`` a known scope: its prefix is accepted in ``type`` and ``_scope_``.

  A known scope's prefix (``"scope.Name"`` or ``"scope::Name"``) is stripped
  before the lookup, so the name resolves among jaxmutate's entries and aliases
  (see :meth:`Registry.register_alias`).

  Args:
    scope: the scope's name, e.g. ``"mmrazor"``.

  Raises:
    ValueError: ``scope`` is empty or holds ``.``/``:``.

  Example:
    >>> from jaxmutate.registry import MODELS, known_scopes, register_scope
    >>> register_scope("myproject")
    >>> "myproject" in known_scopes() and MODELS.get("myproject.NasMutator") is MODELS.get("NasMutator")
    True
  """
  if not isinstance(scope, str) or not scope or "." in scope or ":" in scope:
    raise ConfigError(f"A scope is a non-empty name without '.' or ':', got {scope!r}.")
  _FOREIGN_SCOPES.add(scope)


def known_scopes() -> tuple[str, ...]:
  """The scopes whose prefixes resolve in jaxmutate's registries, ``"jaxmutate"`` first.

  Example:
    >>> from jaxmutate.registry import known_scopes
    >>> known_scopes()[0]
    'jaxmutate'
  """
  return (SCOPE, *sorted(_FOREIGN_SCOPES))


def split_scope(name: str) -> tuple[str | None, str]:
  """Splits ``"scope.Name"`` or ``"scope::Name"`` into ``(scope, "Name")``.

  A name without a prefix gives ``(None, name)``. The prefix is returned
  whether or not the scope is known.

  Raises:
    ConfigTypeError: ``name`` is not a string.

  Example:
    >>> from jaxmutate.registry import split_scope
    >>> split_scope("mmrazor::SPOS"), split_scope("mmcls.ImageClassifier"), split_scope("SPOS")
    (('mmrazor', 'SPOS'), ('mmcls', 'ImageClassifier'), (None, 'SPOS'))
  """
  if not isinstance(name, str):
    raise ConfigTypeError(f"A registry type must be a string, got {name!r}.")
  if "::" in name:
    scope, _, rest = name.partition("::")
    return scope, rest
  if "." in name:
    scope, _, rest = name.rpartition(".")
    return scope, rest
  return None, name


class Registry:
  """Maps names to classes or factory functions.

  Besides entries, a registry holds *aliases* (other projects' names for an
  entry, e.g. MMRazor's ``Darts`` for ``DARTS``) and *unsupported* names (known
  types with no equivalent, whose lookup raises with the reason).

  Attributes:
    name: what the registry holds, used in error messages.

  Example:
    >>> from jaxmutate.registry import Registry
    >>> LAYERS = Registry("layers")
    >>> @LAYERS.register_module()
    ... class Doubler:
    ...   def __init__(self, factor=2):
    ...     self.factor = factor
    >>> LAYERS.build(dict(type="Doubler", factor=3)).factor
    3
  """

  def __init__(self, name: str):
    self.name = name
    self._entries: dict[str, Callable[..., Any]] = {}
    self._aliases: dict[str, str] = {}
    self._unsupported: dict[str, str] = {}

  def __contains__(self, name: str) -> bool:
    try:
      self.get(name)
    except (KeyError, TypeError):
      return False
    return True

  def __len__(self) -> int:
    return len(self._entries)

  def __repr__(self) -> str:
    return f"Registry(name={self.name!r}, entries={sorted(self._entries)})"

  @property
  def names(self) -> tuple[str, ...]:
    """Every registered name, sorted (aliases not included)."""
    return tuple(sorted(self._entries))

  @property
  def aliases(self) -> dict[str, str]:
    """A copy of the alias table: alias → registered name."""
    return dict(self._aliases)

  def register_module(
    self,
    name: str | None = None,
    force: bool = False,
    module: Callable[..., Any] | None = None,
  ) -> Any:
    """Registers a class or function, as a decorator or directly.

    Args:
      name: the name to register under; defaults to ``module.__name__``.
      force: replace an existing entry of the same name instead of raising.
      module: register this object now instead of returning a decorator.

    Returns:
      ``module`` when given, else a decorator that registers and returns its
      argument.

    Raises:
      KeyError: the name is taken and ``force`` is false.
      TypeError: ``module`` is not callable, or ``name`` is not a string (as
        when the decorator is written without parentheses).

    Example:
      >>> from jaxmutate.registry import Registry
      >>> things = Registry("things")
      >>> things.register_module(name="Pair", module=tuple) is tuple
      True
    """
    if name is not None and not isinstance(name, str):
      raise ConfigTypeError(
        f"register_module(name=...) takes a string or None, got {name!r}; "
        "write the decorator with parentheses: @REGISTRY.register_module()."
      )

    def register(obj: _T) -> _T:
      if not callable(obj):
        raise ConfigTypeError(f"Registry {self.name!r} can only register classes or functions, got {obj!r}.")
      key = _strip_scope(name or obj.__name__)
      if key in self._entries and not force and self._entries[key] is not obj:
        raise ConfigKeyError(
          f"{key!r} is already registered in {self.name!r} (as {self._entries[key]!r}); pass force=True to replace it."
        )
      self._entries[key] = obj
      return obj

    if module is not None:
      return register(module)
    return register

  def register_alias(self, alias: str, target: str, force: bool = False) -> None:
    """Makes ``alias`` resolve to the entry registered as ``target``.

    The target is looked up when the alias is used, so it may be registered
    later (e.g. by a module a config imports).

    Args:
      alias: the other name, e.g. ``"Darts"``.
      target: the registered name, e.g. ``"DARTS"``.
      force: replace an existing alias.

    Raises:
      KeyError: ``alias`` is already an entry or (without ``force``) an alias
        of something else.

    Example:
      >>> from jaxmutate.registry import Registry
      >>> things = Registry("things")
      >>> _ = things.register_module(name="Pair", module=tuple)
      >>> things.register_alias("Couple", "Pair")
      >>> things.get("Couple") is tuple
      True
    """
    alias, target = _strip_scope(alias), _strip_scope(target)
    if alias in self._entries:
      raise ConfigKeyError(f"{alias!r} is registered in {self.name!r}; it cannot also be an alias (of {target!r}).")
    if alias in self._aliases and self._aliases[alias] != target and not force:
      raise ConfigKeyError(
        f"{alias!r} is already an alias of {self._aliases[alias]!r} in {self.name!r}; pass force=True to replace it."
      )
    self._unsupported.pop(alias, None)
    self._aliases[alias] = target

  def register_unsupported(self, name: str, reason: str) -> None:
    """Records a type known to have no equivalent; looking it up raises with ``reason``.

    A later registration of ``name`` takes precedence.

    Example:
      >>> from jaxmutate.registry import Registry
      >>> things = Registry("things")
      >>> things.register_unsupported("Hook", "hooks are runner plumbing")
      >>> try:
      ...   things.get("Hook")
      ... except KeyError as error:
      ...   print(error)
      'Hook' has no equivalent in 'things': hooks are runner plumbing.
    """
    self._unsupported[_strip_scope(name)] = str(reason)

  def unsupported_reason(self, name: str) -> str | None:
    """Why ``name`` (scope prefix allowed) has no equivalent, or ``None``.

    Example:
      >>> from jaxmutate.registry import Registry
      >>> Registry("things").unsupported_reason("Anything") is None
      True
    """
    _, key = split_scope(name)
    if key in self._entries or key in self._aliases:
      return None
    return self._unsupported.get(key)

  def resolve_name(self, name: str) -> str:
    """The registered name that ``name`` (prefixed or an alias) stands for.

    Raises:
      UnknownTypeError: as :meth:`get`.

    Example:
      >>> import jaxmutate as jm
      >>> jm.MODELS.resolve_name("jaxmutate.NasMutator")
      'NasMutator'
    """
    scope, key = split_scope(name)
    if scope is not None and scope not in known_scopes():
      raise UnknownTypeError(
        f"{name!r}: {scope!r} is not a known scope in {self.name!r} (known: {list(known_scopes())}); "
        "import its compatibility module (e.g. jaxmutate.mmrazor_compat) or drop the prefix."
      )
    seen = [key]
    while key not in self._entries and key in self._aliases:
      key = self._aliases[key]
      if key in seen:
        raise UnknownTypeError(f"{name!r}: the aliases of {self.name!r} form a cycle {seen + [key]}.")
      seen.append(key)
    if key in self._entries:
      return key
    reason = self._unsupported.get(seen[0])
    if reason is not None:
      raise UnknownTypeError(f"{name!r} has no equivalent in {self.name!r}: {reason}.")
    known = list(self._entries) + list(self._aliases)
    close = difflib.get_close_matches(seen[0], known, n=5, cutoff=0.5)
    hint = f" Did you mean one of {close}?" if close else ""
    via = f" (an alias of {key!r}, which is not registered)" if len(seen) > 1 else ""
    raise UnknownTypeError(
      f"{name!r} is not registered in {self.name!r}{via}.{hint} Known names: {sorted(self._entries)}."
    )

  def get(self, name: str) -> Callable[..., Any]:
    """Returns the entry registered as ``name`` (scope prefix and aliases allowed).

    Raises:
      UnknownTypeError: (a ``KeyError``) nothing is registered under that
        name, the name is marked unsupported (the message says why), or its
        scope prefix is unknown; the message lists close matches.
      ConfigTypeError: ``name`` is not a string.

    Example:
      >>> import jaxmutate as jm
      >>> jm.MODELS.get("NasMutator") is jm.NasMutator
      True
    """
    return self._entries[self.resolve_name(name)]

  def build(self, cfg: Mapping[str, Any], **default_args: Any) -> Any:
    """Builds ``cfg`` with this registry; see :func:`build`.

    Example:
      >>> import jaxmutate as jm
      >>> type(jm.MODELS.build(dict(type="NasMutator"))).__name__
      'NasMutator'
    """
    return build(cfg, registry=self, **default_args)


def check_config_keys(cfg: Mapping[str, Any], allowed: Sequence[str], where: str) -> None:
  """Rejects keys of ``cfg`` that are not in ``allowed``, naming them and their close matches.

  Raises:
    ConfigKeyError: (a ``KeyError``) an unknown key.

  Example:
    >>> from jaxmutate.registry import check_config_keys
    >>> check_config_keys({"type": "X", "defualt_args": {}}, ("type", "default_args", "units"), "channel_unit_cfg")
    Traceback (most recent call last):
    ...
    jaxmutate.errors.ConfigKeyError: channel_unit_cfg: unknown key 'defualt_args' (did you mean 'default_args'?); expected keys: ['default_args', 'type', 'units'].
  """
  for key in cfg:
    if key not in allowed:
      close = difflib.get_close_matches(str(key), [str(a) for a in allowed], n=3, cutoff=0.6)
      hint = f" (did you mean {' or '.join(repr(c) for c in close)}?)" if close else ""
      raise ConfigKeyError(f"{where}: unknown key {key!r}{hint}; expected keys: {sorted(allowed)}.")


def _strip_scope(name: str) -> str:
  if not isinstance(name, str):
    raise ConfigTypeError(f"A registry type must be a string, got {name!r}.")
  prefix = SCOPE + "."
  return name[len(prefix) :] if name.startswith(prefix) else name


MODELS = Registry("models")
DATASETS = Registry("datasets")


def import_modules(imports: Sequence[str] | str, allow_failed_imports: bool = False) -> None:
  """Imports modules so that their ``register_module`` calls run.

  Args:
    imports: module names, e.g. ``["my_project.ops"]``.
    allow_failed_imports: when true, a module that fails to import is skipped
      with a warning instead of raising.

  Raises:
    ImportError: a module failed to import and failures are not allowed.
    TypeError: ``imports`` is not a string or a list of strings.

  Example:
    >>> from jaxmutate.registry import import_modules
    >>> import sys
    >>> import_modules(["json"])
    >>> "json" in sys.modules
    True
  """
  if isinstance(imports, str):
    imports = [imports]
  if not isinstance(imports, Sequence) or not all(isinstance(i, str) for i in imports):
    raise ConfigTypeError(f"custom_imports['imports'] must be a list of module names, got {imports!r}.")
  for module_name in imports:
    try:
      importlib.import_module(module_name)
    except ImportError as error:
      if not allow_failed_imports:
        raise ImportError(
          f"custom_imports could not import {module_name!r}: {error}. Pass "
          "allow_failed_imports=True to skip modules that fail to import."
        ) from error
      warnings.warn(f"custom_imports skipped {module_name!r}: {error}", stacklevel=2)


def apply_custom_imports(custom_imports: Any, where: str = "") -> None:
  """Checks a ``custom_imports`` entry and imports its modules.

  Args:
    custom_imports: ``dict(imports=[...], allow_failed_imports=False)``.
    where: a prefix for error messages (e.g. the config file).

  Raises:
    TypeError: not a dict with ``imports``, or ``imports`` not module names.
    KeyError: unknown keys beside ``imports`` and ``allow_failed_imports``.
    ImportError: a module failed to import and failures are not allowed.

  Example:
    >>> from jaxmutate.registry import apply_custom_imports
    >>> apply_custom_imports(dict(imports=["json"], allow_failed_imports=False))
  """
  if not isinstance(custom_imports, Mapping) or "imports" not in custom_imports:
    raise ConfigTypeError(
      f"{where}custom_imports must be dict(imports=[...], allow_failed_imports=False), got {custom_imports!r}."
    )
  unknown = set(custom_imports) - {"imports", "allow_failed_imports"}
  if unknown:
    raise ConfigKeyError(
      f"{where}custom_imports has unknown keys {sorted(unknown)}; expected 'imports' and 'allow_failed_imports'."
    )
  try:
    import_modules(custom_imports["imports"], bool(custom_imports.get("allow_failed_imports", False)))
  except (ImportError, TypeError) as error:
    if not where:
      raise
    raise type(error)(f"{where}{error}") from error


def _handle_custom_imports(cfg: dict[str, Any]) -> None:
  custom_imports = cfg.pop("custom_imports", None)
  if custom_imports is not None:
    apply_custom_imports(custom_imports)


def _check_scope(cfg: dict[str, Any]) -> None:
  # Every known scope resolves in the same registries, so the scope only has
  # to be valid; it does not change the lookup.
  scope = cfg.pop(SCOPE_KEY, None)
  if scope is None:
    return
  if not isinstance(scope, str):
    raise ConfigTypeError(f"_scope_ must be a string naming a scope, got {scope!r}.")
  if scope not in known_scopes():
    raise ConfigError(
      f"_scope_={scope!r} is not a known scope (known: {list(known_scopes())}); import its "
      "compatibility module (e.g. jaxmutate.mmrazor_compat for 'mmrazor' and 'mmcls') or drop it."
    )


def _build_nested(value: Any, registry: Registry) -> Any:
  if isinstance(value, Mapping) and "type" in value:
    return build(value, registry=registry)
  if isinstance(value, Mapping):
    return {k: _build_nested(v, registry) for k, v in value.items()}
  if isinstance(value, list):
    return [_build_nested(v, registry) for v in value]
  if isinstance(value, tuple):
    return tuple(_build_nested(v, registry) for v in value)
  return value


def build(cfg: Mapping[str, Any], registry: Registry | None = None, **default_args: Any) -> Any:
  """Builds an object from a config dict.

  ``cfg["type"]`` names a registered class or function (``"Name"``,
  ``"jaxmutate.Name"``, a known scope's ``"scope.Name"``/``"scope::Name"``, or
  an alias); every other key is passed as a keyword argument. Values that are
  themselves config dicts (with a ``type``), also inside lists, tuples and plain
  dicts, are built first, except the arguments a class lists in its
  ``RAW_CONFIG_ARGS`` (it builds those itself). A ``custom_imports`` entry imports user modules before
  anything is looked up, so their registrations count; a ``_scope_`` entry must
  name a known scope and is not passed on.

  Args:
    cfg: the config dict. It is not modified.
    registry: where to look types up; ``MODELS`` by default.
    **default_args: keyword arguments used where ``cfg`` does not set them.

  Returns:
    The built object.

  Raises:
    TypeError: ``cfg`` is not a mapping (a ``ConfigTypeError``).
    KeyError: ``cfg`` has no ``type``, or the type is not registered (an
      ``UnknownTypeError``, whose message lists close matches).
    ConfigError: ``_scope_`` names an unknown scope.

  Example:
    >>> import jaxmutate as jm
    >>> jm.build(dict(type="OneShotModuleMutator", custom_group=[["a", "b"]])).custom_group
    (('a', 'b'),)
  """
  registry = MODELS if registry is None else registry
  if not isinstance(cfg, Mapping):
    raise ConfigTypeError(f"A config must be a dict with a 'type' key, got {type(cfg).__name__}: {cfg!r}.")
  cfg = dict(copy.deepcopy(dict(cfg)))
  _handle_custom_imports(cfg)
  _check_scope(cfg)
  if "type" not in cfg:
    raise ConfigKeyError(f"A config needs a 'type' key naming what to build; got keys {sorted(cfg)}.")
  obj_type = cfg.pop("type")
  target = obj_type if callable(obj_type) else registry.get(obj_type)
  # A class that builds some of its arguments itself (e.g. a channel mutator's
  # channel_unit_cfg, whose unit type needs per-unit arguments) lists them in
  # RAW_CONFIG_ARGS; those are passed as written.
  raw = getattr(target, "RAW_CONFIG_ARGS", ())
  kwargs = {k: v if k in raw else _build_nested(v, registry) for k, v in cfg.items()}
  for key, value in default_args.items():
    kwargs.setdefault(key, value)
  try:
    return target(**kwargs)
  except TypeError as error:
    if isinstance(error, JaxMutateError):
      raise  # already names what is wrong
    raise ConfigTypeError(f"Building {obj_type!r} with arguments {sorted(kwargs)} failed: {error}") from error


# Config files -----------------------------------------------------------------------


def merge_config(base: Mapping[str, Any], override: Mapping[str, Any]) -> dict[str, Any]:
  """Merges ``override`` into ``base`` as mmengine merges a config into its bases.

  Keys of ``override`` win; where both values are dicts they merge recursively,
  unless the overriding dict holds ``_delete_=True``, which replaces the base
  value instead. ``_delete_`` keys never reach the result. Lists and other
  values are replaced whole. Neither input is modified.

  Args:
    base: the inherited config.
    override: the config that inherits.

  Returns:
    The merged config (new dicts; leaves are shared with the inputs).

  Raises:
    ConfigTypeError: a dict overrides a value that is not a dict without
      ``_delete_=True`` (the message names the dotted key).

  Example:
    >>> from jaxmutate.registry import merge_config
    >>> base = dict(model=dict(type="SPOS", mutator=dict(type="NasMutator")), epochs=3)
    >>> merge_config(base, dict(model=dict(mutator=dict(_delete_=True, type="OneShotModuleMutator")), epochs=5))
    {'model': {'type': 'SPOS', 'mutator': {'type': 'OneShotModuleMutator'}}, 'epochs': 5}
  """
  return _merge(base, override, "")


def _merge(base: Mapping[str, Any], override: Mapping[str, Any], where: str) -> dict[str, Any]:
  result = {k: v for k, v in base.items() if k != DELETE_KEY}
  for key, value in override.items():
    if key == DELETE_KEY:
      continue
    if isinstance(value, Mapping):
      replace = bool(value.get(DELETE_KEY, False))
      if key in result and not replace:
        if not isinstance(result[key], Mapping):
          raise ConfigTypeError(
            f"{where}{key} is a dict in the inheriting config but a {type(result[key]).__name__} "
            f"({result[key]!r}) in its base; set {DELETE_KEY}=True in the dict to replace the base value."
          )
        result[key] = _merge(result[key], value, f"{where}{key}.")
      else:
        result[key] = _strip_delete(value)
    else:
      result[key] = value
  return result


def _strip_delete(value: Any) -> Any:
  if isinstance(value, Mapping):
    return {k: _strip_delete(v) for k, v in value.items() if k != DELETE_KEY}
  if isinstance(value, list):
    return [_strip_delete(v) for v in value]
  if isinstance(value, tuple):
    return tuple(_strip_delete(v) for v in value)
  return value


class _BaseView(dict):
  """The ``_base_`` a config file sees: the merged bases, keys readable as attributes.

  Like mmengine's ``ConfigDict``, assignments (``_base_.model = ...``) write to
  the bases, so the file's result inherits them.
  """

  __slots__ = ("_jm_where",)

  def __init__(self, items: Mapping[str, Any] = (), where: str = ""):
    super().__init__()
    object.__setattr__(self, "_jm_where", where)
    for key, value in dict(items).items():
      self[key] = value

  def _child(self, key: Any) -> str:
    return f"{self._jm_where}.{key}" if self._jm_where else str(key)

  def __setitem__(self, key: Any, value: Any) -> None:
    super().__setitem__(key, _to_view(value, self._child(key)))

  def __getattr__(self, name: str) -> Any:
    if name.startswith("__") and name.endswith("__"):
      raise AttributeError(name)
    try:
      return self[name]
    except KeyError:
      error = AttributeError(f"_base_.{self._child(name)} is not in the bases")
      error._jm_missing = (self, name)  # type: ignore[attr-defined]
      raise error from None

  def __setattr__(self, name: str, value: Any) -> None:
    self[name] = value

  def __delattr__(self, name: str) -> None:
    try:
      del self[name]
    except KeyError:
      raise AttributeError(name) from None

  def __missing__(self, key: Any) -> Any:
    error = KeyError(key)
    error._jm_missing = (self, key)  # type: ignore[attr-defined]
    raise error

  def __deepcopy__(self, memo: dict[int, Any]) -> _BaseView:
    return _BaseView({k: copy.deepcopy(v, memo) for k, v in self.items()}, self._jm_where)

  def update(self, *args: Any, **kwargs: Any) -> None:
    for key, value in dict(*args, **kwargs).items():
      self[key] = value


def _to_view(value: Any, where: str) -> Any:
  # An existing view is kept, not copied: like mmengine's ConfigDict, two keys
  # that were assigned the same base dict share it within one file.
  if isinstance(value, _BaseView):
    return value
  if isinstance(value, Mapping):
    return _BaseView(value, where)
  if isinstance(value, list):
    return [_to_view(v, f"{where}.{i}") for i, v in enumerate(value)]
  if isinstance(value, tuple):
    return tuple(_to_view(v, f"{where}.{i}") for i, v in enumerate(value))
  return value


def _to_plain(value: Any) -> Any:
  # Rebuilds every container, so entries that were shared through _base_
  # references are independent in the result.
  if isinstance(value, Mapping):
    return {k: _to_plain(v) for k, v in value.items()}
  if isinstance(value, list):
    return [_to_plain(v) for v in value]
  if isinstance(value, tuple):
    return tuple(_to_plain(v) for v in value)
  return value


_BASE_REF = re.compile(r"\{\{\s*" + BASE_KEY + r"\.([\w.]+)\s*\}\}")
_PREDEFINED = re.compile(r"\{\{\s*(fileDirname|fileBasename|fileBasenameNoExtension|fileExtname)\s*\}\}")
_ENV_VAR = re.compile(r"\{\{['\"]?\s*\$(\w+)\s*:\s*(\S*?)\s*['\"]?\}\}")


def _substitute_text(text: str, path: Path) -> tuple[str, dict[str, str]]:
  """mmengine's text substitutions: file variables, environment variables, base references."""
  file_vars = dict(
    fileDirname=str(path.parent).replace("\\", "/"),
    fileBasename=path.name,
    fileBasenameNoExtension=path.stem,
    fileExtname=path.suffix,
  )
  text = _PREDEFINED.sub(lambda m: file_vars[m.group(1)], text)

  def env(match: re.Match[str]) -> str:
    name, default = match.group(1), match.group(2)
    value = os.environ.get(name, default)
    if not value:
      raise ConfigError(
        f"Config file {str(path)!r}: the environment variable {name!r} ({match.group(0)}) is not set "
        "and has no default; set it or write {{$" + name + ":default}}."
      )
    return value

  text = _ENV_VAR.sub(env, text)
  placeholders: dict[str, str] = {}
  token = uuid.uuid4().hex[:8]

  def base_ref(match: re.Match[str]) -> str:
    # mmengine's scheme: the reference becomes a unique string literal, which
    # is replaced by the base value once the file has run.
    placeholder = f"_jm_base_ref_{token}_{len(placeholders)}"
    placeholders[placeholder] = match.group(1)
    return repr(placeholder)

  return _BASE_REF.sub(base_ref, text), placeholders


def _lookup_base(bases: Any, dotted: str) -> Any:
  value = bases
  for part in dotted.split("."):
    if isinstance(value, Mapping) and part in value:
      value = value[part]
    elif isinstance(value, (list, tuple)) and part.isdigit() and int(part) < len(value):
      value = value[int(part)]
    else:
      raise KeyError(part)
  return value


def _replace_placeholders(
  value: Any, placeholders: dict[str, str], bases: Any, path: Path, base_files: list[str]
) -> Any:
  if isinstance(value, str) and value in placeholders:
    dotted = placeholders[value]
    try:
      return copy.deepcopy(_lookup_base(bases, dotted))
    except KeyError as error:
      raise ConfigError(
        f"Config file {str(path)!r}: {{{{_base_.{dotted}}}}}: the bases have no key {error.args[0]!r} "
        f"({f'bases: {base_files}' if base_files else 'the file has no _base_'})."
      ) from None
  if isinstance(value, _BaseView):
    for key in list(value):
      dict.__setitem__(value, key, _replace_placeholders(value[key], placeholders, bases, path, base_files))
    return value
  if isinstance(value, dict):
    return {k: _replace_placeholders(v, placeholders, bases, path, base_files) for k, v in value.items()}
  if isinstance(value, list):
    return [_replace_placeholders(v, placeholders, bases, path, base_files) for v in value]
  if isinstance(value, tuple):
    return tuple(_replace_placeholders(v, placeholders, bases, path, base_files) for v in value)
  return value


def _pop_base_files(tree: ast.Module, path: Path) -> list[str]:
  for index, node in enumerate(tree.body):
    if (
      isinstance(node, ast.Assign)
      and len(node.targets) == 1
      and isinstance(node.targets[0], ast.Name)
      and node.targets[0].id == BASE_KEY
    ):
      try:
        value = ast.literal_eval(node.value)
      except ValueError:
        value = None
      if isinstance(value, str):
        value = [value]
      if not isinstance(value, (list, tuple)) or not all(isinstance(v, str) for v in value):
        raise ConfigError(
          f"Config file {str(path)!r}, line {node.lineno}: _base_ must be a path or a list of paths "
          f"(string literals), got {ast.unparse(node.value)}."
        )
      del tree.body[index]
      return list(value)
  return []


def _resolve_base(entry: str, path: Path, scope_dirs: Mapping[str, str | Path]) -> Path:
  if "::" in entry:
    scope, _, relative = entry.partition("::")
    if scope not in scope_dirs:
      raise ConfigError(
        f"Config file {str(path)!r}: base {entry!r} lives in the {scope!r} package's configs, which jaxmutate "
        f"cannot read from an installed package; pass load_config(..., scope_dirs={{{scope!r}: "
        "'<folder holding its configs>'}), or copy the file next to the config and name it by a relative path."
      )
    return (Path(scope_dirs[scope]).expanduser() / relative).resolve()
  return (path.parent / Path(entry).expanduser()).resolve()


def _file_to_dict(path: Path, chain: tuple[Path, ...], scope_dirs: Mapping[str, str | Path]) -> dict[str, Any]:
  text, placeholders = _substitute_text(path.read_text(encoding="utf-8"), path)
  try:
    tree = ast.parse(text, filename=str(path))
  except SyntaxError as error:
    raise ConfigError(f"Config file {str(path)!r} has a syntax error: {error}") from error
  base_files = _pop_base_files(tree, path)
  merged: dict[str, Any] = {}
  origin: dict[str, str] = {}
  for entry in base_files:
    base_path = _resolve_base(entry, path, scope_dirs)
    if base_path in chain:
      cycle = " -> ".join(str(p) for p in chain[chain.index(base_path) :] + (base_path,))
      raise ConfigError(f"Config file {str(path)!r}: _base_ {entry!r} makes a cycle: {cycle}.")
    if not base_path.is_file():
      raise ConfigError(
        f"Config file {str(path)!r}: base file {entry!r} does not exist (looked for {str(base_path)!r})."
      )
    if base_path.suffix != ".py":
      raise ConfigError(f"Config file {str(path)!r}: base file {entry!r} is not a Python (.py) config file.")
    base_cfg = _file_to_dict(base_path, chain + (base_path,), scope_dirs)
    scope = entry.partition("::")[0] if "::" in entry else None
    if scope is not None:
      base_cfg = {k: _with_scope(v, scope) for k, v in base_cfg.items()}
    for key in base_cfg:
      origin[key] = entry
    try:
      merged = merge_config(merged, base_cfg)
    except ConfigTypeError as error:
      raise ConfigTypeError(f"Config file {str(path)!r}, merging base {entry!r}: {error}") from None
  bases = _BaseView(merged)
  namespace: dict[str, Any] = {BASE_KEY: bases, "__file__": str(path), "__name__": "__jaxmutate_config__"}
  try:
    exec(compile(tree, str(path), "exec"), namespace)  # noqa: S102 - config files are Python by design
  except (AttributeError, KeyError) as error:
    missing = getattr(error, "_jm_missing", None)
    if missing is None:
      raise
    view, key = missing
    at = f"_base_.{view._child(key)}"
    close = difflib.get_close_matches(str(key), [str(k) for k in view], n=3, cutoff=0.6)
    hint = f" Did you mean {close}?" if close else ""
    owner = f"'_base_.{view._jm_where}'" if view._jm_where else "'_base_'"
    bases_text = f"bases: {base_files}" if base_files else "the file has no _base_"
    raise ConfigError(
      f"Config file {str(path)!r}: {at}: {owner} has no key {key!r} ({bases_text}).{hint} "
      f"Keys there: {sorted(map(str, view))}."
    ) from None
  cfg = {
    k: v
    for k, v in namespace.items()
    if not k.startswith("__") and k != BASE_KEY and not isinstance(v, (types.ModuleType, types.FunctionType, type))
  }
  cfg = _replace_placeholders(cfg, placeholders, bases, path, base_files)
  try:
    # Plain copies: files that inherit from this one get their own views.
    return _to_plain(merge_config(bases, cfg))
  except ConfigTypeError as error:
    raise ConfigTypeError(f"Config file {str(path)!r}: {error}") from None


def _with_scope(value: Any, scope: str) -> Any:
  # mmengine marks the outermost typed dicts of an external package's base
  # with that package's scope.
  if isinstance(value, Mapping):
    if "type" in value:
      return {SCOPE_KEY: scope, **value} if SCOPE_KEY not in value else dict(value)
    return {k: _with_scope(v, scope) for k, v in value.items()}
  if isinstance(value, list):
    return [_with_scope(v, scope) for v in value]
  if isinstance(value, tuple):
    return tuple(_with_scope(v, scope) for v in value)
  return value


def load_config(
  path: str | Path,
  *,
  scope_dirs: Mapping[str, str | Path] | None = None,
  import_custom_modules: bool = True,
) -> dict[str, Any]:
  """Reads a config file: a Python file whose top-level names are the config.

  Names starting with ``_``, modules, functions and classes are dropped; the
  rest (dicts, lists, numbers, strings) form the config dict. The file may use
  mmengine's (and so MMRazor's) config features:

  - ``_base_ = "base.py"`` or a list of paths, relative to the file (or
    ``"scope::path"`` with ``scope_dirs``): the bases are read first, in order,
    later ones overriding earlier ones, and the file's names override them;
    dicts merge recursively unless the overriding dict says ``_delete_=True``
    (see :func:`merge_config`). A cycle, a missing base or a non-``.py`` base
    raises.
  - ``_base_.x`` (attributes, also nested: ``_base_.model.backbone``) and the
    text reference ``{{_base_.x}}`` read values of the bases; assigning
    ``_base_.x = ...`` changes what the file inherits.
  - ``{{ fileDirname }}``, ``{{ fileBasename }}``,
    ``{{ fileBasenameNoExtension }}``, ``{{ fileExtname }}`` and
    ``{{$ENV_VAR:default}}`` are substituted in the text, as mmengine does.
  - ``_scope_`` keys are kept in the dicts; :func:`build` checks and drops them.
  - ``custom_imports = dict(imports=[...], allow_failed_imports=False)``: the
    modules are imported once the file is read (so their registrations count);
    the key stays in the config.

  Unlike mmengine, two bases may define the same key (the later one wins).

  Args:
    path: path to a ``.py`` config file.
    scope_dirs: scope → folder that holds that package's configs, for bases
      written ``"mmrazor::_base_/settings/x.py"`` (e.g. ``{"mmrazor":
      "mmrazor/configs"}``).
    import_custom_modules: import the ``custom_imports`` modules.

  Returns:
    The config as a plain dict (no shared sub-dicts).

  Raises:
    FileNotFoundError: the file does not exist.
    ConfigError: the file is not a ``.py`` file, or it has a syntax error, a
      ``_base_`` cycle, a missing base, a ``scope::`` base without a folder
      in ``scope_dirs``, or a reference to a key its bases do not have (the
      message names the file and the key).
    ConfigTypeError: a dict in the file overrides a base value that is not a
      dict, without ``_delete_=True``.
    ImportError: a ``custom_imports`` module failed to import.

  Example:
    >>> import pathlib, tempfile
    >>> import jaxmutate as jm
    >>> folder = pathlib.Path(tempfile.mkdtemp())
    >>> _ = (folder / "base.py").write_text("model = dict(type='NasMutator', custom_group=None)\\nepochs = 3\\n")
    >>> _ = (folder / "tiny.py").write_text("_base_ = 'base.py'\\n_scratch = 2\\nepochs = _base_.epochs + 1\\n")
    >>> jm.load_config(folder / "tiny.py")
    {'model': {'type': 'NasMutator', 'custom_group': None}, 'epochs': 4}
  """
  path = Path(path)
  if not path.is_file():
    raise FileNotFoundError(f"Config file {str(path)!r} does not exist.")
  if path.suffix != ".py":
    raise ConfigError(f"Config files are Python files ending in .py, got {str(path)!r}.")
  resolved = path.resolve()
  cfg = _file_to_dict(resolved, (resolved,), dict(scope_dirs or {}))
  cfg = {k: _to_plain(v) for k, v in cfg.items() if not k.startswith("_")}
  if import_custom_modules and cfg.get("custom_imports") is not None:
    apply_custom_imports(cfg["custom_imports"], where=f"Config file {str(path)!r}: ")
  return cfg


def merge_cfg_options(cfg: dict[str, Any], options: Sequence[str]) -> dict[str, Any]:
  """Applies ``key.sub=value`` overrides (the CLI's ``--cfg-options``).

  Values are parsed as Python literals where possible (``3``, ``0.1``,
  ``[1, 2]``, ``True``), else kept as strings.

  Args:
    cfg: the config; a deep copy is updated and returned.
    options: strings of the form ``dotted.key=value``.

  Returns:
    The updated copy.

  Raises:
    ValueError: an option has no ``=`` or an empty key.
    KeyError: a dotted key passes through something that is not a dict.

  Example:
    >>> from jaxmutate.registry import merge_cfg_options
    >>> merge_cfg_options({"train": {"lr": 0.1}}, ["train.lr=0.05", "train.tag=spos"])
    {'train': {'lr': 0.05, 'tag': 'spos'}}
  """
  cfg = copy.deepcopy(cfg)
  for option in options:
    if "=" not in option:
      raise ConfigError(f"--cfg-options expects key=value, got {option!r}.")
    dotted, raw = option.split("=", 1)
    keys = dotted.strip().split(".")
    if not all(keys):
      raise ConfigError(f"--cfg-options has an empty key in {option!r}.")
    try:
      value = ast.literal_eval(raw)
    except (ValueError, SyntaxError):
      value = raw
    node = cfg
    for key in keys[:-1]:
      node = node.setdefault(key, {})
      if not isinstance(node, dict):
        raise ConfigKeyError(f"--cfg-options {dotted!r}: {key!r} is not a dict in the config.")
    node[keys[-1]] = value
  return cfg
