"""Search loops over subnets: evolution (SPOS) and AutoSlim's greedy slimming."""

from jaxmutate.search._evolution import EvolutionResult as EvolutionResult
from jaxmutate.search._evolution import EvolutionSearchLoop as EvolutionSearchLoop
from jaxmutate.search._evolution import Population as Population
from jaxmutate.search._evolution import member as member
from jaxmutate.search._greedy import AutoSlimGreedySearchLoop as AutoSlimGreedySearchLoop
from jaxmutate.search._greedy import GreedySearchResult as GreedySearchResult
from jaxmutate.search._greedy import GreedyStep as GreedyStep
from jaxmutate.search._greedy import GreedySubnet as GreedySubnet

__all__ = [
  "AutoSlimGreedySearchLoop",
  "EvolutionResult",
  "EvolutionSearchLoop",
  "GreedySearchResult",
  "GreedyStep",
  "GreedySubnet",
  "Population",
  "member",
]
