"""Deriving the discrete subnet of a DARTS search from its architecture logits."""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

import jax
import jax.numpy as jnp

from jaxmutate.algorithms._arch_params import check_arch_params
from jaxmutate.mutators import DiffModuleMutator
from jaxmutate.spaces import EdgeSubsetSpace
from jaxmutate.typing import GroupChoices


def derive_group_choices(
  mutator: DiffModuleMutator, arch_params: Mapping[int, jax.Array], exclude: tuple[str, ...] = ("zero",)
) -> GroupChoices:
  """The discrete subnet: argmax ops and top-``num_chosen`` routes.

  Like the DARTS paper, candidates named in ``exclude`` (the ``zero`` op) are
  never chosen for an op group, unless they are its only candidates.

  Returns:
    ``{group id: int32 index}`` for ops, ``int32[num_chosen]`` for routes.

  Example:
    >>> from jaxmutate.algorithms import derive_group_choices
    >>> import jax, jax.numpy as jnp
    >>> import jaxmutate as jm
    >>> from jaxmutate.models import DartsBackbone
    >>> net = DartsBackbone(base_channels=2, num_layers=1, num_nodes=1, num_classes=3,
    ...                     op_names=("zero", "skip_connect"))
    >>> variables = net.init(jax.random.key(0), jnp.ones((2, 8, 8, 1)), None)
    >>> mutator = jm.DiffModuleMutator().prepare_from_supernet(variables)
    >>> [mutator.group_spec(g).choice_names for g in (0, 1)]
    [('reduce_n2_p0', 'reduce_n2_p1'), ('zero', 'skip_connect')]
    >>> alpha = {0: jnp.array([0.0, 1.0]), 1: jnp.array([5.0, 0.0]), 2: jnp.array([0.0, 1.0])}
    >>> {g: c.tolist() for g, c in derive_group_choices(mutator, alpha).items()}  # group 1 never takes "zero"
    {0: [1, 0], 1: 1, 2: 1}
  """
  checked = check_arch_params(mutator, arch_params)
  masked = {}
  for group, logits in checked.items():
    names = mutator.group_spec(group).choice_names
    drop = jnp.asarray([name in exclude for name in names])
    if not isinstance(mutator.group_space(group), EdgeSubsetSpace) and not bool(drop.all()):
      logits = jnp.where(drop, -jnp.inf, logits)
    masked[group] = logits
  return mutator.derive_choices(masked)


def discrete_arch_weights(mutator: DiffModuleMutator, group_choices: Mapping[int, Any]) -> dict[int, jax.Array]:
  """Mixture weights of a discrete subnet: 1 on chosen candidates/edges, else 0.

  Fed through ``set_choices`` to a supernet built with ``direct_weights=True``
  mutables, the supernet computes exactly the derived discrete network.

  Example:
    >>> from jaxmutate.algorithms import discrete_arch_weights
    >>> import jax, jax.numpy as jnp
    >>> import jaxmutate as jm
    >>> from jaxmutate.models import DartsBackbone
    >>> net = DartsBackbone(base_channels=2, num_layers=1, num_nodes=1, num_classes=3,
    ...                     op_names=("zero", "skip_connect"))
    >>> variables = net.init(jax.random.key(0), jnp.ones((2, 8, 8, 1)), None)
    >>> mutator = jm.DiffModuleMutator().prepare_from_supernet(variables)
    >>> group_choices = {0: jnp.array([1, 0], jnp.int32), 1: jnp.int32(1), 2: jnp.int32(0)}
    >>> {g: w.tolist() for g, w in discrete_arch_weights(mutator, group_choices).items()}
    {0: [1.0, 1.0], 1: [0.0, 1.0], 2: [1.0, 0.0]}
  """
  return mutator.discrete_weights(group_choices)
