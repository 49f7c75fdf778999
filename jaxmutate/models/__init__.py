"""Searchable architectures (supernets) built from jaxmutate mutables.

Layout: ``shufflenet`` (the SPOS ShuffleNetV2 space), ``mobilenet_v2`` (the
AutoSlim MobileNetV2 channel space and its dynamic blocks), ``resnet`` (a small
ResNet channel space), ``small`` (small conv and MLP supernets), ``plain``
(``PlainCNN``, an ordinary Flax CNN with nothing searchable, for pruning), and DARTS in
four modules: ``darts`` (the operation set and the parts both networks share),
``darts_backbone`` (the supernet), ``darts_discrete`` (the network an exported
subnet derives) and ``darts_weights`` (the supernet's weights for that network).
"""

from jaxmutate.models.darts import DARTS_OPS as DARTS_OPS
from jaxmutate.models.darts import darts_op as darts_op
from jaxmutate.models.darts_backbone import DartsBackbone as DartsBackbone
from jaxmutate.models.darts_discrete import DartsDiscreteNetwork as DartsDiscreteNetwork
from jaxmutate.models.darts_discrete import darts_genotype as darts_genotype
from jaxmutate.models.darts_discrete import derive_discrete_network as derive_discrete_network
from jaxmutate.models.darts_weights import discrete_network_variables as discrete_network_variables
from jaxmutate.models.mobilenet_v2 import AUTOSLIM_CANDIDATES as AUTOSLIM_CANDIDATES
from jaxmutate.models.mobilenet_v2 import CHANNEL_UNIT_TYPES as CHANNEL_UNIT_TYPES
from jaxmutate.models.mobilenet_v2 import MOBILENET_V2_ARCH_SETTING as MOBILENET_V2_ARCH_SETTING
from jaxmutate.models.mobilenet_v2 import DynamicConvBN as DynamicConvBN
from jaxmutate.models.mobilenet_v2 import DynamicInvertedResidual as DynamicInvertedResidual
from jaxmutate.models.mobilenet_v2 import SearchableMobileNetV2 as SearchableMobileNetV2
from jaxmutate.models.plain import PlainCNN as PlainCNN
from jaxmutate.models.resnet import DynamicBasicBlock as DynamicBasicBlock
from jaxmutate.models.resnet import SearchableResNet as SearchableResNet
from jaxmutate.models.shufflenet import SPOS_CANDIDATES as SPOS_CANDIDATES
from jaxmutate.models.shufflenet import SearchableShuffleNetV2 as SearchableShuffleNetV2
from jaxmutate.models.small import ConvBNReLU as ConvBNReLU
from jaxmutate.models.small import DenseAct as DenseAct
from jaxmutate.models.small import SearchableConvNet as SearchableConvNet
from jaxmutate.models.small import SearchableMLP as SearchableMLP
from jaxmutate.models.small import identity as identity

__all__ = [
  "AUTOSLIM_CANDIDATES",
  "CHANNEL_UNIT_TYPES",
  "ConvBNReLU",
  "DARTS_OPS",
  "DartsBackbone",
  "DartsDiscreteNetwork",
  "DenseAct",
  "DynamicBasicBlock",
  "DynamicConvBN",
  "DynamicInvertedResidual",
  "MOBILENET_V2_ARCH_SETTING",
  "PlainCNN",
  "SPOS_CANDIDATES",
  "SearchableConvNet",
  "SearchableMLP",
  "SearchableMobileNetV2",
  "SearchableResNet",
  "SearchableShuffleNetV2",
  "darts_genotype",
  "darts_op",
  "derive_discrete_network",
  "discrete_network_variables",
  "identity",
]
