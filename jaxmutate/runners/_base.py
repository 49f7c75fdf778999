"""What the command line expects of a search runner: a ``run`` method that returns a ``SearchResult``."""

from __future__ import annotations

from collections.abc import Mapping
from pathlib import Path
from typing import Any, NamedTuple, Protocol, runtime_checkable

from jaxmutate.data import Dataset, Split, build_dataset
from jaxmutate.errors import ConfigError


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


def load_data(config: Mapping[str, Any], runner: str) -> Dataset:
  """The config's ``data`` dict built into an in-memory :class:`~jaxmutate.data.Dataset`.

  Any builder of :data:`jaxmutate.DATASETS` works (the digits when ``data`` or
  its ``type`` is missing); every key reaches the builder, so a misspelt one is
  an error, not silently dropped.

  Raises:
    ConfigError: the data set streams a split (the runners rate subnets on
      whole in-memory splits), or the builder rejected the config.

  Example:
    >>> from jaxmutate.runners import load_data
    >>> data = load_data({"data": dict(type="digits", val_fraction=0.1)}, "SPOS")
    >>> data.num_classes, len(data.val)
    (10, 180)
  """
  data = build_dataset(config.get("data"))
  streamed = [name for name in ("train", "val", "test") if not isinstance(getattr(data, name), Split)]
  if streamed:
    raise ConfigError(
      f"{runner}: the data set streams its {streamed} split(s), but the {runner} runner needs in-memory splits; "
      "use NpzDataset/ImageFolder, or call the jaxmutate.algorithms steps in your own loop."
    )
  return data
