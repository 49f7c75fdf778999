"""The README's Python examples run as written, top to bottom, in one namespace."""

import pathlib
import re

import pytest

README = pathlib.Path(__file__).parent.parent / "README.md"
BLOCKS = re.findall(r"```python\n(.*?)```", README.read_text(), flags=re.S)


def test_readme_has_python_examples():
  assert len(BLOCKS) >= 3


@pytest.mark.slow
def test_readme_python_examples_run(tmp_path, monkeypatch):
  monkeypatch.chdir(tmp_path)  # the examples write subnet files
  namespace: dict = {}
  for i, block in enumerate(BLOCKS):
    exec(compile(block, f"README.md python block {i}", "exec"), namespace)
