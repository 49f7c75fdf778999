"""The differentiable module mutator (DARTS-style architecture logits)."""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any, ClassVar

import jax
import jax.numpy as jnp

from jaxmutate._typing import Choices, GroupChoices, PRNGKey
from jaxmutate.mutables._diff import DiffMutableModule
from jaxmutate.mutators._base import ModuleMutator
from jaxmutate.registry import MODELS


@MODELS.register_module()
class DiffModuleMutator(ModuleMutator):
  """Manages differentiable ops and routes; one logit vector per search group.

  Architecture parameters are ``{group id: logits}``, a pytree you optimise
  with your own optax optimiser. ``set_choices(arch_params)`` hands each
  mutable its group's logits; ``sample_choices(arch_params)`` derives the
  discrete subnet (argmax for ops, the top ``num_chosen`` edges for routes),
  which ``export_fix_subnet`` writes out.

  Example:
    >>> import jax, jax.numpy as jnp, flax.linen as nn
    >>> import jaxmutate as jm
    >>> class Net(nn.Module):
    ...   @nn.compact
    ...   def __call__(self, x, choices):
    ...     return jm.DiffMutableOP({"a": nn.Dense(2), "b": nn.Dense(2)}, name="mixed")(x, choices)
    >>> variables = Net().init(jax.random.key(0), jnp.ones((1, 3)), None)
    >>> mutator = jm.DiffModuleMutator().prepare_from_supernet(variables)
    >>> arch_params = mutator.init_arch_params(jax.random.key(1))
    >>> jax.tree.map(jnp.shape, arch_params)
    {0: (2,)}
    >>> Net().apply(variables, jnp.ones((1, 3)), mutator.set_choices(arch_params)).shape
    (1, 2)
    >>> mutator.export_fix_subnet(mutator.sample_choices({0: jnp.array([0.1, 0.9])}))
    {'mixed': {'chosen': 'b'}}
  """

  mutable_class_type: ClassVar[type] = DiffMutableModule

  def init_arch_params(self, key: PRNGKey, stddev: float = 1e-3) -> dict[int, jax.Array]:
    """Architecture logits for every group: normal with std ``stddev`` (1e-3).

    Args:
      key: PRNG key, split into one key per group in group order.
      stddev: the standard deviation of the initial logits.

    Returns:
      ``{group id: float32 logits of shape (number of candidates,)}``.
    """
    groups = self.search_groups
    keys = jax.random.split(key, len(groups))
    return {g: stddev * jax.random.normal(keys[g], (self.group_spec(g).num_choices,), jnp.float32) for g in groups}

  def set_choices(self, arch_params: Mapping[int, Any]) -> Choices:
    """Gives each mutable its group's logits (or a discrete choice as -inf masked logits)."""
    return super().set_choices(arch_params)

  def max_choices(self) -> GroupChoices:
    """Not defined: differentiable groups have no largest choice.

    Raises:
      ValueError: always; use :meth:`sample_choices` (argmax) instead.
    """
    raise ValueError("DiffModuleMutator groups have no max choice; use sample_choices(arch_params) (the argmax).")

  def min_choices(self) -> GroupChoices:
    """Not defined: differentiable groups have no smallest choice.

    Raises:
      ValueError: always; use :meth:`sample_choices` (argmax) instead.
    """
    raise ValueError("DiffModuleMutator groups have no min choice; use sample_choices(arch_params) (the argmax).")

  def sample_choices(self, arch_params: Mapping[int, Any], kind: str = "argmax") -> GroupChoices:  # type: ignore[override]
    """The discrete subnet the logits select: argmax ops, top-``num_chosen`` routes.

    Args:
      arch_params: ``{group id: logits}``.
      kind: only ``"argmax"``.

    Returns:
      ``{group id: int32 index}`` for ops and ``{group id: int32[num_chosen]}``
      for routes; jit-able.

    Raises:
      KeyError / ValueError: as for :meth:`set_choices`.
    """
    if kind != "argmax":
      raise ValueError(f"DiffModuleMutator.sample_choices derives the argmax subnet; kind must be 'argmax', got {kind!r}.")
    checked = self.check_group_choices(arch_params)
    return {g: self.group_spec(g).mutable_type.discrete_choice(self.group_spec(g), checked[g]) for g in checked}
