"""One style, enforced: ruff's formatter and linter over the package, the tests and the benchmarks."""

from __future__ import annotations

import shutil
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
TARGETS = ["jaxmutate", "tests", "benchmarks"]


def _ruff(*args: str) -> subprocess.CompletedProcess:
  executable = shutil.which("ruff")
  command = [executable] if executable else [sys.executable, "-m", "ruff"]
  return subprocess.run([*command, *args, *TARGETS], cwd=ROOT, capture_output=True, text=True, check=False)


@pytest.fixture(scope="module", autouse=True)
def _needs_ruff():
  pytest.importorskip("ruff", reason="ruff is part of the [test] extra")


def test_code_is_formatted():
  result = _ruff("format", "--check")
  assert result.returncode == 0, f"run `ruff format {' '.join(TARGETS)}`:\n{result.stdout}{result.stderr}"


def test_code_passes_the_linter():
  result = _ruff("check")
  assert result.returncode == 0, f"run `ruff check --fix {' '.join(TARGETS)}`:\n{result.stdout}{result.stderr}"
