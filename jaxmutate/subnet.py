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

from jaxmutate.errors import SubnetFileError, SubnetFileTypeError
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


_LAYOUTS = (
  "MMRazor's {name: {chosen: value}} (1.x; a 'meta' beside 'chosen' is ignored), the plain {name: value} of "
  "older MMRazor files (0.x-style, e.g. {stage_0_block_0: [shuffle_7x7]}), or a channel mutator's "
  "config_template / {unit name: {choice: value}}"
)


def _is_plain_value(entry: Any) -> bool:
  """A choice written without the ``{chosen: ...}`` wrapper: a name, a number or a list of them."""
  if isinstance(entry, (list, tuple)):
    return all(isinstance(e, (str, int, float)) for e in entry)
  return isinstance(entry, (str, int, float))


def as_fix_subnet(data: Any, source: str = "subnet") -> Any:
  """Reads any layout of subnet file MMRazor has written into ``{name: {"chosen": value}}``.

  The layout is detected for the whole file, never per entry:

  - MMRazor 1.x: ``{name: {"chosen": value}}`` (a ``meta`` beside ``chosen``
    is kept and ignored by loading);
  - the plain layout of older MMRazor files, ``{name: value}`` (values may be
    one-element lists, as 0.x wrote op choices): every entry is wrapped as
    ``{"chosen": value}``;
  - a channel mutator's ``config_template`` (``{"type": ..., "channel_unit_cfg":
    ...}``) or its ``units`` (``{unit name: {"choice": value}}``): returned as
    they are (channel mutators read them).

  Args:
    data: what a YAML/JSON subnet file holds.
    source: the file, for messages.

  Returns:
    The subnet in MMRazor's 1.x layout (or a channel ``config_template`` unchanged).

  Raises:
    SubnetFileTypeError: (a ``SubnetFileError`` and a ``TypeError``) none of
      these layouts (e.g. a list, or plain and wrapped entries mixed); the
      message names ``source`` and the layouts expected.

  Example:
    >>> from jaxmutate.subnet import as_fix_subnet
    >>> as_fix_subnet({"stage_0_block_0": ["shuffle_7x7"], "stage_0_block_1": "shuffle_3x3"})
    {'stage_0_block_0': {'chosen': ['shuffle_7x7']}, 'stage_0_block_1': {'chosen': 'shuffle_3x3'}}
    >>> as_fix_subnet({"normal_n2_p0": {"chosen": "sep_conv_3x3", "meta": None}})
    {'normal_n2_p0': {'chosen': 'sep_conv_3x3', 'meta': None}}
  """
  if not isinstance(data, Mapping):
    raise SubnetFileTypeError(f"{source}: a subnet file must hold a mapping ({_LAYOUTS}), got {type(data).__name__}.")
  bad_keys = [key for key in data if not isinstance(key, str)]
  if bad_keys:
    raise SubnetFileTypeError(f"{source}: subnet keys are mutable names or aliases (strings), got {bad_keys[0]!r}.")
  if isinstance(data.get("channel_unit_cfg"), Mapping):
    return dict(data)
  entries = list(data.values())
  if entries and all(isinstance(e, Mapping) and "choice" in e and "chosen" not in e for e in entries):
    return dict(data)
  if entries and all(_is_plain_value(e) for e in entries):
    return {key: {"chosen": value} for key, value in data.items()}
  for key, entry in data.items():
    if not isinstance(entry, Mapping) or "chosen" not in entry:
      raise SubnetFileTypeError(
        f"{source}: entry {key!r} must be a mapping with a 'chosen' key, got {entry!r}; a subnet file is one of "
        f"{_LAYOUTS}, never a mix."
      )
  return {key: dict(entry) for key, entry in data.items()}


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
  """Reads a subnet file written by jaxmutate or MMRazor (YAML or JSON), in any of MMRazor's layouts.

  See :func:`as_fix_subnet` for the layouts; the result is MMRazor's 1.x
  ``{name: {"chosen": value}}``.

  Raises:
    FileNotFoundError: no such file.
    SubnetFileTypeError: (a ``TypeError``) the file holds none of the layouts;
      the message names the file.

  Example:
    >>> import tempfile, pathlib
    >>> path = pathlib.Path(tempfile.mkdtemp()) / "mmrazor_subnet.yaml"
    >>> _ = path.write_text("backbone.layers.0.0:\\n  chosen: shuffle_7x7\\n")
    >>> read_fix_subnet(path)
    {'backbone.layers.0.0': {'chosen': 'shuffle_7x7'}}
    >>> _ = path.write_text("stage_0_block_0: [shuffle_7x7]\\n")  # the plain layout of older files
    >>> read_fix_subnet(path)
    {'stage_0_block_0': {'chosen': ['shuffle_7x7']}}
  """
  return as_fix_subnet(read_mapping_file(path, "Subnet file"), f"Subnet file {str(path)!r}")


def read_mapping_file(path: str | Path, what: str = "File") -> Any:
  """Reads a YAML or JSON file (JSON for ``.json``): subnet files, channel-unit ``units`` files.

  Raises:
    FileNotFoundError: no such file.
    SubnetFileError: (a ``ValueError``) the file is not valid YAML/JSON; the message names it.

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
  import yaml

  try:
    return json.loads(text) if path.suffix == ".json" else yaml.safe_load(text)
  except (json.JSONDecodeError, yaml.YAMLError) as error:
    raise SubnetFileError(
      f"{what} {str(path)!r} is not valid {'JSON' if path.suffix == '.json' else 'YAML'}: {error}"
    ) from None
