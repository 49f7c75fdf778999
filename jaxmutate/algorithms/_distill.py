"""Knowledge-distillation losses: a student's logits against a (detached) teacher's."""

from __future__ import annotations

from collections.abc import Callable

import jax
import jax.numpy as jnp
from jax import lax

from jaxmutate.errors import ConfigError

DistillFunction = Callable[[jax.Array, jax.Array], jax.Array]
"""``distill_fn(student_logits, teacher_logits) -> scalar``."""


def kl_divergence(
  student_logits: jax.Array,
  teacher_logits: jax.Array,
  tau: float = 1.0,
  loss_weight: float = 1.0,
  teacher_detach: bool = True,
) -> jax.Array:
  """MMRazor's ``KLDivergence``: ``loss_weight * tau² * KL(p_teacher || p_student)``, batch mean.

  Both distributions are softmaxes over the last axis (Flax logits are
  channels-last) at temperature ``tau``; the divergence is summed over every
  axis but the first and averaged over the first (PyTorch's
  ``reduction="batchmean"``, MMRazor's default). The teacher is detached
  (``lax.stop_gradient``) unless ``teacher_detach=False``, as in MMRazor: in
  in-place distillation the teacher is the max subnet of the same supernet,
  and its logits must not be pulled towards the student.

  Args:
    student_logits: ``[B, ..., C]``.
    teacher_logits: the same shape.
    tau: the temperature (> 0).
    loss_weight: a factor on the loss.
    teacher_detach: stop gradients through the teacher.

  Returns:
    A float32 scalar (0 when the two agree).

  Raises:
    ConfigError: (a ``ValueError``) ``tau <= 0``, or logits of different shapes.

  Example:
    >>> import jax, jax.numpy as jnp
    >>> from jaxmutate.algorithms import kl_divergence
    >>> teacher = jnp.array([[2.0, 0.0, -1.0]])
    >>> float(kl_divergence(teacher, teacher))
    0.0
    >>> round(float(kl_divergence(jnp.zeros((1, 3)), teacher)), 4)
    0.5743
    >>> jax.grad(lambda t: kl_divergence(jnp.zeros((1, 3)), t))(teacher).tolist()  # detached teacher
    [[0.0, 0.0, 0.0]]
  """
  if not isinstance(tau, (int, float)) or not tau > 0:
    raise ConfigError(f"kl_divergence: tau must be a number > 0, got {tau!r}.")
  if jnp.shape(student_logits) != jnp.shape(teacher_logits):
    raise ConfigError(
      f"kl_divergence: student logits {jnp.shape(student_logits)} and teacher logits "
      f"{jnp.shape(teacher_logits)} must have the same shape."
    )
  if teacher_detach:
    teacher_logits = lax.stop_gradient(teacher_logits)
  log_p_teacher = jax.nn.log_softmax(teacher_logits / tau, axis=-1)
  log_p_student = jax.nn.log_softmax(student_logits / tau, axis=-1)
  # xlogy-style: a teacher probability of exactly 0 contributes 0, not nan.
  p_teacher = jnp.exp(log_p_teacher)
  pointwise = jnp.where(p_teacher > 0, p_teacher * (log_p_teacher - log_p_student), 0.0)
  batch = student_logits.shape[0] if student_logits.ndim else 1
  return loss_weight * tau**2 * jnp.sum(pointwise) / batch
