"""Running one of several branches chosen by a traced index, cheaply under vmap.

``lax.switch`` runs only the chosen branch, but ``jax.vmap`` with a batched
index turns it into ``select`` over every branch: a population of subnets would
pay for every candidate of every layer. :func:`switch` keeps the single-branch
cost under ``vmap`` by mapping a batched index sequentially (``lax.map``), and
stays differentiable (``custom_vmap`` alone is not) through a ``custom_vjp``
whose forward and backward passes are themselves such switches.

Three details keep a switched subnet as fast as the same network written by
hand (measured in ``benchmarks/supernet.py``):

* XLA:CPU only moves convolutions into the layout of its fast kernels in the
  entry computation; inside a conditional or loop body, a convolution in any
  other layout (every backward convolution) runs as a naive loop nest. Each
  branch is therefore traced and re-emitted with its convolutions transposed
  into that layout (a train step went from 100x to 1.05x the hand-written one).
* The backward pass keeps residuals that are operands by reference, and
  branches share residual slots of equal shape, so the conditional does not
  copy its inputs out or return zero-filled residuals of every branch.
* Under ``vmap``, members are mapped with a loop that writes each member's
  output over its input's slice when shapes agree, instead of filling and
  copying a fresh stacked output per layer.
"""

from __future__ import annotations

from collections import OrderedDict
from collections.abc import Callable, Hashable, Sequence
from typing import Any, NamedTuple

import jax
import jax.numpy as jnp
import numpy as np
from jax import lax
from jax.extend import core as jex_core

from jaxmutate.errors import SearchSpaceError


def _canonical_specs(ndim: int) -> lax.ConvDimensionNumbers:
  """The layout XLA:CPU's convolution kernels take: NHWC input, HWIO kernel, NHWC output."""
  spatial = tuple(range(1, ndim - 1))
  return lax.ConvDimensionNumbers(
    lhs_spec=(0, ndim - 1, *spatial),
    rhs_spec=(ndim - 1, ndim - 2, *range(ndim - 2)),
    out_spec=(0, ndim - 1, *spatial),
  )


def _canonical_conv(primitive: Any, lhs: jax.Array, rhs: jax.Array, params: dict[str, Any]) -> jax.Array:
  """One convolution rewritten with operands transposed into the canonical layout.

  XLA:CPU canonicalizes convolutions (so that they run on its fast library
  kernels) only in the entry computation: a convolution inside a conditional or
  a loop body whose dimension numbers are not canonical, such as every
  convolution of a backward pass, falls back to a naive loop nest, 10-100x
  slower. Doing XLA's transposes here keeps the fast kernels inside branches.
  """
  lhs_spec, rhs_spec, out_spec = params["dimension_numbers"]
  ndim = len(lhs_spec)
  canonical = _canonical_specs(ndim)
  if (tuple(lhs_spec), tuple(rhs_spec), tuple(out_spec)) == tuple(tuple(s) for s in canonical):
    return primitive.bind(lhs, rhs, **params)
  lhs_perm = (lhs_spec[0], *lhs_spec[2:], lhs_spec[1])
  rhs_perm = (*rhs_spec[2:], rhs_spec[1], rhs_spec[0])
  out_perm = (out_spec[0], *out_spec[2:], out_spec[1])
  out = primitive.bind(
    jnp.transpose(lhs, lhs_perm), jnp.transpose(rhs, rhs_perm), **{**params, "dimension_numbers": canonical}
  )
  return jnp.transpose(out, tuple(int(d) for d in np.argsort(out_perm)))


def _eval_with_canonical_convs(jaxpr: Any, consts: Sequence[Any], *args: Any) -> list[Any]:
  """``eval_jaxpr`` that routes convolutions through :func:`_canonical_conv`.

  Calls to jitted functions are inlined so that their convolutions are
  rewritten too; other higher-order primitives are bound unchanged.
  """
  env: dict[Any, Any] = {}

  def read(var: Any) -> Any:
    return var.val if isinstance(var, jex_core.Literal) else env[var]

  env.update(zip(jaxpr.constvars, consts))
  env.update(zip(jaxpr.invars, args))
  for eqn in jaxpr.eqns:
    invals = [read(v) for v in eqn.invars]
    name = eqn.primitive.name
    if name == "conv_general_dilated":
      outvals = [_canonical_conv(eqn.primitive, *invals, dict(eqn.params))]
    elif name in ("pjit", "jit"):
      inner = eqn.params["jaxpr"]
      outvals = _eval_with_canonical_convs(inner.jaxpr, inner.consts, *invals)
    else:
      outvals = eqn.primitive.bind(*invals, **eqn.primitive.get_bind_params(eqn.params))
      if not eqn.primitive.multiple_results:
        outvals = [outvals]
    for var, val in zip(eqn.outvars, outvals):
      if not isinstance(var, jex_core.DropVar):
        env[var] = val
  return [read(v) for v in jaxpr.outvars]


def _with_canonical_convs(branch: Callable[..., Any]) -> Callable[..., Any]:
  """``branch`` with its convolutions in XLA:CPU's canonical layout (same values)."""

  def run(*operands: Any) -> Any:
    closed, out_shape = jax.make_jaxpr(branch, return_shape=True)(*operands)
    out_leaves = _eval_with_canonical_convs(closed.jaxpr, closed.consts, *jax.tree.leaves(operands))
    return jax.tree.unflatten(jax.tree.structure(out_shape), out_leaves)

  return run


def _canonical(branch: Callable[..., Any]) -> Callable[..., Any]:
  """``branch`` in XLA:CPU's convolution layout, unless it is a replay already traced that way."""
  return branch if getattr(branch, "canonical", False) else _with_canonical_convs(branch)


def _map_members(
  one_member: Callable[[tuple[jax.Array, list[jax.Array]]], Any],
  index: jax.Array,
  batched_leaves: list[jax.Array],
  axis_size: int,
) -> tuple[Any, Any]:
  """``lax.map(one_member, (index, batched_leaves))`` that writes outputs in place.

  ``lax.map`` fills a zero-initialised stacked output (and XLA copies it into
  the loop). Here an output whose shape and dtype match a batched operand is
  written over that operand's buffer instead, member by member: member ``i``
  reads its slice before overwriting it, and later members' slices are still
  intact. A shape-preserving layer (a residual block, a skip) thus updates the
  population's activation in place.
  """
  if axis_size == 0:
    out = lax.map(one_member, (index, batched_leaves))
    return out, jax.tree.map(lambda _: True, out)
  member_shapes = jax.eval_shape(one_member, (index[0], [leaf[0] for leaf in batched_leaves]))
  out_shapes, out_treedef = jax.tree.flatten(member_shapes)
  free = list(range(len(batched_leaves)))
  reused: list[int | None] = []
  for shape in out_shapes:
    match = next(
      (j for j in free if batched_leaves[j].shape[1:] == shape.shape and batched_leaves[j].dtype == shape.dtype),
      None,
    )
    if match is not None:
      free.remove(match)
    reused.append(match)
  buffer_of = {j: k for k, j in enumerate(reused) if j is not None}
  initial = [
    batched_leaves[j] if j is not None else jnp.zeros((axis_size, *shape.shape), shape.dtype)
    for j, shape in zip(reused, out_shapes)
  ]

  def body(i, buffers):
    member_leaves = [
      lax.dynamic_index_in_dim(buffers[buffer_of[j]] if j in buffer_of else leaf, i, keepdims=False)
      for j, leaf in enumerate(batched_leaves)
    ]
    out_leaves = jax.tree.leaves(one_member((index[i], member_leaves)))
    return [lax.dynamic_update_index_in_dim(buf, o, i, 0) for buf, o in zip(buffers, out_leaves)]

  out = jax.tree.unflatten(out_treedef, lax.fori_loop(0, axis_size, body, initial))
  return out, jax.tree.map(lambda _: True, out)


def _switch_forward(index: jax.Array, branches: tuple[Callable[..., Any], ...], operands: tuple[Any, ...]) -> Any:
  """``lax.switch`` with a batching rule that maps over a batched index."""

  @jax.custom_batching.custom_vmap
  def run(index, operands):
    return lax.switch(index, [_canonical(b) for b in branches], *operands)

  @run.def_vmap
  def batched_run(axis_size, in_batched, index, operands):
    index_batched, operands_batched = in_batched
    if not index_batched:
      # One branch for the whole batch: an ordinary vmap of the switch.
      # Batching each branch before canonicalizing its convolutions keeps the
      # batched convolutions in the fast layout too.
      in_axes = tuple(jax.tree.map(lambda b: 0 if b else None, operands_batched))
      batched_branches = [jax.vmap(b, in_axes=in_axes, axis_size=axis_size) for b in branches]
      out = lax.switch(index, [_canonical(b) for b in batched_branches], *operands)
      return out, jax.tree.map(lambda _: True, out)
    leaves, treedef = jax.tree.flatten(operands)
    leaf_batched = jax.tree.leaves(operands_batched)
    batched_leaves = [leaf for leaf, b in zip(leaves, leaf_batched) if b]

    def one_member(args):
      member_index, member_leaves = args
      member_iter = iter(member_leaves)
      full = [next(member_iter) if b else leaf for leaf, b in zip(leaves, leaf_batched)]
      # Recursing keeps nested vmaps (a population of populations) cheap too.
      return _switch_forward(member_index, branches, jax.tree.unflatten(treedef, full))

    return _map_members(one_member, index, batched_leaves, axis_size)

  return run(index, operands)


class _ResidualPlan(NamedTuple):
  """Where each branch keeps the residuals its pullback needs.

  Attributes:
    treedefs: per branch, the pullback's tree structure.
    sources: per branch, per residual leaf, ``("operand", i)`` for a residual
      that is the switch's own operand leaf ``i`` (kept by reference, never
      copied out of the conditional) or ``("slot", j)`` for one computed by the
      branch and returned in shared slot ``j``.
    slot_types: (shape, dtype) of each slot. Branches share slots of equal
      type, so the conditional returns the residuals of its largest branch,
      not those of every branch.
  """

  treedefs: tuple[Any, ...]
  sources: tuple[tuple[tuple[str, int], ...], ...]
  slot_types: tuple[tuple[tuple[int, ...], Any], ...]


def _replay(closed: Any, out_tree: Any, canonical: bool = False) -> Callable[..., Any]:
  """A function of the traced operands that binds ``closed``'s equations (none of the original Python runs)."""

  def replay(*parts: Any) -> Any:
    return jax.tree.unflatten(out_tree, jex_core.jaxpr_as_fun(closed)(*jax.tree.leaves(parts)))

  replay.canonical = canonical  # type: ignore[attr-defined]
  return replay


def _canonical_replay(fn: Callable[..., Any], *operands: Any) -> Callable[..., Any]:
  """``fn`` traced once with its convolutions in XLA:CPU's layout, as a replay marked canonical."""
  closed, out_shape = jax.make_jaxpr(_with_canonical_convs(fn), return_shape=True)(*operands)
  return _replay(closed, jax.tree.structure(out_shape), canonical=True)


class _SwitchProgram:
  """What a differentiable :func:`switch` traces, built on first need and kept for reuse.

  The residual plan, each branch's forward-with-residuals and each pullback
  are traced once (per operand types, and per cotangent types for the
  pullbacks); switches that share the program replay the jaxprs. Each
  branch's VJP is traced a single time: the plan and the forward pass come
  from the same trace.
  """

  def __init__(self, branches: tuple[Callable[..., Any], ...]) -> None:
    self.branches = branches
    self.plan: _ResidualPlan | None = None
    self.forward: tuple[Callable[..., Any], ...] = ()
    self.backward: dict[Any, tuple[Callable[..., Any], ...]] = {}

  def prepare_forward(self, float_part: list[Any], other_part: list[Any]) -> None:
    if self.plan is not None:
      return
    treedefs, sources, traced = [], [], []
    slot_types: list[tuple[tuple[int, ...], Any]] = []
    for branch in self.branches:
      treedef_box = []

      def out_and_residuals(fp, op, branch=branch, treedef_box=treedef_box):
        out, pullback = jax.vjp(lambda f: branch(f, op), fp)
        leaves, treedef = jax.tree.flatten(pullback)
        treedef_box.append(treedef)
        return out, leaves

      closed, (out_shape, _) = jax.make_jaxpr(out_and_residuals, return_shape=True)(float_part, other_part)
      num_out = len(jax.tree.leaves(out_shape))
      operand_position = {var: i for i, var in enumerate(closed.jaxpr.invars)}
      used_slots: dict[tuple[tuple[int, ...], Any], int] = {}
      branch_sources = []
      for var in closed.jaxpr.outvars[num_out:]:
        if not isinstance(var, jex_core.Literal) and var in operand_position:
          branch_sources.append(("operand", operand_position[var]))
          continue
        slot_type = (tuple(var.aval.shape), var.aval.dtype)
        occurrence = used_slots.get(slot_type, 0)
        used_slots[slot_type] = occurrence + 1
        matching = [j for j, t in enumerate(slot_types) if t == slot_type]
        if occurrence < len(matching):
          branch_sources.append(("slot", matching[occurrence]))
        else:
          slot_types.append(slot_type)
          branch_sources.append(("slot", len(slot_types) - 1))
      treedefs.append(treedef_box[-1])
      sources.append(tuple(branch_sources))
      traced.append((closed, jax.tree.structure(out_shape), num_out))
    plan = _ResidualPlan(tuple(treedefs), tuple(sources), tuple(slot_types))

    def with_residuals(i: int) -> Callable[..., Any]:
      closed, out_tree, num_out = traced[i]

      def branch_forward(fp, op):
        flat = jex_core.jaxpr_as_fun(closed)(*fp, *op)
        slots = [jnp.zeros(shape, dtype) for shape, dtype in plan.slot_types]
        for value, source in zip(flat[num_out:], plan.sources[i]):
          if source[0] == "slot":
            slots[source[1]] = value
        return jax.tree.unflatten(out_tree, flat[:num_out]), slots

      return branch_forward

    self.forward = tuple(_canonical_replay(with_residuals(i), float_part, other_part) for i in range(len(traced)))
    self.plan = plan

  def pullbacks(self, slots: list[Any], operand_leaves: list[Any], cotangent: Any) -> tuple[Callable[..., Any], ...]:
    key = (jax.tree.structure(cotangent), tuple(jax.typeof(leaf) for leaf in jax.tree.leaves(cotangent)))
    if key not in self.backward:
      plan = self.plan

      def pullback(i: int) -> Callable[..., Any]:
        def run_pullback(slots, operand_leaves, g):
          residuals = [slots[where] if kind == "slot" else operand_leaves[where] for kind, where in plan.sources[i]]
          return jax.tree.unflatten(plan.treedefs[i], residuals)(g)[0]

        return run_pullback

      self.backward[key] = tuple(
        _canonical_replay(pullback(i), slots, operand_leaves, cotangent) for i in range(len(self.branches))
      )
    return self.backward[key]


_PROGRAMS: OrderedDict[Hashable, _SwitchProgram] = OrderedDict()
_PROGRAMS_MAX = 512


def _switch_program(
  cache_key: Hashable | None, branches: tuple[Callable[..., Any], ...], float_part: list[Any], other_part: list[Any]
) -> _SwitchProgram:
  """The :class:`_SwitchProgram` of ``branches``, shared by every switch with this ``cache_key`` and operand types.

  A supernet repeats the same layer with other weights (eight identical
  choice blocks, say): tracing the candidate modules (Flax's binding, the
  Python of each op) and their VJPs once for all of them, and replaying the
  jaxprs elsewhere, cuts the trace time of a train step several-fold.
  Branches whose jaxpr captured a tracer of an enclosing trace (they close
  over a traced value) are not cached.
  """
  if cache_key is None:
    return _SwitchProgram(branches)
  key = (cache_key, len(float_part), tuple(jax.typeof(leaf) for leaf in (*float_part, *other_part)))
  program = _PROGRAMS.get(key)
  if program is not None:
    _PROGRAMS.move_to_end(key)
    return program
  replayed = []
  for branch in branches:
    closed, out_shape = jax.make_jaxpr(branch, return_shape=True)(float_part, other_part)
    if any(isinstance(const, jax.core.Tracer) for const in closed.consts):
      return _SwitchProgram(branches)
    replayed.append(_replay(closed, jax.tree.structure(out_shape)))
  _PROGRAMS[key] = program = _SwitchProgram(tuple(replayed))
  if len(_PROGRAMS) > _PROGRAMS_MAX:
    _PROGRAMS.popitem(last=False)
  return program


def switch(
  index: jax.Array, branches: Sequence[Callable[..., Any]], *operands: Any, cache_key: Hashable | None = None
) -> Any:
  """Applies ``branches[index]`` to ``operands``; cheap under ``vmap`` and ``grad``.

  Semantics are those of :func:`jax.lax.switch` (the index is clamped to the
  valid range). The difference is the cost under ``jax.vmap`` when ``index`` is
  batched: each batch member runs only its own branch, one after the other,
  instead of every branch for every member. Reverse-mode AD saves the chosen
  branch's residuals in slots shared by all branches (unused slots are zeros);
  residuals that are operands are kept by reference.

  Branches must be pure functions of ``operands``: they may not close over
  traced values (pass those as operands).

  Args:
    index: an int32 scalar, possibly traced.
    branches: functions of ``*operands`` returning outputs of one structure.
    *operands: arrays or pytrees passed to the chosen branch.
    cache_key: a hashable that identifies what ``branches`` compute, for
      switches that repeat (the same candidates in every layer of a
      supernet). Each branch is then traced once per key and operand types,
      and replayed from its jaxpr elsewhere. Two switches may share a key
      only if their branches compute the same functions of their operands.

  Returns:
    The chosen branch's output.

  Example:
    >>> import jax, jax.numpy as jnp
    >>> from jaxmutate.mutables import switch
    >>> fns = [jnp.sin, jnp.cos]
    >>> jax.vmap(lambda i: switch(i, fns, jnp.float32(0.0)))(jnp.array([0, 1]))
    Array([0., 1.], dtype=float32)
  """
  branches = tuple(branches)
  if not branches:
    raise SearchSpaceError("switch needs at least one branch, got an empty sequence.")
  if len(branches) == 1:
    return branches[0](*operands)
  leaves, treedef = jax.tree.flatten(operands)
  # Only floating-point operands get cotangents; integers and PRNG keys ride
  # along as constants of the pullback.
  is_float = [jnp.issubdtype(jnp.result_type(leaf), jnp.inexact) for leaf in leaves]
  float_leaves = [leaf for leaf, f in zip(leaves, is_float) if f]
  other_leaves = [leaf for leaf, f in zip(leaves, is_float) if not f]

  def merged(float_part, other_part):
    float_iter, other_iter = iter(float_part), iter(other_part)
    return jax.tree.unflatten(treedef, [next(float_iter) if f else next(other_iter) for f in is_float])

  def on_split(branch):
    return lambda float_part, other_part: branch(*merged(float_part, other_part))

  split_branches = tuple(on_split(branch) for branch in branches)
  program = _switch_program(cache_key, split_branches, float_leaves, other_leaves)

  @jax.custom_vjp
  def run(index, float_part, other_part):
    return _switch_forward(index, program.branches, (float_part, other_part))

  def run_forward(index, float_part, other_part):
    program.prepare_forward(float_part, other_part)
    out, slots = _switch_forward(index, program.forward, (float_part, other_part))
    return out, (index, slots, float_part, other_part)

  def run_backward(saved, cotangent):
    index, slots, float_part, other_part = saved
    operand_leaves = jax.tree.leaves((float_part, other_part))
    pullbacks = program.pullbacks(slots, operand_leaves, cotangent)
    float_cotangents = _switch_forward(index, pullbacks, (slots, operand_leaves, cotangent))
    return None, float_cotangents, jax.tree.map(lambda _: None, other_part)

  run.defvjp(run_forward, run_backward)
  return run(jnp.asarray(index, jnp.int32), float_leaves, other_leaves)
