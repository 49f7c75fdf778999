"""Search over subnets: strategies (random, grid, aging and MMRazor evolution, NSGA-II) on device, and host loops.

Strategies are pure ``init`` / ``ask`` / ``tell`` functions over pytree state
(:class:`Strategy`); :func:`make_search_fn` runs one as a jitted ``lax.scan``
over generations. :class:`EvolutionSearchLoop` is MMRazor's loop (host or
device), :class:`AutoSlimGreedySearchLoop` AutoSlim's greedy slimming, and
:func:`sample_constrained` / :func:`rank_against` the constrained random
baseline.
"""

from jaxmutate.search._evolution import EvolutionResult as EvolutionResult
from jaxmutate.search._evolution import EvolutionSearchLoop as EvolutionSearchLoop
from jaxmutate.search._evolution import Population as Population
from jaxmutate.search._evolution import admissible as admissible
from jaxmutate.search._evolution import member as member
from jaxmutate.search._greedy import AutoSlimGreedySearchLoop as AutoSlimGreedySearchLoop
from jaxmutate.search._greedy import GreedySearchResult as GreedySearchResult
from jaxmutate.search._greedy import GreedyStep as GreedyStep
from jaxmutate.search._greedy import GreedySubnet as GreedySubnet
from jaxmutate.search._nsga2 import NSGA2State as NSGA2State
from jaxmutate.search._nsga2 import crowding_distance as crowding_distance
from jaxmutate.search._nsga2 import nsga2 as nsga2
from jaxmutate.search._nsga2 import pareto_front as pareto_front
from jaxmutate.search._nsga2 import pareto_ranks as pareto_ranks
from jaxmutate.search._population import make_constraint as make_constraint
from jaxmutate.search._random import ConstrainedSample as ConstrainedSample
from jaxmutate.search._random import RankReport as RankReport
from jaxmutate.search._random import rank_against as rank_against
from jaxmutate.search._random import sample_constrained as sample_constrained
from jaxmutate.search._strategies import AgingEvolutionState as AgingEvolutionState
from jaxmutate.search._strategies import EvolutionState as EvolutionState
from jaxmutate.search._strategies import GridSearchState as GridSearchState
from jaxmutate.search._strategies import RandomSearchState as RandomSearchState
from jaxmutate.search._strategies import SearchStats as SearchStats
from jaxmutate.search._strategies import Strategy as Strategy
from jaxmutate.search._strategies import check_search_state as check_search_state
from jaxmutate.search._strategies import evolution as evolution
from jaxmutate.search._strategies import grid_search as grid_search
from jaxmutate.search._strategies import grid_size as grid_size
from jaxmutate.search._strategies import init_stats as init_stats
from jaxmutate.search._strategies import make_generation_step as make_generation_step
from jaxmutate.search._strategies import make_search_fn as make_search_fn
from jaxmutate.search._strategies import random_search as random_search
from jaxmutate.search._strategies import regularized_evolution as regularized_evolution
from jaxmutate.search._strategies import run_strategy as run_strategy
from jaxmutate.search._strategies import space_choices as space_choices
from jaxmutate.search._strategies import stats_report as stats_report
from jaxmutate.search._strategies import update_stats as update_stats

__all__ = [
  "AgingEvolutionState",
  "AutoSlimGreedySearchLoop",
  "ConstrainedSample",
  "EvolutionResult",
  "EvolutionSearchLoop",
  "EvolutionState",
  "GreedySearchResult",
  "GreedyStep",
  "GreedySubnet",
  "GridSearchState",
  "NSGA2State",
  "Population",
  "RandomSearchState",
  "RankReport",
  "SearchStats",
  "Strategy",
  "admissible",
  "check_search_state",
  "crowding_distance",
  "evolution",
  "grid_search",
  "grid_size",
  "init_stats",
  "make_constraint",
  "make_generation_step",
  "make_search_fn",
  "member",
  "nsga2",
  "pareto_front",
  "pareto_ranks",
  "random_search",
  "rank_against",
  "regularized_evolution",
  "run_strategy",
  "sample_constrained",
  "space_choices",
  "stats_report",
  "update_stats",
]
