"""What every notebook maker shares: cells from dedented text, and writing (optionally executing) the notebook."""

import argparse
import pathlib
import tempfile
import textwrap
import time

import nbformat
from nbformat.v4 import new_code_cell, new_markdown_cell, new_notebook


def md(text: str) -> nbformat.NotebookNode:
  """A markdown cell from indented text."""
  return new_markdown_cell(textwrap.dedent(text).strip())


def code(text: str) -> nbformat.NotebookNode:
  """A code cell from indented text."""
  return new_code_cell(textwrap.dedent(text).strip())


def write_notebook(cells: list, name: str) -> None:
  """Writes ``notebooks/NAME``; with ``--execute`` runs it once first (in a fresh working directory, as the tests do)."""
  parser = argparse.ArgumentParser()
  parser.add_argument("--execute", action="store_true", help="run it once with nbclient (stores the outputs)")
  args = parser.parse_args()
  path = pathlib.Path(__file__).with_name(name)
  kernelspec = {"name": "python3", "display_name": "Python 3", "language": "python"}
  notebook = new_notebook(cells=cells, metadata={"kernelspec": kernelspec})
  if args.execute:
    import nbclient

    start = time.perf_counter()
    with tempfile.TemporaryDirectory() as cwd:
      nbclient.NotebookClient(
        notebook, timeout=600, kernel_name="python3", resources={"metadata": {"path": cwd}}
      ).execute()
    print(f"executed in {time.perf_counter() - start:.1f} s")
  nbformat.write(notebook, path)
