"""Export of a pruned network: the traced program rewritten for the smaller shapes, plus the sliced variables.

The analysed jaxpr is evaluated again with the sliced variables; every
primitive whose parameters spell out shapes (``reshape``,
``broadcast_in_dim``, ``slice``, ``split``, ``gather``, grouped ``conv``...)
gets the shapes the kept channels imply, and nested programs (``jit``,
``scan``, ``cond``, ``while``, custom derivatives) are rewritten recursively.
The result is a pure function of ``(variables, *inputs)`` that
:mod:`jax.export` serialises, so the pruned network reloads in a fresh process
without the model's Python code.

Trace-time channel counts follow the widths, so the pruned program computes
what the same model re-built at the pruned widths (``features=`` etc.) computes
on the sliced variables: the divisor of a mean over channels (LayerNorm,
RMSNorm, GroupNorm's group mean, ``jnp.mean``/``jnp.var``, a mean-pool over
channels) becomes the kept count, and an attention scale ``1/sqrt(head_dim)``
computed from a shape (Flax's ``dot_product_attention`` uses
``query.shape[-1]``; ``einsum(...) * head_dim ** -0.5``) uses the kept head
size. When masking, the count is the mask sum over the same channels (traced),
so the masked, the rewritten and the re-built networks agree. Other constants
of the program stay as traced (see :mod:`jaxmutate.analysis` for the patterns
recognised).
"""

from __future__ import annotations

import dataclasses
from collections.abc import Mapping, Sequence
from typing import Any

import flax.serialization
import jax
import jax.extend.core as jax_core
import jax.numpy as jnp
import numpy as np
from jax import lax

from jaxmutate.analysis._apply import slice_variables
from jaxmutate.analysis._counts import Count, count_patches
from jaxmutate.analysis._trace import ELEMENTWISE, INLINE, inner_jaxpr
from jaxmutate.errors import ConfigError, SubnetFileError

__all__ = ["PrunedNetwork", "export_pruned", "load_pruned", "masked_function", "pruned_function"]

FORMAT = "jaxmutate.pruned/1"


# Ops that mix positions along an axis: in masking mode their operands are masked along the mixed channel axes,
# so pruned positions (whatever an elementwise op left there) never reach a kept one.
REDUCTIONS = frozenset("reduce_sum reduce_max reduce_min reduce_prod argmax argmin".split())


class _Rewriter:
  def __init__(self, analysis: Any, keep: np.ndarray | None, global_mask: Any = None) -> None:
    self.labels = analysis.labels
    self.keep = keep  # per element: does its channel stay (slicing); None when masking
    self.channel = analysis.element_channel
    self.global_mask = global_mask  # masking: the concatenated unit masks (traced)
    self._patches: dict[tuple[int, ...], dict[int, dict[int, Count]]] = {}

  def label_count(self, label: np.ndarray) -> Any:
    """How many of the positions ``label`` names stay: an int (slicing) or the traced mask sum (masking)."""
    if self.keep is not None:
      return int(self.keep[label].sum())
    channel = self.channel[label]
    return jnp.sum(jnp.where(channel >= 0, self.global_mask[np.maximum(channel, 0)], 1.0))

  def count_value(self, count: Count, literal: Any) -> Any:
    """The value replacing a trace-time channel-count literal (see :mod:`._counts`), in the literal's dtype."""
    total: Any = 1
    for factor in count.factors:
      total = total * (self.label_count(factor) if isinstance(factor, np.ndarray) else factor)
    value = {"count": total, "inverse": 1.0 / total, "sqrt": total**0.5, "rsqrt": total**-0.5}[count.kind]
    return jnp.asarray(value, np.asarray(literal).dtype)

  def mask_axes(self, value: Any, labels: Sequence[Any], axes: Sequence[int]) -> Any:
    """Masking mode: ``value`` multiplied by the unit masks along those of ``axes`` that carry channels."""
    for axis in axes:
      label = labels[axis]
      if not isinstance(label, np.ndarray):
        continue
      channel = self.channel[label]
      if not (channel >= 0).any():
        continue
      axis_mask = jnp.where(channel >= 0, self.global_mask[np.maximum(channel, 0)], 1.0)
      shape = [1] * value.ndim
      shape[axis] = value.shape[axis]
      value = value * axis_mask.reshape(shape).astype(value.dtype)
    return value

  def mask_mixed(self, eqn: Any, invals: list[Any], ctx: tuple[int, ...]) -> list[Any]:
    name = eqn.primitive.name
    if name not in REDUCTIONS and name not in ("dot_general", "conv_general_dilated"):
      return invals
    var = eqn.invars[0]
    if isinstance(var, jax_core.Literal) or not jnp.issubdtype(eqn.invars[0].aval.dtype, jnp.inexact):
      return invals
    labels = self.labels[(ctx, var)]
    if name in REDUCTIONS:
      invals[0] = self.mask_axes(invals[0], labels, eqn.params["axes"])
    elif name == "dot_general":
      (contract, _), _ = eqn.params["dimension_numbers"]
      invals[0] = self.mask_axes(invals[0], labels, contract)
    elif name == "conv_general_dilated":
      invals[0] = self.mask_axes(invals[0], labels, [eqn.params["dimension_numbers"][0][1]])
    return invals

  def size(self, label: Any, old: int) -> int:
    if self.keep is None:
      return old
    return int(self.keep[label].sum()) if isinstance(label, np.ndarray) else old

  def shape(self, ctx: tuple[int, ...], var: Any) -> tuple[int, ...]:
    labels = self.labels[(ctx, var)]
    return tuple(self.size(lab, d) for lab, d in zip(labels, var.aval.shape))

  def kept_before(self, label: Any, position: int) -> int:
    return int(self.keep[label[:position]].sum()) if isinstance(label, np.ndarray) else position

  @staticmethod
  def fit(x: Any, shape: Sequence[int]) -> Any:
    """``x`` cut to ``shape`` along axes where it is larger (uniform axes: a broadcast constant)."""
    if not hasattr(x, "shape") or len(x.shape) != len(shape):
      return x
    for axis, (have, want) in enumerate(zip(x.shape, shape)):
      if have > want and want >= 1:
        x = lax.slice_in_dim(x, 0, want, axis=axis)
    return x

  def run(self, jaxpr: Any, consts: Sequence[Any], args: Sequence[Any], ctx: tuple[int, ...]) -> list[Any]:
    env: dict[Any, Any] = {}
    for var, value in zip(jaxpr.constvars, consts):
      env[var] = value
    for var, value in zip(jaxpr.invars, args):
      env[var] = value

    def read(v: Any) -> Any:
      return v.val if isinstance(v, jax_core.Literal) else env[v]

    if ctx not in self._patches:
      self._patches[ctx] = count_patches(jaxpr, ctx, self.labels)
    patches = self._patches[ctx]
    for index, eqn in enumerate(jaxpr.eqns):
      sub = (*ctx, index)
      invals = [read(v) for v in eqn.invars]
      for position, count in patches.get(index, {}).items():
        invals[position] = self.count_value(count, invals[position])
      if self.keep is None:
        invals = self.mask_mixed(eqn, invals, ctx)
      outs = self.eqn(eqn, invals, ctx, sub)
      for var, value in zip(eqn.outvars, outs):
        env[var] = value
    return [read(v) for v in jaxpr.outvars]

  def eqn(self, eqn: Any, invals: list[Any], ctx: tuple[int, ...], sub: tuple[int, ...]) -> list[Any]:
    name = eqn.primitive.name
    if name in INLINE:
      jaxpr, consts = inner_jaxpr(eqn)
      offset = len(eqn.invars) - len(jaxpr.invars)
      return self.run(jaxpr, consts, invals[offset:], sub)
    if name == "scan":
      return self.scan(eqn, invals, sub)
    if name == "while":
      return self.while_(eqn, invals, sub)
    if name == "cond":
      return self.cond(eqn, invals, sub)
    params = dict(eqn.params)
    out_shapes = [self.shape(ctx, v) for v in eqn.outvars]
    if name in ELEMENTWISE or name in ("concatenate", "dynamic_update_slice"):
      target = list(out_shapes[0])
      if name == "concatenate":
        dim = params["dimension"]
        invals = [self.fit(x, [*target[:dim], x.shape[dim], *target[dim + 1 :]]) for x in invals]
      else:
        invals = [self.fit(x, target) for x in invals]
    elif name == "reshape":
      params["new_sizes"] = out_shapes[0]
      if np.prod(out_shapes[0]) != np.prod(np.shape(invals[0])):
        invals[0] = self.fit(invals[0], self.shape(ctx, eqn.invars[0]))
    elif name == "broadcast_in_dim":
      shape = list(out_shapes[0])
      for i, d in enumerate(params["broadcast_dimensions"]):
        if invals[0].shape[i] != 1:
          shape[d] = invals[0].shape[i]
      params["shape"] = tuple(shape)
    elif name in ("iota", "random_bits", "rng_bit_generator", "rng_uniform"):
      if "shape" in params:
        params["shape"] = out_shapes[0]
    elif self.keep is None:
      pass
    elif name == "slice":
      labels = self.labels[(ctx, eqn.invars[0])]
      starts, limits = list(params["start_indices"]), list(params["limit_indices"])
      for axis, label in enumerate(labels):
        if isinstance(label, np.ndarray):
          starts[axis] = self.kept_before(label, starts[axis])
          limits[axis] = self.kept_before(label, limits[axis])
      params["start_indices"], params["limit_indices"] = tuple(starts), tuple(limits)
    elif name == "split":
      params["sizes"] = tuple(s[params["axis"]] for s in out_shapes)
    elif name == "dynamic_slice":
      params["slice_sizes"] = out_shapes[0]
    elif name == "gather":
      old = eqn.invars[0].aval.shape
      sizes = list(params["slice_sizes"])
      for axis, (size, full) in enumerate(zip(sizes, old)):
        if size == full:
          sizes[axis] = invals[0].shape[axis]
      params["slice_sizes"] = tuple(sizes)
    elif name == "conv_general_dilated":
      lhs_spec, rhs_spec, _ = params["dimension_numbers"]
      if params["feature_group_count"] > 1 and eqn.invars[1].aval.shape[rhs_spec[1]] == 1:
        params["feature_group_count"] = invals[0].shape[lhs_spec[1]]
    elif name == "pad":
      pass
    result = eqn.primitive.bind(*invals, **params)
    return list(result) if eqn.primitive.multiple_results else [result]

  def scan(self, eqn: Any, invals: list[Any], sub: tuple[int, ...]) -> list[Any]:
    p = eqn.params
    n_consts, n_carry = p["num_consts"], p["num_carry"]
    body = p["jaxpr"]
    body_in = body.jaxpr.invars
    consts = invals[:n_consts]
    init = [self.fit(x, self.shape(sub, v)) for x, v in zip(invals[n_consts : n_consts + n_carry], body_in[n_consts:])]
    xs = invals[n_consts + n_carry :]
    carry_shapes = [self.shape(sub, v) for v in body_in[n_consts : n_consts + n_carry]]

    def step(carry: Any, x: Any) -> Any:
      outs = self.run(body.jaxpr, body.consts, [*consts, *carry, *x], sub)
      return [self.fit(o, s) for o, s in zip(outs[:n_carry], carry_shapes)], outs[n_carry:]

    carry, ys = lax.scan(step, init, xs, length=p["length"], reverse=p["reverse"], unroll=p["unroll"])
    return [*carry, *ys]

  def while_(self, eqn: Any, invals: list[Any], sub: tuple[int, ...]) -> list[Any]:
    p = eqn.params
    nc, nb = p["cond_nconsts"], p["body_nconsts"]
    cond, body = p["cond_jaxpr"], p["body_jaxpr"]
    cond_consts, body_consts = invals[:nc], invals[nc : nc + nb]
    body_in = body.jaxpr.invars[nb:]
    shapes = [self.shape(sub, v) for v in body_in]
    init = [self.fit(x, s) for x, s in zip(invals[nc + nb :], shapes)]

    def cond_fun(carry: Any) -> Any:
      return self.run(cond.jaxpr, cond.consts, [*cond_consts, *carry], (*sub, -1))[0]

    def body_fun(carry: Any) -> Any:
      outs = self.run(body.jaxpr, body.consts, [*body_consts, *carry], sub)
      return [self.fit(o, s) for o, s in zip(outs, shapes)]

    return list(lax.while_loop(cond_fun, body_fun, init))

  def cond(self, eqn: Any, invals: list[Any], sub: tuple[int, ...]) -> list[Any]:
    branches = eqn.params["branches"]
    index, operands = invals[0], invals[1:]
    fns = [
      (lambda *ops, b=b, branch=branch: self.run(branch.jaxpr, branch.consts, list(ops), (*sub, b)))
      for b, branch in enumerate(branches)
    ]
    return list(lax.switch(index, fns, *operands))


@dataclasses.dataclass(frozen=True)
class PrunedNetwork:
  """A pruned network as a serialised :mod:`jax.export` program: ``apply(variables, *inputs)`` runs it.

  It takes the sliced variables (the same tree as the model's, with smaller
  arrays) and inputs of the sample's shapes, and returns what ``model.apply``
  returned. :meth:`to_bytes` packs the program and the variables into one
  blob; :func:`load_pruned` unpacks it (no model code needed).

  Attributes:
    program: the serialised :class:`jax.export.Exported`.

  Example:
    >>> import jax, jax.numpy as jnp, flax.linen as nn
    >>> from jaxmutate.analysis import analyze_channels, load_pruned
    >>> class Net(nn.Module):
    ...   @nn.compact
    ...   def __call__(self, x):
    ...     return nn.Dense(2, name="fc")(nn.relu(nn.Dense(8, name="hidden")(x)))
    >>> net, x = Net(), jnp.ones((1, 4))
    >>> variables = net.init(jax.random.key(0), x)
    >>> analysis = analyze_channels(net, variables, x)
    >>> network, small = analysis.export(variables, {"hidden_(0, 8)_8": [0, 1, 2]})
    >>> small["params"]["hidden"]["kernel"].shape
    (4, 3)
    >>> again, restored = load_pruned(network.to_bytes(small))
    >>> bool(jnp.allclose(again.apply(restored, x), network.apply(small, x)))
    True
  """

  program: bytes

  @property
  def exported(self) -> jax.export.Exported:
    """The deserialised program."""
    return jax.export.deserialize(bytearray(self.program))

  def apply(self, variables: Mapping[str, Any], *inputs: Any) -> Any:
    """Runs the pruned network."""
    return self.exported.call(variables, inputs)

  def to_bytes(self, variables: Mapping[str, Any]) -> bytes:
    """The program and ``variables`` in one msgpack blob (write it to a file; :func:`load_pruned` reads it)."""
    state = {"format": FORMAT, "program": self.program, "variables": jax.device_get(_plain(variables))}
    return flax.serialization.msgpack_serialize(state)


def _plain(tree: Any) -> Any:
  if isinstance(tree, Mapping):
    return {k: _plain(v) for k, v in tree.items()}
  return np.asarray(tree)


def load_pruned(blob: bytes) -> tuple[PrunedNetwork, dict[str, Any]]:
  """``(network, variables)`` from :meth:`PrunedNetwork.to_bytes`.

  Raises:
    SubnetFileError: the bytes are not a pruned network.

  Example:
    >>> import jax, jax.numpy as jnp, flax.linen as nn
    >>> from jaxmutate.analysis import analyze_channels, load_pruned
    >>> net, x = nn.Sequential([nn.Dense(8), nn.relu, nn.Dense(2)]), jnp.ones((1, 3))
    >>> variables = net.init(jax.random.key(0), x)
    >>> analysis = analyze_channels(net, variables, x)
    >>> blob = analysis.export(variables, {analysis.groups[0].name: [0, 1, 2, 3]})[0].to_bytes(variables)
    >>> network, restored = load_pruned(blob)
    >>> type(network).__name__, sorted(restored)
    ('PrunedNetwork', ['params'])
  """
  try:
    state = flax.serialization.msgpack_restore(blob)
  except Exception as error:  # msgpack raises several unrelated types
    raise SubnetFileError(f"load_pruned: not a pruned-network blob ({type(error).__name__}: {error}).") from None
  if not isinstance(state, Mapping) or state.get("format") != FORMAT:
    raise SubnetFileError(f"load_pruned: expected format {FORMAT!r}, got {getattr(state, 'get', dict)('format')!r}.")
  return PrunedNetwork(bytes(state["program"])), state["variables"]


def keep_elements(analysis: Any, kept: Mapping[str, Sequence[int]]) -> np.ndarray:
  """Per element of the analysis: whether its channel stays under ``kept``."""
  offsets, start = {}, 0
  for g in analysis.groups:
    offsets[g.name] = start
    start += g.num_channels
  keep_channel = np.ones(start, bool)
  for name, indices in kept.items():
    g = analysis.group(name)
    row = np.zeros(g.num_channels, bool)
    row[np.asarray(indices, dtype=np.int64)] = True
    keep_channel[offsets[name] : offsets[name] + g.num_channels] = row
  channel = analysis.element_channel
  return np.where(channel >= 0, keep_channel[np.maximum(channel, 0)] if start else True, True)


def _check_inputs(analysis: Any, inputs: Sequence[Any], where: str) -> None:
  expected = [v.aval.shape for v in analysis.closed_jaxpr.jaxpr.invars[analysis.num_leaves :]]
  got = [tuple(np.shape(leaf)) for leaf in jax.tree_util.tree_leaves(inputs)]
  if got != expected:
    raise ConfigError(
      f"{where}: the program is the traced one, so the inputs must have the sample's shapes {expected}, got {got}; "
      "analyse with a sample of the shape you will run."
    )


def pruned_function(analysis: Any, kept: Mapping[str, Sequence[int]]) -> Any:
  """``f(small_variables, *inputs)``: the rewritten program of the pruned network, as a plain JAX function.

  It can be jitted, lowered (e.g. for XLA's ``cost_analysis``) or composed;
  :func:`export_pruned` serialises it. Inputs must have the sample's shapes.

  Example:
    >>> import jax, jax.numpy as jnp, flax.linen as nn
    >>> from jaxmutate.analysis import analyze_channels, pruned_function
    >>> net, x = nn.Sequential([nn.Dense(8), nn.relu, nn.Dense(2)]), jnp.ones((1, 3))
    >>> variables = net.init(jax.random.key(0), x)
    >>> analysis = analyze_channels(net, variables, x)
    >>> kept = {analysis.groups[0].name: [0, 1]}
    >>> pruned_function(analysis, kept)(analysis.slice_variables(variables, kept), x).shape
    (1, 2)
  """
  rewriter = _Rewriter(analysis, keep_elements(analysis, kept))
  closed = analysis.closed_jaxpr

  def pruned(variables: Any, *inputs: Any) -> Any:
    _check_inputs(analysis, inputs, "pruned_function")
    leaves = jax.tree_util.tree_leaves(variables) + jax.tree_util.tree_leaves(inputs)
    outs = rewriter.run(closed.jaxpr, closed.consts, leaves, ())
    return jax.tree_util.tree_unflatten(analysis.out_tree, outs)

  return pruned


def masked_function(analysis: Any) -> Any:
  """``f(variables, masks, *inputs)``: the model with channel masks, exactly equal to the sliced network.

  The variables' unit slices are multiplied by the masks (as
  :func:`~jaxmutate.analysis.mask_variables`) and, inside the program, the
  operands of every op that mixes positions along a channel axis (sums and
  other reductions, contractions, convolutions) are masked along that axis, so
  whatever an elementwise op left at a pruned position (a bias broadcast along
  the channels, ``sigmoid(0)``) never reaches a kept one: LayerNorm statistics
  and token mixing see zeros there, as the sliced network sees nothing, and a
  mean over channels divides by the mask sum, not the full count (an attention
  scale likewise uses the kept head size), as the model re-built at the pruned
  widths does. (A max-reduction over channels sees the zeros; softmax is
  unaffected.) ``masks`` (``{unit: (n,) array}``, missing units unmasked) may
  be traced: one compile serves every width, under ``vmap`` too, and the
  output is differentiable in the masks.

  Example:
    >>> import jax, jax.numpy as jnp, flax.linen as nn
    >>> from jaxmutate.analysis import analyze_channels, masked_function
    >>> net, x = nn.Sequential([nn.Dense(8), nn.LayerNorm(), nn.Dense(2)]), jnp.ones((1, 3))
    >>> variables = net.init(jax.random.key(0), x)
    >>> analysis = analyze_channels(net, variables, x)
    >>> f = jax.jit(masked_function(analysis))
    >>> widths = jnp.arange(1, 9)
    >>> jax.vmap(lambda w: f(variables, analysis.masks({analysis.groups[0].name: w}), x))(widths).shape
    (8, 1, 2)
  """
  closed = analysis.closed_jaxpr

  def masked(variables: Any, masks: Any, *inputs: Any) -> Any:
    _check_inputs(analysis, inputs, "masked_function")
    variables = analysis.mask_variables(variables, masks)
    rewriter = _Rewriter(analysis, None, analysis._global_mask(masks))
    leaves = jax.tree_util.tree_leaves(variables) + jax.tree_util.tree_leaves(inputs)
    outs = rewriter.run(closed.jaxpr, closed.consts, leaves, ())
    return jax.tree_util.tree_unflatten(analysis.out_tree, outs)

  return masked


def export_pruned(
  analysis: Any, variables: Mapping[str, Any], kept: Mapping[str, Sequence[int]]
) -> tuple[PrunedNetwork, dict[str, Any]]:
  """The network with only ``kept`` channels: a rewritten, serialised program and the sliced variables.

  Args:
    analysis: from :func:`~jaxmutate.analysis.analyze_channels` (on the same
      model, variables' shapes and sample shapes).
    variables: the unpruned variables.
    kept: ``{unit name: kept channel indices}``; missing units keep all.

  Returns:
    ``(network, small_variables)``: ``network.apply(small_variables, *inputs)``
    equals :func:`masked_function`'s output under the kept masks and the model
    re-built at the pruned widths applied to ``small_variables``, for inputs of
    the sample's shapes (channel counts traced as constants, such as a
    LayerNorm's divisor, are the kept ones).

  Raises:
    ConfigKeyError / ChoiceError: as :func:`~jaxmutate.analysis.slice_variables`.
    ConfigError: (when called) inputs of other shapes than the sample's.

  Example:
    >>> import jax, jax.numpy as jnp, flax.linen as nn
    >>> from jaxmutate.analysis import analyze_channels, export_pruned
    >>> net, x = nn.Sequential([nn.Conv(8, (3, 3)), nn.relu, nn.Conv(2, (1, 1))]), jnp.ones((1, 6, 6, 3))
    >>> variables = net.init(jax.random.key(0), x)
    >>> analysis = analyze_channels(net, variables, x)
    >>> network, small = export_pruned(analysis, variables, analysis.first_channels(analysis.uniform_counts(0.5)))
    >>> small["params"]["layers_0"]["kernel"].shape, network.apply(small, x).shape
    ((3, 3, 3, 4), (1, 6, 6, 2))
  """
  small = slice_variables(variables, analysis.groups, kept)
  fn = pruned_function(analysis, kept)
  closed = analysis.closed_jaxpr
  sample_shapes = [jax.ShapeDtypeStruct(v.aval.shape, v.aval.dtype) for v in closed.jaxpr.invars]

  def pruned(variables: Any, inputs: Any) -> Any:
    return fn(variables, *inputs)

  _, input_specs = jax.tree_util.tree_unflatten(analysis.in_tree, sample_shapes)
  var_specs = jax.tree_util.tree_map(lambda a: jax.ShapeDtypeStruct(np.shape(a), jnp.asarray(a).dtype), small)
  exported = jax.export.export(jax.jit(pruned))(var_specs, input_specs)
  return PrunedNetwork(bytes(exported.serialize())), small
