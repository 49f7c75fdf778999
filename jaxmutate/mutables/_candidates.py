"""Mutables over named candidate modules (ops, routes): building, binding and running them.

Candidate configs (``dict(type=...)``) are built once, when the mutable is
constructed (the registry is consulted there, never inside ``apply``). At run
time a candidate is either called directly (a concrete choice: the network is
exactly the chosen candidates) or applied functionally inside a
:func:`~jaxmutate.mutables.switch` (a traced choice: the compiled program pays
for one candidate).

Two conventions reach every mutable through its ``choices``:

- **Fixed subnets.** Choices that carry the attribute ``fixed_subnet = True``
  (:class:`jaxmutate.export.FixedChoices`, what an exported static network
  passes) make each mutable its chosen candidate(s) only, at ``init`` too:
  only their variables are created and no spec is recorded.
- **Costs.** With a traced choice the candidates run functionally; when the
  ``costs`` collection (:data:`jaxmutate.dynamic.COSTS_COLLECTION`) is
  mutable, the chosen candidate's summed ``macs``/``params`` are sown under
  the mutable's own path, so costs stay jittable through op choices.
"""

from __future__ import annotations

from collections.abc import Callable, Hashable, Mapping, Sequence
from typing import Any, ClassVar

import flax.linen as nn
import jax
import jax.numpy as jnp
import numpy as np

from jaxmutate.errors import ConfigTypeError, SearchSpaceError
from jaxmutate.mutables._base import MUTABLES_COLLECTION, BaseMutable
from jaxmutate.mutables._dispatch import switch
from jaxmutate.spaces import is_traced

# The name of jaxmutate.dynamic.COSTS_COLLECTION (a higher layer) and of the
# costs dynamic layers sow into it.
COSTS_COLLECTION = "costs"
_COST_NAMES = ("macs", "params")


def is_fixed_subnet(choices: Any) -> bool:
  """Whether ``choices`` belong to a fixed (exported) subnet: they carry ``fixed_subnet = True``."""
  return getattr(choices, "fixed_subnet", False) is True


def record_spec(mutable: BaseMutable, choices: Any) -> None:
  """Records the mutable's spec at ``init``, except in a fixed subnet (which has no search space left)."""
  if not is_fixed_subnet(choices):
    mutable._record_spec()


def summed_costs(costs: Any) -> dict[str, jax.Array]:
  """``{"macs": ..., "params": ...}``: a ``costs`` collection summed by name (float32 scalars).

  The same sum as :func:`jaxmutate.dynamic.sum_costs`, which this lower layer cannot import.
  """
  totals = {name: jnp.zeros((), jnp.float32) for name in _COST_NAMES}
  for path, leaf in jax.tree_util.tree_leaves_with_path(costs):
    names = [p.key for p in path if isinstance(p, jax.tree_util.DictKey)]
    if names and names[-1] in totals:
      totals[names[-1]] = totals[names[-1]] + jnp.asarray(leaf, jnp.float32)
  return totals


def check_candidates(owner: str, candidates: Any, what: str = "candidates") -> dict[str, Any]:
  """Returns candidates as an ordered dict, rejecting empty or badly keyed ones.

  Raises:
    ConfigTypeError: not a mapping, names that are not non-empty strings, or
      values that are neither modules, callables nor config dicts.
    SearchSpaceError: no candidates.
  """
  if not isinstance(candidates, Mapping):
    raise ConfigTypeError(f"{owner}: {what} must be a mapping of name -> module, got {type(candidates).__name__}.")
  if len(candidates) == 0:
    raise SearchSpaceError(f"{owner}: {what} is empty; give at least one.")
  for key, value in candidates.items():
    if not isinstance(key, str) or not key:
      raise ConfigTypeError(f"{owner}: {what} names must be non-empty strings, got {key!r}.")
    if not callable(value) and not isinstance(value, Mapping):
      raise ConfigTypeError(
        f"{owner}: {what}[{key!r}] must be a Flax module, a callable or a config dict, got {value!r}."
      )
  return dict(candidates)


def build_candidates(owner: str, candidates: Any) -> Any:
  """Builds the config-dict (``type=...``) entries of ``candidates`` into modules.

  Anything that is not a mapping of candidates is returned unchanged, so that
  :func:`check_candidates` reports it (at ``init``) with the mutable's name.
  """
  if not isinstance(candidates, Mapping) or not any(isinstance(c, Mapping) for c in candidates.values()):
    return candidates
  from jaxmutate.registry import build  # the registry imports the mutables it registers

  built = {}
  for name, candidate in candidates.items():
    if isinstance(candidate, Mapping):
      try:
        candidate = build(candidate)
      except (KeyError, TypeError) as error:
        raise type(error)(f"{owner}: building candidate {name!r} failed: {error}") from error
    built[name] = candidate
  return built


def call_candidate(candidate: Any, x: Any, choices: Any, kwargs: Mapping[str, Any]) -> Any:
  """Calls a candidate; nested mutables also get the ``choices``."""
  if isinstance(candidate, BaseMutable):
    return candidate(x, choices, **kwargs)
  return candidate(x, **kwargs)


def bind_candidates(parent: nn.Module, candidates: Mapping[str, Any]) -> dict[str, Any]:
  """Clones each module candidate into ``parent``'s scope under its own name.

  Cloning makes the candidate's variables live at ``parent/<name>`` whether the
  module was constructed in an enclosing compact method (which would otherwise
  own it) or outside any module. The clone is deep, so that submodules held in
  the candidate's fields (e.g. the layers of an ``nn.Sequential`` written in
  the parent's compact method) move with it.
  """
  return {
    name: candidate.clone(parent=parent, name=name, _deep_clone=True) if isinstance(candidate, nn.Module) else candidate
    for name, candidate in candidates.items()
  }


def unbound_candidates(candidates: Mapping[str, Any]) -> dict[str, Any]:
  """Candidates as stand-alone modules (for functional ``apply``)."""
  return {
    name: candidate.clone(parent=None, _deep_clone=True) if isinstance(candidate, nn.Module) else candidate
    for name, candidate in candidates.items()
  }


def tree_sum(trees: Sequence[Any]) -> Any:
  """The leaf-wise sum of pytrees of one structure."""
  return jax.tree.map(lambda *xs: sum(xs[1:], xs[0]), *trees)


def same_structure(owner: str, outputs: Mapping[str, Any]) -> None:
  """Raises if candidates' outputs differ in structure, shape or dtype."""
  shapes = {
    name: jax.tree.map(lambda a: (tuple(np.shape(a)), jnp.result_type(a)), out) for name, out in outputs.items()
  }
  first_name, first = next(iter(shapes.items()))
  for name, shape in shapes.items():
    if jax.tree.structure(shape) != jax.tree.structure(first) or jax.tree.leaves(shape) != jax.tree.leaves(first):
      raise SearchSpaceError(
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
  costs: bool = False,
) -> tuple[Any, dict[str, Any], dict[str, jax.Array] | None]:
  """Runs one candidate as a pure function of the mutable's variables.

  Returns the output, every mutable collection of the mutable's scope with
  this candidate's part updated (all branches of a switch must return the
  same structure), and with ``costs`` the candidate's summed costs (zeros for
  a candidate that sows none), else ``None``.
  """
  updated = {col: dict(variables[col]) for col in mutable_collections}
  zero_costs = summed_costs({}) if costs else None
  if not isinstance(candidate, nn.Module):
    return candidate(x, **kwargs), updated, zero_costs
  own = {col: tree[name] for col, tree in variables.items() if name in tree}
  args = (x, nested_choices) if isinstance(candidate, BaseMutable) else (x,)
  own_mutable = [col for col in mutable_collections if col in own]
  if costs:
    own_mutable.append(COSTS_COLLECTION)
  if own_mutable:
    out, new_state = candidate.apply(own, *args, rngs=rngs, mutable=own_mutable, **kwargs)
    for col in own_mutable:
      if col != COSTS_COLLECTION:
        updated[col][name] = new_state[col]
  else:
    out, new_state = candidate.apply(own, *args, rngs=rngs, **kwargs), {}
  return out, updated, summed_costs(new_state.get(COSTS_COLLECTION, {})) if costs else None


def nested_choices(full_name: str, choices: Mapping[str, Any]) -> dict[str, Any]:
  """``choices`` seen from a candidate run as a root module.

  The candidate's own choice (key ``full_name``) becomes ``""``, and keys below
  it lose the ``full_name.`` prefix.
  """
  prefix = f"{full_name}."
  nested = {}
  for key, value in choices.items():
    if key == full_name:
      nested[""] = value
    elif key.startswith(prefix):
      nested[key[len(prefix) :]] = value
  return nested


CallKwargs = Callable[[Any, Mapping[str, Any]], dict[str, Any]]
"""``(candidate, call keywords) -> the keywords that candidate is called with``."""


def _same_kwargs(candidate: Any, kwargs: Mapping[str, Any]) -> dict[str, Any]:
  return dict(kwargs)


def _branches_key(
  unbound: Mapping[str, Any],
  shared: bool,
  mutable_collections: Sequence[str],
  costs: bool,
  kwargs: Mapping[str, Any],
  call_kwargs: CallKwargs,
) -> Hashable | None:
  """What the branches of :meth:`CandidateMutable._run_chosen` compute, for :func:`switch`'s trace cache.

  Candidates run as root modules on their own variables, so their ``name``
  does not change what they compute; everything else does (fields, call
  keywords, which collections are mutable). ``None`` (no caching) where a
  candidate or keyword is not hashable.
  """
  try:
    candidates = tuple(
      (name, c.clone(parent=None, name=None, _deep_clone=True) if isinstance(c, nn.Module) else c)
      for name, c in unbound.items()
    )
    key = (candidates, shared, tuple(mutable_collections), costs, tuple(sorted(kwargs.items())), call_kwargs)
    hash(key)
  except TypeError:
    return None
  return key


class CandidateMutable(BaseMutable):
  """Base of mutables that choose among named candidate modules (ops, routes).

  Subclasses declare the mapping in the field named by
  :attr:`candidates_field` (``candidates``, or ``edges`` for routes); the
  search space is over its names. Config-dict candidates are built when the
  mutable is constructed.

  Example:
    >>> import flax.linen as nn
    >>> import jaxmutate as jm
    >>> op = jm.OneShotMutableOP({"a": dict(type="Identity"), "b": nn.Dense(2)})
    >>> type(op.candidates["a"]).__name__, op.choice_names
    ('Identity', ('a', 'b'))
  """

  candidates_field: ClassVar[str] = "candidates"

  def __post_init__(self) -> None:
    # Build configs once, here, so that apply never consults the registry.
    field = getattr(self, self.candidates_field)
    object.__setattr__(self, self.candidates_field, build_candidates(type(self).__name__, field))
    super().__post_init__()

  @property
  def _candidates(self) -> dict[str, Any]:
    return check_candidates(type(self).__name__, getattr(self, self.candidates_field), self.candidates_field)

  @property
  def choice_names(self) -> tuple[str, ...]:
    """Candidate (or edge) names in order: choice ``i`` is ``choice_names[i]``."""
    return tuple(self._candidates)

  @property
  def _owner(self) -> str:
    return f"{type(self).__name__} {self.mutable_name!r}"

  def _call_all(
    self, inputs: Sequence[Any], choices: Any, kwargs: Mapping[str, Any], call_kwargs: CallKwargs
  ) -> dict[str, Any]:
    """Every candidate ``i`` applied to ``inputs[i]`` (creates every candidate's variables)."""
    bound = bind_candidates(self, self._candidates)
    return {name: call_candidate(c, x, choices, call_kwargs(c, kwargs)) for (name, c), x in zip(bound.items(), inputs)}

  def _run_chosen(
    self,
    index: Any,
    inputs: Sequence[Any],
    choices: Mapping[str, Any],
    kwargs: Mapping[str, Any],
    call_kwargs: CallKwargs = _same_kwargs,
  ) -> Any:
    """Runs only candidate ``index`` (traced or concrete) on its input.

    ``inputs`` has one input per candidate (routes) or a single one shared by
    every candidate (ops). A concrete index calls the candidate directly; a
    traced one goes through :func:`~jaxmutate.mutables.switch` over the
    candidates applied functionally to this mutable's variables, so the
    compiled program pays for one candidate, and mutable collections (e.g.
    BatchNorm statistics) change for the chosen candidate only.
    """
    candidates = self._candidates
    names = tuple(candidates)
    shared = len(inputs) == 1 and len(names) > 1

    if not is_traced(index):
      name = names[int(index)]
      chosen = bind_candidates(self, {name: candidates[name]})[name]
      x = inputs[0] if shared else inputs[int(index)]
      return call_candidate(chosen, x, choices, call_kwargs(chosen, kwargs))

    unbound = unbound_candidates(candidates)
    variables = {
      col: tree for col, tree in self.variables.items() if col not in (MUTABLES_COLLECTION, COSTS_COLLECTION)
    }
    mutable_collections = [col for col in variables if self.is_mutable_collection(col)]
    costs = not self.is_initializing() and self.is_mutable_collection(COSTS_COLLECTION)
    rngs = {stream: self.make_rng(stream) for stream in self.scope.rngs}
    base = f"{self.mutable_name}." if self.mutable_name else ""
    nested = {name: nested_choices(base + name, choices) for name in names}

    def branch(position: int) -> Callable[..., Any]:
      name = names[position]
      candidate = unbound[name]
      candidate_kwargs = call_kwargs(candidate, kwargs)

      def run(variables, rngs, inputs, nested):
        x = inputs if shared else inputs[position]
        return run_candidate_functionally(
          candidate, name, variables, mutable_collections, rngs, x, nested[name], candidate_kwargs, costs
        )

      return run

    operands = inputs[0] if shared else list(inputs)
    out, updated, chosen_costs = switch(
      index,
      [branch(i) for i in range(len(names))],
      variables,
      rngs,
      operands,
      nested,
      cache_key=_branches_key(unbound, shared, mutable_collections, costs, kwargs, call_kwargs),
    )
    for col, tree in updated.items():
      for name, value in tree.items():
        self.put_variable(col, name, value)
    if chosen_costs is not None:
      for cost, value in chosen_costs.items():
        self.sow(COSTS_COLLECTION, cost, value)
    return out
