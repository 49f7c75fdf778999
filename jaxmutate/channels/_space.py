"""The search space of a channel unit: what a width choice means.

Two kinds, told apart by ``candidates``:

- **index** (one-shot and slimmable units): the choice is an int32 index into
  the sorted kept counts ``candidates``;
- **sequential** (``candidates=None``): the choice is an int32 number of kept
  channels, any of ``1..num_channels``, made divisible (MMRazor's
  ``SequentialMutableChannelUnit``).

Either way subnet files carry the number of kept channels (``choice_mode=
"number"``) or that number over ``num_channels`` (``"ratio"``), as MMRazor's
files do; when reading them, an int is a number of channels and a float a
ratio, whatever the mode (MMRazor's rule).
"""

from __future__ import annotations

import dataclasses
import functools
import math
from collections.abc import Sequence
from typing import Any, ClassVar

import jax
import jax.numpy as jnp
import numpy as np

from jaxmutate.channels._divisible import make_divisible
from jaxmutate.errors import (
  ChoiceError,
  ChoiceTypeError,
  ConfigError,
  ConfigTypeError,
  SearchSpaceError,
  SubnetFileError,
)
from jaxmutate.spaces import SearchSpace, check_index_choice, is_traced

__all__ = ["CHOICE_MODES", "ChannelSpace", "normalize_candidates", "ratio_to_number"]

CHOICE_MODES = ("number", "ratio")
"""The two ways a unit's choice is written: kept channels, or kept / num_channels."""

# A ratio read from a file matches a candidate's ratio within this (files may
# round ratios to 6 digits; two candidates' ratios differ by 1/num_channels).
_RATIO_TOLERANCE = 1e-6


def _subject(where: str | None) -> str:
  return f"Channel unit {where!r}" if where else "Channel unit"


def _is_int(value: Any) -> bool:
  return isinstance(value, (int, np.integer)) and not isinstance(value, (bool, np.bool_))


def _is_float(value: Any) -> bool:
  return isinstance(value, (float, np.floating))


def ratio_to_number(ratio: float, num_channels: int) -> int:
  """The number of channels a ratio keeps: MMRazor's ``max(1, int(num_channels * ratio))``.

  A ratio that is exactly ``k / num_channels`` (what exporting ``k`` channels in
  ratio mode writes) reads back as ``k``, also where float rounding would make
  ``int(num_channels * ratio)`` give ``k - 1`` (``49 * (1 / 49)`` is
  ``0.9999999999999999``).

  Example:
    >>> from jaxmutate.channels import ratio_to_number
    >>> ratio_to_number(0.2, 10), ratio_to_number(0.3, 48), ratio_to_number(1 / 49, 49)
    (2, 14, 1)
  """
  k = round(ratio * num_channels)
  if k >= 1 and k / num_channels == ratio:
    return int(k)
  return max(1, int(num_channels * ratio))


def _check_num_channels(num_channels: Any, where: str | None) -> int:
  if not _is_int(num_channels) or num_channels < 1:
    raise SearchSpaceError(f"{_subject(where)}: num_channels must be an int >= 1, got {num_channels!r}.")
  return int(num_channels)


def _check_rounding(choice_mode: Any, divisor: Any, min_value: Any, min_ratio: Any, where: str | None) -> None:
  if choice_mode not in CHOICE_MODES:
    raise ConfigError(f"{_subject(where)}: choice_mode must be 'number' or 'ratio', got {choice_mode!r}.")
  if not _is_int(divisor) or divisor < 1:
    raise ConfigError(f"{_subject(where)}: divisor must be an int >= 1, got {divisor!r}.")
  if min_value is not None and (not _is_int(min_value) or min_value < 1):
    raise ConfigError(f"{_subject(where)}: min_value must be an int >= 1 or None, got {min_value!r}.")
  if isinstance(min_ratio, bool) or not isinstance(min_ratio, (int, float, np.integer, np.floating)):
    raise ConfigTypeError(f"{_subject(where)}: min_ratio must be a number in [0, 1], got {min_ratio!r}.")
  if not 0 <= min_ratio <= 1:
    raise ConfigError(f"{_subject(where)}: min_ratio must be in [0, 1], got {min_ratio!r}.")


@functools.lru_cache(maxsize=512)
def _kept_table(num_channels: int, divisor: int, min_value: int | None, min_ratio: float) -> tuple[int, ...]:
  """``kept[v]`` for ``v = 0..num_channels``: the count a request of ``v`` channels keeps (entry 0 unused).

  MMRazor's ``make_divisible``, capped at ``num_channels`` (rounding up may pass
  the full width: ``make_divisible(10, 8)`` is 16, and the full width is what
  such a unit means). A count that rounding gives already stays as it is:
  re-rounding is then the identity, so a choice survives export, reload and
  rebuilding (MMRazor's rounding is not idempotent where ``min_value`` is not a
  multiple of ``divisor``: ``make_divisible(3, 2, min_value=3)`` is 4). For the
  usual arguments the two agree everywhere.
  """
  raw = [min(num_channels, make_divisible(v, divisor, min_value, min_ratio)) for v in range(1, num_channels + 1)]
  reachable = set(raw)
  return (1,) + tuple(v if v in reachable else r for v, r in zip(range(1, num_channels + 1), raw))


def normalize_candidates(
  num_channels: int,
  candidate_choices: Sequence[int | float],
  choice_mode: str = "ratio",
  divisor: int = 1,
  min_value: int | None = 1,
  min_ratio: float = 0.9,
  where: str | None = None,
) -> tuple[int, ...]:
  """A one-shot unit's candidates as sorted, distinct numbers of kept channels.

  MMRazor's rule: each candidate (a number of channels in number mode, a
  ratio in ratio mode, ``max(1, int(num_channels * ratio))`` channels) is
  made divisible, then the list is sorted; here also de-duplicated, a
  count that rounding pushes past ``num_channels`` stops at the full width,
  and a count that rounding gives already is kept (so normalising twice
  changes nothing). An empty list means the full width.

  Args:
    num_channels: the unit's full width.
    candidate_choices: ints (number mode) or floats (ratio mode).
    choice_mode: ``"number"`` or ``"ratio"``.
    divisor: as :func:`~jaxmutate.channels.make_divisible`.
    min_value: as :func:`~jaxmutate.channels.make_divisible`.
    min_ratio: as :func:`~jaxmutate.channels.make_divisible`.
    where: the unit's name, for error messages.

  Returns:
    The sorted kept counts, each in ``[1, num_channels]``.

  Raises:
    SearchSpaceError: a number outside ``(0, num_channels]`` or a ratio outside
      ``(0, 1]``.
    ConfigTypeError: a float in number mode, an int in ratio mode, or a
      candidate that is not a number.

  Example:
    >>> from jaxmutate.channels import normalize_candidates
    >>> normalize_candidates(48, (20, 30, 40), "number", divisor=8)
    (24, 32, 40)
    >>> [k / 48 for k in normalize_candidates(48, (0.3, 0.5, 0.7), "ratio", divisor=8)]
    [0.3333333333333333, 0.5, 0.6666666666666666]
  """
  n = _check_num_channels(num_channels, where)
  _check_rounding(choice_mode, divisor, min_value, min_ratio, where)
  if isinstance(candidate_choices, (str, bytes)) or not isinstance(candidate_choices, Sequence):
    raise ConfigTypeError(f"{_subject(where)}: candidate_choices must be a list of numbers, got {candidate_choices!r}.")
  if not candidate_choices:
    # MMRazor: no candidates means the full width, rounded like any candidate.
    candidate_choices = (n,) if choice_mode == "number" else (1.0,)
  counts = set()
  for choice in candidate_choices:
    if choice_mode == "number":
      if not _is_int(choice):
        raise ConfigTypeError(
          f"{_subject(where)}: in number mode candidate_choices are ints (numbers of channels), got {choice!r} "
          f"in {list(candidate_choices)}; use choice_mode='ratio' for ratios."
        )
      if not 0 < choice <= n:
        raise SearchSpaceError(
          f"{_subject(where)}: candidate {choice} is outside (0, num_channels={n}] (candidate_choices "
          f"{list(candidate_choices)})."
        )
      count = int(choice)
    else:
      if not _is_float(choice):
        raise ConfigTypeError(
          f"{_subject(where)}: in ratio mode candidate_choices are floats in (0, 1], got {choice!r} in "
          f"{list(candidate_choices)}; write 1.0 for the full width, or use choice_mode='number'."
        )
      if not 0 < choice <= 1:
        raise SearchSpaceError(
          f"{_subject(where)}: ratio {choice} is outside (0, 1] (candidate_choices {list(candidate_choices)})."
        )
      count = ratio_to_number(float(choice), n)
    counts.add(_kept_table(n, int(divisor), None if min_value is None else int(min_value), float(min_ratio))[count])
  return tuple(sorted(counts))


@dataclasses.dataclass(frozen=True)
class ChannelSpace(SearchSpace):
  """What a channel unit's choice means (see the module docs for the two kinds).

  Attributes:
    num_channels: the unit's full width.
    candidates: the sorted kept counts of an index space (one-shot,
      slimmable), each in ``[1, num_channels]``; ``None`` for a sequential
      space, whose choice is a number of kept channels.
    choice_mode: ``"number"`` or ``"ratio"``: how :meth:`export` writes a
      choice (kept channels, or kept / num_channels).
    divisor: sequential spaces round a count with
      :func:`~jaxmutate.channels.make_divisible` (capped at ``num_channels``);
      index spaces hold rounded candidates already and ignore it.
    min_value: as ``divisor``.
    min_ratio: as ``divisor``.

  Raises:
    SearchSpaceError: ``num_channels < 1``, or a candidate outside
      ``(0, num_channels]``.
    ConfigError: an unknown ``choice_mode`` or bad rounding arguments.

  Example:
    >>> import jax, jax.numpy as jnp
    >>> from jaxmutate.channels import ChannelSpace
    >>> space = ChannelSpace(48, (24, 32, 48), choice_mode="ratio")
    >>> space.names, int(space.max()), space.export(space.check(0, "u"))
    ((0.5, 0.6666666666666666, 1.0), 2, 0.5)
    >>> int(space.load(0.5, "u")), int(space.load(32, "u"))
    (0, 1)
    >>> seq = ChannelSpace(48, None, divisor=8)
    >>> int(seq.check(20, "u")), int(jax.jit(lambda v: seq.check(v, "u"))(jnp.int32(99)))  # traced: clipped
    (24, 48)
  """

  num_channels: int
  candidates: tuple[int, ...] | None = None
  choice_mode: str = "number"
  divisor: int = 1
  min_value: int | None = 1
  min_ratio: float = 0.9
  kind: ClassVar[str] = "channel"

  def __post_init__(self) -> None:
    n = _check_num_channels(self.num_channels, None)
    object.__setattr__(self, "num_channels", n)
    _check_rounding(self.choice_mode, self.divisor, self.min_value, self.min_ratio, None)
    object.__setattr__(self, "divisor", int(self.divisor))
    object.__setattr__(self, "min_value", None if self.min_value is None else int(self.min_value))
    object.__setattr__(self, "min_ratio", float(self.min_ratio))
    if self.candidates is not None:
      candidates = tuple(self.candidates)
      if not candidates:
        raise SearchSpaceError("ChannelSpace: candidates must not be empty (None makes a sequential space).")
      for c in candidates:
        if not _is_int(c):
          raise ConfigTypeError(f"ChannelSpace: candidates are numbers of kept channels (ints), got {c!r}.")
        if not 0 < c <= n:
          raise SearchSpaceError(f"ChannelSpace: candidate {c} is outside (0, num_channels={n}].")
      object.__setattr__(self, "candidates", tuple(sorted({int(c) for c in candidates})))

  # What the choices are --------------------------------------------------

  @property
  def is_sequential(self) -> bool:
    """Whether a choice is a number of kept channels (else an index into the candidates)."""
    return self.candidates is None

  @property
  def kept_counts(self) -> tuple[int, ...]:
    """Every number of kept channels a choice can give, sorted."""
    if self.candidates is not None:
      return self.candidates
    return tuple(sorted(set(self._table()[1:])))

  @property
  def width_candidates(self) -> tuple[int, ...] | None:
    """:attr:`kept_counts` for a :class:`~jaxmutate.dynamic.Width`; ``None`` when every width is reachable."""
    counts = self.kept_counts
    return None if counts == tuple(range(1, self.num_channels + 1)) else counts

  @property
  def names(self) -> tuple[int | float, ...]:
    return tuple(self._chosen(k) for k in self.kept_counts)

  @property
  def ordered(self) -> bool:
    return True

  def describe(self) -> str:
    if self.candidates is not None:
      return f"ChannelSpace(num_channels={self.num_channels}, candidates={list(self.candidates)}, {self.choice_mode})"
    return (
      f"ChannelSpace(num_channels={self.num_channels}, sequential, divisor={self.divisor}, "
      f"min_value={self.min_value}, min_ratio={self.min_ratio}, {self.choice_mode})"
    )

  def _table(self) -> tuple[int, ...]:
    return _kept_table(self.num_channels, self.divisor, self.min_value, self.min_ratio)

  def _chosen(self, kept: int) -> int | float:
    return int(kept) if self.choice_mode == "number" else kept / self.num_channels

  # Sampling --------------------------------------------------------------

  def sample(self, key: jax.Array) -> jax.Array:
    """Uniform among the candidates; sequential: uniform over ``1..num_channels``, then rounded (MMRazor)."""
    if self.candidates is not None:
      return jax.random.randint(key, (), 0, len(self.candidates), dtype=jnp.int32)
    requested = jax.random.randint(key, (), 1, self.num_channels + 1, dtype=jnp.int32)
    return jnp.asarray(self._table(), jnp.int32)[requested]

  def max(self) -> jax.Array:
    if self.candidates is not None:
      return jnp.int32(len(self.candidates) - 1)
    return jnp.int32(self.kept_counts[-1])

  def min(self) -> jax.Array:
    if self.candidates is not None:
      return jnp.int32(0)
    return jnp.int32(self.kept_counts[0])

  # Checking --------------------------------------------------------------

  def check(self, choice: Any, where: str) -> Any:
    """Validates a choice: an index (index spaces) or a number of kept channels (sequential).

    A concrete choice comes back as a NumPy int32 (so a supernet traces to
    the sliced layers); a sequential count is made divisible, as MMRazor's
    setter does. A traced index is clipped into range, a traced count into
    ``[1, num_channels]`` and then made divisible.

    Raises:
      ChoiceTypeError: not an integer.
      ChoiceError: not a scalar; a concrete index out of range, or a count
        outside ``[1, num_channels]``.
    """
    if self.candidates is not None:
      return check_index_choice(where, choice, len(self.candidates))
    if is_traced(choice):
      shape, dtype = choice.shape, choice.dtype
    else:
      if isinstance(choice, (bool, np.bool_)):
        raise ChoiceTypeError(f"{_subject(where)} expects an int number of kept channels, got {choice!r}.")
      choice = np.asarray(choice)
      shape, dtype = choice.shape, choice.dtype
    if shape != ():
      raise ChoiceError(f"{_subject(where)} expects a scalar number of kept channels, got shape {shape}.")
    if not jnp.issubdtype(dtype, jnp.integer):
      raise ChoiceTypeError(
        f"{_subject(where)} expects an int number of kept channels, got dtype {dtype}; a ratio r keeps "
        f"max(1, int({self.num_channels} * r)) channels."
      )
    table = self._table()
    if is_traced(choice):
      return jnp.asarray(table, jnp.int32)[jnp.clip(choice.astype(jnp.int32), 1, self.num_channels)]
    value = int(choice)
    if not 1 <= value <= self.num_channels:
      raise ChoiceError(f"{_subject(where)}: width {value} is outside [1, num_channels={self.num_channels}].")
    return np.int32(table[value])

  def kept(self, choice: Any) -> Any:
    """The number of kept channels of a checked choice: a Python int when concrete, else int32.

    Example:
      >>> from jaxmutate.channels import ChannelSpace
      >>> ChannelSpace(48, (24, 48)).kept(1), ChannelSpace(48).kept(20)
      (48, 20)
    """
    if not is_traced(choice) and np.ndim(choice) == 0:
      value = int(np.asarray(choice))
      return self.candidates[value] if self.candidates is not None else value
    if self.candidates is not None:
      return jnp.asarray(self.candidates, jnp.int32)[jnp.asarray(choice)]
    return jnp.asarray(choice, jnp.int32)

  # Subnet files ----------------------------------------------------------

  def export(self, choice: Any) -> Any:
    """Kept channels (number mode) or kept / num_channels (ratio mode), plain Python."""
    return self._chosen(self.kept(self.check(choice, "export")))

  def load(self, chosen: Any, where: str) -> jax.Array:
    """Reads a file's ``chosen`` back: an int is a number of channels, a float a ratio (either mode).

    Raises:
      SubnetFileError: not a number; a number outside ``[1, num_channels]`` or
        a ratio outside ``(0, 1]``; (index spaces) a width that is not a
        candidate.
    """
    n = self.num_channels
    if _is_int(chosen):
      if not 1 <= chosen <= n:
        raise SubnetFileError(
          f"Subnet entry {where!r}: chosen width {chosen} is outside [1, num_channels={n}] of this unit."
        )
      count = int(chosen)
      exact = True
    elif _is_float(chosen) and math.isfinite(chosen):
      if not 0 < chosen <= 1:
        raise SubnetFileError(f"Subnet entry {where!r}: chosen ratio {chosen} is outside (0, 1].")
      matches = [k for k in self.kept_counts if abs(k / n - chosen) <= _RATIO_TOLERANCE]
      count = matches[0] if matches else ratio_to_number(float(chosen), n)
      exact = bool(matches)
    else:
      raise SubnetFileError(
        f"Subnet entry {where!r}: chosen must be a number of channels (int) or a ratio (float), got {chosen!r}."
      )
    if self.candidates is None:
      return jnp.int32(self._table()[count])
    if count not in self.candidates or not exact:
      raise SubnetFileError(
        f"Subnet entry {where!r}: chosen {chosen!r} is not among the unit's candidates {list(self.names)} "
        f"(kept channels {list(self.candidates)} of {n})."
      )
    return jnp.int32(self.candidates.index(count))
