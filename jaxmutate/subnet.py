"""Subnet files: MMRazor's ``{name: {chosen: value}}`` layout as YAML or JSON.

Example:
  >>> import tempfile, os
  >>> from jaxmutate.subnet import save_fix_subnet, read_fix_subnet
  >>> path = os.path.join(tempfile.mkdtemp(), "subnet.yaml")
  >>> _ = save_fix_subnet({"backbone.layers.0": {"chosen": "shuffle_7x7"}}, path)
  >>> read_fix_subnet(path)
  {'backbone.layers.0': {'chosen': 'shuffle_7x7'}}
"""

from __future__ import annotations

import json
from collections.abc import Mapping
from pathlib import Path
from typing import Any

from jaxmutate.errors import SubnetFileTypeError
from jaxmutate.typing import FixSubnet


def _check_layout(fix_subnet: Any, source: str) -> FixSubnet:
  if not isinstance(fix_subnet, Mapping):
    raise SubnetFileTypeError(
      f"{source}: a subnet must be a mapping of name -> {{'chosen': value}}, got {type(fix_subnet).__name__}."
    )
  for key, entry in fix_subnet.items():
    if not isinstance(key, str):
      raise SubnetFileTypeError(f"{source}: subnet keys are mutable names or aliases (strings), got {key!r}.")
    if not isinstance(entry, Mapping) or "chosen" not in entry:
      raise SubnetFileTypeError(f"{source}: entry {key!r} must be a mapping with a 'chosen' key, got {entry!r}.")
  return {key: dict(entry) for key, entry in fix_subnet.items()}


def save_fix_subnet(fix_subnet: Mapping[str, Any], path: str | Path) -> Path:
  """Writes a subnet to ``path``: JSON for ``.json``, otherwise YAML.

  Args:
    fix_subnet: ``{alias or mutable name: {"chosen": value}}``, as made by a
      mutator's ``export_fix_subnet``.
    path: the file to write; parent folders are created.

  Returns:
    The path written.

  Raises:
    TypeError: the subnet is not in the expected layout.

  Example:
    >>> import tempfile, pathlib
    >>> folder = pathlib.Path(tempfile.mkdtemp())
    >>> path = save_fix_subnet({"block1": {"chosen": "k5"}, "expand": {"chosen": 4}}, folder / "subnet.yaml")
    >>> print(path.read_text(), end="")
    block1: {chosen: k5}
    expand: {chosen: 4}
    >>> save_fix_subnet({"block1": {"chosen": "k5"}}, folder / "subnet.json").suffix
    '.json'
  """
  fix_subnet = _check_layout(fix_subnet, "save_fix_subnet")
  path = Path(path)
  path.parent.mkdir(parents=True, exist_ok=True)
  if path.suffix == ".json":
    path.write_text(json.dumps(fix_subnet, indent=2) + "\n")
  else:
    import yaml

    path.write_text(yaml.safe_dump(fix_subnet, sort_keys=False, default_flow_style=None))
  return path


def read_fix_subnet(path: str | Path) -> FixSubnet:
  """Reads a subnet file written by jaxmutate or MMRazor (YAML or JSON).

  Raises:
    FileNotFoundError: no such file.
    TypeError: the file does not hold ``{name: {chosen: value}}``.

  Example:
    >>> import tempfile, pathlib
    >>> path = pathlib.Path(tempfile.mkdtemp()) / "mmrazor_subnet.yaml"
    >>> _ = path.write_text("backbone.layers.0.0:\\n  chosen: shuffle_7x7\\n")
    >>> read_fix_subnet(path)
    {'backbone.layers.0.0': {'chosen': 'shuffle_7x7'}}
  """
  return _check_layout(read_mapping_file(path, "Subnet file"), str(path))


def read_mapping_file(path: str | Path, what: str = "File") -> Any:
  """Reads a YAML or JSON file (JSON for ``.json``): subnet files, channel-unit ``units`` files.

  Raises:
    FileNotFoundError: no such file.

  Example:
    >>> import tempfile, pathlib
    >>> path = pathlib.Path(tempfile.mkdtemp()) / "units.json"
    >>> _ = path.write_text('{"conv1_(0, 8)_8": {"choice": 4}}')
    >>> read_mapping_file(path)
    {'conv1_(0, 8)_8': {'choice': 4}}
  """
  path = Path(path)
  if not path.is_file():
    raise FileNotFoundError(f"{what} {str(path)!r} does not exist.")
  text = path.read_text()
  if path.suffix == ".json":
    return json.loads(text)
  import yaml

  return yaml.safe_load(text)
