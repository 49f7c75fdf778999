"""The DARTS architecture gradient, first order or exact second order.

The second-order architecture gradient is the DARTS hypergradient

  ``∇α L_val(w − ξ ∇w L_train(w, α), α)``

computed *exactly* by differentiating through the unrolled weight step (JAX
reverse-over-reverse AD, i.e. a Hessian-vector product), not by MMRazor's
finite differences; with ``ξ = 0`` it is the first-order gradient.

References:
  Liu et al., DARTS: Differentiable Architecture Search, ICLR 2019,
  https://arxiv.org/abs/1806.09055 (eq. 6-8).
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

import flax.linen as nn
import jax

from jaxmutate.algorithms._metrics import LossFunction, classification_loss
from jaxmutate.mutables import GUMBEL_RNG
from jaxmutate.mutators import DiffModuleMutator
from jaxmutate.typing import PRNGKey

Batch = tuple[jax.Array, jax.Array]
"""``(images, labels)``."""


def supernet_loss(
  model: nn.Module,
  mutator: DiffModuleMutator,
  params: Any,
  batch_stats: Any,
  arch_params: Mapping[int, jax.Array],
  batch: Batch,
  key: PRNGKey,
  tau: Any = None,
  loss_fn: LossFunction = classification_loss,
) -> tuple[jax.Array, tuple[Any, jax.Array]]:
  """The supernet's training-mode loss for given weights and logits.

  BatchNorm uses batch statistics; the Gumbel stream gets ``key``; ``tau``
  is passed to the model when it is not ``None``.

  Returns:
    ``(loss, (new batch_stats, logits))``.

  Example:
    >>> from jaxmutate.algorithms import supernet_loss
    >>> import jax, jax.numpy as jnp
    >>> import jaxmutate as jm
    >>> from jaxmutate.models import DartsBackbone
    >>> net = DartsBackbone(base_channels=2, num_layers=1, num_nodes=1, num_classes=3,
    ...                     op_names=("zero", "skip_connect"))
    >>> variables = net.init(jax.random.key(0), jnp.ones((2, 8, 8, 1)), None)
    >>> mutator = jm.DiffModuleMutator().prepare_from_supernet(variables)
    >>> alpha = mutator.init_arch_params(jax.random.key(1))
    >>> batch = (jnp.ones((2, 8, 8, 1)), jnp.array([0, 2]))
    >>> loss, (batch_stats, logits) = supernet_loss(net, mutator, variables["params"], variables["batch_stats"], alpha,
    ...                                             batch, jax.random.key(2))
    >>> loss.shape, logits.shape, sorted(batch_stats) == sorted(variables["batch_stats"])
    ((), (2, 3), True)
  """
  choices = mutator.set_choices(arch_params)
  extra = {} if tau is None else {"tau": tau}
  logits, updates = model.apply(
    {"params": params, "batch_stats": batch_stats},
    batch[0],
    choices,
    train=True,
    mutable=["batch_stats"],
    rngs={GUMBEL_RNG: key},
    **extra,
  )
  return loss_fn(logits, batch[1]), (updates.get("batch_stats", {}), logits)


def arch_gradient(
  model: nn.Module,
  mutator: DiffModuleMutator,
  params: Any,
  batch_stats: Any,
  arch_params: Mapping[int, jax.Array],
  train_batch: Batch,
  val_batch: Batch,
  key: PRNGKey,
  tau: Any = None,
  unroll_lr: float = 0.0,
  unroll_weight_decay: float = 0.0,
  loss_fn: LossFunction = classification_loss,
) -> tuple[jax.Array, dict[int, jax.Array], jax.Array]:
  """The DARTS architecture gradient, first order or exact second order.

  With ``unroll_lr = ξ > 0`` it is ``∇α L_val(w′(α), α)`` with the unrolled
  weights ``w′(α) = w − ξ (∇w L_train(w, α) + λ w)`` (``λ`` =
  ``unroll_weight_decay``), differentiated exactly through ``w′`` (the
  second-order term ``−ξ ∇²α,w L_train · ∇w′ L_val`` comes out of
  reverse-over-reverse AD). With ``ξ = 0`` (a Python number) it is the
  first-order gradient ``∇α L_val(w, α)`` and the training batch is unused.

  Args:
    model, mutator: the supernet and its prepared ``DiffModuleMutator``.
    params, batch_stats: supernet weights and BatchNorm statistics.
    arch_params: ``{group id: logits}``.
    train_batch: ``(images, labels)`` for the virtual weight step.
    val_batch: ``(images, labels)`` for the architecture loss.
    key: PRNG key (split for the Gumbel noise of the two passes).
    tau: Gumbel temperature, or ``None`` for models without Gumbel mutables.
    unroll_lr: ``ξ``, the virtual step's learning rate (0: first order).
    unroll_weight_decay: ``λ`` of the virtual step.
    loss_fn: ``loss_fn(logits, labels)``.

  Returns:
    ``(validation loss, {group id: gradient}, validation logits)``.

  Example:
    >>> import jax, jax.numpy as jnp, flax.linen as nn
    >>> import jaxmutate as jm
    >>> from jaxmutate.algorithms import arch_gradient
    >>> class Net(nn.Module):
    ...   @nn.compact
    ...   def __call__(self, x, choices, train=False):
    ...     return jm.DiffMutableOP({"a": nn.Dense(3), "b": nn.Dense(3)}, name="op")(x, choices)
    >>> x, y = jnp.ones((4, 2)), jnp.zeros(4, jnp.int32)
    >>> variables = Net().init(jax.random.key(0), x, None)
    >>> mutator = jm.DiffModuleMutator().prepare_from_supernet(variables)
    >>> alpha = mutator.init_arch_params(jax.random.key(1))
    >>> loss, grads, _ = arch_gradient(Net(), mutator, variables["params"], {}, alpha, (x, y), (x, y),
    ...                                jax.random.key(2), unroll_lr=0.1)
    >>> grads[0].shape
    (2,)
  """
  train_key, val_key = jax.random.split(key)

  def val_loss(arch):
    weights = params
    if not (isinstance(unroll_lr, (int, float)) and unroll_lr == 0):
      grads = jax.grad(
        lambda w: supernet_loss(model, mutator, w, batch_stats, arch, train_batch, train_key, tau, loss_fn)[0]
      )(params)
      weights = jax.tree.map(lambda w, g: w - unroll_lr * (g + unroll_weight_decay * w), params, grads)
    loss, (_, logits) = supernet_loss(model, mutator, weights, batch_stats, arch, val_batch, val_key, tau, loss_fn)
    return loss, logits

  (loss, logits), grads = jax.value_and_grad(val_loss, has_aux=True)(dict(arch_params))
  return loss, grads, logits
