"""``analyze_channels``: the channel units of an unmodified model, from one trace of ``model.apply``."""

from __future__ import annotations

import dataclasses
import difflib
import math
from collections.abc import Callable, Mapping, Sequence
from typing import Any, NamedTuple

import jax
import jax.numpy as jnp
import numpy as np

from jaxmutate.analysis._apply import channel_masks, mask_variables, slice_variables
from jaxmutate.analysis._groups import ChannelGroup, ParamSlice
from jaxmutate.analysis._trace import Walker, merge_labels
from jaxmutate.errors import ConfigError, ConfigTypeError

__all__ = ["ChannelAnalysis", "ExcludedGroup", "analyze_channels", "leaf_key"]

OUTPUT = "reaches the model output"
INPUT = "model input"
NOT_PRODUCED = "no kernel produces these channels (no 'output' slice)"


class ExcludedGroup(NamedTuple):
  """Channels that move together but cannot be pruned, and why.

  Attributes:
    name: named like a unit (first slice's module path and range).
    num_channels: how many channels.
    slices: the variable slices they occupy.
    reasons: why they are excluded (the model input, the model output, an
      ``ignored`` name, a primitive treated conservatively, ...).

  Example:
    >>> from jaxmutate.analysis import ExcludedGroup, ParamSlice
    >>> s = ParamSlice("params", ("fc", "kernel"), 1, (0, 1), "output")
    >>> ExcludedGroup("fc_(0, 2)_2", 2, (s,), ("reaches the model output",)).reasons
    ('reaches the model output',)
  """

  name: str
  num_channels: int
  slices: tuple[ParamSlice, ...]
  reasons: tuple[str, ...]


def leaf_key(path: Sequence[Any]) -> tuple[str, ...]:
  """``("params", "conv1", "kernel")`` from a ``jax.tree_util`` key path.

  Example:
    >>> import jax
    >>> from jaxmutate.analysis import leaf_key
    >>> [leaf_key(p) for p, _ in jax.tree_util.tree_flatten_with_path({"params": {"a": {"kernel": 1}}})[0]]
    [('params', 'a', 'kernel')]
  """
  out = []
  for k in path:
    for attr in ("key", "name", "idx"):
      if hasattr(k, attr):
        out.append(str(getattr(k, attr)))
        break
    else:
      out.append(str(k))
  return tuple(out)


def _module_path(key: tuple[str, ...]) -> str:
  return ".".join(key[1:-1]) if len(key) > 2 else ".".join(key[1:])


def _unit_name(first: ParamSlice) -> str:
  path = ".".join(first.path[:-1]) or ".".join(first.path)
  return f"{path}_({min(first.indices)}, {max(first.indices) + 1})_{len(first.indices)}"


@dataclasses.dataclass(frozen=True, eq=False)
class ChannelAnalysis:
  """What :func:`analyze_channels` found: the prunable units, the excluded channels and why, and how to apply widths.

  Attributes:
    groups: the prunable units (:class:`ChannelGroup`), in the order their
      producing layers first appear in the program.
    excluded: channels that move together but cannot be pruned, with reasons.
    notes: ``(primitive, equation, what was done)`` for each primitive treated
      conservatively (its axes made unprunable).

  The methods apply widths: :meth:`masks` / :meth:`mask_variables` (traced,
  full shapes), :meth:`slice_variables` (concrete), :meth:`costs` (MACs and
  parameters as jittable functions of the masks) and :meth:`export` (the
  smaller network as a rewritten program, see :func:`export_pruned`).

  Example:
    >>> import jax, jax.numpy as jnp, flax.linen as nn
    >>> from jaxmutate.analysis import analyze_channels
    >>> class Net(nn.Module):
    ...   @nn.compact
    ...   def __call__(self, x):
    ...     x = nn.relu(nn.Conv(8, (3, 3), name="conv1")(x))
    ...     return nn.Dense(2, name="fc")(x.mean((1, 2)))
    >>> net, x = Net(), jnp.ones((1, 8, 8, 3))
    >>> analysis = analyze_channels(net, net.init(jax.random.key(0), x), x)
    >>> [g.name for g in analysis.groups]
    ['conv1_(0, 8)_8']
    >>> sorted(r for e in analysis.excluded for r in e.reasons)
    ['model input', 'reaches the model output']
  """

  groups: tuple[ChannelGroup, ...]
  excluded: tuple[ExcludedGroup, ...]
  notes: tuple[tuple[str, str, str], ...]
  # What export and the cost counter need (the program and every axis's labels).
  closed_jaxpr: Any = dataclasses.field(repr=False)
  in_tree: Any = dataclasses.field(repr=False)
  out_tree: Any = dataclasses.field(repr=False)
  labels: Mapping[Any, Any] = dataclasses.field(repr=False)
  element_channel: np.ndarray = dataclasses.field(repr=False)
  leaf_keys: tuple[tuple[str, ...], ...] = dataclasses.field(repr=False)
  leaf_labels: tuple[tuple[Any, ...], ...] = dataclasses.field(repr=False)
  cost_factors: tuple[tuple[int, tuple[Any, ...]], ...] = dataclasses.field(repr=False)
  num_leaves: int = dataclasses.field(repr=False, default=0)

  # Looking up -------------------------------------------------------------

  @property
  def group_names(self) -> tuple[str, ...]:
    """The units' names."""
    return tuple(g.name for g in self.groups)

  def group(self, name: str) -> ChannelGroup:
    """The unit called ``name``.

    Raises:
      ConfigError: no unit has that name (the message lists close ones).
    """
    for g in self.groups:
      if g.name == name:
        return g
    close = difflib.get_close_matches(name, self.group_names, n=3)
    raise ConfigError(f"No channel unit {name!r}; close matches: {close or list(self.group_names)[:5]}.")

  def report(self) -> str:
    """A readable summary: each unit with its slices, then each excluded group with its reasons."""
    lines = [f"{len(self.groups)} prunable unit(s):"]
    for g in self.groups:
      where = ", ".join(f"{'/'.join(s.path)}[{s.axis}]:{s.role}" for s in g.slices)
      lines.append(f"  {g.name}: {g.num_channels} channels; {where}")
    lines.append(f"{len(self.excluded)} excluded group(s):")
    for e in self.excluded:
      lines.append(f"  {e.name}: {e.num_channels} channels; " + "; ".join(e.reasons))
    for primitive, eqn, why in self.notes:
      lines.append(f"  note: {primitive}: {why}: {eqn}")
    return "\n".join(lines)

  # Widths -----------------------------------------------------------------

  def uniform_counts(self, ratio: float, round_to: int = 1) -> dict[str, int]:
    """Kept channels per unit after pruning ``ratio`` of each (Torch-Pruning's rounding: kept rounded up).

    ``kept = n - floor(n * ratio)``, rounded up to a multiple of ``round_to``
    (and of the unit's ``num_blocks``), at most ``n``.

    Raises:
      ConfigError: ``ratio`` outside ``[0, 1)``, or ``round_to`` not a positive
        int or larger than a unit (naming it).
    """
    if not isinstance(ratio, (int, float)) or not 0 <= ratio < 1:
      raise ConfigError(f"uniform_counts: ratio must be in [0, 1), got {ratio!r}.")
    if not isinstance(round_to, int) or isinstance(round_to, bool) or round_to < 1:
      raise ConfigError(f"uniform_counts: round_to must be a positive int, got {round_to!r}.")
    counts = {}
    for g in self.groups:
      step = math.lcm(round_to, g.num_blocks)
      if step > g.num_channels:
        raise ConfigError(
          f"uniform_counts: round_to={round_to} is larger than unit {g.name!r} ({g.num_channels} channels)."
        )
      kept = g.num_channels - math.floor(g.num_channels * ratio)
      counts[g.name] = min(g.num_channels, -(-kept // step) * step)
    return counts

  def first_channels(self, counts: Mapping[str, int]) -> dict[str, list[int]]:
    """``{unit: kept indices}`` keeping the first ``counts[unit]`` channels (of every block)."""
    kept = {}
    for name, count in counts.items():
      g = self.group(name)
      block = g.num_channels // g.num_blocks
      per = int(count) // g.num_blocks
      kept[name] = [b * block + j for b in range(g.num_blocks) for j in range(per)]
    return kept

  def masks(self, widths: Mapping[str, Any]) -> dict[str, jax.Array]:
    """Masks keeping the first ``widths[unit]`` channels; traceable (see :func:`channel_masks`)."""
    return channel_masks(self.groups, widths)

  def mask_variables(self, variables: Mapping[str, Any], masks: Mapping[str, Any]) -> dict[str, Any]:
    """``variables`` with each unit's slices multiplied by its mask (see :func:`mask_variables`)."""
    return mask_variables(variables, self.groups, masks)

  def slice_variables(self, variables: Mapping[str, Any], kept: Mapping[str, Sequence[int]]) -> dict[str, Any]:
    """``variables`` with only the kept channels (see :func:`slice_variables`)."""
    return slice_variables(variables, self.groups, kept)

  def kept_masks(self, kept: Mapping[str, Sequence[int]]) -> dict[str, np.ndarray]:
    """0/1 masks for explicit kept indices."""
    out = {}
    for name, indices in kept.items():
      mask = np.zeros(self.group(name).num_channels, np.float32)
      mask[np.asarray(indices, dtype=np.int64)] = 1.0
      out[name] = mask
    return out

  # Costs ------------------------------------------------------------------

  def _global_mask(self, masks: Mapping[str, Any] | None) -> jax.Array:
    masks = dict(masks or {})
    parts = []
    for g in self.groups:
      parts.append(jnp.asarray(masks[g.name], jnp.float32) if g.name in masks else jnp.ones(g.num_channels))
    return jnp.concatenate(parts) if parts else jnp.zeros((0,))

  def _counter(self, label: Any) -> tuple[int, np.ndarray]:
    channel = self.element_channel[label]
    return int((channel < 0).sum()), channel[channel >= 0]

  def costs(self, masks: Mapping[str, Any] | None = None) -> dict[str, jax.Array]:
    """MACs (of every ``conv``/``dot_general``, for the sample's batch) and parameters under ``masks``; jittable.

    ``masks`` as from :meth:`masks` or :meth:`kept_masks` (missing units keep
    everything); a channel counts by its mask value, so with 0/1 masks this is
    exactly the sliced network's count, and it is differentiable in the masks.

    Returns:
      ``{"macs": float32 scalar, "params": float32 scalar}`` (``params``: the
      ``params`` collection).

    Example:
      >>> import jax, jax.numpy as jnp, flax.linen as nn
      >>> from jaxmutate.analysis import analyze_channels
      >>> net, x = nn.Sequential([nn.Dense(8, use_bias=False), nn.relu, nn.Dense(2, use_bias=False)]), jnp.ones((1, 3))
      >>> analysis = analyze_channels(net, net.init(jax.random.key(0), x), x)
      >>> name = analysis.groups[0].name
      >>> jax.jit(lambda w: analysis.costs(analysis.masks({name: w})))(4)
      {'macs': Array(20., dtype=float32), 'params': Array(20., dtype=float32)}
    """
    gm = self._global_mask(masks)

    def count(label: Any) -> jax.Array:
      fixed, idx = self._counter(label)
      return fixed + (gm[idx].sum() if idx.size else 0.0)

    macs = jnp.float32(0.0)
    for multiplicity, factors in self.cost_factors:
      term = jnp.float32(multiplicity)
      for f in factors:
        term = term * (jnp.float32(f) if isinstance(f, int) else count(f[0]))
      macs = macs + term
    params = jnp.float32(0.0)
    for key, labels in zip(self.leaf_keys, self.leaf_labels):
      if key[0] != "params":
        continue
      term = jnp.float32(1.0)
      for label in labels:
        if isinstance(label, np.ndarray):
          term = term * count(label)
      params = params + term
    return {"macs": macs, "params": params}

  # Export -----------------------------------------------------------------

  def export(self, variables: Mapping[str, Any], kept: Mapping[str, Sequence[int]]) -> Any:
    """The pruned network: ``(PrunedNetwork, sliced variables)``; see :func:`~jaxmutate.analysis.export_pruned`."""
    from jaxmutate.analysis._export import export_pruned

    return export_pruned(self, variables, kept)


def _match_ignored(ignored: Sequence[str], keys: Sequence[tuple[str, ...]]) -> dict[str, list[int]]:
  matched: dict[str, list[int]] = {}
  names = [".".join(k[1:]) for k in keys]
  for name in ignored:
    if not isinstance(name, str):
      raise ConfigTypeError(f"analyze_channels: ignored names must be str, got {name!r}.")
    hits = [i for i, full in enumerate(names) if full == name or full.startswith(name + ".")]
    if not hits:
      modules = sorted({_module_path(k) for k in keys})
      close = difflib.get_close_matches(name, modules, n=3)
      raise ConfigError(
        f"analyze_channels: ignored name {name!r} matches no variable (module paths joined by '.'); close "
        f"matches: {close or modules[:6]}."
      )
    matched[name] = hits
  return matched


def analyze_channels(
  model: Any,
  variables: Mapping[str, Any],
  *sample_args: Any,
  ignored: Sequence[str] = (),
  strict: bool = False,
  **apply_kwargs: Any,
) -> ChannelAnalysis:
  """Finds the channel units of an unmodified model by tracing ``model.apply`` once and walking its jaxpr.

  Args:
    model: a Flax module (``model.apply(variables, *sample_args,
      **apply_kwargs)`` is traced) or any function ``f(variables, *args)``.
    variables: its variables (every collection ``apply`` needs).
    *sample_args: sample inputs (only shapes and dtypes matter; a batch of 1
      is enough).
    ignored: module paths (``"layer1.0.conv1"``) or leaf paths
      (``"fc.kernel"``) whose channels must not be pruned.
    strict: raise on a primitive without a rule instead of making its axes
      unprunable (and noting it).
    **apply_kwargs: passed to ``apply`` (``train=False``, ``mutable=[...]``);
      analyse in inference mode (no dropout).

  Returns:
    A :class:`ChannelAnalysis`.

  Raises:
    ConfigError: ``ignored`` names that match no variable; a model that does not
      trace (Python control flow on traced values).
    SearchSpaceError: (``strict``) a primitive without a rule, naming it and the
      equation.

  Example:
    >>> import jax, jax.numpy as jnp, flax.linen as nn
    >>> from jaxmutate.analysis import analyze_channels
    >>> class Block(nn.Module):
    ...   @nn.compact
    ...   def __call__(self, x):
    ...     y = nn.relu(nn.Conv(8, (3, 3), name="conv1")(x))
    ...     return x + nn.Conv(8, (3, 3), name="conv2")(y)
    >>> class Net(nn.Module):
    ...   @nn.compact
    ...   def __call__(self, x):
    ...     x = Block(name="block")(nn.Conv(8, (3, 3), name="stem")(x))
    ...     return nn.Dense(2, name="fc")(x.mean((1, 2)))
    >>> net, x = Net(), jnp.ones((1, 8, 8, 3))
    >>> analysis = analyze_channels(net, net.init(jax.random.key(0), x), x)
    >>> [(g.name, len(g.slices)) for g in analysis.groups]
    [('stem_(0, 8)_8', 6), ('block.conv1_(0, 8)_8', 3)]
  """
  apply: Callable[..., Any] = model.apply if hasattr(model, "apply") else model
  flat, in_tree = jax.tree_util.tree_flatten_with_path((variables, sample_args))
  var_leaves = [(leaf_key(p[1:]), v) for p, v in flat if p[0].idx == 0]
  keys = tuple(k for k, _ in var_leaves)
  matched = _match_ignored(ignored, keys)

  def fn(variables: Any, args: Any) -> Any:
    return apply(variables, *args, **apply_kwargs)

  try:
    closed, out_shape = jax.make_jaxpr(fn, return_shape=True)(variables, sample_args)
  except (jax.errors.ConcretizationTypeError, jax.errors.TracerBoolConversionError) as error:
    raise ConfigError(
      "analyze_channels: the model does not trace (Python control flow on a traced value); make the branch "
      f"static (an attribute or a static keyword argument) or use jax.lax.cond. JAX said: {str(error)[:400]}"
    ) from None
  walker = Walker(strict=strict)
  walker._leaf_names = [k[-1] for k in keys]
  walker._leaf_collections = [k[0] for k in keys]
  uf = walker.uf
  in_labels, in_views = [], []
  leaf_labels = []
  for index, (path, value) in enumerate(flat):
    shape = tuple(value.shape) if hasattr(value, "shape") else np.shape(value)
    if path[0].idx == 0:
      labels = tuple(uf.fresh(d) if d != 1 else None for d in shape)
      leaf_labels.append(labels)
      in_labels.append(labels)
      in_views.append((index, tuple(range(len(shape)))))
    else:
      in_labels.append(tuple(INPUT if d != 1 else None for d in shape))
      in_views.append(None)
  for name, hits in matched.items():
    for i in hits:
      for label in leaf_labels[i]:
        uf.poison(label, f"ignored ({name!r})")
  outs, _ = walker.walk(closed.jaxpr, closed.consts, in_labels, in_views, ())
  out_flat, out_tree = jax.tree_util.tree_flatten_with_path(out_shape)
  by_key = {k: i for i, k in enumerate(keys)}
  mutated = bool(apply_kwargs.get("mutable"))
  for (path, _), label in zip(out_flat, outs):
    key = leaf_key(path[1:]) if mutated and len(path) > 1 and getattr(path[0], "idx", None) == 1 else None
    if key is not None and key in by_key:
      for a, b in zip(leaf_labels[by_key[key]], label):
        merge_labels(uf, a, b)
    else:
      for axis in label:
        uf.poison(axis, OUTPUT)
  return _finalize(walker, closed, in_tree, out_tree, keys, leaf_labels)


def _finalize(walker: Walker, closed: Any, in_tree: Any, out_tree: Any, keys, leaf_labels) -> ChannelAnalysis:
  uf = walker.uf
  roots = uf.roots()
  reasons: dict[int, set[str]] = {}
  for ids, reason in uf.poisoned:
    for r in np.unique(roots[ids]).tolist():
      reasons.setdefault(r, set()).add(reason)
  # Every (leaf, axis, position) of every element, grouped by the element's class.
  rows = []
  for leaf, labels in enumerate(leaf_labels):
    for axis, label in enumerate(labels):
      if isinstance(label, np.ndarray):
        rows.append((leaf, axis, label))
  by_root: dict[int, list[tuple[int, int, int]]] = {}
  for leaf, axis, label in rows:
    for position, r in enumerate(roots[label].tolist()):
      by_root.setdefault(r, []).append((leaf, axis, position))
  order = {leaf: i for i, leaf in enumerate(sorted(walker.first_use, key=walker.first_use.get))}
  groups: dict[tuple, list[int]] = {}
  for r, places in by_root.items():
    counts: dict[tuple[int, int], int] = {}
    for leaf, axis, _ in places:
      counts[(leaf, axis)] = counts.get((leaf, axis), 0) + 1
    signature = (tuple(sorted(counts.items())), tuple(sorted(reasons.get(r, ()))))
    groups.setdefault(signature, []).append(r)

  def role(leaf: int, axis: int) -> str:
    if (leaf, axis) in walker.roles:
      return walker.roles[(leaf, axis)]
    if keys[leaf][0] != "params":
      return "norm"
    # A kernel used through an op that hides its identity (stacked with others, say): Flax's (..., in, out) layout.
    rank = len(leaf_labels[leaf])
    if rank >= 2 and keys[leaf][-1] == "kernel":
      return "output" if axis == rank - 1 else ("input" if axis == rank - 2 else "other")
    return "other"

  units, excluded = [], []
  root_channel = np.full(uf.size, -1, np.int64)
  offset = 0
  built = []
  for (signature, why), members in groups.items():
    axes = [(leaf, axis, count) for (leaf, axis), count in signature]
    roles = {(leaf, axis): role(leaf, axis) for leaf, axis, _ in axes}
    if not any(r in ("output", "input", "norm", "bias") for r in roles.values()):
      continue  # kernel spatial axes and the like: not channels
    positions = {r: {} for r in members}
    for r in members:
      for leaf, axis, position in by_root[r]:
        positions[r].setdefault((leaf, axis), []).append(position)
    rank = {"output": 0, "input": 2, "norm": 1, "bias": 1, "other": 3}
    axes.sort(key=lambda t: (rank[roles[(t[0], t[1])]], order.get(t[0], len(order) + t[0]), t[1]))
    first_leaf, first_axis, _ = axes[0]
    members.sort(key=lambda r: min(positions[r][(first_leaf, first_axis)]))
    slices = []
    for leaf, axis, count in axes:
      per = [sorted(positions[r][(leaf, axis)]) for r in members]
      for s in range(count):
        key = keys[leaf]
        slices.append(ParamSlice(key[0], key[1:], axis, tuple(p[s] for p in per), roles[(leaf, axis)]))
    built.append((slices, members, why))
  built.sort(key=lambda b: (order.get(_leaf_of(b[0][0], keys), 1 << 30), b[0][0].axis, min(b[0][0].indices)))
  names: set[str] = set()
  for slices, members, why in built:
    name = _unit_name(slices[0])
    base, k = name, 2
    while name in names:
      name, k = f"{base}#{k}", k + 1
    names.add(name)
    has_output = any(s.role == "output" for s in slices)
    if why or not has_output:
      excluded.append(ExcludedGroup(name, len(members), tuple(slices), tuple(why) or (NOT_PRODUCED,)))
      continue
    units.append(ChannelGroup(name, len(members), tuple(slices)))
    root_channel[np.asarray(members)] = offset + np.arange(len(members))
    offset += len(members)
  element_channel = root_channel[roots]
  return ChannelAnalysis(
    groups=tuple(units),
    excluded=tuple(excluded),
    notes=tuple(dict.fromkeys(walker.notes)),
    closed_jaxpr=closed,
    in_tree=in_tree,
    out_tree=out_tree,
    labels=walker.labels,
    element_channel=element_channel,
    leaf_keys=tuple(keys),
    leaf_labels=tuple(leaf_labels),
    cost_factors=tuple(walker.costs),
    num_leaves=len(keys),
  )


def _leaf_of(s: ParamSlice, keys: Sequence[tuple[str, ...]]) -> int:
  return keys.index((s.collection, *s.path))
