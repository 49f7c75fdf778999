"""Channel masks over the slices of a unit, and GroupFisher's read-side masking of the consumers.

A mask is one ``float32`` vector per unit (``1`` kept, ``0`` pruned). To run the
pruned network at full shapes use :func:`masked_apply` (any input shape, any
``apply`` mode) over :func:`jaxmutate.analysis.masked_function` (exactly the
sliced network). :func:`mask_consumers` scales only a unit's
*input* slices (the consuming kernels' input channels): its gradient with
respect to the mask is GroupFisher's activation-mask gradient.
"""

from __future__ import annotations

from collections.abc import Callable, Hashable, Mapping, Sequence
from typing import Any

import jax
import jax.numpy as jnp
import numpy as np

from jaxmutate.analysis import ChannelGroup, ParamSlice, analyze_channels, masked_function
from jaxmutate.errors import ConfigError, ConfigKeyError, ConfigTypeError

__all__ = ["MaskedApply", "full_masks", "kept_counts", "kept_indices", "mask_consumers", "masked_apply"]

Masks = dict[str, jax.Array]
"""``{unit name: float32 (num_channels,)}``: 1 for a kept channel, 0 for a pruned one."""


def leaf_of(variables: Mapping[str, Any], s: ParamSlice) -> jax.Array:
  """The leaf a slice lives on; a missing collection or key is a ``ConfigKeyError`` naming the path."""
  node: Any = variables
  for key in (s.collection, *s.path):
    if not isinstance(node, Mapping) or key not in node:
      raise ConfigKeyError(
        f"slice {s.collection}/{'/'.join(s.path)}: no key {key!r} in the variables (a group of another model?)."
      )
    node = node[key]
  if s.axis >= np.ndim(node) or max(s.indices, default=-1) >= np.shape(node)[s.axis]:
    raise ConfigError(
      f"slice {s.collection}/{'/'.join(s.path)}: axis {s.axis} / indices up to {max(s.indices)} do not fit the leaf "
      f"of shape {np.shape(node)}."
    )
  return node


def channel_rows(leaf: jax.Array, s: ParamSlice) -> jax.Array:
  """The slice's positions of ``leaf`` as rows: ``(num_channels, everything else)``."""
  taken = jnp.take(jnp.asarray(leaf), np.asarray(s.indices, np.int32), axis=s.axis)
  return jnp.moveaxis(taken, s.axis, 0).reshape(len(s.indices), -1)


def _replace_leaf(tree: Any, path: Sequence[str], leaf: jax.Array) -> Any:
  """A copy of the nested mapping ``tree`` with ``leaf`` at ``path`` (only the dicts on the way are copied)."""
  if not path:
    return leaf
  copy = dict(tree)
  copy[path[0]] = _replace_leaf(tree[path[0]], path[1:], leaf)
  return copy


def full_masks(groups: Sequence[ChannelGroup]) -> Masks:
  """Every channel of every unit kept: all-ones masks.

  Example:
    >>> from jaxmutate.analysis import ChannelGroup, ParamSlice
    >>> from jaxmutate.pruning import full_masks
    >>> group = ChannelGroup("fc1_(0, 3)_3", 3, (ParamSlice("params", ("fc1", "kernel"), 1, (0, 1, 2), "output"),))
    >>> full_masks([group])["fc1_(0, 3)_3"].tolist()
    [1.0, 1.0, 1.0]
  """
  return {g.name: jnp.ones((g.num_channels,), jnp.float32) for g in groups}


def kept_counts(masks: Mapping[str, Any]) -> dict[str, int]:
  """How many channels each unit keeps (concrete masks).

  Example:
    >>> import numpy as np
    >>> from jaxmutate.pruning import kept_counts
    >>> kept_counts({"fc1_(0, 3)_3": np.array([1.0, 0.0, 1.0])})
    {'fc1_(0, 3)_3': 2}
  """
  return {name: int(np.count_nonzero(np.asarray(m) > 0.5)) for name, m in masks.items()}


def kept_indices(masks: Mapping[str, Any]) -> dict[str, tuple[int, ...]]:
  """The kept channels of each unit, increasing (what slicing the variables needs).

  Example:
    >>> import numpy as np
    >>> from jaxmutate.pruning import kept_indices
    >>> kept_indices({"fc1_(0, 3)_3": np.array([1.0, 0.0, 1.0])})
    {'fc1_(0, 3)_3': (0, 2)}
  """
  return {name: tuple(int(i) for i in np.flatnonzero(np.asarray(m) > 0.5)) for name, m in masks.items()}


def mask_consumers(
  variables: Mapping[str, Any],
  groups: Sequence[ChannelGroup],
  masks: Mapping[str, jax.Array],
  roles: Sequence[str] | None = None,
) -> dict[str, Any]:
  """``variables`` with each unit's *consumers* (its ``"input"`` slices) scaled by its mask; jittable.

  This is GroupFisher's activation mask: the unit's channels are multiplied by
  the mask where they are read, so the gradient of a loss with respect to the
  mask is, per channel, the activation times its gradient summed over positions
  (:func:`~jaxmutate.pruning.fisher_importance` differentiates it). The
  producing kernels, biases and norms are left alone.

  It is *not* the general way to run a pruned network: where a unit's channels
  are also read by something without a kernel (a LayerNorm's statistics, a
  reduction over channels) the read-side mask misses them. For that use
  :func:`masked_apply` (:func:`jaxmutate.analysis.masked_function` for any
  input shape), which equals the sliced network for every analysed model;
  :func:`jaxmutate.analysis.mask_variables` scales every ``params`` slice of a
  unit.

  Args:
    variables: the model's variables (``{"params": ..., "batch_stats": ...}``).
    groups: the units.
    masks: ``{unit name: (num_channels,)}``; units without an entry are left alone.
    roles: which slices to scale. ``None`` (default): a unit's ``"input"``
      slices; a unit without input slices has all its slices masked.

  Returns:
    New variables; the leaves no mask touches are the same objects.

  Raises:
    ConfigKeyError: a mask names no unit of ``groups``.

  Example:
    >>> import jax.numpy as jnp
    >>> from jaxmutate.analysis import ChannelGroup, ParamSlice
    >>> from jaxmutate.pruning import mask_consumers
    >>> variables = {"params": {"fc2": {"kernel": jnp.ones((3, 2))}}}
    >>> group = ChannelGroup("fc1_(0, 3)_3", 3, (ParamSlice("params", ("fc2", "kernel"), 0, (0, 1, 2), "input"),))
    >>> masked = mask_consumers(variables, [group], {"fc1_(0, 3)_3": jnp.array([1.0, 0.0, 1.0])})
    >>> masked["params"]["fc2"]["kernel"][:, 0].tolist()
    [1.0, 0.0, 1.0]
  """
  by_name = {g.name: g for g in groups}
  unknown = sorted(set(masks) - set(by_name))
  if unknown:
    raise ConfigKeyError(f"mask_consumers: masks for unknown unit(s) {unknown}; the units are {sorted(by_name)}.")
  out: Any = dict(variables)
  for name, mask in masks.items():
    group = by_name[name]
    chosen = _slices_for(group, roles)
    for s in chosen:
      leaf = leaf_of(out, s)
      scale = jnp.ones((leaf.shape[s.axis],), jnp.result_type(leaf))
      scale = scale.at[np.asarray(s.indices, np.int32)].set(jnp.asarray(mask, scale.dtype), unique_indices=True)
      shape = [1] * leaf.ndim
      shape[s.axis] = leaf.shape[s.axis]
      out = _replace_leaf(out, (s.collection, *s.path), leaf * scale.reshape(shape))
  return out


def _slices_for(group: ChannelGroup, roles: Sequence[str] | None) -> tuple[ParamSlice, ...]:
  if roles is not None:
    return tuple(s for s in group.slices if s.role in roles)
  inputs = tuple(s for s in group.slices if s.role == "input")
  return inputs or tuple(group.slices)


def _hashable(value: Any) -> Hashable:
  if isinstance(value, Mapping):
    return tuple(sorted((k, _hashable(v)) for k, v in value.items()))
  if isinstance(value, (list, tuple)):
    return tuple(_hashable(v) for v in value)
  return value


class MaskedApply:
  """``f(variables, masks, *inputs, **apply_kwargs)``: the model under channel masks, exactly the sliced network.

  Built by :func:`masked_apply`. The masked program of
  :func:`jaxmutate.analysis.masked_function` is the traced one, bound to the
  sample's shapes and ``apply`` keywords; this analyses the model again (from
  shapes only, once per input shape, variable tree and keywords, also while
  being traced under ``jit``) and checks that each analysis finds the same
  units. ``masks`` may be traced: one compile serves every pruning state.

  Attributes:
    model: the Flax module.
    groups: the units every analysis must find.
    ignored: passed to :func:`~jaxmutate.analysis.analyze_channels`.

  Example:
    >>> import jax, jax.numpy as jnp, flax.linen as nn
    >>> from jaxmutate.analysis import analyze_channels
    >>> from jaxmutate.pruning import full_masks, masked_apply
    >>> net = nn.Sequential([nn.Dense(4), nn.relu, nn.Dense(2)])
    >>> variables = net.init(jax.random.key(0), jnp.ones((1, 3)))
    >>> apply = masked_apply(net, analyze_channels(net, variables, jnp.ones((1, 3))))
    >>> apply(variables, full_masks(apply.groups), jnp.ones((7, 3))).shape  # any batch size
    (7, 2)
  """

  def __init__(self, model: Any, groups: Sequence[ChannelGroup], ignored: Sequence[str] = ()):
    self.model, self.groups, self.ignored = model, tuple(groups), tuple(ignored)
    self._programs: dict[Hashable, Callable[..., Any]] = {}

  def __call__(self, variables: Mapping[str, Any], masks: Mapping[str, Any], *inputs: Any, **apply_kwargs: Any) -> Any:
    """``model.apply(variables, *inputs, **apply_kwargs)`` of the network the 0/1 ``masks`` leave."""
    variables = dict(variables)
    shapes = jax.tree.map(lambda a: jax.ShapeDtypeStruct(np.shape(a), jnp.result_type(a)), (variables, inputs))
    leaves, tree = jax.tree.flatten(shapes)
    key = (tree, tuple((a.shape, str(a.dtype)) for a in leaves), _hashable(apply_kwargs))
    if key not in self._programs:
      analysis = analyze_channels(self.model, shapes[0], *shapes[1], ignored=self.ignored, **apply_kwargs)
      if analysis.groups != self.groups:
        raise ConfigError(
          f"masked_apply: the analysis of {type(self.model).__name__} on inputs of shapes "
          f"{[a.shape for a in jax.tree.leaves(shapes[1])]} with {apply_kwargs} finds other units, "
          f"{[g.name for g in analysis.groups]}, than the ones given, {[g.name for g in self.groups]}."
        )
      self._programs[key] = masked_function(analysis)
    return self._programs[key](variables, masks, *inputs)


def masked_apply(model: Any, analysis_or_groups: Any, ignored: Sequence[str] = ()) -> MaskedApply:
  """The model under channel masks for any input shape: :func:`jaxmutate.analysis.masked_function`, re-analysed per shape.

  Its output equals the analysis's sliced program
  (:func:`~jaxmutate.analysis.pruned_function`, what
  :func:`~jaxmutate.analysis.export_pruned` exports) for every model the
  analysis covers: unlike :func:`mask_consumers`, the producers' weights,
  biases and norm parameters are masked too and reductions over channels (a
  LayerNorm's statistics) see zeros at pruned channels. It works in training
  mode (``train=True, mutable=["batch_stats"]`` also returns the new
  statistics) and is differentiable in the variables and the masks.

  Args:
    model: the Flax module (or a function ``f(variables, *inputs)``).
    analysis_or_groups: its :class:`~jaxmutate.analysis.ChannelAnalysis` or its units.
    ignored: what the analysis was given as ``ignored``.

  Raises:
    ConfigTypeError: ``analysis_or_groups`` is neither an analysis nor a sequence of units.
    ConfigError: (when called) the model analysed on these inputs has other units.

  Example:
    >>> import jax, jax.numpy as jnp, flax.linen as nn
    >>> from jaxmutate.analysis import analyze_channels, pruned_function
    >>> from jaxmutate.pruning import masked_apply
    >>> net = nn.Sequential([nn.Dense(4), nn.LayerNorm(), nn.Dense(2)])
    >>> variables = net.init(jax.random.key(0), jnp.ones((1, 3)))
    >>> apply = masked_apply(net, analyze_channels(net, variables, jnp.ones((1, 3))))
    >>> x = jax.random.normal(jax.random.key(1), (5, 3))  # another batch size than the analysis's sample
    >>> analysis = analyze_channels(net, variables, x)
    >>> kept = {analysis.groups[0].name: [0, 1]}
    >>> sliced = pruned_function(analysis, kept)(analysis.slice_variables(variables, kept), x)
    >>> bool(jnp.allclose(jax.jit(apply)(variables, analysis.kept_masks(kept), x), sliced, atol=1e-5))
    True
  """
  groups = getattr(analysis_or_groups, "groups", analysis_or_groups)
  if (
    isinstance(groups, (str, bytes))
    or not isinstance(groups, Sequence)
    or not all(isinstance(g, ChannelGroup) for g in groups)
  ):
    raise ConfigTypeError(
      f"masked_apply: expected a ChannelAnalysis or a sequence of ChannelGroup, got {type(analysis_or_groups).__name__}."
    )
  return MaskedApply(model, groups, ignored)
