"""Mutators: pure managers that group mutables and produce or apply choices."""

from jaxmutate.mutators._base import BaseMutator as BaseMutator
from jaxmutate.mutators._base import ModuleMutator as ModuleMutator
from jaxmutate.mutators._diff import DiffModuleMutator as DiffModuleMutator
from jaxmutate.mutators._grouping import build_search_groups as build_search_groups
from jaxmutate.mutators._nas import NasMutator as NasMutator
from jaxmutate.mutators._one_shot import OneShotModuleMutator as OneShotModuleMutator

__all__ = [
  "BaseMutator",
  "DiffModuleMutator",
  "ModuleMutator",
  "NasMutator",
  "OneShotModuleMutator",
  "build_search_groups",
]
