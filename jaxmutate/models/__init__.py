"""Searchable architectures (supernets) built from jaxmutate mutables."""

from jaxmutate.models.shufflenet import SPOS_CANDIDATES as SPOS_CANDIDATES
from jaxmutate.models.shufflenet import SearchableShuffleNetV2 as SearchableShuffleNetV2
from jaxmutate.models.small import ConvBNReLU as ConvBNReLU
from jaxmutate.models.small import DenseAct as DenseAct
from jaxmutate.models.small import SearchableConvNet as SearchableConvNet
from jaxmutate.models.small import SearchableMLP as SearchableMLP
from jaxmutate.models.small import identity as identity

__all__ = [
    "ConvBNReLU",
    "DenseAct",
    "SPOS_CANDIDATES",
    "SearchableConvNet",
    "SearchableMLP",
    "SearchableShuffleNetV2",
    "identity",
]
