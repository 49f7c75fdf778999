"""The mutator over every NAS mutable kind at once (MMRazor 1.x's ``NasMutator``)."""

from __future__ import annotations

from typing import ClassVar

from jaxmutate.mutables import BaseMutable
from jaxmutate.mutators._base import ModuleMutator
from jaxmutate.registry import MODELS


@MODELS.register_module()
class NasMutator(ModuleMutator):
  """Manages one-shot ops, values, differentiable ops and routes together.

  Every group choice is discrete here: ``sample_choices(key, kind)`` draws an
  index (routes: ``num_chosen`` distinct edge indices), and ``set_choices``
  hands it to every mutable of the group, so a differentiable op runs only its
  chosen candidate (a route only its chosen edges), exactly as a one-shot op
  does. Differentiable groups also accept logit vectors in ``set_choices``.

  Example:
    >>> import jax, jax.numpy as jnp, flax.linen as nn
    >>> import jaxmutate as jm
    >>> class Net(nn.Module):
    ...   @nn.compact
    ...   def __call__(self, x, choices):
    ...     width = jm.OneShotMutableValue([1, 2], name="scale")(choices)
    ...     return jm.OneShotMutableOP({"a": nn.Dense(2), "b": nn.Dense(2)}, name="op")(x * width, choices)
    >>> variables = Net().init(jax.random.key(0), jnp.ones((1, 3)), None)
    >>> mutator = jm.NasMutator().prepare_from_supernet(variables)
    >>> mutator.search_groups
    {0: ('scale',), 1: ('op',)}
  """

  mutable_class_type: ClassVar[type] = BaseMutable
