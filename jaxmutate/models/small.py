"""Small searchable networks for tests, notebooks and quick experiments."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any

import flax.linen as nn
import jax

from jaxmutate.errors import ConfigError
from jaxmutate.mutables import OneShotMutableOP
from jaxmutate.registry import MODELS


def identity(x: jax.Array, train: bool = False) -> jax.Array:
  """The ``skip`` candidate: returns its input (no parameters).

  Example:
    >>> import jax.numpy as jnp
    >>> from jaxmutate.models import identity
    >>> identity(jnp.array([1.0, -2.0]), train=True).tolist()
    [1.0, -2.0]
  """
  del train
  return x


@MODELS.register_module()
class ConvBNReLU(nn.Module):
  """``k×k`` convolution (SAME, no bias), BatchNorm and ReLU.

  Attributes:
    features: output channels.
    kernel_size: odd kernel size.
    stride: spatial stride.

  Example:
    >>> import jax, jax.numpy as jnp
    >>> from jaxmutate.models import ConvBNReLU
    >>> block = ConvBNReLU(4, kernel_size=3)
    >>> variables = block.init(jax.random.key(0), jnp.ones((1, 8, 8, 2)))
    >>> block.apply(variables, jnp.ones((1, 8, 8, 2))).shape
    (1, 8, 8, 4)
  """

  features: int
  kernel_size: int = 3
  stride: int = 1

  @nn.compact
  def __call__(self, x: jax.Array, train: bool = False) -> jax.Array:
    x = nn.Conv(self.features, (self.kernel_size, self.kernel_size), (self.stride, self.stride), use_bias=False)(x)
    x = nn.BatchNorm(use_running_average=not train, momentum=0.9, epsilon=1e-5)(x)
    return nn.relu(x)


@MODELS.register_module()
class DenseAct(nn.Module):
  """A Dense layer followed by a named activation.

  Attributes:
    features: output width.
    activation: a name in ``flax.linen`` (``relu``, ``gelu``, ``tanh``, ...).

  Example:
    >>> import jax, jax.numpy as jnp
    >>> from jaxmutate.models import DenseAct
    >>> layer = DenseAct(3, "tanh")
    >>> layer.apply(layer.init(jax.random.key(0), jnp.ones((1, 2))), jnp.ones((1, 2))).shape
    (1, 3)
  """

  features: int
  activation: str = "relu"

  @nn.compact
  def __call__(self, x: jax.Array, train: bool = False) -> jax.Array:
    del train
    activation = getattr(nn, self.activation, None)
    if not callable(activation):
      raise ConfigError(
        f"DenseAct: unknown activation {self.activation!r}; use a flax.linen function name like 'relu'."
      )
    return activation(nn.Dense(self.features)(x))


@MODELS.register_module()
class SearchableConvNet(nn.Module):
  """A plain searchable convnet: each layer picks conv3/conv5/conv7/skip.

  A stem conv sets the width, ``num_layers`` :class:`OneShotMutableOP` layers
  named ``layers.{i}`` choose among conv-bn-relu blocks of kernel 3, 5, 7 and
  an identity, then global average pooling and a Dense head.

  Attributes:
    num_classes: output logits.
    width: channels of every layer.
    num_layers: searchable layers.
    kernel_sizes: the conv candidates' kernel sizes.
    with_skip: add an identity candidate named ``skip``.

  Example:
    >>> import jax, jax.numpy as jnp
    >>> import jaxmutate as jm
    >>> from jaxmutate.models import SearchableConvNet
    >>> net = SearchableConvNet(num_classes=10, width=4, num_layers=2)
    >>> x = jnp.ones((2, 8, 8, 1))
    >>> variables = net.init(jax.random.key(0), x, None)
    >>> mutator = jm.OneShotModuleMutator().prepare_from_supernet(variables)
    >>> choices = mutator.set_choices(mutator.sample_choices(jax.random.key(1)))
    >>> net.apply(variables, x, choices).shape
    (2, 10)
  """

  num_classes: int = 10
  width: int = 16
  num_layers: int = 4
  kernel_sizes: Sequence[int] = (3, 5, 7)
  with_skip: bool = True

  def candidates(self) -> dict[str, Any]:
    ops: dict[str, Any] = {f"conv{k}": ConvBNReLU(self.width, k) for k in self.kernel_sizes}
    if self.with_skip:
      ops["skip"] = identity
    return ops

  @nn.compact
  def __call__(self, x: jax.Array, choices: Mapping[str, Any] | None, train: bool = False) -> jax.Array:
    x = ConvBNReLU(self.width, 3, name="stem")(x, train=train)
    for i in range(self.num_layers):
      x = OneShotMutableOP(self.candidates(), name=f"layers.{i}")(x, choices, train=train)
    x = x.mean(axis=(1, 2))
    return nn.Dense(self.num_classes, name="head")(x)


@MODELS.register_module()
class SearchableMLP(nn.Module):
  """A searchable MLP: each hidden layer picks its activation (or skip).

  Attributes:
    num_classes: output logits.
    width: hidden width.
    num_layers: searchable hidden layers, named ``layers.{i}``.
    activations: the candidate activations.

  Example:
    >>> import jax, jax.numpy as jnp
    >>> from jaxmutate.models import SearchableMLP
    >>> net = SearchableMLP(num_classes=3, width=8, num_layers=2)
    >>> variables = net.init(jax.random.key(0), jnp.ones((2, 5)), None)
    >>> sorted(variables["params"]["layers.0"])
    ['gelu', 'relu', 'tanh']
  """

  num_classes: int = 10
  width: int = 32
  num_layers: int = 3
  activations: Sequence[str] = ("relu", "gelu", "tanh")
  with_skip: bool = True

  @nn.compact
  def __call__(self, x: jax.Array, choices: Mapping[str, Any] | None, train: bool = False) -> jax.Array:
    x = x.reshape((x.shape[0], -1))
    x = nn.relu(nn.Dense(self.width, name="stem")(x))
    for i in range(self.num_layers):
      ops: dict[str, Any] = {name: DenseAct(self.width, name) for name in self.activations}
      if self.with_skip:
        ops["skip"] = identity
      x = OneShotMutableOP(ops, name=f"layers.{i}")(x, choices, train=train)
    return nn.Dense(self.num_classes, name="head")(x)
