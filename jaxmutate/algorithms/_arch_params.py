"""Reading a DARTS search's architecture logits: validation, softmax tables, Gumbel use."""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

import jax
import jax.numpy as jnp
import numpy as np

from jaxmutate.errors import ChoiceTypeError
from jaxmutate.mutables import GumbelChoiceRoute, GumbelMutableOP
from jaxmutate.mutators import DiffModuleMutator


def uses_temperature(mutator: DiffModuleMutator) -> bool:
  """Whether the supernet has Gumbel mutables (so ``model.apply`` takes ``tau``).

  Example:
    >>> from jaxmutate.algorithms import uses_temperature
    >>> import jax, jax.numpy as jnp
    >>> import jaxmutate as jm
    >>> from jaxmutate.models import DartsBackbone
    >>> net = DartsBackbone(base_channels=2, num_layers=1, num_nodes=1, num_classes=3,
    ...                     op_names=("zero", "skip_connect"))
    >>> variables = net.init(jax.random.key(0), jnp.ones((2, 8, 8, 1)), None)
    >>> mutator = jm.DiffModuleMutator().prepare_from_supernet(variables)
    >>> gumbel_net = net.clone(mutable_cfg=dict(type="GumbelMutableOP"))
    >>> gumbel_variables = gumbel_net.init(jax.random.key(0), jnp.ones((2, 8, 8, 1)), None)
    >>> uses_temperature(mutator), uses_temperature(jm.DiffModuleMutator().prepare_from_supernet(gumbel_variables))
    (False, True)
  """
  return any(issubclass(spec.mutable_type, (GumbelMutableOP, GumbelChoiceRoute)) for _, spec in mutator.specs)


def check_arch_params(mutator: DiffModuleMutator, arch_params: Mapping[int, Any]) -> dict[int, jax.Array]:
  """Validates architecture logits against the mutator's groups.

  Raises:
    ChoiceTypeError: (a ``TypeError``) integer (discrete) values; and what
      ``mutator.check_group_choices`` raises: a ``TypeError`` for a
      non-mapping, a ``KeyError`` for a missing group (naming its id and
      alias), a ``ValueError`` for an unknown group id or a vector of the
      wrong shape (naming the group and the expected shape).

  Example:
    >>> from jaxmutate.algorithms import check_arch_params
    >>> import jax, jax.numpy as jnp
    >>> import jaxmutate as jm
    >>> from jaxmutate.models import DartsBackbone
    >>> net = DartsBackbone(base_channels=2, num_layers=1, num_nodes=1, num_classes=3,
    ...                     op_names=("zero", "skip_connect"))
    >>> variables = net.init(jax.random.key(0), jnp.ones((2, 8, 8, 1)), None)
    >>> mutator = jm.DiffModuleMutator().prepare_from_supernet(variables)
    >>> {g: v.shape for g, v in check_arch_params(mutator, mutator.init_arch_params(jax.random.key(1))).items()}
    {0: (2,), 1: (2,), 2: (2,)}
    >>> try:
    ...   check_arch_params(mutator, {0: jnp.zeros(3), 1: jnp.zeros(2), 2: jnp.zeros(2)})
    ... except ValueError as error:
    ...   print(error)
    Mutable 'group 0' expects architecture logits of shape (2,), got shape (3,)...
  """
  checked = mutator.check_group_choices(arch_params)
  for group, logits in checked.items():
    if not jnp.issubdtype(logits.dtype, jnp.floating):
      raise ChoiceTypeError(
        f"Architecture params of group {group} ({mutator.group_key(group)!r}) must be float logits of shape "
        f"({mutator.group_spec(group).num_choices},), got dtype {logits.dtype}."
      )
  return dict(checked)


def arch_weights_table(mutator: DiffModuleMutator, arch_params: Mapping[int, jax.Array]) -> dict[str, list[float]]:
  """``{group alias: softmax(logits)}`` as plain floats (for logs and plots).

  Example:
    >>> from jaxmutate.algorithms import arch_weights_table
    >>> import jax, jax.numpy as jnp
    >>> import jaxmutate as jm
    >>> from jaxmutate.models import DartsBackbone
    >>> net = DartsBackbone(base_channels=2, num_layers=1, num_nodes=1, num_classes=3,
    ...                     op_names=("zero", "skip_connect"))
    >>> variables = net.init(jax.random.key(0), jnp.ones((2, 8, 8, 1)), None)
    >>> mutator = jm.DiffModuleMutator().prepare_from_supernet(variables)
    >>> arch_weights_table(mutator, {0: jnp.zeros(2), 1: jnp.array([0.0, jnp.log(3.0)]), 2: jnp.zeros(2)})
    {'reduce_n2': [0.5, 0.5], 'reduce_n2_p0': [0.25, 0.75], 'reduce_n2_p1': [0.5, 0.5]}
  """
  return {mutator.group_key(g): np.asarray(jax.nn.softmax(v)).round(5).tolist() for g, v in arch_params.items()}
