"""The differentiable module mutator (DARTS-style architecture logits)."""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any, ClassVar

import jax

from jaxmutate.errors import ConfigError, SearchSpaceError
from jaxmutate.mutables import DiffMutableModule
from jaxmutate.mutators._base import ModuleMutator
from jaxmutate.registry import MODELS
from jaxmutate.spaces import LogitSpace
from jaxmutate.typing import Choices, GroupChoices, PRNGKey


@MODELS.register_module()
class DiffModuleMutator(ModuleMutator):
  """Manages differentiable ops and routes; one logit vector per search group.

  Architecture parameters are ``{group id: logits}``, a pytree you optimise
  with your own optax optimiser. ``set_choices(arch_params)`` hands each
  mutable its group's logits (a discrete group choice, an int32 index, makes
  the mutable run only that candidate). :meth:`derive_choices` gives the
  discrete subnet the logits select (argmax for ops, the top ``num_chosen``
  edges for routes), which ``export_fix_subnet`` writes out.

  ``sample_choices`` keeps the base signature: given a PRNG key it draws a
  random discrete subnet (``kind="random"``); given architecture parameters
  (SPEC's ``sample_choices(arch_params)``) it is :meth:`derive_choices`.

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
    >>> mutator.export_fix_subnet(mutator.derive_choices({0: jnp.array([0.1, 0.9])}))
    {'mixed': {'chosen': 'b'}}
    >>> mutator.sample_choices({0: jnp.array([0.1, 0.9])}) == mutator.derive_choices({0: jnp.array([0.1, 0.9])})
    True
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
    return {g: self._logit_space(g).init_logits(keys[g], stddev) for g in groups}

  def _logit_space(self, group: int) -> LogitSpace:
    space = self.group_space(group)
    if not isinstance(space, LogitSpace):
      raise SearchSpaceError(f"Group {group} ({self.group_key(group)!r}) has {space.describe()}, not logits.")
    return space

  def set_choices(self, arch_params: Mapping[int, Any]) -> Choices:
    """Gives each mutable its group's logits (or its discrete choice: then only that candidate runs)."""
    return super().set_choices(arch_params)

  def derive_choices(self, arch_params: Mapping[int, Any]) -> GroupChoices:
    """The discrete subnet the logits select: argmax ops, top-``num_chosen`` routes.

    Args:
      arch_params: ``{group id: logits}`` (discrete group choices pass through).

    Returns:
      ``{group id: int32 index}`` for ops and ``{group id: int32[num_chosen]}``
      for routes; jit-able.

    Raises:
      MissingChoiceError / ChoiceError: as for :meth:`set_choices`.
    """
    checked = self.check_group_choices(arch_params)
    return {g: self.group_space(g).derive(checked[g]) for g in checked}

  def discrete_weights(self, group_choices: Mapping[int, Any]) -> dict[int, jax.Array]:
    """One-hot (ops) or multi-hot (routes) weights of the derived subnet, per group.

    With ``direct_weights=True`` mutables, ``set_choices`` of these weights runs
    the supernet as exactly the derived discrete network.
    """
    checked = self.check_group_choices(group_choices)
    return {g: self._logit_space(g).discrete_weights(checked[g]) for g in checked}

  def sample_choices(self, key: PRNGKey | Mapping[int, Any], kind: str | None = None) -> GroupChoices:
    """A discrete subnet: random from a PRNG key, or derived from architecture parameters.

    Args:
      key: a PRNG key (draws uniformly, as every mutator does), or
        ``{group id: logits}`` (the subnet they select, :meth:`derive_choices`).
      kind: ``"random"`` for a key (the default), ``"argmax"`` for architecture
        parameters (the default); differentiable groups have no max/min.

    Returns:
      ``{group id: int32 choice}`` (routes: ``int32[num_chosen]``).

    Raises:
      ConfigError: a ``kind`` that does not fit the argument.
    """
    if isinstance(key, Mapping):
      if kind not in (None, "argmax"):
        raise ConfigError(
          f"DiffModuleMutator.sample_choices(arch_params) derives the argmax subnet; kind must be 'argmax', got {kind!r}."
        )
      return self.derive_choices(key)
    if kind in (None, "random"):
      return super().sample_choices(key, "random")
    if kind in ("max", "min"):
      return super().sample_choices(key, kind)
    raise ConfigError(
      f"DiffModuleMutator.sample_choices: kind must be 'random' for a PRNG key or 'argmax' for arch params, got {kind!r}."
    )
