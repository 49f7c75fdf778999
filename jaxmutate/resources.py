"""FLOPs and parameter counts of subnets, without copying or slicing the supernet.

:func:`estimate_resources` measures one subnet exactly: with concrete choices a
one-shot supernet traces to exactly the chosen candidates, so XLA's own
``cost_analysis`` of the lowered computation counts that subnet's FLOPs, and
parameters are counted from the variable tree minus the unchosen candidates.

:class:`ResourceTable` turns those measurements into an additive table (the
cost of the default subnet plus, per group, the change of each choice), so
constraints can be checked for thousands of candidates in one vectorised call
under ``jit``/``vmap``. The table is exact when each group's cost does not
depend on the other groups' choices (true for op choices at fixed widths, as
in SPOS); :meth:`ResourceTable.max_error` checks it on sampled subnets.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any, NamedTuple

import flax.linen as nn
import jax
import jax.numpy as jnp
import numpy as np

from jaxmutate.errors import SearchSpaceError
from jaxmutate.mutables import OneShotMutableModule
from jaxmutate.mutators import ModuleMutator
from jaxmutate.spaces import EdgeSubsetSpace
from jaxmutate.typing import Choices, GroupChoices


def _subtrees_by_name(tree: Mapping[str, Any]) -> dict[str, Mapping[str, Any]]:
  """Every dict node of a variable tree, keyed by its path joined with '.'."""
  found: dict[str, Mapping[str, Any]] = {}

  def walk(node: Any, path: tuple[str, ...]) -> None:
    if isinstance(node, Mapping):
      found[".".join(path)] = node
      for key, value in node.items():
        walk(value, path + (str(key),))

  walk(tree, ())
  return found


def _size(tree: Any) -> int:
  return int(sum(np.size(leaf) for leaf in jax.tree.leaves(tree)))


def count_params(params: Mapping[str, Any], mutator: ModuleMutator, choices: Choices) -> int:
  """Parameters of the subnet ``choices``: all but the unchosen candidates'.

  Only one-shot op mutables change the count (value mutables' effect is not
  visible in the tree); concrete choices are required.

  Example:
    >>> import jax, jax.numpy as jnp
    >>> import jaxmutate as jm
    >>> net = jm.models.SearchableMLP(num_classes=2, width=4, num_layers=1, activations=("relu",))
    >>> variables = net.init(jax.random.key(0), jnp.ones((1, 3)), None)
    >>> mutator = jm.OneShotModuleMutator().prepare_from_supernet(variables)
    >>> jm.count_params(variables["params"], mutator, {"layers.0": 1})  # skip: stem + head
    26
  """
  subtrees = _subtrees_by_name(params)
  total = _size(params)
  for name, spec in mutator.name_to_spec.items():
    if not issubclass(spec.mutable_type, OneShotMutableModule) or name not in subtrees:
      continue
    chosen = spec.choice_names[int(np.asarray(choices[name]))]
    for candidate, subtree in subtrees[name].items():
      if candidate != chosen:
        total -= _size(subtree)
  return total


def estimate_resources(
  model: nn.Module,
  variables: Mapping[str, Any],
  mutator: ModuleMutator,
  group_choices: GroupChoices,
  sample_input: jax.Array,
  **apply_kwargs: Any,
) -> dict[str, float]:
  """Exact FLOPs (XLA ``cost_analysis``) and parameters of one subnet.

  Args:
    model: the supernet.
    variables: its variables (``params`` at least).
    mutator: a prepared mutator.
    group_choices: the subnet, concrete.
    sample_input: an input batch; FLOPs are per batch (use batch 1 for per
      image).
    **apply_kwargs: extra static keyword arguments of ``model.apply``.

  Returns:
    ``{"flops": MFLOPs, "params": millions of parameters}`` (MMRazor's units).

  Example:
    >>> import jax, jax.numpy as jnp
    >>> import jaxmutate as jm
    >>> net = jm.models.SearchableMLP(num_classes=2, width=4, num_layers=1, activations=("relu",))
    >>> x = jnp.ones((1, 3))
    >>> variables = net.init(jax.random.key(0), x, None)
    >>> mutator = jm.OneShotModuleMutator().prepare_from_supernet(variables)
    >>> relu = jm.estimate_resources(net, variables, mutator, {0: jnp.int32(0)}, x)
    >>> skip = jm.estimate_resources(net, variables, mutator, {0: jnp.int32(1)}, x)
    >>> sorted(relu), round(relu["params"] * 1e6), round(skip["params"] * 1e6)  # the skip subnet drops a 4x4 Dense
    (['flops', 'params'], 46, 26)
  """
  choices = {k: np.asarray(v) for k, v in mutator.set_choices(group_choices).items()}
  apply_variables = {k: v for k, v in variables.items() if k in ("params", "batch_stats")}

  def forward(v, x):
    return model.apply(v, x, choices, **apply_kwargs)

  cost = jax.jit(forward).lower(apply_variables, sample_input).cost_analysis()
  if isinstance(cost, (list, tuple)):
    cost = cost[0]
  flops = float(cost.get("flops", 0.0)) if cost else 0.0
  params = count_params(variables["params"], mutator, choices)
  return {"flops": flops / 1e6, "params": params / 1e6}


class ResourceTable(NamedTuple):
  """An additive resource model: ``base + Σ_groups delta[group][choice]``.

  Attributes:
    names: resource names, e.g. ``("flops", "params")``.
    base: resources of the default subnet (every group at choice 0).
    deltas: ``{name: {group id: array[num choices]}}`` change per choice.

  Example:
    >>> import jax.numpy as jnp
    >>> import jaxmutate as jm
    >>> table = jm.ResourceTable(("params",), {"params": 1.0}, {"params": {0: jnp.array([0.0, 0.5, -0.25])}})
    >>> table({0: jnp.array([0, 1, 2])})["params"].tolist()  # three subnets at once
    [1.0, 1.5, 0.75]
  """

  names: tuple[str, ...]
  base: dict[str, float]
  deltas: dict[str, dict[int, jax.Array]]

  def __call__(self, group_choices: Mapping[int, jax.Array]) -> dict[str, jax.Array]:
    """Resources of (a population of) subnets; jit- and vmap-friendly.

    Args:
      group_choices: ``{group id: int index}`` or stacked ``[P]`` indices.

    Returns:
      ``{name: value}`` with the leading population shape of the choices.
    """
    out = {}
    for name in self.names:
      total = jnp.float32(self.base[name])
      for group, delta in self.deltas[name].items():
        total = total + delta[group_choices[group]]
      out[name] = total
    return out

  def max_error(
    self,
    model: nn.Module,
    variables: Mapping[str, Any],
    mutator: ModuleMutator,
    sample_input: jax.Array,
    key: jax.Array,
    num_subnets: int = 4,
  ) -> dict[str, float]:
    """Largest relative error of the table against exact measurements."""
    errors = {name: 0.0 for name in self.names}
    for k in jax.random.split(key, num_subnets):
      group_choices = mutator.sample_choices(k)
      exact = estimate_resources(model, variables, mutator, group_choices, sample_input)
      estimate = self(group_choices)
      for name in self.names:
        errors[name] = max(errors[name], abs(float(estimate[name]) - exact[name]) / max(abs(exact[name]), 1e-12))
    return errors


def build_resource_table(
  model: nn.Module, variables: Mapping[str, Any], mutator: ModuleMutator, sample_input: jax.Array
) -> ResourceTable:
  """Measures the additive :class:`ResourceTable` of a one-shot search space.

  Costs ``1 + Σ_groups (choices − 1)`` exact measurements (lowerings, not
  compilations).

  Raises:
    ValueError: a group whose choice is not a single index (routes).

  Example:
    >>> import jax, jax.numpy as jnp
    >>> import jaxmutate as jm
    >>> net = jm.models.SearchableConvNet(width=4, num_layers=2)
    >>> x = jnp.ones((1, 8, 8, 1))
    >>> variables = net.init(jax.random.key(0), x, None)
    >>> mutator = jm.OneShotModuleMutator().prepare_from_supernet(variables)
    >>> table = jm.build_resource_table(net, variables, mutator, x)
    >>> sorted(table.names), table.deltas["flops"][0].shape
    (['flops', 'params'], (4,))
  """
  groups = mutator.search_groups
  for group in groups:
    if isinstance(mutator.group_space(group), EdgeSubsetSpace):
      raise SearchSpaceError(
        f"build_resource_table: group {group} ({mutator.group_key(group)!r}) is a route; "
        "only index choices are supported."
      )
  default = {g: jnp.int32(0) for g in groups}
  base = estimate_resources(model, variables, mutator, default, sample_input)
  names = tuple(base)
  deltas: dict[str, dict[int, jax.Array]] = {name: {} for name in names}
  for group in groups:
    spec = mutator.group_spec(group)
    per_choice = {name: [0.0] for name in names}
    for choice in range(1, spec.num_choices):
      measured = estimate_resources(model, variables, mutator, {**default, group: jnp.int32(choice)}, sample_input)
      for name in names:
        per_choice[name].append(measured[name] - base[name])
    for name in names:
      deltas[name][group] = jnp.asarray(per_choice[name], jnp.float32)
  return ResourceTable(names, base, deltas)
