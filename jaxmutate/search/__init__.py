"""Search loops over subnets."""

from jaxmutate.search._evolution import EvolutionResult as EvolutionResult
from jaxmutate.search._evolution import EvolutionSearchLoop as EvolutionSearchLoop
from jaxmutate.search._evolution import Population as Population
from jaxmutate.search._evolution import member as member

__all__ = ["EvolutionResult", "EvolutionSearchLoop", "Population", "member"]
