"""What the command line expects of a search runner: a ``run`` method that returns a ``SearchResult``."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any, NamedTuple, Protocol, runtime_checkable

from jaxmutate.data import Dataset, Split, build_dataset
from jaxmutate.errors import ConfigError, ConfigTypeError
from jaxmutate.registry import build, check_config_keys, split_scope


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
    """Trains, searches and returns the best subnet; may write extra files to ``work_dir``.

    Runners that checkpoint (the config's ``checkpoint`` dict) also take
    ``resume=True`` (``jaxmutate search --resume``): continue from the
    checkpoints in ``work_dir/checkpoints``.
    """
    ...

  def check_config(self, config: Mapping[str, Any]) -> None:
    """Validates the config it would run (``jaxmutate check``); raises a ``ConfigError`` naming a bad key."""
    ...


def build_part(value: Any, expected: type | tuple[type, ...], runner: str, what: str, default: Any = None) -> Any:
  """A runner's ``architecture`` or ``mutator``: built from its config dict, or ``default()`` when ``None``.

  Raises ``ConfigTypeError`` naming the runner, the part and what it got when the result is not ``expected``.

  Example:
    >>> import flax.linen as nn
    >>> from jaxmutate.runners import build_part
    >>> build_part(dict(type="SearchableMLP", num_classes=2), nn.Module, "SPOS", "architecture").num_classes
    2
  """
  if value is None and default is not None:
    value = default()
  elif isinstance(value, Mapping):
    value = build(value)
  if not isinstance(value, expected):
    names = " or ".join(t.__name__ for t in (expected if isinstance(expected, tuple) else (expected,)))
    if names == "Module":
      names = "flax.linen.Module"
    raise ConfigTypeError(f"{runner}: {what} must be a {names} (or its config dict), got {type(value).__name__}.")
  return value


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


COMMON_CONFIG_KEYS = ("model", "data", "custom_imports", "_scope_", "default_scope")
"""Top-level config keys every runner accepts (the model, the data set, imports and MMRazor's scope keys)."""


def check_run_config(
  config: Mapping[str, Any],
  runner: str,
  sections: Mapping[str, Sequence[str] | None],
  extra_keys: Sequence[str] = (),
) -> None:
  """Rejects unknown keys of a runner's config and of its section dicts, naming them and close matches.

  Args:
    config: the whole config.
    runner: the runner's name, for messages.
    sections: section name (``"train_cfg"``...) → its allowed keys (``None``: not checked here).
    extra_keys: further top-level keys the runner reads.

  Raises:
    ConfigKeyError: (a ``KeyError``) an unknown key. ConfigTypeError: a section that is not a dict.

  Example:
    >>> from jaxmutate.runners import check_run_config
    >>> check_run_config({"model": {}, "train_cfg": {"epoch": 3}}, "SPOS", {"train_cfg": ("epochs", "batch_size")})
    Traceback (most recent call last):
    ...
    jaxmutate.errors.ConfigKeyError: SPOS config 'train_cfg': unknown key 'epoch' (did you mean 'epochs'?); expected keys: ['batch_size', 'epochs'].
  """
  check_config_keys(config, tuple(COMMON_CONFIG_KEYS) + tuple(sections) + tuple(extra_keys), f"{runner} config")
  for key, allowed in sections.items():
    value = config.get(key)
    if value is None:
      continue
    if not isinstance(value, Mapping):
      raise ConfigTypeError(f"{runner}: config {key!r} must be a dict, got {type(value).__name__}.")
    if allowed is not None:
      check_config_keys(value, allowed, f"{runner} config {key!r}")


def check_search_type(search_cfg: Mapping[str, Any], expected: str, runner: str) -> None:
  """Checks ``search_cfg["type"]`` (scope prefixes allowed) names the search loop the runner runs.

  Raises:
    ConfigError: another type.

  Example:
    >>> from jaxmutate.runners import check_search_type
    >>> check_search_type({"type": "mmrazor.EvolutionSearchLoop"}, "EvolutionSearchLoop", "SPOS")
  """
  if "type" in search_cfg:
    name = split_scope(str(search_cfg["type"]))[1]
    if name != expected:
      raise ConfigError(
        f"{runner}: search_cfg.type must be {expected!r} (the loop it runs), got {search_cfg['type']!r}."
      )


SCORE_KEYS = ("accuracy", "accuracy/top1")
"""``score_key`` values the runners rate subnets by (MMRazor's name for top-1 accuracy included)."""


def check_score_key(search_cfg: Mapping[str, Any], runner: str, allowed: Sequence[str] = SCORE_KEYS) -> str:
  """The config's ``search_cfg.score_key`` (default ``"accuracy"``), checked.

  Raises:
    ConfigError: a score the runner cannot compute.

  Example:
    >>> from jaxmutate.runners import check_score_key
    >>> check_score_key({"score_key": "accuracy/top1"}, "SPOS")
    'accuracy/top1'
  """
  key = search_cfg.get("score_key", "accuracy")
  if key not in allowed:
    raise ConfigError(f"{runner}: search_cfg.score_key must be one of {list(allowed)}, got {key!r}.")
  return key
