"""Search spaces: what a choice means, apart from the modules that take it.

A search space is a small frozen dataclass that answers every question a
mutator asks about one search group: how to draw a random choice, which choice
is the largest or smallest, whether a choice is valid, what each member
mutable receives, how a choice is written to a subnet file and read back, and
(for spaces of architecture logits) which discrete choice the logits select.
Mutables state their space (it is stored in their :class:`~jaxmutate.MutableSpec`);
mutators are generic over it. Two mutables may share a search group only if
their spaces are equal.

======================  ==========================================  ==========================
space                   a choice is                                 held by
======================  ==========================================  ==========================
:class:`IndexSpace`     an int32 index into named candidates        one-shot ops
:class:`ValueSpace`     an int32 index into values (sorted: max/min) value mutables
:class:`LogitSpace`     float logits, one per candidate, or an       differentiable ops
                        int32 index (a discrete subnet)
:class:`EdgeSubsetSpace` float logits, one per edge, or ``num_chosen`` routes
                        distinct int32 edge indices
======================  ==========================================  ==========================

**Traced choices** (inside ``jit``/``vmap``) cannot be checked by value. The one
policy, for every space: an index out of range is clipped into ``[0, n)``
(:meth:`SearchSpace.check` does it, so a mutable never sees an out-of-range
index and never produces NaN). Concrete choices are checked eagerly and stay
NumPy values, so that a supernet traces to exactly the chosen candidates.

Example:
  >>> import jax, jax.numpy as jnp
  >>> from jaxmutate.spaces import IndexSpace, ValueSpace
  >>> space = IndexSpace(("conv3", "conv5", "skip"))
  >>> space.export(space.check(1, "op"))
  'conv5'
  >>> int(space.load("skip", "op"))
  2
  >>> int(jax.jit(lambda i: space.check(i, "op"))(jnp.int32(7)))  # traced: clipped
  2
  >>> widths = ValueSpace((16, 32, 64), ordered=True)
  >>> widths.export(widths.max())
  64
"""

from __future__ import annotations

import abc
import dataclasses
from typing import Any, ClassVar

import jax
import jax.numpy as jnp
import numpy as np

from jaxmutate.errors import ChoiceError, ChoiceTypeError, SearchSpaceError, SubnetFileError


def is_traced(value: Any) -> bool:
  """Whether ``value`` is a tracer (its content unknown until run time).

  Example:
    >>> import jax, jax.numpy as jnp
    >>> from jaxmutate.spaces import is_traced
    >>> is_traced(jnp.int32(1)), jax.jit(lambda x: is_traced(x) * x)(1)
    (False, Array(1, dtype=int32, weak_type=True))
  """
  return isinstance(value, jax.core.Tracer)


def _subject(where: str) -> str:
  return f"Mutable {where!r}"


def check_index_choice(where: str, choice: Any, num_choices: int) -> jax.Array | np.ndarray:
  """Validates an int index choice: shape and dtype always, range when concrete.

  A concrete choice (a Python/NumPy int, or a JAX array outside a trace) comes
  back as a NumPy int32 scalar, so it stays concrete inside ``jit`` too (a
  ``jnp`` value would be staged) and the supernet traces to exactly the chosen
  candidate. A traced index is clipped into ``[0, num_choices)``.

  Args:
    where: the mutable name or group label used in error messages.
    choice: the choice to check.
    num_choices: the number of candidates.

  Returns:
    The index: a NumPy int32 when concrete, a clipped int32 array when traced.

  Raises:
    ChoiceTypeError: not an integer (bools included).
    ChoiceError: not a scalar, or (when concrete) out of range.

  Example:
    >>> from jaxmutate.spaces import check_index_choice
    >>> check_index_choice("op", 1, 3)
    np.int32(1)
  """
  if is_traced(choice):
    shape, dtype = choice.shape, choice.dtype
  else:
    if isinstance(choice, bool):
      raise ChoiceTypeError(f"{_subject(where)} expects an integer choice index, got {choice!r}.")
    choice = np.asarray(choice)
    shape, dtype = choice.shape, choice.dtype
  if shape != ():
    raise ChoiceError(f"{_subject(where)} expects a scalar int choice, got shape {shape}.")
  if not jnp.issubdtype(dtype, jnp.integer):
    raise ChoiceTypeError(f"{_subject(where)} expects an integer choice index, got dtype {dtype}.")
  if is_traced(choice):
    return jnp.clip(choice.astype(jnp.int32), 0, num_choices - 1)
  value = int(choice)
  if not 0 <= value < num_choices:
    raise ChoiceError(f"{_subject(where)}: choice {value} is out of range [0, {num_choices}).")
  return np.int32(value)


def check_logits_choice(where: str, choice: Any, num_choices: int) -> jax.Array:
  """Validates a vector of architecture logits (one per candidate).

  Raises:
    ChoiceError: the shape is not ``(num_choices,)``.
    ChoiceTypeError: the dtype is not floating point.

  Example:
    >>> import jax.numpy as jnp
    >>> from jaxmutate.spaces import check_logits_choice
    >>> check_logits_choice("op", jnp.zeros(2), 2).shape
    (2,)
  """
  choice = jnp.asarray(choice)
  if choice.shape != (num_choices,):
    raise ChoiceError(
      f"{_subject(where)} expects architecture logits of shape ({num_choices},), got shape {choice.shape}."
    )
  if not jnp.issubdtype(choice.dtype, jnp.floating):
    raise ChoiceTypeError(f"{_subject(where)} expects floating-point logits, got dtype {choice.dtype}.")
  return choice


def _is_float(choice: Any) -> bool:
  return jnp.issubdtype(jnp.result_type(choice), jnp.floating) and not isinstance(choice, bool)


@dataclasses.dataclass(frozen=True)
class SearchSpace(abc.ABC):
  """The meaning of one search group's choice.

  Subclasses are frozen dataclasses of static metadata (hashable, comparable):
  equal spaces may share a group. ``where`` arguments name the mutable or
  group in error messages.

  Example:
    >>> from jaxmutate.spaces import IndexSpace, SearchSpace
    >>> isinstance(IndexSpace(("a", "b")), SearchSpace), IndexSpace(("a",)) == IndexSpace(("a",))
    (True, True)
  """

  kind: ClassVar[str] = "space"

  @property
  @abc.abstractmethod
  def names(self) -> tuple[Any, ...]:
    """What each discrete choice is called: candidate names, edge names or values."""

  @property
  def num_choices(self) -> int:
    """The number of candidates (edges, values)."""
    return len(self.names)

  @property
  def ordered(self) -> bool:
    """Whether the choices have a largest and a smallest element."""
    return False

  def describe(self) -> str:
    """A short description for error messages."""
    return f"{type(self).__name__}({list(self.names)})"

  @abc.abstractmethod
  def sample(self, key: jax.Array) -> jax.Array:
    """A random discrete choice (uniform unless the space says otherwise)."""

  def max(self) -> jax.Array:
    """The largest choice; :class:`~jaxmutate.errors.SearchSpaceError` if unordered."""
    raise SearchSpaceError(f"{self.describe()} has no max choice (only sorted values do).")

  def min(self) -> jax.Array:
    """The smallest choice; :class:`~jaxmutate.errors.SearchSpaceError` if unordered."""
    raise SearchSpaceError(f"{self.describe()} has no min choice (only sorted values do).")

  @abc.abstractmethod
  def check(self, choice: Any, where: str) -> Any:
    """Validates a choice (see the module docs for the traced-value policy)."""

  def member_choice(self, choice: Any) -> Any:
    """What ``set_choices`` gives each mutable of the group (the choice itself)."""
    return choice

  def derive(self, choice: Any) -> Any:
    """The discrete choice that ``choice`` selects (itself for discrete spaces)."""
    return choice

  @abc.abstractmethod
  def export(self, choice: Any) -> Any:
    """The plain-Python ``chosen`` value of a subnet file (``choice`` concrete)."""

  @abc.abstractmethod
  def load(self, chosen: Any, where: str) -> jax.Array:
    """Inverse of :meth:`export`; :class:`~jaxmutate.errors.SubnetFileError` for unknown values."""


@dataclasses.dataclass(frozen=True)
class IndexSpace(SearchSpace):
  """Named candidates; a choice is an int32 index (one-shot ops).

  Attributes:
    candidates: the candidate names, in index order.
    probs: sampling probabilities, or ``None`` for uniform sampling.

  Example:
    >>> import jax
    >>> from jaxmutate.spaces import IndexSpace
    >>> space = IndexSpace(("a", "b"), probs=(1.0, 0.0))
    >>> int(space.sample(jax.random.key(0))), space.export(1)
    (0, 'b')
  """

  candidates: tuple[str, ...]
  probs: tuple[float, ...] | None = None
  kind: ClassVar[str] = "op"

  @property
  def names(self) -> tuple[str, ...]:
    return self.candidates

  def sample(self, key: jax.Array) -> jax.Array:
    if self.probs is not None:
      return jax.random.choice(key, self.num_choices, p=jnp.asarray(self.probs)).astype(jnp.int32)
    return jax.random.randint(key, (), 0, self.num_choices, dtype=jnp.int32)

  def check(self, choice: Any, where: str) -> Any:
    return check_index_choice(where, choice, self.num_choices)

  def export(self, choice: Any) -> Any:
    return self.names[int(np.asarray(choice))]

  def load(self, chosen: Any, where: str) -> jax.Array:
    if isinstance(chosen, list) and len(chosen) == 1:
      # MMRazor's DARTS subnet files write an op choice as a one-element list.
      chosen = chosen[0]
    if isinstance(chosen, bool) or chosen not in self.names:
      raise SubnetFileError(f"Subnet entry {where!r}: chosen {chosen!r} is not one of {list(self.names)}.")
    return jnp.int32(self.names.index(chosen))


@dataclasses.dataclass(frozen=True)
class ValueSpace(SearchSpace):
  """Numbers; a choice is an int32 index into ``values`` (value mutables).

  Attributes:
    values: the candidate values in index order (sorted when ``ordered``).
    ordered: whether index 0 is the smallest and the last the largest value,
      so that max/min are defined.

  Example:
    >>> from jaxmutate.spaces import ValueSpace
    >>> space = ValueSpace((2, 4, 8), ordered=True)
    >>> int(space.min()), int(space.load(4.0, "expand")), space.export(2)
    (0, 1, 8)
  """

  values: tuple[int | float, ...]
  ordered: bool = False  # type: ignore[assignment]
  kind: ClassVar[str] = "value"

  @property
  def names(self) -> tuple[int | float, ...]:
    return self.values

  def sample(self, key: jax.Array) -> jax.Array:
    return jax.random.randint(key, (), 0, self.num_choices, dtype=jnp.int32)

  def max(self) -> jax.Array:
    if not self.ordered:
      return super().max()
    return jnp.int32(self.num_choices - 1)

  def min(self) -> jax.Array:
    if not self.ordered:
      return super().min()
    return jnp.int32(0)

  def check(self, choice: Any, where: str) -> Any:
    return check_index_choice(where, choice, self.num_choices)

  def export(self, choice: Any) -> Any:
    return self.values[int(np.asarray(choice))]

  def load(self, chosen: Any, where: str) -> jax.Array:
    # 4 and 4.0 are the same value; a YAML file may write either.
    valid = isinstance(chosen, (int, float)) and not isinstance(chosen, bool)
    matches = [i for i, v in enumerate(self.values) if valid and chosen == v]
    if not matches:
      raise SubnetFileError(f"Subnet entry {where!r}: chosen {chosen!r} is not one of {list(self.values)}.")
    return jnp.int32(matches[0])


@dataclasses.dataclass(frozen=True)
class LogitSpace(SearchSpace):
  """Architecture logits over named candidates (differentiable ops).

  A choice is either a float vector of logits, one per candidate (what
  differentiable search optimises), or a discrete int32 index (what sampling
  and subnet files give): a differentiable mutable given a discrete choice runs
  only that candidate, like a one-shot op.

  Attributes:
    candidates: the candidate names, in index order.

  Example:
    >>> import jax.numpy as jnp
    >>> from jaxmutate.spaces import LogitSpace
    >>> space = LogitSpace(("a", "b", "c"))
    >>> int(space.derive(jnp.array([0.1, 0.7, 0.2]))), space.export(jnp.array([0.1, 0.7, 0.2]))
    (1, 'b')
    >>> space.discrete_weights(jnp.int32(2))
    Array([0., 0., 1.], dtype=float32)
  """

  candidates: tuple[str, ...]
  kind: ClassVar[str] = "diff_op"

  @property
  def names(self) -> tuple[str, ...]:
    return self.candidates

  def init_logits(self, key: jax.Array, stddev: float = 1e-3) -> jax.Array:
    """Initial architecture logits: normal with standard deviation ``stddev``."""
    return stddev * jax.random.normal(key, (self.num_choices,), jnp.float32)

  def sample(self, key: jax.Array) -> jax.Array:
    return jax.random.randint(key, (), 0, self.num_choices, dtype=jnp.int32)

  def check(self, choice: Any, where: str) -> Any:
    if _is_float(choice):
      return check_logits_choice(where, choice, self.num_choices)
    return self._check_discrete(choice, where)

  def _check_discrete(self, choice: Any, where: str) -> Any:
    return check_index_choice(where, choice, self.num_choices)

  def is_discrete(self, choice: Any) -> bool:
    """Whether ``choice`` is a discrete choice (integers) rather than logits."""
    return not _is_float(choice)

  def derive(self, choice: Any) -> Any:
    """The argmax of logits; a discrete choice passes through."""
    if self.is_discrete(choice):
      return choice
    return jnp.argmax(jnp.asarray(choice)).astype(jnp.int32)

  def discrete_weights(self, choice: Any) -> jax.Array:
    """Mixture weights of the derived choice: 1 on the chosen candidate(s), 0 elsewhere.

    Feed them to a supernet whose mutables have ``direct_weights=True`` to run
    exactly the derived discrete network.
    """
    return jnp.zeros(self.num_choices, jnp.float32).at[self.derive(choice)].set(1.0)

  def export(self, choice: Any) -> Any:
    return self.names[int(np.asarray(self.derive(choice)))]

  def load(self, chosen: Any, where: str) -> jax.Array:
    return IndexSpace(self.candidates).load(chosen, where)


@dataclasses.dataclass(frozen=True)
class EdgeSubsetSpace(LogitSpace):
  """Logits over a route's edges; a discrete choice keeps ``num_chosen`` of them.

  A discrete choice is an int32 vector of ``num_chosen`` distinct edge indices
  (strongest first when derived from logits); a route given one sums those
  edges, as MMRazor's fixed route and the derived network do.

  Attributes:
    candidates: the edge names, in input order.
    num_chosen: how many edges a discrete choice keeps.

  Example:
    >>> import jax.numpy as jnp
    >>> from jaxmutate.spaces import EdgeSubsetSpace
    >>> space = EdgeSubsetSpace(("p0", "p1", "p2"), num_chosen=2)
    >>> space.export(jnp.array([0.5, -1.0, 2.0]))
    ['p2', 'p0']
    >>> space.load(["p1", "p0"], "node").tolist()
    [1, 0]
  """

  num_chosen: int = 2
  kind: ClassVar[str] = "diff_route"

  def describe(self) -> str:
    return f"{type(self).__name__}({list(self.names)}, num_chosen={self.num_chosen})"

  def sample(self, key: jax.Array) -> jax.Array:
    return jax.random.choice(key, self.num_choices, (self.num_chosen,), replace=False).astype(jnp.int32)

  def _check_discrete(self, choice: Any, where: str) -> Any:
    if not is_traced(choice):
      choice = np.asarray(choice)
    if choice.shape != (self.num_chosen,) or not jnp.issubdtype(choice.dtype, jnp.integer):
      raise ChoiceError(
        f"Route {where!r} expects logits of shape ({self.num_choices},) or {self.num_chosen} int edge "
        f"indices, got shape {choice.shape} and dtype {choice.dtype}."
      )
    if is_traced(choice):
      return jnp.clip(choice.astype(jnp.int32), 0, self.num_choices - 1)
    values = choice.tolist()
    if len(set(values)) != len(values) or not all(0 <= v < self.num_choices for v in values):
      raise ChoiceError(f"Route {where!r}: edge indices {values} must be distinct and in [0, {self.num_choices}).")
    return choice.astype(np.int32)

  def derive(self, choice: Any) -> Any:
    """The top ``num_chosen`` edges by logit; a discrete choice passes through."""
    if self.is_discrete(choice):
      return choice
    return jax.lax.top_k(jnp.asarray(choice), self.num_chosen)[1].astype(jnp.int32)

  def export(self, choice: Any) -> Any:
    return [self.names[i] for i in np.asarray(self.derive(choice)).tolist()]

  def load(self, chosen: Any, where: str) -> jax.Array:
    if not isinstance(chosen, (list, tuple)) or not all(isinstance(c, str) for c in chosen):
      raise SubnetFileError(f"Subnet entry {where!r}: a route's chosen must be a list of edge names, got {chosen!r}.")
    unknown = [c for c in chosen if c not in self.names]
    if unknown or len(chosen) != self.num_chosen or len(set(chosen)) != len(chosen):
      raise SubnetFileError(
        f"Subnet entry {where!r}: chosen {list(chosen)} must be {self.num_chosen} distinct edges of "
        f"{list(self.names)}" + (f"; unknown {unknown}." if unknown else ".")
      )
    return jnp.asarray([self.names.index(c) for c in chosen], jnp.int32)


__all__ = [
  "EdgeSubsetSpace",
  "IndexSpace",
  "LogitSpace",
  "SearchSpace",
  "ValueSpace",
  "check_index_choice",
  "check_logits_choice",
  "is_traced",
]
