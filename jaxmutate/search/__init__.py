"""Search loops over subnets: evolution (SPOS) and AutoSlim's greedy slimming; constrained random baselines."""

from jaxmutate.search._evolution import EvolutionResult as EvolutionResult
from jaxmutate.search._evolution import EvolutionSearchLoop as EvolutionSearchLoop
from jaxmutate.search._evolution import Population as Population
from jaxmutate.search._evolution import admissible as admissible
from jaxmutate.search._evolution import member as member
from jaxmutate.search._greedy import AutoSlimGreedySearchLoop as AutoSlimGreedySearchLoop
from jaxmutate.search._greedy import GreedySearchResult as GreedySearchResult
from jaxmutate.search._greedy import GreedyStep as GreedyStep
from jaxmutate.search._greedy import GreedySubnet as GreedySubnet
from jaxmutate.search._random import ConstrainedSample as ConstrainedSample
from jaxmutate.search._random import RankReport as RankReport
from jaxmutate.search._random import rank_against as rank_against
from jaxmutate.search._random import sample_constrained as sample_constrained

__all__ = [
  "AutoSlimGreedySearchLoop",
  "ConstrainedSample",
  "EvolutionResult",
  "EvolutionSearchLoop",
  "GreedySearchResult",
  "GreedyStep",
  "GreedySubnet",
  "Population",
  "RankReport",
  "admissible",
  "member",
  "rank_against",
  "sample_constrained",
]
