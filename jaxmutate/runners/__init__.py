"""Search runners: the application around the pure steps of :mod:`jaxmutate.algorithms`.

A runner is built from a config's ``model`` dict (``dict(type="SPOS", ...)``
through :data:`jaxmutate.MODELS`) and its ``run(config, work_dir, seed,
progress)`` does a whole search: it loads the data, runs the training loops
with progress bars, times the phases, writes extra files and plots, and
returns a :class:`SearchResult` that ``jaxmutate search`` writes out.

Layout: ``_base`` (:class:`SearchResult`, the :class:`SearchAlgorithm`
protocol), ``_loop`` (:func:`train_loop`, the one supervised training loop),
``spos`` (:class:`SPOS`, supernet training and subnet retraining), ``darts``
(:class:`DARTS`, the search loop and the derived network's retraining),
``autoslim`` (:class:`AutoSlim` and :class:`SlimmableNetwork`: width search,
exports and the accuracy–FLOPs plot) and ``plots`` (:func:`plot_arch_weights`, :func:`plot_pareto`).
"""

from jaxmutate.runners._base import COMMON_CONFIG_KEYS as COMMON_CONFIG_KEYS
from jaxmutate.runners._base import SCORE_KEYS as SCORE_KEYS
from jaxmutate.runners._base import SearchAlgorithm as SearchAlgorithm
from jaxmutate.runners._base import SearchResult as SearchResult
from jaxmutate.runners._base import build_part as build_part
from jaxmutate.runners._base import check_run_config as check_run_config
from jaxmutate.runners._base import check_score_key as check_score_key
from jaxmutate.runners._base import check_search_type as check_search_type
from jaxmutate.runners._base import load_data as load_data
from jaxmutate.runners._loop import train_loop as train_loop
from jaxmutate.runners.autoslim import AutoSlim as AutoSlim
from jaxmutate.runners.autoslim import SlimmableNetwork as SlimmableNetwork
from jaxmutate.runners.autoslim import plot_width_search as plot_width_search
from jaxmutate.runners.checkpoint import Checkpointer as Checkpointer
from jaxmutate.runners.checkpoint import CheckpointSettings as CheckpointSettings
from jaxmutate.runners.checkpoint import checkpoint_settings as checkpoint_settings
from jaxmutate.runners.checkpoint import resumable_loop as resumable_loop
from jaxmutate.runners.checkpoint import run_fingerprints as run_fingerprints
from jaxmutate.runners.darts import DARTS as DARTS
from jaxmutate.runners.darts import darts_cost_table as darts_cost_table
from jaxmutate.runners.darts import retrain_derived_network as retrain_derived_network
from jaxmutate.runners.dsnas import DSNAS as DSNAS
from jaxmutate.runners.latency import build_latency_table as build_latency_table
from jaxmutate.runners.latency import latency_measure as latency_measure
from jaxmutate.runners.latency import median_latency_ms as median_latency_ms
from jaxmutate.runners.plots import plot_arch_weights as plot_arch_weights
from jaxmutate.runners.plots import plot_pareto as plot_pareto
from jaxmutate.runners.prune import Prune as Prune
from jaxmutate.runners.prune import plot_pruning as plot_pruning
from jaxmutate.runners.spos import SPOS as SPOS
from jaxmutate.runners.spos import compare_with_random as compare_with_random
from jaxmutate.runners.spos import make_sharded_population_scorer as make_sharded_population_scorer
from jaxmutate.runners.spos import retrain_subnet as retrain_subnet
from jaxmutate.runners.spos import train_supernet as train_supernet
from jaxmutate.runners.support import RunSupport as RunSupport
from jaxmutate.runners.support import nonfinite_policy as nonfinite_policy
from jaxmutate.runners.support import sharding_mesh as sharding_mesh

__all__ = [
  "AutoSlim",
  "build_latency_table",
  "build_part",
  "check_run_config",
  "check_score_key",
  "check_search_type",
  "checkpoint_settings",
  "Checkpointer",
  "CheckpointSettings",
  "COMMON_CONFIG_KEYS",
  "compare_with_random",
  "DARTS",
  "darts_cost_table",
  "DSNAS",
  "latency_measure",
  "load_data",
  "make_sharded_population_scorer",
  "median_latency_ms",
  "nonfinite_policy",
  "plot_arch_weights",
  "plot_pareto",
  "plot_pruning",
  "plot_width_search",
  "Prune",
  "resumable_loop",
  "retrain_derived_network",
  "retrain_subnet",
  "run_fingerprints",
  "RunSupport",
  "SCORE_KEYS",
  "SearchAlgorithm",
  "SearchResult",
  "sharding_mesh",
  "SlimmableNetwork",
  "SPOS",
  "train_loop",
  "train_supernet",
]
