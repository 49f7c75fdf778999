"""Mutators: pure managers that group mutables and produce or apply choices."""

from jaxmutate.mutators._base import BaseMutator as BaseMutator
from jaxmutate.mutators._base import ModuleMutator as ModuleMutator
from jaxmutate.mutators._channel import PARSE_TYPES as PARSE_TYPES
from jaxmutate.mutators._channel import ChannelMutator as ChannelMutator
from jaxmutate.mutators._channel import OneShotChannelMutator as OneShotChannelMutator
from jaxmutate.mutators._channel import SlimmableChannelMutator as SlimmableChannelMutator
from jaxmutate.mutators._diff import DiffModuleMutator as DiffModuleMutator
from jaxmutate.mutators._grouping import build_search_groups as build_search_groups
from jaxmutate.mutators._nas import NasMutator as NasMutator
from jaxmutate.mutators._one_shot import OneShotModuleMutator as OneShotModuleMutator
from jaxmutate.mutators._units import ChannelUnitInfo as ChannelUnitInfo

__all__ = [
  "PARSE_TYPES",
  "BaseMutator",
  "ChannelMutator",
  "ChannelUnitInfo",
  "DiffModuleMutator",
  "ModuleMutator",
  "NasMutator",
  "OneShotChannelMutator",
  "OneShotModuleMutator",
  "SlimmableChannelMutator",
  "build_search_groups",
]
