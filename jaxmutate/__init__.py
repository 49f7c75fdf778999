"""jaxmutate: functional neural architecture search and pruning on JAX + Flax.

Mutables are Flax modules that take their choices as an explicit pytree input;
mutators are pure functions of a supernet's variable tree that group, sample,
set and export those choices. A subnet is just a dict of arrays threaded
through ``model.apply``.
"""

from jaxmutate import algorithms as algorithms
from jaxmutate import analysis as analysis
from jaxmutate import channels as channels
from jaxmutate import dynamic as dynamic
from jaxmutate import errors as errors
from jaxmutate import export as export
from jaxmutate import mmrazor_compat as mmrazor_compat
from jaxmutate import models as models
from jaxmutate import mutables as mutables
from jaxmutate import mutators as mutators
from jaxmutate import ops as ops
from jaxmutate import pruning as pruning
from jaxmutate import runners as runners
from jaxmutate import runtime as runtime
from jaxmutate import search as search
from jaxmutate import sharding as sharding
from jaxmutate import spaces as spaces
from jaxmutate import typing as typing
from jaxmutate.algorithms import calibrate_batch_stats as calibrate_batch_stats
from jaxmutate.algorithms import init_supernet as init_supernet
from jaxmutate.algorithms import kl_divergence as kl_divergence
from jaxmutate.algorithms import make_calibrated_scorer as make_calibrated_scorer
from jaxmutate.algorithms import make_sandwich_train_step as make_sandwich_train_step
from jaxmutate.algorithms import make_slimmable_train_step as make_slimmable_train_step
from jaxmutate.channels import ChannelSpace as ChannelSpace
from jaxmutate.channels import DerivedMutable as DerivedMutable
from jaxmutate.channels import L1MutableChannelUnit as L1MutableChannelUnit
from jaxmutate.channels import MutableChannelUnit as MutableChannelUnit
from jaxmutate.channels import OneShotMutableChannelUnit as OneShotMutableChannelUnit
from jaxmutate.channels import SequentialMutableChannelUnit as SequentialMutableChannelUnit
from jaxmutate.channels import SlimmableChannelUnit as SlimmableChannelUnit
from jaxmutate.channels import make_divisible as make_divisible
from jaxmutate.data import build_dataset as build_dataset
from jaxmutate.dynamic import dynamic_costs as dynamic_costs
from jaxmutate.export import FixedSubnet as FixedSubnet
from jaxmutate.export import export_subnet as export_subnet
from jaxmutate.export import load_subnet as load_subnet
from jaxmutate.export import save_subnet as save_subnet
from jaxmutate.models import DartsBackbone as DartsBackbone
from jaxmutate.models import SearchableConvNet as SearchableConvNet
from jaxmutate.models import SearchableMLP as SearchableMLP
from jaxmutate.models import SearchableMobileNetV2 as SearchableMobileNetV2
from jaxmutate.models import SearchableResNet as SearchableResNet
from jaxmutate.models import SearchableShuffleNetV2 as SearchableShuffleNetV2
from jaxmutate.mutables import MUTABLES_COLLECTION as MUTABLES_COLLECTION
from jaxmutate.mutables import BaseMutable as BaseMutable
from jaxmutate.mutables import ChoiceRoute as ChoiceRoute
from jaxmutate.mutables import DiffChoiceRoute as DiffChoiceRoute
from jaxmutate.mutables import DiffMutableModule as DiffMutableModule
from jaxmutate.mutables import DiffMutableOP as DiffMutableOP
from jaxmutate.mutables import GumbelChoiceRoute as GumbelChoiceRoute
from jaxmutate.mutables import GumbelMutableOP as GumbelMutableOP
from jaxmutate.mutables import MutableSpec as MutableSpec
from jaxmutate.mutables import MutableValue as MutableValue
from jaxmutate.mutables import OneHotMutableOP as OneHotMutableOP
from jaxmutate.mutables import OneShotMutableModule as OneShotMutableModule
from jaxmutate.mutables import OneShotMutableOP as OneShotMutableOP
from jaxmutate.mutables import OneShotMutableValue as OneShotMutableValue
from jaxmutate.mutables import OneShotProbMutableOP as OneShotProbMutableOP
from jaxmutate.mutators import BaseMutator as BaseMutator
from jaxmutate.mutators import ChannelMutator as ChannelMutator
from jaxmutate.mutators import ChannelUnitInfo as ChannelUnitInfo
from jaxmutate.mutators import DiffModuleMutator as DiffModuleMutator
from jaxmutate.mutators import ModuleMutator as ModuleMutator
from jaxmutate.mutators import NasMutator as NasMutator
from jaxmutate.mutators import OneShotChannelMutator as OneShotChannelMutator
from jaxmutate.mutators import OneShotModuleMutator as OneShotModuleMutator
from jaxmutate.mutators import SlimmableChannelMutator as SlimmableChannelMutator
from jaxmutate.registry import DATASETS as DATASETS
from jaxmutate.registry import MODELS as MODELS
from jaxmutate.registry import Registry as Registry
from jaxmutate.registry import build as build
from jaxmutate.registry import load_config as load_config
from jaxmutate.registry import merge_cfg_options as merge_cfg_options
from jaxmutate.registry import merge_config as merge_config
from jaxmutate.resources import ResourceTable as ResourceTable
from jaxmutate.resources import build_resource_table as build_resource_table
from jaxmutate.resources import count_params as count_params
from jaxmutate.resources import estimate_resources as estimate_resources
from jaxmutate.runners import DARTS as DARTS
from jaxmutate.runners import SPOS as SPOS
from jaxmutate.runners import AutoSlim as AutoSlim
from jaxmutate.runners import SlimmableNetwork as SlimmableNetwork
from jaxmutate.search import AutoSlimGreedySearchLoop as AutoSlimGreedySearchLoop
from jaxmutate.search import EvolutionSearchLoop as EvolutionSearchLoop
from jaxmutate.search import GreedySearchResult as GreedySearchResult
from jaxmutate.subnet import read_fix_subnet as read_fix_subnet
from jaxmutate.subnet import save_fix_subnet as save_fix_subnet

register_module = MODELS.register_module
"""``@jm.register_module()`` registers a class in :data:`MODELS` (an alias of ``MODELS.register_module``)."""

__version__ = "0.1.0"

__all__ = [
  "export",
  "calibrate_batch_stats",
  "kl_divergence",
  "make_calibrated_scorer",
  "make_sandwich_train_step",
  "make_slimmable_train_step",
  "dynamic_costs",
  "FixedSubnet",
  "export_subnet",
  "load_subnet",
  "save_subnet",
  "SearchableMobileNetV2",
  "SearchableResNet",
  "AutoSlim",
  "SlimmableNetwork",
  "AutoSlimGreedySearchLoop",
  "GreedySearchResult",
  "algorithms",
  "analysis",
  "BaseMutable",
  "BaseMutator",
  "build",
  "build_dataset",
  "build_resource_table",
  "channels",
  "ChannelSpace",
  "ChoiceRoute",
  "count_params",
  "DARTS",
  "DartsBackbone",
  "DATASETS",
  "DerivedMutable",
  "DiffChoiceRoute",
  "DiffModuleMutator",
  "DiffMutableModule",
  "DiffMutableOP",
  "dynamic",
  "errors",
  "estimate_resources",
  "EvolutionSearchLoop",
  "GumbelChoiceRoute",
  "GumbelMutableOP",
  "init_supernet",
  "L1MutableChannelUnit",
  "load_config",
  "make_divisible",
  "merge_cfg_options",
  "merge_config",
  "mmrazor_compat",
  "MODELS",
  "models",
  "ModuleMutator",
  "MutableChannelUnit",
  "mutables",
  "MUTABLES_COLLECTION",
  "MutableSpec",
  "MutableValue",
  "mutators",
  "NasMutator",
  "ChannelMutator",
  "ChannelUnitInfo",
  "OneShotChannelMutator",
  "SlimmableChannelMutator",
  "OneHotMutableOP",
  "OneShotModuleMutator",
  "OneShotMutableChannelUnit",
  "OneShotMutableModule",
  "OneShotMutableOP",
  "OneShotMutableValue",
  "OneShotProbMutableOP",
  "ops",
  "pruning",
  "read_fix_subnet",
  "register_module",
  "Registry",
  "ResourceTable",
  "runners",
  "save_fix_subnet",
  "search",
  "sharding",
  "SearchableConvNet",
  "SearchableMLP",
  "SearchableShuffleNetV2",
  "SequentialMutableChannelUnit",
  "SlimmableChannelUnit",
  "spaces",
  "SPOS",
  "typing",
]
