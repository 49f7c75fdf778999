"""The package layout rules: no private name crosses a package boundary; the library does no I/O."""

from __future__ import annotations

import ast
from pathlib import Path

import pytest

PACKAGE = Path(__file__).resolve().parents[1] / "jaxmutate"
SOURCES = sorted(p for p in PACKAGE.rglob("*.py"))
# The application side: runners, CLI and data loading may read and write files.
APPLICATION = ("runners", "cli.py", "data.py", "configs")


def _package_of(path: Path) -> str:
  """``jaxmutate.mutables`` for ``jaxmutate/mutables/_op.py``; ``jaxmutate`` for top-level modules."""
  parts = path.relative_to(PACKAGE.parent).with_suffix("").parts
  return ".".join(parts[:-1]) if path.name != "__init__.py" else ".".join(parts[:-1])


def _imports(path: Path) -> list[tuple[int, str, str]]:
  """``(line, module, name)`` for every ``from jaxmutate... import name`` in a file (docstrings included)."""
  tree = ast.parse(path.read_text())
  found = []
  for node in ast.walk(tree):
    if isinstance(node, ast.ImportFrom) and node.module and node.module.startswith("jaxmutate"):
      found.extend((node.lineno, node.module, alias.name) for alias in node.names)
    elif isinstance(node, ast.Import):
      found.extend((node.lineno, alias.name, "") for alias in node.names if alias.name.startswith("jaxmutate"))
  return found


def _docstring_imports(path: Path) -> list[tuple[int, str]]:
  lines = []
  for number, line in enumerate(path.read_text().splitlines(), 1):
    stripped = line.strip()
    if stripped.startswith(">>> from jaxmutate") or stripped.startswith(">>> import jaxmutate"):
      lines.append((number, stripped[4:]))
  return lines


def _is_private(module: str, name: str) -> bool:
  return any(part.startswith("_") for part in module.split(".")) or name.startswith("_")


@pytest.mark.parametrize("path", SOURCES, ids=lambda p: str(p.relative_to(PACKAGE)))
def test_no_private_name_crosses_a_package_boundary(path):
  own = _package_of(path)
  offending = []
  for line, module, name in _imports(path):
    private = _is_private(module, name)
    target_package = ".".join(part for part in module.split(".") if not part.startswith("_"))
    inside = module.startswith(own + ".") or module == own
    if private and not inside:
      offending.append(f"line {line}: from {module} import {name} (target package {target_package})")
  assert not offending, f"{path.relative_to(PACKAGE)} imports private names of other packages: {offending}"


@pytest.mark.parametrize("path", SOURCES, ids=lambda p: str(p.relative_to(PACKAGE)))
def test_docstring_examples_import_public_paths_only(path):
  offending = [f"line {n}: {text}" for n, text in _docstring_imports(path) if "._" in text.split(" import ")[0]]
  assert not offending, f"{path.relative_to(PACKAGE)} has examples importing private modules: {offending}"


LIBRARY = [p for p in SOURCES if not any(str(p.relative_to(PACKAGE)).startswith(a) for a in APPLICATION)]
IO_NAMES = {"open", "print", "tqdm"}
IO_MODULES = {"tqdm", "matplotlib", "json", "yaml", "time", "shutil"}


@pytest.mark.parametrize("path", LIBRARY, ids=lambda p: str(p.relative_to(PACKAGE)))
def test_library_modules_do_no_io(path):
  """Like optax, the library is pure: no files, progress bars, plots or clocks outside the application side."""
  allowed_io = {"subnet.py", "registry.py", "export.py"}  # subnet, config and exported-network files on purpose
  if path.name in allowed_io and path.parent == PACKAGE:
    pytest.skip("reads and writes the files it is about")
  tree = ast.parse(path.read_text())
  offending = []
  for node in ast.walk(tree):
    if isinstance(node, ast.Import):
      offending.extend(f"import {a.name}" for a in node.names if a.name.split(".")[0] in IO_MODULES)
    elif isinstance(node, ast.ImportFrom) and node.module and node.module.split(".")[0] in IO_MODULES:
      offending.append(f"from {node.module} import ...")
    elif isinstance(node, ast.Call) and isinstance(node.func, ast.Name) and node.func.id in IO_NAMES:
      offending.append(f"{node.func.id}(...) at line {node.lineno}")
  assert not offending, f"{path.relative_to(PACKAGE)} does I/O: {offending}"


# Bottom-up layers: a package may import its own layer's peers only where listed, and every lower layer.
LAYERS = [
  {"errors", "typing"},
  {"registry", "spaces", "subnet", "runtime", "sharding"},
  {"ops", "data", "mmrazor_compat"},
  {"mutables"},
  {"dynamic"},
  {"channels"},
  {"analysis"},
  {"mutators", "models"},
  {"algorithms", "search", "resources", "export", "pruning"},
  {"runners"},
  {"cli", "configs"},
]
LAYER_OF = {name: i for i, layer in enumerate(LAYERS) for name in layer}
LAYER_OF["__init__"] = LAYER_OF["runners"] + 0.5  # the CLI may use the whole public package


@pytest.mark.parametrize("path", SOURCES, ids=lambda p: str(p.relative_to(PACKAGE)))
def test_imports_go_one_way(path):
  rel = path.relative_to(PACKAGE)
  own = rel.parts[0].removesuffix(".py")
  if own == "__init__":
    pytest.skip("the top-level package re-exports everything")
  offending = []
  for line, module, _ in _imports(path):
    parts = module.split(".")
    target = parts[1] if len(parts) > 1 else "__init__"
    if target == own:
      continue
    if LAYER_OF.get(target, 99) >= LAYER_OF[own]:
      offending.append(f"line {line}: {module} ({target} is not below {own})")
  assert not offending, f"{rel} imports upwards or sideways: {offending}"
