"""What the command line expects of a search algorithm."""

from __future__ import annotations

from pathlib import Path
from typing import Any, NamedTuple, Protocol, runtime_checkable


class SearchResult(NamedTuple):
  """The outcome of a search run.

  Attributes:
    fix_subnet: the best subnet in MMRazor's ``{name: {"chosen": value}}``
      layout; the CLI writes it to ``best_fix_subnet.yaml``.
    summary: JSON-serialisable figures (best score, baselines, FLOPs/params,
      timings); the CLI adds the wall time and writes ``summary.json``.
  """

  fix_subnet: dict[str, dict[str, Any]]
  summary: dict[str, Any]


@runtime_checkable
class SearchAlgorithm(Protocol):
  """An algorithm the ``jaxmutate search`` command can run.

  The config's ``model`` dict builds it (via :data:`jaxmutate.MODELS`); the
  CLI then calls :meth:`run` with the whole config.
  """

  def run(self, config: dict[str, Any], work_dir: Path, seed: int, progress: bool = True) -> SearchResult:
    """Trains, searches and returns the best subnet; may write extra files to ``work_dir``."""
    ...
