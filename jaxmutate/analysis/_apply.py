"""Applying widths to the variables of an analysed model: slicing (concrete) and masking (traced).

:func:`slice_variables` removes channels for real (smaller arrays, for export);
:func:`channel_masks` and :func:`mask_variables` zero them, which works with
traced widths under ``jit``/``vmap``/``grad`` (one compile for every width).
Both read only the units (:class:`~jaxmutate.analysis.ChannelGroup`), never
the model.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any

import jax
import jax.numpy as jnp
import numpy as np

from jaxmutate.analysis._groups import ChannelGroup
from jaxmutate.errors import ChoiceError, ConfigKeyError

__all__ = ["channel_masks", "removed_positions", "mask_variables", "slice_variables"]

Variables = Mapping[str, Any]


def _by_name(groups: Sequence[ChannelGroup], names: Sequence[str], what: str) -> dict[str, ChannelGroup]:
  known = {group.name: group for group in groups}
  unknown = [name for name in names if name not in known]
  if unknown:
    raise ConfigKeyError(f"{what}: unknown unit(s) {unknown}; the units are {sorted(known)}.")
  return known


def _checked_kept(group: ChannelGroup, kept: Sequence[int]) -> np.ndarray:
  where = f"slice_variables: unit {group.name!r}"
  indices = np.asarray(kept)
  if indices.ndim != 1 or (indices.size and not np.issubdtype(indices.dtype, np.integer)):
    raise ChoiceError(f"{where}: kept channels must be a 1-D sequence of ints, got {kept!r}.")
  if indices.size == 0:
    raise ChoiceError(f"{where}: keeps no channel; keep at least one of its {group.num_channels}.")
  if indices.min() < 0 or indices.max() >= group.num_channels:
    raise ChoiceError(f"{where}: kept channel indices must lie in [0, {group.num_channels}), got {indices.tolist()}.")
  if len(set(indices.tolist())) != indices.size:
    raise ChoiceError(f"{where}: kept channel indices repeat: {indices.tolist()}.")
  if group.num_blocks > 1:
    block = group.num_channels // group.num_blocks
    rows = [set((indices[(indices // block) == b] % block).tolist()) for b in range(group.num_blocks)]
    if any(row != rows[0] for row in rows):
      raise ChoiceError(
        f"{where}: its {group.num_blocks} blocks of {block} channels must keep the same positions, got "
        f"{[sorted(r) for r in rows]}."
      )
  return np.sort(indices)


def removed_positions(
  groups: Sequence[ChannelGroup], kept: Mapping[str, Sequence[int]]
) -> dict[tuple[str, tuple[str, ...], int], np.ndarray]:
  """``{(collection, path, axis): positions removed}`` for every axis a unit touches.

  Units missing from ``kept`` keep every channel (nothing removed).

  Example:
    >>> from jaxmutate.analysis import ChannelGroup, ParamSlice, removed_positions
    >>> unit = ChannelGroup("a_(0, 4)_4", 4, (ParamSlice("params", ("a", "kernel"), 1, (0, 1, 2, 3), "output"),))
    >>> removed_positions([unit], {"a_(0, 4)_4": [0, 2]})[("params", ("a", "kernel"), 1)].tolist()
    [1, 3]
  """
  known = _by_name(groups, list(kept), "slice_variables")
  removed: dict[tuple[str, tuple[str, ...], int], set[int]] = {}
  for group in groups:
    keep = set(_checked_kept(group, kept[group.name]).tolist()) if group.name in kept else None
    for s in group.slices:
      axis_key = (s.collection, tuple(s.path), s.axis)
      gone = removed.setdefault(axis_key, set())
      if keep is not None:
        gone.update(position for i, position in enumerate(s.indices) if i not in keep)
  del known
  return {k: np.asarray(sorted(gone), dtype=np.int64) for k, gone in removed.items()}


def _leaf(variables: Variables, collection: str, path: Sequence[str]) -> Any:
  node: Any = variables
  for key in (collection, *path):
    if not isinstance(node, Mapping) or key not in node:
      raise ConfigKeyError(f"The variables have no leaf {'/'.join((collection, *path))!r} that a unit slices.")
    node = node[key]
  return node


def _replace_leaves(variables: Variables, updates: Mapping[tuple[str, ...], Any]) -> dict[str, Any]:
  def rebuild(node: Any, prefix: tuple[str, ...]) -> Any:
    if isinstance(node, Mapping):
      return {k: rebuild(v, (*prefix, k)) for k, v in node.items()}
    return updates.get(prefix, node)

  return rebuild(variables, ())


def slice_variables(
  variables: Variables, groups: Sequence[ChannelGroup], kept: Mapping[str, Sequence[int]]
) -> dict[str, Any]:
  """The variables with only the ``kept`` channels of each unit: smaller arrays, same tree.

  Args:
    variables: the model's variables (every collection).
    groups: the units (e.g. ``analysis.groups``).
    kept: ``{unit name: kept channel indices}`` in the unit's channel numbering
      (channel ``i`` is position ``slice.indices[i]`` of every slice); units not
      listed keep every channel. A unit with ``num_blocks > 1`` must keep the
      same positions in every block.

  Returns:
    A new (plain ``dict``) variable tree.

  Raises:
    ConfigKeyError: an unknown unit name, or a slice naming a leaf the
      variables do not have.
    ChoiceError: indices out of range, repeated, empty, or unequal across blocks.

  Example:
    >>> import numpy as np
    >>> from jaxmutate.analysis import ChannelGroup, ParamSlice, slice_variables
    >>> out = ParamSlice("params", ("a", "kernel"), 1, (0, 1, 2, 3), "output")
    >>> nxt = ParamSlice("params", ("b", "kernel"), 0, (0, 1, 2, 3), "input")
    >>> unit = ChannelGroup("a_(0, 4)_4", 4, (out, nxt))
    >>> variables = {"params": {"a": {"kernel": np.ones((2, 4))}, "b": {"kernel": np.ones((4, 3))}}}
    >>> small = slice_variables(variables, [unit], {"a_(0, 4)_4": [1, 3]})
    >>> small["params"]["a"]["kernel"].shape, small["params"]["b"]["kernel"].shape
    ((2, 2), (2, 3))
  """
  removed = removed_positions(groups, kept)
  by_leaf: dict[tuple[str, ...], list[tuple[int, np.ndarray]]] = {}
  for (collection, path, axis), gone in removed.items():
    if gone.size:
      by_leaf.setdefault((collection, *path), []).append((axis, gone))
  updates = {}
  for key, cuts in by_leaf.items():
    value = _leaf(variables, key[0], key[1:])
    for axis, gone in cuts:
      keep = np.setdiff1d(np.arange(np.shape(value)[axis]), gone)
      value = jnp.take(jnp.asarray(value), jnp.asarray(keep), axis=axis)
    updates[key] = value
  return _replace_leaves(variables, updates)


def channel_masks(groups: Sequence[ChannelGroup], widths: Mapping[str, Any]) -> dict[str, jax.Array]:
  """``{unit name: float32 mask}`` keeping the first ``widths[name]`` channels of each unit; traceable.

  A unit with ``num_blocks > 1`` keeps the first ``width // num_blocks``
  channels of every block. Units missing from ``widths`` keep everything.
  ``widths`` may be traced (``jit``/``vmap`` over widths compiles once).

  Raises:
    ConfigKeyError: an unknown unit name.

  Example:
    >>> from jaxmutate.analysis import ChannelGroup, ParamSlice, channel_masks
    >>> unit = ChannelGroup("a_(0, 4)_4", 4, (ParamSlice("params", ("a", "kernel"), 1, (0, 1, 2, 3), "output"),))
    >>> channel_masks([unit], {"a_(0, 4)_4": 3})["a_(0, 4)_4"].tolist()
    [1.0, 1.0, 1.0, 0.0]
  """
  known = _by_name(groups, list(widths), "channel_masks")
  masks = {}
  for name, group in known.items():
    if name not in widths:
      masks[name] = jnp.ones((group.num_channels,), jnp.float32)
      continue
    block = group.num_channels // group.num_blocks
    within = jnp.arange(group.num_channels) % block
    masks[name] = (within < jnp.asarray(widths[name]) // group.num_blocks).astype(jnp.float32)
  return masks


def mask_variables(
  variables: Variables,
  groups: Sequence[ChannelGroup],
  masks: Mapping[str, Any],
  collections: Sequence[str] = ("params",),
) -> dict[str, Any]:
  """The variables with every slice of each unit multiplied by the unit's mask; traceable and differentiable.

  With 0/1 masks the pruned channels' kernels, biases and norm parameters are
  zero, so nothing downstream reads them; ``model.apply`` on these variables
  still computes norm statistics over (and divides means by) every channel,
  which :func:`~jaxmutate.analysis.masked_function` corrects, so that its
  output equals the sliced network's. Float masks give the gradient of a
  loss with respect to each channel's mask (Taylor/Fisher importance).

  Args:
    variables: the model's variables.
    groups: the units.
    masks: ``{unit name: (num_channels,) array}``; missing units are unmasked.
    collections: which collections to mask (``"params"``; statistics such as
      ``batch_stats`` need no mask, their channels are zero-scaled anyway).

  Raises:
    ConfigKeyError: an unknown unit name, or a slice naming a missing leaf.

  Example:
    >>> import jax.numpy as jnp, numpy as np
    >>> from jaxmutate.analysis import ChannelGroup, ParamSlice, mask_variables
    >>> unit = ChannelGroup("a_(0, 2)_2", 2, (ParamSlice("params", ("a", "kernel"), 1, (0, 1), "output"),))
    >>> masked = mask_variables({"params": {"a": {"kernel": np.ones((3, 2))}}}, [unit], {"a_(0, 2)_2": jnp.array([1.0, 0.0])})
    >>> masked["params"]["a"]["kernel"][0].tolist()
    [1.0, 0.0]
  """
  known = _by_name(groups, list(masks), "mask_variables")
  factors: dict[tuple[str, ...], dict[int, Any]] = {}
  for name, mask in masks.items():
    group = known[name]
    mask = jnp.asarray(mask)
    for s in group.slices:
      if s.collection not in collections:
        continue
      key = (s.collection, *s.path)
      size = np.shape(_leaf(variables, s.collection, s.path))[s.axis]
      per_axis = factors.setdefault(key, {})
      base = per_axis.get(s.axis, jnp.ones((size,), mask.dtype))
      per_axis[s.axis] = base.at[np.asarray(s.indices)].multiply(mask, unique_indices=True)
  updates = {}
  for key, per_axis in factors.items():
    value = jnp.asarray(_leaf(variables, key[0], key[1:]))
    for axis, factor in per_axis.items():
      shape = [1] * value.ndim
      shape[axis] = value.shape[axis]
      value = value * factor.reshape(shape).astype(value.dtype)
    updates[key] = value
  return _replace_leaves(variables, updates)
