"""Mutables: Flax modules whose behaviour is chosen by an explicit ``choices`` input."""

from jaxmutate.mutables._base import MUTABLES_COLLECTION as MUTABLES_COLLECTION
from jaxmutate.mutables._base import BaseMutable as BaseMutable
from jaxmutate.mutables._base import MutableSpec as MutableSpec
from jaxmutate.mutables._diff import ChoiceRoute as ChoiceRoute
from jaxmutate.mutables._diff import DiffChoiceRoute as DiffChoiceRoute
from jaxmutate.mutables._diff import DiffMutableModule as DiffMutableModule
from jaxmutate.mutables._diff import DiffMutableOP as DiffMutableOP
from jaxmutate.mutables._diff import GumbelChoiceRoute as GumbelChoiceRoute
from jaxmutate.mutables._diff import GumbelMutableOP as GumbelMutableOP
from jaxmutate.mutables._diff import OneHotMutableOP as OneHotMutableOP
from jaxmutate.mutables._diff import GUMBEL_RNG as GUMBEL_RNG
from jaxmutate.mutables._diff import check_temperature as check_temperature
from jaxmutate.mutables._diff import gumbel_softmax as gumbel_softmax
from jaxmutate.mutables._diff import gumbel_temperature_schedule as gumbel_temperature_schedule
from jaxmutate.mutables._dispatch import switch as switch
from jaxmutate.mutables._op import OneShotMutableModule as OneShotMutableModule
from jaxmutate.mutables._op import OneShotMutableOP as OneShotMutableOP
from jaxmutate.mutables._op import OneShotProbMutableOP as OneShotProbMutableOP
from jaxmutate.mutables._value import MutableValue as MutableValue
from jaxmutate.mutables._value import OneShotMutableValue as OneShotMutableValue

__all__ = [
    "BaseMutable",
    "GUMBEL_RNG",
    "check_temperature",
    "ChoiceRoute",
    "DiffChoiceRoute",
    "DiffMutableModule",
    "DiffMutableOP",
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
    "gumbel_softmax",
    "gumbel_temperature_schedule",
    "switch",
]
