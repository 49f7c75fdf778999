"""Trace-time channel counts: the literals of a traced program that are the size of a set of prunable channel axes.

A mean over channels (``jnp.mean``, ``jnp.var``, LayerNorm, RMSNorm,
GroupNorm's group mean, a mean-pool over channels) is traced as
``reduce_sum(x, axes)`` followed by ``div(_, n)`` or ``mul(_, 1/n)`` with ``n``
a literal: the size of the reduced axes of the *unpruned* model. An attention
scale is ``1/sqrt(head_dim)`` computed from a shape at trace time, as a
literal. A model re-built at the pruned widths computes these from its new
shapes, so the pruned program must too: :func:`count_patches` finds such
literals, and the rewriter (:mod:`._export`) replaces each by the kept count
(slicing) or the mask sum over the same channels (masking, traced).

Recognised patterns, per jaxpr (a count does not cross a nested ``jit``):

* ``div(m, n)`` / ``mul(m, 1/n)`` (either operand order for ``mul``) where
  ``m`` comes from a ``reduce_sum`` over axes of total size ``n``, at least one
  of them a channel axis (through ``broadcast_in_dim``, ``reshape``,
  ``convert_element_type``, ``squeeze``, ``expand_dims``, ``copy``). A
  non-literal divisor is followed back through ``convert_element_type`` and
  ``sub(n, ddof)`` (``jnp.var``'s ``n - ddof``).
* ``div(q, c)`` with ``c = sqrt(d)`` (through ``convert_element_type``) and
  ``d`` the size of ``q``'s last axis, a channel axis: Flax's
  ``dot_product_attention`` scaling the queries by ``1/sqrt(query.shape[-1])``.
* ``mul(s, d**-0.5)`` / ``div(s, sqrt(d))`` where ``s`` comes from a
  ``dot_general`` with batch dimensions (an attention einsum, not a ``Dense``)
  whose contracted axes, of total size ``d``, include a channel axis.
"""

from __future__ import annotations

import math
from collections.abc import Mapping
from typing import Any, NamedTuple

import jax.extend.core as jax_core
import numpy as np

__all__: list[str] = []  # internal to the analysis package

# Ops that carry a reduced (or contracted) value along unchanged.
CARRY = frozenset(
  "broadcast_in_dim reshape convert_element_type squeeze expand_dims copy copy_p reduce_precision".split()
)


class Count(NamedTuple):
  """What replaces one literal: ``kind`` of the product of the counts of ``factors``.

  Attributes:
    kind: ``"count"`` (the count), ``"inverse"`` (``1/count``), ``"sqrt"``
      or ``"rsqrt"`` (``count ** ±0.5``).
    factors: per reduced axis, its label (an array of element ids) or its
      fixed size (an ``int``).
  """

  kind: str
  factors: tuple[Any, ...]


def _value(lit: Any) -> float | None:
  value = np.asarray(lit.val)
  if value.shape != () or not np.issubdtype(value.dtype, np.number):
    return None
  return float(value)


def _close(a: float | None, b: float) -> bool:
  return a is not None and math.isclose(a, b, rel_tol=1e-6)


def _factors(labels: tuple[Any, ...], shape: tuple[int, ...], axes: Any) -> tuple[tuple[Any, ...], int] | None:
  factors = tuple(labels[a] if isinstance(labels[a], np.ndarray) else int(shape[a]) for a in axes)
  if not any(isinstance(f, np.ndarray) for f in factors):
    return None  # no channel axis among them: the count cannot change
  return factors, math.prod(int(shape[a]) for a in axes)


def count_patches(jaxpr: Any, ctx: tuple[int, ...], labels: Mapping[Any, Any]) -> dict[int, dict[int, Count]]:
  """``{equation index: {operand position: Count}}``: the literals of ``jaxpr`` that are channel counts.

  ``labels`` maps ``(ctx, var)`` to the analysis's axis labels (the walk's).
  """
  producer: dict[Any, tuple[int, Any]] = {}
  reduced: dict[Any, tuple[tuple[Any, ...], int]] = {}  # var: (factors, full size) of a reduce_sum it carries
  contracted: dict[Any, tuple[tuple[Any, ...], int]] = {}  # the same for a batched dot_general's contraction
  patches: dict[int, dict[int, Count]] = {}

  def patch(index: int, position: int, count: Count) -> None:
    patches.setdefault(index, {})[position] = count

  def find_literal(index: int, position: int, value: float, through: frozenset[str]) -> tuple[int, int] | None:
    """Where the literal equal to ``value`` feeding operand ``position`` of equation ``index`` is."""
    var = jaxpr.eqns[index].invars[position]
    for _ in range(4):
      if isinstance(var, jax_core.Literal):
        return (index, position) if _close(_value(var), value) else None
      if var not in producer:
        return None
      index, eqn = producer[var]
      name = eqn.primitive.name
      if name == "convert_element_type":
        var, position = eqn.invars[0], 0
      elif name == "sub" and "sub" in through and isinstance(eqn.invars[0], jax_core.Literal):
        var, position = eqn.invars[0], 0
      else:
        return None
    return None

  for index, eqn in enumerate(jaxpr.eqns):
    name = eqn.primitive.name
    for var in eqn.outvars:
      producer[var] = (index, eqn)
    ins = eqn.invars
    if name == "reduce_sum":
      source = ins[0]
      if not isinstance(source, jax_core.Literal) and (ctx, source) in labels:
        found = _factors(labels[(ctx, source)], source.aval.shape, eqn.params["axes"])
        if found is not None:
          reduced[eqn.outvars[0]] = found
    elif name == "dot_general":
      (cl, _), (bl, _) = eqn.params["dimension_numbers"]
      left = ins[0]
      if bl and not isinstance(left, jax_core.Literal) and (ctx, left) in labels:
        found = _factors(labels[(ctx, left)], left.aval.shape, cl)
        if found is not None:
          contracted[eqn.outvars[0]] = found
    elif name in CARRY and not isinstance(ins[0], jax_core.Literal):
      for table in (reduced, contracted):
        if ins[0] in table:
          table[eqn.outvars[0]] = table[ins[0]]
    elif name in ("div", "mul") and len(ins) == 2:
      positions = (0, 1) if name == "mul" else (0,)
      for p in positions:
        x, other = ins[p], 1 - p
        if isinstance(x, jax_core.Literal):
          continue
        if x in reduced:  # a mean
          factors, n = reduced[x]
          if name == "div":
            where = find_literal(index, other, n, frozenset({"sub"}))
            kind = "count"
          else:
            where, kind = find_literal(index, other, 1.0 / n, frozenset()), "inverse"
          if where is not None:
            patch(*where, Count(kind, factors))
            break
        if x in contracted:  # attention logits scaled by the contracted (head) size
          factors, n = contracted[x]
          target, kind = (math.sqrt(n), "sqrt") if name == "div" else (n**-0.5, "rsqrt")
          where = find_literal(index, other, target, frozenset())
          if where is not None:
            patch(*where, Count(kind, factors))
            break
        if name == "div" and (ctx, x) in labels and x.aval.shape:  # queries / sqrt(query.shape[-1])
          last = labels[(ctx, x)][-1]
          scale = ins[other]
          if isinstance(last, np.ndarray) and not isinstance(scale, jax_core.Literal) and scale in producer:
            at, eqn_s = producer[scale]
            inner = eqn_s.invars[0]
            if eqn_s.primitive.name == "convert_element_type" and not isinstance(inner, jax_core.Literal):
              if inner not in producer:
                continue
              at, eqn_s = producer[inner]
            lit = eqn_s.invars[0] if eqn_s.primitive.name == "sqrt" else None
            if isinstance(lit, jax_core.Literal) and _close(_value(lit), x.aval.shape[-1]):
              patch(at, 0, Count("count", (last,)))
  return patches
