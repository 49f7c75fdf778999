"""Mutables: Flax modules whose behaviour is chosen by an explicit ``choices`` input.

Layout: ``_base`` (the spec and the base class), ``_candidates`` (mutables over
named candidate modules), ``_op`` (one-shot ops), ``_value`` (value mutables),
``_diff_op`` (differentiable ops), ``_route`` (input-selection routes),
``_gumbel`` (Gumbel-softmax utilities) and ``_dispatch`` (the switch that runs
one candidate cheaply under ``vmap``). What a choice means lives in
:mod:`jaxmutate.spaces`.
"""

from jaxmutate.mutables._base import MUTABLES_COLLECTION as MUTABLES_COLLECTION
from jaxmutate.mutables._base import BaseMutable as BaseMutable
from jaxmutate.mutables._base import MutableSpec as MutableSpec
from jaxmutate.mutables._base import next_definition_order as next_definition_order
from jaxmutate.mutables._candidates import CandidateMutable as CandidateMutable
from jaxmutate.mutables._diff_op import DiffMutableModule as DiffMutableModule
from jaxmutate.mutables._diff_op import DiffMutableOP as DiffMutableOP
from jaxmutate.mutables._diff_op import GumbelMutableOP as GumbelMutableOP
from jaxmutate.mutables._diff_op import OneHotMutableOP as OneHotMutableOP
from jaxmutate.mutables._dispatch import switch as switch
from jaxmutate.mutables._gumbel import GUMBEL_RNG as GUMBEL_RNG
from jaxmutate.mutables._gumbel import check_temperature as check_temperature
from jaxmutate.mutables._gumbel import gumbel_softmax as gumbel_softmax
from jaxmutate.mutables._gumbel import gumbel_temperature_schedule as gumbel_temperature_schedule
from jaxmutate.mutables._op import OneShotMutableModule as OneShotMutableModule
from jaxmutate.mutables._op import OneShotMutableOP as OneShotMutableOP
from jaxmutate.mutables._op import OneShotProbMutableOP as OneShotProbMutableOP
from jaxmutate.mutables._route import ChoiceRoute as ChoiceRoute
from jaxmutate.mutables._route import DiffChoiceRoute as DiffChoiceRoute
from jaxmutate.mutables._route import GumbelChoiceRoute as GumbelChoiceRoute
from jaxmutate.mutables._value import MutableValue as MutableValue
from jaxmutate.mutables._value import OneShotMutableValue as OneShotMutableValue

__all__ = [
  "next_definition_order",
  "BaseMutable",
  "CandidateMutable",
  "ChoiceRoute",
  "DiffChoiceRoute",
  "DiffMutableModule",
  "DiffMutableOP",
  "GUMBEL_RNG",
  "GumbelChoiceRoute",
  "GumbelMutableOP",
  "MUTABLES_COLLECTION",
  "MutableSpec",
  "MutableValue",
  "OneHotMutableOP",
  "OneShotMutableModule",
  "OneShotMutableOP",
  "OneShotMutableValue",
  "OneShotProbMutableOP",
  "check_temperature",
  "gumbel_softmax",
  "gumbel_temperature_schedule",
  "switch",
]
