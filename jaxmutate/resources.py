"""FLOPs and parameter counts of subnets, and jittable cost tables of whole search spaces.

:func:`estimate_resources` measures one subnet exactly: with concrete choices a
supernet traces to exactly the chosen candidates and the statically sliced
widths, so XLA's own ``cost_analysis`` of the lowered computation counts that
subnet's FLOPs; parameters are counted from the variable tree minus the
unchosen candidates (and, for dynamic layers, at their kept widths).

:class:`ResourceTable` turns such measurements into a table of the whole
space: the cost of the default subnet (every group at index 0), plus per
group the change of each choice, plus, for pairs of groups whose costs
interact (a convolution between two channel units costs ``in × out``), a
pairwise correction ``pairs[(g, h)][c_g, c_h]``. It is a pure ``jnp``
function of the choices, so thousands of candidates are costed in one call
under ``jit``/``vmap`` (a hard constraint inside a jitted search), and
:meth:`ResourceTable.expected` is the exact expected cost under independent
per-group probabilities (softmax or Gumbel weights), differentiable in them.

The pairwise table is exact when no three groups' costs interact (ops at
fixed widths; widths of a chain of layers; a width and a kernel size);
:meth:`ResourceTable.max_error` checks it against exact measurements on
sampled subnets. :func:`dynamic_cost_fn` is the exact jittable alternative
for width spaces built from :mod:`jaxmutate.dynamic` layers. Latency, a
third resource, is timed on the running machine by the application
(``jaxmutate.runners.latency.build_latency_table``, which reads a clock) and
fitted into the same table by :func:`fit_resource_table`.
"""

from __future__ import annotations

import itertools
from collections.abc import Callable, Mapping
from typing import Any, NamedTuple

import flax.linen as nn
import jax
import jax.numpy as jnp
import numpy as np

from jaxmutate.dynamic import COSTS_COLLECTION, dynamic_costs
from jaxmutate.errors import ConfigError, MissingChoiceError, SearchSpaceError
from jaxmutate.mutables import CandidateMutable, ChoiceRoute
from jaxmutate.mutators import ModuleMutator
from jaxmutate.spaces import EdgeSubsetSpace, IndexSpace, LogitSpace
from jaxmutate.typing import Choices, GroupChoices

Measure = Callable[[Mapping[int, Any]], Mapping[str, float]]
"""``measure(group_choices) -> {resource name: value}`` of one concrete subnet."""

INTERACTIONS = ("none", "auto", "pairwise")


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


def _kept_candidates(spec: Any, choice: Any) -> set[str] | None:
  """Names of the candidates (or route edges) a concrete choice runs; ``None``: all of them (logits)."""
  value = np.asarray(choice)
  if not np.issubdtype(value.dtype, np.integer):
    return None
  names = spec.choice_names
  return {names[int(i)] for i in np.atleast_1d(value)}


def count_params(params: Mapping[str, Any], mutator: ModuleMutator, choices: Choices) -> int:
  """Parameters of the subnet ``choices``: all but the unchosen candidates'.

  Op mutables (one-shot or differentiable) with an index choice drop their
  other candidates; routes with edge indices drop their other edges; logits
  keep everything (a mixture runs every candidate). Value mutables do not
  change the tree; for dynamic layers use :func:`estimate_resources`, which
  counts them at their kept widths. Concrete choices are required.

  Example:
    >>> import jax, jax.numpy as jnp
    >>> import jaxmutate as jm
    >>> net = jm.models.SearchableMLP(num_classes=2, width=4, num_layers=1, activations=("relu",))
    >>> variables = jm.init_supernet(net, jax.random.key(0), jnp.ones((1, 3)))
    >>> mutator = jm.OneShotModuleMutator().prepare_from_supernet(variables)
    >>> jm.count_params(variables["params"], mutator, {"layers.0": 1})  # skip: stem + head
    26
  """
  subtrees = _subtrees_by_name(params)
  dropped: set[int] = set()  # ids of the dropped leaves: a route's dropped edge may hold an op's dropped candidates
  for name, spec in mutator.name_to_spec.items():
    if not issubclass(spec.mutable_type, (CandidateMutable, ChoiceRoute)) or name not in subtrees:
      continue
    if name not in choices:
      continue
    kept = _kept_candidates(spec, choices[name])
    if kept is None:
      continue
    for candidate, subtree in subtrees[name].items():
      if candidate in spec.choice_names and candidate not in kept:
        dropped.update(id(leaf) for leaf in jax.tree.leaves(subtree))
  return int(sum(np.size(leaf) for leaf in jax.tree.leaves(params) if id(leaf) not in dropped))


def _dynamic_params_correction(params: Mapping[str, Any], costs: Mapping[str, Any]) -> int:
  """``Σ (kept − full)`` parameters of the dynamic layers that sowed costs.

  A layer's whole parameter subtree is replaced by what it sowed (a
  switchable BatchNorm holds one BatchNorm per width and sows the chosen
  one's); a layer called twice shares its weights, so it counts once.
  """
  correction = 0.0

  def walk(cost_node: Any, param_node: Any) -> None:
    nonlocal correction
    if "params" in cost_node and not isinstance(cost_node["params"], Mapping):
      sown = max(float(np.asarray(v)) for v in jax.tree.leaves(cost_node["params"]))
      correction += sown - _size(param_node if isinstance(param_node, Mapping) else {})
      return
    for key, child in cost_node.items():
      if isinstance(child, Mapping):
        walk(child, param_node.get(key) if isinstance(param_node, Mapping) else None)

  walk(costs, params)
  return int(round(correction))


def estimate_resources(
  model: nn.Module,
  variables: Mapping[str, Any],
  mutator: ModuleMutator,
  group_choices: GroupChoices,
  sample_input: jax.Array,
  **apply_kwargs: Any,
) -> dict[str, float]:
  """Exact FLOPs (XLA ``cost_analysis``) and parameters of one subnet.

  Works for every mutable kind: op and value choices, channel units (the
  concrete widths trace to the statically sliced layers) and routes (edge
  indices; logits run every edge). Parameters of dynamic layers are counted
  at their kept widths (what :func:`~jaxmutate.dynamic.dynamic_costs` sows).

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
    >>> variables = jm.init_supernet(net, jax.random.key(0), x)
    >>> mutator = jm.OneShotModuleMutator().prepare_from_supernet(variables)
    >>> relu = jm.estimate_resources(net, variables, mutator, {0: jnp.int32(0)}, x)
    >>> skip = jm.estimate_resources(net, variables, mutator, {0: jnp.int32(1)}, x)
    >>> sorted(relu), round(relu["params"] * 1e6), round(skip["params"] * 1e6)  # the skip subnet drops a 4x4 Dense
    (['flops', 'params'], 46, 26)
  """
  return _measure(model, variables, mutator, group_choices, sample_input, None, apply_kwargs)


def _measure(
  model: nn.Module,
  variables: Mapping[str, Any],
  mutator: ModuleMutator,
  group_choices: GroupChoices,
  sample_input: jax.Array,
  layer_costs: Callable[[Mapping[int, Any]], Mapping[str, Any]] | None,
  apply_kwargs: Mapping[str, Any],
) -> dict[str, float]:
  """:func:`estimate_resources`; ``layer_costs`` (traced choices, compiled once) replaces a compile per subnet."""
  choices = {k: np.asarray(v) for k, v in mutator.set_choices(group_choices).items()}
  apply_variables = {k: v for k, v in variables.items() if k in ("params", "batch_stats")}

  def forward(v, x):
    return model.apply(v, x, choices, **apply_kwargs)

  cost = jax.jit(forward).lower(apply_variables, sample_input).cost_analysis()
  if isinstance(cost, (list, tuple)):
    cost = cost[0]
  flops = float(cost.get("flops", 0.0)) if cost else 0.0
  params = count_params(variables["params"], mutator, choices)
  if mutator.unit_channels:
    if layer_costs is None:
      # Only the costs are returned, so XLA drops the network: a cheap compile.
      costs = jax.jit(lambda v, x: model.apply(v, x, choices, mutable=[COSTS_COLLECTION], **apply_kwargs)[1])(
        apply_variables, sample_input
      )
    else:
      costs = layer_costs({g: jnp.asarray(c) for g, c in group_choices.items()})
    params += _dynamic_params_correction(variables["params"], costs.get(COSTS_COLLECTION, {}))
  return {"flops": flops / 1e6, "params": params / 1e6}


class ResourceTable(NamedTuple):
  """A cost table: ``base + Σ_g deltas[g][c_g] + Σ_(g,h) pairs[(g, h)][c_g, c_h]``.

  Attributes:
    names: resource names, e.g. ``("flops", "params")``.
    base: resources of the default subnet (every group at choice 0).
    deltas: ``{name: {group id: array[num choices]}}`` change per choice
      (entry 0 is 0).
    pairs: ``{name: {(g, h): array[C_g, C_h]}}`` the interaction of two
      groups beyond their deltas (row and column 0 are 0); ``None`` or empty:
      an additive table.

  Example:
    >>> import jax.numpy as jnp
    >>> import jaxmutate as jm
    >>> table = jm.ResourceTable(("params",), {"params": 1.0}, {"params": {0: jnp.array([0.0, 0.5, -0.25])}})
    >>> table({0: jnp.array([0, 1, 2])})["params"].tolist()  # three subnets at once
    [1.0, 1.5, 0.75]
    >>> float(table.expected({0: jnp.array([0.5, 0.5, 0.0])})["params"])  # under probabilities
    1.25
  """

  names: tuple[str, ...]
  base: dict[str, float]
  deltas: dict[str, dict[int, jax.Array]]
  pairs: dict[str, dict[tuple[int, int], jax.Array]] | None = None

  @property
  def groups(self) -> tuple[int, ...]:
    """The group ids the table prices (groups it was built with fixed are not among them)."""
    return tuple(sorted({g for per_name in self.deltas.values() for g in per_name}))

  def _read(self, values: Mapping[int, Any], group: int, what: str) -> jax.Array:
    if group not in values:
      raise MissingChoiceError(
        f"ResourceTable: no {what} for group {group}; the table prices groups {list(self.groups)}, "
        f"got {sorted(values, key=str)}."
      )
    return jnp.asarray(values[group])

  def __call__(self, group_choices: Mapping[int, jax.Array]) -> dict[str, jax.Array]:
    """Resources of (a population of) subnets; jit- and vmap-friendly.

    Args:
      group_choices: ``{group id: int index}`` or stacked ``[P]`` indices;
        keys the table does not price are ignored.

    Returns:
      ``{name: value}`` with the leading population shape of the choices.

    Raises:
      MissingChoiceError: (a ``KeyError``) a group the table prices is missing.
    """
    out = {}
    for name in self.names:
      total = jnp.float32(self.base[name])
      for group, delta in self.deltas[name].items():
        total = total + delta[self._read(group_choices, group, "choice")]
      for (g, h), table in ((self.pairs or {}).get(name) or {}).items():
        total = total + table[self._read(group_choices, g, "choice"), self._read(group_choices, h, "choice")]
      out[name] = total
    return out

  def expected(self, weights: Mapping[int, jax.Array]) -> dict[str, jax.Array]:
    """The expected resources when each group's choice is drawn independently from ``weights[g]``.

    ``E = base + Σ_g w_g · δ_g + Σ_(g,h) w_gᵀ P_gh w_h``: exact for the table
    under independent groups, and a smooth function of the weights (softmax
    of architecture logits, or Gumbel-softmax samples), so it can enter a
    loss and be differentiated.

    Args:
      weights: ``{group id: array[..., num choices]}`` probabilities (any
        leading batch shape).

    Returns:
      ``{name: value}`` with the weights' leading shape.

    Raises:
      MissingChoiceError: (a ``KeyError``) a group the table prices is missing.
      SearchSpaceError: (a ``ValueError``) a weight vector of the wrong length.
    """
    for name in self.names:
      for group, delta in self.deltas[name].items():
        w = self._read(weights, group, "weights")
        if w.shape[-1:] != delta.shape:
          raise SearchSpaceError(
            f"ResourceTable.expected: group {group} has {delta.shape[0]} choices; its weights have shape {w.shape}."
          )
    out = {}
    for name in self.names:
      total = jnp.float32(self.base[name])
      for group, delta in self.deltas[name].items():
        total = total + jnp.asarray(weights[group]) @ delta
      for (g, h), table in ((self.pairs or {}).get(name) or {}).items():
        total = total + jnp.einsum("...i,ij,...j->...", jnp.asarray(weights[g]), table, jnp.asarray(weights[h]))
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
    measure: Measure | None = None,
    fixed: Mapping[int, Any] | None = None,
  ) -> dict[str, float]:
    """Largest relative error of the table against exact measurements of sampled subnets.

    Args:
      model, variables, mutator, sample_input: as in :func:`build_resource_table`.
      key: PRNG key of the sampled subnets.
      num_subnets: how many subnets to measure.
      measure: the exact measurement (default :func:`estimate_resources`).
      fixed: the groups the table was built with held fixed, at those choices.

    Returns:
      ``{name: max |table − exact| / |exact|}``.
    """
    measure = measure or _xla_measure(model, variables, mutator, sample_input)
    errors = {name: 0.0 for name in self.names}
    for k in jax.random.split(key, num_subnets):
      group_choices = {**mutator.sample_choices(k), **(fixed or {})}
      exact = measure(group_choices)
      estimate = self(group_choices)
      for name in self.names:
        errors[name] = max(errors[name], abs(float(estimate[name]) - exact[name]) / max(abs(exact[name]), 1e-12))
    return errors


def _xla_measure(model: nn.Module, variables: Mapping[str, Any], mutator: ModuleMutator, x: jax.Array) -> Measure:
  """:func:`estimate_resources` of many subnets: the dynamic layers' per-layer costs compile once."""
  apply_variables = {k: v for k, v in variables.items() if k in ("params", "batch_stats")}
  layer_costs = jax.jit(
    lambda group_choices: model.apply(
      apply_variables, x, mutator.set_choices(group_choices), mutable=[COSTS_COLLECTION]
    )[1]
  )
  return lambda group_choices: _measure(model, variables, mutator, group_choices, x, layer_costs, {})


def fit_resource_table(
  measure: Measure,
  num_choices: Mapping[int, int],
  *,
  interactions: str = "auto",
  fixed: Mapping[int, Any] | None = None,
  rtol: float = 1e-6,
) -> ResourceTable:
  """Fits a :class:`ResourceTable` to exact measurements of concrete subnets.

  The table is anchored at the default subnet (every group at index 0):
  ``delta_g[c] = f(c at g) − f(0)`` and ``pair_gh[c, d] = f(c at g, d at h) −
  f(c at g) − f(d at h) + f(0)``, which reproduces ``f`` exactly when no three
  groups interact. ``measure`` is any exact cost of one subnet: XLA's count
  (:func:`estimate_resources`), :func:`dynamic_cost_fn`, or a latency timer
  (``jaxmutate.runners.latency``).

  Args:
    measure: ``measure(group_choices) -> {name: value}``.
    num_choices: ``{group id: number of index choices}`` of the groups to price.
    interactions: ``"none"`` (additive: ``1 + Σ (C_g − 1)`` measurements),
      ``"pairwise"`` (every pair's block, ``+ Σ_(g<h) (C_g − 1)(C_h − 1)``), or
      ``"auto"`` (a pair's block only where its two last choices interact
      beyond ``rtol`` of the default cost: one extra measurement per pair).
    fixed: ``{group id: choice}`` held in every measurement (e.g. routes as
      logits); these groups are not priced.
    rtol: the relative size of an interaction ``"auto"`` keeps.

  Returns:
    The table, with ``float32`` arrays.

  Raises:
    ConfigError: (a ``ValueError``) an unknown ``interactions``.

  Example:
    >>> from jaxmutate.resources import fit_resource_table
    >>> widths = (2, 4, 8)
    >>> def measure(c):  # a conv between two width choices, plus a bias per width
    ...   return {"macs": float(widths[int(c[0])] * widths[int(c[1])] + widths[int(c[1])])}
    >>> table = fit_resource_table(measure, {0: 3, 1: 3})
    >>> float(table({0: 2, 1: 1})["macs"]), list(table.pairs["macs"])
    (36.0, [(0, 1)])
  """
  if interactions not in INTERACTIONS:
    raise ConfigError(f"fit_resource_table: interactions must be one of {INTERACTIONS}, got {interactions!r}.")
  fixed = dict(fixed or {})
  groups = [g for g in sorted(num_choices) if g not in fixed]
  default = {g: np.int32(0) for g in groups}

  def at(changes: Mapping[int, int]) -> dict[str, float]:
    choices = {**default, **{g: np.int32(c) for g, c in changes.items()}, **fixed}
    return {name: float(value) for name, value in measure(choices).items()}

  base = at({})
  names = tuple(base)
  single: dict[tuple[int, int], dict[str, float]] = {}
  for g in groups:
    single[(g, 0)] = base
    for c in range(1, int(num_choices[g])):
      single[(g, c)] = at({g: c})
  deltas = {
    name: {
      g: jnp.asarray([single[(g, c)][name] - base[name] for c in range(int(num_choices[g]))], jnp.float32)
      for g in groups
    }
    for name in names
  }
  pairs: dict[str, dict[tuple[int, int], jax.Array]] = {name: {} for name in names}
  if interactions != "none":
    for g, h in itertools.combinations(groups, 2):
      cg, ch = int(num_choices[g]), int(num_choices[h])
      if cg < 2 or ch < 2:
        continue

      def interaction(c: int, d: int) -> dict[str, float]:
        both = at({g: c, h: d})
        return {n: both[n] - single[(g, c)][n] - single[(h, d)][n] + base[n] for n in names}

      corner = interaction(cg - 1, ch - 1)
      if interactions == "auto" and all(abs(corner[n]) <= rtol * max(abs(base[n]), 1e-12) for n in names):
        continue
      block = {n: np.zeros((cg, ch), np.float64) for n in names}
      for c, d in itertools.product(range(1, cg), range(1, ch)):
        values = corner if (c, d) == (cg - 1, ch - 1) else interaction(c, d)
        for n in names:
          block[n][c, d] = values[n]
      for n in names:
        if np.any(block[n] != 0):
          pairs[n][(g, h)] = jnp.asarray(block[n], jnp.float32)
  return ResourceTable(names, base, deltas, pairs if any(pairs.values()) else None)


def index_group_sizes(mutator: ModuleMutator, fixed: Mapping[int, Any], where: str) -> dict[int, int]:
  """``{group: number of choices}`` of the groups a cost table indexes: all but ``fixed``, which must hold the routes.

  Raises:
    SearchSpaceError: ``fixed`` names an unknown group, or a route group is not in ``fixed`` (``where`` names the caller).

  Example:
    >>> import jax, jax.numpy as jnp
    >>> import jaxmutate as jm
    >>> net = jm.models.SearchableConvNet(width=4, num_layers=2)
    >>> variables = jm.init_supernet(net, jax.random.key(0), jnp.ones((1, 8, 8, 1)))
    >>> mutator = jm.OneShotModuleMutator().prepare_from_supernet(variables)
    >>> jm.resources.index_group_sizes(mutator, {}, "my table")
    {0: 4, 1: 4}
  """
  unknown = [g for g in fixed if g not in mutator.search_groups]
  if unknown:
    raise SearchSpaceError(
      f"{where}: fixed names unknown group(s) {unknown}; groups are {list(mutator.search_groups)}."
    )
  sizes = {}
  for group in mutator.search_groups:
    if group in fixed:
      continue
    if isinstance(mutator.group_space(group), EdgeSubsetSpace):
      raise SearchSpaceError(
        f"{where}: group {group} ({mutator.group_key(group)!r}) is a route, whose choice is a set of edges, not "
        "one index; hold it fixed, e.g. fixed={group: logits} to run every edge (a mixture), or "
        "fixed={group: edge indices}."
      )
    sizes[group] = int(mutator.group_spec(group).num_choices)
  return sizes


def build_resource_table(
  model: nn.Module,
  variables: Mapping[str, Any],
  mutator: ModuleMutator,
  sample_input: jax.Array,
  *,
  interactions: str | None = None,
  fixed: Mapping[int, Any] | None = None,
  measure: Measure | None = None,
) -> ResourceTable:
  """Measures the :class:`ResourceTable` of a search space: ops, values and channel units.

  Each measurement is :func:`estimate_resources` (a lowering, not a
  compilation) unless ``measure`` is given; see :func:`fit_resource_table`
  for how many.

  Args:
    model, variables, mutator: the supernet, its variables and prepared mutator.
    sample_input: an input batch (batch 1: costs per image).
    interactions: ``"none"``, ``"auto"`` or ``"pairwise"``; ``None`` picks
      ``"none"`` when every group is an op choice (their costs add up at fixed
      widths) and ``"auto"`` otherwise (values and widths interact).
    fixed: ``{group id: choice}`` held in every measurement and not priced;
      routes must be held fixed.
    measure: an exact measurement of one subnet (default: XLA's count).

  Raises:
    SearchSpaceError: (a ``ValueError``) a route group not in ``fixed``, or
      ``fixed`` naming an unknown group.

  Example:
    >>> import jax, jax.numpy as jnp
    >>> import jaxmutate as jm
    >>> net = jm.models.SearchableConvNet(width=4, num_layers=2)
    >>> x = jnp.ones((1, 8, 8, 1))
    >>> variables = jm.init_supernet(net, jax.random.key(0), x)
    >>> mutator = jm.OneShotModuleMutator().prepare_from_supernet(variables)
    >>> table = jm.build_resource_table(net, variables, mutator, x)
    >>> sorted(table.names), table.deltas["flops"][0].shape, table.pairs
    (['flops', 'params'], (4,), None)
  """
  fixed = dict(fixed or {})
  sizes = index_group_sizes(mutator, fixed, "build_resource_table")
  if interactions is None:
    ops_only = all(isinstance(mutator.group_space(g), (IndexSpace, LogitSpace)) for g in sizes)
    interactions = "none" if ops_only else "auto"
  measure = measure or _xla_measure(model, variables, mutator, sample_input)
  return fit_resource_table(measure, sizes, interactions=interactions, fixed=fixed)


def dynamic_cost_fn(
  model: nn.Module, variables: Mapping[str, Any], mutator: ModuleMutator, sample_input: jax.Array, **apply_kwargs: Any
) -> Callable[[Mapping[int, Any]], dict[str, jax.Array]]:
  """The exact, jittable cost of the dynamic layers as a function of the group choices.

  ``cost(group_choices) -> {"flops": MFLOPs, "params": M}`` from
  :func:`~jaxmutate.dynamic.dynamic_costs` (FLOPs = 2 × MACs per image of
  the dynamic layers; static ``nn.Conv``/``nn.Dense`` layers are not
  counted). Under ``jit`` the network itself is dead code, so ``jax.vmap``
  of it costs a whole population cheaply; exact for any interaction of
  widths and values, where a pairwise :class:`ResourceTable` is not.

  Example:
    >>> import jax, jax.numpy as jnp, flax.linen as nn
    >>> import jaxmutate as jm
    >>> from jaxmutate import dynamic
    >>> from jaxmutate.channels import OneShotMutableChannelUnit
    >>> from jaxmutate.resources import dynamic_cost_fn
    >>> class Net(nn.Module):
    ...   @nn.compact
    ...   def __call__(self, x, choices):
    ...     w = OneShotMutableChannelUnit(8, (0.5, 1.0), name="unit")(choices)
    ...     x = dynamic.DynamicConv(8, 3, use_bias=False, name="conv")(x, out_width=w)
    ...     return dynamic.DynamicDense(2, name="fc")(x.mean((1, 2)), in_width=w)
    >>> net, x = Net(), jnp.ones((1, 4, 4, 1))
    >>> variables = jm.init_supernet(net, jax.random.key(0), x)
    >>> mutator = jm.OneShotChannelMutator().prepare_from_supernet(variables)
    >>> cost = jax.jit(jax.vmap(dynamic_cost_fn(net, variables, mutator, x)))
    >>> (cost({0: jnp.array([0, 1])})["params"] * 1e6).round().tolist()  # 9*4 + 4*2 + 2, 9*8 + 8*2 + 2
    [46.0, 90.0]
  """
  apply_variables = {k: v for k, v in variables.items() if k in ("params", "batch_stats")}

  def cost(group_choices: Mapping[int, Any]) -> dict[str, jax.Array]:
    counted = dynamic_costs(model, apply_variables, sample_input, mutator.set_choices(group_choices), **apply_kwargs)
    return {"flops": 2.0 * counted["macs"] / 1e6, "params": counted["params"] / 1e6}

  return cost


__all__ = [
  "ResourceTable",
  "build_resource_table",
  "count_params",
  "dynamic_cost_fn",
  "estimate_resources",
  "fit_resource_table",
  "index_group_sizes",
]
