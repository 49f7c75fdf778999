"""A registry of buildable classes and the config layer on top of it.

Configs are plain Python dicts in MMRazor's layout: ``dict(type="Name", **kwargs)``.
:func:`build` looks ``type`` up in a :class:`Registry` (``MODELS`` by default),
builds nested config dicts first and passes the rest as keyword arguments.

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
import runpy
from collections.abc import Callable, Mapping, Sequence
from pathlib import Path
from typing import Any, TypeVar

SCOPE = "jaxmutate"

_T = TypeVar("_T")


class Registry:
  """Maps names to classes or factory functions.

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

  def __contains__(self, name: str) -> bool:
    return _strip_scope(name) in self._entries

  def __len__(self) -> int:
    return len(self._entries)

  def __repr__(self) -> str:
    return f"Registry(name={self.name!r}, entries={sorted(self._entries)})"

  @property
  def names(self) -> tuple[str, ...]:
    """Every registered name, sorted."""
    return tuple(sorted(self._entries))

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
    """
    if name is not None and not isinstance(name, str):
      raise TypeError(
          f"register_module(name=...) takes a string or None, got {name!r}; "
          "write the decorator with parentheses: @REGISTRY.register_module()."
      )

    def register(obj: _T) -> _T:
      if not callable(obj):
        raise TypeError(
            f"Registry {self.name!r} can only register classes or functions, "
            f"got {obj!r}."
        )
      key = _strip_scope(name or obj.__name__)
      if key in self._entries and not force and self._entries[key] is not obj:
        raise KeyError(
            f"{key!r} is already registered in {self.name!r} "
            f"(as {self._entries[key]!r}); pass force=True to replace it."
        )
      self._entries[key] = obj
      return obj

    if module is not None:
      return register(module)
    return register

  def get(self, name: str) -> Callable[..., Any]:
    """Returns the entry registered as ``name`` (scope prefix allowed).

    Raises:
      KeyError: nothing is registered under that name; the message lists close
        matches.
    """
    key = _strip_scope(name)
    if key not in self._entries:
      close = difflib.get_close_matches(key, self._entries, n=5, cutoff=0.5)
      hint = f" Did you mean one of {close}?" if close else ""
      raise KeyError(
          f"{name!r} is not registered in {self.name!r}.{hint} "
          f"Known names: {sorted(self._entries)}."
      )
    return self._entries[key]

  def build(self, cfg: Mapping[str, Any], **default_args: Any) -> Any:
    """Builds ``cfg`` with this registry; see :func:`build`."""
    return build(cfg, registry=self, **default_args)


def _strip_scope(name: str) -> str:
  if not isinstance(name, str):
    raise TypeError(f"A registry type must be a string, got {name!r}.")
  prefix = SCOPE + "."
  return name[len(prefix):] if name.startswith(prefix) else name


MODELS = Registry("models")


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
    raise TypeError(
        f"custom_imports['imports'] must be a list of module names, got {imports!r}."
    )
  for module_name in imports:
    try:
      importlib.import_module(module_name)
    except ImportError as error:
      if not allow_failed_imports:
        raise ImportError(
            f"custom_imports could not import {module_name!r}: {error}. Pass "
            "allow_failed_imports=True to skip modules that fail to import."
        ) from error
      import warnings

      warnings.warn(f"custom_imports skipped {module_name!r}: {error}", stacklevel=2)


def _handle_custom_imports(cfg: dict[str, Any]) -> None:
  custom_imports = cfg.pop("custom_imports", None)
  if custom_imports is None:
    return
  if not isinstance(custom_imports, Mapping) or "imports" not in custom_imports:
    raise TypeError(
        "custom_imports must be dict(imports=[...], allow_failed_imports=False), "
        f"got {custom_imports!r}."
    )
  unknown = set(custom_imports) - {"imports", "allow_failed_imports"}
  if unknown:
    raise KeyError(
        f"custom_imports has unknown keys {sorted(unknown)}; expected 'imports' "
        "and 'allow_failed_imports'."
    )
  import_modules(
      custom_imports["imports"],
      bool(custom_imports.get("allow_failed_imports", False)),
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

  ``cfg["type"]`` names a registered class or function (``"Name"`` or
  ``"jaxmutate.Name"``); every other key is passed as a keyword argument. Values
  that are themselves config dicts (with a ``type``), also inside lists, tuples
  and plain dicts, are built first. A ``custom_imports`` entry imports user
  modules before anything is looked up, so their registrations count.

  Args:
    cfg: the config dict. It is not modified.
    registry: where to look types up; ``MODELS`` by default.
    **default_args: keyword arguments used where ``cfg`` does not set them.

  Returns:
    The built object.

  Raises:
    TypeError: ``cfg`` is not a mapping.
    KeyError: ``cfg`` has no ``type``, or the type is not registered (the
      message lists close matches).

  Example:
    >>> import jaxmutate as jm
    >>> jm.build(dict(type="OneShotModuleMutator", custom_group=[["a", "b"]])).custom_group
    (('a', 'b'),)
  """
  registry = MODELS if registry is None else registry
  if not isinstance(cfg, Mapping):
    raise TypeError(f"A config must be a dict with a 'type' key, got {type(cfg).__name__}: {cfg!r}.")
  cfg = dict(copy.deepcopy(dict(cfg)))
  _handle_custom_imports(cfg)
  if "type" not in cfg:
    raise KeyError(f"A config needs a 'type' key naming what to build; got keys {sorted(cfg)}.")
  obj_type = cfg.pop("type")
  target = obj_type if callable(obj_type) else registry.get(obj_type)
  kwargs = {k: _build_nested(v, registry) for k, v in cfg.items()}
  for key, value in default_args.items():
    kwargs.setdefault(key, value)
  try:
    return target(**kwargs)
  except TypeError as error:
    raise TypeError(f"Building {obj_type!r} with arguments {sorted(kwargs)} failed: {error}") from error


def load_config(path: str | Path) -> dict[str, Any]:
  """Reads a config file: a Python file whose top-level names are the config.

  Names starting with ``_``, modules, functions and classes are dropped; the rest
  (dicts, lists, numbers, strings) form the config dict.

  Args:
    path: path to a ``.py`` config file.

  Returns:
    The config as a plain dict.

  Raises:
    FileNotFoundError: the file does not exist.
    ValueError: the file is not a ``.py`` file.

  Example:
    >>> import pathlib, tempfile
    >>> import jaxmutate as jm
    >>> path = pathlib.Path(tempfile.mkdtemp()) / "tiny.py"
    >>> _ = path.write_text("_scratch = 2\\nmodel = dict(type='NasMutator', custom_group=None)\\n")
    >>> jm.load_config(path)
    {'model': {'type': 'NasMutator', 'custom_group': None}}
  """
  path = Path(path)
  if not path.is_file():
    raise FileNotFoundError(f"Config file {str(path)!r} does not exist.")
  if path.suffix != ".py":
    raise ValueError(f"Config files are Python files ending in .py, got {str(path)!r}.")
  namespace = runpy.run_path(str(path))
  import types

  return {
      k: v
      for k, v in namespace.items()
      if not k.startswith("_")
      and not isinstance(v, (types.ModuleType, types.FunctionType, type))
  }


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
      raise ValueError(f"--cfg-options expects key=value, got {option!r}.")
    dotted, raw = option.split("=", 1)
    keys = dotted.strip().split(".")
    if not all(keys):
      raise ValueError(f"--cfg-options has an empty key in {option!r}.")
    try:
      value = ast.literal_eval(raw)
    except (ValueError, SyntaxError):
      value = raw
    node = cfg
    for key in keys[:-1]:
      node = node.setdefault(key, {})
      if not isinstance(node, dict):
        raise KeyError(f"--cfg-options {dotted!r}: {key!r} is not a dict in the config.")
    node[keys[-1]] = value
  return cfg
