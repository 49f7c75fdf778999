"""Gumbel-softmax utilities: the PRNG stream, temperatures and their schedule.

GDAS samples architectures with Gumbel-softmax weights ``softmax((logits + g) /
tau)``; DSNAS samples one-hot. Both draw their noise from the ``'gumbel'`` PRNG
stream of ``apply``, and anneal the temperature ``tau`` with a schedule whose
value is traced, so annealing never recompiles.
"""

from __future__ import annotations

from typing import Any

import jax
import jax.numpy as jnp
import numpy as np
import optax

from jaxmutate.errors import ConfigError, ConfigTypeError
from jaxmutate.spaces import is_traced

GUMBEL_RNG = "gumbel"
"""The PRNG stream Gumbel and one-hot mutables draw from: ``rngs={"gumbel": key}``."""


def check_temperature(owner: str, tau: Any) -> Any:
  """Validates a Gumbel temperature: ``> 0`` when concrete.

  A traced temperature (inside ``jit``) cannot be checked here; the schedule
  that makes it (:func:`gumbel_temperature_schedule`) checks its range.

  Raises:
    ConfigError: a concrete temperature that is not a positive finite number.
    ConfigTypeError: a temperature that is not a real scalar.

  Example:
    >>> from jaxmutate.mutables import check_temperature
    >>> check_temperature("my schedule", 0.5)
    0.5
  """
  if is_traced(tau):
    if jnp.shape(tau) != ():
      raise ConfigTypeError(f"{owner}: the temperature tau must be a scalar, got shape {jnp.shape(tau)}.")
    return tau
  try:
    value = np.asarray(tau, dtype=np.float64)
  except (TypeError, ValueError):
    raise ConfigTypeError(f"{owner}: the temperature tau must be a real number, got {tau!r}.") from None
  if value.shape != ():
    raise ConfigTypeError(f"{owner}: the temperature tau must be a scalar, got shape {value.shape}.")
  if not (np.isfinite(value) and value > 0):
    raise ConfigError(f"{owner}: the temperature tau must be > 0 (and finite), got {float(value)!r}.")
  return tau


def gumbel_temperature_schedule(
  init_value: float = 10.0, end_value: float = 0.1, transition_steps: int = 1000, kind: str = "exponential"
) -> optax.Schedule:
  """The GDAS temperature annealing schedule: step → temperature.

  GDAS anneals ``tau`` from 10 to 0.1 over the search; ``"exponential"``
  interpolates geometrically, ``"linear"`` linearly, ``"cosine"`` along a
  half cosine. After ``transition_steps`` the temperature stays at
  ``end_value``. Works on Python ints and traced steps.

  Args:
    init_value: temperature at step 0, > 0.
    end_value: final temperature, > 0.
    transition_steps: steps to go from ``init_value`` to ``end_value`` (>= 1).
    kind: ``"exponential"``, ``"linear"`` or ``"cosine"``.

  Returns:
    An optax schedule (a function of the step count).

  Raises:
    ValueError: a temperature <= 0, ``transition_steps`` < 1 or an unknown
      ``kind``.

  Example:
    >>> from jaxmutate.mutables import gumbel_temperature_schedule
    >>> schedule = gumbel_temperature_schedule(10.0, 0.1, transition_steps=100)
    >>> round(float(schedule(0)), 3), round(float(schedule(50)), 3), round(float(schedule(500)), 3)
    (10.0, 1.0, 0.1)
  """
  check_temperature("gumbel_temperature_schedule init_value", init_value)
  check_temperature("gumbel_temperature_schedule end_value", end_value)
  if not isinstance(transition_steps, (int, np.integer)) or transition_steps < 1:
    raise ConfigError(f"gumbel_temperature_schedule: transition_steps must be an int >= 1, got {transition_steps!r}.")
  if kind == "exponential":
    rate = float(end_value) / float(init_value)
    return optax.exponential_decay(float(init_value), int(transition_steps), rate, end_value=float(end_value))
  if kind == "linear":
    return optax.linear_schedule(float(init_value), float(end_value), int(transition_steps))
  if kind == "cosine":
    alpha = float(end_value) / float(init_value)
    return optax.cosine_decay_schedule(float(init_value), int(transition_steps), alpha=alpha)
  raise ConfigError(f"gumbel_temperature_schedule: kind must be 'exponential', 'linear' or 'cosine', got {kind!r}.")


def gumbel_softmax(key: jax.Array, logits: jax.Array, tau: Any, hard: bool) -> jax.Array:
  """Gumbel-softmax weights; ``hard`` gives a straight-through one-hot vector.

  Args:
    key: PRNG key for the Gumbel noise.
    logits: unnormalised log-probabilities, shape ``(n,)``.
    tau: temperature, > 0 (a float or a traced scalar).
    hard: when true the forward value is one-hot (argmax) while gradients are
      those of the soft weights.

  Returns:
    Weights of shape ``(n,)`` summing to 1.

  Raises:
    ValueError: a concrete ``tau`` <= 0.

  Example:
    >>> import jax, jax.numpy as jnp
    >>> from jaxmutate.mutables import gumbel_softmax
    >>> w = gumbel_softmax(jax.random.key(0), jnp.zeros(3), tau=1.0, hard=True)
    >>> float(w.sum()), int((w == 1).sum())
    (1.0, 1)
  """
  tau = check_temperature("gumbel_softmax", tau)
  gumbels = jax.random.gumbel(key, logits.shape, logits.dtype)
  soft = jax.nn.softmax((logits + gumbels) / jnp.asarray(tau, logits.dtype))
  if not hard:
    return soft
  one_hot = jax.nn.one_hot(jnp.argmax(soft), logits.shape[-1], dtype=soft.dtype)
  return one_hot - jax.lax.stop_gradient(soft) + soft
