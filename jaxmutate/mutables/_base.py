"""What every mutable shares: its spec, its name and how it reads its choice."""

from __future__ import annotations

import weakref
from collections.abc import Mapping, Sequence
from typing import Any, ClassVar

import flax.linen as nn
import flax.struct
import jax
import jax.numpy as jnp
import numpy as np

MUTABLES_COLLECTION = "mutables"
"""The variable collection where each mutable records its :class:`MutableSpec` at
``init``. It holds no arrays (a spec is a pytree without leaves), so it passes
through ``jit`` and costs nothing; mutators read it to find the search space."""


@flax.struct.dataclass
class MutableSpec:
  """Static description of one mutable, recorded in the ``mutables`` collection.

  A spec has no array leaves: every field is static metadata, so a variable
  tree that holds specs can be passed to jitted functions unchanged.

  Attributes:
    mutable_type: the mutable's class (mutators filter on it).
    alias: the mutable's alias, or ``None``.
    choice_names: the search space: candidate names for ops, edge names for
      routes, the (sorted, for one-shot values) values for value mutables.
    choice_probs: sampling probabilities (``OneShotProbMutableOP``), else ``None``.
    num_chosen: how many edges a route keeps at export, else ``None``.
    order: the position of the mutable in definition order within its supernet.

  Example:
    >>> import jax, jax.numpy as jnp, flax.linen as nn
    >>> import jaxmutate as jm
    >>> op = jm.OneShotMutableOP({"k3": nn.Dense(2), "k5": nn.Dense(2)}, alias="stage1")
    >>> spec = op.init(jax.random.key(0), jnp.ones((1, 2)), None)["mutables"]["spec"]
    >>> spec.alias, spec.choice_names, spec.num_choices
    ('stage1', ('k3', 'k5'), 2)
    >>> jax.tree.leaves(spec)
    []
  """

  mutable_type: type = flax.struct.field(pytree_node=False)
  alias: str | None = flax.struct.field(pytree_node=False)
  choice_names: tuple[Any, ...] = flax.struct.field(pytree_node=False)
  choice_probs: tuple[float, ...] | None = flax.struct.field(pytree_node=False, default=None)
  num_chosen: int | None = flax.struct.field(pytree_node=False, default=None)
  order: int = flax.struct.field(pytree_node=False, default=0)

  @property
  def num_choices(self) -> int:
    return len(self.choice_names)

  @property
  def search_space(self) -> tuple[Any, ...]:
    """What must agree between mutables that share a search group."""
    return (self.mutable_type.search_space_kind, self.choice_names, self.choice_probs, self.num_chosen)


# Definition order, counted per init (keyed by the root scope of that init) so
# that specs are identical across inits of the same supernet.
_DEFINITION_COUNTERS: "weakref.WeakKeyDictionary[Any, int]" = weakref.WeakKeyDictionary()


def _next_order(scope: Any) -> int:
  root = scope.root
  order = _DEFINITION_COUNTERS.get(root, 0)
  _DEFINITION_COUNTERS[root] = order + 1
  return order


def is_traced(value: Any) -> bool:
  """Whether ``value`` is a tracer (its content unknown until run time)."""
  return isinstance(value, jax.core.Tracer)


class ChoiceSemantics:
  """How a kind of mutable samples, expands, exports and imports group choices.

  Mutators stay generic by asking the mutable class (``spec.mutable_type``)
  these questions; each method takes the group's :class:`MutableSpec`.
  """

  @classmethod
  def sample_choice(cls, spec: MutableSpec, key: jax.Array) -> jax.Array:
    """A uniformly random choice (or one following ``spec.choice_probs``)."""
    if spec.choice_probs is not None:
      return jax.random.choice(key, spec.num_choices, p=jnp.asarray(spec.choice_probs)).astype(jnp.int32)
    return jax.random.randint(key, (), 0, spec.num_choices, dtype=jnp.int32)

  @classmethod
  def max_choice(cls, spec: MutableSpec) -> jax.Array:
    raise ValueError(f"{spec.mutable_type.__name__} has no max choice (only sorted values do).")

  @classmethod
  def min_choice(cls, spec: MutableSpec) -> jax.Array:
    raise ValueError(f"{spec.mutable_type.__name__} has no min choice (only sorted values do).")

  @classmethod
  def check_group_choice(cls, spec: MutableSpec, group: int, choice: Any) -> jax.Array:
    """Validates a group choice; shape/dtype always, range when concrete."""
    try:
      return check_index_choice(f"group {group}", choice, spec.num_choices)
    except (TypeError, ValueError) as error:
      raise type(error)(f"{error} (search space {spec.choice_names})") from None

  @classmethod
  def mutable_choice(cls, spec: MutableSpec, group_choice: jax.Array) -> jax.Array:
    """What ``set_choices`` passes to each mutable of the group."""
    return group_choice

  @classmethod
  def export_choice(cls, spec: MutableSpec, group_choice: Any) -> Any:
    """The plain-Python ``chosen`` value written to a subnet file."""
    return spec.choice_names[int(np.asarray(group_choice))]

  @classmethod
  def import_choice(cls, spec: MutableSpec, key: str, chosen: Any) -> jax.Array:
    """Inverse of :meth:`export_choice`; ``ValueError`` for unknown values."""
    if isinstance(chosen, list) and len(chosen) == 1:
      # MMRazor's DARTS subnet files write an op choice as a one-element list.
      chosen = chosen[0]
    if chosen not in spec.choice_names or isinstance(chosen, bool):
      raise ValueError(f"Subnet entry {key!r}: chosen {chosen!r} is not one of {list(spec.choice_names)}.")
    return jnp.int32(spec.choice_names.index(chosen))


class BaseMutable(ChoiceSemantics, nn.Module):
  """Base class of every mutable: a Flax module whose behaviour is chosen by input.

  Subclasses read their choice from the ``choices`` dict passed at call time,
  keyed by :attr:`mutable_name`. At ``init`` they record a :class:`MutableSpec`
  in the ``mutables`` collection, which mutators read.

  Every concrete mutable has an ``alias: str | None`` field (declared last so
  that the main arguments come first): mutables that share an alias share a
  search group and are exported under the alias.

  Example:
    >>> import jax, jax.numpy as jnp, flax.linen as nn
    >>> import jaxmutate as jm
    >>> class Net(nn.Module):
    ...   @nn.compact
    ...   def __call__(self, choices):
    ...     return jm.OneShotMutableValue([1, 2], name="width")(choices)
    >>> variables = Net().init(jax.random.key(0), None)
    >>> isinstance(jm.OneShotMutableValue([1]), jm.BaseMutable)
    True
    >>> int(Net().apply(variables, {"width": jnp.int32(1)}))
    2
    >>> try:
    ...   Net().apply(variables, {})
    ... except KeyError as error:
    ...   print(error.args[0])
    No choice for mutable 'width'; choices has keys [].
  """

  # Groups may only mix mutables whose search-space kind agrees.
  search_space_kind: ClassVar[str] = "module"

  @property
  def mutable_name(self) -> str:
    """The module path from the root joined with ``.``; the key in ``choices``."""
    return ".".join(str(p) for p in self.scope.path) if self.scope is not None else ""

  def _choice_names(self) -> tuple[Any, ...]:
    raise NotImplementedError

  def _spec_fields(self) -> dict[str, Any]:
    return {}

  def _record_spec(self) -> None:
    alias = getattr(self, "alias", None)
    if alias is not None and not isinstance(alias, str):
      raise TypeError(f"Mutable {self.mutable_name!r}: alias must be a str or None, got {alias!r}.")
    if self.is_initializing() and not self.has_variable(MUTABLES_COLLECTION, "spec"):
      spec = MutableSpec(
          mutable_type=type(self),
          alias=alias,
          choice_names=self._choice_names(),
          order=_next_order(self.scope),
          **self._spec_fields(),
      )
      self.put_variable(MUTABLES_COLLECTION, "spec", spec)

  def _read_choice(self, choices: Mapping[str, Any] | None) -> Any:
    name = self.mutable_name
    if choices is None:
      raise KeyError(
          f"Mutable {name!r} needs a choice but choices is None; only init accepts None. "
          "Build choices with a mutator's set_choices."
      )
    if not isinstance(choices, Mapping):
      raise TypeError(f"choices must be a dict of mutable name -> choice, got {type(choices).__name__}.")
    if name not in choices:
      known = sorted(choices)
      raise KeyError(f"No choice for mutable {name!r}; choices has keys {known[:20]}{'...' if len(known) > 20 else ''}.")
    return choices[name]


def check_index_choice(name: str, choice: Any, num_choices: int) -> jax.Array | np.ndarray:
  """Validates an int index choice: shape and dtype always, range when concrete.

  A concrete choice (a Python/NumPy int, or a JAX array outside a trace) comes
  back as a NumPy int32 scalar, so it stays concrete inside ``jit`` too (a
  ``jnp`` value would be staged) and the supernet traces to exactly the chosen
  candidate. Traced indices cannot be range-checked; ``switch`` clamps them.
  """
  if is_traced(choice):
    shape, dtype = choice.shape, choice.dtype
  else:
    if isinstance(choice, bool):
      raise TypeError(f"Mutable {name!r} expects an integer choice index, got {choice!r}.")
    choice = np.asarray(choice)
    shape, dtype = choice.shape, choice.dtype
  if shape != ():
    raise ValueError(f"Mutable {name!r} expects a scalar int choice, got shape {shape}.")
  if not jnp.issubdtype(dtype, jnp.integer):
    raise TypeError(f"Mutable {name!r} expects an integer choice index, got dtype {dtype}.")
  if is_traced(choice):
    return choice.astype(jnp.int32)
  value = int(choice)
  if not 0 <= value < num_choices:
    raise ValueError(f"Mutable {name!r}: choice {value} is out of range [0, {num_choices}).")
  return np.int32(value)


def check_logits_choice(name: str, choice: Any, num_choices: int) -> jax.Array:
  """Validates a vector of architecture logits (one per candidate)."""
  choice = jnp.asarray(choice)
  if choice.shape != (num_choices,):
    raise ValueError(
        f"Mutable {name!r} expects architecture logits of shape ({num_choices},), got shape {choice.shape}."
    )
  if not jnp.issubdtype(choice.dtype, jnp.floating):
    raise TypeError(f"Mutable {name!r} expects floating-point logits, got dtype {choice.dtype}.")
  return choice


def check_candidates(owner: str, candidates: Any, what: str = "candidates") -> dict[str, Any]:
  """Returns candidates as an ordered dict, rejecting empty or badly keyed ones."""
  if not isinstance(candidates, Mapping):
    raise TypeError(f"{owner}: {what} must be a mapping of name -> module, got {type(candidates).__name__}.")
  if len(candidates) == 0:
    raise ValueError(f"{owner}: {what} is empty; give at least one.")
  for key, value in candidates.items():
    if not isinstance(key, str) or not key:
      raise TypeError(f"{owner}: {what} names must be non-empty strings, got {key!r}.")
    if not callable(value) and not isinstance(value, Mapping):
      raise TypeError(f"{owner}: {what}[{key!r}] must be a Flax module, a callable or a config dict, got {value!r}.")
  return dict(candidates)


def build_candidate(owner: str, name: str, candidate: Any) -> Any:
  """Turns a config dict (``type=...``) into a module; passes modules through."""
  if isinstance(candidate, Mapping):
    from jaxmutate.registry import build

    try:
      return build(candidate)
    except (KeyError, TypeError) as error:
      raise type(error)(f"{owner}: building candidate {name!r} failed: {error}") from error
  return candidate


def call_candidate(candidate: Any, x: Any, choices: Any, kwargs: Mapping[str, Any]) -> Any:
  """Calls a candidate; nested mutables also get the ``choices``."""
  if isinstance(candidate, BaseMutable):
    return candidate(x, choices, **kwargs)
  return candidate(x, **kwargs)


def bind_candidates(parent: nn.Module, candidates: Mapping[str, Any]) -> dict[str, Any]:
  """Clones each module candidate into ``parent``'s scope under its own name.

  Cloning makes the candidate's variables live at ``parent/<name>`` whether the
  module was constructed in an enclosing compact method (which would otherwise
  own it) or outside any module.
  """
  bound = {}
  for name, candidate in candidates.items():
    candidate = build_candidate(type(parent).__name__, name, candidate)
    if isinstance(candidate, nn.Module):
      candidate = candidate.clone(parent=parent, name=name)
    bound[name] = candidate
  return bound


def unbound_candidates(owner: str, candidates: Mapping[str, Any]) -> dict[str, Any]:
  """Candidates as stand-alone modules (for functional ``apply``)."""
  out = {}
  for name, candidate in candidates.items():
    candidate = build_candidate(owner, name, candidate)
    if isinstance(candidate, nn.Module):
      candidate = candidate.clone(parent=None)
    out[name] = candidate
  return out


def tree_sum(trees: list[Any]) -> Any:
  return jax.tree.map(lambda *xs: sum(xs[1:], xs[0]), *trees)


def same_structure(owner: str, outputs: Mapping[str, Any]) -> None:
  """Raises if candidates' outputs differ in structure, shape or dtype."""
  shapes = {name: jax.tree.map(lambda a: (tuple(np.shape(a)), jnp.result_type(a)), out) for name, out in outputs.items()}
  first_name, first = next(iter(shapes.items()))
  for name, shape in shapes.items():
    if jax.tree.structure(shape) != jax.tree.structure(first) or jax.tree.leaves(shape) != jax.tree.leaves(first):
      raise ValueError(
          f"{owner}: every candidate must return the same shapes and dtypes; "
          f"{first_name!r} gives {first} but {name!r} gives {shape}."
      )


def run_candidate_functionally(
    candidate: Any,
    name: str,
    variables: Mapping[str, Any],
    mutable_collections: Sequence[str],
    rngs: Mapping[str, jax.Array],
    x: Any,
    nested_choices: Any,
    kwargs: Mapping[str, Any],
) -> tuple[Any, dict[str, Any]]:
  """Runs one candidate as a pure function of the mutable's variables.

  Returns the output and every mutable collection of the mutable's scope, with
  this candidate's part updated: all branches of a switch must return the same
  structure.
  """
  updated = {col: dict(variables[col]) for col in mutable_collections}
  if not isinstance(candidate, nn.Module):
    return candidate(x, **kwargs), updated
  own = {col: tree[name] for col, tree in variables.items() if name in tree}
  args = (x, nested_choices) if isinstance(candidate, BaseMutable) else (x,)
  own_mutable = [col for col in mutable_collections if col in own]
  if own_mutable:
    out, new_state = candidate.apply(own, *args, rngs=rngs, mutable=own_mutable, **kwargs)
    for col in own_mutable:
      updated[col][name] = new_state[col]
  else:
    out = candidate.apply(own, *args, rngs=rngs, **kwargs)
  return out, updated


class CandidateMutable(BaseMutable):
  """Base of mutables that choose among named candidate modules (ops, routes).

  Subclasses declare the mapping (``candidates``, or ``edges`` for routes,
  returned by :meth:`_candidate_field`); the search space is its names.
  """

  def _candidate_field(self) -> Mapping[str, Any]:
    return self.candidates

  @property
  def choice_names(self) -> tuple[str, ...]:
    """Candidate (or edge) names in order: choice ``i`` is ``choice_names[i]``."""
    return tuple(check_candidates(type(self).__name__, self._candidate_field()))

  def _choice_names(self) -> tuple[str, ...]:
    return self.choice_names
