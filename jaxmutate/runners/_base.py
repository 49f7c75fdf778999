"""What the command line expects of a search runner: a ``run`` method that returns a ``SearchResult``."""

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

  Example:
    >>> from jaxmutate.runners import SearchResult
    >>> result = SearchResult({"layers.0": {"chosen": "conv3"}}, {"best_val_accuracy": 0.9})
    >>> result.fix_subnet["layers.0"]["chosen"], result.summary["best_val_accuracy"]
    ('conv3', 0.9)
  """

  fix_subnet: dict[str, dict[str, Any]]
  summary: dict[str, Any]


@runtime_checkable
class SearchAlgorithm(Protocol):
  """An algorithm the ``jaxmutate search`` command can run.

  The config's ``model`` dict builds it (via :data:`jaxmutate.MODELS`); the
  CLI then calls :meth:`run` with the whole config.

  Example:
    >>> import jaxmutate as jm
    >>> from jaxmutate.runners import SearchAlgorithm
    >>> spos = jm.build(dict(type="SPOS", architecture=dict(type="SearchableMLP", width=4, num_layers=1),
    ...                      mutator=dict(type="OneShotModuleMutator")))
    >>> isinstance(spos, SearchAlgorithm), isinstance(object(), SearchAlgorithm)
    (True, False)
  """

  def run(self, config: dict[str, Any], work_dir: Path, seed: int, progress: bool = True) -> SearchResult:
    """Trains, searches and returns the best subnet; may write extra files to ``work_dir``."""
    ...
