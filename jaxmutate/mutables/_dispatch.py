"""Running one of several branches chosen by a traced index, cheaply under vmap.

``lax.switch`` runs only the chosen branch, but ``jax.vmap`` with a batched
index turns it into ``select`` over every branch: a population of subnets would
pay for every candidate of every layer. :func:`switch` keeps the single-branch
cost under ``vmap`` by mapping a batched index sequentially (``lax.map``), and
stays differentiable (``custom_vmap`` alone is not) through a ``custom_vjp``
whose forward and backward passes are themselves such switches.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from typing import Any

import jax
import jax.numpy as jnp
import numpy as np
from jax import lax
from jax.extend import core as jex_core

# The layout XLA's CPU convolution kernels want: input (batch, spatial..., feature),
# kernel (spatial..., in, out), output (batch, spatial..., feature).
def _canonical_specs(ndim: int) -> lax.ConvDimensionNumbers:
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


def _switch_forward(index: jax.Array, branches: tuple[Callable[..., Any], ...], operands: tuple[Any, ...]) -> Any:
  """``lax.switch`` with a batching rule that maps over a batched index."""

  @jax.custom_batching.custom_vmap
  def run(index, operands):
    return lax.switch(index, [_with_canonical_convs(b) for b in branches], *operands)

  @run.def_vmap
  def batched_run(axis_size, in_batched, index, operands):
    index_batched, operands_batched = in_batched
    if not index_batched:
      # One branch for the whole batch: an ordinary vmap of the switch.
      in_axes = jax.tree.map(lambda b: 0 if b else None, operands_batched)
      out = jax.vmap(
          lambda ops: lax.switch(index, [_with_canonical_convs(b) for b in branches], *ops),
          in_axes=(in_axes,),
          axis_size=axis_size,
      )(operands)
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

    out = lax.map(one_member, (index, batched_leaves))
    return out, jax.tree.map(lambda _: True, out)

  return run(index, operands)


def switch(index: jax.Array, branches: Sequence[Callable[..., Any]], *operands: Any) -> Any:
  """Applies ``branches[index]`` to ``operands``; cheap under ``vmap`` and ``grad``.

  Semantics are those of :func:`jax.lax.switch` (the index is clamped to the
  valid range). The difference is the cost under ``jax.vmap`` when ``index`` is
  batched: each batch member runs only its own branch, one after the other,
  instead of every branch for every member. Reverse-mode AD saves the chosen
  branch's residuals (zeros for the others, as ``lax.switch`` does).

  Branches must be pure functions of ``operands``: they may not close over
  traced values (pass those as operands).

  Args:
    index: an int32 scalar, possibly traced.
    branches: functions of ``*operands`` returning outputs of one structure.
    *operands: arrays or pytrees passed to the chosen branch.

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
    raise ValueError("switch needs at least one branch, got an empty sequence.")
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
  residual_layouts: list[list[tuple[list[jax.ShapeDtypeStruct], Any]]] = []

  @jax.custom_vjp
  def run(index, float_part, other_part):
    return _switch_forward(index, split_branches, (float_part, other_part))

  def run_forward(index, float_part, other_part):
    layouts = []
    for branch in split_branches:
      pullback_shape = jax.eval_shape(
          lambda fp, op, branch=branch: jax.vjp(lambda f: branch(f, op), fp)[1], float_part, other_part
      )
      layouts.append(jax.tree.flatten(pullback_shape))
    residual_layouts.append(layouts)

    def with_residuals(i):
      def branch_forward(fp, op):
        out, pullback = jax.vjp(lambda f: split_branches[i](f, op), fp)
        residuals = tuple(
            jax.tree.leaves(pullback) if j == i
            else [jnp.zeros(s.shape, s.dtype) for s in layouts[j][0]]
            for j in range(len(branches))
        )
        return out, residuals

      return branch_forward

    out, residuals = _switch_forward(
        index, tuple(with_residuals(i) for i in range(len(branches))), (float_part, other_part)
    )
    return out, (index, residuals, other_part)

  def run_backward(saved, cotangent):
    index, residuals, other_part = saved
    layouts = residual_layouts[-1]

    def pullback(i):
      return lambda res, g: jax.tree.unflatten(layouts[i][1], res[i])(g)[0]

    float_cotangents = _switch_forward(
        index, tuple(pullback(i) for i in range(len(branches))), (residuals, cotangent)
    )
    return None, float_cotangents, jax.tree.map(lambda _: None, other_part)

  run.defvjp(run_forward, run_backward)
  return run(jnp.asarray(index, jnp.int32), float_leaves, other_leaves)
