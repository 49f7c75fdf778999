"""Every python block of docs/migrating_from_mmrazor.md runs, in order, in one namespace (as a notebook would)."""

from __future__ import annotations

import re
from pathlib import Path

GUIDE = Path(__file__).parent.parent / "docs" / "migrating_from_mmrazor.md"


def _python_blocks(text):
  return re.findall(r"^```python\n(.*?)^```$", text, flags=re.S | re.M)


def test_the_guide_has_a_block_per_topic():
  text = GUIDE.read_text()
  for heading in ("## SPOS", "## DARTS", "## AutoSlim and slimmable networks", "## Subnet files", "issue #10"):
    assert heading in text, heading
  assert len(_python_blocks(text)) >= 8


def test_every_python_block_runs(tmp_path, monkeypatch, capsys):
  monkeypatch.chdir(tmp_path)  # the blocks write their example files into the working folder
  namespace: dict = {"__name__": "migration_guide"}
  for index, block in enumerate(_python_blocks(GUIDE.read_text())):
    try:
      exec(compile(block, f"{GUIDE.name} block {index}", "exec"), namespace)
    except Exception as error:  # name the block that failed
      raise AssertionError(f"{GUIDE.name}: python block {index} failed:\n{block}") from error
  assert "mapped (" in capsys.readouterr().out  # the report printed by the first block
