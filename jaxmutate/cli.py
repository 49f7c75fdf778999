"""The ``jaxmutate`` command: run a search from a config file, or the built-in demo.

Usage::

  jaxmutate search CONFIG [--work-dir DIR] [--seed N] [--cfg-options k=v ...] [--no-progress] [--no-compile-cache]
                   [--resume]
  jaxmutate demo [--work-dir DIR] [--seed N] [--cfg-options k=v ...] [--no-progress] [--no-compile-cache] [--resume]
  jaxmutate check CONFIG [--cfg-options k=v ...]

``CONFIG`` is a Python file of dicts (``model = dict(type="SPOS", ...)``); a
path that does not exist but names a file in the package's ``configs/``
(e.g. ``configs/spos_digits.py``) is taken from there. The run writes
``DIR/best_fix_subnet.yaml`` and ``DIR/summary.json``. ``check`` validates a
config without running it (the model and mutator are built, every key is
checked) and prints the resolved config.

``search`` and ``demo`` tune glibc's allocator for XLA and keep compiled
programs in a persistent cache (:mod:`jaxmutate.runtime`), so a second run of
a config compiles nothing it compiled before; ``--no-compile-cache`` or
``JAXMUTATE_COMPILATION_CACHE=off`` turns the cache off, and
``JAXMUTATE_ALLOCATOR=default`` keeps glibc's own settings.

With a ``checkpoint=dict(every_n_steps=N, keep=K)`` entry in the config the
runners (SPOS, AutoSlim, SlimmableNetwork, DARTS and GDAS, DSNAS, Prune; a
runner of one's own when its ``run`` takes ``resume``) save checkpoints
into ``DIR/checkpoints``; ``--resume`` continues a run killed at any point
from them, with the same config and seed, and ends with the same results
as a run never interrupted. Without ``--resume`` a ``DIR`` that holds
checkpoints is an error (a run never silently continues or overwrites
another); a checkpoint of another config, seed or search space, or a
damaged one, is an error too (``jaxmutate.errors.CheckpointError``).
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from collections.abc import Sequence
from pathlib import Path
from typing import Any

DEMO_CONFIG = "spos_digits.py"
PACKAGE_CONFIGS = Path(__file__).with_name("configs")


def resolve_config(path: str) -> Path:
  """Finds a config file: as given, else by name in the package's ``configs/``.

  Raises:
    FileNotFoundError: neither exists; the message lists the packaged configs.
  """
  candidate = Path(path)
  if candidate.is_file():
    return candidate
  packaged = PACKAGE_CONFIGS / candidate.name
  if packaged.is_file():
    return packaged
  available = sorted(p.name for p in PACKAGE_CONFIGS.glob("*.py") if not p.name.startswith("_"))
  raise FileNotFoundError(f"Config {path!r} not found (nor in the packaged configs: {available}).")


def build_algorithm(config_path: Path, cfg_options: Sequence[str]) -> tuple[dict[str, Any], Any]:
  """Loads a config (with ``--cfg-options``) and builds its search runner, checking the whole config.

  Returns:
    ``(config, algorithm)``.

  Raises:
    KeyError: the config has no ``model`` dict (the same error as a config
      dict without ``type``), or an unknown key anywhere (a ``ConfigKeyError``).
    ConfigTypeError: (a ``TypeError``) the model is not a search runner.
  """
  import jaxmutate as jm
  from jaxmutate.errors import ConfigKeyError, ConfigTypeError
  from jaxmutate.registry import merge_cfg_options
  from jaxmutate.runners import SearchAlgorithm

  config = merge_cfg_options(jm.load_config(config_path), cfg_options)
  if "model" not in config:
    raise ConfigKeyError(
      f"Config {str(config_path)!r} has no 'model' dict; add one, e.g. model = dict(type='SPOS', ...)."
    )
  if "custom_imports" in config:
    jm.registry.import_modules(**config["custom_imports"])
  algorithm = jm.build(config["model"])
  if not isinstance(algorithm, SearchAlgorithm):
    raise ConfigTypeError(
      f"Config model type {config['model'].get('type')!r} built a {type(algorithm).__name__}, which has no run() "
      "method; use a search runner type such as 'SPOS', 'DARTS' or 'AutoSlim'."
    )
  algorithm.check_config(config)
  return config, algorithm


def run_search(
  config_path: Path,
  work_dir: Path,
  seed: int,
  cfg_options: Sequence[str],
  progress: bool,
  compile_cache: bool = True,
  resume: bool = False,
) -> dict[str, Any]:
  """Runs the algorithm a config describes and writes its outputs.

  With ``resume`` the run continues from the checkpoints in ``work_dir``
  (the config needs its ``checkpoint`` dict, and the runner must support it).

  The process first gets jaxmutate's runtime settings
  (:func:`jaxmutate.runtime.configure_allocator`, and unless
  ``compile_cache`` is false :func:`jaxmutate.runtime.enable_compilation_cache`);
  ``summary.json`` records the cache's directory, hits and misses.

  Returns:
    The summary written to ``summary.json``.

  Raises:
    KeyError, ConfigTypeError: as :func:`build_algorithm`.
    ConfigError: ``resume`` with a runner that does not checkpoint (one of
      one's own whose ``run`` takes no ``resume``).
  """
  import inspect

  import jaxmutate as jm
  from jaxmutate.errors import ConfigError

  # Before the first computation: XLA's worker threads take their malloc arenas when they start.
  jm.runtime.configure_allocator()
  cache_dir = jm.runtime.enable_compilation_cache() if compile_cache else None
  config, algorithm = build_algorithm(config_path, cfg_options)
  resumable = "resume" in inspect.signature(algorithm.run).parameters
  if resume and not resumable:
    raise ConfigError(
      f"--resume: the {type(algorithm).__name__} runner does not checkpoint, so there is nothing to resume; "
      "run it again without --resume."
    )
  work_dir.mkdir(parents=True, exist_ok=True)
  start = time.perf_counter()
  options = {"resume": resume} if resumable else {}
  result = algorithm.run(config, work_dir, seed, progress, **options)
  wall_time = time.perf_counter() - start
  jm.save_fix_subnet(result.fix_subnet, work_dir / "best_fix_subnet.yaml")
  summary = dict(result.summary)
  summary.update(config=str(config_path), seed=seed, wall_time_s=wall_time)
  summary["compilation_cache"] = (
    {"dir": str(cache_dir), **jm.runtime.compilation_cache_stats()} if cache_dir is not None else None
  )
  (work_dir / "summary.json").write_text(json.dumps(summary, indent=2, default=float) + "\n")
  return summary


def check_config_file(config_path: Path, cfg_options: Sequence[str]) -> str:
  """What ``jaxmutate check`` prints: the resolved config as JSON, after every check passed."""
  config, algorithm = build_algorithm(config_path, cfg_options)
  resolved = json.dumps(config, indent=2, default=repr)
  return f"{resolved}\nOK: {str(config_path)!r} is a valid {type(algorithm).__name__} config."


def _report(summary: dict[str, Any], work_dir: Path) -> None:
  lines = [f"wrote {work_dir / 'best_fix_subnet.yaml'} and {work_dir / 'summary.json'}"]
  # Algorithms report different figures: show every top-level score and size.
  shown = [
    k
    for k, v in summary.items()
    if isinstance(v, (int, float))
    and not isinstance(v, bool)
    and any(word in k for word in ("accuracy", "flops", "params", "wall_time"))
  ]
  for key in shown:
    lines.append(f"  {key}: {summary[key]:.4g}")
  random = summary.get("random_subnets_test_accuracy")
  if random:
    lines.append(f"  random subnets' test accuracy: median {random['median']:.4g} (n={random['count']})")
  versus = summary.get("search_vs_random")
  if versus and versus.get("rank") is not None:
    lines.append(
      f"  searched vs {versus['found']} random subnets under the same constraint: "
      f"rank {versus['rank']}/{versus['rank_out_of']}, percentile {versus['percentile']:.0f}"
    )
  if versus and versus.get("warning"):
    lines.append(f"  warning: {versus['warning']}")
  if "retrain" in summary:
    lines.append(f"  retrained best subnet test accuracy: {summary['retrain']['test_accuracy']:.4g}")
  print("\n".join(lines))


def build_parser() -> argparse.ArgumentParser:
  parser = argparse.ArgumentParser(prog="jaxmutate", description="Neural architecture search on JAX + Flax.")
  commands = parser.add_subparsers(dest="command", required=True)

  def common(sub: argparse.ArgumentParser) -> None:
    sub.add_argument("--work-dir", default=None, help="output folder (default: work_dirs/<config name>)")
    sub.add_argument("--seed", type=int, default=0, help="PRNG seed (default 0)")
    sub.add_argument(
      "--cfg-options",
      nargs="+",
      default=[],
      metavar="KEY=VALUE",
      help="override config entries, e.g. train_cfg.epochs=5",
    )
    sub.add_argument("--no-progress", action="store_true", help="hide progress bars")
    sub.add_argument(
      "--no-compile-cache",
      action="store_true",
      help="do not read or write the persistent compilation cache "
      "(default: on, in $JAXMUTATE_COMPILATION_CACHE or ~/.cache/jaxmutate/xla)",
    )
    sub.add_argument(
      "--resume",
      action="store_true",
      help="continue from the checkpoints in the work dir (needs the config's checkpoint=dict(every_n_steps=..., "
      "keep=...)); the results equal those of a run never interrupted",
    )

  search = commands.add_parser("search", help="run the search a config file describes")
  search.add_argument("config", help="config file, e.g. configs/spos_digits.py")
  common(search)
  demo = commands.add_parser(
    "demo", help=f"run the built-in default search ({DEMO_CONFIG}) on the embedded digits data"
  )
  common(demo)
  check = commands.add_parser("check", help="validate a config without running it and print it resolved")
  check.add_argument("config", help="config file, e.g. configs/autoslim_digits.py")
  check.add_argument("--cfg-options", nargs="+", default=[], metavar="KEY=VALUE", help="override config entries")
  return parser


def main(argv: Sequence[str] | None = None) -> int:
  """Entry point of the ``jaxmutate`` console script."""
  args = build_parser().parse_args(argv)
  config_path = resolve_config(DEMO_CONFIG if args.command == "demo" else args.config)
  if args.command == "check":
    print(check_config_file(config_path, args.cfg_options))
    return 0
  work_dir = Path(args.work_dir or Path("work_dirs") / config_path.stem)
  summary = run_search(
    config_path,
    work_dir,
    args.seed,
    args.cfg_options,
    not args.no_progress,
    compile_cache=not args.no_compile_cache,
    resume=args.resume,
  )
  _report(summary, work_dir)
  return 0


if __name__ == "__main__":
  sys.exit(main())
