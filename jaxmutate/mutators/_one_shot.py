"""The one-shot module mutator (SPOS-style uniform single-path sampling)."""

from __future__ import annotations

from typing import ClassVar

from jaxmutate.mutables import MutableValue, OneShotMutableModule
from jaxmutate.mutators._base import ModuleMutator
from jaxmutate.registry import MODELS


@MODELS.register_module()
class OneShotModuleMutator(ModuleMutator):
  """Manages one-shot ops and value mutables; samples uniformly (or by ``choice_probs``).

  Example:
    >>> import jax, jax.numpy as jnp, flax.linen as nn
    >>> import jaxmutate as jm
    >>> class Net(nn.Module):
    ...   @nn.compact
    ...   def __call__(self, x, choices):
    ...     x = jm.OneShotMutableOP({"a": nn.Dense(4), "b": nn.Dense(4)}, name="block1")(x, choices)
    ...     return jm.OneShotMutableOP({"a": nn.Dense(4), "b": nn.Dense(4)}, name="block2")(x, choices)
    >>> variables = Net().init(jax.random.key(0), jnp.ones((1, 4)), None)
    >>> mutator = jm.OneShotModuleMutator(custom_group=[["block1", "block2"]])
    >>> mutator = mutator.prepare_from_supernet(variables)
    >>> mutator.search_groups
    {0: ('block1', 'block2')}
    >>> choices = mutator.set_choices(mutator.sample_choices(jax.random.key(1)))
    >>> sorted(choices)
    ['block1', 'block2']
  """

  mutable_class_type: ClassVar[tuple[type, ...]] = (OneShotMutableModule, MutableValue)
