"""The jaxpr walk: which channel each position of each array axis carries, united primitive by primitive.

Every position of every axis of every variable leaf starts as its own
*element*. Walking the jaxpr, each array axis carries a *label*:

* an ``np.ndarray`` of element ids, one per position (a channel axis);
* a ``str``: the axis cannot shrink (batch, spatial, the model input, a head
  index...) and the string says why;
* ``None``: the array is uniform along the axis (a broadcast), so it shrinks
  with whatever it meets.

A rule per primitive unites elements that must be removed together (a
union-find over all elements) and marks elements that cannot be removed
("poisons" them, with a reason). Channels are the union-find classes; units
are classes that touch the same variable axes (:mod:`._analysis`).
"""

from __future__ import annotations

import math
from collections.abc import Callable, Sequence
from typing import Any

import jax.extend.core as jax_core
import numpy as np

from jaxmutate.errors import SearchSpaceError

__all__: list[str] = []  # internal to the analysis package

Label = Any  # np.ndarray | str | None

ELEMENTWISE = frozenset(
  """
  abs acos acosh add add_any and asin asinh atan atan2 atanh bessel_i0e bessel_i1e cbrt ceil clamp conj
  convert_element_type copy copy_p cos cosh digamma div eq erf erf_inv erfc exp exp2 expm1 floor ge gt igamma
  igammac imag integer_pow is_finite le lgamma log log1p logistic lt max min mul ne neg nextafter not or pow
  population_count real reduce_precision rem round rsqrt select_n shift_left shift_right_arithmetic
  shift_right_logical sign sin sinh sqrt square sub tan tanh xor polygamma zeta clz stop_gradient
  """.split()
)
# Unary ops through which a parameter keeps its identity (so its first real use gives it a role).
VIEW_OPS = frozenset(
  "convert_element_type copy copy_p reshape broadcast_in_dim transpose squeeze reduce_precision "
  "rsqrt sqrt neg integer_pow square abs exp log".split()
)
INLINE = {
  "pjit": "jaxpr",
  "jit": "jaxpr",
  "closed_call": "call_jaxpr",
  "core_call": "call_jaxpr",
  "remat": "jaxpr",
  "remat2": "jaxpr",
  "checkpoint": "jaxpr",
  "custom_jvp_call": "call_jaxpr",
  "custom_vjp_call": "call_jaxpr",
  "custom_vjp_call_jaxpr": "fun_jaxpr",
  "custom_lin": None,
}
RANDOM = frozenset(
  "random_bits random_seed random_wrap random_unwrap random_split random_fold_in threefry2x32 rng_bit_generator "
  "rng_uniform".split()
)
ROLE_RANK = {"other": 0, "bias": 1, "norm": 1, "input": 2, "output": 3}
SPATIAL = "a spatial axis"


def inner_jaxpr(eqn: Any) -> tuple[Any, Sequence[Any]]:
  """``(jaxpr, consts)`` of a call-like equation (``jit``, ``custom_jvp_call``, ``remat``...)."""
  key = INLINE[eqn.primitive.name]
  if key is None or key not in eqn.params:
    key = next(k for k in ("jaxpr", "call_jaxpr", "fun_jaxpr") if k in eqn.params)
  inner = eqn.params[key]
  if isinstance(inner, jax_core.ClosedJaxpr):
    return inner.jaxpr, inner.consts
  return inner, ()


def short(eqn: Any) -> str:
  """One line naming an equation: ``"add a b -> c (f32[2,8])"``."""
  text = str(eqn).strip().splitlines()
  line = text[0] if len(text) == 1 else f"{eqn.primitive.name}[...]"
  return line if len(line) <= 160 else line[:157] + "..."


class UnionFind:
  """A vectorised union-find over integer element ids, with a poison list (elements that cannot be removed)."""

  def __init__(self) -> None:
    self.parent = np.zeros(1024, np.int64)
    self.size = 0
    self.poisoned: list[tuple[np.ndarray, str]] = []

  def fresh(self, n: int) -> np.ndarray:
    if self.size + n > self.parent.size:
      grown = np.zeros(max(2 * self.parent.size, self.size + n), np.int64)
      grown[: self.size] = self.parent[: self.size]
      self.parent = grown
    ids = np.arange(self.size, self.size + n, dtype=np.int64)
    self.parent[ids] = ids
    self.size += n
    return ids

  def find(self, x: np.ndarray) -> np.ndarray:
    root = self.parent[x]
    while True:
      up = self.parent[root]
      if np.array_equal(up, root):
        break
      root = up
    self.parent[x] = root
    return root

  def unite(self, a: np.ndarray, b: np.ndarray) -> None:
    a, b = np.ravel(a), np.ravel(b)
    if a.shape != b.shape:
      raise AssertionError(f"unite: shapes {a.shape} and {b.shape}")
    ra, rb = self.find(a), self.find(b)
    while True:
      differ = ra != rb
      if not differ.any():
        return
      ra, rb = ra[differ], rb[differ]
      lo, hi = np.minimum(ra, rb), np.maximum(ra, rb)
      self.parent[hi] = lo  # repeated his lose all but one write; the loop repeats until every pair agrees
      ra, rb = self.find(lo), self.find(hi)

  def poison(self, ids: Any, reason: str) -> None:
    if isinstance(ids, np.ndarray) and ids.size:
      self.poisoned.append((ids.ravel(), reason))

  def roots(self) -> np.ndarray:
    return self.find(np.arange(self.size, dtype=np.int64))


def merge_labels(uf: UnionFind, x: Label, y: Label) -> Label:
  """The label of an axis where ``x`` and ``y`` meet position by position (ids are united)."""
  if x is None:
    return y
  if y is None:
    return x
  if isinstance(x, np.ndarray) and isinstance(y, np.ndarray):
    uf.unite(x, y)
    return x
  if isinstance(x, np.ndarray):  # the axis cannot shrink: it stays a block axis, and the channels meeting it are fixed
    uf.poison(x, y)
    return y
  if isinstance(y, np.ndarray):
    uf.poison(y, x)
    return x
  return x


def _same(uf: UnionFind, x: Sequence[Label], y: Sequence[Label]) -> bool:
  for a, b in zip(x, y):
    if isinstance(a, np.ndarray) != isinstance(b, np.ndarray):
      return False
    if isinstance(a, np.ndarray) and not np.array_equal(uf.find(a), uf.find(b)):
      return False
    if not isinstance(a, np.ndarray) and (a is None) != (b is None):
      return False
  return True


def _reshape_blocks(old: Sequence[int], new: Sequence[int]) -> list[tuple[list[int], list[int]]]:
  """Minimal runs ``(old axes, new axes)`` of the axes larger than one whose sizes have equal products."""
  old_axes = [i for i, d in enumerate(old) if d != 1]
  new_axes = [j for j, d in enumerate(new) if d != 1]
  blocks, a, b = [], 0, 0
  while a < len(old_axes) and b < len(new_axes):
    ins, outs = [old_axes[a]], [new_axes[b]]
    p, q = old[old_axes[a]], new[new_axes[b]]
    a, b = a + 1, b + 1
    while p != q:
      if p < q:
        ins.append(old_axes[a])
        p *= old[old_axes[a]]
        a += 1
      else:
        outs.append(new_axes[b])
        q *= new[new_axes[b]]
        b += 1
    blocks.append((ins, outs))
  return blocks


class Walker:
  """Walks a jaxpr, labelling axes and uniting elements; records roles, costs, notes and labels for export.

  Attributes:
    uf: the union-find over elements.
    labels: ``{(context, var): labels}`` for every variable of every (nested) jaxpr walked.
    roles: ``{(leaf index, axis): role}`` from the first real use of each parameter axis.
    first_use: ``{leaf index: order}`` of the first use of each leaf.
    costs: ``(multiplicity, factors)`` per ``conv``/``dot_general``: MACs are
      ``multiplicity * prod(factor counts)``, a factor being an int or a label.
    notes: ``(primitive, equation, what was done)`` for conservative treatments.
  """

  def __init__(self, strict: bool = False) -> None:
    self.uf = UnionFind()
    self.labels: dict[tuple[tuple[int, ...], Any], tuple[Label, ...]] = {}
    self.roles: dict[tuple[int, int], str] = {}
    self.first_use: dict[int, int] = {}
    self.costs: list[tuple[int, tuple[Any, ...]]] = []
    self.notes: list[tuple[str, str, str]] = []
    self.strict = strict
    self._multiplicity = 1

  # Helpers ---------------------------------------------------------------

  def _role(self, view: Any, axis: int, role: str) -> None:
    if view is None:
      return
    leaf, axis_map = view
    leaf_axis = axis_map[axis]
    if leaf_axis is None:
      return
    self.first_use.setdefault(leaf, len(self.first_use))
    key = (leaf, leaf_axis)
    if ROLE_RANK[role] > ROLE_RANK.get(self.roles.get(key, "other"), -1) or key not in self.roles:
      self.roles[key] = role

  def _as_ids(self, label: Label, size: int, reason: str) -> np.ndarray:
    if isinstance(label, np.ndarray):
      return label
    ids = self.uf.fresh(size)
    self.uf.poison(ids, label if isinstance(label, str) else reason)
    return ids

  def _conservative(self, eqn: Any, ins: Sequence[Sequence[Label]], why: str) -> list[tuple[Label, ...]]:
    if self.strict:
      raise SearchSpaceError(
        f"Channel analysis has no rule for primitive {eqn.primitive.name!r} ({why}) in equation: {short(eqn)}. "
        "Pass strict=False to treat its axes as unprunable, or list the layers it touches in ignored."
      )
    reason = f"used by {eqn.primitive.name!r}, which the analysis treats conservatively ({why})"
    for label in ins:
      for axis in label:
        self.uf.poison(axis, reason)
    self.notes.append((eqn.primitive.name, short(eqn), why))
    return [tuple(reason if d != 1 else None for d in v.aval.shape) for v in eqn.outvars]

  # The walk --------------------------------------------------------------

  def walk(
    self,
    jaxpr: Any,
    consts: Sequence[Any],
    in_labels: Sequence[tuple[Label, ...]],
    in_views: Sequence[Any],
    ctx: tuple[int, ...],
  ) -> tuple[list[tuple[Label, ...]], list[Any]]:
    env: dict[Any, tuple[Label, ...]] = {}
    views: dict[Any, Any] = {}
    for var, const in zip(jaxpr.constvars, consts):
      env[var] = tuple("a constant of the traced program" if d != 1 else None for d in np.shape(const))
    for var, label, view in zip(jaxpr.invars, in_labels, in_views):
      env[var] = tuple(label)
      if view is not None:
        views[var] = view
    for var in (*jaxpr.constvars, *jaxpr.invars):
      self.labels[(ctx, var)] = env[var]

    def read(v: Any) -> tuple[Label, ...]:
      if isinstance(v, jax_core.Literal):
        return tuple(None for _ in np.shape(v.val))
      return env[v]

    for index, eqn in enumerate(jaxpr.eqns):
      ins = [read(v) for v in eqn.invars]
      in_views_eqn = [None if isinstance(v, jax_core.Literal) else views.get(v) for v in eqn.invars]
      outs, out_views = self.rule(eqn, ins, in_views_eqn, (*ctx, index))
      for var, label, view in zip(eqn.outvars, outs, out_views):
        label = tuple(None if d == 1 else lab for d, lab in zip(var.aval.shape, label))
        env[var] = label
        self.labels[(ctx, var)] = label
        if view is not None:
          views[var] = view
    return [read(v) for v in jaxpr.outvars], [
      None if isinstance(v, jax_core.Literal) else views.get(v) for v in jaxpr.outvars
    ]

  def rule(
    self, eqn: Any, ins: list[tuple[Label, ...]], views: list[Any], ctx: tuple[int, ...]
  ) -> tuple[list[tuple[Label, ...]], list[Any]]:
    name = eqn.primitive.name
    n_out = len(eqn.outvars)
    no_views = [None] * n_out
    if name in INLINE:
      jaxpr, consts = inner_jaxpr(eqn)
      offset = len(eqn.invars) - len(jaxpr.invars)
      return self.walk(jaxpr, consts, ins[offset:], views[offset:], ctx)
    handler: Callable[..., Any] | None = getattr(self, f"_rule_{name}", None)
    if handler is not None:
      result = handler(eqn, ins, views, ctx)
      if isinstance(result, tuple) and len(result) == 2 and isinstance(result[1], list):
        return result
      return result, no_views
    if name in ELEMENTWISE:
      return self._elementwise(eqn, ins, views)
    if name in RANDOM:
      return [tuple(None for _ in v.aval.shape) for v in eqn.outvars], no_views
    return self._conservative(eqn, ins, "no rule for this primitive"), no_views

  # Rules -------------------------------------------------------------------

  def _elementwise(self, eqn: Any, ins: list[tuple[Label, ...]], views: list[Any]) -> tuple[list, list]:
    shape = eqn.outvars[0].aval.shape
    rank = len(shape)
    out = []
    full = [i for i, label in enumerate(ins) if len(label) == rank and rank]
    for axis in range(rank):
      label: Label = None
      for i in full:
        label = merge_labels(self.uf, label, ins[i][axis])
      out.append(label)
    name = eqn.primitive.name
    viewed = [i for i in full if views[i] is not None]
    if viewed and len(full) > 1:
      for i in viewed:
        leaf_name = self._leaf_names[views[i][0]]
        collection = self._leaf_collections[views[i][0]]
        if name in ("add", "sub", "add_any"):
          role = "bias" if leaf_name == "bias" else ("norm" if collection != "params" else "other")
        elif name in ("mul", "div"):
          role = "norm" if leaf_name == "scale" or collection != "params" else "other"
        else:
          role = "other"
        for axis in range(rank):
          self._role(views[i], axis, role)
    out_view = None
    if name in VIEW_OPS or (viewed and len(full) == 1 and name in ("add", "sub", "mul", "div", "max", "min")):
      out_view = views[full[0]] if full and views[full[0]] is not None else None
    return [tuple(out)] * len(eqn.outvars), [out_view] * len(eqn.outvars)

  def _rule_convert_element_type(self, eqn, ins, views, ctx):
    return [ins[0]], [views[0]]

  def _rule_broadcast_in_dim(self, eqn, ins, views, ctx):
    shape = eqn.params["shape"]
    in_shape = eqn.invars[0].aval.shape
    out: list[Label] = [None] * len(shape)
    axis_map: list[Any] = [None] * len(shape)
    for i, d in enumerate(eqn.params["broadcast_dimensions"]):
      if in_shape[i] == shape[d]:
        out[d] = ins[0][i]
        if views[0] is not None:
          axis_map[d] = views[0][1][i]
    view = (views[0][0], tuple(axis_map)) if views[0] is not None else None
    return [tuple(out)], [view]

  def _rule_transpose(self, eqn, ins, views, ctx):
    perm = eqn.params["permutation"]
    view = (views[0][0], tuple(views[0][1][p] for p in perm)) if views[0] is not None else None
    return [tuple(ins[0][p] for p in perm)], [view]

  def _rule_squeeze(self, eqn, ins, views, ctx):
    dims = set(d % len(ins[0]) for d in eqn.params["dimensions"])
    keep = [i for i in range(len(ins[0])) if i not in dims]
    view = (views[0][0], tuple(views[0][1][i] for i in keep)) if views[0] is not None else None
    return [tuple(ins[0][i] for i in keep)], [view]

  def _rule_expand_dims(self, eqn, ins, views, ctx):
    return self._rule_reshape(eqn, ins, views, ctx)

  def _rule_reshape(self, eqn, ins, views, ctx):
    if eqn.params.get("dimensions") is not None:
      return self._conservative(eqn, ins, "reshape with a dimension order")
    old = eqn.invars[0].aval.shape
    new = eqn.outvars[0].aval.shape
    out: list[Label] = [None] * len(new)
    axis_map: list[Any] = [None] * len(new)
    plain = True
    for in_axes, out_axes in _reshape_blocks(old, new):
      if len(in_axes) == 1 and len(out_axes) == 1:
        out[out_axes[0]] = ins[0][in_axes[0]]
        if views[0] is not None:
          axis_map[out_axes[0]] = views[0][1][in_axes[0]]
        continue
      plain = False
      labels = [ins[0][a] for a in in_axes]
      uniform = [i for i, label in enumerate(labels) if label is None]
      if len(uniform) == 1 and any(isinstance(label, str) for label in labels):
        # Per-block statistics repeated over the block (GroupNorm's mean): the uniform axis shrinks like the
        # channels it meets, so it gets fresh (prunable) ids, also on the input's axis for the export.
        axis = in_axes[uniform[0]]
        labels[uniform[0]] = self.uf.fresh(old[axis])
        key = (ctx[:-1], eqn.invars[0])
        if key in self.labels:
          fixed = list(self.labels[key])
          fixed[axis] = labels[uniform[0]]
          self.labels[key] = tuple(fixed)
        labels = [None if isinstance(label, str) else label for label in labels]
      merged = self._merge_axes(eqn, labels, [old[a] for a in in_axes])
      self._split_axis(eqn, merged, out_axes, [new[a] for a in out_axes], out)
    view = (views[0][0], tuple(axis_map)) if views[0] is not None and plain else None
    return [tuple(out)], [view]

  def _merge_axes(self, eqn: Any, labels: Sequence[Label], sizes: Sequence[int]) -> Label:
    """One label for several axes flattened together (row-major)."""
    ids = [i for i, label in enumerate(labels) if isinstance(label, np.ndarray)]
    if not ids:
      blocks = [label for label in labels if isinstance(label, str)]
      return blocks[0] if blocks else None
    if len(ids) > 1:
      reason = f"flattened together with another channel axis at {short(eqn)}"
      for i in ids:
        self.uf.poison(labels[i], reason)
      return reason
    shape = [1] * len(sizes)
    shape[ids[0]] = sizes[ids[0]]
    return np.broadcast_to(labels[ids[0]].reshape(shape), tuple(sizes)).ravel()

  def _split_axis(self, eqn: Any, label: Label, axes: Sequence[int], sizes: Sequence[int], out: list) -> None:
    """Splits one label over ``axes``: leading axes become block axes; their columns are united."""
    if not isinstance(label, np.ndarray):
      for a in axes:
        out[a] = label
      return
    grid = label.reshape(-1, sizes[-1])
    for row in grid[1:]:
      self.uf.unite(grid[0], row)
    reason = f"a block axis (a head/group/shuffle index) made by {short(eqn)}"
    for a in axes[:-1]:
      out[a] = reason
    out[axes[-1]] = grid[0]

  def _rule_concatenate(self, eqn, ins, views, ctx):
    dim = eqn.params["dimension"]
    rank = len(ins[0])
    out: list[Label] = []
    for axis in range(rank):
      if axis == dim:
        parts = [self._as_ids(label[axis], v.aval.shape[axis], "a constant block") for label, v in zip(ins, eqn.invars)]
        out.append(np.concatenate(parts))
      else:
        label: Label = None
        for other in ins:
          label = merge_labels(self.uf, label, other[axis])
        out.append(label)
    return [tuple(out)]

  def _rule_pad(self, eqn, ins, views, ctx):
    out = list(ins[0])
    for axis, (lo, hi, interior) in enumerate(eqn.params["padding_config"]):
      if (lo, hi, interior) == (0, 0, 0):
        continue
      label = out[axis]
      if isinstance(label, np.ndarray):
        if lo < 0 or hi < 0 or interior:
          self.uf.poison(label, f"padded with strides or cropped at {short(eqn)}")
          out[axis] = "a padded axis"
        else:
          pad_lo, pad_hi = self.uf.fresh(lo), self.uf.fresh(hi)
          self.uf.poison(pad_lo, "padding")
          self.uf.poison(pad_hi, "padding")
          out[axis] = np.concatenate([pad_lo, label, pad_hi])
      else:
        out[axis] = label if isinstance(label, str) else "a padded axis"
    return [tuple(out)]

  def _rule_slice(self, eqn, ins, views, ctx):
    strides = eqn.params["strides"] or (1,) * len(ins[0])
    out = []
    for axis, (lo, hi, step) in enumerate(zip(eqn.params["start_indices"], eqn.params["limit_indices"], strides)):
      label = ins[0][axis]
      if isinstance(label, np.ndarray):
        if step != 1:
          self.uf.poison(label, f"a strided slice of a channel axis at {short(eqn)}")
        label = label[lo:hi:step]
      out.append(label)
    return [tuple(out)]

  def _rule_split(self, eqn, ins, views, ctx):
    axis = eqn.params["axis"]
    outs, start = [], 0
    for size in eqn.params["sizes"]:
      label = list(ins[0])
      if isinstance(label[axis], np.ndarray):
        label[axis] = label[axis][start : start + int(size)]
      outs.append(tuple(label))
      start += int(size)
    return outs

  def _rule_rev(self, eqn, ins, views, ctx):
    out = list(ins[0])
    for axis in eqn.params["dimensions"]:
      if isinstance(out[axis], np.ndarray):
        out[axis] = out[axis][::-1]
    return [tuple(out)]

  def _reduce(self, eqn, ins, views, ctx):
    axes = set(eqn.params["axes"])
    return [tuple(label for i, label in enumerate(ins[0]) if i not in axes)] * len(eqn.outvars)

  _rule_reduce_sum = _rule_reduce_max = _rule_reduce_min = _rule_reduce_prod = _reduce
  _rule_reduce_and = _rule_reduce_or = _rule_reduce_xor = _rule_argmax = _rule_argmin = _reduce

  def _cumulative(self, eqn, ins, views, ctx):
    axis = eqn.params["axis"]
    self.uf.poison(ins[0][axis], f"a cumulative op along a channel axis at {short(eqn)}")
    return [ins[0]]

  _rule_cumsum = _rule_cumprod = _rule_cummax = _rule_cummin = _rule_cumlogsumexp = _cumulative

  def _rule_sort(self, eqn, ins, views, ctx):
    out = self._elementwise(eqn, ins, [None] * len(ins))[0][0]
    dim = eqn.params["dimension"]
    self.uf.poison(out[dim], f"sorted along a channel axis at {short(eqn)}")
    return [out] * len(eqn.outvars)

  def _rule_top_k(self, eqn, ins, views, ctx):
    self.uf.poison(ins[0][-1], f"top_k along a channel axis at {short(eqn)}")
    label = (*ins[0][:-1], "a top_k axis")
    return [label, label]

  def _rule_stack(self, eqn, ins, views, ctx):
    axis = eqn.params["axis"]
    merged = self._elementwise(eqn, ins, [None] * len(ins))[0][0] if ins else ()
    label = list(merged)
    label.insert(axis, "a stacked axis")
    return [tuple(label)]

  def _rule_iota(self, eqn, ins, views, ctx):
    return [tuple("an iota (position) axis" if d != 1 else None for d in eqn.outvars[0].aval.shape)]

  def _window(self, eqn, ins, views, ctx):
    p = eqn.params
    rank = len(ins[0])
    out = []
    for axis in range(rank):
      plain = (
        p["window_dimensions"][axis] == 1
        and p["window_strides"][axis] == 1
        and tuple(p["padding"][axis]) == (0, 0)
        and p.get("base_dilation", (1,) * rank)[axis] == 1
        and p.get("window_dilation", (1,) * rank)[axis] == 1
      )
      label = ins[0][axis]
      if plain:
        out.append(label)
      else:
        self.uf.poison(label, f"pooled along a channel axis at {short(eqn)}")
        out.append(SPATIAL)
    return [tuple(out)] * len(eqn.outvars)

  _rule_reduce_window_sum = _rule_reduce_window_max = _rule_reduce_window_min = _window

  def _rule_reduce_window(self, eqn, ins, views, ctx):
    n = len(eqn.outvars)
    merged = self._elementwise(eqn, ins[:n], [None] * n)[0][0] if n > 1 else ins[0]
    return self._window(eqn, [merged], views, ctx)

  def _rule_dynamic_slice(self, eqn, ins, views, ctx):
    sizes = eqn.params["slice_sizes"]
    shape = eqn.invars[0].aval.shape
    out = []
    for axis, label in enumerate(ins[0]):
      if sizes[axis] == shape[axis]:
        out.append(label)
      else:
        self.uf.poison(label, f"dynamically sliced at {short(eqn)}")
        out.append("a dynamically sliced axis")
    return [tuple(out)]

  def _rule_dynamic_update_slice(self, eqn, ins, views, ctx):
    shape, update = eqn.invars[0].aval.shape, eqn.invars[1].aval.shape
    out = []
    for axis in range(len(shape)):
      if shape[axis] == update[axis]:
        out.append(merge_labels(self.uf, ins[0][axis], ins[1][axis]))
      else:
        reason = f"dynamically updated at {short(eqn)}"
        self.uf.poison(ins[0][axis], reason)
        self.uf.poison(ins[1][axis], reason)
        out.append(ins[0][axis] if ins[0][axis] is not None else reason)
    return [tuple(out)]

  def _rule_gather(self, eqn, ins, views, ctx):
    dn = eqn.params["dimension_numbers"]
    sizes = eqn.params["slice_sizes"]
    shape = eqn.invars[0].aval.shape
    out_rank = len(eqn.outvars[0].aval.shape)
    skipped = set(dn.collapsed_slice_dims) | set(getattr(dn, "operand_batching_dims", ()) or ())
    operand_axes = [a for a in range(len(shape)) if a not in skipped]
    out: list[Label] = [None] * out_rank
    for out_axis, axis in zip(dn.offset_dims, operand_axes):
      label = ins[0][axis]
      if sizes[axis] == shape[axis] and axis not in dn.start_index_map:
        out[out_axis] = label
        self._role(views[0], axis, "output")
      else:
        self.uf.poison(label, f"gathered along a channel axis at {short(eqn)}")
        out[out_axis] = "a gathered axis"
    for axis in set(range(len(shape))) - set(operand_axes):
      self.uf.poison(ins[0][axis], f"indexed along a channel axis at {short(eqn)}")
    batch_axes = [a for a in range(out_rank) if a not in dn.offset_dims]
    index_labels = list(ins[1][:-1]) if len(ins[1]) else []
    for out_axis, label in zip(batch_axes, index_labels):
      out[out_axis] = label if label is not None else None
    return [tuple(out)]

  def _rule_dot_general(self, eqn, ins, views, ctx):
    (cl, cr), (bl, br) = eqn.params["dimension_numbers"]
    left, right = ins
    shape_l, shape_r = eqn.invars[0].aval.shape, eqn.invars[1].aval.shape
    contract = [merge_labels(self.uf, left[a], right[b]) for a, b in zip(cl, cr)]
    batch = [merge_labels(self.uf, left[a], right[b]) for a, b in zip(bl, br)]
    free_l = [a for a in range(len(left)) if a not in cl and a not in bl]
    free_r = [a for a in range(len(right)) if a not in cr and a not in br]
    for view, c, b, free in ((views[0], cl, bl, free_l), (views[1], cr, br, free_r)):
      for a in c:
        self._role(view, a, "input")
      for a in free:
        self._role(view, a, "output")
      for a in b:
        self._role(view, a, "other")
    factors = (
      [(lab, shape_l[a]) for lab, a in zip(batch, bl)]
      + [(left[a], shape_l[a]) for a in free_l]
      + [(right[a], shape_r[a]) for a in free_r]
      + [(lab, shape_l[a]) for lab, a in zip(contract, cl)]
    )
    self.costs.append((self._multiplicity, tuple(f if isinstance(f[0], np.ndarray) else f[1] for f in factors)))
    return [tuple(batch + [left[a] for a in free_l] + [right[a] for a in free_r])]

  def _rule_conv_general_dilated(self, eqn, ins, views, ctx):
    p = eqn.params
    lhs_spec, rhs_spec, out_spec = p["dimension_numbers"]
    lhs, rhs = ins
    groups = p["feature_group_count"]
    if p["batch_group_count"] != 1:
      return self._conservative(eqn, ins, "batch_group_count > 1")
    rhs_shape = eqn.invars[1].aval.shape
    out_shape = eqn.outvars[0].aval.shape
    for a in rhs_spec[2:]:
      self.uf.poison(rhs[a], SPATIAL)
    lf, rin, rout = lhs[lhs_spec[1]], rhs[rhs_spec[1]], rhs[rhs_spec[0]]
    n_in, c_out = rhs_shape[rhs_spec[1]], rhs_shape[rhs_spec[0]]
    self._role(views[1], rhs_spec[0], "output")
    self._role(views[1], rhs_spec[1], "input")
    if groups == 1:
      merge_labels(self.uf, lf, rin)
    else:
      n_out = c_out // groups
      rout = self._as_ids(rout, c_out, "a grouped convolution's output")
      out_grid = rout.reshape(groups, n_out)
      if n_in == 1:  # depthwise: input channel g feeds outputs g*n_out ... (g+1)*n_out - 1
        if isinstance(lf, np.ndarray):
          for j in range(n_out):
            self.uf.unite(lf, out_grid[:, j])
        elif isinstance(lf, str):
          self.uf.poison(rout, lf)
      else:  # grouped: groups stay whole; the same positions are pruned in every group
        for row in out_grid[1:]:
          self.uf.unite(out_grid[0], row)
        if isinstance(lf, np.ndarray):
          in_grid = lf.reshape(groups, n_in)
          for row in in_grid[1:]:
            self.uf.unite(in_grid[0], row)
          merge_labels(self.uf, in_grid[0], rin)
        else:
          merge_labels(self.uf, lf, rin)
    out: list[Label] = [None] * len(out_shape)
    out[out_spec[0]] = lhs[lhs_spec[0]]
    out[out_spec[1]] = rout
    for a in out_spec[2:]:
      out[a] = SPATIAL
    spatial = math.prod(out_shape[a] for a in out_spec[2:]) * math.prod(rhs_shape[a] for a in rhs_spec[2:])
    factors = (
      out_shape[out_spec[0]],
      spatial,
      (rout, c_out) if isinstance(rout, np.ndarray) else c_out,
      (rin, n_in) if isinstance(rin, np.ndarray) else n_in,
    )
    self.costs.append((self._multiplicity, factors))
    return [tuple(out)]

  def _loop(self, body: Any, consts: Any, fixed: list, carry: list, extra: list, views: list, ctx: tuple) -> tuple:
    """Walks a loop body until its carry labels stop changing; returns the last pass's outputs."""
    n_carry = len(carry)
    saved = len(self.costs)
    for _ in range(4):
      del self.costs[saved:]
      outs, _ = self.walk(body, consts, fixed + carry + extra, views + [None] * (n_carry + len(extra)), ctx)
      merged = [tuple(merge_labels(self.uf, a, b) for a, b in zip(old, new)) for old, new in zip(carry, outs[:n_carry])]
      if all(_same(self.uf, m, c) for m, c in zip(merged, carry)):
        return outs
      carry = merged
    return outs

  def _rule_scan(self, eqn, ins, views, ctx):
    p = eqn.params
    n_consts, n_carry = p["num_consts"], p["num_carry"]
    body = p["jaxpr"]
    consts, carry, xs = ins[:n_consts], ins[n_consts : n_consts + n_carry], ins[n_consts + n_carry :]
    for label in xs:
      self.uf.poison(label[0], "the scanned axis")
    previous = self._multiplicity
    self._multiplicity = previous * int(p["length"])
    try:
      outs = self._loop(body.jaxpr, body.consts, list(consts), list(carry), [x[1:] for x in xs], views[:n_consts], ctx)
    finally:
      self._multiplicity = previous
    ys = [("the scanned axis", *label) for label in outs[n_carry:]]
    return list(outs[:n_carry]) + ys

  def _rule_while(self, eqn, ins, views, ctx):
    p = eqn.params
    nc, nb = p["cond_nconsts"], p["body_nconsts"]
    cond_consts, body_consts, carry = ins[:nc], ins[nc : nc + nb], ins[nc + nb :]
    body = p["body_jaxpr"]
    outs = self._loop(body.jaxpr, body.consts, list(body_consts), list(carry), [], views[nc : nc + nb], ctx)
    cond = p["cond_jaxpr"]
    self.walk(cond.jaxpr, cond.consts, list(cond_consts) + list(outs), views[:nc] + [None] * len(outs), (*ctx, -1))
    self.notes.append(("while", short(eqn), "MACs inside a while loop are counted once (unknown trip count)"))
    return list(outs)

  def _rule_cond(self, eqn, ins, views, ctx):
    branches = eqn.params["branches"]
    operands, op_views = ins[1:], views[1:]
    merged: list | None = None
    costs_before = len(self.costs)
    kept_costs: list = []
    best = -1.0
    for b, branch in enumerate(branches):
      start = len(self.costs)
      outs, _ = self.walk(branch.jaxpr, branch.consts, operands, op_views, (*ctx, b))
      branch_costs = self.costs[start:]
      total = sum(m * math.prod(f if isinstance(f, int) else f[1] for f in fs) for m, fs in branch_costs)
      if total > best:
        best, kept_costs = total, branch_costs
      if merged is None:
        merged = [tuple(x) for x in outs]
      else:
        merged = [tuple(merge_labels(self.uf, a, c) for a, c in zip(m, o)) for m, o in zip(merged, outs)]
    del self.costs[costs_before:]
    self.costs.extend(kept_costs)  # the most expensive branch
    return merged or []

  # Set by the analysis before walking.
  _leaf_names: Sequence[str] = ()
  _leaf_collections: Sequence[str] = ()
