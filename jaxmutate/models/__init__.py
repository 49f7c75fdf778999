"""Searchable architectures (supernets) built from jaxmutate mutables."""

from jaxmutate.models.darts import DARTS_OPS as DARTS_OPS
from jaxmutate.models.darts import DartsBackbone as DartsBackbone
from jaxmutate.models.darts import DartsDiscreteNetwork as DartsDiscreteNetwork
from jaxmutate.models.darts import darts_genotype as darts_genotype
from jaxmutate.models.darts import darts_op as darts_op
from jaxmutate.models.darts import derive_discrete_network as derive_discrete_network
from jaxmutate.models.darts import discrete_network_variables as discrete_network_variables
from jaxmutate.models.shufflenet import SPOS_CANDIDATES as SPOS_CANDIDATES
from jaxmutate.models.shufflenet import SearchableShuffleNetV2 as SearchableShuffleNetV2
from jaxmutate.models.small import ConvBNReLU as ConvBNReLU
from jaxmutate.models.small import DenseAct as DenseAct
from jaxmutate.models.small import SearchableConvNet as SearchableConvNet
from jaxmutate.models.small import SearchableMLP as SearchableMLP
from jaxmutate.models.small import identity as identity

__all__ = [
    "ConvBNReLU",
    "DARTS_OPS",
    "DartsBackbone",
    "DartsDiscreteNetwork",
    "DenseAct",
    "SPOS_CANDIDATES",
    "SearchableConvNet",
    "SearchableMLP",
    "SearchableShuffleNetV2",
    "darts_genotype",
    "darts_op",
    "derive_discrete_network",
    "discrete_network_variables",
    "identity",
]
