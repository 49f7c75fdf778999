"""MMRazor's ``make_divisible``: round a channel count to a multiple of a divisor.

The Python function gives MMRazor's numbers (plain Python arithmetic, float64
included). Its twin for arrays, :func:`make_divisible_jnp`, gives the same
numbers for traced values by looking them up in a table built with the Python
function: a float32 re-computation would disagree wherever MMRazor's float64
comparison ``new < min_ratio * value`` sits on a rounding tie (``0.07 * 100``
is ``7.000000000000001`` in float64 but ``7.0`` in float32).
"""

from __future__ import annotations

import functools
from typing import Any

import jax
import jax.numpy as jnp
import numpy as np

from jaxmutate.errors import ConfigError, ConfigTypeError

__all__ = ["make_divisible", "make_divisible_jnp"]


def _check_args(divisor: Any, min_value: Any, min_ratio: Any) -> None:
  if isinstance(divisor, bool) or not isinstance(divisor, (int, np.integer)):
    raise ConfigTypeError(f"make_divisible: divisor must be an int >= 1, got {divisor!r}.")
  if divisor < 1:
    raise ConfigError(f"make_divisible: divisor must be an int >= 1, got {divisor!r}.")
  if min_value is not None and (isinstance(min_value, bool) or not isinstance(min_value, (int, np.integer))):
    raise ConfigTypeError(f"make_divisible: min_value must be an int or None, got {min_value!r}.")
  if isinstance(min_ratio, bool) or not isinstance(min_ratio, (int, float, np.floating, np.integer)):
    raise ConfigTypeError(f"make_divisible: min_ratio must be a number, got {min_ratio!r}.")


def make_divisible(value: int | float, divisor: int, min_value: int | None = None, min_ratio: float = 0.9) -> int:
  """Rounds ``value`` to the nearest multiple of ``divisor``, MMRazor's rule.

  ``new = max(min_value or divisor, int(value + divisor / 2) // divisor * divisor)``,
  plus ``divisor`` when that is below ``min_ratio * value`` (rounding never
  loses more than ``1 - min_ratio`` of the channels). As in MMRazor, a
  ``min_value`` below ``divisor`` counts as ``divisor`` (so the result is
  always a multiple of ``divisor``; MMRazor logs a warning there).

  Args:
    value: the channel count (a ratio times a width may make it a float).
    divisor: the result is a multiple of it (``1``: no rounding).
    min_value: the smallest result; ``None`` means ``divisor``.
    min_ratio: the result is at least ``min_ratio * value``.

  Returns:
    The rounded count (a Python int).

  Raises:
    ConfigTypeError: a non-integer ``divisor`` or ``min_value``.
    ConfigError: ``divisor < 1``.

  Example:
    >>> from jaxmutate.channels import make_divisible
    >>> [make_divisible(v, 8) for v in (20, 30, 40, 3)]
    [24, 32, 40, 8]
    >>> make_divisible(14.4, 1), make_divisible(7, 1, min_value=1)
    (14, 7)
  """
  _check_args(divisor, min_value, min_ratio)
  divisor = int(divisor)
  floor = divisor if min_value is None else max(int(min_value), divisor)
  new = max(floor, int(value + divisor / 2) // divisor * divisor)
  if new < min_ratio * value:
    new += divisor
  return int(new)


@functools.lru_cache(maxsize=256)
def _table(max_value: int, divisor: int, min_value: int | None, min_ratio: float) -> np.ndarray:
  return np.asarray([make_divisible(v, divisor, min_value, min_ratio) for v in range(max_value + 1)], np.int32)


def make_divisible_jnp(
  value: jax.Array | int,
  divisor: int,
  min_value: int | None = None,
  min_ratio: float = 0.9,
  *,
  max_value: int,
) -> jax.Array:
  """:func:`make_divisible` for int arrays (traced or batched): the same numbers.

  The result is read from a table of :func:`make_divisible` over
  ``0..max_value`` (built once per argument set), so it equals the Python
  function exactly for every integer in that range; values outside it are
  clipped into it first (jaxmutate's policy for traced values: clip, never
  NaN).

  Args:
    value: an int array of channel counts, any shape.
    divisor: as :func:`make_divisible`.
    min_value: as :func:`make_divisible`.
    min_ratio: as :func:`make_divisible`.
    max_value: (static) the largest value to expect, e.g. the unit's
      ``num_channels``.

  Returns:
    An int32 array of the shape of ``value``.

  Raises:
    ConfigTypeError: a float ``value`` or a non-integer ``max_value``.

  Example:
    >>> import jax, jax.numpy as jnp
    >>> from jaxmutate.channels import make_divisible_jnp
    >>> f = jax.jit(lambda v: make_divisible_jnp(v, 8, max_value=64))
    >>> f(jnp.array([20, 30, 40, 3])).tolist()
    [24, 32, 40, 8]
  """
  _check_args(divisor, min_value, min_ratio)
  if isinstance(max_value, bool) or not isinstance(max_value, (int, np.integer)) or max_value < 0:
    raise ConfigTypeError(f"make_divisible_jnp: max_value must be an int >= 0, got {max_value!r}.")
  value = jnp.asarray(value)
  if not jnp.issubdtype(value.dtype, jnp.integer):
    raise ConfigTypeError(
      f"make_divisible_jnp takes int channel counts, got dtype {value.dtype}; use make_divisible for floats."
    )
  table = jnp.asarray(_table(int(max_value), int(divisor), min_value, float(min_ratio)))
  return table[jnp.clip(value.astype(jnp.int32), 0, int(max_value))]
