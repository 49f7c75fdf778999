"""How much each channel of a unit matters: magnitude, Taylor and (Group)Fisher importance.

Every criterion returns ``{unit name: float32 (num_channels,)}`` and is a pure
function of arrays (the groups are static), so it runs under ``jit``.

References:
  Li et al., *Pruning Filters for Efficient ConvNets*, ICLR 2017 (L1 magnitude).
  https://arxiv.org/abs/1608.08710
  Molchanov et al., *Importance Estimation for Neural Network Pruning*, CVPR 2019
  (Taylor). https://arxiv.org/abs/1906.10771
  Liu et al., *Group Fisher Pruning for Practical Network Compression*, ICML 2021.
  https://arxiv.org/abs/2108.00708
"""

from __future__ import annotations

import difflib
from collections.abc import Callable, Mapping, Sequence
from typing import Any

import flax.linen as nn
import jax
import jax.numpy as jnp
import numpy as np

from jaxmutate.analysis import ChannelGroup, ParamSlice
from jaxmutate.errors import ConfigError, ConfigKeyError
from jaxmutate.pruning._masks import channel_rows, full_masks, leaf_of, mask_consumers

__all__ = [
  "CRITERIA",
  "fisher_importance",
  "magnitude_importance",
  "make_importance_fn",
  "per_example_mask_grads",
  "taylor_importance",
]

Importance = dict[str, jax.Array]
LossFn = Callable[..., jax.Array]
"""``loss_fn(variables, *batch) -> scalar``: the mean loss of a batch."""

CRITERIA = ("l1", "l2", "l1_bn", "l2_bn", "taylor", "fisher")
"""The criterion names :func:`make_importance_fn` knows (``_bn``: magnitude times the norm scale)."""


def magnitude_importance(
  variables: Mapping[str, Any],
  groups: Sequence[ChannelGroup],
  ord: int = 1,
  roles: Sequence[str] = ("output",),
  norm_scale: bool = False,
) -> Importance:
  """The L1 or L2 norm of each channel's weights over the unit's ``roles`` slices.

  Args:
    variables: the model's variables.
    groups: the units.
    ord: 1 (sum of ``|w|``) or 2 (square root of the sum of ``w**2``), over every
      slice of ``roles`` together.
    roles: the slices that count (default the producing kernels' outputs).
    norm_scale: also multiply by ``|scale|`` of the unit's norm layers
      (the ``"norm"`` slices named ``scale``), as network slimming ranks by BN scales.

  Raises:
    ConfigError: ``ord`` is neither 1 nor 2, or a unit has no slice of ``roles``.

  Example:
    >>> import jax.numpy as jnp
    >>> from jaxmutate.analysis import ChannelGroup, ParamSlice
    >>> from jaxmutate.pruning import magnitude_importance
    >>> variables = {"params": {"fc1": {"kernel": jnp.array([[1.0, -2.0, 0.5], [1.0, 2.0, 0.5]])}}}
    >>> group = ChannelGroup("fc1_(0, 3)_3", 3, (ParamSlice("params", ("fc1", "kernel"), 1, (0, 1, 2), "output"),))
    >>> magnitude_importance(variables, [group])["fc1_(0, 3)_3"].tolist()
    [2.0, 4.0, 1.0]
  """
  if ord not in (1, 2):
    raise ConfigError(f"magnitude_importance: ord must be 1 or 2, got {ord!r}.")
  out = {}
  for group in groups:
    chosen = [s for s in group.slices if s.role in roles]
    if not chosen:
      raise ConfigError(f"magnitude_importance: unit {group.name!r} has no slice of roles {tuple(roles)}.")
    total = jnp.zeros((group.num_channels,), jnp.float32)
    for s in chosen:
      rows = channel_rows(leaf_of(variables, s), s).astype(jnp.float32)
      total = total + (jnp.abs(rows).sum(1) if ord == 1 else (rows**2).sum(1))
    value = total if ord == 1 else jnp.sqrt(total)
    if norm_scale:
      for s in group.slices:
        if s.role == "norm" and s.collection == "params" and s.path[-1] == "scale":
          value = value * jnp.abs(channel_rows(leaf_of(variables, s), s)[:, 0]).astype(jnp.float32)
    out[group.name] = value
  return out


def taylor_importance(
  variables: Mapping[str, Any], grads: Mapping[str, Any], groups: Sequence[ChannelGroup]
) -> Importance:
  """First-order Taylor importance: ``sum |w * g|`` over every ``params`` slice of the unit.

  Args:
    variables: the model's variables.
    grads: the loss gradient of ``variables["params"]`` (same tree).
    groups: the units.

  Example:
    >>> import jax.numpy as jnp
    >>> from jaxmutate.analysis import ChannelGroup, ParamSlice
    >>> from jaxmutate.pruning import taylor_importance
    >>> params = {"fc1": {"kernel": jnp.array([[1.0, -2.0]])}}
    >>> grads = {"fc1": {"kernel": jnp.array([[3.0, 1.0]])}}
    >>> group = ChannelGroup("fc1_(0, 2)_2", 2, (ParamSlice("params", ("fc1", "kernel"), 1, (0, 1), "output"),))
    >>> taylor_importance({"params": params}, grads, [group])["fc1_(0, 2)_2"].tolist()
    [3.0, 2.0]
  """
  out = {}
  grad_variables = {"params": grads}
  for group in groups:
    total = jnp.zeros((group.num_channels,), jnp.float32)
    for s in group.slices:
      if s.collection != "params":
        continue
      w = channel_rows(leaf_of(variables, s), s).astype(jnp.float32)
      g = channel_rows(leaf_of(grad_variables, s), s).astype(jnp.float32)
      total = total + jnp.abs(w * g).sum(1)
    out[group.name] = total
  return out


def _activation_slices(
  loss_fn: LossFn, variables: Mapping[str, Any], groups: Sequence[ChannelGroup], batch: Sequence[jax.Array]
) -> dict[tuple[str, ...], list[tuple[str, ParamSlice]]]:
  """``{module path: [(unit, slice)]}`` for input slices on the input axis of an ``nn.Dense`` or ungrouped ``nn.Conv``.

  There, masking the kernel's input channels is masking the module's input
  activation, which is cheaper to differentiate per example (no per-example
  weight gradients). Found by tracing ``loss_fn`` for shapes only.
  """
  wanted = {}
  for group in groups:
    for s in group.slices:
      if s.role == "input" and s.collection == "params" and s.path[-1] == "kernel":
        wanted.setdefault(tuple(s.path[:-1]), []).append((group.name, s))
  eligible: dict[tuple[str, ...], list[tuple[str, ParamSlice]]] = {}

  def record(next_fun: Any, args: Any, kwargs: Any, context: Any) -> Any:
    module, path = context.module, tuple(context.module.path)
    if context.method_name == "__call__" and path in wanted and args:
      kernel_ndim = len(np.shape(leaf_of(variables, wanted[path][0][1])))
      plain = isinstance(module, nn.Dense) or (isinstance(module, nn.Conv) and module.feature_group_count == 1)
      if plain and all(s.axis == kernel_ndim - 2 for _, s in wanted[path]):
        eligible[path] = wanted[path]
    return next_fun(*args, **kwargs)

  with nn.intercept_methods(record):
    jax.eval_shape(lambda v, *b: loss_fn(v, *(e[:1] for e in b)), variables, *batch)
  return eligible


def per_example_mask_grads(
  loss_fn: LossFn,
  variables: Mapping[str, Any],
  groups: Sequence[ChannelGroup],
  *batch: jax.Array,
  masks: Mapping[str, jax.Array] | None = None,
) -> Importance:
  """Each example's gradient of its loss with respect to every unit's channel mask: ``{name: (B, C)}``.

  The mask scales the unit's activation where it is consumed (GroupFisher's
  activation mask, see :func:`mask_consumers`); the gradients are taken at ``masks`` (default all
  ones) in one pass, ``jax.vmap`` over the examples of ``batch``. Each example is
  given to ``loss_fn`` as a batch of one, so a model with BatchNorm should use
  its running statistics in ``loss_fn``. Where the consumer is an ``nn.Dense``
  or an ungrouped ``nn.Conv``, the mask multiplies its input (intercepted with
  ``flax.linen.intercept_methods``) rather than its kernel: the same function
  of the mask, without per-example weight gradients.

  Example:
    >>> import jax.numpy as jnp
    >>> from jaxmutate.analysis import ChannelGroup, ParamSlice
    >>> from jaxmutate.pruning import per_example_mask_grads
    >>> variables = {"params": {"w": jnp.array([[1.0], [2.0]])}}
    >>> loss_fn = lambda v, x: (x @ v["params"]["w"]).sum()
    >>> group = ChannelGroup("x_(0, 2)_2", 2, (ParamSlice("params", ("w",), 0, (0, 1), "input"),))
    >>> per_example_mask_grads(loss_fn, variables, [group], jnp.array([[1.0, 1.0], [3.0, 0.0]]))["x_(0, 2)_2"].tolist()
    [[1.0, 2.0], [3.0, 0.0]]
  """
  at = dict(full_masks(groups) if masks is None else masks)
  on_inputs = _activation_slices(loss_fn, variables, groups, batch)
  done = {id(s) for pairs in on_inputs.values() for _, s in pairs}
  # The slices masked on the kernels: every other input slice (units without input slices: all their slices).
  rest = []
  for group in groups:
    inputs = [s for s in group.slices if s.role == "input"]
    chosen = [s for s in (inputs or group.slices) if id(s) not in done]
    rest.append(group._replace(slices=tuple(chosen)))

  def example_loss(m: Mapping[str, jax.Array], *example: jax.Array) -> jax.Array:
    def scale_input(next_fun: Any, args: Any, kwargs: Any, context: Any) -> Any:
      path = tuple(context.module.path)
      if context.method_name != "__call__" or path not in on_inputs:
        return next_fun(*args, **kwargs)
      x = args[0]
      for name, s in on_inputs[path]:
        factor = (
          jnp.ones((x.shape[-1],), x.dtype)
          .at[np.asarray(s.indices, np.int32)]
          .set(m[name].astype(x.dtype), unique_indices=True)
        )
        x = x * factor.reshape((1,) * (x.ndim - 1) + (-1,))
      return next_fun(x, *args[1:], **kwargs)

    with nn.intercept_methods(scale_input):
      return loss_fn(
        mask_consumers(variables, rest, m, roles=("input", "output", "norm", "bias", "other")),
        *(e[None] for e in example),
      )

  return jax.vmap(jax.grad(example_loss), in_axes=(None, *([0] * len(batch))))(at, *batch)


def fisher_importance(
  loss_fn: LossFn,
  variables: Mapping[str, Any],
  groups: Sequence[ChannelGroup],
  *batch: jax.Array,
  masks: Mapping[str, jax.Array] | None = None,
) -> Importance:
  """GroupFisher importance of a batch: per-example mask gradients, squared and summed over the examples.

  Args:
    loss_fn: ``loss_fn(variables, *batch) -> scalar`` (use BatchNorm's running statistics).
    variables: the model's variables.
    groups: the units.
    *batch: arrays with the examples on axis 0 (images, labels...).
    masks: the current masks (default: all kept).

  Example:
    >>> import jax.numpy as jnp
    >>> from jaxmutate.analysis import ChannelGroup, ParamSlice
    >>> from jaxmutate.pruning import fisher_importance
    >>> variables = {"params": {"w": jnp.array([[1.0], [2.0]])}}
    >>> loss_fn = lambda v, x: (x @ v["params"]["w"]).sum()
    >>> group = ChannelGroup("x_(0, 2)_2", 2, (ParamSlice("params", ("w",), 0, (0, 1), "input"),))
    >>> fisher_importance(loss_fn, variables, [group], jnp.array([[1.0, 1.0], [3.0, 0.0]]))["x_(0, 2)_2"].tolist()
    [10.0, 4.0]
  """
  grads = per_example_mask_grads(loss_fn, variables, groups, *batch, masks=masks)
  return {name: (g.astype(jnp.float32) ** 2).sum(0) for name, g in grads.items()}


def check_criterion(criterion: str) -> str:
  """``criterion`` if :data:`CRITERIA` holds it, else a ``ConfigKeyError`` naming it and close matches.

  Example:
    >>> from jaxmutate.pruning import check_criterion
    >>> check_criterion("taylor")
    'taylor'
    >>> check_criterion("tayler")
    Traceback (most recent call last):
    ...
    jaxmutate.errors.ConfigKeyError: unknown pruning criterion 'tayler' (did you mean 'taylor'?); expected one of [...].
  """
  if criterion not in CRITERIA:
    close = difflib.get_close_matches(str(criterion), CRITERIA, n=2)
    hint = f" (did you mean {' or '.join(repr(c) for c in close)}?)" if close else ""
    raise ConfigKeyError(f"unknown pruning criterion {criterion!r}{hint}; expected one of {list(CRITERIA)}.")
  return criterion


def make_importance_fn(
  criterion: str,
  groups: Sequence[ChannelGroup],
  loss_fn: LossFn | None = None,
  masked_loss_fn: Callable[..., jax.Array] | None = None,
) -> Callable[..., Importance]:
  """One signature for every criterion: ``importance(variables, *batch, masks=None) -> {name: (C,)}``.

  ``"l1"``/``"l2"`` (and ``"l1_bn"``/``"l2_bn"``, times the norm scale) read the
  weights only; ``"taylor"`` takes the gradient of the loss of the pruned
  network (``masks``) on the batch; ``"fisher"`` is :func:`fisher_importance` of
  ``loss_fn`` (GroupFisher's activation masks, :func:`mask_consumers`). The
  returned function is pure: wrap it in ``jax.jit``.

  Args:
    criterion: one of :data:`CRITERIA`.
    groups: the units.
    loss_fn: ``loss_fn(variables, *batch) -> scalar`` of the unpruned model
      (``"fisher"``; ``"taylor"`` without ``masked_loss_fn``, which then masks the
      consumers, exact through convolutions, dense layers and BatchNorm).
    masked_loss_fn: ``masked_loss_fn(variables, masks, *batch) -> scalar``, the
      loss of the pruned network, e.g. built on
      :func:`jaxmutate.analysis.masked_function` (exactly the sliced network);
      ``"taylor"`` differentiates it when given.

  Raises:
    ConfigKeyError: (a ``KeyError``) an unknown criterion.
    ConfigError: ``"taylor"``/``"fisher"`` without the loss they need.

  Example:
    >>> import jax, jax.numpy as jnp
    >>> from jaxmutate.analysis import ChannelGroup, ParamSlice
    >>> from jaxmutate.pruning import make_importance_fn
    >>> variables = {"params": {"fc1": {"kernel": jnp.array([[1.0, -2.0]])}}}
    >>> group = ChannelGroup("fc1_(0, 2)_2", 2, (ParamSlice("params", ("fc1", "kernel"), 1, (0, 1), "output"),))
    >>> jax.jit(make_importance_fn("l2", [group]))(variables)["fc1_(0, 2)_2"].tolist()
    [1.0, 2.0]
    >>> make_importance_fn("fisherr", [group])
    Traceback (most recent call last):
    ...
    jaxmutate.errors.ConfigKeyError: unknown pruning criterion 'fisherr' (did you mean 'fisher'?); expected one of ['l1', 'l2', 'l1_bn', 'l2_bn', 'taylor', 'fisher'].
  """
  check_criterion(criterion)
  groups = tuple(groups)
  if criterion == "fisher" and loss_fn is None:
    raise ConfigError("make_importance_fn: criterion 'fisher' needs a loss_fn(variables, *batch).")
  if criterion == "taylor" and loss_fn is None and masked_loss_fn is None:
    raise ConfigError(
      "make_importance_fn: criterion 'taylor' needs a masked_loss_fn(variables, masks, *batch) or a "
      "loss_fn(variables, *batch)."
    )

  def importance(variables: Mapping[str, Any], *batch: jax.Array, masks: Mapping[str, Any] | None = None) -> Importance:
    if criterion in ("l1", "l2", "l1_bn", "l2_bn"):
      return magnitude_importance(variables, groups, ord=int(criterion[1]), norm_scale=criterion.endswith("_bn"))
    if criterion == "fisher":
      return fisher_importance(loss_fn, variables, groups, *batch, masks=masks)
    at = dict(full_masks(groups) if masks is None else masks)
    if masked_loss_fn is not None:
      masked_loss = lambda params: masked_loss_fn({**variables, "params": params}, at, *batch)  # noqa: E731
    else:
      masked_loss = lambda params: loss_fn(mask_consumers({**variables, "params": params}, groups, at), *batch)  # noqa: E731
    return taylor_importance(variables, jax.grad(masked_loss)(variables["params"]), groups)

  return importance
